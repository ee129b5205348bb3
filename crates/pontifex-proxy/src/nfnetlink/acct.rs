//! Named packet counters in the kernel: nfacct objects (`NFNL_SUBSYS_ACCT`, what iptables'
//! `-m nfacct --nfacct-name NAME` counts into; what `nfacct add` / `nfacct get` do) and
//! nf_tables named counters (`counter name "NAME"` in a rule; read with `NFT_MSG_GETOBJ`,
//! what `nft list counter` does). Both are per network namespace.
//!
//! Not here: which counters a proxier needs or when ([`crate::counters`]), deleting or
//! resetting counters, quotas.

use super::{
    Msg, NFNL_SUBSYS_NFTABLES, NLM_F_CREATE, NLM_F_REQUEST, NetlinkError, NfSocket, attrs,
};

const NFNL_SUBSYS_ACCT: u16 = 7;
const NFNL_MSG_ACCT_NEW: u16 = 0;
const NFNL_MSG_ACCT_GET: u16 = 1;
const NFACCT_NAME: u16 = 1;
const NFACCT_PKTS: u16 = 2;
const NFACCT_BYTES: u16 = 3;
/// `NFACCT_NAME_MAX`, the terminating NUL included.
pub const NFACCT_NAME_MAX: usize = 32;

const NFT_MSG_GETOBJ: u16 = 19;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFTA_COUNTER_BYTES: u16 = 1;
const NFTA_COUNTER_PACKETS: u16 = 2;

/// What a counter has counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn check_name(name: &str) -> Result<(), NetlinkError> {
    if name.is_empty() || name.len() >= NFACCT_NAME_MAX || name.contains('\0') {
        return Err(NetlinkError::Malformed(
            "an nfacct name must be 1 to 31 bytes without NUL",
        ));
    }
    Ok(())
}

/// The request creating nfacct object `name` (no quota). Without `NLM_F_REPLACE` the kernel
/// never resets an existing object: it answers `EBUSY` instead.
pub(crate) fn acct_new_request(name: &str, seq: u32) -> Result<Msg, NetlinkError> {
    check_name(name)?;
    let mut m = Msg::new(
        (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_NEW,
        NLM_F_REQUEST | NLM_F_CREATE,
        seq,
        0,
        0,
    );
    m.str_attr(NFACCT_NAME, name)?;
    Ok(m)
}

/// The request reading nfacct object `name`.
pub(crate) fn acct_get_request(name: &str, seq: u32) -> Result<Msg, NetlinkError> {
    check_name(name)?;
    let mut m = Msg::new(
        (NFNL_SUBSYS_ACCT << 8) | NFNL_MSG_ACCT_GET,
        NLM_F_REQUEST,
        seq,
        0,
        0,
    );
    m.str_attr(NFACCT_NAME, name)?;
    Ok(m)
}

/// The counter in an nfacct answer (nfgenmsg, then `NFACCT_*` attributes).
pub(crate) fn decode_acct(payload: &[u8]) -> Result<Counter, NetlinkError> {
    let mut packets = None;
    let mut bytes = 0;
    for (k, v) in attrs(payload.get(4..).unwrap_or_default()) {
        match k {
            NFACCT_PKTS => packets = be64(v),
            NFACCT_BYTES => bytes = be64(v).unwrap_or(0),
            _ => {}
        }
    }
    Ok(Counter {
        packets: packets.ok_or(NetlinkError::Malformed("an nfacct answer without packets"))?,
        bytes,
    })
}

/// The request reading named counter `name` of table `family`/`table` (`family`: an
/// `NFPROTO_*` number, 2 for `ip`, 10 for `ip6`).
pub(crate) fn nft_counter_request(
    family: u8,
    table: &str,
    name: &str,
    seq: u32,
) -> Result<Msg, NetlinkError> {
    let mut m = Msg::new(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ,
        NLM_F_REQUEST,
        seq,
        family,
        0,
    );
    m.str_attr(NFTA_OBJ_TABLE, table)?;
    m.str_attr(NFTA_OBJ_NAME, name)?;
    m.attr(NFTA_OBJ_TYPE, &NFT_OBJECT_COUNTER.to_be_bytes())?;
    Ok(m)
}

/// The counter in an `NFT_MSG_NEWOBJ` answer (nfgenmsg, `NFTA_OBJ_*`, the counter's own
/// attributes nested in `NFTA_OBJ_DATA`).
pub(crate) fn decode_nft_counter(payload: &[u8]) -> Result<Counter, NetlinkError> {
    let data = attrs(payload.get(4..).unwrap_or_default())
        .into_iter()
        .find(|(k, _)| *k == NFTA_OBJ_DATA)
        .ok_or(NetlinkError::Malformed("a counter object without data"))?
        .1;
    let mut packets = None;
    let mut bytes = 0;
    for (k, v) in attrs(data) {
        match k {
            NFTA_COUNTER_PACKETS => packets = be64(v),
            NFTA_COUNTER_BYTES => bytes = be64(v).unwrap_or(0),
            _ => {}
        }
    }
    Ok(Counter {
        packets: packets.ok_or(NetlinkError::Malformed("a counter object without packets"))?,
        bytes,
    })
}

/// `Ok(None)` for `ENOENT` (no such object), the answer's counter otherwise.
fn found(
    answer: Result<Vec<Vec<u8>>, NetlinkError>,
    decode: fn(&[u8]) -> Result<Counter, NetlinkError>,
) -> Result<Option<Counter>, NetlinkError> {
    match answer {
        Err(NetlinkError::Socket(nix::Error::ENOENT)) => Ok(None),
        Err(e) => Err(e),
        Ok(payloads) => match payloads.first() {
            Some(p) => decode(p).map(Some),
            None => Err(NetlinkError::Malformed("no answer to a get request")),
        },
    }
}

impl NfSocket {
    /// Makes sure nfacct object `name` exists in the socket's namespace; `true` if this call
    /// created it. An existing object keeps its counts.
    pub fn nfacct_ensure(&mut self, name: &str) -> Result<bool, NetlinkError> {
        let seq = self.take_seqs(1);
        match self.request(acct_new_request(name, seq)?) {
            Ok(_) => Ok(true),
            // EBUSY: the kernel's answer for an existing name without NLM_F_REPLACE; EEXIST with
            // NLM_F_EXCL (not sent, accepted in case a kernel answers so).
            Err(NetlinkError::Socket(nix::Error::EBUSY | nix::Error::EEXIST)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// nfacct object `name`'s counts; `None` when it does not exist.
    pub fn nfacct_get(&mut self, name: &str) -> Result<Option<Counter>, NetlinkError> {
        let seq = self.take_seqs(1);
        let answer = self.request(acct_get_request(name, seq)?);
        found(answer, decode_acct)
    }

    /// Named counter `name` of nf_tables table `family`/`table` (`NFPROTO_*`: 2 `ip`, 10
    /// `ip6`); `None` when the table or the counter does not exist.
    pub fn nft_counter(
        &mut self,
        family: u8,
        table: &str,
        name: &str,
    ) -> Result<Option<Counter>, NetlinkError> {
        let seq = self.take_seqs(1);
        let answer = self.request(nft_counter_request(family, table, name, seq)?);
        found(answer, decode_nft_counter)
    }
}

#[cfg(test)]
mod tests;

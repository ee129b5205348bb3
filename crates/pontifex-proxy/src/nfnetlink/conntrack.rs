//! ctnetlink (`NFNL_SUBSYS_CTNETLINK`): the kernel's connection tracking table, read with one
//! dump per family and pruned entry by entry — what `conntrack -L` / `conntrack -D` do, and what
//! kube-proxy does through vishvananda/netlink, without a process per deletion.
//!
//! What it speaks: `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP` (every entry of a family; the kernel's
//! own `CTA_FILTER` is not used, so kernels before 5.x work too — the protocol is filtered
//! here), and `IPCTNL_MSG_CT_DELETE` naming an entry by its original tuple, zone and id (the id
//! makes the kernel refuse to delete a newer entry that reuses the tuple). Deletes are sent
//! many to a datagram, each acknowledged on its own; `ENOENT` (the entry expired or was
//! deleted meanwhile) counts as done, not deleted.
//!
//! Not here: deciding which entries go ([`crate::conntrack`], pure), expectations, NAT or
//! mark attributes, events.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Msg, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkError, NfSocket, attrs};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_TUPLE_ZONE: u16 = 3;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
/// `AF_INET`, `AF_INET6` (the nfgenmsg family of ctnetlink).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// IANA protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// Deletes per datagram: each answer is an acknowledgement the receive buffer must hold.
const DELETES_PER_SEND: usize = 256;

/// One direction of a connection: addresses, protocol and ports (0 for protocols without).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IANA protocol number (17 UDP, 6 TCP, 132 SCTP).
    pub proto: u8,
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The tuple's own zone (`CTA_TUPLE_ZONE`), if the kernel reported one.
    pub zone: Option<u16>,
}

/// One conntrack entry: the original tuple (as the client sent it) and the reply tuple (as
/// the answer comes back: after DNAT its source is the endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// `CTA_TUPLE_ORIG`.
    pub orig: Tuple,
    /// `CTA_TUPLE_REPLY`.
    pub reply: Tuple,
    /// `CTA_ZONE`, if not the default zone.
    pub zone: Option<u16>,
    /// `CTA_ID`: the entry's identity (a tuple can be reused by a later entry).
    pub id: Option<u32>,
}

fn family_byte(v6: bool) -> u8 {
    if v6 { AF_INET6 } else { AF_INET }
}

/// The dump request for every entry of one family (IPv6 when `v6`).
pub(crate) fn dump_request(v6: bool, seq: u32) -> Msg {
    Msg::new(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family_byte(v6),
        0,
    )
}

fn put_tuple(m: &mut Msg, kind: u16, t: &Tuple) -> Result<(), NetlinkError> {
    let tuple = m.begin(kind);
    let ip = m.begin(CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            m.attr(CTA_IP_V4_SRC, &s.octets())?;
            m.attr(CTA_IP_V4_DST, &d.octets())?;
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            m.attr(CTA_IP_V6_SRC, &s.octets())?;
            m.attr(CTA_IP_V6_DST, &d.octets())?;
        }
        _ => {
            return Err(NetlinkError::Malformed(
                "a tuple with mixed address families",
            ));
        }
    }
    m.end(ip)?;
    let proto = m.begin(CTA_TUPLE_PROTO);
    m.attr(CTA_PROTO_NUM, &[t.proto])?;
    m.attr(CTA_PROTO_SRC_PORT, &t.src_port.to_be_bytes())?;
    m.attr(CTA_PROTO_DST_PORT, &t.dst_port.to_be_bytes())?;
    m.end(proto)?;
    if let Some(z) = t.zone {
        m.attr(CTA_TUPLE_ZONE, &z.to_be_bytes())?;
    }
    m.end(tuple)
}

/// The delete request for `flow`: its original tuple (how the kernel finds the entry), zone, and
/// id (so an entry that reused the tuple since the dump is not deleted).
pub(crate) fn delete_request(flow: &Flow, seq: u32) -> Result<Msg, NetlinkError> {
    let mut m = Msg::new(
        (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family_byte(flow.orig.src.is_ipv6()),
        0,
    );
    put_tuple(&mut m, CTA_TUPLE_ORIG, &flow.orig)?;
    if let Some(z) = flow.zone {
        m.attr(CTA_ZONE, &z.to_be_bytes())?;
    }
    if let Some(id) = flow.id {
        m.attr(CTA_ID, &id.to_be_bytes())?;
    }
    Ok(m)
}

fn be16(v: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(v.get(..2)?.try_into().ok()?))
}

fn decode_tuple(buf: &[u8]) -> Result<Tuple, NetlinkError> {
    let bad = NetlinkError::Malformed;
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut src_port, mut dst_port, mut zone) = (0, 0, None);
    for (k, v) in attrs(buf) {
        match k {
            CTA_TUPLE_IP => {
                for (k, v) in attrs(v) {
                    let v4 = || -> Option<IpAddr> {
                        Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?)))
                    };
                    let v6 = || -> Option<IpAddr> {
                        Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?)))
                    };
                    match k {
                        CTA_IP_V4_SRC => src = v4(),
                        CTA_IP_V4_DST => dst = v4(),
                        CTA_IP_V6_SRC => src = v6(),
                        CTA_IP_V6_DST => dst = v6(),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for (k, v) in attrs(v) {
                    match k {
                        CTA_PROTO_NUM => proto = v.first().copied(),
                        CTA_PROTO_SRC_PORT => src_port = be16(v).unwrap_or(0),
                        CTA_PROTO_DST_PORT => dst_port = be16(v).unwrap_or(0),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = be16(v),
            _ => {}
        }
    }
    Ok(Tuple {
        src: src.ok_or(bad("a tuple without a source address"))?,
        dst: dst.ok_or(bad("a tuple without a destination address"))?,
        proto: proto.ok_or(bad("a tuple without a protocol"))?,
        src_port,
        dst_port,
        zone,
    })
}

/// One entry of a dump (the payload after the netlink header: nfgenmsg, then attributes).
pub(crate) fn decode_flow(payload: &[u8]) -> Result<Flow, NetlinkError> {
    let body = payload.get(4..).ok_or(NetlinkError::Malformed(
        "a conntrack message without nfgenmsg",
    ))?;
    let (mut orig, mut reply, mut zone, mut id) = (None, None, None, None);
    for (k, v) in attrs(body) {
        match k {
            CTA_TUPLE_ORIG => orig = Some(decode_tuple(v)?),
            CTA_TUPLE_REPLY => reply = Some(decode_tuple(v)?),
            CTA_ZONE => zone = be16(v),
            CTA_ID => {
                id = v
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => {}
        }
    }
    Ok(Flow {
        orig: orig.ok_or(NetlinkError::Malformed(
            "an entry without its original tuple",
        ))?,
        reply: reply.ok_or(NetlinkError::Malformed("an entry without its reply tuple"))?,
        zone,
        id,
    })
}

impl NfSocket {
    /// Every conntrack entry of protocol `proto` (IANA number) in the IPv4 or IPv6 (`v6`)
    /// table of the socket's namespace, read with one dump.
    pub fn conntrack_flows(&mut self, v6: bool, proto: u8) -> Result<Vec<Flow>, NetlinkError> {
        let seq = self.take_seqs(1);
        let mut out = Vec::new();
        for payload in self.dump(dump_request(v6, seq))? {
            let flow = decode_flow(&payload)?;
            if flow.orig.proto == proto {
                out.push(flow);
            }
        }
        Ok(out)
    }

    /// Deletes `flows`; returns how many the kernel deleted. An entry already gone (`ENOENT`:
    /// expired, or deleted by someone else) is not an error; any other refusal is, after the
    /// rest were tried.
    pub fn conntrack_delete(&mut self, flows: &[Flow]) -> Result<usize, NetlinkError> {
        let mut deleted = 0;
        let mut first_error = None;
        for chunk in flows.chunks(DELETES_PER_SEND) {
            let first = self.take_seqs(chunk.len() as u32);
            let mut bytes = Vec::with_capacity(chunk.len() * 96);
            let mut acked = Vec::with_capacity(chunk.len());
            for (i, f) in chunk.iter().enumerate() {
                let seq = first.wrapping_add(i as u32);
                delete_request(f, seq)?.finish(&mut bytes);
                acked.push(seq);
            }
            self.send_all(&bytes)?;
            let refused = self.await_each(&acked)?;
            deleted += chunk.len() - refused.len();
            for (idx, errno) in refused {
                if errno != nix::Error::ENOENT && first_error.is_none() {
                    first_error = Some(NetlinkError::Refused {
                        what: format!("deleting conntrack entry {:?}", chunk[idx].orig),
                        errno,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests;

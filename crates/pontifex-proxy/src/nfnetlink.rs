//! nf_tables' and netfilter's netlink, spoken directly: a socket opened in a network namespace,
//! messages built attribute by attribute, batches acknowledged message by message, and dumps read
//! back. What goes over it lives in the submodules: [`elements`] (set and map elements in one
//! nf_tables transaction).
//!
//! No crate does this for us without C or a build script, and the layouts involved are few and
//! fixed (linux/netlink.h, linux/netfilter/nfnetlink.h), so they are written out here.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};

pub mod acct;
pub mod conntrack;
pub mod elements;

pub use elements::{
    ElementCodec, ElementOp, Field, Unencodable, Value, Verdict, concat, element_diff, encode_batch,
};

/// Why a netlink exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetlinkError {
    /// A socket call failed.
    #[error("netlink socket: {0}")]
    Socket(#[from] nix::Error),
    /// Entering the network namespace failed.
    #[error("network namespace {netns}: {source}")]
    Netns {
        /// The namespace name.
        netns: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused a message (for an nf_tables batch: the whole batch was discarded).
    #[error("the kernel refused {what}: {errno}")]
    Refused {
        /// The message it refused (for elements: set and operation).
        what: String,
        /// The kernel's error.
        errno: nix::Error,
    },
    /// The kernel did not acknowledge every message in time.
    #[error("no answer from nf_tables for {missing} of {sent} messages")]
    NoAnswer {
        /// Messages without an answer.
        missing: usize,
        /// Messages sent.
        sent: usize,
    },
    /// An element's key or value does not fit a netlink attribute.
    #[error("element too large")]
    TooLarge,
    /// A dump saw the object change while it was read (`NLM_F_DUMP_INTR`, or an element
    /// twice): read it again.
    #[error("the dump was interrupted by a change")]
    Interrupted,
    /// The kernel's answer did not have the expected layout.
    #[error("malformed netlink answer: {0}")]
    Malformed(&'static str),
}

// Kernel constants (linux/netlink.h, linux/netfilter/nfnetlink.h).
pub(crate) const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
pub(crate) const NFNL_MSG_BATCH_END: u16 = 0x11;
pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_CREATE: u16 = 0x400;
pub(crate) const NLMSG_ERROR: u16 = 0x2;
pub(crate) const NLA_F_NESTED: u16 = 0x8000;
const NLMSG_DONE: u16 = 0x3;
/// `NFNL_SUBSYS_NFTABLES`: nf_tables' messages (elements, objects).
pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Set on a dump's messages when what it reads changed meanwhile.
const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub(crate) const NLM_F_DUMP: u16 = 0x300;
/// Attribute types carry two flag bits (nested, network byte order) above the type.
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A netlink message under construction (attributes nest through `begin`/`end`).
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    pub(crate) fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set in `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        buf.extend_from_slice(&[family, 0]); // nfgenmsg: family, version 0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf }
    }

    /// Adds `flags` to the header's flags.
    pub(crate) fn add_flags(&mut self, flags: u16) {
        let now = u16::from_ne_bytes([self.buf[6], self.buf[7]]);
        self.buf[6..8].copy_from_slice(&(now | flags).to_ne_bytes());
    }

    /// The message's sequence number.
    pub(crate) fn seq(&self) -> u32 {
        u32::from_ne_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    pub(crate) fn attr(&mut self, kind: u16, payload: &[u8]) -> Result<(), NetlinkError> {
        let len = u16::try_from(4 + payload.len()).map_err(|_| NetlinkError::TooLarge)?;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
        Ok(())
    }

    pub(crate) fn str_attr(&mut self, kind: u16, s: &str) -> Result<(), NetlinkError> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v)
    }

    /// Opens a nested attribute; returns where its header is.
    pub(crate) fn begin(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        at
    }

    pub(crate) fn end(&mut self, at: usize) -> Result<(), NetlinkError> {
        let len = u16::try_from(self.buf.len() - at).map_err(|_| NetlinkError::TooLarge)?;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        Ok(())
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(crate) fn finish(mut self, out: &mut Vec<u8>) {
        self.pad();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.buf);
    }
}

/// An nf_tables netlink socket, opened in a network namespace.
#[derive(Debug)]
pub struct NfSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NfSocket {
    /// A socket in the current network namespace, or in `netns` (a name under
    /// `/var/run/netns`): a socket stays in the namespace it was made in, so a short-lived
    /// thread enters the namespace, makes it and leaves.
    pub fn open(netns: Option<&str>) -> Result<NfSocket, NetlinkError> {
        let make = || -> Result<OwnedFd, NetlinkError> {
            let fd = socket(
                AddressFamily::Netlink,
                SockType::Raw,
                SockFlag::SOCK_CLOEXEC,
                SockProtocol::NetlinkNetFilter,
            )?;
            bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
            // A whole table's elements go in one send: as large as the kernel allows (root may
            // exceed wmem_max), like nft does for big sets.
            let _ = setsockopt(&fd, sockopt::SndBufForce, &(64 << 20));
            let _ = setsockopt(&fd, sockopt::RcvBufForce, &(8 << 20));
            setsockopt(
                &fd,
                sockopt::ReceiveTimeout,
                &nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0),
            )?;
            Ok(fd)
        };
        let fd = in_netns(netns, make)??;
        Ok(NfSocket { fd, seq: 1 })
    }

    /// The next `n` sequence numbers.
    pub(crate) fn take_seqs(&mut self, n: u32) -> u32 {
        let first = self.seq;
        self.seq = self.seq.wrapping_add(n);
        first
    }

    /// Sends `bytes` (whole messages) in one write.
    pub(crate) fn send_all(&self, bytes: &[u8]) -> Result<(), NetlinkError> {
        let sent = send(self.fd.as_raw_fd(), bytes, MsgFlags::empty())?;
        if sent != bytes.len() {
            return Err(NetlinkError::TooLarge);
        }
        Ok(())
    }

    /// Waits for the kernel's answer to every message numbered in `acked`; the first refusal
    /// (its position in `acked` and the error) if any.
    pub(crate) fn await_acks(
        &self,
        acked: &[u32],
    ) -> Result<Option<(usize, nix::Error)>, NetlinkError> {
        Ok(self.await_each(acked)?.into_iter().next())
    }

    /// Waits for the kernel's answer to every message numbered in `acked`; every refusal (its
    /// position in `acked` and the error), in the order of `acked`. For requests that are not
    /// one transaction (ctnetlink deletes), where each message succeeds or fails on its own.
    pub(crate) fn await_each(
        &self,
        acked: &[u32],
    ) -> Result<Vec<(usize, nix::Error)>, NetlinkError> {
        let mut pending: std::collections::BTreeSet<u32> = acked.iter().copied().collect();
        let mut buf = vec![0u8; 64 << 10];
        let mut refused = Vec::new();
        while !pending.is_empty() {
            let n = self.receive(&mut buf).map_err(|e| match e {
                NetlinkError::Socket(nix::Error::EAGAIN) => NetlinkError::NoAnswer {
                    missing: pending.len(),
                    sent: acked.len(),
                },
                e => e,
            })?;
            for m in messages(&buf[..n]) {
                if m.kind == NLMSG_ERROR
                    && pending.remove(&m.seq)
                    && let Some(code) = m.error_code()
                    && code != 0
                {
                    let idx = acked.iter().position(|s| *s == m.seq).unwrap_or(0);
                    refused.push((idx, nix::Error::from_raw(-code)));
                }
            }
        }
        refused.sort_by_key(|(i, _)| *i);
        Ok(refused)
    }

    /// Sends one request (`NLM_F_ACK` is added) and returns the payload of every answer the
    /// kernel sends before its acknowledgement; a refusal is an error
    /// ([`NetlinkError::Socket`] with the kernel's errno, e.g. `ENOENT`).
    pub(crate) fn request(&mut self, mut msg: Msg) -> Result<Vec<Vec<u8>>, NetlinkError> {
        msg.add_flags(NLM_F_ACK);
        let seq = msg.seq();
        let mut bytes = Vec::new();
        msg.finish(&mut bytes);
        self.send_all(&bytes)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = self.receive(&mut buf)?;
            for m in messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    NLMSG_ERROR => {
                        return match m.error_code() {
                            Some(0) => Ok(out),
                            Some(code) => Err(nix::Error::from_raw(-code).into()),
                            None => Err(NetlinkError::Malformed("a short error message")),
                        };
                    }
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
    }

    /// Sends one dump request (`NLM_F_DUMP` is added) and returns the payload of every answer
    /// (after the netlink header) until the kernel says it is done.
    pub(crate) fn dump(&mut self, msg: Msg) -> Result<Vec<Vec<u8>>, NetlinkError> {
        let seq = msg.seq();
        let mut bytes = Vec::new();
        msg.finish(&mut bytes);
        self.send_all(&bytes)?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut interrupted = false;
        loop {
            let n = self.receive(&mut buf)?;
            for m in messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.kind {
                    // Read to the end either way: the rest of the dump would otherwise be
                    // taken for the answer to the next request.
                    NLMSG_DONE if interrupted => return Err(NetlinkError::Interrupted),
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => match m.error_code() {
                        Some(0) => {}
                        Some(code) => return Err(nix::Error::from_raw(-code).into()),
                        None => return Err(NetlinkError::Malformed("a short error message")),
                    },
                    _ => out.push(m.payload.to_vec()),
                }
            }
        }
    }

    fn receive(&self, buf: &mut [u8]) -> Result<usize, NetlinkError> {
        Ok(recv(self.fd.as_raw_fd(), buf, MsgFlags::empty())?)
    }
}

/// Runs `f` on a short-lived thread that entered network namespace `netns` (a name under
/// `/var/run/netns`), or here with `None`. Sockets made there stay in that namespace, and
/// `/proc/sys/net` files opened there are that namespace's.
pub(crate) fn in_netns<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetlinkError> {
    let Some(name) = netns else {
        return Ok(f());
    };
    let path = format!("/var/run/netns/{name}");
    let err = |source: std::io::Error| NetlinkError::Netns {
        netns: name.to_owned(),
        source,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&path).map_err(err)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| err(e.into()))?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| {
            Err(err(std::io::Error::other(
                "the thread entering it panicked",
            )))
        })
    })
}

/// nf_tables' number for an IP family (`NFPROTO_IPV4`, `NFPROTO_IPV6`): the family of an
/// `ip` / `ip6` table.
pub(crate) fn nfproto(family: crate::model::IpFamily) -> u8 {
    match family {
        crate::model::IpFamily::V4 => 2,
        crate::model::IpFamily::V6 => 10,
    }
}

/// One message of a datagram the kernel sent.
pub(crate) struct Received<'a> {
    /// `nlmsg_type`.
    pub(crate) kind: u16,
    /// `nlmsg_flags`.
    pub(crate) flags: u16,
    /// `nlmsg_seq`.
    pub(crate) seq: u32,
    /// What follows the netlink header.
    pub(crate) payload: &'a [u8],
}

impl Received<'_> {
    /// An `NLMSG_ERROR`'s code (0 = acknowledgement, else a negative errno).
    fn error_code(&self) -> Option<i32> {
        Some(i32::from_ne_bytes(self.payload.get(..4)?.try_into().ok()?))
    }
}

/// The messages in `buf`; a truncated tail is ignored.
pub(crate) fn messages(buf: &[u8]) -> Vec<Received<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if len < 16 || at + len > buf.len() {
            break;
        }
        out.push(Received {
            kind: u16::from_ne_bytes([buf[at + 4], buf[at + 5]]),
            flags: u16::from_ne_bytes([buf[at + 6], buf[at + 7]]),
            seq: u32::from_ne_bytes([buf[at + 8], buf[at + 9], buf[at + 10], buf[at + 11]]),
            payload: &buf[at + 16..at + len],
        });
        at += (len + 3) & !3;
    }
    out
}

/// The attributes in `buf` as (type without the nested/byte-order flags, payload); a truncated
/// tail is ignored.
pub(crate) fn attrs(buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= buf.len() {
        let len = u16::from_ne_bytes([buf[at], buf[at + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[at + 2], buf[at + 3]]) & NLA_TYPE_MASK;
        if len < 4 || at + len > buf.len() {
            break;
        }
        out.push((kind, &buf[at + 4..at + len]));
        at += (len + 3) & !3;
    }
    out
}

/// How long [`NfSocket::apply`] waits for the kernel (the socket's receive timeout).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

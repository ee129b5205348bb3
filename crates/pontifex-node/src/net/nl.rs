//! Thin netlink helpers shared by the sandbox, routes and lab modules: a connection opened inside a named
//! namespace, and idempotent link/address operations (EEXIST and ENODEV/ENOENT are outcomes, not errors).

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::sys::{AsyncSocket, TokioSocket, protocols::NETLINK_ROUTE};
use rtnetlink::{Handle, LinkUnspec};

use super::{NetError, netns};

/// A netlink connection bound to one namespace.
pub(crate) struct Nl {
    pub(crate) h: Handle,
    /// For error messages.
    pub(crate) ns: String,
}

/// Open a rtnetlink connection in namespace `ns` (`None`: the calling thread's).
///
/// The socket is created on a thread inside the namespace (a netlink socket stays bound to the namespace
/// it was created in) and registered with the caller's runtime, whose task then drives it. Creating it
/// blocks the caller for a thread spawn (tens of microseconds), which is fine on an async thread.
pub(crate) async fn connect(ns: Option<&str>) -> Result<Nl, NetError> {
    let rt = tokio::runtime::Handle::current();
    let socket = match ns {
        None => TokioSocket::new(NETLINK_ROUTE),
        Some(name) => netns::run_in(name, move || {
            let _entered = rt.enter();
            TokioSocket::new(NETLINK_ROUTE)
        })?,
    }
    .map_err(|source| NetError::Io {
        op: format!("open netlink socket in {}", ns.unwrap_or("current")),
        source,
    })?;
    let (conn, h, _) = rtnetlink::from_socket(socket);
    // The connection task ends when the last handle is dropped.
    tokio::spawn(conn);
    Ok(Nl {
        h,
        ns: ns.unwrap_or("current").to_owned(),
    })
}

/// The errno of a netlink error reply, if it is one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

pub(crate) fn nl_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |source| NetError::Netlink { op, source }
}

/// Ok for EEXIST (the object is already there).
pub(crate) fn ok_if_exists(
    r: Result<(), rtnetlink::Error>,
    op: impl Into<String>,
) -> Result<(), NetError> {
    match r {
        Err(e) if errno(&e) == Some(libc_errno::EEXIST) => Ok(()),
        r => r.map_err(nl_err(op)),
    }
}

/// Ok for "no such object" replies (ENODEV, ENOENT, ESRCH, EADDRNOTAVAIL).
pub(crate) fn ok_if_gone(
    r: Result<(), rtnetlink::Error>,
    op: impl Into<String>,
) -> Result<(), NetError> {
    match r {
        Err(e)
            if matches!(
                errno(&e),
                Some(
                    libc_errno::ENODEV
                        | libc_errno::ENOENT
                        | libc_errno::ESRCH
                        | libc_errno::EADDRNOTAVAIL
                )
            ) =>
        {
            Ok(())
        }
        r => r.map_err(nl_err(op)),
    }
}

/// Errno values (the `libc` names; spelled out to keep this crate free of a direct libc dependency).
pub(crate) mod libc_errno {
    pub(crate) const ENOENT: i32 = 2;
    pub(crate) const ESRCH: i32 = 3;
    pub(crate) const EEXIST: i32 = 17;
    pub(crate) const ENODEV: i32 = 19;
    pub(crate) const EADDRNOTAVAIL: i32 = 99;
}

impl Nl {
    /// The link named `name`, if any.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetError> {
        let r = self
            .h
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await;
        match r {
            Ok(m) => Ok(m),
            Err(e) if matches!(errno(&e), Some(libc_errno::ENODEV | libc_errno::ENOENT)) => {
                Ok(None)
            }
            Err(e) => Err(nl_err(format!("get link {name} in {}", self.ns))(e)),
        }
    }

    /// The index of the link named `name`, or [`NetError::LinkNotFound`].
    pub(crate) async fn index(&self, name: &str) -> Result<u32, NetError> {
        match self.link(name).await? {
            Some(m) => Ok(m.header.index),
            None => Err(NetError::LinkNotFound {
                link: name.to_owned(),
                ns: self.ns.clone(),
            }),
        }
    }

    /// Every link in the namespace.
    pub(crate) async fn links(&self) -> Result<Vec<LinkMessage>, NetError> {
        self.h
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(nl_err(format!("list links in {}", self.ns)))
    }

    /// Set link `index` up.
    pub(crate) async fn up(&self, index: u32) -> Result<(), NetError> {
        self.h
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl_err(format!("set link {index} up in {}", self.ns)))
    }

    /// Delete the link named `name`; a missing link is fine.
    pub(crate) async fn del_link(&self, name: &str) -> Result<(), NetError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        ok_if_gone(
            self.h.link().del(link.header.index).execute().await,
            format!("delete link {name} in {}", self.ns),
        )
    }

    /// Add `addr/prefix` to link `index`; an existing identical address is fine. IPv6 addresses
    /// are added with `nodad`: duplicate address detection would keep them tentative (unusable as a
    /// source) for about a second, and every address here is allocated, never guessed.
    pub(crate) async fn ensure_addr(
        &self,
        index: u32,
        addr: impl Into<IpAddr>,
        prefix: u8,
    ) -> Result<(), NetError> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
        let addr = addr.into();
        let mut req = self.h.address().add(index, addr, prefix);
        if addr.is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        ok_if_exists(
            req.execute().await,
            format!("add address {addr}/{prefix} in {}", self.ns),
        )
    }

    /// Bring `lo` up.
    pub(crate) async fn lo_up(&self) -> Result<(), NetError> {
        let lo = self.index("lo").await?;
        self.up(lo).await
    }
}

/// The name of a link message.
pub(crate) fn link_name(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The hardware address of a link message.
pub(crate) fn link_mac(m: &LinkMessage) -> Option<&[u8]> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(b) => Some(b.as_slice()),
        _ => None,
    })
}

/// Link names are at most 15 bytes (IFNAMSIZ - 1).
pub(crate) fn check_ifname(name: &str) -> Result<(), NetError> {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.contains(char::is_whitespace)
    {
        return Err(NetError::Invalid(format!(
            "link name {name:?} must be 1 to 15 bytes without '/' or spaces"
        )));
    }
    Ok(())
}

/// FNV-1a, 32 bits: a stable short hash for link names derived from longer names (the std hasher is not
/// stable across Rust releases, and names must survive an agent upgrade).
pub(crate) fn hash8(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

//! Pod and node networking through netlink (rtnetlink), never by parsing command output.
//!
//! - [`netns`]: named network namespaces compatible with `ip netns`, and running code inside one.
//! - [`ipam`]: host-local IPAM (CNI's `host-local` plugin): pod IPs from the node's podCIDRs (one
//!   allocator per family over one directory), persisted.
//! - [`sandbox`]: the node bridge `cni0` and the per-pod namespace, veth, addresses and default routes
//!   (one per podCIDR: IPv4, and IPv6 on a dual-stack node).
//! - [`routes`]: cross-node routes: host-gw (a route per other node and family) and VXLAN (flannel's
//!   scheme, IPv4 only; IPv6 podCIDRs get host-gw routes).
//! - [`lab`]: the multi-node lab underlay in the root namespace (bridge, a namespace per node; a ULA
//!   IPv6 underlay too when dual-stack).
//!
//! Every function that touches the kernel takes the namespace it works in by name (`None` means the
//! namespace of the calling thread, e.g. a real node) and opens its own netlink socket there, so callers
//! need not care which thread runs what. The async functions need a tokio runtime with IO enabled.
//!
//! What it does not do: resolv.conf and hostname of pods, workloads, firewall rules (nftables belongs to
//! the proxy and policy crates), IPv6 VXLAN, IPv6-only nodes.

pub mod ipam;
pub mod lab;
pub mod netns;
pub mod routes;
pub mod sandbox;

mod nl;

pub use netns::NetnsError;

/// A networking operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Creating, entering or deleting a network namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// The kernel refused a netlink request, or the netlink socket failed.
    #[error("netlink: {op}: {source}")]
    Netlink {
        /// What was being done (e.g. `add route 10.244.2.0/24`).
        op: String,
        /// The error from rtnetlink.
        #[source]
        source: rtnetlink::Error,
    },
    /// A link the operation relies on is missing (e.g. the bridge before a pod is attached).
    #[error("link {link:?} not found in namespace {ns}")]
    LinkNotFound {
        /// The link name.
        link: String,
        /// The namespace searched (`current` for the caller's).
        ns: String,
    },
    /// An argument is unusable (a podCIDR that is not IPv4 or too small, a name too long for a link...).
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A file operation failed (opening a netlink socket, writing a sysctl).
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The addresses in namespace `ns` (`None`: the calling thread's), of link `link` or of every link
/// when `None`; `Ok(None)` when the named link does not exist.
pub async fn addresses(
    ns: Option<&str>,
    link: Option<&str>,
) -> Result<Option<Vec<std::net::IpAddr>>, NetError> {
    use futures::TryStreamExt as _;
    use netlink_packet_route::address::AddressAttribute;

    let nl = nl::connect(ns).await?;
    let mut get = nl.h.address().get();
    if let Some(name) = link {
        let Some(l) = nl.link(name).await? else {
            return Ok(None);
        };
        get = get.set_link_index_filter(l.header.index);
    }
    let messages: Vec<_> = get
        .execute()
        .try_collect()
        .await
        .map_err(nl::nl_err(format!("list addresses in {}", nl.ns)))?;
    Ok(Some(
        messages
            .iter()
            .flat_map(|m| &m.attributes)
            .filter_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
            .collect(),
    ))
}

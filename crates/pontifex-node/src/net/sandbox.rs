//! Pod network sandboxes, as the CNI `bridge` plugin builds them, inside a node's namespace.
//!
//! - The node bridge [`BRIDGE`] (`cni0`) holds the podCIDR's gateway (`.1`), e.g. `10.244.1.1/24`, and the
//!   node forwards IPv4 (`net.ipv4.ip_forward=1` in the node namespace).
//! - Per pod: a named namespace (the caller chooses the name, e.g. `pfx-pod-<uid>`), a veth pair whose host
//!   end `veth<hash8 of the namespace name>` is a port of `cni0` (in hairpin mode, as the kubelet sets
//!   it, so a pod reaches itself through its Service) and whose pod end is `eth0`, the pod
//!   address on `eth0`, `lo` up, and a default route via the gateway.
//!
//! Nothing here relies on `br_netfilter`: the bridge is created with `nf_call_iptables` off. (When
//! br_netfilter is loaded its per-namespace sysctl `net.bridge.bridge-nf-call-iptables` still defaults to
//! 1 and wins over the bridge option; bridged frames then pass the node namespace's own, empty, iptables.)
//!
//! What it does not do: allocate addresses (see [`super::ipam`]), resolv.conf or hostname, hostPort.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use netlink_packet_route::address::AddressAttribute;
use rtnetlink::{LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::nl::{self, Nl, connect, nl_err, ok_if_exists};
use super::{NetError, ipam, netns};

/// The node bridge's name (the CNI bridge plugin's default).
pub const BRIDGE: &str = "cni0";
/// The pod end of the veth pair.
pub const POD_IFNAME: &str = "eth0";

/// A pod's address on its `eth0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod IP.
    pub ip: Ipv4Addr,
    /// Its prefix length (the podCIDR's).
    pub prefix_len: u8,
}

/// What [`setup_pod`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The pod namespace.
    pub netns: String,
    /// The pod address.
    pub address: PodAddress,
    /// The gateway (the bridge's address).
    pub gateway: Ipv4Addr,
    /// The host end of the veth pair, a port of [`BRIDGE`].
    pub host_veth: String,
}

/// The host-side veth name for pod namespace `pod_ns`: `veth` and 8 hex digits of a stable hash of the
/// name (15 bytes at most, as link names must be).
pub fn host_veth_name(pod_ns: &str) -> String {
    format!("veth{}", nl::hash8(pod_ns))
}

/// The name the pod end has in the node namespace before it moves into the pod namespace.
fn peer_tmp_name(pod_ns: &str) -> String {
    format!("vp{}", nl::hash8(pod_ns))
}

fn check_cidr(pod_cidr: Ipv4Net) -> Result<Ipv4Net, NetError> {
    if pod_cidr.prefix_len() > 30 {
        return Err(NetError::Invalid(format!(
            "podCIDR {pod_cidr} is too small"
        )));
    }
    Ok(pod_cidr.trunc())
}

/// Enable IPv4 forwarding in namespace `ns` (`None`: the caller's), by writing the sysctl from a thread
/// inside it (`/proc/sys/net` shows the namespace of the thread that opens it).
pub fn enable_ip_forward(ns: Option<&str>) -> Result<(), NetError> {
    let write = || std::fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    let r = match ns {
        Some(name) => netns::run_in(name, write)?,
        None => write(),
    };
    r.map_err(|source| NetError::Io {
        op: format!("enable ip_forward in {}", ns.unwrap_or("current")),
        source,
    })
}

/// Ensure the node bridge `cni0` in `node_ns`: present, up, with the gateway address of `pod_cidr`
/// (`.1/<prefix>`), and IPv4 forwarding on. Idempotent.
pub async fn ensure_bridge(node_ns: Option<&str>, pod_cidr: Ipv4Net) -> Result<(), NetError> {
    let cidr = check_cidr(pod_cidr)?;
    let node = connect(node_ns).await?;
    let index = ensure_bridge_link(&node, BRIDGE).await?;
    node.ensure_addr(index, ipam::gateway(cidr), cidr.prefix_len())
        .await?;
    enable_ip_forward(node_ns)
}

/// Create bridge `name` if missing (iptables off for bridged frames), set it up, return its index.
pub(crate) async fn ensure_bridge_link(nl: &Nl, name: &str) -> Result<u32, NetError> {
    if nl.link(name).await?.is_none() {
        let msg = LinkBridge::new(name).nf_call_iptables(false).build();
        ok_if_exists(
            nl.h.link().add(msg).execute().await,
            format!("add bridge {name} in {}", nl.ns),
        )?;
    }
    let index = nl.index(name).await?;
    nl.up(index).await?;
    Ok(index)
}

/// Build the network of one pod: create namespace `pod_ns` (if needed), a veth pair into `cni0` of
/// `node_ns`, `ip/<podCIDR prefix>` on the pod's `eth0`, `lo` up and a default route via the gateway.
/// `mtu` sets both veth ends (e.g. 1450 under VXLAN); `None` keeps the kernel default.
///
/// Idempotent: a pod whose veth already exists gets a fresh pair (the old one is deleted first), so a
/// set-up interrupted half-way can simply be retried. [`ensure_bridge`] must have run.
pub async fn setup_pod(
    node_ns: Option<&str>,
    pod_ns: &str,
    pod_cidr: Ipv4Net,
    ip: Ipv4Addr,
    mtu: Option<u32>,
) -> Result<PodNetwork, NetError> {
    let cidr = check_cidr(pod_cidr)?;
    if !cidr.contains(&ip) {
        return Err(NetError::Invalid(format!(
            "pod IP {ip} is not in podCIDR {cidr}"
        )));
    }
    let gateway = ipam::gateway(cidr);
    let host = host_veth_name(pod_ns);
    let peer = peer_tmp_name(pod_ns);

    netns::create(pod_ns)?;
    let node = connect(node_ns).await?;
    let pod = connect(Some(pod_ns)).await?;
    let bridge = node.index(BRIDGE).await?;

    // Leftovers of an interrupted attempt (deleting either end of a veth deletes the pair).
    node.del_link(&host).await?;
    node.del_link(&peer).await?;
    pod.del_link(POD_IFNAME).await?;

    let mut veth = LinkVeth::new(&host, &peer);
    if let Some(mtu) = mtu {
        veth = veth.mtu(mtu);
    }
    node.h
        .link()
        .add(veth.build())
        .execute()
        .await
        .map_err(nl_err(format!("add veth {host} in {}", node.ns)))?;
    let peer_index = node.index(&peer).await?;
    let mut peer_msg = LinkUnspec::new_with_index(peer_index);
    if let Some(mtu) = mtu {
        peer_msg = peer_msg.mtu(mtu);
    }
    let ns_file = netns::open(pod_ns)?;
    node.h
        .link()
        .set(peer_msg.setns_by_fd(ns_file.as_raw_fd()).build())
        .execute()
        .await
        .map_err(nl_err(format!("move {peer} into {pod_ns}")))?;
    drop(ns_file);

    let host_index = node.index(&host).await?;
    node.h
        .link()
        .set(
            LinkUnspec::new_with_index(host_index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("attach {host} to {BRIDGE}")))?;
    // Hairpin mode, as the kubelet sets it on every pod's port: a pod that reaches itself through
    // its Service is DNATed back to its own address while the frame is still being bridged
    // (br_netfilter), so the bridge must be allowed to send it out of the port it came in on.
    node.h
        .link()
        .set_port(LinkBridgePort::new(host_index).hairpin(true).build())
        .execute()
        .await
        .map_err(nl_err(format!("hairpin mode on {host}")))?;

    // In the pod: rename while down (a running link cannot be renamed), then up.
    let eth = pod.index(&peer).await?;
    pod.h
        .link()
        .set(
            LinkUnspec::new_with_index(eth)
                .name(POD_IFNAME.to_owned())
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("rename {peer} to {POD_IFNAME} in {pod_ns}")))?;
    pod.ensure_addr(eth, ip, cidr.prefix_len()).await?;
    pod.up(eth).await?;
    pod.lo_up().await?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(eth)
        .build();
    ok_if_exists(
        pod.h.route().add(default).execute().await,
        format!("add default route via {gateway} in {pod_ns}"),
    )?;

    Ok(PodNetwork {
        netns: pod_ns.to_owned(),
        address: PodAddress {
            ip,
            prefix_len: cidr.prefix_len(),
        },
        gateway,
        host_veth: host,
    })
}

/// Remove a pod's network: its host veth in `node_ns` and the namespace `pod_ns`. Idempotent: missing
/// pieces (or a node namespace already gone) are not errors. The caller releases the pod's address.
pub async fn teardown_pod(node_ns: Option<&str>, pod_ns: &str) -> Result<(), NetError> {
    let node_alive = match node_ns {
        Some(n) => netns::exists(n)?,
        None => true,
    };
    if node_alive {
        let node = connect(node_ns).await?;
        node.del_link(&host_veth_name(pod_ns)).await?;
        node.del_link(&peer_tmp_name(pod_ns)).await?;
    }
    netns::delete(pod_ns)?;
    Ok(())
}

/// Read back the address of an existing pod namespace's `eth0` (to adopt pods after an agent restart).
/// `None` when the namespace, its `eth0` or an IPv4 address on it is missing.
pub async fn inspect_pod(pod_ns: &str) -> Result<Option<PodAddress>, NetError> {
    if !netns::exists(pod_ns)? {
        return Ok(None);
    }
    let pod = connect(Some(pod_ns)).await?;
    let Some(eth) = pod.link(POD_IFNAME).await? else {
        return Ok(None);
    };
    let addrs: Vec<_> = pod
        .h
        .address()
        .get()
        .set_link_index_filter(eth.header.index)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err(format!("list addresses in {pod_ns}")))?;
    Ok(addrs.iter().find_map(|m| {
        m.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(PodAddress {
                ip: *ip,
                prefix_len: m.header.prefix_len,
            }),
            _ => None,
        })
    }))
}

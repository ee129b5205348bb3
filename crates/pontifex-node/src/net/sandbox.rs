//! Pod network sandboxes, as the CNI `bridge` plugin builds them, inside a node's namespace.
//!
//! - The node bridge [`BRIDGE`] (`cni0`) holds each podCIDR's gateway (`.1` / `::1`), e.g.
//!   `10.244.1.1/24` and, on a dual-stack node, `fd00:10:244:1::1/64`; the node forwards IPv4
//!   (`net.ipv4.ip_forward=1` in the node namespace) and, with an IPv6 podCIDR, IPv6
//!   (`net.ipv6.conf.all.forwarding=1`).
//! - Per pod: a named namespace (the caller chooses the name, e.g. `pfx-pod-<uid>`), a veth pair whose host
//!   end `veth<hash8 of the namespace name>` is a port of `cni0` (in hairpin mode, as the kubelet sets
//!   it, so a pod reaches itself through its Service) and whose pod end is `eth0`, one pod address
//!   per podCIDR on `eth0`, `lo` up, and a default route per family via that family's gateway.
//!
//! IPv6: addresses are added with `nodad` (no second of "tentative" before a pod can use its
//! address), and router advertisements and address autoconfiguration are off in the node and pod
//! namespaces (`accept_ra=0`, `autoconf=0` on `all` and `default`, set before any link is made): the
//! addresses and routes are exactly the ones written here.
//!
//! Nothing here relies on `br_netfilter`: the bridge is created with `nf_call_iptables` off. (When
//! br_netfilter is loaded its per-namespace sysctl `net.bridge.bridge-nf-call-iptables` still defaults to
//! 1 and wins over the bridge option; bridged frames then pass the node namespace's own, empty, iptables.)
//!
//! What it does not do: allocate addresses (see [`super::ipam`]), resolv.conf or hostname, hostPort.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use ipnet::IpNet;
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
    pub ip: IpAddr,
    /// Its prefix length (the podCIDR's).
    pub prefix_len: u8,
}

/// What [`setup_pod`] built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The pod namespace.
    pub netns: String,
    /// The pod addresses, one per podCIDR, in the order given (the primary first).
    pub addresses: Vec<PodAddress>,
    /// The gateways (the bridge's addresses), in the same order.
    pub gateways: Vec<IpAddr>,
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

fn check_cidr(pod_cidr: IpNet) -> Result<IpNet, NetError> {
    let max = if pod_cidr.addr().is_ipv4() { 30 } else { 126 };
    if pod_cidr.prefix_len() > max {
        return Err(NetError::Invalid(format!(
            "podCIDR {pod_cidr} is too small"
        )));
    }
    Ok(pod_cidr.trunc())
}

/// Write sysctls (`(path under /proc/sys, value)`) in namespace `ns` (`None`: the caller's), from a
/// thread inside it (`/proc/sys/net` shows the namespace of the thread that opens it).
pub(crate) fn write_sysctls(ns: Option<&str>, values: &[(&str, &str)]) -> Result<(), NetError> {
    let write = || {
        for (path, value) in values {
            std::fs::write(format!("/proc/sys/{path}"), value)
                .map_err(|e| (path.to_string(), e))?;
        }
        Ok(())
    };
    let r: Result<(), (String, std::io::Error)> = match ns {
        Some(name) => netns::run_in(name, write)?,
        None => write(),
    };
    r.map_err(|(path, source)| NetError::Io {
        op: format!("write sysctl {path} in {}", ns.unwrap_or("current")),
        source,
    })
}

/// The sysctls that keep the kernel from adding IPv6 addresses and routes of its own (router
/// advertisements, SLAAC) to links made afterwards in a namespace, and to its existing ones.
pub const IPV6_QUIET: [(&str, &str); 4] = [
    ("net/ipv6/conf/all/accept_ra", "0"),
    ("net/ipv6/conf/default/accept_ra", "0"),
    ("net/ipv6/conf/all/autoconf", "0"),
    ("net/ipv6/conf/default/autoconf", "0"),
];

/// Enable IPv4 forwarding in namespace `ns` (`None`: the caller's).
pub fn enable_ip_forward(ns: Option<&str>) -> Result<(), NetError> {
    write_sysctls(ns, &[("net/ipv4/ip_forward", "1")])
}

/// Enable IPv6 forwarding in namespace `ns` (`None`: the caller's), with router advertisements
/// and autoconfiguration off ([`IPV6_QUIET`]).
pub fn enable_ipv6_forward(ns: Option<&str>) -> Result<(), NetError> {
    let mut values = IPV6_QUIET.to_vec();
    values.push(("net/ipv6/conf/all/forwarding", "1"));
    write_sysctls(ns, &values)
}

/// Ensure the node bridge `cni0` in `node_ns`: present, up, with the gateway address of each of
/// `pod_cidrs` (`.1/<prefix>`, `::1/<prefix>`), and forwarding on for each family present.
/// Idempotent.
pub async fn ensure_bridge(node_ns: Option<&str>, pod_cidrs: &[IpNet]) -> Result<(), NetError> {
    let cidrs = pod_cidrs
        .iter()
        .map(|c| check_cidr(*c))
        .collect::<Result<Vec<_>, _>>()?;
    if cidrs.iter().any(|c| c.addr().is_ipv6()) {
        // Before the bridge exists, so it is made with RAs off.
        enable_ipv6_forward(node_ns)?;
    }
    let node = connect(node_ns).await?;
    let index = ensure_bridge_link(&node, BRIDGE).await?;
    for cidr in &cidrs {
        node.ensure_addr(index, ipam::gateway(*cidr), cidr.prefix_len())
            .await?;
    }
    if cidrs.iter().any(|c| c.addr().is_ipv4()) {
        enable_ip_forward(node_ns)?;
    }
    Ok(())
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
/// `node_ns`, for each `(podCIDR, ip)` of `addrs` (one per family, primary first)
/// `ip/<podCIDR prefix>` on the pod's `eth0` and a default route via that podCIDR's gateway, and `lo`
/// up. `mtu` sets both veth ends (e.g. 1450 under VXLAN); `None` keeps the kernel default.
///
/// Idempotent: a pod whose veth already exists gets a fresh pair (the old one is deleted first), so a
/// set-up interrupted half-way can simply be retried. [`ensure_bridge`] must have run.
pub async fn setup_pod(
    node_ns: Option<&str>,
    pod_ns: &str,
    addrs: &[(IpNet, IpAddr)],
    mtu: Option<u32>,
) -> Result<PodNetwork, NetError> {
    if addrs.is_empty() {
        return Err(NetError::Invalid(format!("pod {pod_ns} has no address")));
    }
    let mut checked = Vec::new();
    for (cidr, ip) in addrs {
        let cidr = check_cidr(*cidr)?;
        if !cidr.contains(ip) {
            return Err(NetError::Invalid(format!(
                "pod IP {ip} is not in podCIDR {cidr}"
            )));
        }
        checked.push((cidr, *ip, ipam::gateway(cidr)));
    }
    let host = host_veth_name(pod_ns);
    let peer = peer_tmp_name(pod_ns);

    netns::create(pod_ns)?;
    if checked.iter().any(|(_, ip, _)| ip.is_ipv6()) {
        // Before `eth0` arrives, so it never takes an autoconfigured address or an RA route.
        write_sysctls(Some(pod_ns), &IPV6_QUIET)?;
    }
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
    for (cidr, ip, _) in &checked {
        pod.ensure_addr(eth, *ip, cidr.prefix_len()).await?;
    }
    pod.up(eth).await?;
    pod.lo_up().await?;
    for (_, _, gateway) in &checked {
        let default = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(*gw)
                .output_interface(eth)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(*gw)
                .output_interface(eth)
                .build(),
        };
        ok_if_exists(
            pod.h.route().add(default).execute().await,
            format!("add default route via {gateway} in {pod_ns}"),
        )?;
    }

    Ok(PodNetwork {
        netns: pod_ns.to_owned(),
        addresses: checked
            .iter()
            .map(|(cidr, ip, _)| PodAddress {
                ip: *ip,
                prefix_len: cidr.prefix_len(),
            })
            .collect(),
        gateways: checked.iter().map(|(_, _, gw)| *gw).collect(),
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

/// Read back the addresses of an existing pod namespace's `eth0` (to adopt pods after an agent
/// restart): IPv4 ones first, then IPv6 ones other than link-local (`fe80::/10`, which the kernel
/// adds by itself). Empty when the namespace, its `eth0` or any such address is missing.
pub async fn inspect_pod(pod_ns: &str) -> Result<Vec<PodAddress>, NetError> {
    if !netns::exists(pod_ns)? {
        return Ok(Vec::new());
    }
    let pod = connect(Some(pod_ns)).await?;
    let Some(eth) = pod.link(POD_IFNAME).await? else {
        return Ok(Vec::new());
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
    let mut out: Vec<PodAddress> = addrs
        .iter()
        .filter_map(|m| {
            m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) if !is_link_local(ip) => Some(PodAddress {
                    ip: *ip,
                    prefix_len: m.header.prefix_len,
                }),
                _ => None,
            })
        })
        .collect();
    out.sort_by_key(|a| a.ip.is_ipv6());
    Ok(out)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => false,
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

//! Cross-node pod routes, flannel's two backends, reconciled level-triggered from the node list.
//!
//! - **host-gw** ([`sync_host_gw`]): for every other node and family, `podCIDR via nodeIP` (the nodes
//!   share a link): on a dual-stack node `10.244.1.0/24 via 172.31.0.11` and
//!   `fd00:10:244:1::/64 via fd00:172:31::11`. A [`NodeRoute`] is one family of one node.
//! - **VXLAN** ([`sync_vxlan`]): a device [`VXLAN_DEVICE`] (`pontifex.1`, VNI 1, UDP port 8472, learning
//!   off) whose address is the node's podCIDR network address as a /32 (flannel's `10.244.X.0/32`), and
//!   for every other node: `podCIDR via <their .0> dev pontifex.1 onlink`, a permanent neighbour entry
//!   `<their .0> → their VTEP MAC` and an FDB entry `their VTEP MAC → dst their node IP`.
//!
//! Ownership: the routes we add carry protocol [`RTPROT_PONTIFEX`], and a sync only ever replaces or
//! deletes routes with that protocol, so routes of anyone else (connected routes, an admin's static
//! routes, another CNI's) are never touched. Both backends share the protocol, so switching backend
//! replaces the other backend's routes; [`remove_vxlan`] deletes the VXLAN device.
//!
//! VTEP MAC: flannel publishes each node's VTEP MAC in a Node annotation; we derive it from the node IP
//! instead ([`vtep_mac`]: `0e:fe:` followed by the four address bytes, a locally administered unicast
//! address), so every node can compute every other node's MAC and no annotation is needed.
//!
//! IPv6 under VXLAN: [`sync_vxlan`] encapsulates IPv4 only (flannel's IPv6 VXLAN needs a second
//! device, `flannel-v6.1`, not built here); the IPv6 podCIDRs get host-gw routes instead, which
//! works only where the nodes share a link (the lab does). The two families are planned apart, so
//! one family's sync never touches the other's routes.
//!
//! What it does not do: IPv6 VXLAN, routes in other tables, the VXLAN MTU of pods (set it on the
//! veths: 1450).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};
use rtnetlink::{LinkUnspec, LinkVxlan, RouteMessageBuilder};

use super::NetError;
use super::nl::{Nl, connect, link_mac, nl_err, ok_if_exists, ok_if_gone};

/// The route protocol number marking pontifex's routes (`ip route show proto 88`). Numbers above
/// `RTPROT_STATIC` (4) are free for routing daemons; 88 is not among the well-known ones in iproute2's
/// `rt_protos` (bird 12, zebra 11, bgp 186, ...) nor used by the common CNIs (Calico uses 80).
pub const RTPROT_PONTIFEX: u8 = 88;
/// The VXLAN device name.
pub const VXLAN_DEVICE: &str = "pontifex.1";
/// The VXLAN network identifier (flannel's default).
pub const VXLAN_VNI: u32 = 1;
/// The VXLAN UDP port (flannel's and the Linux default, not IANA's 4789).
pub const VXLAN_PORT: u16 = 8472;
/// The VXLAN device MTU: a 1500-byte underlay minus the 50 bytes of VXLAN over IPv4 encapsulation.
pub const VXLAN_MTU: u32 = 1450;

/// One family of a node as routing sees it (a dual-stack node is two of these, same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRoute {
    /// The Node name.
    pub name: String,
    /// Its internal IP of this family (the underlay address).
    pub node_ip: IpAddr,
    /// Its podCIDR of this family.
    pub pod_cidr: IpNet,
}

impl NodeRoute {
    fn is_v4(&self) -> bool {
        self.node_ip.is_ipv4() && self.pod_cidr.addr().is_ipv4()
    }

    fn is_v6(&self) -> bool {
        self.node_ip.is_ipv6() && self.pod_cidr.addr().is_ipv6()
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Routes added (destinations).
    pub added: Vec<IpNet>,
    /// Routes whose next hop changed.
    pub replaced: Vec<IpNet>,
    /// Our routes that matched no node any more.
    pub deleted: Vec<IpNet>,
}

/// A route as we want it, or as we found it (only our protocol's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub(crate) dst: IpNet,
    pub(crate) gateway: IpAddr,
    /// Output link: set for VXLAN routes; `None` for host-gw (the kernel picks the link to the gateway).
    pub(crate) oif: Option<u32>,
}

/// The changes that turn `existing` (our routes) into `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) add: Vec<Route>,
    pub(crate) replace: Vec<Route>,
    pub(crate) delete: Vec<Route>,
}

/// Compare by destination: missing ones are added, those with another next hop replaced, the rest of
/// ours deleted. An existing route whose link we do not care about (`desired.oif == None`) matches on
/// the gateway alone.
pub(crate) fn plan(existing: &[Route], desired: &[Route]) -> Plan {
    let want: BTreeMap<IpNet, Route> = desired.iter().map(|r| (r.dst, *r)).collect();
    let mut have: BTreeMap<IpNet, Vec<Route>> = BTreeMap::new();
    for r in existing {
        have.entry(r.dst).or_default().push(*r);
    }
    let mut p = Plan::default();
    for (dst, w) in &want {
        match have.get(dst) {
            None => p.add.push(*w),
            Some(rs) => {
                let same =
                    |r: &Route| r.gateway == w.gateway && (w.oif.is_none() || r.oif == w.oif);
                if !(rs.len() == 1 && same(&rs[0])) {
                    // Duplicates (another metric) collapse into one through replace + delete of the rest.
                    p.replace.push(*w);
                    p.delete.extend(rs.iter().skip(1).copied());
                }
            }
        }
    }
    for (dst, rs) in &have {
        if !want.contains_key(dst) {
            p.delete.extend(rs.iter().copied());
        }
    }
    p
}

/// host-gw: one route per other node with a podCIDR, via its node IP (of the podCIDR's family;
/// an entry whose node IP and podCIDR differ in family is skipped).
pub(crate) fn desired_host_gw(self_name: &str, nodes: &[NodeRoute]) -> Vec<Route> {
    nodes
        .iter()
        .filter(|n| n.name != self_name && (n.is_v4() || n.is_v6()))
        .map(|n| Route {
            dst: n.pod_cidr.trunc(),
            gateway: n.node_ip,
            oif: None,
        })
        .collect()
}

/// The VTEP MAC of the node with underlay address `node_ip`: `0e:fe:a:b:c:d` (locally administered bit
/// set, multicast bit clear).
pub fn vtep_mac(node_ip: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = node_ip.octets();
    [0x0e, 0xfe, a, b, c, d]
}

/// Our routes of one family (`v6`: IPv6, else IPv4).
async fn our_routes(nl: &Nl, v6: bool) -> Result<Vec<Route>, NetError> {
    let query = if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    };
    let all: Vec<RouteMessage> =
        nl.h.route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err(format!("list routes in {}", nl.ns)))?;
    Ok(all
        .iter()
        .filter(|m| {
            m.header.protocol == RouteProtocol::Other(RTPROT_PONTIFEX)
                && m.header.table == RouteHeader::RT_TABLE_MAIN
        })
        .filter_map(|m| {
            let unspecified = if v6 {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            };
            let mut dst = None;
            let mut gateway = None;
            let mut oif = None;
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(d)) => dst = Some((*d).into()),
                    RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = Some((*d).into()),
                    RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some((*g).into()),
                    RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gateway = Some((*g).into()),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let dst = IpNet::new(
                dst.unwrap_or(unspecified),
                m.header.destination_prefix_length,
            )
            .ok()?;
            Some(Route {
                dst,
                gateway: gateway.unwrap_or(unspecified),
                oif,
            })
        })
        .collect())
}

fn route_message(r: &Route, onlink: bool) -> Result<RouteMessage, NetError> {
    let mut m = match (r.dst, r.gateway) {
        (IpNet::V4(dst), IpAddr::V4(gw)) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(gw)
            .build(),
        (IpNet::V6(dst), IpAddr::V6(gw)) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(dst.network(), dst.prefix_len())
            .gateway(gw)
            .build(),
        (dst, gw) => {
            return Err(NetError::Invalid(format!(
                "route {dst} via {gw}: the gateway is of another family"
            )));
        }
    };
    m.header.protocol = RouteProtocol::Other(RTPROT_PONTIFEX);
    if let Some(oif) = r.oif {
        m.attributes.push(RouteAttribute::Oif(oif));
    }
    if onlink {
        m.header.flags |= netlink_packet_route::route::RouteFlags::Onlink;
    }
    Ok(m)
}

async fn apply(nl: &Nl, p: &Plan, onlink: bool) -> Result<SyncReport, NetError> {
    let mut report = SyncReport::default();
    // Delete first: a stale route may hold a destination that a replacement reuses.
    for r in &p.delete {
        let msg = route_message(r, false)?;
        ok_if_gone(
            nl.h.route().del(msg).execute().await,
            format!("delete route {} in {}", r.dst, nl.ns),
        )?;
        report.deleted.push(r.dst);
    }
    for r in &p.add {
        let msg = route_message(r, onlink)?;
        ok_if_exists(
            nl.h.route().add(msg).execute().await,
            format!("add route {} via {} in {}", r.dst, r.gateway, nl.ns),
        )?;
        report.added.push(r.dst);
    }
    for r in &p.replace {
        let msg = route_message(r, onlink)?;
        nl.h.route()
            .add(msg)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!(
                "replace route {} via {} in {}",
                r.dst, r.gateway, nl.ns
            )))?;
        report.replaced.push(r.dst);
    }
    Ok(report)
}

/// host-gw: make the routes of `node_ns` (`None`: the caller's namespace) be exactly one
/// `podCIDR via nodeIP` per node and family of `nodes` other than `self_name`, for IPv4 and IPv6.
/// Only routes with protocol [`RTPROT_PONTIFEX`] are replaced or deleted. Every node IP must be on
/// a link of this node.
pub async fn sync_host_gw(
    node_ns: Option<&str>,
    self_name: &str,
    nodes: &[NodeRoute],
) -> Result<SyncReport, NetError> {
    let nl = connect(node_ns).await?;
    let mut report = host_gw_family(&nl, self_name, nodes, false).await?;
    report.merge(host_gw_family(&nl, self_name, nodes, true).await?);
    Ok(report)
}

/// host-gw for one family: only that family's routes are planned (and so deleted).
async fn host_gw_family(
    nl: &Nl,
    self_name: &str,
    nodes: &[NodeRoute],
    v6: bool,
) -> Result<SyncReport, NetError> {
    let family: Vec<NodeRoute> = nodes
        .iter()
        .filter(|n| if v6 { n.is_v6() } else { n.is_v4() })
        .cloned()
        .collect();
    let existing = our_routes(nl, v6).await?;
    apply(
        nl,
        &plan(&existing, &desired_host_gw(self_name, &family)),
        false,
    )
    .await
}

impl SyncReport {
    fn merge(&mut self, other: SyncReport) {
        self.added.extend(other.added);
        self.replaced.extend(other.replaced);
        self.deleted.extend(other.deleted);
    }
}

/// One IPv4 family of a node, for VXLAN.
struct V4Node {
    node_ip: Ipv4Addr,
    pod_cidr: Ipv4Net,
}

fn v4_node(n: &NodeRoute) -> Option<V4Node> {
    match (n.node_ip, n.pod_cidr) {
        (IpAddr::V4(node_ip), IpNet::V4(pod_cidr)) => Some(V4Node { node_ip, pod_cidr }),
        _ => None,
    }
}

/// VXLAN: ensure the device [`VXLAN_DEVICE`] for this node (`self_name` must be in `nodes` with an
/// IPv4 entry) and make its routes, neighbour and FDB entries match the other nodes' IPv4 entries;
/// stale ones are removed. Our host-gw routes for the same podCIDRs are replaced. IPv6 entries get
/// host-gw routes (see the module documentation).
pub async fn sync_vxlan(
    node_ns: Option<&str>,
    self_name: &str,
    nodes: &[NodeRoute],
) -> Result<SyncReport, NetError> {
    let me = nodes
        .iter()
        .filter(|n| n.name == self_name)
        .find_map(v4_node)
        .ok_or_else(|| {
            NetError::Invalid(format!(
                "node {self_name} is not in the node list with an IPv4 address and podCIDR"
            ))
        })?;
    let nl = connect(node_ns).await?;
    let vtep = ensure_vtep(&nl, &me).await?;
    let others: Vec<V4Node> = nodes
        .iter()
        .filter(|n| n.name != self_name)
        .filter_map(v4_node)
        .collect();

    // FDB: their MAC → their node IP (on the bridge family of the VXLAN device, NTF_SELF).
    let want_fdb: BTreeMap<[u8; 6], Ipv4Addr> = others
        .iter()
        .map(|n| (vtep_mac(n.node_ip), n.node_ip))
        .collect();
    for (mac, ip) in &want_fdb {
        nl.h.neighbours()
            .add_bridge(vtep, mac)
            .destination(IpAddr::V4(*ip))
            .flags(NeighbourFlags::Own)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!("add fdb {mac:02x?} dst {ip} in {}", nl.ns)))?;
    }
    for m in neighbours(&nl, AddressFamily::Bridge, vtep).await? {
        let Some(mac) = neigh_lladdr(&m) else {
            continue;
        };
        let stale = match <[u8; 6]>::try_from(mac) {
            Ok(mac) => want_fdb.get(&mac) != neigh_dst(&m).as_ref(),
            Err(_) => true,
        };
        if stale {
            ok_if_gone(
                nl.h.neighbours().del(m).execute().await,
                format!("delete stale fdb entry in {}", nl.ns),
            )?;
        }
    }

    // Neighbours: their .0 → their MAC, permanent.
    let want_neigh: BTreeMap<Ipv4Addr, [u8; 6]> = others
        .iter()
        .map(|n| (n.pod_cidr.network(), vtep_mac(n.node_ip)))
        .collect();
    for (ip, mac) in &want_neigh {
        nl.h.neighbours()
            .add(vtep, IpAddr::V4(*ip))
            .link_layer_address(mac)
            .replace()
            .execute()
            .await
            .map_err(nl_err(format!("add neighbour {ip} in {}", nl.ns)))?;
    }
    for m in neighbours(&nl, AddressFamily::Inet, vtep).await? {
        let keep = neigh_dst(&m).is_some_and(|ip| want_neigh.contains_key(&ip));
        if !keep {
            ok_if_gone(
                nl.h.neighbours().del(m).execute().await,
                format!("delete stale neighbour in {}", nl.ns),
            )?;
        }
    }

    let desired: Vec<Route> = others
        .iter()
        .map(|n| Route {
            dst: IpNet::V4(n.pod_cidr.trunc()),
            gateway: IpAddr::V4(n.pod_cidr.network()),
            oif: Some(vtep),
        })
        .collect();
    let existing = our_routes(&nl, false).await?;
    let mut report = apply(&nl, &plan(&existing, &desired), true).await?;
    report.merge(host_gw_family(&nl, self_name, nodes, true).await?);
    Ok(report)
}

/// Create (or recreate, if its MAC says it belongs to another node IP) the VTEP; returns its index.
async fn ensure_vtep(nl: &Nl, me: &V4Node) -> Result<u32, NetError> {
    let mac = vtep_mac(me.node_ip);
    if let Some(link) = nl.link(VXLAN_DEVICE).await? {
        if link_mac(&link) == Some(&mac[..]) {
            let index = link.header.index;
            nl.up(index).await?;
            nl.ensure_addr(index, me.pod_cidr.network(), 32).await?;
            return Ok(index);
        }
        nl.del_link(VXLAN_DEVICE).await?;
    }
    let msg = LinkVxlan::new(VXLAN_DEVICE, VXLAN_VNI)
        .port(VXLAN_PORT)
        .local(me.node_ip)
        .learning(false)
        .mtu(VXLAN_MTU)
        .address(mac.to_vec())
        .build();
    nl.h.link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err(format!("add {VXLAN_DEVICE} in {}", nl.ns)))?;
    let index = nl.index(VXLAN_DEVICE).await?;
    nl.h.link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err(format!("set {VXLAN_DEVICE} up")))?;
    nl.ensure_addr(index, me.pod_cidr.network(), 32).await?;
    Ok(index)
}

/// Delete the VXLAN device (its routes, neighbours and FDB entries go with it). Idempotent.
pub async fn remove_vxlan(node_ns: Option<&str>) -> Result<(), NetError> {
    connect(node_ns).await?.del_link(VXLAN_DEVICE).await
}

async fn neighbours(
    nl: &Nl,
    family: AddressFamily,
    index: u32,
) -> Result<Vec<NeighbourMessage>, NetError> {
    let all: Vec<NeighbourMessage> =
        nl.h.neighbours()
            .get()
            .set_address_family(family)
            .execute()
            .try_collect()
            .await
            .map_err(nl_err(format!("list neighbours in {}", nl.ns)))?;
    Ok(all
        .into_iter()
        .filter(|m| m.header.ifindex == index)
        .collect())
}

/// The IPv4 destination of a neighbour or FDB entry. In bridge-family (FDB) dumps the parser cannot know
/// the address family of `NDA_DST` and hands over raw bytes, so four raw bytes count as IPv4 too.
fn neigh_dst(m: &NeighbourMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
        }
        _ => None,
    })
}

fn neigh_lladdr(m: &NeighbourMessage) -> Option<&[u8]> {
    m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => Some(b.as_slice()),
        _ => None,
    })
}

/// The destinations of a node list, for callers that want to log what a sync covers.
pub fn pod_cidrs(nodes: &[NodeRoute]) -> BTreeSet<IpNet> {
    nodes.iter().map(|n| n.pod_cidr.trunc()).collect()
}

#[cfg(test)]
mod tests;

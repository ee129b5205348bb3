//! The multi-node lab underlay (`pontifex up --nodes N`): in the root namespace a bridge `<prefix>0`
//! (the host may take an address on it, `172.31.0.1/24` by default, to reach NodePorts like an outside
//! client), and per node a namespace `<prefix>-node-<name>` joined to the bridge by a veth (root end
//! `<prefix>v<i>`, node end `eth0` with `172.31.0.(10+i)/24`), `lo` up.
//!
//! The lab is sealed: no default route anywhere, only connected routes (and the pod routes the agents
//! add), so nothing in the lab reaches outside the machine. Bridged frames skip iptables
//! (`nf_call_iptables` off), so a host firewall that drops forwarded traffic does not cut the lab.
//!
//! Everything the lab makes carries the prefix: [`destroy`] removes every namespace `<prefix>-*` (node
//! namespaces, and pod namespaces named `<prefix>-pod-*` by the agents), the bridge and the root veth
//! ends. Tests use a unique prefix each (e.g. `t<pid><n>`), so labs can run side by side as long as at
//! most one of them gives the host an address in a given subnet, and no prefix is another prefix
//! followed by `v` or `n` (the bridge `t1v0` of lab `t1v` would look like veth 0 of lab `t1`).
//!
//! `nf_call_iptables` is off on the bridge, but where br_netfilter is loaded the root namespace's
//! `net.bridge.bridge-nf-call-iptables=1` still sends bridged lab frames through the host's FORWARD chain.
//!
//! For the service proxy: [`route_in_node`] gives a node namespace a route for the Service CIDR (the lab
//! has no default route, and a connect to a ClusterIP fails before the nat hooks unless some route
//! covers it), and [`route_from_host`] routes the LoadBalancer pool (172.31.255.0/24) from the host to
//! one node, so LoadBalancer and external IPs are reachable from the host like from outside. Both are
//! routes on lab links only: they go away with the lab.
//!
//! Dual-stack ([`LabConfig::dual_stack`]): the underlay also carries ULA IPv6, `fd00:172:31::/64`, the
//! host (if it takes an address) at `::1` and node `i` at the IPv6 image of its IPv4 address's last
//! byte (`172.31.0.10` ↔ `fd00:172:31::10`), added with `nodad`; router advertisements and
//! autoconfiguration are off in the node namespaces and on the lab's root links, and nothing routes
//! IPv6 anywhere but to the lab's own ULA prefixes. Without it (the default) nothing IPv6 is
//! configured at all.
//!
//! What it does not do: NAT to outside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use rtnetlink::{LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::nl::{self, connect, link_name, nl_err, ok_if_exists};
use super::sandbox::ensure_bridge_link;
use super::{NetError, netns};

/// Longest prefix: `<prefix>v<index>` must fit a 15-byte link name with up to 4 index digits.
pub const MAX_PREFIX_LEN: usize = 10;

/// How to build a lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabConfig {
    /// Prefix of every name the lab makes (`pfx` for `pontifex up`).
    pub prefix: String,
    /// The underlay subnet; node `i` gets host address `10 + i` in it.
    pub underlay: Ipv4Net,
    /// The host's address on the lab bridge (`172.31.0.1`), or `None` to keep the host out of the lab
    /// (no address, no route in the root namespace: what parallel tests want).
    pub host_ip: Option<Ipv4Addr>,
    /// The IPv6 underlay of a dual-stack lab (`fd00:172:31::/64`); `None`: IPv4 only.
    pub underlay6: Option<Ipv6Net>,
    /// The host's IPv6 address on the lab bridge (`fd00:172:31::1`), if it takes one (only with
    /// `underlay6`).
    pub host_ip6: Option<Ipv6Addr>,
}

impl LabConfig {
    /// The defaults: underlay `172.31.0.0/24`, host at `.1`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            underlay: Ipv4Net::new(Ipv4Addr::new(172, 31, 0, 0), 24).expect("valid prefix length"),
            host_ip: Some(Ipv4Addr::new(172, 31, 0, 1)),
            underlay6: None,
            host_ip6: None,
        }
    }

    /// Add the IPv6 underlay `fd00:172:31::/64` (host at `::1` when the host takes an IPv4
    /// address too).
    pub fn dual_stack(mut self) -> Self {
        self.underlay6 = Some(
            Ipv6Net::new(Ipv6Addr::new(0xfd00, 0x172, 0x31, 0, 0, 0, 0, 0), 64)
                .expect("valid prefix length"),
        );
        self.host_ip6 = self
            .host_ip
            .map(|_| Ipv6Addr::new(0xfd00, 0x172, 0x31, 0, 0, 0, 0, 1));
        self
    }
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// The node name.
    pub name: String,
    /// Its namespace (`<prefix>-node-<name>`).
    pub netns: String,
    /// Its underlay address (on its `eth0`).
    pub ip: Ipv4Addr,
    /// Its IPv6 underlay address, in a dual-stack lab.
    pub ip6: Option<Ipv6Addr>,
}

/// The lab bridge's name.
pub fn bridge_name(prefix: &str) -> String {
    format!("{prefix}0")
}

/// The namespace of node `name`.
pub fn node_netns(prefix: &str, name: &str) -> String {
    format!("{prefix}-node-{name}")
}

/// The namespace name for a pod, so that [`destroy`] finds it (`pod_id`: the pod UID or a part of it).
pub fn pod_netns(prefix: &str, pod_id: &str) -> String {
    format!("{prefix}-pod-{pod_id}")
}

fn check_prefix(prefix: &str) -> Result<(), NetError> {
    if prefix.is_empty()
        || prefix.len() > MAX_PREFIX_LEN
        || !prefix.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(NetError::Invalid(format!(
            "lab prefix {prefix:?} must be 1 to {MAX_PREFIX_LEN} ASCII letters or digits"
        )));
    }
    Ok(())
}

/// The underlay address of node `index`.
pub fn node_ip(cfg: &LabConfig, index: usize) -> Result<Ipv4Addr, NetError> {
    let net = cfg.underlay.trunc();
    let ip = u32::from(net.network()) + 10 + u32::try_from(index).unwrap_or(u32::MAX - 20);
    if ip >= u32::from(net.broadcast()) {
        return Err(NetError::Invalid(format!(
            "node index {index} does not fit the underlay {net}"
        )));
    }
    Ok(Ipv4Addr::from(ip))
}

/// The IPv6 underlay address of node `index`: the interface identifier spells the IPv4 address's
/// last byte in hex digits (`172.31.0.10` → `fd00:172:31::10`), so the two read alike.
pub fn node_ip6(cfg: &LabConfig, index: usize) -> Result<Option<Ipv6Addr>, NetError> {
    let Some(net) = cfg.underlay6 else {
        return Ok(None);
    };
    let v4 = node_ip(cfg, index)?;
    let id = u16::from_str_radix(&v4.octets()[3].to_string(), 16).expect("decimal digits are hex");
    let mut seg = net.trunc().network().segments();
    seg[7] = id;
    Ok(Some(Ipv6Addr::from(seg)))
}

/// Per-link sysctls that keep the kernel from configuring IPv6 on a lab link by itself.
fn quiet_link(link: &str) -> [(String, &'static str); 2] {
    [
        (format!("net/ipv6/conf/{link}/accept_ra"), "0"),
        (format!("net/ipv6/conf/{link}/autoconf"), "0"),
    ]
}

fn quiet_links(ns: Option<&str>, links: &[&str]) -> Result<(), NetError> {
    let owned: Vec<(String, &str)> = links.iter().flat_map(|l| quiet_link(l)).collect();
    let values: Vec<(&str, &str)> = owned.iter().map(|(p, v)| (p.as_str(), *v)).collect();
    super::sandbox::write_sysctls(ns, &values)
}

/// Whether `link` is one of the root-namespace links of the lab with `prefix`.
pub(crate) fn is_lab_link(prefix: &str, link: &str) -> bool {
    let Some(rest) = link.strip_prefix(prefix) else {
        return false;
    };
    if rest == "0" {
        return true;
    }
    match rest.strip_prefix('v').or_else(|| rest.strip_prefix('n')) {
        Some(digits) => !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// Build the lab with `nodes` (in that order: node `i` gets underlay address `10 + i`), after removing
/// whatever a crashed run with the same prefix left behind.
pub async fn up(cfg: &LabConfig, nodes: &[&str]) -> Result<Vec<LabNode>, NetError> {
    check_prefix(&cfg.prefix)?;
    destroy(&cfg.prefix).await?;
    ensure_underlay(cfg).await?;
    let mut out = Vec::new();
    for (i, name) in nodes.iter().enumerate() {
        out.push(add_node(cfg, i, name).await?);
    }
    Ok(out)
}

/// Ensure the root bridge (and the host address on it, if configured). Idempotent.
pub async fn ensure_underlay(cfg: &LabConfig) -> Result<(), NetError> {
    check_prefix(&cfg.prefix)?;
    let root = connect(None).await?;
    let name = bridge_name(&cfg.prefix);
    let bridge = ensure_bridge_link(&root, &name).await?;
    if let Some(host) = cfg.host_ip {
        root.ensure_addr(bridge, host, cfg.underlay.prefix_len())
            .await?;
    }
    if let Some(net) = cfg.underlay6 {
        quiet_links(None, &[&name])?;
        if let Some(host) = cfg.host_ip6 {
            root.ensure_addr(bridge, host, net.prefix_len()).await?;
        }
    }
    Ok(())
}

/// Add node `name` as number `index` (its namespace, veth and address). Idempotent: an existing node with
/// that index is rebuilt.
pub async fn add_node(cfg: &LabConfig, index: usize, name: &str) -> Result<LabNode, NetError> {
    check_prefix(&cfg.prefix)?;
    let ip = node_ip(cfg, index)?;
    let ip6 = node_ip6(cfg, index)?;
    let ns = node_netns(&cfg.prefix, name);
    let outer = format!("{}v{index}", cfg.prefix);
    let inner_tmp = format!("{}n{index}", cfg.prefix);
    nl::check_ifname(&outer)?;
    netns::create(&ns)?;
    if ip6.is_some() {
        // Before eth0 arrives: the links it gets inherit `default`.
        super::sandbox::write_sysctls(Some(&ns), &super::sandbox::IPV6_QUIET)?;
    }
    let root = connect(None).await?;
    let node = connect(Some(&ns)).await?;
    let bridge = root.index(&bridge_name(&cfg.prefix)).await?;
    root.del_link(&outer).await?;
    root.del_link(&inner_tmp).await?;
    node.del_link("eth0").await?;

    root.h
        .link()
        .add(LinkVeth::new(&outer, &inner_tmp).build())
        .execute()
        .await
        .map_err(nl_err(format!("add veth {outer}")))?;
    let inner = root.index(&inner_tmp).await?;
    let ns_file = netns::open(&ns)?;
    root.h
        .link()
        .set(
            LinkUnspec::new_with_index(inner)
                .setns_by_fd(ns_file.as_raw_fd())
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("move {inner_tmp} into {ns}")))?;
    drop(ns_file);
    let outer_index = root.index(&outer).await?;
    if ip6.is_some() {
        quiet_links(None, &[&outer])?;
    }
    root.h
        .link()
        .set(
            LinkUnspec::new_with_index(outer_index)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("attach {outer} to the lab bridge")))?;

    let eth = node.index(&inner_tmp).await?;
    node.h
        .link()
        .set(
            LinkUnspec::new_with_index(eth)
                .name("eth0".to_owned())
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err(format!("rename {inner_tmp} to eth0 in {ns}")))?;
    node.ensure_addr(eth, ip, cfg.underlay.prefix_len()).await?;
    if let (Some(ip6), Some(net)) = (ip6, cfg.underlay6) {
        node.ensure_addr(eth, ip6, net.prefix_len()).await?;
    }
    node.up(eth).await?;
    node.lo_up().await?;
    Ok(LabNode {
        name: name.to_owned(),
        netns: ns,
        ip,
        ip6,
    })
}

/// Route `cidr` (IPv4 or IPv6) out of the node's `eth0` in its namespace (a device route, no
/// gateway: a ClusterIP is DNATed in the output hook long before any neighbour lookup). Idempotent.
pub async fn route_in_node(node: &LabNode, cidr: impl Into<IpNet>) -> Result<(), NetError> {
    let cidr = cidr.into();
    let nl = connect(Some(&node.netns)).await?;
    let eth = nl.index("eth0").await?;
    let route = match cidr {
        IpNet::V4(c) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(c.network(), c.prefix_len())
            .output_interface(eth)
            .build(),
        IpNet::V6(c) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(c.network(), c.prefix_len())
            .output_interface(eth)
            .build(),
    };
    ok_if_exists(
        nl.h.route().add(route).execute().await,
        format!("add route {cidr} dev eth0 in {}", node.netns),
    )
}

/// Route `cidr` from the root namespace via `via` (a lab node's underlay address of the same
/// family, which must be on the lab bridge). The route lives on the lab bridge and goes when the lab
/// does. Idempotent.
pub async fn route_from_host(
    cfg: &LabConfig,
    cidr: impl Into<IpNet>,
    via: impl Into<IpAddr>,
) -> Result<(), NetError> {
    let (cidr, via) = (cidr.into(), via.into());
    check_prefix(&cfg.prefix)?;
    let on_underlay = match via {
        IpAddr::V4(v) => cfg.underlay.contains(&v),
        IpAddr::V6(v) => cfg.underlay6.is_some_and(|u| u.contains(&v)),
    };
    if !on_underlay {
        return Err(NetError::Invalid(format!(
            "{via} is not on the lab underlay {}{}",
            cfg.underlay,
            cfg.underlay6
                .map(|u| format!(" or {u}"))
                .unwrap_or_default()
        )));
    }
    let root = connect(None).await?;
    let bridge = root.index(&bridge_name(&cfg.prefix)).await?;
    let route = match (cidr, via) {
        (IpNet::V4(c), IpAddr::V4(v)) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(c.network(), c.prefix_len())
            .gateway(v)
            .output_interface(bridge)
            .build(),
        (IpNet::V6(c), IpAddr::V6(v)) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(c.network(), c.prefix_len())
            .gateway(v)
            .output_interface(bridge)
            .build(),
        (c, v) => {
            return Err(NetError::Invalid(format!(
                "route {c} via {v}: the gateway is of another family"
            )));
        }
    };
    ok_if_exists(
        root.h.route().add(route).execute().await,
        format!("add route {cidr} via {via} on the lab bridge"),
    )
}

/// SIGKILL every process living in one of the lab's namespaces (pods' containers, and what runs in a
/// node's own namespace): deleting a namespace's name does not end the processes inside it, and they
/// would keep it alive. Processes are found by the inode of their `/proc/<pid>/ns/net`. Returns how
/// many were signalled.
pub fn kill_processes(prefix: &str) -> Result<usize, NetError> {
    check_prefix(prefix)?;
    kill_processes_in(&netns::list(&format!("{prefix}-"))?)
}

/// SIGKILL every process living in one of the named namespaces. Returns how many were signalled.
pub fn kill_processes_in(namespaces: &[String]) -> Result<usize, NetError> {
    use std::os::unix::fs::MetadataExt as _;
    let mut inodes = std::collections::HashSet::new();
    for ns in namespaces {
        if let Ok(m) = std::fs::metadata(netns::path(ns)) {
            inodes.insert(m.ino());
        }
    }
    if inodes.is_empty() {
        return Ok(0);
    }
    let me = std::process::id();
    let mut killed = 0;
    let procs = std::fs::read_dir("/proc").map_err(|source| NetError::Io {
        op: "read /proc".into(),
        source,
    })?;
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        // `net:[4026532000]`; a process that just exited has no link any more.
        let Ok(link) = std::fs::read_link(entry.path().join("ns/net")) else {
            continue;
        };
        let inode = link
            .to_str()
            .and_then(|l| l.strip_prefix("net:["))
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|l| l.parse::<u64>().ok());
        if inode.is_some_and(|i| inodes.contains(&i))
            && let Ok(pid) = i32::try_from(pid)
            && nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
        {
            killed += 1;
        }
    }
    Ok(killed)
}

/// Remove everything the lab with `prefix` made: the processes in its namespaces, its root links
/// (bridge, veth ends), then every namespace named `<prefix>-*` (nodes and pods). Idempotent; also the
/// clean-up of a crashed run.
pub async fn destroy(prefix: &str) -> Result<(), NetError> {
    check_prefix(prefix)?;
    kill_processes(prefix)?;
    let root = connect(None).await?;
    for link in root.links().await? {
        if let Some(name) = link_name(&link)
            && is_lab_link(prefix, name)
        {
            nl::ok_if_gone(
                root.h.link().del(link.header.index).execute().await,
                format!("delete link {name}"),
            )?;
        }
    }
    for ns in netns::list(&format!("{prefix}-"))? {
        netns::delete(&ns)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

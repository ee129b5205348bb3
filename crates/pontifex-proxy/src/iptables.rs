//! kube-proxy's iptables mode, rendered byte for byte: the `iptables-restore --noflush` input
//! of one sync (`*filter` then `*nat`), with kube-proxy's chain names (sha256 + base32),
//! comments, `%0.10f` probabilities, `-m recent` affinity, the masquerade mark, partial syncs
//! (KEP-3453: per-service chains only for changed Services) and `-X` of stale chains.
//!
//! Output order is deterministic and equals the normalised order of kube-proxy's tests
//! (`sortIPTablesRules`): chains KUBE-NODEPORTS, KUBE-SERVICES, then the rest by name; rules
//! grouped per chain in that order; service ports in name order; `-X` lines last. Upstream's
//! own order follows Go map iteration, so any order with the same per-chain sequences is
//! what the kernel gets from kube-proxy.
//!
//! Not here: the jump rules from the built-in chains (`iptables -C/-I` on full syncs, the
//! applier's job), running `iptables-restore`, reading `iptables-save`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::hash::hash_prefix;
use crate::model::{Endpoint, FamilyView, IpFamily, ProxySnapshot, ServiceKey, ServicePortName};

/// kube-proxy's `largeClusterEndpointsThreshold`: above this many endpoints, per-endpoint
/// comments are dropped.
pub const LARGE_CLUSTER_ENDPOINTS_THRESHOLD: usize = 1000;

/// How "traffic from a pod on this cluster" is recognised (`--detect-local-mode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalDetector {
    /// No detector: ClusterIP traffic is never masqueraded, pods get no eTP=Local short-circuit.
    None,
    /// ClusterCIDR or NodeCIDR mode: sources inside this CIDR are local.
    Cidr(IpNet),
    /// BridgeInterface mode: packets entering through this interface are local.
    BridgeInterface(String),
    /// InterfaceNamePrefix mode: packets entering through interfaces with this prefix are local.
    InterfacePrefix(String),
}

impl LocalDetector {
    fn implemented(&self) -> bool {
        !matches!(self, LocalDetector::None)
    }

    /// iptables match for "local" (negated: "not local").
    fn iptables(&self, negate: bool) -> String {
        let not = if negate { "! " } else { "" };
        match self {
            LocalDetector::None => String::new(),
            LocalDetector::Cidr(net) => format!("{not}-s {net}"),
            LocalDetector::BridgeInterface(i) => format!("{not}-i {}", safe_ifname(i)),
            LocalDetector::InterfacePrefix(p) => format!("{not}-i {}+", safe_ifname(p)),
        }
    }
}

/// Interface names come from configuration; keep them to the characters Linux allows in
/// practice so they cannot inject syntax.
pub(crate) fn safe_ifname(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The proxier settings that shape the ruleset (kube-proxy's `NewProxier` arguments).
#[derive(Debug, Clone)]
pub struct IptablesConfig {
    /// Which family this ruleset is for (`iptables` or `ip6tables`).
    pub family: IpFamily,
    /// The node's primary IP (LoadBalancer source ranges containing it also admit the LB IPs).
    pub node_ip: Option<IpAddr>,
    /// Pod-traffic detection.
    pub local_detector: LocalDetector,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// `--iptables-masquerade-bit` (14 → mark 0x4000).
    pub masquerade_bit: u8,
    /// `iptables.localhostNodePorts` (IPv4 only).
    pub localhost_node_ports: bool,
    /// `--nodeport-addresses` resolved to this node's IPs; `None` = all local addresses.
    pub node_port_addresses: Option<Vec<IpAddr>>,
    /// `nf_conntrack_tcp_be_liberal` is set: no INVALID drop rule.
    pub conntrack_tcp_be_liberal: bool,
    /// The nfacct counter `ct_state_invalid_dropped_pkts` exists.
    pub nfacct_invalid: bool,
    /// The nfacct counter `localhost_nps_accepted_pkts` exists.
    pub nfacct_localhost_node_ports: bool,
    /// The iptables binary supports `--random-fully`.
    pub random_fully: bool,
}

impl Default for IptablesConfig {
    fn default() -> Self {
        IptablesConfig {
            family: IpFamily::V4,
            node_ip: None,
            local_detector: LocalDetector::None,
            masquerade_all: false,
            masquerade_bit: 14,
            localhost_node_ports: true,
            node_port_addresses: None,
            conntrack_tcp_be_liberal: false,
            nfacct_invalid: false,
            nfacct_localhost_node_ports: false,
            random_fully: false,
        }
    }
}

/// Which per-service chains a sync rewrites.
#[derive(Debug, Clone, Copy)]
pub enum SyncKind<'a> {
    /// Every chain.
    Full,
    /// Only the chains of these Services (KEP-3453); top-level chains are always rewritten.
    Partial(&'a BTreeSet<ServiceKey>),
}

/// One rendered sync.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The `iptables-restore --noflush` input.
    pub text: String,
    /// The per-service nat chains the ruleset uses (written or not). Keep it after a
    /// successful restore: it is the next sync's `existing_nat_chains`.
    pub active_nat_chains: BTreeSet<String>,
    /// Rules in the filter table after this sync, counting chains not rewritten by a
    /// partial sync (`sync_proxy_rules_iptables_total{table="filter"}`).
    pub filter_rules: usize,
    /// Rules in the nat table after this sync (`{table="nat"}`).
    pub nat_rules: usize,
}

/// `prefix` + the first 16 characters of `base32(sha256(hash_input))`: kube-proxy's chain
/// naming, for any prefix.
pub fn chain_name(prefix: &str, hash_input: &str) -> String {
    format!("{prefix}{}", hash_prefix(hash_input, 16))
}

/// `KUBE-SVC-…`, `KUBE-SVL-…`, `KUBE-EXT-…`, `KUBE-FW-…` for a service port.
pub fn service_chain(prefix: &str, spn: &ServicePortName) -> String {
    format!(
        "{prefix}{}",
        hash_prefix(&format!("{spn}{}", spn.protocol.as_str()), 16)
    )
}

/// `KUBE-SEP-…` for one endpoint of a service port.
pub fn endpoint_chain(spn: &ServicePortName, ep: &Endpoint) -> String {
    let input = format!("{spn}{}{}", spn.protocol.as_str(), ep.addr());
    format!("KUBE-SEP-{}", hash_prefix(&input, 16))
}

/// Go's `fmt.Sprintf("%0.10f", 1.0/float64(n))`.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Whether a chain name is one of the per-service chains this module owns.
pub fn is_service_chain(name: &str) -> bool {
    [
        "KUBE-SVC-",
        "KUBE-SVL-",
        "KUBE-EXT-",
        "KUBE-FW-",
        "KUBE-SEP-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A comment argument: characters outside a conservative set become `_` (names are validated
/// upstream of here; this is the last line of defence), quoted when it has spaces, as
/// kube-proxy writes them.
fn comment(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " ./:_->;,()[]".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.contains(' ') {
        format!("\"{clean}\"")
    } else {
        clean
    }
}

#[derive(Default)]
struct Table {
    declared: BTreeSet<String>,
    rules: BTreeMap<String, Vec<String>>,
    deleted: BTreeSet<String>,
}

impl Table {
    fn declare(&mut self, chain: &str) {
        self.declared.insert(chain.to_owned());
    }

    fn rule(&mut self, chain: &str, body: impl Into<String>) {
        self.rules
            .entry(chain.to_owned())
            .or_default()
            .push(body.into());
    }

    fn write(&self, name: &str, out: &mut String) {
        let order = |c: &String| match c.as_str() {
            "KUBE-NODEPORTS" => (0, c.clone()),
            "KUBE-SERVICES" => (1, c.clone()),
            _ if c.starts_with("KUBE-") => (2, c.clone()),
            _ => (3, c.clone()),
        };
        let mut chains: Vec<&String> = self.declared.iter().collect();
        chains.sort_by_key(|c| order(c));
        let _ = writeln!(out, "*{name}");
        for c in &chains {
            let _ = writeln!(out, ":{c} - [0:0]");
        }
        for c in &chains {
            for r in self.rules.get(*c).into_iter().flatten() {
                if r.is_empty() {
                    let _ = writeln!(out, "-A {c}");
                } else {
                    let _ = writeln!(out, "-A {c} {r}");
                }
            }
        }
        for c in &self.deleted {
            let _ = writeln!(out, "-X {c}");
        }
        out.push_str("COMMIT\n");
    }

    fn rule_count(&self) -> usize {
        self.rules.values().map(Vec::len).sum()
    }
}

/// Renders one sync. `existing_nat_chains` are the per-service nat chains known to exist in
/// the kernel (the previous sync's `active_nat_chains`, or read from `iptables-save -t nat`);
/// those no longer used are flushed and deleted (`-X`). Pass the previous render's
/// `nat_rules`-style counts via [`Rendered`] only for metrics; rendering needs nothing else.
pub fn render(
    cfg: &IptablesConfig,
    snap: &ProxySnapshot,
    kind: SyncKind<'_>,
    existing_nat_chains: &BTreeSet<String>,
) -> Rendered {
    let mut filter = Table::default();
    let mut nat = Table::default();
    let mark = format!("{:#x}", 1u32 << cfg.masquerade_bit);
    let ipv6 = cfg.family == IpFamily::V6;
    let proto_pfx = |p: &str| format!("-m {p} -p {p}");

    for c in [
        "KUBE-SERVICES",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-NODEPORTS",
        "KUBE-PROXY-FIREWALL",
    ] {
        filter.declare(c);
    }
    for c in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        nat.declare(c);
    }
    nat.rule(
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {mark}/{mark} -j RETURN"),
    );
    nat.rule("KUBE-POSTROUTING", format!("-j MARK --xor-mark {mark}"));
    let random_fully = if cfg.random_fully {
        " --random-fully"
    } else {
        ""
    };
    nat.rule(
        "KUBE-POSTROUTING",
        format!("-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE{random_fully}"),
    );
    nat.rule("KUBE-MARK-MASQ", format!("-j MARK --or-mark {mark}"));
    if !ipv6 && cfg.localhost_node_ports {
        filter.declare("KUBE-FIREWALL");
        filter.rule(
            "KUBE-FIREWALL",
            "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        );
    }

    let total_endpoints: usize = snap.endpoints.values().map(Vec::len).sum();
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS_THRESHOLD;
    let svc_comment = |text: &str| -> String {
        if large {
            String::new()
        } else {
            format!("-m comment --comment {} ", comment(text))
        }
    };

    let mut active: BTreeSet<String> = BTreeSet::new();
    // Rules in chains a partial sync leaves alone, for the rule-count metric.
    let mut unchanged_nat_rules = 0usize;

    for (spn, svc) in &snap.services {
        let Some(FamilyView {
            cluster_ip,
            external_ips,
            lb_ips,
            source_ranges,
            categorized: cat,
        }) = snap.family_view(spn, svc, cfg.family)
        else {
            continue;
        };
        let name = spn.to_string();
        let p = spn.protocol.as_str();
        let pm = proto_pfx(p);
        let port = svc.port;

        let svc_chain = service_chain("KUBE-SVC-", spn);
        let svl_chain = service_chain("KUBE-SVL-", spn);
        let ext_chain = service_chain("KUBE-EXT-", spn);
        let fw_chain = service_chain("KUBE-FW-", spn);

        let sep_chains: Vec<String> = cat
            .all_reachable
            .iter()
            .map(|e| endpoint_chain(spn, e))
            .collect();
        active.extend(sep_chains.iter().cloned());
        let uses_cluster = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
        let uses_local = !cat.local.is_empty() && svc.uses_local_endpoints();
        if uses_cluster {
            active.insert(svc_chain.clone());
        }
        if uses_local {
            active.insert(svl_chain.clone());
        }
        let (internal_chain, has_internal) = if svc.internal_policy_local {
            (&svl_chain, cat.has_any && !cat.local.is_empty())
        } else {
            (&svc_chain, cat.has_any)
        };
        let (external_chain, has_external) = if svc.external_policy_local {
            (&svl_chain, cat.has_any && !cat.local.is_empty())
        } else {
            (&svc_chain, cat.has_any)
        };
        let uses_ext = cat.has_any && svc.externally_accessible();
        if uses_ext {
            active.insert(ext_chain.clone());
        }
        let uses_fw = cat.has_any && !lb_ips.is_empty() && !source_ranges.is_empty();
        if uses_fw {
            active.insert(fw_chain.clone());
        }
        let lb_target = if uses_fw { &fw_chain } else { &ext_chain };

        let (internal_filter, external_filter) = if !cat.has_any {
            let r = ("REJECT", format!("{name} has no endpoints"));
            (r.clone(), r)
        } else {
            let d = ("DROP", format!("{name} has no local endpoints"));
            (d.clone(), d)
        };

        // ClusterIP.
        if has_internal {
            nat.rule(
                "KUBE-SERVICES",
                format!(
                    "-m comment --comment {} {pm} -d {cluster_ip} --dport {port} -j {internal_chain}",
                    comment(&format!("{name} cluster IP"))
                ),
            );
        } else {
            filter.rule(
                "KUBE-SERVICES",
                format!(
                    "-m comment --comment {} {pm} -d {cluster_ip} --dport {port} -j {}",
                    comment(&internal_filter.1),
                    internal_filter.0
                ),
            );
        }
        // External IPs.
        for ip in &external_ips {
            if cat.has_any {
                nat.rule(
                    "KUBE-SERVICES",
                    format!(
                        "-m comment --comment {} {pm} -d {ip} --dport {port} -j {ext_chain}",
                        comment(&format!("{name} external IP"))
                    ),
                );
            }
            if !has_external {
                filter.rule(
                    "KUBE-EXTERNAL-SERVICES",
                    format!(
                        "-m comment --comment {} {pm} -d {ip} --dport {port} -j {}",
                        comment(&external_filter.1),
                        external_filter.0
                    ),
                );
            }
        }
        // Load-balancer IPs.
        for ip in &lb_ips {
            if cat.has_any {
                nat.rule(
                    "KUBE-SERVICES",
                    format!(
                        "-m comment --comment {} {pm} -d {ip} --dport {port} -j {lb_target}",
                        comment(&format!("{name} loadbalancer IP"))
                    ),
                );
            }
            if uses_fw {
                filter.rule(
                    "KUBE-PROXY-FIREWALL",
                    format!(
                        "-m comment --comment {} {pm} -d {ip} --dport {port} -j DROP",
                        comment(&format!("{name} traffic not accepted by {fw_chain}"))
                    ),
                );
            }
        }
        if !has_external {
            for ip in &lb_ips {
                filter.rule(
                    "KUBE-EXTERNAL-SERVICES",
                    format!(
                        "-m comment --comment {} {pm} -d {ip} --dport {port} -j {}",
                        comment(&external_filter.1),
                        external_filter.0
                    ),
                );
            }
        }
        // Node port.
        if svc.node_port != 0 {
            let np = svc.node_port;
            if cat.has_any {
                if !ipv6 && cfg.localhost_node_ports && cfg.nfacct_localhost_node_ports {
                    nat.rule(
                        "KUBE-NODEPORTS",
                        format!(
                            "-m comment --comment {} {pm} -d 127.0.0.0/8 --dport {np} -m nfacct --nfacct-name localhost_nps_accepted_pkts -j {ext_chain}",
                            comment(&name)
                        ),
                    );
                }
                nat.rule(
                    "KUBE-NODEPORTS",
                    format!(
                        "-m comment --comment {} {pm} --dport {np} -j {ext_chain}",
                        comment(&name)
                    ),
                );
            }
            if !has_external {
                filter.rule(
                    "KUBE-EXTERNAL-SERVICES",
                    format!(
                        "-m comment --comment {} -m addrtype --dst-type LOCAL {pm} --dport {np} -j {}",
                        comment(&external_filter.1),
                        external_filter.0
                    ),
                );
            }
        }
        // Health check node port.
        if svc.health_check_node_port != 0 {
            filter.rule(
                "KUBE-NODEPORTS",
                format!(
                    "-m comment --comment {} -m tcp -p tcp --dport {} -j ACCEPT",
                    comment(&format!("{name} health check node port")),
                    svc.health_check_node_port
                ),
            );
        }

        // Per-service chains: skipped by a partial sync when the Service is unchanged.
        let mut chains = Table::default();
        if has_internal {
            let base = format!(
                "-m comment --comment {} {pm} -d {cluster_ip} --dport {port}",
                comment(&format!("{name} cluster IP"))
            );
            if cfg.masquerade_all {
                chains.rule(internal_chain, format!("{base} -j KUBE-MARK-MASQ"));
            } else if cfg.local_detector.implemented() {
                chains.rule(
                    internal_chain,
                    format!(
                        "{base} {} -j KUBE-MARK-MASQ",
                        cfg.local_detector.iptables(true)
                    ),
                );
            }
        }
        if uses_ext {
            chains.declare(&ext_chain);
            if !svc.external_policy_local {
                chains.rule(
                    &ext_chain,
                    format!(
                        "-m comment --comment {} -j KUBE-MARK-MASQ",
                        comment(&format!(
                            "masquerade traffic for {name} external destinations"
                        ))
                    ),
                );
            } else {
                if cfg.local_detector.implemented() {
                    chains.rule(
                        &ext_chain,
                        format!(
                            "-m comment --comment {} {} -j {svc_chain}",
                            comment(&format!("pod traffic for {name} external destinations")),
                            cfg.local_detector.iptables(false)
                        ),
                    );
                }
                chains.rule(
                    &ext_chain,
                    format!(
                        "-m comment --comment {} -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
                        comment(&format!(
                            "masquerade LOCAL traffic for {name} external destinations"
                        ))
                    ),
                );
                chains.rule(
                    &ext_chain,
                    format!(
                        "-m comment --comment {} -m addrtype --src-type LOCAL -j {svc_chain}",
                        comment(&format!(
                            "route LOCAL traffic for {name} external destinations"
                        ))
                    ),
                );
            }
            if has_external {
                chains.rule(&ext_chain, format!("-j {external_chain}"));
            }
        }
        if uses_fw {
            chains.declare(&fw_chain);
            let c = comment(&format!("{name} loadbalancer IP"));
            let mut allow_from_node = false;
            for net in &source_ranges {
                chains.rule(
                    &fw_chain,
                    format!("-m comment --comment {c} -s {net} -j {ext_chain}"),
                );
                allow_from_node |= cfg.node_ip.is_some_and(|ip| net.contains(&ip));
            }
            if allow_from_node {
                for ip in &lb_ips {
                    chains.rule(
                        &fw_chain,
                        format!("-m comment --comment {c} -s {ip} -j {ext_chain}"),
                    );
                }
            }
            chains.rule(
                &fw_chain,
                format!(
                    "-m comment --comment {}",
                    comment(&format!(
                        "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"
                    ))
                ),
            );
        }
        let dispatch = |chains: &mut Table, chain: &str, eps: &[Endpoint]| {
            chains.declare(chain);
            if let Some(timeout) = svc.affinity_timeout {
                for e in eps {
                    let sep = endpoint_chain(spn, e);
                    chains.rule(
                        chain,
                        format!(
                            "{}-m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}",
                            svc_comment(&format!("{name} -> {}", e.addr()))
                        ),
                    );
                }
            }
            let n = eps.len();
            for (i, e) in eps.iter().enumerate() {
                let sep = endpoint_chain(spn, e);
                let stat = if i + 1 < n {
                    format!(
                        "-m statistic --mode random --probability {} ",
                        probability(n - i)
                    )
                } else {
                    String::new()
                };
                chains.rule(
                    chain,
                    format!(
                        "{}{stat}-j {sep}",
                        svc_comment(&format!("{name} -> {}", e.addr()))
                    ),
                );
            }
        };
        if uses_cluster {
            dispatch(&mut chains, &svc_chain, &cat.cluster);
        }
        if uses_local {
            dispatch(&mut chains, &svl_chain, &cat.local);
        }
        for (e, sep) in cat.all_reachable.iter().zip(&sep_chains) {
            chains.declare(sep);
            let c = svc_comment(&name);
            chains.rule(sep, format!("{c}-s {} -j KUBE-MARK-MASQ", e.ip));
            let recent = if svc.affinity_timeout.is_some() {
                format!("-m recent --name {sep} --set ")
            } else {
                String::new()
            };
            chains.rule(
                sep,
                format!("{c}{recent}{pm} -j DNAT --to-destination {}", e.addr()),
            );
        }
        let skip = match kind {
            SyncKind::Full => false,
            SyncKind::Partial(changed) => !changed.contains(&spn.service),
        };
        if skip {
            unchanged_nat_rules += chains.rule_count();
        } else {
            nat.declared.extend(chains.declared);
            for (c, rules) in chains.rules {
                nat.rules.entry(c).or_default().extend(rules);
            }
        }
    }

    // Stale per-service chains: declaring flushes them, `-X` deletes them.
    for chain in existing_nat_chains {
        if is_service_chain(chain) && !active.contains(chain) {
            nat.declare(chain);
            nat.deleted.insert(chain.clone());
        }
    }

    let tail = "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    match &cfg.node_port_addresses {
        None => {
            let extra = if ipv6 {
                " ! -d ::1/128"
            } else if !cfg.localhost_node_ports {
                " ! -d 127.0.0.0/8"
            } else {
                ""
            };
            nat.rule(
                "KUBE-SERVICES",
                format!("{tail} -m addrtype --dst-type LOCAL{extra} -j KUBE-NODEPORTS"),
            );
        }
        Some(ips) => {
            for ip in ips.iter().filter(|ip| IpFamily::of(ip) == cfg.family) {
                if ip.is_loopback() && (ipv6 || !cfg.localhost_node_ports) {
                    continue;
                }
                nat.rule("KUBE-SERVICES", format!("{tail} -d {ip} -j KUBE-NODEPORTS"));
            }
        }
    }
    if !cfg.conntrack_tcp_be_liberal {
        let nfacct = if cfg.nfacct_invalid {
            " -m nfacct --nfacct-name ct_state_invalid_dropped_pkts"
        } else {
            ""
        };
        filter.rule(
            "KUBE-FORWARD",
            format!("-m conntrack --ctstate INVALID{nfacct} -j DROP"),
        );
    }
    filter.rule(
        "KUBE-FORWARD",
        format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {mark}/{mark} -j ACCEPT"),
    );
    filter.rule(
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    );

    let mut text = String::new();
    filter.write("filter", &mut text);
    nat.write("nat", &mut text);
    Rendered {
        text,
        active_nat_chains: active,
        filter_rules: filter.rule_count(),
        nat_rules: nat.rule_count() + unchanged_nat_rules,
    }
}

#[cfg(test)]
mod tests;

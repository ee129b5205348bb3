//! kube-proxy's nftables mode as a desired state ([`NftState`]): one table per family with
//! verdict maps keyed by `address . protocol . port` (service IPs, node ports, no-endpoint
//! verdicts, firewall), per-service and per-endpoint chains, `numgen random mod N` endpoint
//! choice, ClientIP affinity through dynamic timeout sets, and the masquerade mark.
//!
//! Three outputs: [`NftState::dump`] (the state as `add` commands, what kube-proxy's tests
//! compare), [`full_transaction`] (replace the whole table atomically) and
//! [`incremental_transaction`] (only changed elements and chains, diffing two whole states).
//! [`NftTable`] is what the proxier keeps: the state plus per-service-port bookkeeping, so an
//! incremental sync renders only the changed Services' ports (the same transaction as the
//! diff, property-tested), and a first sync into an absent table can be sent in steps
//! ([`NftTable::initial_transactions`]: one huge batch is quadratic in the kernel).
//!
//! Atomicity: `nft -f` sends the whole file as one netlink batch, and nf_tables commits a
//! batch all-or-nothing with a generation switch, so packets see either the old ruleset or
//! the new one — never the state between `flush table` and the re-adds. A full sync therefore
//! needs no flush-first window: `add table` (creates it if absent, so the flush cannot fail),
//! `flush table` (every rule goes), explicit `flush set`/`flush map` of our static sets and
//! maps (with nft 1.0.6, checked in a scratch network namespace, `flush table` removes rules
//! but keeps map elements), then everything is added, then objects the new state lacks are deleted (nothing
//! references them any more). Dynamic affinity sets are not flushed, so learned client→
//! endpoint bindings survive a full sync unless the set itself goes away.
//!
//! Checked against a real `nft` 1.0.6 in a throw-away network namespace (`examples/nft_dump.rs`):
//! full, incremental and deferred-delete transactions apply, and incremental + delete ends in
//! the same table as a full sync.
//!
//! # Layouts
//!
//! [`NftLayout::Chains`] is kube-proxy's layout (above; golden-tested against its own cases).
//! [`NftLayout::Maps`] (the default) exists because of what that layout costs on a big table:
//! every transaction that adds a rule with a jump/goto/nat, or a verdict element with a
//! goto, makes nf_tables validate the WHOLE table (every chain reachable from the base chains),
//! so with ~110k per-service and per-endpoint chains at 10k Services each endpoint change costs
//! ~0.2 s in the kernel whatever tool sends it; and each per-service `numgen … vmap { … }` is an
//! anonymous set whose bind walks the whole batch (quadratic first sync). In the Maps layout a
//! Service port without ClientIP affinity has no chain of its own; the table has a fixed set of
//! ~40 chains plus one pick chain per endpoint count, and a port is only elements:
//!
//! - `service-ips` / `service-nodeports` (as kube-proxy's) send a destination to a fixed entry
//!   chain of its traffic policy instead of the port's own chain: `internal-cluster`,
//!   `internal-local` (kube-proxy's service / local chain reached for the ClusterIP: the
//!   masquerade rule for non-pod sources or `--masquerade-all`), `external-cluster`,
//!   `external-local`, `nodeport-cluster`, `nodeport-local` (kube-proxy's external chain: mark
//!   for masquerade under Cluster policy; under Local, pods and the node itself short-circuit
//!   to the cluster set, the node masqueraded).
//! - The entry chains go to `dispatch-{cluster,local}` (`addr . proto . port vmap
//!   @picks-{set}`) or `dispatch-nodeport-{cluster,local}` (`proto . port vmap
//!   @picks-nodeport-{set}`), whose elements name the pick chain of the destination's endpoint
//!   count N: `pick-cluster-N`, `pick-local-N`, `pick-nodeport-cluster-N`, ….
//! - A pick chain has one rule per protocol, `meta l4proto tcp dnat ip to ip daddr . tcp dport
//!   . numgen random mod N map @endpoints-cluster-tcp`, looking the endpoint up in a data map
//!   keyed `addr . port . index` (`port . index` for node ports) — kube-proxy's service chain's
//!   `numgen` vmap and its endpoint chains' DNAT in one lookup. One map per protocol and set:
//!   nft 1.0.6 cannot keep `th dport` or `meta l4proto` in a `typeof` with port data.
//!   Pick chains are shared by every port with that count; [`NftTable`] ref-counts them.
//! - Hairpin (kube-proxy: `ip saddr E jump mark-for-masquerade` in E's endpoint chain) is
//!   `ct status dnat ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade` in
//!   nat-postrouting, with an `E . E` element for every reachable endpoint.
//! - No-endpoint reject/drop, cluster-ips, firewall-ips and the filter chains are kube-proxy's.
//!   Ports with ClientIP affinity keep kube-proxy's per-port and per-endpoint chains (timeout
//!   sets need per-endpoint update rules; `ct original proto-dst` cannot be a concatenation
//!   in nft 1.0.6); firewalled load balancers keep their per-port firewall chain. Both are few,
//!   so the validated graph stays small.
//!
//! The decisions are the same packet for packet (property-tested against the iptables
//! renderer for both layouts). In the Maps layout the first sync is one transaction.
//!
//! Not here: running `nft`, listing the kernel's table (the applier passes what exists).

use std::collections::{BTreeMap, BTreeSet};

/// The table's bookkeeping maps: a seeded fast hash (keys come from API objects, so not an
/// unseeded one).
type FastMap<K, V> = foldhash::HashMap<K, V>;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::hash::hash_prefix;
use crate::iptables::{LocalDetector, safe_ifname};
use crate::model::{
    Endpoint, FamilyView, IpFamily, ProxySnapshot, ServiceKey, ServicePort, ServicePortName,
};
use crate::nfnetlink::{ElementCodec, ElementOp};

/// Longest chain or set name we produce (kube-proxy/knftables: 256 minus room for a prefix).
const NAME_MAX: usize = 240;

/// How Service ports become nftables objects (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NftLayout {
    /// Shared maps and a small fixed set of chains; only ClientIP-affinity ports (and
    /// firewalled load balancers) get chains of their own. The default.
    #[default]
    Maps,
    /// kube-proxy's layout: chains per service port and per endpoint.
    Chains,
}

impl NftLayout {
    /// `maps` or `chains` (the `--nftables-layout` spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            NftLayout::Maps => "maps",
            NftLayout::Chains => "chains",
        }
    }

    /// Parses [`NftLayout::as_str`]'s spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "maps" => Some(NftLayout::Maps),
            "chains" => Some(NftLayout::Chains),
            _ => None,
        }
    }
}

/// The settings that shape the nftables ruleset.
#[derive(Debug, Clone)]
pub struct NftConfig {
    /// Maps (default) or kube-proxy's per-service chains.
    pub layout: NftLayout,
    /// Table name: `pontifex` for us, `kube-proxy` upstream.
    pub table: String,
    /// Family (`ip` or `ip6` table).
    pub family: IpFamily,
    /// The node's primary IP (LoadBalancer source ranges containing it also admit the LB IPs).
    pub node_ip: Option<IpAddr>,
    /// Pod-traffic detection.
    pub local_detector: LocalDetector,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// Masquerade mark bit (14 → 0x4000).
    pub masquerade_bit: u8,
    /// Node ports are served on these addresses; `None` = every local address except loopback.
    pub node_port_addresses: Option<Vec<IpAddr>>,
    /// Service CIDRs: traffic to unallocated addresses in them is dropped.
    pub service_cidrs: Vec<IpNet>,
    /// Drop forwarded packets conntrack marks INVALID, counted in the named counter
    /// `ct_state_invalid_dropped_pkts` (`ct state invalid counter name … drop` first in
    /// `filter-forward`): iptables mode's `KUBE-FORWARD` INVALID drop, which kube-proxy's
    /// nftables mode does not have — ours adds it so both modes count alike. Off when
    /// `nf_conntrack_tcp_be_liberal` is set ([`crate::counters::setup`]), and for kube-proxy's
    /// own expected output.
    pub invalid_drop: bool,
}

impl Default for NftConfig {
    fn default() -> Self {
        NftConfig {
            layout: NftLayout::Maps,
            table: "pontifex".into(),
            family: IpFamily::V4,
            node_ip: None,
            local_detector: LocalDetector::None,
            masquerade_all: false,
            masquerade_bit: 14,
            node_port_addresses: None,
            service_cidrs: Vec::new(),
            invalid_drop: true,
        }
    }
}

/// A set or a map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDef {
    /// A map (`add map`) rather than a set.
    pub is_map: bool,
    /// The `type …` clause, e.g. `ipv4_addr . inet_proto . inet_service : verdict`.
    pub type_: String,
    /// `type_` is a `typeof` expression list (`ip daddr . tcp dport : …`), not a type.
    pub by_expression: bool,
    /// `flags …`, e.g. `dynamic,timeout`.
    pub flags: Option<String>,
    /// `timeout <n>s`.
    pub timeout_seconds: Option<u32>,
    /// `comment "…"`.
    pub comment: Option<String>,
}

impl SetDef {
    fn dynamic(&self) -> bool {
        self.flags.as_deref().is_some_and(|f| f.contains("dynamic"))
    }
}

/// A chain: base chains carry `type`, `hook`, `priority`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainDef {
    /// `(type, hook, priority)` for a base chain.
    pub base: Option<(&'static str, &'static str, i32)>,
    /// `comment "…"`.
    pub comment: Option<String>,
    /// Rules in order.
    pub rules: Vec<String>,
}

/// One element: an optional comment and, in a map, the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// `comment "…"` after the key.
    pub comment: Option<String>,
    /// `: value` (maps only).
    pub value: Option<String>,
}

/// The whole table as it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftState {
    /// `ip` or `ip6`.
    pub family: &'static str,
    /// Table name.
    pub table: String,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, SetDef>,
    /// Chains by name.
    pub chains: BTreeMap<String, ChainDef>,
    /// Elements by set name, then key text.
    pub elements: BTreeMap<String, BTreeMap<String, Element>>,
    /// Named counters (`add counter`), which rules refer to by name.
    pub counters: BTreeSet<String>,
}

/// Chain and set names present in a table (to delete what a new state no longer has).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftObjects {
    /// Chain names.
    pub chains: BTreeSet<String>,
    /// Set and map names.
    pub sets: BTreeSet<String>,
    /// Named counter names.
    pub counters: BTreeSet<String>,
}

/// `prefix` + the first 8 characters of `base32(sha256(base))` + `-` + `base`, as
/// kube-proxy's nftables mode names per-service chains and sets (cut to 240 characters).
pub fn chain_name(prefix: &str, base: &str) -> String {
    let mut name = format!("{prefix}{}-{base}", hash_prefix(base, 8));
    if name.len() > NAME_MAX {
        name.truncate(NAME_MAX - 3);
        name.push_str("...");
    }
    name
}

fn port_base(spn: &ServicePortName) -> String {
    format!(
        "{}/{}/{}/{}",
        spn.service.namespace,
        spn.service.name,
        spn.protocol.as_str(),
        spn.port
    )
}

fn endpoint_base(spn: &ServicePortName, ep: &Endpoint) -> String {
    let ip = ep.ip.to_string().replace(':', ".");
    format!("{}__{ip}/{}", port_base(spn), ep.port)
}

/// nft comments: printable ASCII without `"` and `\`, at most 128 bytes.
fn comment_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if (c == ' ' || c.is_ascii_graphic()) && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(128);
    out
}

impl NftState {
    fn new(cfg: &NftConfig) -> Self {
        NftState {
            family: if cfg.family == IpFamily::V4 {
                "ip"
            } else {
                "ip6"
            },
            table: safe_ifname(&cfg.table),
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
            elements: BTreeMap::new(),
            counters: BTreeSet::new(),
        }
    }

    fn set(&mut self, name: &str, is_map: bool, type_: &str, comment: &str) {
        self.sets.insert(
            name.to_owned(),
            SetDef {
                is_map,
                type_: type_.to_owned(),
                by_expression: false,
                flags: None,
                timeout_seconds: None,
                comment: Some(comment.to_owned()),
            },
        );
        self.elements.entry(name.to_owned()).or_default();
    }

    fn chain(&mut self, name: &str) -> &mut ChainDef {
        self.chains.entry(name.to_owned()).or_default()
    }

    fn rule(&mut self, chain: &str, rule: impl Into<String>) {
        self.chain(chain).rules.push(rule.into());
    }

    fn element(&mut self, set: &str, key: String, comment: Option<&str>, value: Option<String>) {
        self.elements.entry(set.to_owned()).or_default().insert(
            key,
            Element {
                comment: comment.map(comment_text),
                value,
            },
        );
    }

    /// The chain and set names this state has.
    pub fn objects(&self) -> NftObjects {
        NftObjects {
            chains: self.chains.keys().cloned().collect(),
            sets: self.sets.keys().cloned().collect(),
            counters: self.counters.clone(),
        }
    }

    fn prefix(&self) -> String {
        format!("{} {}", self.family, self.table)
    }

    fn table_line(&self) -> String {
        format!(
            "add table {} {{ comment \"rules for kube-proxy\" ; }}\n",
            self.prefix()
        )
    }

    fn set_line(&self, name: &str, def: &SetDef) -> String {
        let kw = if def.by_expression { "typeof" } else { "type" };
        let mut body = format!("{kw} {} ;", def.type_);
        if let Some(f) = &def.flags {
            let _ = write!(body, " flags {f} ;");
        }
        if let Some(t) = def.timeout_seconds {
            let _ = write!(body, " timeout {t}s ;");
        }
        if let Some(c) = &def.comment {
            let _ = write!(body, " comment \"{}\" ;", comment_text(c));
        }
        let kind = if def.is_map { "map" } else { "set" };
        format!("add {kind} {} {name} {{ {body} }}\n", self.prefix())
    }

    /// `add counter` leaves an existing counter's counts alone (a full sync must not reset it).
    fn counter_line(&self, name: &str) -> String {
        format!("add counter {} {name}\n", self.prefix())
    }

    fn chain_line(&self, name: &str, def: &ChainDef) -> String {
        let mut props = Vec::new();
        if let Some((t, h, p)) = def.base {
            props.push(format!("type {t} hook {h} priority {p} ;"));
        }
        if let Some(c) = &def.comment {
            props.push(format!("comment \"{}\" ;", comment_text(c)));
        }
        if props.is_empty() {
            format!("add chain {} {name}\n", self.prefix())
        } else {
            format!(
                "add chain {} {name} {{ {} }}\n",
                self.prefix(),
                props.join(" ")
            )
        }
    }

    fn rule_lines(&self, name: &str, def: &ChainDef, out: &mut String) {
        for r in &def.rules {
            let _ = writeln!(out, "add rule {} {name} {r}", self.prefix());
        }
    }

    fn element_line(&self, verb: &str, set: &str, key: &str, e: Option<&Element>) -> String {
        let mut body = key.to_owned();
        if let Some(e) = e {
            if let Some(c) = &e.comment {
                let _ = write!(body, " comment \"{c}\"");
            }
            if let Some(v) = &e.value {
                let _ = write!(body, " : {v}");
            }
        }
        format!("{verb} element {} {set} {{ {body} }}\n", self.prefix())
    }

    /// The state as `add` commands in a fixed order: table, sets and maps, chains, rules
    /// (per chain, in order), elements (sorted).
    pub fn dump(&self) -> String {
        let mut out = self.table_line();
        for n in &self.counters {
            out.push_str(&self.counter_line(n));
        }
        for (n, d) in &self.sets {
            out.push_str(&self.set_line(n, d));
        }
        for (n, d) in &self.chains {
            out.push_str(&self.chain_line(n, d));
        }
        for (n, d) in &self.chains {
            self.rule_lines(n, d, &mut out);
        }
        for (set, elems) in &self.elements {
            for (k, e) in elems {
                out.push_str(&self.element_line("add", set, k, Some(e)));
            }
        }
        out
    }
}

/// Renders the desired table for one family from a snapshot.
pub fn render(cfg: &NftConfig, snap: &ProxySnapshot) -> NftState {
    let mut st = render_base(cfg);
    for (spn, svc) in &snap.services {
        render_port(&mut st, cfg, snap, spn, svc);
    }
    st
}

/// The part of the table no Service contributes to: sets and maps, base chains, fixed jumps.
fn render_base(cfg: &NftConfig) -> NftState {
    let mut st = NftState::new(cfg);
    let v4 = cfg.family == IpFamily::V4;
    let ipx = if v4 { "ip" } else { "ip6" };
    let addr_t = if v4 { "ipv4_addr" } else { "ipv6_addr" };
    let no_localhost = if v4 {
        "ip daddr != 127.0.0.0/8"
    } else {
        "ip6 daddr != ::1"
    };
    let mark = format!("{:#x}", 1u32 << cfg.masquerade_bit);
    let key3 = format!("{addr_t} . inet_proto . inet_service : verdict");

    // Sets and maps.
    st.set("cluster-ips", false, addr_t, "Active ClusterIPs");
    if cfg.node_port_addresses.is_some() {
        st.set(
            "nodeport-ips",
            false,
            addr_t,
            "IPs that accept NodePort traffic",
        );
    }
    st.set(
        "firewall-ips",
        true,
        &key3,
        "destinations that are subject to LoadBalancerSourceRanges",
    );
    st.set(
        "no-endpoint-nodeports",
        true,
        "inet_proto . inet_service : verdict",
        "vmap to drop or reject packets to service nodeports with no endpoints",
    );
    st.set(
        "no-endpoint-services",
        true,
        &key3,
        "vmap to drop or reject packets to services with no endpoints",
    );
    st.set(
        "service-ips",
        true,
        &key3,
        "ClusterIP, ExternalIP and LoadBalancer IP traffic",
    );
    st.set(
        "service-nodeports",
        true,
        "inet_proto . inet_service : verdict",
        "NodePort traffic",
    );

    // Base chains and the fixed jumps.
    for (name, t, h, p) in [
        ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
        ("filter-output-pre-dnat", "filter", "output", -110),
        ("filter-forward", "filter", "forward", 0),
        ("filter-input", "filter", "input", 0),
        ("filter-output", "filter", "output", 0),
        ("nat-output", "nat", "output", -100),
        ("nat-postrouting", "nat", "postrouting", 100),
        ("nat-prerouting", "nat", "prerouting", -100),
    ] {
        st.chain(name).base = Some((t, h, p));
    }
    for c in [
        "cluster-ips-check",
        "firewall-check",
        "mark-for-masquerade",
        "masquerading",
    ] {
        st.chain(c);
    }
    for c in [
        "nodeport-endpoints-check",
        "services",
        "service-endpoints-check",
    ] {
        st.chain(c);
    }
    st.chain("reject-chain").comment =
        Some("helper for @no-endpoint-services / @no-endpoint-nodeports".into());
    st.rule("cluster-ips-check", format!("{ipx} daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""));
    let cidrs: Vec<String> = cfg
        .service_cidrs
        .iter()
        .filter(|n| IpFamily::of(&n.addr()) == cfg.family)
        .map(|n| n.to_string())
        .collect();
    if !cidrs.is_empty() {
        st.rule(
            "cluster-ips-check",
            format!(
                "{ipx} daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
                cidrs.join(", ")
            ),
        );
    }
    st.rule(
        "filter-prerouting-pre-dnat",
        "ct state new jump firewall-check",
    );
    st.rule("filter-output-pre-dnat", "ct state new jump firewall-check");
    if cfg.invalid_drop {
        // First, as KUBE-FORWARD's INVALID drop is: nothing later should see such a packet.
        let name = crate::counters::INVALID_DROPPED_COUNTER;
        st.counters.insert(name.to_owned());
        st.rule(
            "filter-forward",
            format!("ct state invalid counter name \"{name}\" drop"),
        );
    }
    st.rule(
        "filter-forward",
        "ct state new jump service-endpoints-check",
    );
    st.rule("filter-forward", "ct state new jump cluster-ips-check");
    st.rule("filter-input", "ct state new jump nodeport-endpoints-check");
    st.rule("filter-input", "ct state new jump service-endpoints-check");
    st.rule("filter-output", "ct state new jump service-endpoints-check");
    st.rule("filter-output", "ct state new jump cluster-ips-check");
    st.rule(
        "firewall-check",
        format!("{ipx} daddr . meta l4proto . th dport vmap @firewall-ips"),
    );
    st.rule("mark-for-masquerade", format!("mark set mark or {mark}"));
    st.rule("masquerading", format!("mark and {mark} == 0 return"));
    st.rule("masquerading", format!("mark set mark xor {mark}"));
    st.rule("masquerading", "masquerade fully-random");
    st.rule("nat-output", "jump services");
    st.rule("nat-postrouting", "jump masquerading");
    st.rule("nat-prerouting", "jump services");
    st.rule("reject-chain", "reject");
    st.rule(
        "services",
        format!("{ipx} daddr . meta l4proto . th dport vmap @service-ips"),
    );
    st.rule(
        "service-endpoints-check",
        format!("{ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    );
    match &cfg.node_port_addresses {
        None => {
            st.rule(
                "nodeport-endpoints-check",
                format!("fib daddr type local {no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports"),
            );
            st.rule(
                "services",
                format!("fib daddr type local {no_localhost} meta l4proto . th dport vmap @service-nodeports"),
            );
        }
        Some(ips) => {
            st.rule(
                "nodeport-endpoints-check",
                format!(
                    "{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"
                ),
            );
            st.rule(
                "services",
                format!(
                    "{ipx} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"
                ),
            );
            for ip in ips.iter().filter(|ip| IpFamily::of(ip) == cfg.family) {
                st.element("nodeport-ips", ip.to_string(), None, None);
            }
        }
    }
    if cfg.layout == NftLayout::Maps {
        render_maps_base(&mut st, cfg);
    }

    st
}

/// The protocols a Service port can carry, in the order the Maps layout's per-protocol maps and
/// pick rules are written.
const PROTOCOLS: [&str; 3] = ["tcp", "udp", "sctp"];

/// The two endpoint sets a port's traffic can pick from (Maps layout): the cluster-wide one
/// and the node-local one.
const ENDPOINT_SETS: [&str; 2] = ["cluster", "local"];

/// The fixed part of the Maps layout: the pick vmaps, the per-protocol endpoint data maps, the
/// hairpin set, the entry chains `service-ips` / `service-nodeports` send to and the dispatch
/// chains that look up the pick chain of a destination.
fn render_maps_base(st: &mut NftState, cfg: &NftConfig) {
    let v4 = cfg.family == IpFamily::V4;
    let ipx = if v4 { "ip" } else { "ip6" };
    let addr_t = if v4 { "ipv4_addr" } else { "ipv6_addr" };
    let key3 = format!("{addr_t} . inet_proto . inet_service : verdict");
    for set in ENDPOINT_SETS {
        st.set(
            &format!("picks-{set}"),
            true,
            &key3,
            &format!("destination to the pick chain of its {set} endpoint count"),
        );
        st.set(
            &format!("picks-nodeport-{set}"),
            true,
            "inet_proto . inet_service : verdict",
            &format!("node port to the pick chain of its {set} endpoint count"),
        );
        for p in PROTOCOLS {
            for (name, key) in [
                (
                    format!("endpoints-{set}-{p}"),
                    format!("{ipx} daddr . {p} dport"),
                ),
                (
                    format!("endpoints-nodeport-{set}-{p}"),
                    format!("{p} dport"),
                ),
            ] {
                st.set(
                    &name,
                    true,
                    &format!("{key} . numgen random mod 1 : {ipx} daddr . {p} dport"),
                    &format!("destination and index to a {set} {p} endpoint"),
                );
                if let Some(d) = st.sets.get_mut(&name) {
                    d.by_expression = true;
                }
            }
        }
    }
    st.set(
        "hairpin-endpoints",
        false,
        &format!("{addr_t} . {addr_t}"),
        "endpoint . endpoint: a pod reaching itself through a Service is masqueraded",
    );
    st.chain("nat-postrouting").rules.insert(
        0,
        format!(
            "ct status dnat {ipx} saddr . {ipx} daddr @hairpin-endpoints jump mark-for-masquerade"
        ),
    );
    let internal_masq = if cfg.masquerade_all {
        Some("jump mark-for-masquerade".to_owned())
    } else {
        nft_local(&cfg.local_detector, ipx, true).map(|m| format!("{m} jump mark-for-masquerade"))
    };
    for set in ENDPOINT_SETS {
        st.rule(
            &format!("dispatch-{set}"),
            format!("{ipx} daddr . meta l4proto . th dport vmap @picks-{set}"),
        );
        st.rule(
            &format!("dispatch-nodeport-{set}"),
            format!("meta l4proto . th dport vmap @picks-nodeport-{set}"),
        );
        let chain = format!("internal-{set}");
        st.chain(&chain);
        if let Some(m) = &internal_masq {
            st.rule(&chain, m.clone());
        }
        st.rule(&chain, format!("goto dispatch-{set}"));
    }
    for (entry, dispatch) in [("external", "dispatch"), ("nodeport", "dispatch-nodeport")] {
        st.rule(&format!("{entry}-cluster"), "jump mark-for-masquerade");
        st.rule(
            &format!("{entry}-cluster"),
            format!("goto {dispatch}-cluster"),
        );
        let local = format!("{entry}-local");
        if let Some(m) = nft_local(&cfg.local_detector, ipx, false) {
            st.rule(
                &local,
                format!("{m} goto {dispatch}-cluster comment \"short-circuit pod traffic\""),
            );
        }
        st.rule(
            &local,
            "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"",
        );
        st.rule(
            &local,
            format!("fib saddr type local goto {dispatch}-cluster comment \"short-circuit local traffic\""),
        );
        st.rule(&local, format!("goto {dispatch}-local"));
    }
}

/// A pick chain (Maps layout): `numgen random mod n` indexes the destination's endpoints in
/// the per-protocol data map of `set` (`cluster`, `local`, `nodeport-cluster`,
/// `nodeport-local`). One per count and set, shared by every port with that count.
fn pick_chain(st: &mut NftState, ipx: &str, set: &str, n: usize) -> String {
    let name = format!("pick-{set}-{n}");
    let chain = st.chain(&name);
    if chain.rules.is_empty() {
        let nodeport = set.starts_with("nodeport-");
        for p in PROTOCOLS {
            let key = if nodeport {
                format!("{p} dport")
            } else {
                format!("{ipx} daddr . {p} dport")
            };
            chain.rules.push(format!(
                "meta l4proto {p} dnat {ipx} to {key} . numgen random mod {n} map @endpoints-{set}-{p}"
            ));
        }
    }
    name
}

/// Adds what one service port contributes: its elements in the shared maps and, in the Chains
/// layout or with ClientIP affinity, its own chains (service, local, external, endpoints) and
/// affinity sets; a firewall chain when its load balancer has source ranges. Per-port chains
/// and sets are named after the port (and endpoint), so no two ports share one; the Maps
/// layout's pick chains are shared by count. Elements may be shared (two ports of a Service
/// have the same cluster IP), the later port's value winning.
fn render_port(
    st: &mut NftState,
    cfg: &NftConfig,
    snap: &ProxySnapshot,
    spn: &ServicePortName,
    svc: &ServicePort,
) {
    let v4 = cfg.family == IpFamily::V4;
    let ipx = if v4 { "ip" } else { "ip6" };
    let Some(FamilyView {
        cluster_ip,
        external_ips,
        lb_ips,
        source_ranges,
        categorized: cat,
    }) = snap.family_view(spn, svc, cfg.family)
    else {
        return;
    };
    let maps = cfg.layout == NftLayout::Maps && svc.affinity_timeout.is_none();
    let name = spn.to_string();
    let p = spn.protocol.as_str();
    let port = svc.port;
    let base = port_base(spn);
    let svc_chain = chain_name("service-", &base);
    let local_chain = chain_name("local-", &base);
    let ext_chain = chain_name("external-", &base);
    let fw_chain = chain_name("firewall-", &base);

    let (internal_chain, has_internal) = if svc.internal_policy_local {
        (&local_chain, cat.has_any && !cat.local.is_empty())
    } else {
        (&svc_chain, cat.has_any)
    };
    let has_external = if svc.external_policy_local {
        cat.has_any && !cat.local.is_empty()
    } else {
        cat.has_any
    };
    let uses_ext = cat.has_any && svc.externally_accessible();
    let verdict = if cat.has_any {
        "drop".to_owned()
    } else {
        "goto reject-chain".to_owned()
    };
    // Where `service-ips` / `service-nodeports` send the port's traffic: its own chains, or
    // (Maps) the fixed entry chain of its traffic policy.
    let policy = |local: bool| if local { "local" } else { "cluster" };
    let (internal_target, external_target, nodeport_target) = if maps {
        (
            format!("internal-{}", policy(svc.internal_policy_local)),
            format!("external-{}", policy(svc.external_policy_local)),
            format!("nodeport-{}", policy(svc.external_policy_local)),
        )
    } else {
        (internal_chain.clone(), ext_chain.clone(), ext_chain.clone())
    };

    st.element("cluster-ips", cluster_ip.to_string(), None, None);
    let k3 = |ip: &IpAddr, port: u16| format!("{ip} . {p} . {port}");
    if has_internal {
        st.element(
            "service-ips",
            k3(&cluster_ip, port),
            None,
            Some(format!("goto {internal_target}")),
        );
    } else {
        st.element(
            "no-endpoint-services",
            k3(&cluster_ip, port),
            Some(&name),
            Some(verdict.clone()),
        );
    }
    for ip in &external_ips {
        if cat.has_any {
            st.element(
                "service-ips",
                k3(ip, port),
                None,
                Some(format!("goto {external_target}")),
            );
        }
        if !has_external {
            st.element(
                "no-endpoint-services",
                k3(ip, port),
                Some(&name),
                Some(verdict.clone()),
            );
        }
    }
    let uses_fw = !lb_ips.is_empty() && !source_ranges.is_empty();
    if uses_fw {
        let mut sources: Vec<String> = source_ranges.iter().map(ToString::to_string).collect();
        if cfg
            .node_ip
            .is_some_and(|ip| source_ranges.iter().any(|n| n.contains(&ip)))
        {
            sources.extend(lb_ips.iter().map(ToString::to_string));
        }
        st.rule(
            &fw_chain,
            format!("{ipx} saddr != {{ {} }} drop", sources.join(", ")),
        );
    }
    for ip in &lb_ips {
        if cat.has_any {
            st.element(
                "service-ips",
                k3(ip, port),
                None,
                Some(format!("goto {external_target}")),
            );
        }
        if uses_fw {
            st.element(
                "firewall-ips",
                k3(ip, port),
                None,
                Some(format!("goto {fw_chain}")),
            );
        }
        if !has_external {
            st.element(
                "no-endpoint-services",
                k3(ip, port),
                Some(&name),
                Some(verdict.clone()),
            );
        }
    }
    if svc.node_port != 0 {
        let key = format!("{p} . {}", svc.node_port);
        if cat.has_any {
            st.element(
                "service-nodeports",
                key.clone(),
                None,
                Some(format!("goto {nodeport_target}")),
            );
        }
        if !has_external {
            st.element(
                "no-endpoint-nodeports",
                key,
                Some(&name),
                Some(verdict.clone()),
            );
        }
    }

    let view = PortView {
        cluster_ip,
        addrs: external_ips.iter().chain(&lb_ips).copied().collect(),
        cat,
        has_internal,
        has_external,
        uses_ext,
    };
    if maps {
        render_port_maps(st, ipx, spn, svc, &view);
    } else {
        render_port_chains(st, cfg, spn, svc, &view);
    }
}

/// What [`render_port`] computed that both layouts' per-port parts need.
struct PortView {
    cluster_ip: IpAddr,
    /// External and load-balancer IPs.
    addrs: Vec<IpAddr>,
    cat: crate::model::Categorized,
    has_internal: bool,
    has_external: bool,
    uses_ext: bool,
}

/// The Maps layout's per-port part: for each destination (`addr . port`, or the node port)
/// and endpoint set it uses, a pick-map element naming the pick chain of the set's size and
/// one data element per endpoint (`addr . port . index : endpoint`); every reachable endpoint
/// in the hairpin set.
fn render_port_maps(
    st: &mut NftState,
    ipx: &str,
    spn: &ServicePortName,
    svc: &ServicePort,
    v: &PortView,
) {
    let p = spn.protocol.as_str();
    let port = svc.port;
    let cat = &v.cat;
    // (set, destinations): the cluster IP picks from the set of the internal policy; external
    // addresses from the set of the external policy, and from the cluster set when Local
    // (pods and the node itself are short-circuited to it).
    let mut wants: Vec<(&str, &[crate::model::Endpoint], Option<IpAddr>)> = Vec::new();
    if v.has_internal {
        if svc.internal_policy_local {
            wants.push(("local", &cat.local, Some(v.cluster_ip)));
        } else {
            wants.push(("cluster", &cat.cluster, Some(v.cluster_ip)));
        }
    }
    if v.uses_ext && !cat.cluster.is_empty() {
        let mut ext: Vec<Option<IpAddr>> = v.addrs.iter().copied().map(Some).collect();
        if svc.node_port != 0 {
            ext.push(None);
        }
        for d in &ext {
            wants.push(("cluster", &cat.cluster, *d));
            if svc.external_policy_local && v.has_external {
                wants.push(("local", &cat.local, *d));
            }
        }
    }
    for (set, eps, dst) in wants {
        if eps.is_empty() {
            continue;
        }
        match dst {
            Some(d) => {
                let chain = pick_chain(st, ipx, set, eps.len());
                st.element(
                    &format!("picks-{set}"),
                    format!("{d} . {p} . {port}"),
                    None,
                    Some(format!("goto {chain}")),
                );
                for (i, e) in eps.iter().enumerate() {
                    st.element(
                        &format!("endpoints-{set}-{p}"),
                        format!("{d} . {port} . {i}"),
                        None,
                        Some(format!("{} . {}", e.ip, e.port)),
                    );
                }
            }
            None => {
                let np_set = format!("nodeport-{set}");
                let chain = pick_chain(st, ipx, &np_set, eps.len());
                st.element(
                    &format!("picks-{np_set}"),
                    format!("{p} . {}", svc.node_port),
                    None,
                    Some(format!("goto {chain}")),
                );
                for (i, e) in eps.iter().enumerate() {
                    st.element(
                        &format!("endpoints-{np_set}-{p}"),
                        format!("{} . {i}", svc.node_port),
                        None,
                        Some(format!("{} . {}", e.ip, e.port)),
                    );
                }
            }
        }
    }
    for e in &cat.all_reachable {
        st.element(
            "hairpin-endpoints",
            format!("{} . {}", e.ip, e.ip),
            None,
            None,
        );
    }
}

/// kube-proxy's per-port chains: service (cluster set), local, external and endpoint chains,
/// affinity sets.
fn render_port_chains(
    st: &mut NftState,
    cfg: &NftConfig,
    spn: &ServicePortName,
    svc: &ServicePort,
    v: &PortView,
) {
    let v4 = cfg.family == IpFamily::V4;
    let ipx = if v4 { "ip" } else { "ip6" };
    let addr_t = if v4 { "ipv4_addr" } else { "ipv6_addr" };
    let p = spn.protocol.as_str();
    let port = svc.port;
    let cluster_ip = v.cluster_ip;
    let cat = &v.cat;
    let base = port_base(spn);
    let svc_chain = chain_name("service-", &base);
    let local_chain = chain_name("local-", &base);
    let ext_chain = chain_name("external-", &base);
    let ep_chain = |e: &Endpoint| chain_name("endpoint-", &endpoint_base(spn, e));
    let affinity_set = |e: &Endpoint| chain_name("affinity-", &endpoint_base(spn, e));
    let uses_cluster = !cat.cluster.is_empty() && svc.uses_cluster_endpoints();
    let uses_local = !cat.local.is_empty() && svc.uses_local_endpoints();
    let internal_chain = if svc.internal_policy_local {
        &local_chain
    } else {
        &svc_chain
    };
    let external_chain = if svc.external_policy_local {
        &local_chain
    } else {
        &svc_chain
    };

    if v.has_internal {
        if cfg.masquerade_all {
            st.rule(
                internal_chain,
                format!("{ipx} daddr {cluster_ip} {p} dport {port} jump mark-for-masquerade"),
            );
        } else if let Some(m) = nft_local(&cfg.local_detector, ipx, true) {
            st.rule(
                internal_chain,
                format!("{ipx} daddr {cluster_ip} {m} jump mark-for-masquerade"),
            );
        }
    }
    if v.uses_ext {
        st.chain(&ext_chain);
        if !svc.external_policy_local {
            st.rule(&ext_chain, "jump mark-for-masquerade");
        } else {
            if let Some(m) = nft_local(&cfg.local_detector, ipx, false) {
                st.rule(
                    &ext_chain,
                    format!("{m} goto {svc_chain} comment \"short-circuit pod traffic\""),
                );
            }
            st.rule(&ext_chain, "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\"");
            st.rule(
                &ext_chain,
                format!(
                    "fib saddr type local goto {svc_chain} comment \"short-circuit local traffic\""
                ),
            );
        }
        if v.has_external {
            st.rule(&ext_chain, format!("goto {external_chain}"));
        }
    }
    let dispatch = |st: &mut NftState, chain: &str, eps: &[Endpoint]| {
        st.chain(chain);
        if svc.affinity_timeout.is_some() {
            for e in eps {
                st.rule(
                    chain,
                    format!("{ipx} saddr @{} goto {}", affinity_set(e), ep_chain(e)),
                );
            }
        }
        let arms: Vec<String> = eps
            .iter()
            .enumerate()
            .map(|(i, e)| format!("{i} : goto {}", ep_chain(e)))
            .collect();
        st.rule(
            chain,
            format!(
                "numgen random mod {} vmap {{ {} }}",
                eps.len(),
                arms.join(" , ")
            ),
        );
    };
    if uses_cluster {
        dispatch(st, &svc_chain, &cat.cluster);
    }
    if uses_local {
        dispatch(st, &local_chain, &cat.local);
    }
    for e in &cat.all_reachable {
        let chain = ep_chain(e);
        st.rule(
            &chain,
            format!("{ipx} saddr {} jump mark-for-masquerade", e.ip),
        );
        if let Some(timeout) = svc.affinity_timeout {
            let set = affinity_set(e);
            st.sets.insert(
                set.clone(),
                SetDef {
                    is_map: false,
                    type_: addr_t.to_owned(),
                    by_expression: false,
                    flags: Some("dynamic,timeout".into()),
                    timeout_seconds: Some(timeout),
                    comment: None,
                },
            );
            st.rule(&chain, format!("update @{set} {{ {ipx} saddr }}"));
        }
        st.rule(&chain, format!("meta l4proto {p} dnat to {}", e.addr()));
    }
}

/// nft match for "local" pod traffic (or not).
fn nft_local(d: &LocalDetector, ipx: &str, negate: bool) -> Option<String> {
    let not = if negate { "!= " } else { "" };
    match d {
        LocalDetector::None => None,
        LocalDetector::Cidr(net) => Some(format!("{ipx} saddr {not}{net}")),
        LocalDetector::BridgeInterface(i) => Some(format!("iifname {not}\"{}\"", safe_ifname(i))),
        LocalDetector::InterfacePrefix(p) => Some(format!("iifname {not}\"{}*\"", safe_ifname(p))),
    }
}

/// A transaction that makes the table exactly `new`, atomically, whatever it held.
/// `existing` names the objects the table may hold now (from the previous state or a listing
/// of the kernel's table); those `new` lacks are deleted at the end.
pub fn full_transaction(new: &NftState, existing: &NftObjects) -> String {
    let pre = new.prefix();
    let mut out = new.table_line();
    let _ = writeln!(out, "flush table {pre}");
    for n in &new.counters {
        out.push_str(&new.counter_line(n));
    }
    for (n, d) in &new.sets {
        out.push_str(&new.set_line(n, d));
        if existing.sets.contains(n) && !d.dynamic() {
            let kind = if d.is_map { "map" } else { "set" };
            let _ = writeln!(out, "flush {kind} {pre} {n}");
        }
    }
    for (n, d) in &new.chains {
        out.push_str(&new.chain_line(n, d));
    }
    for (n, d) in &new.chains {
        new.rule_lines(n, d, &mut out);
    }
    for (set, elems) in &new.elements {
        for (k, e) in elems {
            out.push_str(&new.element_line("add", set, k, Some(e)));
        }
    }
    // After the flush nothing refers to these: sets first (maps may name chains), then chains.
    for n in existing.sets.difference(&new.objects().sets) {
        let _ = writeln!(out, "delete set {pre} {n}");
    }
    for n in existing.chains.difference(&new.objects().chains) {
        let _ = writeln!(out, "delete chain {pre} {n}");
    }
    for n in existing.counters.difference(&new.counters) {
        let _ = writeln!(out, "delete counter {pre} {n}");
    }
    out
}

/// A full sync over an existing table in three steps instead of one transaction that flushes
/// and refills everything (Maps layout, where almost all of a large table is elements).
/// Why: at 10k Services the one transaction re-sends ~200k elements through `nft`'s parser and
/// makes the kernel free and re-insert each (2.4 s measured); a resync that finds the kernel as
/// it should be needs only to read the elements back (one netlink dump per map) and rewrite
/// the few dozen chains.
///
/// Each step is atomic; between them the table is consistent: rules only name sets and chains
/// that the skeleton made, map elements only name chains that exist, and nothing is deleted
/// before the elements that could refer to it are gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    /// Step 1, one `nft -f`: the table, every named counter, set and chain (added if
    /// missing; `add counter` keeps a counter's counts), and every chain's rules rewritten
    /// (`flush chain`, then its rules).
    pub skeleton: String,
    /// Step 2: per set or map with elements of its own (not the dynamic affinity sets), what it
    /// should hold, as netlink adds; the caller reads what it holds and sends the difference
    /// ([`crate::nfnetlink::element_diff`]) as one batch.
    pub elements: BTreeMap<String, Vec<ElementOp>>,
    /// Step 3, one `nft -f`: objects `existing` holds and the state does not — stale chains
    /// flushed, then stale sets deleted, then stale chains and counters deleted.
    pub cleanup: String,
}

/// Whether a chain's rules name set `set` (`@set` followed by a space or the end).
fn refers_to(chain: &ChainDef, set: &str) -> bool {
    let at = format!("@{set}");
    chain.rules.iter().any(|r| {
        r.match_indices(&at)
            .any(|(i, _)| matches!(r.as_bytes().get(i + at.len()), None | Some(b' ')))
    })
}

/// Deletes set `name` (defined as `old`) so it can be added again with a new definition: the
/// chains in `refs` are flushed first (nf_tables refuses to delete a set a rule uses) and
/// recorded in `rewrite` so the rules of those still wanted are added back (the others are
/// stale and stay empty).
fn redefine_set<'a>(
    pre: &str,
    name: &str,
    old: &SetDef,
    refs: impl Iterator<Item = &'a String>,
    rewrite: &mut BTreeSet<&'a String>,
    out: &mut String,
) {
    for c in refs {
        let _ = writeln!(out, "flush chain {pre} {c}");
        rewrite.insert(c);
    }
    let kind = if old.is_map { "map" } else { "set" };
    let _ = writeln!(out, "delete {kind} {pre} {name}");
}

/// An incremental update from `old` (what the kernel holds) to `new`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incremental {
    /// The `nft -f` transaction; empty when nothing changed.
    pub transaction: String,
    /// Chains `new` no longer uses: flushed by `transaction`, to be deleted later with
    /// [`delete_chains_transaction`] (kube-proxy waits ≥1 s: kernels before 6.2 may still
    /// count a just-deleted map element as a reference).
    pub stale_chains: Vec<String>,
}

/// One element an incremental update deletes (`add: None`) or adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementChange {
    /// The set or map.
    pub set: String,
    /// The key, as `nft` writes it.
    pub key: String,
    /// The element added (comment, value), `None` for a delete.
    pub add: Option<Element>,
}

/// The transaction from `old` to `new`, or `None` when only a full sync can do it (other
/// table or family, a base chain's definition changed).
pub fn incremental_transaction(old: &NftState, new: &NftState) -> Option<Incremental> {
    if old.family != new.family || old.table != new.table {
        return None;
    }
    for (n, d) in &new.chains {
        if old
            .chains
            .get(n)
            .is_some_and(|o| o.base != d.base || o.comment != d.comment)
        {
            return None;
        }
    }
    let pre = new.prefix();
    let mut out = String::new();
    // 0. Sets whose definition changed (an affinity timeout) are deleted and added again;
    //    the chains that refer to them lose their rules first and get them back in 3.
    let mut rewrite: BTreeSet<&String> = BTreeSet::new();
    for (n, d) in &new.sets {
        if let Some(o) = old.sets.get(n).filter(|o| *o != d) {
            let refs = old.chains.iter().filter(|(_, def)| refers_to(def, n));
            redefine_set(&pre, n, o, refs.map(|(c, _)| c), &mut rewrite, &mut out);
            out.push_str(&new.set_line(n, d));
        }
    }
    // 1. New objects, so everything added later can refer to them.
    for n in new.counters.difference(&old.counters) {
        out.push_str(&new.counter_line(n));
    }
    for (n, d) in &new.sets {
        if !old.sets.contains_key(n) {
            out.push_str(&new.set_line(n, d));
        }
    }
    for (n, d) in &new.chains {
        if !old.chains.contains_key(n) {
            out.push_str(&new.chain_line(n, d));
        }
    }
    // 2. Elements that went away or changed value (delete + add).
    let empty = BTreeMap::new();
    for (set, elems) in &old.elements {
        if !new.sets.contains_key(set) {
            continue;
        }
        let now = new.elements.get(set).unwrap_or(&empty);
        for (k, e) in elems {
            if now.get(k) != Some(e) {
                out.push_str(&new.element_line("delete", set, k, None));
            }
        }
    }
    // 3. Chains whose rules changed are rewritten; new chains get their rules.
    for (n, d) in &new.chains {
        match old.chains.get(n) {
            Some(o) if o.rules == d.rules && !rewrite.contains(n) => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain {pre} {n}");
                new.rule_lines(n, d, &mut out);
            }
            None => new.rule_lines(n, d, &mut out),
        }
    }
    // 4. New and changed elements.
    for (set, elems) in &new.elements {
        let before = old.elements.get(set).unwrap_or(&empty);
        for (k, e) in elems {
            if before.get(k) != Some(e) {
                out.push_str(&new.element_line("add", set, k, Some(e)));
            }
        }
    }
    // 5. Stale chains lose their rules now (so they reference nothing); stale sets go now:
    //    only rules flushed above referred to them.
    let mut stale_chains = Vec::new();
    for n in old.chains.keys() {
        if !new.chains.contains_key(n) {
            let _ = writeln!(out, "flush chain {pre} {n}");
            stale_chains.push(n.clone());
        }
    }
    for (n, d) in &old.sets {
        if !new.sets.contains_key(n) {
            let kind = if d.is_map { "map" } else { "set" };
            let _ = writeln!(out, "delete {kind} {pre} {n}");
        }
    }
    // A counter only a rewritten (or flushed) chain used goes now as well.
    for n in old.counters.difference(&new.counters) {
        let _ = writeln!(out, "delete counter {pre} {n}");
    }
    Some(Incremental {
        transaction: out,
        stale_chains,
    })
}

/// Who put an element in a shared map: the fixed part of the table (`None`) or a service
/// port. Ordered as [`render`] adds them, so the last owner's value is the one in the table.
type Owner = Option<ServicePortName>;

/// The names one service port put in the table; the chains' rules and the sets' definitions
/// live in the merged state (no other port shares them), element values in `owners`.
#[derive(Debug, Clone, Default)]
struct PortObjects {
    chains: Vec<String>,
    sets: Vec<String>,
    elements: Vec<(String, String)>,
}

/// The desired table kept per service port, so that a change costs what it touches rather
/// than the size of the table: [`NftTable::update`] re-renders only the ports of the Services
/// that changed and produces the same transaction as [`incremental_transaction`] between two
/// full renders (tested against it), while [`NftTable::state`] stays equal to [`render`].
///
/// Kept beside the merged [`NftState`]: per port the names of its chains, sets and elements,
/// and per shared-map element the value each owner wants (the cluster IP of a two-port
/// Service, an external IP two Services list).
#[derive(Debug, Clone)]
pub struct NftTable {
    cfg: NftConfig,
    state: NftState,
    ports: FastMap<ServicePortName, PortObjects>,
    by_service: FastMap<ServiceKey, Vec<ServicePortName>>,
    owners: FastMap<(String, String), Vec<(Owner, Element)>>,
    /// How many ports use each chain they put in: one for per-port chains, any number for
    /// the Maps layout's shared pick chains (the chain goes when its last user does).
    chain_refs: FastMap<String, usize>,
    /// What [`NftTable::last_element_changes`] returns.
    last_elements: Option<Vec<ElementChange>>,
}

impl NftTable {
    /// The table for `snap` (as [`render`] makes it), with its per-port bookkeeping.
    pub fn new(cfg: &NftConfig, snap: &ProxySnapshot) -> Self {
        let state = render_base(cfg);
        let mut owners = FastMap::default();
        for (set, elems) in &state.elements {
            for (k, e) in elems {
                owners.insert((set.clone(), k.clone()), vec![(None, e.clone())]);
            }
        }
        let mut t = NftTable {
            cfg: cfg.clone(),
            state,
            ports: FastMap::default(),
            by_service: FastMap::default(),
            owners,
            chain_refs: FastMap::default(),
            last_elements: None,
        };
        for (spn, svc) in &snap.services {
            let frag = t.fragment(snap, spn, svc);
            t.insert(spn, frag);
        }
        t
    }

    /// The whole desired table.
    pub fn state(&self) -> &NftState {
        &self.state
    }

    /// A first sync into a table that does not exist, in two parts: a transaction with the
    /// table, sets, chains and rules but no elements, then every element as netlink
    /// operations ([`crate::nfnetlink`]). Between the two the table is there with empty maps,
    /// which is harmless when nothing was there before. `None` when an element cannot be
    /// encoded (the caller sends the whole table through `nft`).
    ///
    /// Why: at 10k Services × 10 endpoints most of a one-transaction load is `nft` parsing
    /// ~200k element lines (measured 1.5 s of 2.3 s); netlink sends the same in ~0.2 s.
    pub fn initial_skeleton_and_elements(&self) -> Option<(String, Vec<ElementOp>)> {
        let st = &self.state;
        let ops = self.element_ops(st.elements.iter().flat_map(|(set, elems)| {
            elems
                .iter()
                .map(move |(k, e)| (set.as_str(), k.as_str(), Some(e)))
        }))?;
        let skeleton = NftState {
            family: st.family,
            table: st.table.clone(),
            sets: st.sets.clone(),
            chains: st.chains.clone(),
            elements: BTreeMap::new(),
            counters: st.counters.clone(),
        };
        Some((full_transaction(&skeleton, &NftObjects::default()), ops))
    }

    /// A full sync over a table that exists and holds (at most) `existing`, as a [`Resync`];
    /// `None` when an element cannot go over netlink (then the one-transaction
    /// [`full_transaction`] it is).
    pub fn resync(&self, existing: &NftObjects) -> Option<Resync> {
        let st = &self.state;
        let pre = st.prefix();
        let mut skeleton = st.table_line();
        for n in &st.counters {
            skeleton.push_str(&st.counter_line(n));
        }
        for (n, d) in &st.sets {
            skeleton.push_str(&st.set_line(n, d));
        }
        for (n, d) in &st.chains {
            skeleton.push_str(&st.chain_line(n, d));
        }
        for (n, d) in &st.chains {
            let _ = writeln!(skeleton, "flush chain {pre} {n}");
            st.rule_lines(n, d, &mut skeleton);
        }
        let mut elements = BTreeMap::new();
        // Affinity sets fill themselves: their elements are not ours to compare.
        for set in st.sets.iter().filter(|(_, d)| !d.dynamic()).map(|(n, _)| n) {
            let ops = match st.elements.get(set) {
                Some(elems) => self.element_ops(
                    elems
                        .iter()
                        .map(|(k, e)| (set.as_str(), k.as_str(), Some(e))),
                )?,
                None => Vec::new(),
            };
            elements.insert(set.clone(), ops);
        }
        let objects = st.objects();
        let mut cleanup = String::new();
        let stale_chains: Vec<&String> = existing.chains.difference(&objects.chains).collect();
        for n in &stale_chains {
            let _ = writeln!(cleanup, "flush chain {pre} {n}");
        }
        for n in existing.sets.difference(&objects.sets) {
            let _ = writeln!(cleanup, "delete set {pre} {n}");
        }
        for n in &stale_chains {
            let _ = writeln!(cleanup, "delete chain {pre} {n}");
        }
        // The skeleton rewrote every rule that could name one.
        for n in existing.counters.difference(&st.counters) {
            let _ = writeln!(cleanup, "delete counter {pre} {n}");
        }
        Some(Resync {
            skeleton,
            elements,
            cleanup,
        })
    }

    /// The table as a first transaction (table, maps, base chains) and then one transaction
    /// per `ports_per_tx` service ports (their chains, rules, affinity sets and the map
    /// elements whose winning owner they are), for a first sync into a table that does not
    /// exist yet. Why not one batch: nf_tables (6.x) walks the whole batch each time a rule
    /// binds an anonymous set (`__nft_set_trans_bind`), and every per-service chain's
    /// `numgen … vmap { … }` is one, so one batch costs O(services × batch length) in the
    /// kernel — minutes at 10k Services. Every prefix of the sequence is a consistent table
    /// (a Service is either fully there or absent), and with no table before there is
    /// nothing to keep atomic; a full sync over an existing table stays one transaction.
    ///
    /// The Maps layout has no anonymous sets but those of the few affinity ports, and its
    /// pick chains are shared between ports: its first sync is one transaction.
    pub fn initial_transactions(&self, ports_per_tx: usize) -> Vec<String> {
        let st = &self.state;
        if self.cfg.layout == NftLayout::Maps {
            return vec![full_transaction(st, &NftObjects::default())];
        }
        let owned_chains: BTreeSet<&String> = self.ports.values().flat_map(|o| &o.chains).collect();
        let owned_sets: BTreeSet<&String> = self.ports.values().flat_map(|o| &o.sets).collect();
        let mut first = st.table_line();
        for n in &st.counters {
            first.push_str(&st.counter_line(n));
        }
        for (n, d) in st.sets.iter().filter(|(n, _)| !owned_sets.contains(n)) {
            first.push_str(&st.set_line(n, d));
        }
        let base: Vec<(&String, &ChainDef)> = st
            .chains
            .iter()
            .filter(|(n, _)| !owned_chains.contains(n))
            .collect();
        for (n, d) in &base {
            first.push_str(&st.chain_line(n, d));
        }
        for (n, d) in &base {
            st.rule_lines(n, d, &mut first);
        }
        for ((set, k), owners) in &self.owners {
            if owners.last().is_some_and(|(o, _)| o.is_none())
                && let Some(e) = st.elements.get(set).and_then(|m| m.get(k))
            {
                first.push_str(&st.element_line("add", set, k, Some(e)));
            }
        }
        let mut out = vec![first];
        let mut ports: Vec<(&ServicePortName, &PortObjects)> = self.ports.iter().collect();
        ports.sort_by(|a, b| a.0.cmp(b.0));
        for chunk in ports.chunks(ports_per_tx.max(1)) {
            let mut tx = String::new();
            for (_, o) in chunk {
                for n in &o.sets {
                    tx.push_str(&st.set_line(n, &st.sets[n]));
                }
                for n in &o.chains {
                    tx.push_str(&st.chain_line(n, &st.chains[n]));
                }
            }
            for (_, o) in chunk {
                for n in &o.chains {
                    st.rule_lines(n, &st.chains[n], &mut tx);
                }
            }
            for (spn, o) in chunk {
                for se in &o.elements {
                    let winner = self.owners.get(se).and_then(|w| w.last());
                    if winner.is_some_and(|(o, _)| o.as_ref() == Some(*spn))
                        && let Some(e) = st.elements.get(&se.0).and_then(|m| m.get(&se.1))
                    {
                        tx.push_str(&st.element_line("add", &se.0, &se.1, Some(e)));
                    }
                }
            }
            out.push(tx);
        }
        out
    }

    /// What one port contributes, alone.
    fn fragment(&self, snap: &ProxySnapshot, spn: &ServicePortName, svc: &ServicePort) -> NftState {
        let mut f = NftState {
            family: self.state.family,
            table: String::new(),
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
            elements: BTreeMap::new(),
            counters: BTreeSet::new(),
        };
        render_port(&mut f, &self.cfg, snap, spn, svc);
        f
    }

    /// Merges a port's fragment in (the port must not be in the table).
    fn insert(&mut self, spn: &ServicePortName, frag: NftState) {
        let mut objs = PortObjects::default();
        for (n, d) in frag.chains {
            objs.chains.push(n.clone());
            *self.chain_refs.entry(n.clone()).or_default() += 1;
            self.state.chains.insert(n, d);
        }
        for (n, d) in frag.sets {
            objs.sets.push(n.clone());
            self.state.sets.insert(n, d);
        }
        for (set, elems) in frag.elements {
            for (k, e) in elems {
                let owners = self.owners.entry((set.clone(), k.clone())).or_default();
                let at = owners.partition_point(|(o, _)| o.as_ref().is_none_or(|o| o < spn));
                owners.insert(at, (Some(spn.clone()), e));
                let winner = owners.last().map(|(_, e)| e.clone());
                if let Some(w) = winner {
                    self.state
                        .elements
                        .entry(set.clone())
                        .or_default()
                        .insert(k.clone(), w);
                }
                objs.elements.push((set.clone(), k));
            }
        }
        self.by_service
            .entry(spn.service.clone())
            .or_default()
            .push(spn.clone());
        self.ports.insert(spn.clone(), objs);
    }

    /// Re-renders the ports of the `changed` Services from `snap` (which must differ from the
    /// table's previous snapshot only in those Services) and returns the transaction from the
    /// previous table to the new one, as [`incremental_transaction`] would.
    pub fn update(&mut self, snap: &ProxySnapshot, changed: &BTreeSet<ServiceKey>) -> Incremental {
        if changed.is_empty() {
            return Incremental {
                transaction: String::new(),
                stale_chains: Vec::new(),
            };
        }
        let new_frags: Vec<(&ServicePortName, NftState)> = snap
            .services
            .iter()
            .filter(|(spn, _)| changed.contains(&spn.service))
            .map(|(spn, svc)| (spn, self.fragment(snap, spn, svc)))
            .collect();
        // Take the changed ports out, remembering what the kernel holds for their names.
        let mut touched_chains: BTreeSet<String> = BTreeSet::new();
        let mut touched_sets: BTreeSet<String> = BTreeSet::new();
        let mut touched_elems: BTreeSet<(String, String)> = BTreeSet::new();
        for (_, f) in &new_frags {
            touched_chains.extend(f.chains.keys().cloned());
            touched_sets.extend(f.sets.keys().cloned());
            for (set, elems) in &f.elements {
                touched_elems.extend(elems.keys().map(|k| (set.clone(), k.clone())));
            }
        }
        let old_ports: Vec<(ServicePortName, PortObjects)> = changed
            .iter()
            .filter_map(|k| self.by_service.remove(k))
            .flatten()
            .filter_map(|spn| self.ports.remove(&spn).map(|o| (spn, o)))
            .collect();
        for (_, o) in &old_ports {
            touched_chains.extend(o.chains.iter().cloned());
            touched_sets.extend(o.sets.iter().cloned());
            touched_elems.extend(o.elements.iter().cloned());
        }
        let before_elems: BTreeMap<&(String, String), Option<Element>> = touched_elems
            .iter()
            .map(|se| {
                let e = self
                    .state
                    .elements
                    .get(&se.0)
                    .and_then(|m| m.get(&se.1))
                    .cloned();
                (se, e)
            })
            .collect();
        // Every touched chain as it is now: a shared pick chain a new port starts to use may
        // exist already, one an old port stops using may stay for others.
        let before_chains: BTreeMap<String, ChainDef> = touched_chains
            .iter()
            .filter_map(|n| self.state.chains.get(n).map(|d| (n.clone(), d.clone())))
            .collect();
        let mut before_sets: BTreeMap<String, SetDef> = BTreeMap::new();
        for (spn, o) in &old_ports {
            for n in &o.chains {
                let refs = self.chain_refs.entry(n.clone()).or_default();
                *refs = refs.saturating_sub(1);
                if *refs == 0 {
                    self.chain_refs.remove(n);
                    self.state.chains.remove(n);
                }
            }
            for n in &o.sets {
                if let Some(d) = self.state.sets.remove(n) {
                    before_sets.insert(n.clone(), d);
                }
            }
            for se in &o.elements {
                if let Some(owners) = self.owners.get_mut(se) {
                    owners.retain(|(owner, _)| owner.as_ref() != Some(spn));
                }
            }
        }
        for (spn, f) in new_frags {
            self.insert(spn, f);
        }
        for se in &touched_elems {
            let winner = self
                .owners
                .get(se)
                .and_then(|o| o.last())
                .map(|(_, e)| e.clone());
            let set = self.state.elements.entry(se.0.clone()).or_default();
            match winner {
                Some(w) => {
                    set.insert(se.1.clone(), w);
                }
                None => {
                    set.remove(&se.1);
                    self.owners.remove(se);
                }
            }
        }
        let (inc, elements) = self.delta(
            &touched_chains,
            &touched_sets,
            &before_chains,
            &before_sets,
            &before_elems,
        );
        self.last_elements = elements;
        inc
    }

    /// When the last [`NftTable::update`] changed set elements only (no set, chain or rule):
    /// those changes, in its transaction's order — what [`Self::element_ops`] sends over netlink.
    pub fn last_element_changes(&self) -> Option<&[ElementChange]> {
        self.last_elements.as_deref()
    }

    /// Element changes as netlink operations, or `None` if a set's type or an element is
    /// beyond [`ElementCodec`] (the caller then uses the `nft` transaction).
    pub fn element_ops<'a>(
        &self,
        changes: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a Element>)>,
    ) -> Option<Vec<ElementOp>> {
        let mut codecs: FastMap<&str, ElementCodec> = FastMap::default();
        let mut ops = Vec::new();
        for (set, key, add) in changes {
            let codec = match codecs.get(set) {
                Some(c) => c,
                None => {
                    let c = ElementCodec::new(&self.state.sets.get(set)?.type_).ok()?;
                    codecs.entry(set).or_insert(c)
                }
            };
            let op = match add {
                Some(e) => codec.op(true, set, key, e.value.as_deref(), e.comment.as_deref()),
                None => codec.op(false, set, key, None, None),
            };
            ops.push(op.ok()?);
        }
        Some(ops)
    }

    /// The transaction for the touched names, in [`incremental_transaction`]'s order.
    fn delta(
        &self,
        touched_chains: &BTreeSet<String>,
        touched_sets: &BTreeSet<String>,
        before_chains: &BTreeMap<String, ChainDef>,
        before_sets: &BTreeMap<String, SetDef>,
        before_elems: &BTreeMap<&(String, String), Option<Element>>,
    ) -> (Incremental, Option<Vec<ElementChange>>) {
        let new = &self.state;
        // Whether anything but elements changes, and the element changes themselves: a
        // change of elements only can go over netlink instead of through `nft`.
        let mut structural = false;
        let mut changes = Vec::new();
        let pre = new.prefix();
        let now_elem = |(set, k): &(String, String)| new.elements.get(set).and_then(|m| m.get(k));
        let mut out = String::new();
        let mut rewrite: BTreeSet<&String> = BTreeSet::new();
        for n in touched_sets {
            if let (Some(o), Some(d)) = (before_sets.get(n), new.sets.get(n))
                && o != d
            {
                let refs = before_chains.iter().filter(|(_, def)| refers_to(def, n));
                redefine_set(&pre, n, o, refs.map(|(c, _)| c), &mut rewrite, &mut out);
                out.push_str(&new.set_line(n, d));
                structural = true;
            }
        }
        for n in touched_sets {
            if let Some(d) = new.sets.get(n)
                && !before_sets.contains_key(n)
            {
                out.push_str(&new.set_line(n, d));
                structural = true;
            }
        }
        for n in touched_chains {
            if let Some(d) = new.chains.get(n)
                && !before_chains.contains_key(n)
            {
                out.push_str(&new.chain_line(n, d));
                structural = true;
            }
        }
        for (se, before) in before_elems {
            if let Some(b) = before
                && new.sets.contains_key(&se.0)
                && now_elem(se) != Some(b)
            {
                out.push_str(&new.element_line("delete", &se.0, &se.1, None));
                changes.push(ElementChange {
                    set: se.0.clone(),
                    key: se.1.clone(),
                    add: None,
                });
            }
        }
        for n in touched_chains {
            match (before_chains.get(n), new.chains.get(n)) {
                (Some(o), Some(d)) if o.rules == d.rules && !rewrite.contains(n) => {}
                (Some(_), Some(d)) => {
                    let _ = writeln!(out, "flush chain {pre} {n}");
                    new.rule_lines(n, d, &mut out);
                    structural = true;
                }
                (None, Some(d)) => {
                    new.rule_lines(n, d, &mut out);
                    structural = true;
                }
                (_, None) => {}
            }
        }
        for (se, before) in before_elems {
            if let Some(e) = now_elem(se)
                && before.as_ref() != Some(e)
            {
                out.push_str(&new.element_line("add", &se.0, &se.1, Some(e)));
                changes.push(ElementChange {
                    set: se.0.clone(),
                    key: se.1.clone(),
                    add: Some(e.clone()),
                });
            }
        }
        let mut stale_chains = Vec::new();
        for n in touched_chains {
            if before_chains.contains_key(n) && !new.chains.contains_key(n) {
                let _ = writeln!(out, "flush chain {pre} {n}");
                stale_chains.push(n.clone());
                structural = true;
            }
        }
        for (n, d) in before_sets {
            if !new.sets.contains_key(n) {
                let kind = if d.is_map { "map" } else { "set" };
                let _ = writeln!(out, "delete {kind} {pre} {n}");
                structural = true;
            }
        }
        let inc = Incremental {
            transaction: out,
            stale_chains,
        };
        (inc, (!structural).then_some(changes))
    }
}

/// Deletes chains left stale by earlier incremental syncs, skipping any that `current` uses
/// again.
pub fn delete_chains_transaction(current: &NftState, chains: &[String]) -> String {
    let pre = current.prefix();
    let mut out = String::new();
    for n in chains {
        if !current.chains.contains_key(n) {
            let _ = writeln!(out, "delete chain {pre} {n}");
        }
    }
    out
}

#[cfg(test)]
mod tests;

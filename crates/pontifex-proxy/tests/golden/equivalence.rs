//! The two kernel renderings agree: for random Service / endpoint sets, the nftables
//! transaction and the iptables-restore input (each interpreted by a small evaluator of exactly
//! the text the renderer emits, see `nft.rs` and `ipt.rs`) send every packet to a Service
//! address — ClusterIP, external IP, load-balancer IP, node port — from a pod, the endpoint
//! itself (hairpin), the outside and the node itself, to the same set of endpoints with the
//! same masquerade decision, or reject / drop it alike.
//!
//! What is compared: the set of possible outcomes (random endpoint choice and unknown affinity
//! state take every branch). What is not: addresses of no Service port (the nftables mode
//! rejects unknown ports of ClusterIPs and drops unallocated service-CIDR addresses; the
//! iptables mode has no such rules — upstream differs the same way), loopback node ports
//! (nftables mode never serves them, upstream neither), IPv6.

mod ipt;
mod nft;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use ipnet::IpNet;
use pontifex_proxy::apply::iptables_jump_rules;
use pontifex_proxy::iptables::{self, IptablesConfig, LocalDetector, SyncKind};
use pontifex_proxy::model::{
    Endpoint, IpFamily, Protocol, ProxySnapshot, ServiceKey, ServicePort, ServicePortName,
    categorize,
};
use pontifex_proxy::nftables::{self, NftConfig, NftLayout, NftObjects};
use proptest::prelude::*;

const NODE_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 2);
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// A token of a rule line: a word, a quoted string, or a `{ … }` group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Word(String),
    Str(String),
    Group(Vec<Tok>),
}

/// Splits a line into words, `"strings"` and `{ groups }`.
pub(crate) fn tokens(line: &str) -> Vec<Tok> {
    fn go(it: &mut std::iter::Peekable<std::str::Chars<'_>>, nested: bool) -> Vec<Tok> {
        let mut out = Vec::new();
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut Vec<Tok>| {
            if !word.is_empty() {
                out.push(Tok::Word(std::mem::take(word)));
            }
        };
        while let Some(c) = it.next() {
            match c {
                ' ' | '\t' => flush(&mut word, &mut out),
                '"' => {
                    flush(&mut word, &mut out);
                    let s: String = it.by_ref().take_while(|&c| c != '"').collect();
                    out.push(Tok::Str(s));
                }
                '{' => {
                    flush(&mut word, &mut out);
                    out.push(Tok::Group(go(it, true)));
                }
                '}' if nested => {
                    flush(&mut word, &mut out);
                    return out;
                }
                c => word.push(c),
            }
        }
        assert!(!nested, "unbalanced braces");
        flush(&mut word, &mut out);
        out
    }
    go(&mut line.chars().peekable(), false)
}

/// Whether `net` (an address or a CIDR) contains `a`.
pub(crate) fn net_contains(net: &str, a: Ipv4Addr) -> bool {
    match net.parse::<IpNet>() {
        Ok(n) => n.contains(&IpAddr::V4(a)),
        Err(_) => net.parse::<Ipv4Addr>().expect("address or CIDR") == a,
    }
}

/// The packet-independent facts an evaluator needs.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) src: Ipv4Addr,
    pub(crate) proto: &'static str,
}

impl Ctx {
    /// `fib … type local` / `addrtype LOCAL`: the node's own addresses.
    pub(crate) fn is_local(&self, a: Ipv4Addr) -> bool {
        a == NODE_IP || a.is_loopback()
    }
}

/// What changes as the packet goes: destination (after DNAT) and the mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct St {
    pub(crate) daddr: Ipv4Addr,
    pub(crate) dport: u16,
    pub(crate) mark: u32,
    pub(crate) dnat: Option<SocketAddrV4>,
}

/// A verdict that ends a base chain (or the packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Accept,
    Drop,
    Reject,
    Dnat(SocketAddrV4),
    Masquerade,
}

/// How a rule leaves its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Flow {
    /// On to the next rule.
    Next,
    /// The chain ends (return to the caller).
    Return,
    /// A verdict.
    Verdict(Verdict),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

/// Where a packet ends up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// DNATed to this endpoint, masqueraded or not.
    Endpoint {
        to: SocketAddrV4,
        masq: bool,
    },
    /// Not touched by service rules (routed on to its original destination).
    Pass {
        masq: bool,
    },
    Reject,
    Drop,
}

/// A packet to evaluate.
#[derive(Debug, Clone, Copy)]
struct Packet {
    src: Ipv4Addr,
    /// Sent by the node itself (output hook) rather than arriving (prerouting).
    from_node: bool,
    dst: Ipv4Addr,
    proto: Protocol,
    dport: u16,
}

/// Either evaluator, behind one face.
trait Hooks {
    fn run(&self, cx: &Ctx, hook: Hook, st: St) -> BTreeSet<(St, Option<Verdict>)>;
}

impl Hooks for nft::NftTable {
    fn run(&self, cx: &Ctx, hook: Hook, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        self.hook(cx, hook, st)
    }
}

impl Hooks for ipt::IptTables {
    fn run(&self, cx: &Ctx, hook: Hook, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        self.hook(cx, hook, st)
    }
}

/// Every outcome of `p` through the hooks it crosses.
fn outcomes(rules: &dyn Hooks, p: Packet) -> BTreeSet<Outcome> {
    let cx = Ctx {
        src: p.src,
        proto: p.proto.as_str(),
    };
    let st = St {
        daddr: p.dst,
        dport: p.dport,
        mark: 0,
        dnat: None,
    };
    let mut out = BTreeSet::new();
    let first = if p.from_node {
        Hook::Output
    } else {
        Hook::Prerouting
    };
    for (s, v) in rules.run(&cx, first, st) {
        if let Some(v) = v {
            out.insert(terminal(v));
            continue;
        }
        let second: Vec<(St, Option<Verdict>)> = if p.from_node {
            vec![(s, None)]
        } else {
            let h = if cx.is_local(s.daddr) {
                Hook::Input
            } else {
                Hook::Forward
            };
            rules.run(&cx, h, s).into_iter().collect()
        };
        for (s, v) in second {
            if let Some(v) = v {
                out.insert(terminal(v));
                continue;
            }
            if cx.is_local(s.daddr) && s.dnat.is_none() {
                // Delivered to the node itself (no postrouting); only a reject/drop counts.
                out.insert(Outcome::Pass { masq: false });
                continue;
            }
            for (_, v) in rules.run(&cx, Hook::Postrouting, s) {
                let masq = match v {
                    None | Some(Verdict::Accept) => false,
                    Some(Verdict::Masquerade) => true,
                    Some(v) => {
                        out.insert(terminal(v));
                        continue;
                    }
                };
                out.insert(match s.dnat {
                    Some(to) => Outcome::Endpoint { to, masq },
                    None => Outcome::Pass { masq },
                });
            }
        }
    }
    out
}

fn terminal(v: Verdict) -> Outcome {
    match v {
        Verdict::Drop => Outcome::Drop,
        Verdict::Reject => Outcome::Reject,
        v => panic!("{v:?} is not a verdict a filter hook ends with"),
    }
}

/// One generated Service port.
#[derive(Debug, Clone)]
struct GenPort {
    proto: Protocol,
    port: u16,
    kind: u8, // 0 ClusterIP, 1 NodePort, 2 LoadBalancer
    external_ip: bool,
    source_ranges: Vec<&'static str>,
    etp_local: bool,
    itp_local: bool,
    affinity: bool,
    endpoints: Vec<(u8, u8, u16, u8)>, // (node 0|1, host, port, condition)
}

fn gen_port() -> impl Strategy<Value = GenPort> {
    let proto = prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ];
    let ranges = proptest::sample::subsequence(
        vec!["192.168.7.0/24", "172.31.0.0/24", "10.1.0.0/16"],
        0..=2,
    );
    let eps = proptest::collection::vec(
        (
            0u8..2,
            2u8..6,
            prop_oneof![Just(8080u16), Just(9090)],
            0u8..5,
        ),
        0..5,
    );
    (
        proto,
        prop_oneof![Just(80u16), Just(53), Just(443)],
        0u8..3,
        any::<bool>(),
        ranges,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        eps,
    )
        .prop_map(
            |(
                proto,
                port,
                kind,
                external_ip,
                source_ranges,
                etp_local,
                itp_local,
                affinity,
                endpoints,
            )| GenPort {
                proto,
                port,
                kind,
                external_ip,
                source_ranges,
                etp_local,
                itp_local,
                affinity,
                endpoints,
            },
        )
}

/// Builds the snapshot: Service `i` gets ClusterIP 10.96.0.(10+i), external IP
/// 172.31.254.(10+i), LB IP 172.31.255.(10+i), node port 30000+i; endpoints on node 0 are local.
fn snapshot(ports: &[GenPort]) -> ProxySnapshot {
    let mut snap = ProxySnapshot::default();
    for (i, g) in ports.iter().enumerate() {
        let i = u8::try_from(i).unwrap();
        let name = ServicePortName {
            service: ServiceKey::new("ns", format!("svc{i}")),
            port: "p".into(),
            protocol: g.proto,
        };
        let mut sp = ServicePort {
            name: name.clone(),
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10 + i))],
            port: g.port,
            node_port: if g.kind >= 1 { 30000 + u16::from(i) } else { 0 },
            external_ips: if g.external_ip {
                vec![IpAddr::V4(Ipv4Addr::new(172, 31, 254, 10 + i))]
            } else {
                vec![]
            },
            load_balancer_ips: if g.kind == 2 {
                vec![IpAddr::V4(Ipv4Addr::new(172, 31, 255, 10 + i))]
            } else {
                vec![]
            },
            load_balancer_source_ranges: if g.kind == 2 {
                g.source_ranges.iter().map(|r| r.parse().unwrap()).collect()
            } else {
                vec![]
            },
            external_policy_local: false,
            internal_policy_local: g.itp_local,
            affinity_timeout: g.affinity.then_some(10800),
            health_check_node_port: 0,
        };
        sp.external_policy_local = g.etp_local && sp.externally_accessible();
        if g.kind == 2 && sp.external_policy_local {
            sp.health_check_node_port = 32000 + u16::from(i);
        }
        let mut eps: BTreeMap<String, Endpoint> = BTreeMap::new();
        for &(node, host, port, cond) in &g.endpoints {
            // Conditions: ready; not ready; terminating and serving; terminating, not serving;
            // ready again (weights the common case).
            let (ready, serving, terminating) = match cond {
                0 | 4 => (true, true, false),
                1 => (false, false, false),
                2 => (false, true, true),
                _ => (false, false, true),
            };
            let e = Endpoint {
                ip: IpAddr::V4(Ipv4Addr::new(10, 244, node, host)),
                port,
                is_local: node == 0,
                ready,
                serving,
                terminating,
            };
            eps.insert(e.addr().to_string(), e);
        }
        if !eps.is_empty() {
            snap.endpoints
                .insert(name.clone(), eps.into_values().collect());
        }
        snap.services.insert(name, sp);
    }
    snap
}

/// The packets probed: every address and port of every Service, from a pod elsewhere, from
/// one of its endpoints (hairpin), from outside (in and out of the source ranges) and from the
/// node itself.
fn probes(snap: &ProxySnapshot) -> Vec<Packet> {
    let mut out = Vec::new();
    for (name, svc) in &snap.services {
        let mut dsts: Vec<(Ipv4Addr, u16)> = Vec::new();
        for ip in svc
            .cluster_ips
            .iter()
            .chain(&svc.external_ips)
            .chain(&svc.load_balancer_ips)
        {
            let IpAddr::V4(ip) = ip else { continue };
            dsts.push((*ip, svc.port));
        }
        if svc.node_port != 0 {
            dsts.push((NODE_IP, svc.node_port));
        }
        let mut srcs = vec![
            (Ipv4Addr::new(10, 244, 1, 200), false),
            (Ipv4Addr::new(192, 168, 7, 7), false),
            (Ipv4Addr::new(172, 31, 0, 50), false),
            (Ipv4Addr::new(198, 51, 100, 1), false),
            (NODE_IP, true),
        ];
        if let Some(IpAddr::V4(e)) = snap.endpoints_of(name).first().map(|e| e.ip) {
            srcs.push((e, false));
        }
        for &(dst, dport) in &dsts {
            for &(src, from_node) in &srcs {
                out.push(Packet {
                    src,
                    from_node,
                    dst,
                    proto: name.protocol,
                    dport,
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
struct GenCfg {
    layout: NftLayout,
    detector: bool,
    masquerade_all: bool,
    node_port_addresses: bool,
}

fn configs(g: &GenCfg) -> (NftConfig, IptablesConfig) {
    let detector = if g.detector {
        LocalDetector::Cidr(CLUSTER_CIDR.parse().unwrap())
    } else {
        LocalDetector::None
    };
    let npa = g.node_port_addresses.then(|| vec![IpAddr::V4(NODE_IP)]);
    let nft = NftConfig {
        layout: g.layout,
        table: "pontifex".into(),
        family: IpFamily::V4,
        node_ip: Some(IpAddr::V4(NODE_IP)),
        local_detector: detector.clone(),
        masquerade_all: g.masquerade_all,
        masquerade_bit: 14,
        node_port_addresses: npa.clone(),
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        // As the iptables side (be_liberal unset): the INVALID drop is in both.
        invalid_drop: true,
    };
    let ipt = IptablesConfig {
        family: IpFamily::V4,
        node_ip: Some(IpAddr::V4(NODE_IP)),
        local_detector: detector,
        masquerade_all: g.masquerade_all,
        node_port_addresses: npa,
        ..IptablesConfig::default()
    };
    (nft, ipt)
}

/// Renders both, evaluates every probe, returns the disagreements.
fn disagreements(snap: &ProxySnapshot, g: &GenCfg) -> Vec<String> {
    let (ncfg, icfg) = configs(g);
    let state = nftables::render(&ncfg, snap);
    let nft_text = nftables::full_transaction(&state, &NftObjects::default());
    let nft = nft::NftTable::parse(&nft_text);
    let ipt_text = iptables::render(&icfg, snap, SyncKind::Full, &BTreeSet::new()).text;
    let ipt = ipt::IptTables::parse(&ipt_text, &iptables_jump_rules(&icfg));
    let mut bad = Vec::new();
    for p in probes(snap) {
        let a = outcomes(&nft, p);
        let b = outcomes(&ipt, p);
        if a != b && !upstream_difference(snap, &p, &a, &b) {
            bad.push(format!("{p:?}\n  nftables: {a:?}\n  iptables: {b:?}"));
        }
    }
    bad
}

/// Where kube-proxy's two modes differ upstream, and ours follow: the iptables mode hooks
/// `KUBE-EXTERNAL-SERVICES` (the reject/drop of external IPs and LB IPs without usable
/// endpoints) into INPUT and FORWARD only, so the node's own connections to such an address
/// leave unrejected; the nftables mode's `filter-output` jumps to `service-endpoints-check`
/// and rejects/drops them (kube-proxy.md, "Jumps").
fn upstream_difference(
    snap: &ProxySnapshot,
    p: &Packet,
    nft: &BTreeSet<Outcome>,
    ipt: &BTreeSet<Outcome>,
) -> bool {
    let external = snap.services.values().any(|s| {
        s.external_ips
            .iter()
            .chain(&s.load_balancer_ips)
            .any(|ip| *ip == IpAddr::V4(p.dst))
    });
    let node_to_external = p.from_node
        && external
        && *ipt == BTreeSet::from([Outcome::Pass { masq: false }])
        && (*nft == BTreeSet::from([Outcome::Reject]) || *nft == BTreeSet::from([Outcome::Drop]));
    // The nftables mode installs the LoadBalancer source-range firewall whether or not the
    // Service has endpoints (`usesFWChain := len(VIPs) > 0 && len(ranges) > 0`); the iptables
    // mode only with endpoints (`hasEndpoints && …`), so a disallowed client of an
    // endpoint-less Service is dropped by one and rejected by the other.
    let firewalled_without_endpoints = snap.services.iter().any(|(name, s)| {
        s.load_balancer_ips.contains(&IpAddr::V4(p.dst))
            && !s.load_balancer_source_ranges.is_empty()
            && !categorize(snap.endpoints_of(name), s).has_any
            && !s
                .load_balancer_source_ranges
                .iter()
                .any(|n| n.contains(&IpAddr::V4(p.src)))
    }) && *ipt == BTreeSet::from([Outcome::Reject])
        && *nft == BTreeSet::from([Outcome::Drop]);
    node_to_external || firewalled_without_endpoints
}

fn gen_cfg() -> impl Strategy<Value = GenCfg> {
    let layout = prop_oneof![Just(NftLayout::Maps), Just(NftLayout::Chains)];
    (layout, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(l, d, m, n)| GenCfg {
        layout: l,
        detector: d,
        masquerade_all: m,
        node_port_addresses: n,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nftables_and_iptables_send_every_packet_to_the_same_endpoints(
        ports in proptest::collection::vec(gen_port(), 1..5),
        cfg in gen_cfg(),
    ) {
        let snap = snapshot(&ports);
        let bad = disagreements(&snap, &cfg);
        prop_assert!(bad.is_empty(), "{} disagreements, first:\n{}", bad.len(), bad[0]);
    }
}

/// The evaluators are not vacuous: a hand-checked Service gives the outcomes kube-proxy's
/// documentation describes, in both modes.
#[test]
fn evaluators_see_dnat_masquerade_reject_and_drop() {
    let g = GenPort {
        proto: Protocol::Tcp,
        port: 80,
        kind: 1,
        external_ip: false,
        source_ranges: vec![],
        etp_local: false,
        itp_local: false,
        affinity: false,
        endpoints: vec![(0, 2, 8080, 0), (1, 3, 8080, 0)],
    };
    let mut empty = g.clone();
    empty.endpoints.clear();
    let mut local = g.clone();
    local.etp_local = true;
    local.endpoints = vec![(1, 3, 8080, 0)];
    let snap = snapshot(&[g, empty, local]);
    for layout in [NftLayout::Maps, NftLayout::Chains] {
        let cfg = GenCfg {
            layout,
            detector: true,
            masquerade_all: false,
            node_port_addresses: false,
        };
        hand_checked(&snap, &cfg);
    }
}

fn hand_checked(snap: &ProxySnapshot, cfg: &GenCfg) {
    let (ncfg, icfg) = configs(cfg);
    let nft = nft::NftTable::parse(&nftables::full_transaction(
        &nftables::render(&ncfg, snap),
        &NftObjects::default(),
    ));
    let ipt = ipt::IptTables::parse(
        &iptables::render(&icfg, snap, SyncKind::Full, &BTreeSet::new()).text,
        &iptables_jump_rules(&icfg),
    );
    let ep = |h: u8, masq: bool| Outcome::Endpoint {
        to: SocketAddrV4::new(Ipv4Addr::new(10, 244, if h == 2 { 0 } else { 1 }, h), 8080),
        masq,
    };
    let pkt = |src: Ipv4Addr, from_node: bool, dst: Ipv4Addr, dport: u16| Packet {
        src,
        from_node,
        dst,
        proto: Protocol::Tcp,
        dport,
    };
    let pod = Ipv4Addr::new(10, 244, 1, 200);
    let outside = Ipv4Addr::new(192, 168, 7, 7);
    let cases = [
        // Pod → ClusterIP: either endpoint, not masqueraded.
        (
            pkt(pod, false, Ipv4Addr::new(10, 96, 0, 10), 80),
            vec![ep(2, false), ep(3, false)],
        ),
        // Node → ClusterIP: masqueraded (not from the cluster CIDR).
        (
            pkt(NODE_IP, true, Ipv4Addr::new(10, 96, 0, 10), 80),
            vec![ep(2, true), ep(3, true)],
        ),
        // Hairpin: an endpoint reaching itself is masqueraded.
        (
            pkt(
                Ipv4Addr::new(10, 244, 0, 2),
                false,
                Ipv4Addr::new(10, 96, 0, 10),
                80,
            ),
            vec![ep(2, true), ep(3, false)],
        ),
        // Outside → NodePort (Cluster policy): masqueraded.
        (
            pkt(outside, false, NODE_IP, 30000),
            vec![ep(2, true), ep(3, true)],
        ),
        // No endpoints: rejected.
        (
            pkt(pod, false, Ipv4Addr::new(10, 96, 0, 11), 80),
            vec![Outcome::Reject],
        ),
        (pkt(outside, false, NODE_IP, 30001), vec![Outcome::Reject]),
        // eTP=Local without a local endpoint: outside traffic dropped, pods short-circuited.
        (pkt(outside, false, NODE_IP, 30002), vec![Outcome::Drop]),
        (pkt(pod, false, NODE_IP, 30002), vec![ep(3, false)]),
    ];
    for (p, want) in cases {
        let want: BTreeSet<Outcome> = want.into_iter().collect();
        assert_eq!(outcomes(&nft, p), want, "nftables ({:?}) {p:?}", cfg.layout);
        assert_eq!(outcomes(&ipt, p), want, "iptables {p:?}");
    }
}

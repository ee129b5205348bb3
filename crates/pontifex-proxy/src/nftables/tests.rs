use super::*;
use crate::model::{Protocol, ServiceKey, ServicePort};

fn snap(eps: &[(&str, bool)], etp_local: bool) -> ProxySnapshot {
    let name = ServicePortName {
        service: ServiceKey::new("ns", "web"),
        port: "http".into(),
        protocol: Protocol::Tcp,
    };
    let mut s = ProxySnapshot::default();
    s.services.insert(
        name.clone(),
        ServicePort {
            name: name.clone(),
            cluster_ips: vec!["10.96.0.20".parse().unwrap()],
            port: 80,
            node_port: 30002,
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_source_ranges: vec![],
            external_policy_local: etp_local,
            internal_policy_local: false,
            affinity_timeout: None,
            health_check_node_port: 0,
        },
    );
    s.endpoints.insert(
        name,
        eps.iter()
            .map(|(ip, local)| Endpoint {
                ip: ip.parse().unwrap(),
                port: 8080,
                is_local: *local,
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect(),
    );
    s
}

/// kube-proxy's layout (what most tests here describe); [`maps_cfg`] for the Maps layout.
fn cfg() -> NftConfig {
    NftConfig {
        layout: NftLayout::Chains,
        local_detector: LocalDetector::Cidr("10.244.0.0/16".parse().unwrap()),
        ..Default::default()
    }
}

fn maps_cfg() -> NftConfig {
    NftConfig {
        layout: NftLayout::Maps,
        ..cfg()
    }
}

#[test]
fn table_name_is_a_parameter_and_sanitised() {
    let st = render(
        &NftConfig {
            table: "pon;tifex".into(),
            ..cfg()
        },
        &ProxySnapshot::default(),
    );
    assert!(st.dump().starts_with("add table ip pon_tifex "));
}

#[test]
fn match_all_nodeports_exclude_localhost() {
    let st = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    assert!(st.chains["services"].rules.iter().any(|r| r
        == "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"));
    assert!(!st.sets.contains_key("nodeport-ips"));
}

#[test]
fn etp_local_with_local_endpoint_goes_to_local_chain() {
    let st = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.0.7", true)], true),
    );
    let ext = chain_name("external-", "ns/web/tcp/http");
    let local = chain_name("local-", "ns/web/tcp/http");
    assert_eq!(
        st.chains[&ext].rules.last().unwrap(),
        &format!("goto {local}")
    );
    assert!(
        st.chains[&local].rules[0].starts_with("numgen random mod 1 vmap { 0 : goto endpoint-")
    );
    // Without a local endpoint: external traffic dropped, no local chain.
    let st = render(&cfg(), &snap(&[("10.244.1.2", false)], true));
    assert!(!st.chains.contains_key(&local));
    assert_eq!(
        st.elements["no-endpoint-nodeports"]["tcp . 30002"]
            .value
            .as_deref(),
        Some("drop")
    );
}

#[test]
fn endpoint_change_is_small_incremental_update() {
    let a = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.1.3", false)], false),
    );
    let b = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    let inc = incremental_transaction(&a, &b).unwrap();
    let svc = chain_name("service-", "ns/web/tcp/http");
    let gone = chain_name("endpoint-", "ns/web/tcp/http__10.244.1.3/8080");
    assert_eq!(inc.stale_chains, vec![gone.clone()]);
    assert!(
        inc.transaction
            .contains(&format!("flush chain ip pontifex {svc}\n"))
    );
    assert!(
        inc.transaction
            .contains(&format!("flush chain ip pontifex {gone}\n"))
    );
    assert!(
        !inc.transaction.contains("add element"),
        "no element changed:\n{}",
        inc.transaction
    );
    assert_eq!(
        delete_chains_transaction(&b, &inc.stale_chains),
        format!("delete chain ip pontifex {gone}\n")
    );
    // Deferred deletion skips a chain that came back.
    assert_eq!(delete_chains_transaction(&a, &inc.stale_chains), "");
    // A changed table name cannot be done incrementally.
    let other = render(
        &NftConfig {
            table: "x".into(),
            ..cfg()
        },
        &snap(&[], false),
    );
    assert!(incremental_transaction(&a, &other).is_none());
}

#[test]
fn full_transaction_flushes_static_maps_and_deletes_leftovers() {
    let a = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.1.3", false)], false),
    );
    let b = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    let t = full_transaction(&b, &a.objects());
    assert!(t.starts_with(
        "add table ip pontifex { comment \"rules for kube-proxy\" ; }\nflush table ip pontifex\n"
    ));
    assert!(t.contains("flush map ip pontifex service-ips\n"));
    assert!(t.ends_with(&format!(
        "delete chain ip pontifex {}\n",
        chain_name("endpoint-", "ns/web/tcp/http__10.244.1.3/8080")
    )));
}

#[test]
fn long_names_are_cut() {
    let long = "a".repeat(300);
    let n = chain_name("service-", &long);
    assert_eq!(n.len(), 240);
    assert!(n.ends_with("..."));
}

// ---- NftTable: incremental == diff of full renders -------------------------------------

/// The kernel's table as far as our transactions touch it, driven by their text: what `nft`
/// would hold after applying them, with `nft`'s errors for what it refuses (adding an element
/// that exists with another value, deleting what does not exist, a rule in a missing chain).
#[derive(Debug, Default, PartialEq, Eq)]
struct Kernel {
    sets: BTreeMap<String, String>,
    chains: BTreeMap<String, Vec<String>>,
    elements: BTreeMap<String, BTreeMap<String, String>>,
    counters: BTreeSet<String>,
}

impl Kernel {
    fn apply(&mut self, tx: &str) -> Result<(), String> {
        for line in tx.lines() {
            let w: Vec<&str> = line.splitn(5, ' ').collect();
            let (verb, kind) = (w[0], w[1]);
            let name = w.get(4).copied().unwrap_or_default();
            let (obj, rest) = name.split_once(' ').unwrap_or((name, ""));
            if verb == "add" && matches!(kind, "rule" | "element") {
                // nf_tables resolves verdict targets when the rule or element is added.
                for target in rest
                    .split("goto ")
                    .skip(1)
                    .chain(rest.split("jump ").skip(1))
                {
                    let chain = target.split([' ', '\n']).next().unwrap_or_default();
                    if !chain.is_empty()
                        && !chain.starts_with('{')
                        && !self.chains.contains_key(chain)
                    {
                        return Err(format!("no chain {chain}: {line}"));
                    }
                }
                // And named counters.
                for c in rest.split("counter name \"").skip(1) {
                    let name = c.split('"').next().unwrap_or_default();
                    if !self.counters.contains(name) {
                        return Err(format!("no counter {name}: {line}"));
                    }
                }
            }
            match (verb, kind) {
                ("add", "table") => {}
                ("flush", "table") => self.chains.values_mut().for_each(Vec::clear),
                ("add", "set" | "map") => {
                    let def = format!("{kind} {rest}");
                    match self.sets.get(obj) {
                        Some(d) if *d != def => return Err(format!("set redefined: {line}")),
                        _ => {
                            self.sets.insert(obj.into(), def);
                            self.elements.entry(obj.into()).or_default();
                        }
                    }
                }
                ("flush", "set" | "map") => {
                    self.elements.get_mut(obj).ok_or(line)?.clear();
                }
                ("delete", "set" | "map") => {
                    if self.refers(&format!("@{obj}")) {
                        return Err(format!("set in use: {line}"));
                    }
                    self.sets.remove(obj).ok_or(line)?;
                    self.elements.remove(obj);
                }
                ("add", "chain") => {
                    self.chains.entry(obj.into()).or_default();
                }
                ("flush", "chain") => self.chains.get_mut(obj).ok_or(line)?.clear(),
                ("delete", "chain") => {
                    if self.refers(&format!("goto {obj}")) || self.refers(&format!("jump {obj}")) {
                        return Err(format!("chain in use: {line}"));
                    }
                    let c = self.chains.remove(obj).ok_or(line)?;
                    if !c.is_empty() {
                        return Err(format!("chain not empty: {line}"));
                    }
                }
                ("add", "rule") => self.chains.get_mut(obj).ok_or(line)?.push(rest.into()),
                ("add" | "delete", "element") => {
                    let body = rest
                        .strip_prefix("{ ")
                        .and_then(|b| b.strip_suffix(" }"))
                        .ok_or(line)?;
                    let key = body
                        .split(" comment ")
                        .next()
                        .and_then(|k| k.split(" : ").next())
                        .unwrap_or(body);
                    let elems = self.elements.get_mut(obj).ok_or(line)?;
                    if verb == "delete" {
                        elems.remove(key).ok_or(line)?;
                    } else if elems.get(key).is_some_and(|b| b != body) {
                        return Err(format!("element exists: {line}"));
                    } else {
                        elems.insert(key.into(), body.into());
                    }
                }
                ("add", "counter") => {
                    self.counters.insert(obj.into());
                }
                ("delete", "counter") => {
                    if self.refers(&format!("counter name \"{obj}\"")) {
                        return Err(format!("counter in use: {line}"));
                    }
                    if !self.counters.remove(obj) {
                        return Err(line.into());
                    }
                }
                _ => return Err(format!("unknown command: {line}")),
            }
        }
        Ok(())
    }

    /// Whether a rule or a map element names `word` (followed by a space or the end).
    fn refers(&self, word: &str) -> bool {
        let hit = |t: &str| {
            t.match_indices(word)
                .any(|(i, _)| matches!(t.as_bytes().get(i + word.len()), None | Some(b' ')))
        };
        self.chains.values().flatten().any(|r| hit(r))
            || self
                .elements
                .values()
                .flat_map(|m| m.values())
                .any(|e| hit(e))
    }

    fn of(state: &NftState) -> Kernel {
        let mut k = Kernel::default();
        k.apply(&full_transaction(state, &NftObjects::default()))
            .unwrap();
        k
    }
}

mod proptests {
    use super::{Kernel, cfg, maps_cfg};
    use crate::model::{Endpoint, ProxySnapshot, ServicePortName};
    use crate::model::{Protocol, ServiceKey, ServicePort};
    use crate::nftables::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A small random world: 4 Services with 1–2 ports from small pools, so cluster IPs,
    /// external IPs and node ports collide between Services, endpoints come and go, and
    /// affinity timeouts change (the full-sync fallback).
    fn arb_snapshot() -> impl Strategy<Value = ProxySnapshot> {
        let svc = (
            0u8..3,                                                       // cluster IP
            prop::collection::vec((any::<bool>(), 0u8..2), 1..3),         // ports: udp?, port
            0u8..3,                                               // external IP count/choice
            prop::option::of(0u8..2),                             // node port
            prop::option::of(prop_oneof![Just(10u32), Just(20)]), // affinity
            any::<bool>(),                                        // eTP Local
            any::<bool>(),                                        // iTP Local
            prop::collection::vec((0u8..6, any::<bool>(), 0u8..3), 0..4), // endpoints
        );
        prop::collection::vec(prop::option::of(svc), 4).prop_map(|svcs| {
            let mut snap = ProxySnapshot::default();
            for (i, s) in svcs.into_iter().enumerate() {
                let Some((cip, ports, ext, np, aff, etp, itp, eps)) = s else {
                    continue;
                };
                for (j, (udp, port)) in ports.into_iter().enumerate() {
                    let name = ServicePortName {
                        service: ServiceKey::new("ns", format!("s{i}")),
                        port: if j == 0 {
                            String::new()
                        } else {
                            format!("p{j}")
                        },
                        protocol: if udp { Protocol::Udp } else { Protocol::Tcp },
                    };
                    let external_ips = match ext {
                        0 => vec![],
                        1 => vec!["192.168.9.1".parse().unwrap()],
                        _ => vec![
                            "192.168.9.1".parse().unwrap(),
                            "192.168.9.2".parse().unwrap(),
                        ],
                    };
                    let mut sp = ServicePort {
                        name: name.clone(),
                        cluster_ips: vec![format!("10.96.0.{}", cip + 1).parse().unwrap()],
                        port: 80 + u16::from(port),
                        node_port: np.map_or(0, |n| 30000 + u16::from(n)),
                        external_ips,
                        load_balancer_ips: vec![],
                        load_balancer_source_ranges: vec![],
                        external_policy_local: false,
                        internal_policy_local: itp,
                        affinity_timeout: aff,
                        health_check_node_port: 0,
                    };
                    sp.external_policy_local = etp && sp.externally_accessible();
                    let mut list: BTreeMap<String, Endpoint> = BTreeMap::new();
                    for (ip, local, cond) in &eps {
                        let e = Endpoint {
                            ip: format!("10.244.0.{}", ip + 2).parse().unwrap(),
                            port: 8080,
                            is_local: *local,
                            ready: *cond == 0,
                            serving: *cond != 2,
                            terminating: *cond != 0,
                        };
                        list.insert(e.addr().to_string(), e);
                    }
                    snap.endpoints
                        .insert(name.clone(), list.into_values().collect());
                    snap.services.insert(name, sp);
                }
            }
            snap
        })
    }

    /// Services whose ports or endpoints differ between two snapshots.
    fn changed(a: &ProxySnapshot, b: &ProxySnapshot) -> BTreeSet<ServiceKey> {
        let mut out = BTreeSet::new();
        for (x, y) in [(a, b), (b, a)] {
            for (n, p) in &x.services {
                if y.services.get(n) != Some(p) || x.endpoints.get(n) != y.endpoints.get(n) {
                    out.insert(n.service.clone());
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// After every step of a random change sequence: the table equals a full render, the
        /// transaction equals the diff of two full renders, and applying the transactions to
        /// a model of the kernel ends in the table a full sync of the last state builds.
        #[test]
        fn incremental_equals_diff_of_full_renders(
            snaps in prop::collection::vec(arb_snapshot(), 2..6),
            maps in any::<bool>(),
        ) {
            let cfg = if maps { maps_cfg() } else { cfg() };
            let mut table = NftTable::new(&cfg, &snaps[0]);
            prop_assert_eq!(table.state(), &render(&cfg, &snaps[0]));
            let mut kernel = Kernel::of(table.state());
            let mut stale = Vec::new();
            for w in snaps.windows(2) {
                let (old, new) = (render(&cfg, &w[0]), render(&cfg, &w[1]));
                let e = incremental_transaction(&old, &new).expect("same table");
                let g = table.update(&w[1], &changed(&w[0], &w[1]));
                prop_assert_eq!(&g, &e);
                prop_assert_eq!(table.state(), &new);
                kernel.apply(&g.transaction).map_err(TestCaseError::fail)?;
                // As the proxier: a chain is stale once, until it is used again.
                stale.extend(g.stale_chains);
                stale.sort();
                stale.dedup();
                stale.retain(|c| !new.chains.contains_key(c));
            }
            kernel.apply(&delete_chains_transaction(table.state(), &stale))
                .map_err(TestCaseError::fail)?;
            prop_assert_eq!(kernel, Kernel::of(&render(&cfg, snaps.last().unwrap())));
        }
    }
}

#[test]
fn initial_transactions_build_the_full_table_in_consistent_steps() {
    use crate::model::ServiceKey;
    let mut s = ProxySnapshot::default();
    // Three Services, two sharing an external IP, one with affinity.
    for (i, ext) in [(0, true), (1, true), (2, false)] {
        let mut one = snap(&[("10.244.1.2", false), ("10.244.1.3", true)], i == 1);
        let (name, mut port) = one.services.pop_first().unwrap();
        let name = ServicePortName {
            service: ServiceKey::new("ns", format!("web{i}")),
            ..name
        };
        port.name = name.clone();
        port.cluster_ips = vec![format!("10.96.0.{}", 20 + i).parse().unwrap()];
        port.node_port = 30000 + i as u16;
        if ext {
            port.external_ips = vec!["192.168.9.1".parse().unwrap()];
        }
        port.affinity_timeout = (i == 2).then_some(30);
        s.services.insert(name.clone(), port);
        s.endpoints
            .insert(name, one.endpoints.pop_first().unwrap().1);
    }
    let table = NftTable::new(&cfg(), &s);
    let txs = table.initial_transactions(1);
    assert_eq!(txs.len(), 4, "base + one per port");
    let mut kernel = Kernel::default();
    for tx in &txs {
        // The model refuses dangling references only at delete time; check adds refer to
        // existing chains by applying in order and comparing at the end.
        kernel.apply(tx).unwrap();
    }
    assert_eq!(kernel, Kernel::of(table.state()));
    // The shared external IP is added once, with the winning (last) port's value.
    let all: String = txs.concat();
    assert_eq!(
        all.matches("add element ip pontifex service-ips { 192.168.9.1 . tcp . 80 ")
            .count(),
        1
    );
    // Each port's transaction creates every chain its rules and elements name.
    for tx in &txs[1..] {
        for target in tx.split("goto ").skip(1) {
            let chain = target.split([' ', '\n']).next().unwrap();
            assert!(
                txs[0].contains(&format!("add chain ip pontifex {chain}"))
                    || tx.contains(&format!("add chain ip pontifex {chain}\n")),
                "{chain} not created before use in:\n{tx}"
            );
        }
    }
}

// ---- the INVALID drop and its named counter ----------------------------------------------

#[test]
fn invalid_drop_is_counted_first_in_forward_in_both_layouts() {
    for c in [cfg(), maps_cfg()] {
        let st = render(&c, &ProxySnapshot::default());
        assert_eq!(
            st.chains["filter-forward"].rules[0],
            "ct state invalid counter name \"ct_state_invalid_dropped_pkts\" drop"
        );
        assert!(st.counters.contains("ct_state_invalid_dropped_pkts"));
        let dump = st.dump();
        let counter = dump
            .find("add counter ip pontifex ct_state_invalid_dropped_pkts\n")
            .unwrap();
        assert!(counter < dump.find("add rule").unwrap());
        // A full sync adds it (which keeps an existing counter's counts) and never deletes it.
        let tx = full_transaction(&st, &st.objects());
        assert!(tx.contains("add counter ip pontifex ct_state_invalid_dropped_pkts\n"));
        assert!(!tx.contains("delete counter"));
        let off = render(
            &NftConfig {
                invalid_drop: false,
                ..c
            },
            &ProxySnapshot::default(),
        );
        assert!(off.counters.is_empty());
        assert!(!off.dump().contains("ct state invalid"));
    }
}

#[test]
fn turning_the_invalid_drop_off_removes_rule_then_counter() {
    let on = render(&cfg(), &ProxySnapshot::default());
    let off = render(
        &NftConfig {
            invalid_drop: false,
            ..cfg()
        },
        &ProxySnapshot::default(),
    );
    let mut k = Kernel::of(&on);
    let inc = incremental_transaction(&on, &off).unwrap();
    assert!(
        inc.transaction
            .contains("delete counter ip pontifex ct_state_invalid_dropped_pkts\n")
    );
    k.apply(&inc.transaction).unwrap();
    assert_eq!(k, Kernel::of(&off));
    // And back on: the counter is made before the rule that names it.
    let inc = incremental_transaction(&off, &on).unwrap();
    k.apply(&inc.transaction).unwrap();
    assert_eq!(k, Kernel::of(&on));
    // A full sync over a table holding a counter we no longer want deletes it after the flush.
    let mut k = Kernel::of(&on);
    k.apply(&full_transaction(&off, &on.objects())).unwrap();
    assert_eq!(k, Kernel::of(&off));
}

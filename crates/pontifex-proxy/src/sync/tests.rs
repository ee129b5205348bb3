use super::*;
use crate::apply::{FakeApplier, FakeCall};
use crate::nfnetlink::ElementOp;

fn svc(name: &str, ip: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "ns1", "name": name},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
            "ports": [{"name": "p80", "port": 80, "protocol": "UDP"}]},
    }))
    .unwrap()
}

fn slice(svc: &str, ips: &[&str], trigger: Option<&str>) -> EndpointSlice {
    let eps: Vec<_> = ips
        .iter()
        .map(|ip| serde_json::json!({"addresses": [ip], "nodeName": "n1"}))
        .collect();
    let mut meta = serde_json::json!({"namespace": "ns1", "name": format!("{svc}-x"),
        "labels": {"kubernetes.io/service-name": svc}});
    if let Some(t) = trigger {
        meta["annotations"] = serde_json::json!({ TRIGGER_TIME_ANNOTATION: t });
    }
    serde_json::from_value(serde_json::json!({
        "metadata": meta, "addressType": "IPv4", "endpoints": eps,
        "ports": [{"name": "p80", "port": 8080, "protocol": "UDP"}],
    }))
    .unwrap()
}

fn proxier(mode: ProxyMode) -> (Proxier<FakeApplier>, FakeApplier, Arc<ProxyMetrics>) {
    let fake = FakeApplier::default();
    let metrics = Arc::new(ProxyMetrics::default());
    let p = Proxier::new(
        ProxierConfig::new(mode, "n1"),
        fake.clone(),
        metrics.clone(),
        Arc::new(ProxyHealth::new(Duration::from_secs(30))),
    );
    (p, fake, metrics)
}

#[test]
fn nft_first_sync_adopts_then_incremental_failure_goes_full() {
    let (mut p, fake, metrics) = proxier(ProxyMode::Nftables);
    // A previous process left a table with a chain we no longer have.
    fake.state().nft_table = Some(NftObjects {
        chains: ["service-OLD-ns1/gone/udp/p80".to_owned()].into(),
        sets: Default::default(),
        counters: ["ct_state_invalid_dropped_pkts".to_owned(), "old".to_owned()].into(),
    });
    p.handle(
        ProxyEvent::Replace {
            services: vec![svc("a", "10.96.0.10")],
            slices: vec![slice("a", &["10.244.0.2", "10.244.0.3"], None)],
        },
        SystemTime::now(),
    );
    let r = p.sync(Instant::now()).unwrap();
    assert!(r.full);
    {
        // Maps layout over an existing table: the skeleton (never a flush of the table), the
        // elements read back and completed in one batch, then the stale chain removed.
        let s = fake.state();
        assert_eq!(s.calls[0], FakeCall::NftList);
        let FakeCall::Nft(skeleton) = &s.calls[1] else {
            panic!("{:?}", s.calls)
        };
        assert!(
            !skeleton.contains("flush table"),
            "never flush first: {skeleton}"
        );
        let batch = s
            .calls
            .iter()
            .position(|c| matches!(c, FakeCall::NftElements(_)))
            .expect("an element batch");
        assert!(
            s.calls[2..batch]
                .iter()
                .all(|c| matches!(c, FakeCall::NftListElements(_)))
        );
        let FakeCall::Nft(cleanup) = &s.calls[batch + 1] else {
            panic!("{:?}", s.calls)
        };
        assert_eq!(
            cleanup,
            "flush chain ip pontifex service-OLD-ns1/gone/udp/p80\ndelete chain ip pontifex service-OLD-ns1/gone/udp/p80\ndelete counter ip pontifex old\n"
        );
        // Our counter is kept (its counts survive), a counter we no longer have goes.
        assert!(skeleton.contains("add counter ip pontifex ct_state_invalid_dropped_pkts\n"));
        assert!(!cleanup.contains("ct_state_invalid_dropped_pkts"));
    }
    // An endpoint goes: small incremental transaction and a targeted UDP conntrack flush.
    p.handle(
        ProxyEvent::SlicesUpdated(vec![slice(
            "a",
            &["10.244.0.3"],
            Some("2020-01-01T00:00:00Z"),
        )]),
        SystemTime::now(),
    );
    fake.state().conntrack_deleted = 4;
    let r = p.sync(Instant::now()).unwrap();
    assert!(!r.full);
    assert_eq!(r.conntrack_flushes, 1);
    assert_eq!(r.conntrack_deleted, 4);
    assert!(
        metrics
            .render()
            .contains("\npontifex_proxy_conntrack_deleted_entries_total 4\n")
    );
    assert!(
        metrics
            .render()
            .contains("kubeproxy_network_programming_duration_seconds_count 1")
    );
    {
        let s = fake.state();
        let n = s.calls.len();
        let FakeCall::Nft(tx) = &s.calls[n - 2] else {
            panic!("{:?}", s.calls)
        };
        assert!(!tx.contains("flush table"), "{tx}");
        assert!(
            matches!(&s.calls[n - 1], FakeCall::Conntrack(f) if f.len() == 1 && f[0].endpoint.is_some())
        );
    }
    // A failed apply makes the next sync full and re-reads the kernel.
    fake.state().fail_applies = 1;
    p.handle(
        ProxyEvent::ServicesDeleted(vec![ServiceKey::new("ns1", "a")]),
        SystemTime::now(),
    );
    assert!(p.sync(Instant::now()).is_err());
    let failed_at = fake.state().calls.len();
    let r = p.sync(Instant::now()).unwrap();
    assert!(r.full);
    let s = fake.state();
    assert!(
        s.calls[failed_at..].contains(&FakeCall::NftList),
        "{:?}",
        &s.calls[failed_at..]
    );
    assert!(
        metrics
            .render()
            .contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1")
    );
}

/// A set's elements as (key, value).
type Held = Vec<(Vec<u8>, Option<crate::nfnetlink::Value>)>;

/// The elements `fake` holds, per set, sorted (for comparing).
fn held(fake: &FakeApplier) -> BTreeMap<String, Held> {
    fake.state()
        .nft_elements
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(set, v)| {
            let mut v: Vec<_> = v.iter().map(|e| (e.key.clone(), e.value.clone())).collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            (set.clone(), v)
        })
        .collect()
}

#[test]
fn nft_maps_resync_sends_only_what_the_kernel_lacks_and_falls_back_to_one_transaction() {
    let (mut p, fake, _) = proxier(ProxyMode::Nftables);
    let services = vec![svc("a", "10.96.0.10"), svc("b", "10.96.0.11")];
    let slices = vec![
        slice("a", &["10.244.0.2", "10.244.0.3"], None),
        slice("b", &["10.244.0.4"], None),
    ];
    p.handle(
        ProxyEvent::Replace {
            services: services.clone(),
            slices: slices.clone(),
        },
        SystemTime::now(),
    );
    // No table yet: skeleton + every element over netlink.
    p.sync(Instant::now()).unwrap();
    let wanted = held(&fake);
    assert!(
        wanted.values().map(Vec::len).sum::<usize>() >= 3 + 2,
        "{wanted:?}"
    );

    // A resync that finds the kernel as it should be sends an empty batch.
    p.force_full();
    let before = fake.state().calls.len();
    assert!(p.sync(Instant::now()).unwrap().full);
    {
        let s = fake.state();
        let sent: Vec<&Vec<ElementOp>> = s.calls[before..]
            .iter()
            .filter_map(|c| match c {
                FakeCall::NftElements(ops) => Some(ops),
                _ => None,
            })
            .collect();
        assert_eq!(sent, vec![&Vec::<ElementOp>::new()], "nothing to change");
        assert!(
            s.calls[before..]
                .iter()
                .all(|c| !matches!(c, FakeCall::Nft(t) if t.contains("flush table")))
        );
    }

    // Drift: someone deleted an element and added a stray one; the resync puts back exactly
    // what is wanted.
    {
        let mut s = fake.state();
        let elems = s
            .nft_elements
            .values_mut()
            .find(|v| v.len() >= 2)
            .expect("a map with two elements");
        let mut stray = elems.pop().expect("an element");
        stray.key[0] ^= 0xff;
        elems.push(stray);
    }
    assert_ne!(held(&fake), wanted);
    p.force_full();
    let before = fake.state().calls.len();
    p.sync(Instant::now()).unwrap();
    assert_eq!(held(&fake), wanted);
    {
        let s = fake.state();
        let ops: Vec<&ElementOp> = s.calls[before..]
            .iter()
            .filter_map(|c| match c {
                FakeCall::NftElements(ops) => Some(ops),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(ops.len(), 2, "one stray delete, one add: {ops:?}");
    }

    // A failing step: the same sync replaces the table in one transaction instead.
    p.force_full();
    fake.state().fail_applies = 1;
    let before = fake.state().calls.len();
    assert!(p.sync(Instant::now()).unwrap().full);
    let s = fake.state();
    let last = s.calls.last().expect("calls");
    assert!(
        matches!(last, FakeCall::Nft(t) if t.contains("flush table ip pontifex")),
        "{:?}",
        &s.calls[before..]
    );
}

#[test]
fn iptables_full_then_partial_and_jumps_only_on_full() {
    let (mut p, fake, _) = proxier(ProxyMode::Iptables);
    fake.state().iptables_chains = ["KUBE-SVC-STALESTALESTALE1".to_owned()].into();
    p.handle(
        ProxyEvent::Replace {
            services: vec![svc("a", "10.96.0.10"), svc("b", "10.96.0.11")],
            slices: vec![slice("a", &["10.244.0.2"], None)],
        },
        SystemTime::now(),
    );
    assert!(p.sync(Instant::now()).unwrap().full);
    p.handle(
        ProxyEvent::SlicesUpdated(vec![slice("b", &["10.244.0.9"], None)]),
        SystemTime::now(),
    );
    assert!(!p.sync(Instant::now()).unwrap().full);
    let s = fake.state();
    assert_eq!(s.calls[0], FakeCall::IptablesSave);
    let FakeCall::IptablesRestore(full) = &s.calls[1] else {
        panic!()
    };
    assert!(
        full.contains("-X KUBE-SVC-STALESTALESTALE1"),
        "adopted chains are cleaned up"
    );
    assert!(matches!(s.calls[2], FakeCall::Jumps(n) if n > 0));
    let FakeCall::IptablesRestore(partial) = &s.calls[4] else {
        panic!("{:?}", s.calls)
    };
    assert!(partial.contains("10.244.0.9:8080"));
    assert!(
        !partial.contains("-A KUBE-SEP") || !partial.contains("10.244.0.2:8080"),
        "a's chains not rewritten"
    );
    assert!(
        !s.calls[4..].iter().any(|c| matches!(c, FakeCall::Jumps(_))),
        "no jump check on partial syncs"
    );
}

#[tokio::test]
async fn loop_waits_for_first_event_and_coalesces() {
    let (p, fake, metrics) = proxier(ProxyMode::Nftables);
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(p, rx, None, cancel.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(metrics.sync_count(), 0, "no sync before the first event");
    for i in 0..5 {
        tx.send(ProxyEvent::ServicesUpdated(vec![svc(
            &format!("s{i}"),
            "10.96.0.20",
        )]))
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metrics.sync_count(), 1, "five events, one sync");
    cancel.cancel();
    let p = task.await.unwrap();
    assert_eq!(p.applied().services.len(), 5);
    // No table existed: the first sync (Maps layout) sends the table without elements
    // through `nft`, then every element in one netlink batch.
    let calls = fake.state().calls.clone();
    let nft: Vec<&String> = calls
        .iter()
        .filter_map(|c| match c {
            FakeCall::Nft(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(nft.len(), 1);
    assert!(nft[0].starts_with("add table ip pontifex"));
    assert!(!nft[0].contains("add element"), "elements go over netlink");
    let ops: Vec<&ElementOp> = calls
        .iter()
        .filter_map(|c| match c {
            FakeCall::NftElements(ops) => Some(ops),
            _ => None,
        })
        .flatten()
        .collect();
    // The five share 10.96.0.20:80/udp: one element, written once, with the last one's name.
    let no_ep: Vec<_> = ops
        .iter()
        .filter(|o| o.set == "no-endpoint-services")
        .collect();
    assert_eq!(no_ep.len(), 1, "{ops:?}");
    assert_eq!(no_ep[0].comment.as_deref(), Some("ns1/s4:p80"));
    assert!(no_ep[0].add);
}

#[test]
fn endpoint_changes_go_over_netlink_and_structural_ones_through_nft() {
    let (mut p, fake, _) = proxier(ProxyMode::Nftables);
    let t0 = Instant::now();
    let kernel_calls = |fake: &FakeApplier| -> Vec<FakeCall> {
        let mut s = fake.state();
        let calls = std::mem::take(&mut s.calls);
        // UDP endpoints that go also get their conntrack entries deleted: not rules.
        calls
            .into_iter()
            .filter(|c| !matches!(c, FakeCall::Conntrack(_)))
            .collect()
    };
    let step = |p: &mut Proxier<FakeApplier>, ips: &[&str], secs: u64| {
        p.handle(
            ProxyEvent::SlicesUpdated(vec![slice("a", ips, None)]),
            SystemTime::now(),
        );
        p.sync(t0 + Duration::from_secs(secs)).unwrap();
    };
    p.handle(
        ProxyEvent::Replace {
            services: vec![svc("a", "10.96.0.10")],
            slices: vec![slice("a", &["10.244.0.2", "10.244.0.3"], None)],
        },
        SystemTime::now(),
    );
    p.sync(t0).unwrap();
    kernel_calls(&fake);
    // 2 → 1 endpoints: the shared pick chain for one endpoint comes in — structural, `nft`.
    step(&mut p, &["10.244.0.3"], 2);
    let calls = kernel_calls(&fake);
    assert!(matches!(calls.as_slice(), [FakeCall::Nft(_)]), "{calls:?}");
    // The next sync also deletes the chain left stale (pick for two): `nft` again.
    step(&mut p, &["10.244.0.4"], 4);
    let calls = kernel_calls(&fake);
    assert!(
        matches!(calls.as_slice(), [FakeCall::Nft(t)] if t.contains("delete chain")),
        "{calls:?}"
    );
    // The endpoint replaced by another, nothing else: elements only — netlink.
    step(&mut p, &["10.244.0.5"], 6);
    let calls = kernel_calls(&fake);
    let [FakeCall::NftElements(ops)] = calls.as_slice() else {
        panic!("{calls:?}");
    };
    assert!(ops.iter().any(|o| !o.add), "the old endpoint's elements go");
    assert!(ops.iter().any(|o| o.add), "the new one's come");
}

#[test]
fn rules_in_both_syntaxes() {
    let mut t = ChangeTracker::new("n1");
    t.update_service(&svc("a", "10.96.0.10")).unwrap();
    let snap = t.current();
    let nft = render_rules(
        ProxyMode::Nftables,
        &NftConfig::default(),
        &IptablesConfig::default(),
        &snap,
    );
    assert!(nft.starts_with("add table ip pontifex"));
    let ipt = render_rules(
        ProxyMode::Iptables,
        &NftConfig::default(),
        &IptablesConfig::default(),
        &snap,
    );
    assert!(ipt.starts_with("*filter") && ipt.contains("has no endpoints"));
}

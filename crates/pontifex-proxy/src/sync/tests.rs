use super::*;
use crate::apply::{FakeApplier, FakeCall};

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
        let s = fake.state();
        assert_eq!(s.calls[0], FakeCall::NftList);
        let FakeCall::Nft(tx) = &s.calls[1] else {
            panic!("{:?}", s.calls)
        };
        assert!(!tx.starts_with("flush"), "never flush first: {tx}");
        assert!(tx.contains("delete chain ip pontifex service-OLD-ns1/gone/udp/p80"));
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
    let r = p.sync(Instant::now()).unwrap();
    assert!(!r.full);
    assert_eq!(r.conntrack_flushes, 1);
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
    let r = p.sync(Instant::now()).unwrap();
    assert!(r.full);
    let s = fake.state();
    let n = s.calls.len();
    assert!(
        s.calls[n - 4..].contains(&FakeCall::NftList),
        "{:?}",
        &s.calls[n - 4..]
    );
    assert!(
        metrics
            .render()
            .contains("kubeproxy_sync_proxy_rules_nftables_sync_failures_total 1")
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
    // No table existed: the first sync builds it as the base transaction and one for the
    // (fewer than INITIAL_SYNC_PORTS_PER_TRANSACTION) ports.
    let nft: Vec<String> = fake
        .state()
        .calls
        .iter()
        .filter_map(|c| match c {
            FakeCall::Nft(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(nft.len(), 2);
    assert!(nft[0].starts_with("add table ip pontifex"));
    assert!(!nft[0].contains("flush table"), "nothing to flush");
    assert_eq!(
        nft[1].matches("add chain ip pontifex service-").count(),
        0,
        "no endpoints yet"
    );
    // The five share 10.96.0.20:80/udp: one element, written once, with the last one's name.
    assert_eq!(
        nft[1]
            .matches("add element ip pontifex no-endpoint-services")
            .count(),
        1
    );
    assert!(nft[1].contains("comment \"ns1/s4:p80\""));
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

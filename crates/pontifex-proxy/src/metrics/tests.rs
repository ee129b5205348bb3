use super::*;

#[test]
fn exposition_has_kube_proxy_names_and_cumulative_buckets() {
    let m = ProxyMetrics::default();
    m.queued(2, 3, 100.0);
    m.synced(true, Duration::from_millis(3), 101.5);
    m.programmed(Duration::from_millis(700));
    m.iptables_rules(7, 42);
    let text = m.render();
    for line in [
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0",
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1",
        "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 1",
        "kubeproxy_sync_proxy_rules_duration_seconds_count 1",
        "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1",
        "kubeproxy_sync_partial_proxy_rules_duration_seconds_count 0",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"0.5\"} 0",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"1\"} 1",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds 101.5",
        "kubeproxy_sync_proxy_rules_endpoint_changes_total 3",
        "kubeproxy_sync_proxy_rules_service_changes_total 2",
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending 0",
        "kubeproxy_sync_proxy_rules_iptables_total{table=\"filter\"} 7",
        "kubeproxy_sync_proxy_rules_iptables_total{table=\"nat\"} 42",
        "# TYPE kubeproxy_network_programming_duration_seconds histogram",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

#[test]
fn bucket_layouts_match_kube_proxy() {
    let s = sync_buckets();
    assert_eq!(s.len(), 15);
    assert_eq!(s[0], 0.001);
    assert_eq!(s[14], 16.384);
    let p = programming_buckets();
    assert_eq!(&p[..3], [0.25, 0.5, 1.0]);
    assert!(p.contains(&59.0) && p.contains(&60.0) && p.contains(&115.0));
    assert!(!p.contains(&61.0));
    assert_eq!(*p.last().unwrap(), 300.0);
    assert!(p.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn public_recorders_for_the_userspace_proxy() {
    let m = ProxyMetrics::default();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    m.record_queued(1, 2, t0);
    assert!(
        m.render()
            .contains("kubeproxy_sync_proxy_rules_endpoint_changes_pending 2\n")
    );
    m.record_sync(
        Duration::from_millis(3),
        t0 + Duration::from_secs(2),
        [t0, t0 + Duration::from_secs(5)],
    );
    let text = m.render();
    for line in [
        "kubeproxy_sync_proxy_rules_duration_seconds_count 1",
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds 1002",
        "kubeproxy_sync_proxy_rules_endpoint_changes_pending 0",
        // The trigger in the future (clock skew) is not a latency.
        "kubeproxy_network_programming_duration_seconds_count 1",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"1\"} 0",
        "kubeproxy_network_programming_duration_seconds_bucket{le=\"2\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
}

#[test]
fn trigger_time_reads_the_slice_annotation() {
    let mut s = EndpointSlice::default();
    assert_eq!(trigger_time(&s), None);
    s.metadata.annotations = Some(
        [(
            crate::sync::TRIGGER_TIME_ANNOTATION.to_string(),
            "1970-01-01T00:16:40Z".to_string(),
        )]
        .into(),
    );
    assert_eq!(
        trigger_time(&s),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000))
    );
}

#[derive(Debug)]
struct Fixed(Vec<(KernelCounter, u64)>);

impl CounterSource for Fixed {
    fn read(&self) -> Vec<(KernelCounter, u64)> {
        self.0.clone()
    }
}

#[test]
fn kernel_counters_are_read_at_every_scrape_under_kube_proxy_names() {
    let m = ProxyMetrics::default();
    assert!(!m.render().contains("kubeproxy_iptables_"));
    m.set_counter_source(Arc::new(Fixed(vec![
        (KernelCounter::LocalhostNodePortsAccepted, 2),
        (KernelCounter::CtStateInvalidDropped, 7),
    ])));
    let text = m.render();
    for line in [
        "# HELP kubeproxy_iptables_ct_state_invalid_dropped_packets_total packets dropped by iptables to work around conntrack problems",
        "# TYPE kubeproxy_iptables_ct_state_invalid_dropped_packets_total counter",
        "kubeproxy_iptables_ct_state_invalid_dropped_packets_total 7",
        "# HELP kubeproxy_iptables_localhost_nodeports_accepted_packets_total Number of packets accepted on nodeports of loopback interface",
        "kubeproxy_iptables_localhost_nodeports_accepted_packets_total 2",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // A counter the source could not read is absent, not zero.
    m.set_counter_source(Arc::new(Fixed(vec![(
        KernelCounter::CtStateInvalidDropped,
        9,
    )])));
    let text = m.render();
    assert!(text.contains("kubeproxy_iptables_ct_state_invalid_dropped_packets_total 9\n"));
    assert!(!text.contains("localhost_nodeports"));
}

#[test]
fn conntrack_deletions_accumulate() {
    let m = ProxyMetrics::default();
    assert!(
        m.render()
            .contains("\npontifex_proxy_conntrack_deleted_entries_total 0\n")
    );
    m.conntrack_deleted(3);
    m.conntrack_deleted(2);
    assert!(
        m.render()
            .contains("\npontifex_proxy_conntrack_deleted_entries_total 5\n")
    );
}

use std::collections::BTreeSet;

use super::*;
use crate::model::{Protocol, ServicePort};

fn snapshot(ip: &str, ep_ip: &str) -> ProxySnapshot {
    let name = ServicePortName {
        service: ServiceKey::new("ns", "svc"),
        port: "p".into(),
        protocol: Protocol::Udp,
    };
    let mut s = ProxySnapshot::default();
    s.services.insert(
        name.clone(),
        ServicePort {
            name: name.clone(),
            cluster_ips: vec![ip.parse().unwrap()],
            port: 53,
            node_port: 0,
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_source_ranges: vec![],
            external_policy_local: false,
            internal_policy_local: false,
            affinity_timeout: None,
            health_check_node_port: 0,
        },
    );
    s.endpoints.insert(
        name,
        vec![Endpoint {
            ip: ep_ip.parse().unwrap(),
            port: 5353,
            is_local: false,
            ready: true,
            serving: true,
            terminating: false,
        }],
    );
    s
}

#[test]
fn comments_cannot_break_syntax() {
    assert_eq!(comment("ns/a:p"), "ns/a:p");
    assert_eq!(comment("ns/a:p cluster IP"), "\"ns/a:p cluster IP\"");
    assert_eq!(comment("a\"b\\c\nd"), "a_b_c_d");
}

#[test]
fn masquerade_all_and_no_detector() {
    let snap = snapshot("10.96.0.10", "10.244.1.5");
    let cfg = IptablesConfig {
        masquerade_all: true,
        ..Default::default()
    };
    let r = render(&cfg, &snap, SyncKind::Full, &BTreeSet::new());
    assert!(
        r.text
            .contains("-m udp -p udp -d 10.96.0.10 --dport 53 -j KUBE-MARK-MASQ\n"),
        "{}",
        r.text
    );
    let r = render(
        &IptablesConfig::default(),
        &snap,
        SyncKind::Full,
        &BTreeSet::new(),
    );
    assert!(
        !r.text.contains("--dport 53 -j KUBE-MARK-MASQ"),
        "no detector: no VIP masquerade"
    );
    assert!(
        r.text
            .contains("-m udp -p udp -j DNAT --to-destination 10.244.1.5:5353")
    );
}

#[test]
fn ipv6_family_brackets_and_nodeport_tail() {
    let snap = snapshot("fd00::10", "fd00:1::5");
    let cfg = IptablesConfig {
        family: IpFamily::V6,
        ..Default::default()
    };
    let r = render(&cfg, &snap, SyncKind::Full, &BTreeSet::new());
    assert!(r.text.contains("--to-destination [fd00:1::5]:5353"));
    assert!(
        r.text
            .contains("-m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS")
    );
    assert!(
        !r.text.contains("KUBE-FIREWALL"),
        "IPv6 has no localhost node ports"
    );
    // The IPv4 renderer ignores the IPv6-only service.
    let r4 = render(
        &IptablesConfig::default(),
        &snap,
        SyncKind::Full,
        &BTreeSet::new(),
    );
    assert!(!r4.text.contains("fd00"));
}

#[test]
fn explicit_nodeport_addresses_and_random_fully() {
    let cfg = IptablesConfig {
        node_port_addresses: Some(vec![
            "192.168.0.2".parse().unwrap(),
            "127.0.0.1".parse().unwrap(),
        ]),
        localhost_node_ports: false,
        random_fully: true,
        conntrack_tcp_be_liberal: true,
        ..Default::default()
    };
    let r = render(
        &cfg,
        &ProxySnapshot::default(),
        SyncKind::Full,
        &BTreeSet::new(),
    );
    assert!(r.text.contains("-d 192.168.0.2 -j KUBE-NODEPORTS\n"));
    assert!(!r.text.contains("-d 127.0.0.1 -j KUBE-NODEPORTS"));
    assert!(r.text.contains("-j MASQUERADE --random-fully\n"));
    assert!(!r.text.contains("INVALID"));
}

#[test]
fn stale_chains_only_ours() {
    let existing: BTreeSet<String> = ["KUBE-SVC-AAAA", "KUBE-SEP-BBBB", "OTHER-CHAIN"]
        .map(String::from)
        .into();
    let r = render(
        &IptablesConfig::default(),
        &ProxySnapshot::default(),
        SyncKind::Full,
        &existing,
    );
    assert!(
        r.text.contains("-X KUBE-SVC-AAAA\n-X KUBE-SEP-BBBB\n")
            || r.text.contains("-X KUBE-SEP-BBBB\n-X KUBE-SVC-AAAA\n")
    );
    assert!(!r.text.contains("OTHER-CHAIN"));
}

#[test]
fn large_cluster_drops_endpoint_comments() {
    let mut snap = snapshot("10.96.0.10", "10.244.1.5");
    let key = snap.endpoints.keys().next().unwrap().clone();
    let eps: Vec<Endpoint> = (0..=LARGE_CLUSTER_ENDPOINTS_THRESHOLD)
        .map(|i| Endpoint {
            ip: format!("10.{}.{}.1", i / 256, i % 256).parse().unwrap(),
            port: 53,
            is_local: false,
            ready: true,
            serving: true,
            terminating: false,
        })
        .collect();
    snap.endpoints.insert(key, eps);
    let r = render(
        &IptablesConfig::default(),
        &snap,
        SyncKind::Full,
        &BTreeSet::new(),
    );
    assert!(r.text.contains("-A KUBE-SEP-"));
    assert!(
        !r.text
            .lines()
            .any(|l| l.starts_with("-A KUBE-SEP-") && l.contains("--comment"))
    );
    assert!(r.text.contains("--probability 0.0009990010"));
}

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn svc(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Service::default()
    }
}

fn slice(name: &str) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: Vec::new(),
        ports: None,
    }
}

fn names<K: Resource>(v: &[K]) -> Vec<String> {
    v.iter().map(|o| o.name_any()).collect()
}

#[test]
fn nodeport_addresses_flag_parses_like_kube_proxy() {
    assert_eq!(
        NodePortAddresses::parse(&[]),
        Ok(NodePortAddresses::Default)
    );
    assert_eq!(
        NodePortAddresses::parse(&["primary".into()]),
        Ok(NodePortAddresses::Primary)
    );
    assert_eq!(
        NodePortAddresses::parse(&["10.0.0.0/8,172.31.0.0/24".into()]),
        Ok(NodePortAddresses::Cidrs(vec![
            "10.0.0.0/8".parse().unwrap(),
            "172.31.0.0/24".parse().unwrap()
        ]))
    );
    assert!(NodePortAddresses::parse(&["1.2.3".into()]).is_err());
    // "primary" is only valid alone.
    assert!(NodePortAddresses::parse(&["primary,10.0.0.0/8".into()]).is_err());
}

#[test]
fn nodeport_addresses_default_depends_on_the_mode() {
    let ip: IpAddr = "172.31.0.10".parse().unwrap();
    let local: Vec<IpAddr> = vec![
        "127.0.0.1".parse().unwrap(),
        ip,
        "10.244.1.1".parse().unwrap(),
    ];
    let d = NodePortAddresses::Default;
    assert_eq!(
        node_port_addresses(ProxyMode::Iptables, &d, IpFamily::V4, Some(ip), &local),
        None
    );
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &d, IpFamily::V4, Some(ip), &local),
        Some(vec![ip])
    );
    assert_eq!(
        node_port_addresses(
            ProxyMode::Iptables,
            &NodePortAddresses::Primary,
            IpFamily::V4,
            Some(ip),
            &local
        ),
        Some(vec![ip])
    );
    let cidrs = NodePortAddresses::Cidrs(vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &cidrs, IpFamily::V4, Some(ip), &local),
        Some(vec!["10.244.1.1".parse().unwrap()])
    );
    let all = NodePortAddresses::Cidrs(vec!["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &all, IpFamily::V4, Some(ip), &local),
        None
    );
}

#[test]
fn route_localnet_only_for_iptables_localhost_nodeports() {
    let ip: IpAddr = "172.31.0.10".parse().unwrap();
    let mut cfg = ProxyConfig {
        mode: ProxyMode::Iptables,
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let p = proxier_config(&cfg, IpFamily::V4, "node-1", Some(ip), &[]);
    assert!(wants_route_localnet(&p));
    assert_eq!(
        p.iptables.local_detector,
        LocalDetector::Cidr("10.244.0.0/16".parse().unwrap())
    );
    assert_eq!(p.nftables.node_ip, Some(ip));
    cfg.nodeport_addresses = NodePortAddresses::Primary;
    assert!(!wants_route_localnet(&proxier_config(
        &cfg,
        IpFamily::V4,
        "n",
        Some(ip),
        &[]
    )));
    cfg.nodeport_addresses = NodePortAddresses::Default;
    cfg.mode = ProxyMode::Nftables;
    assert!(!wants_route_localnet(&proxier_config(
        &cfg,
        IpFamily::V4,
        "n",
        Some(ip),
        &[]
    )));
}

#[test]
fn nothing_is_sent_before_both_informers_listed() {
    let mut inf = Informers::new();
    assert!(inf.service(watcher::Event::Init).is_none());
    assert!(inf.service(watcher::Event::InitApply(svc("a"))).is_none());
    assert!(inf.service(watcher::Event::InitDone).is_none());
    // Services listed, slices not yet: a service change is still held back.
    assert!(inf.service(watcher::Event::Apply(svc("b"))).is_none());
    assert!(inf.slice(watcher::Event::Init).is_none());
    assert!(inf.slice(watcher::Event::InitApply(slice("a-1"))).is_none());
    match inf.slice(watcher::Event::InitDone) {
        Some(ProxyEvent::Replace { services, slices }) => {
            assert_eq!(names(&services), ["a", "b"]);
            assert_eq!(names(&slices), ["a-1"]);
        }
        other => panic!("expected Replace, got {other:?}"),
    }
}

#[test]
fn updates_after_listing_and_relists_replace_everything() {
    let mut inf = Informers::new();
    for e in [
        watcher::Event::Init,
        watcher::Event::InitApply(svc("a")),
        watcher::Event::InitDone,
    ] {
        inf.service(e);
    }
    inf.slice(watcher::Event::Init);
    inf.slice(watcher::Event::InitDone);
    match inf.service(watcher::Event::Apply(svc("b"))) {
        Some(ProxyEvent::ServicesUpdated(v)) => assert_eq!(names(&v), ["b"]),
        other => panic!("{other:?}"),
    }
    match inf.slice(watcher::Event::Delete(slice("x"))) {
        Some(ProxyEvent::SlicesDeleted(v)) => {
            assert_eq!(v, [("default".to_owned(), "x".to_owned())]);
        }
        other => panic!("{other:?}"),
    }
    match inf.service(watcher::Event::Delete(svc("a"))) {
        Some(ProxyEvent::ServicesDeleted(v)) => assert_eq!(v, [ServiceKey::new("default", "a")]),
        other => panic!("{other:?}"),
    }
    // A relist: buffered until complete; then the new list wholly replaces the old one.
    assert!(inf.service(watcher::Event::Init).is_none());
    assert!(inf.service(watcher::Event::InitApply(svc("c"))).is_none());
    match inf.service(watcher::Event::InitDone) {
        Some(ProxyEvent::Replace { services, .. }) => assert_eq!(names(&services), ["c"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn rules_without_a_node_serve_node_ports_everywhere() {
    let d = NodePortAddresses::Default;
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &d, IpFamily::V4, None, &[]),
        None
    );
    let out = render_rules(&ProxyConfig::default(), "", &[], &[], &[]);
    assert!(out.contains("table ip pontifex"), "{out}");
}

#[test]
fn rules_print_the_nftables_layout_first() {
    let maps = render_rules(&ProxyConfig::default(), "", &[], &[], &[]);
    assert!(maps.starts_with("# nftables layout: maps\n"), "{maps}");
    assert!(maps.contains(" picks-cluster "), "{maps}");
    let chains = render_rules(
        &ProxyConfig {
            nftables_layout: NftLayout::Chains,
            ..ProxyConfig::default()
        },
        "",
        &[],
        &[],
        &[],
    );
    assert!(
        chains.starts_with("# nftables layout: chains\n"),
        "{chains}"
    );
    assert!(!chains.contains("picks-cluster"), "{chains}");
    let ipt = render_rules(
        &ProxyConfig {
            mode: ProxyMode::Iptables,
            ..ProxyConfig::default()
        },
        "",
        &[],
        &[],
        &[],
    );
    assert!(!ipt.contains("layout"), "{ipt}");
}

#[test]
fn each_family_gets_its_own_node_ip_detector_and_node_port_addresses() {
    let v4: IpAddr = "172.31.0.10".parse().unwrap();
    let v6: IpAddr = "fd00:172:31::10".parse().unwrap();
    let cfg = ProxyConfig {
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().unwrap(),
            "fd00:10:244::/56".parse().unwrap(),
        ],
        ..ProxyConfig::default()
    };
    let p4 = proxier_config(&cfg, IpFamily::V4, "n", Some(v4), &[]);
    let p6 = proxier_config(&cfg, IpFamily::V6, "n", Some(v6), &[]);
    assert_eq!(p4.nftables.family, IpFamily::V4);
    assert_eq!(p6.nftables.family, IpFamily::V6);
    assert_eq!(p6.iptables.family, IpFamily::V6);
    assert_eq!(p6.nftables.node_ip, Some(v6));
    assert_eq!(p6.nftables.node_port_addresses, Some(vec![v6]));
    assert_eq!(
        p6.nftables.local_detector,
        LocalDetector::Cidr("fd00:10:244::/56".parse().unwrap())
    );
    assert_eq!(
        p4.iptables.local_detector,
        LocalDetector::Cidr("10.244.0.0/16".parse().unwrap())
    );
    // A single-stack cluster CIDR leaves the other family without a detector.
    let single = ProxyConfig {
        cluster_cidrs: vec!["10.244.0.0/16".parse().unwrap()],
        ..ProxyConfig::default()
    };
    let p6 = proxier_config(&single, IpFamily::V6, "n", Some(v6), &[]);
    assert_eq!(p6.nftables.local_detector, LocalDetector::None);
}

#[test]
fn nodeport_cidrs_are_filtered_by_family() {
    let local: Vec<IpAddr> = ["172.31.0.10", "fd00:172:31::10", "fd00:10:244::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let cidrs = NodePortAddresses::Cidrs(vec!["172.31.0.0/24".parse().unwrap()]);
    // No IPv6 CIDR given: the IPv6 proxier serves NodePorts on every address of its family.
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &cidrs, IpFamily::V6, None, &local),
        None
    );
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &cidrs, IpFamily::V4, None, &local),
        Some(vec!["172.31.0.10".parse().unwrap()])
    );
    let both = NodePortAddresses::Cidrs(vec![
        "172.31.0.0/24".parse().unwrap(),
        "fd00:172:31::/64".parse().unwrap(),
    ]);
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &both, IpFamily::V6, None, &local),
        Some(vec!["fd00:172:31::10".parse().unwrap()])
    );
}

fn dual_svc() -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": "web"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00:10:96::20"],
                 "ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack",
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}]},
    }))
    .unwrap()
}

#[test]
fn rules_print_both_families_for_a_dual_stack_node_or_cluster() {
    let svcs = [dual_svc()];
    let v4: IpAddr = "172.31.0.10".parse().unwrap();
    let v6: IpAddr = "fd00:172:31::10".parse().unwrap();
    let cfg = ProxyConfig::default();
    assert_eq!(rules_families(&cfg, &[v4], &svcs), [IpFamily::V4]);
    assert_eq!(
        rules_families(&cfg, &[v4, v6], &[]),
        [IpFamily::V4, IpFamily::V6]
    );
    // No node: the Services say the cluster is dual-stack.
    assert_eq!(
        rules_families(&cfg, &[], &svcs),
        [IpFamily::V4, IpFamily::V6]
    );
    assert_eq!(rules_families(&cfg, &[], &[]), [IpFamily::V4]);

    let out = render_rules(&cfg, "n", &[v4, v6], &svcs, &[]);
    let (four, six) = out.split_once("# IPv6\n").expect("an IPv6 part");
    assert!(four.starts_with("# nftables layout: maps\n"), "{out}");
    assert!(
        four.contains("table ip pontifex") && four.contains("10.96.0.20"),
        "{four}"
    );
    assert!(!four.contains("fd00:10:96::20"), "{four}");
    assert!(
        six.contains("table ip6 pontifex") && six.contains("fd00:10:96::20"),
        "{six}"
    );
    assert!(!six.contains("10.96.0.20 "), "{six}");

    let ipt = render_rules(
        &ProxyConfig {
            mode: ProxyMode::Iptables,
            ..ProxyConfig::default()
        },
        "n",
        &[v4, v6],
        &svcs,
        &[],
    );
    let (four, six) = ipt
        .split_once("# IPv6 (ip6tables-restore)\n")
        .expect("an ip6tables part");
    assert!(
        four.contains("-d 10.96.0.20 ") && !four.contains("fd00"),
        "{four}"
    );
    assert!(
        six.contains("-d fd00:10:96::20 ") && !six.contains("10.96.0.20"),
        "{six}"
    );
}

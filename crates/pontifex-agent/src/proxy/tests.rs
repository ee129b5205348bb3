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
        node_port_addresses(ProxyMode::Iptables, &d, Some(ip), &local),
        None
    );
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &d, Some(ip), &local),
        Some(vec![ip])
    );
    assert_eq!(
        node_port_addresses(
            ProxyMode::Iptables,
            &NodePortAddresses::Primary,
            Some(ip),
            &local
        ),
        Some(vec![ip])
    );
    let cidrs = NodePortAddresses::Cidrs(vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &cidrs, Some(ip), &local),
        Some(vec!["10.244.1.1".parse().unwrap()])
    );
    let all = NodePortAddresses::Cidrs(vec!["0.0.0.0/0".parse().unwrap()]);
    assert_eq!(
        node_port_addresses(ProxyMode::Nftables, &all, Some(ip), &local),
        None
    );
}

#[test]
fn route_localnet_only_for_iptables_localhost_nodeports() {
    let ip: IpAddr = "172.31.0.10".parse().unwrap();
    let mut cfg = ProxyConfig {
        mode: ProxyMode::Iptables,
        cluster_cidr: Some("10.244.0.0/16".parse().unwrap()),
        ..ProxyConfig::default()
    };
    let p = proxier_config(&cfg, "node-1", Some(ip), &[]);
    assert!(wants_route_localnet(&p));
    assert_eq!(
        p.iptables.local_detector,
        LocalDetector::Cidr("10.244.0.0/16".parse().unwrap())
    );
    assert_eq!(p.nftables.node_ip, Some(ip));
    cfg.nodeport_addresses = NodePortAddresses::Primary;
    assert!(!wants_route_localnet(&proxier_config(
        &cfg,
        "n",
        Some(ip),
        &[]
    )));
    cfg.nodeport_addresses = NodePortAddresses::Default;
    cfg.mode = ProxyMode::Nftables;
    assert!(!wants_route_localnet(&proxier_config(
        &cfg,
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
        node_port_addresses(ProxyMode::Nftables, &d, None, &[]),
        None
    );
    let out = render_rules(&ProxyConfig::default(), "", None, &[], &[]);
    assert!(out.contains("table ip pontifex"), "{out}");
}

#[test]
fn rules_print_the_nftables_layout_first() {
    let maps = render_rules(&ProxyConfig::default(), "", None, &[], &[]);
    assert!(maps.starts_with("# nftables layout: maps\n"), "{maps}");
    assert!(maps.contains(" picks-cluster "), "{maps}");
    let chains = render_rules(
        &ProxyConfig {
            nftables_layout: NftLayout::Chains,
            ..ProxyConfig::default()
        },
        "",
        None,
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
        None,
        &[],
        &[],
    );
    assert!(!ipt.contains("layout"), "{ipt}");
}

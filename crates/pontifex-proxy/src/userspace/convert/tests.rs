use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::model::{ServicePort, ServicePortName};

fn name(svc: &str, protocol: model::Protocol) -> ServicePortName {
    ServicePortName {
        service: ServiceKey::new("ns", svc),
        port: "p".into(),
        protocol,
    }
}

fn port(svc: &str, protocol: model::Protocol) -> ServicePort {
    ServicePort {
        name: name(svc, protocol),
        cluster_ips: vec!["10.96.0.5".parse().unwrap()],
        port: 80,
        node_port: 0,
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        external_policy_local: false,
        internal_policy_local: false,
        affinity_timeout: None,
        health_check_node_port: 0,
    }
}

/// An endpoint on port 8080: `local`, then ready / serving / terminating.
fn ep(ip: &str, local: bool, state: (bool, bool, bool)) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: 8080,
        is_local: local,
        ready: state.0,
        serving: state.1,
        terminating: state.2,
    }
}

const READY: (bool, bool, bool) = (true, true, false);
const TERMINATING: (bool, bool, bool) = (false, true, true);

fn snapshot(ports: Vec<ServicePort>, eps: Vec<Endpoint>) -> ProxySnapshot {
    let mut snap = ProxySnapshot::default();
    for p in ports {
        snap.endpoints.insert(p.name.clone(), eps.clone());
        snap.services.insert(p.name.clone(), p);
    }
    snap
}

fn opts() -> ConvertOptions {
    ConvertOptions {
        node_ips: vec!["172.31.0.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        ..Default::default()
    }
}

fn find<'a>(s: &'a Snapshot, listen: &str, protocol: Protocol) -> &'a VirtualService {
    let listen: SocketAddr = listen.parse().unwrap();
    s.services
        .iter()
        .find(|v| v.listen == listen && v.protocol == protocol)
        .unwrap_or_else(|| panic!("no {listen}: {s:?}"))
}

fn addrs(vs: &VirtualService) -> Vec<String> {
    vs.endpoints.iter().map(|(a, _)| a.to_string()).collect()
}

#[test]
fn every_address_of_a_service_port_becomes_a_virtual_service() {
    let mut p = port("web", model::Protocol::Tcp);
    p.node_port = 30002;
    p.external_ips = vec!["172.31.255.7".parse().unwrap()];
    p.load_balancer_ips = vec!["172.31.255.9".parse().unwrap()];
    p.affinity_timeout = Some(10800);
    let snap = snapshot(
        vec![p],
        vec![
            ep("10.244.1.5", false, READY),
            ep("10.244.2.5", true, READY),
        ],
    );
    let out = to_snapshot(&snap, &opts());
    let listens: Vec<String> = out.services.iter().map(|v| v.listen.to_string()).collect();
    // Sorted by address; the IPv6 node address has no IPv6 ClusterIP to go with it.
    assert_eq!(
        listens,
        [
            "10.96.0.5:80",
            "172.31.0.2:30002",
            "172.31.255.7:80",
            "172.31.255.9:80"
        ]
    );
    for vs in &out.services {
        assert_eq!(vs.protocol, Protocol::Tcp);
        assert_eq!(vs.scheduler, "rr");
        assert_eq!(vs.affinity_timeout, Some(Duration::from_secs(10800)));
        assert_eq!(addrs(vs), ["10.244.1.5:8080", "10.244.2.5:8080"]);
        assert!(vs.endpoints.iter().all(|(_, w)| *w == 1));
    }
    assert_eq!(
        local_service_ips(&out, &opts())
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        ["10.96.0.5", "172.31.255.7", "172.31.255.9"],
        "node addresses are already local"
    );
}

#[test]
fn dual_stack_gives_one_set_per_family() {
    let mut p = port("web", model::Protocol::Udp);
    p.cluster_ips.push("fd00:96::5".parse().unwrap());
    p.node_port = 30053;
    let snap = snapshot(
        vec![p],
        vec![
            ep("10.244.1.5", false, READY),
            ep("fd00:244::5", false, READY),
        ],
    );
    let out = to_snapshot(&snap, &opts());
    assert_eq!(out.services.len(), 4);
    assert_eq!(
        addrs(find(&out, "[fd00:96::5]:80", Protocol::Udp)),
        ["[fd00:244::5]:8080"]
    );
    assert_eq!(
        addrs(find(&out, "[fd00::2]:30053", Protocol::Udp)),
        ["[fd00:244::5]:8080"]
    );
    assert_eq!(
        addrs(find(&out, "172.31.0.2:30053", Protocol::Udp)),
        ["10.244.1.5:8080"]
    );
}

#[test]
fn external_traffic_policy_local_filters_only_external_addresses() {
    let mut p = port("web", model::Protocol::Tcp);
    p.node_port = 30002;
    p.external_policy_local = true;
    let snap = snapshot(
        vec![p],
        vec![
            ep("10.244.1.5", false, READY),
            ep("10.244.2.5", true, READY),
        ],
    );
    let out = to_snapshot(&snap, &opts());
    assert_eq!(
        addrs(find(&out, "10.96.0.5:80", Protocol::Tcp)),
        ["10.244.1.5:8080", "10.244.2.5:8080"]
    );
    assert_eq!(
        addrs(find(&out, "172.31.0.2:30002", Protocol::Tcp)),
        ["10.244.2.5:8080"]
    );
}

#[test]
fn local_policy_without_local_endpoints_leaves_an_empty_service() {
    let mut p = port("web", model::Protocol::Tcp);
    p.node_port = 30002;
    p.internal_policy_local = true;
    p.external_policy_local = true;
    let snap = snapshot(vec![p], vec![ep("10.244.1.5", false, READY)]);
    let out = to_snapshot(&snap, &opts());
    assert_eq!(
        out.services.len(),
        2,
        "still listening: clients are refused"
    );
    assert!(out.services.iter().all(|v| v.endpoints.is_empty()));
}

#[test]
fn internal_traffic_policy_local_filters_the_cluster_ip() {
    let mut p = port("web", model::Protocol::Tcp);
    p.node_port = 30002;
    p.internal_policy_local = true;
    let snap = snapshot(
        vec![p],
        vec![
            ep("10.244.1.5", false, READY),
            ep("10.244.2.5", true, READY),
        ],
    );
    let out = to_snapshot(&snap, &opts());
    assert_eq!(
        addrs(find(&out, "10.96.0.5:80", Protocol::Tcp)),
        ["10.244.2.5:8080"]
    );
    assert_eq!(
        addrs(find(&out, "172.31.0.2:30002", Protocol::Tcp)),
        ["10.244.1.5:8080", "10.244.2.5:8080"]
    );
}

#[test]
fn terminating_endpoints_only_when_nothing_is_ready() {
    let p = port("web", model::Protocol::Tcp);
    let both = snapshot(
        vec![p.clone()],
        vec![
            ep("10.244.1.5", false, READY),
            ep("10.244.1.6", false, TERMINATING),
        ],
    );
    let out = to_snapshot(&both, &opts());
    assert_eq!(addrs(&out.services[0]), ["10.244.1.5:8080"]);
    let only_terminating = snapshot(
        vec![p],
        vec![
            ep("10.244.1.6", false, TERMINATING),
            // Not serving: never used, even as a fallback.
            ep("10.244.1.7", false, (false, false, true)),
        ],
    );
    let out = to_snapshot(&only_terminating, &opts());
    assert_eq!(addrs(&out.services[0]), ["10.244.1.6:8080"]);
}

#[test]
fn scheduler_and_weights_come_from_the_options() {
    let snap = snapshot(
        vec![
            port("a", model::Protocol::Tcp),
            ServicePort {
                cluster_ips: vec!["10.96.0.6".parse().unwrap()],
                ..port("b", model::Protocol::Tcp)
            },
        ],
        vec![
            ep("10.244.1.5", false, READY),
            ep("10.244.1.6", false, READY),
        ],
    );
    let mut o = opts();
    o.default_scheduler = SchedulerKind::Lc;
    o.schedulers
        .insert(ServiceKey::new("ns", "b"), SchedulerKind::Mh);
    o.weights.insert("10.244.1.6".parse().unwrap(), 5);
    let out = to_snapshot(&snap, &o);
    let a = find(&out, "10.96.0.5:80", Protocol::Tcp);
    let b = find(&out, "10.96.0.6:80", Protocol::Tcp);
    assert_eq!(a.scheduler, "lc");
    assert_eq!(b.scheduler, "mh");
    assert_eq!(
        b.endpoints,
        [
            ("10.244.1.5:8080".parse().unwrap(), 1),
            ("10.244.1.6:8080".parse().unwrap(), 5)
        ]
    );
}

#[test]
fn sctp_is_skipped_and_duplicates_keep_the_first() {
    let mut a = port("a", model::Protocol::Tcp);
    a.external_ips = vec!["172.31.0.2".parse().unwrap()];
    let mut b = port("b", model::Protocol::Tcp);
    b.cluster_ips = vec!["10.96.0.6".parse().unwrap()];
    b.node_port = 80; // 172.31.0.2:80, as a's external IP
    let sctp = ServicePort {
        cluster_ips: vec!["10.96.0.7".parse().unwrap()],
        ..port("c", model::Protocol::Sctp)
    };
    let mut snap = snapshot(vec![a, sctp], vec![ep("10.244.1.5", false, READY)]);
    snap.endpoints
        .insert(b.name.clone(), vec![ep("10.244.9.9", false, READY)]);
    snap.services.insert(b.name.clone(), b);
    let out = to_snapshot(&snap, &opts());
    assert!(
        out.services
            .iter()
            .all(|v| v.listen.ip().to_string() != "10.96.0.7")
    );
    assert_eq!(
        addrs(find(&out, "172.31.0.2:80", Protocol::Tcp)),
        ["10.244.1.5:8080"],
        "ns/a:p sorts before ns/b:p and keeps the address"
    );
}

fn annotated(key: &str, value: &str) -> ObjectMeta {
    ObjectMeta {
        annotations: Some(BTreeMap::from([(key.to_owned(), value.to_owned())])),
        ..Default::default()
    }
}

#[test]
fn scheduler_annotation_parses_ipvs_names() {
    let svc = |v: &str| Service {
        metadata: annotated(SCHEDULER_ANNOTATION, v),
        ..Default::default()
    };
    assert_eq!(scheduler_of(&svc("wrr")), Ok(Some(SchedulerKind::Wrr)));
    assert_eq!(scheduler_of(&svc(" mh ")), Ok(Some(SchedulerKind::Mh)));
    assert!(scheduler_of(&svc("roundrobin")).is_err());
    assert_eq!(scheduler_of(&Service::default()), Ok(None));
}

#[test]
fn pod_weight_annotation() {
    let pod = |v: &str| Pod {
        metadata: annotated(WEIGHT_ANNOTATION, v),
        status: Some(PodStatus {
            pod_ip: Some("10.244.1.5".into()),
            pod_ips: Some(vec![
                PodIP {
                    ip: "10.244.1.5".into(),
                },
                PodIP {
                    ip: "fd00:244::5".into(),
                },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let w = pod_weights(&pod("3"));
    assert_eq!(
        w,
        [
            ("10.244.1.5".parse().unwrap(), 3),
            ("fd00:244::5".parse().unwrap(), 3)
        ]
    );
    assert_eq!(pod_weights(&pod("0")).len(), 2, "0 drains; it is valid");
    for bad in ["-1", "65536", "x", ""] {
        assert!(pod_weights(&pod(bad)).is_empty(), "{bad:?}");
    }
    let plain = Pod {
        status: pod("1").status,
        ..Default::default()
    };
    assert!(pod_weights(&plain).is_empty());
}

#[test]
fn source_ranges_restrict_only_load_balancer_ips() {
    let mut p = port("lb", model::Protocol::Tcp);
    p.node_port = 30003;
    p.external_ips = vec!["172.31.255.7".parse().unwrap()];
    p.load_balancer_ips = vec!["172.31.255.9".parse().unwrap()];
    p.load_balancer_source_ranges = vec!["192.0.2.0/24".parse().unwrap()];
    let snap = snapshot(vec![p.clone()], vec![ep("10.244.1.5", false, READY)]);
    let out = to_snapshot(&snap, &opts());
    for open in ["10.96.0.5:80", "172.31.0.2:30003", "172.31.255.7:80"] {
        assert!(
            find(&out, open, Protocol::Tcp).source_ranges.is_empty(),
            "{open} is not restricted"
        );
    }
    let lb = find(&out, "172.31.255.9:80", Protocol::Tcp);
    assert_eq!(lb.source_ranges, ["192.0.2.0/24".parse().unwrap()]);

    // The node's address inside a range: the LB IPs themselves are admitted too.
    p.load_balancer_source_ranges
        .push("172.31.0.0/24".parse().unwrap());
    let snap = snapshot(vec![p], vec![ep("10.244.1.5", false, READY)]);
    let out = to_snapshot(&snap, &opts());
    let lb = find(&out, "172.31.255.9:80", Protocol::Tcp);
    let want: Vec<ipnet::IpNet> = ["192.0.2.0/24", "172.31.0.0/24", "172.31.255.9/32"]
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(lb.source_ranges, want);
}

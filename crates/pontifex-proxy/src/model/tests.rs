use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort as ApiPort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{
    Endpoint as ApiEndpoint, EndpointConditions, EndpointPort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn svc(name: &str, ty: &str, cluster_ip: &str, ports: &[(&str, i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(ty.into()),
            cluster_ip: Some(cluster_ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ApiPort {
                        name: Some((*n).into()),
                        port: *p,
                        protocol: Some((*proto).into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

fn slice(
    name: &str,
    svc: &str,
    port: (&str, i32, &str),
    eps: &[(&str, Option<&str>, Option<bool>)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("ns".into()),
            name: Some(name.into()),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_owned(),
                svc.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: eps
            .iter()
            .map(|(ip, node, ready)| ApiEndpoint {
                addresses: vec![(*ip).into()],
                node_name: node.map(Into::into),
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    serving: None,
                    terminating: None,
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some(port.0.into()),
            port: Some(port.1),
            protocol: Some(port.2.into()),
            ..Default::default()
        }]),
    }
}

fn spn(name: &str, port: &str, protocol: Protocol) -> ServicePortName {
    ServicePortName {
        service: ServiceKey::new("ns", name),
        port: port.into(),
        protocol,
    }
}

#[test]
fn headless_and_external_name_are_skipped() {
    let mut t = ChangeTracker::new("n1");
    t.update_service(&svc("h", "ClusterIP", "None", &[("p", 80, "TCP")]))
        .unwrap();
    t.update_service(&svc("e", "ExternalName", "", &[("p", 80, "TCP")]))
        .unwrap();
    t.update_service(&svc("a", "ClusterIP", "10.96.0.5", &[("p", 80, "TCP")]))
        .unwrap();
    let snap = t.current();
    assert_eq!(snap.services.len(), 1);
    assert!(snap.services.contains_key(&spn("a", "p", Protocol::Tcp)));
}

#[test]
fn ports_resolve_by_name_and_protocol_and_slices_merge() {
    let mut t = ChangeTracker::new("n1");
    t.update_service(&svc(
        "a",
        "ClusterIP",
        "10.96.0.5",
        &[("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")],
    ))
    .unwrap();
    t.update_endpoint_slice(&slice(
        "a-1",
        "a",
        ("dns", 5353, "UDP"),
        &[("10.0.0.2", Some("n2"), None)],
    ))
    .unwrap();
    t.update_endpoint_slice(&slice(
        "a-2",
        "a",
        ("dns", 5353, "UDP"),
        &[("10.0.0.10", Some("n1"), None)],
    ))
    .unwrap();
    // The same address in another slice, not local there: the local copy wins.
    t.update_endpoint_slice(&slice(
        "a-3",
        "a",
        ("dns", 5353, "UDP"),
        &[("10.0.0.10", Some("n9"), None)],
    ))
    .unwrap();
    let snap = t.current();
    let eps = snap.endpoints_of(&spn("a", "dns", Protocol::Udp));
    // Sorted by "ip:port" text, as kube-proxy: "10.0.0.10:5353" < "10.0.0.2:5353".
    let addrs: Vec<String> = eps.iter().map(|e| e.addr().to_string()).collect();
    assert_eq!(addrs, ["10.0.0.10:5353", "10.0.0.2:5353"]);
    assert!(eps[0].is_local);
    assert!(
        snap.endpoints_of(&spn("a", "dns-tcp", Protocol::Tcp))
            .is_empty()
    );
}

#[test]
fn unsafe_names_are_rejected() {
    let mut t = ChangeTracker::new("n1");
    let mut s = svc("a", "ClusterIP", "10.96.0.5", &[("p", 80, "TCP")]);
    s.metadata.name = Some("bad\" -j ACCEPT".into());
    assert!(matches!(
        t.update_service(&s),
        Err(ModelError::InvalidName(_))
    ));
    assert!(t.current().services.is_empty());
}

fn sp(itp_local: bool, etp_local: bool, node_port: u16) -> ServicePort {
    ServicePort {
        name: spn("a", "p", Protocol::Tcp),
        cluster_ips: vec!["10.96.0.5".parse().unwrap()],
        port: 80,
        node_port,
        external_ips: vec![],
        load_balancer_ips: vec![],
        load_balancer_source_ranges: vec![],
        external_policy_local: etp_local,
        internal_policy_local: itp_local,
        affinity_timeout: None,
        health_check_node_port: 0,
    }
}

fn ep(ip: &str, local: bool, ready: bool, serving: bool, terminating: bool) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: 80,
        is_local: local,
        ready,
        serving,
        terminating,
    }
}

#[test]
fn categorize_falls_back_to_terminating_only_without_ready() {
    let eps = [
        ep("10.0.0.1", true, false, true, true),
        ep("10.0.0.2", false, true, true, false),
        ep("10.0.0.3", true, false, false, true),
    ];
    let c = categorize(&eps, &sp(false, true, 30000));
    assert_eq!(c.cluster, vec![eps[1].clone()]);
    assert_eq!(c.local, vec![eps[0].clone()]);
    assert_eq!(c.all_reachable.len(), 2);
    assert!(c.has_any);
    // Nothing ready anywhere: cluster falls back to serving+terminating.
    let c = categorize(&eps[..1], &sp(false, false, 0));
    assert_eq!(c.cluster, vec![eps[0].clone()]);
    // Not serving: unusable.
    let c = categorize(&eps[2..], &sp(false, false, 0));
    assert!(!c.has_any && c.cluster.is_empty());
}

#[test]
fn categorize_internal_local_uses_only_local_set() {
    let eps = [ep("10.0.0.1", false, true, true, false)];
    let c = categorize(&eps, &sp(true, false, 0));
    assert!(c.cluster.is_empty() && c.local.is_empty() && c.all_reachable.is_empty());
    assert!(c.has_any, "a remote endpoint exists: DROP, not REJECT");
}

#[test]
fn both_policies_local_still_keep_the_cluster_set_for_short_circuits() {
    // iTP=Local and eTP=Local on a NodePort: pods and the node reach the NodePort through the
    // cluster chain (short-circuit), so the cluster set must exist (found by the
    // nftables/iptables equivalence property: the rules jumped to a chain never written).
    let svc = sp(true, true, 30000);
    assert!(svc.uses_cluster_endpoints() && svc.uses_local_endpoints());
    let eps = [ep("10.0.0.2", false, true, true, false)];
    let c = categorize(&eps, &svc);
    assert_eq!(c.cluster, vec![eps[0].clone()]);
    assert!(c.local.is_empty());
    // Without external access, iTP=Local uses only the local set.
    assert!(!sp(true, true, 0).uses_cluster_endpoints());
}

#[test]
fn sync_reports_changed_services_and_udp_conntrack() {
    let mut t = ChangeTracker::new("n1");
    t.update_service(&svc("a", "ClusterIP", "10.96.0.5", &[("dns", 53, "UDP")]))
        .unwrap();
    t.update_service(&svc("b", "ClusterIP", "10.96.0.6", &[("web", 80, "TCP")]))
        .unwrap();
    let first = t.sync();
    assert_eq!(first.changed_services.len(), 2);
    assert!(first.conntrack.is_empty(), "no endpoints yet");

    // First endpoint for a UDP service: flush the blackholed entries for its VIP.
    t.update_endpoint_slice(&slice(
        "a-1",
        "a",
        ("dns", 53, "UDP"),
        &[("10.0.0.2", None, None), ("10.0.0.3", None, None)],
    ))
    .unwrap();
    let up = t.sync();
    assert_eq!(
        up.changed_services
            .iter()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let vip = ConntrackTarget::Ip("10.96.0.5".parse().unwrap(), 53);
    assert_eq!(
        up.conntrack,
        vec![ConntrackFlush {
            target: vip.clone(),
            endpoint: None
        }]
    );

    // Nothing changed: nothing reported (an identical update is not a change).
    t.update_service(&svc("b", "ClusterIP", "10.96.0.6", &[("web", 80, "TCP")]))
        .unwrap();
    let up = t.sync();
    assert!(up.changed_services.is_empty() && up.conntrack.is_empty());

    // An endpoint goes: its entries are flushed.
    t.update_endpoint_slice(&slice(
        "a-1",
        "a",
        ("dns", 53, "UDP"),
        &[("10.0.0.2", None, None)],
    ))
    .unwrap();
    let up = t.sync();
    assert_eq!(
        up.conntrack,
        vec![ConntrackFlush {
            target: vip.clone(),
            endpoint: Some("10.0.0.3:53".parse().unwrap())
        }]
    );

    // The Service goes: everything for its VIP is flushed and its port reported deleted.
    t.delete_service("ns", "a");
    let up = t.sync();
    assert_eq!(up.deleted_ports, vec![spn("a", "dns", Protocol::Udp)]);
    assert!(up.conntrack.contains(&ConntrackFlush {
        target: vip,
        endpoint: None
    }));
    assert!(up.changed_services.contains(&ServiceKey::new("ns", "a")));
}

mod incremental {
    use super::{slice, svc};
    use crate::model::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        /// Service s0..s2 with a cluster IP choice, UDP?, and a second port.
        Service(u8, u8, bool, bool),
        DeleteService(u8),
        /// Slice (slice index, labelled service, endpoint IPs, local?, ready?).
        Slice(u8, u8, Vec<u8>, bool, Option<bool>),
        DeleteSlice(u8),
        Sync,
        Fail,
        Clear,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..2, any::<bool>(), any::<bool>())
                .prop_map(|(a, b, c, d)| Op::Service(a, b, c, d)),
            (0u8..3).prop_map(Op::DeleteService),
            (
                0u8..4,
                0u8..3,
                proptest::collection::vec(0u8..4, 0..3),
                any::<bool>(),
                proptest::option::of(any::<bool>())
            )
                .prop_map(|(a, b, c, d, e)| Op::Slice(a, b, c, d, e)),
            (0u8..4).prop_map(Op::DeleteSlice),
            Just(Op::Sync),
            Just(Op::Sync),
            Just(Op::Fail),
            Just(Op::Clear),
        ]
    }

    proptest! {
        /// The incremental tracker returns what a full rebuild and a whole-snapshot diff give.
        #[test]
        fn sync_equals_full_rebuild_and_diff(ops in proptest::collection::vec(arb_op(), 1..25)) {
            let mut t = ChangeTracker::new("n1");
            let mut prev = ProxySnapshot::default();
            // Objects as a relist would replay them after `Clear`.
            let mut svcs: BTreeMap<u8, Service> = BTreeMap::new();
            let mut slices: BTreeMap<u8, EndpointSlice> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Service(i, ip, udp, two) => {
                        let proto = if udp { "UDP" } else { "TCP" };
                        let mut ports = vec![("a", 80, proto)];
                        if two {
                            ports.push(("b", 81, "TCP"));
                        }
                        let s = svc(&format!("s{i}"), "ClusterIP", &format!("10.96.0.{}", ip + 1), &ports);
                        t.update_service(&s).unwrap();
                        svcs.insert(i, s);
                    }
                    Op::DeleteService(i) => {
                        t.delete_service("ns", &format!("s{i}"));
                        svcs.remove(&i);
                    }
                    Op::Slice(i, s, ips, local, ready) => {
                        let ips: Vec<String> = ips.iter().map(|n| format!("10.244.0.{}", n + 2)).collect();
                        let node = if local { Some("n1") } else { Some("n2") };
                        let eps: Vec<(&str, Option<&str>, Option<bool>)> =
                            ips.iter().map(|ip| (ip.as_str(), node, ready)).collect();
                        let sl = slice(&format!("x{i}"), &format!("s{s}"), ("a", 8080, "UDP"), &eps);
                        t.update_endpoint_slice(&sl).unwrap();
                        slices.insert(i, sl);
                    }
                    Op::DeleteSlice(i) => {
                        t.delete_endpoint_slice("ns", &format!("x{i}"));
                        slices.remove(&i);
                    }
                    Op::Sync => {
                        let cur = t.current();
                        let expected = diff(&prev, &cur);
                        let got = t.sync();
                        prop_assert_eq!(&*got.snapshot, &cur);
                        prop_assert_eq!(t.last(), &cur);
                        prop_assert_eq!(got.changed_services, expected.changed_services);
                        prop_assert_eq!(got.deleted_ports, expected.deleted_ports);
                        prop_assert_eq!(got.conntrack, expected.conntrack);
                        prev = cur;
                    }
                    Op::Fail => {
                        t.resync_failed();
                        prev = ProxySnapshot::default();
                    }
                    Op::Clear => {
                        t.clear_objects();
                        for s in svcs.values() {
                            t.update_service(s).unwrap();
                        }
                        for s in slices.values() {
                            t.update_endpoint_slice(s).unwrap();
                        }
                    }
                }
            }
        }
    }
}

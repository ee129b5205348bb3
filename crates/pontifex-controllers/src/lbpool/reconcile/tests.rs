use super::*;
use serde_json::json;

fn svc(name: &str, created: i64, spec: serde_json::Value, ip: Option<&str>) -> Service {
    let mut s = json!({"metadata": {"name": name, "namespace": "default",
            "creationTimestamp": jiff::Timestamp::from_second(created).unwrap().to_string()},
        "spec": spec});
    if let Some(ip) = ip {
        s["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
    }
    serde_json::from_value(s).unwrap()
}

fn lb(name: &str, created: i64, ip: Option<&str>) -> Service {
    svc(name, created, json!({"type": "LoadBalancer"}), ip)
}

fn pool() -> Ipv4Net {
    "172.31.255.0/24".parse().unwrap()
}

fn run(services: &[Service]) -> Vec<Action> {
    reconcile(pool(), services, &BTreeMap::new(), &BTreeMap::new())
}

fn assign(name: &str, ip: &str) -> Action {
    Action::Assign {
        namespace: "default".into(),
        name: name.into(),
        ip: ip.parse().unwrap(),
    }
}

#[test]
fn load_balancers_get_the_lowest_host_addresses_in_creation_order() {
    let got = run(&[lb("late", 2, None), lb("early", 1, None)]);
    assert_eq!(
        got,
        [
            assign("early", "172.31.255.1"),
            assign("late", "172.31.255.2")
        ]
    );
}

#[test]
fn other_types_and_classes_are_ignored() {
    let services = [
        svc("cip", 1, json!({"type": "ClusterIP"}), None),
        svc("np", 1, json!({"type": "NodePort"}), None),
        svc(
            "theirs",
            1,
            json!({"type": "LoadBalancer", "loadBalancerClass": "example.com/other"}),
            None,
        ),
        svc(
            "mine",
            1,
            json!({"type": "LoadBalancer", "loadBalancerClass": CLASS}),
            None,
        ),
    ];
    assert_eq!(run(&services), [assign("mine", "172.31.255.1")]);
}

#[test]
fn existing_status_is_kept_so_resyncs_and_restarts_do_nothing() {
    let services = [
        lb("a", 1, Some("172.31.255.7")),
        lb("b", 2, Some("172.31.255.1")),
    ];
    assert_eq!(run(&services), []);
    // A new one skips the taken addresses.
    let more = [services[0].clone(), services[1].clone(), lb("c", 3, None)];
    assert_eq!(run(&more), [assign("c", "172.31.255.2")]);
}

#[test]
fn a_deleted_services_ip_is_reused() {
    // "a" held .1 and is gone.
    let services = [lb("b", 2, Some("172.31.255.2")), lb("c", 3, None)];
    assert_eq!(run(&services), [assign("c", "172.31.255.1")]);
}

#[test]
fn a_service_that_stops_being_a_load_balancer_releases_its_ip() {
    let services = [
        svc("a", 1, json!({"type": "ClusterIP"}), Some("172.31.255.1")),
        lb("b", 2, None),
    ];
    assert_eq!(
        run(&services),
        [
            Action::Release {
                namespace: "default".into(),
                name: "a".into()
            },
            assign("b", "172.31.255.1")
        ]
    );
}

#[test]
fn requested_ips_are_honoured_when_free_and_in_the_pool() {
    let want = |name: &str, created, ip: &str| {
        svc(
            name,
            created,
            json!({"type": "LoadBalancer", "loadBalancerIP": ip}),
            None,
        )
    };
    assert_eq!(
        run(&[want("a", 1, "172.31.255.50")]),
        [assign("a", "172.31.255.50")]
    );
    let taken = [
        lb("x", 1, Some("172.31.255.50")),
        want("a", 2, "172.31.255.50"),
    ];
    let got = run(&taken);
    let [Action::Fail { message, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert!(message.contains("already in use"), "{message}");
    for bad in ["10.0.0.1", "172.31.255.0", "172.31.255.255", "nonsense"] {
        let got = run(&[want("a", 1, bad)]);
        assert!(
            matches!(got.as_slice(), [Action::Fail { .. }]),
            "{bad}: {got:?}"
        );
    }
}

#[test]
fn network_and_broadcast_are_never_handed_out_and_a_full_pool_fails_once() {
    let tiny: Ipv4Net = "10.0.0.0/30".parse().unwrap();
    let services = [lb("a", 1, None), lb("b", 2, None), lb("c", 3, None)];
    let got = reconcile(tiny, &services, &BTreeMap::new(), &BTreeMap::new());
    assert_eq!(
        got[..2],
        [
            Action::Assign {
                namespace: "default".into(),
                name: "a".into(),
                ip: "10.0.0.1".parse().unwrap()
            },
            Action::Assign {
                namespace: "default".into(),
                name: "b".into(),
                ip: "10.0.0.2".parse().unwrap()
            },
        ]
    );
    let Action::Fail { message, .. } = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(
        message,
        "Failed to allocate IP for \"default/c\": no available IPs"
    );
    let failed = BTreeMap::from([(("default".to_owned(), "c".to_owned()), message.clone())]);
    let pending = BTreeMap::from([
        (
            ("default".to_owned(), "a".to_owned()),
            "10.0.0.1".parse().unwrap(),
        ),
        (
            ("default".to_owned(), "b".to_owned()),
            "10.0.0.2".parse().unwrap(),
        ),
    ]);
    assert_eq!(
        reconcile(tiny, &services, &pending, &failed),
        [],
        "pending and already-reported: quiet"
    );
}

#[test]
fn a_duplicate_ip_goes_to_the_older_service() {
    let services = [
        lb("new", 2, Some("172.31.255.1")),
        lb("old", 1, Some("172.31.255.1")),
    ];
    assert_eq!(run(&services), [assign("new", "172.31.255.2")]);
}

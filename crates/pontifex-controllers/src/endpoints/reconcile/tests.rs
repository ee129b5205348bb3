use super::*;
use serde_json::{Value, json};

fn service(extra: Value) -> Service {
    let mut spec = json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
        "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u",
        "labels": {"team": "a"}}, "spec": spec}),
    )
    .unwrap()
}

fn pod(name: &str, ip: &str, ready: bool, extra_meta: Value) -> Arc<Pod> {
    let mut p = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    });
    for (k, v) in extra_meta.as_object().unwrap() {
        p["metadata"][k] = v.clone();
    }
    Arc::new(serde_json::from_value(p).unwrap())
}

fn created(a: Option<Action>) -> Endpoints {
    match a {
        Some(Action::Create(e)) | Some(Action::Update(e)) => e,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn ips(a: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
    a.iter().flatten().map(|a| a.ip.as_str()).collect()
}

#[test]
fn ready_and_not_ready_addresses_then_noop() {
    let svc = service(json!({}));
    let pods = [
        pod("b", "10.0.0.2", true, json!({})),
        pod("a", "10.0.0.1", true, json!({})),
        pod("c", "10.0.0.3", false, json!({})),
    ];
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    assert_eq!(
        e.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    assert_eq!(e.metadata.labels.as_ref().unwrap()["team"], "a");
    let subsets = e.subsets.clone().unwrap();
    assert_eq!(subsets.len(), 1);
    assert_eq!(ips(&subsets[0].addresses), ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.0.0.3"]);
    let a = &subsets[0].addresses.as_ref().unwrap()[0];
    assert_eq!(a.node_name.as_deref(), Some("node-a"));
    assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    assert_eq!(subsets[0].ports.as_ref().unwrap()[0].port, 8080);
    assert_eq!(reconcile("ns", "web", Some(&svc), &pods, Some(&e)), None);
    // Terminating pods are dropped unless not-ready addresses are published.
    let term = [pod(
        "a",
        "10.0.0.1",
        true,
        json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}),
    )];
    let e2 = created(reconcile("ns", "web", Some(&svc), &term, Some(&e)));
    assert_eq!(e2.subsets.as_deref(), Some(&[][..]));
    let publish = service(json!({"publishNotReadyAddresses": true}));
    let e3 = created(reconcile(
        "ns",
        "web",
        Some(&publish),
        &[term[0].clone(), pods[2].clone()],
        None,
    ));
    assert_eq!(
        ips(&e3.subsets.unwrap()[0].addresses),
        ["10.0.0.1", "10.0.0.3"]
    );
}

#[test]
fn selectorless_services_and_the_kubernetes_service_are_left_alone() {
    let mut svc = service(json!({}));
    svc.spec.as_mut().unwrap().selector = None;
    let hand: Endpoints = serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "ns"}, "subsets": []}),
    )
    .unwrap();
    assert_eq!(reconcile("ns", "web", Some(&svc), &[], Some(&hand)), None);
    assert_eq!(
        reconcile("ns", "web", None, &[], Some(&hand)),
        None,
        "not ours to delete"
    );
    let ours = created(reconcile("ns", "web", Some(&service(json!({}))), &[], None));
    assert_eq!(
        reconcile("ns", "web", None, &[], Some(&ours)),
        Some(Action::Delete("web".into()))
    );
    assert_eq!(
        reconcile(
            "default",
            "kubernetes",
            Some(&service(json!({}))),
            &[],
            None
        ),
        None
    );
}

#[test]
fn port_sets_split_subsets_and_hostnames_follow_subdomain() {
    let svc = service(json!({"ports": [{"name": "web", "port": 80, "targetPort": "http"}]}));
    let with_port = |name: &str, ip: &str, port: i32| {
        let mut p = (*pod(name, ip, true, json!({}))).clone();
        let spec = p.spec.as_mut().unwrap();
        spec.containers[0].ports = Some(vec![
            serde_json::from_value(json!({"name": "http", "containerPort": port})).unwrap(),
        ]);
        spec.hostname = Some(format!("{name}-h"));
        spec.subdomain = Some("web".into());
        Arc::new(p)
    };
    let pods = [
        with_port("a", "10.0.0.1", 8080),
        with_port("b", "10.0.0.2", 9090),
        pod("nope", "10.0.0.3", true, json!({})),
    ];
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    let subsets = e.subsets.unwrap();
    assert_eq!(subsets.len(), 2, "{subsets:?}");
    let ports: Vec<i32> = subsets
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port)
        .collect();
    assert_eq!(ports, [8080, 9090]);
    assert_eq!(
        subsets[0].addresses.as_ref().unwrap()[0]
            .hostname
            .as_deref(),
        Some("a-h")
    );
}

#[test]
fn over_capacity_is_truncated_and_annotated() {
    let svc = service(json!({}));
    let pods: Vec<Arc<Pod>> = (0..1100)
        .map(|i| {
            pod(
                &format!("p{i}"),
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
                i % 2 == 0,
                json!({}),
            )
        })
        .collect();
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    assert_eq!(
        e.metadata.annotations.as_ref().unwrap()["endpoints.kubernetes.io/over-capacity"],
        "truncated"
    );
    let s = &e.subsets.as_ref().unwrap()[0];
    let (ready, not_ready) = (ips(&s.addresses).len(), ips(&s.not_ready_addresses).len());
    assert_eq!(
        (ready, not_ready),
        (550, 450),
        "ready addresses are kept first"
    );
    assert_eq!(reconcile("ns", "web", Some(&svc), &pods, Some(&e)), None);
    // Back under capacity: the annotation goes.
    let e2 = created(reconcile("ns", "web", Some(&svc), &pods[..10], Some(&e)));
    assert!(
        !e2.metadata
            .annotations
            .unwrap_or_default()
            .contains_key("endpoints.kubernetes.io/over-capacity")
    );
}

fn dual_pod(name: &str, ips: &[&str]) -> Arc<Pod> {
    let list: Vec<Value> = ips.iter().map(|i| json!({"ip": i})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x"}]},
            "status": {"phase": "Running", "podIP": ips[0], "podIPs": list,
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap(),
    )
}

#[test]
fn endpoints_hold_the_primary_family_only() {
    let pods = [
        dual_pod("a", &["10.0.0.1", "fd00::1"]),
        dual_pod("b", &["fd00::2", "10.0.0.2"]),
    ];
    // Dual-stack, IPv6 primary: the IPv6 address of every pod, whatever its podIPs order.
    let svc = service(
        json!({"clusterIP": "fd00:96::10", "clusterIPs": ["fd00:96::10", "10.96.0.10"],
        "ipFamilies": ["IPv6", "IPv4"], "ipFamilyPolicy": "RequireDualStack"}),
    );
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    assert_eq!(
        ips(&e.subsets.unwrap()[0].addresses),
        ["fd00::1", "fd00::2"]
    );
    // Single-stack IPv4.
    let svc = service(json!({"ipFamilies": ["IPv4"]}));
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    assert_eq!(
        ips(&e.subsets.unwrap()[0].addresses),
        ["10.0.0.1", "10.0.0.2"]
    );
    // Headless without families (an old API server's): each pod's podIP family.
    let svc = service(json!({"clusterIP": "None"}));
    let e = created(reconcile("ns", "web", Some(&svc), &pods, None));
    assert_eq!(
        ips(&e.subsets.unwrap()[0].addresses),
        ["10.0.0.1", "fd00::2"]
    );
}

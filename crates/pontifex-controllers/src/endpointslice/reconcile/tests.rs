use super::*;
use serde_json::{Value, json};

fn service(spec: Value) -> Service {
    let mut spec = spec;
    if spec.get("selector").is_none() {
        spec["selector"] = json!({"app": "web"});
    }
    if spec.get("ports").is_none() {
        spec["ports"] =
            json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]);
    }
    if spec.get("clusterIP").is_none() {
        spec["clusterIP"] = json!("10.96.0.10");
    }
    serde_json::from_value(
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid",
        "labels": {"team": "a"}, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}),
    )
    .unwrap()
}

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    pod_with(name, json!([ip]), ready, json!({}), json!({}))
}

fn pod_with(name: &str, ips: Value, ready: bool, meta: Value, spec: Value) -> Pod {
    let ips: Vec<Value> = ips
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!({"ip": i}))
        .collect();
    let mut p = json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "x",
                 "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ips[0]["ip"], "podIPs": ips,
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"},
                                   "lastTransitionTime": "2026-01-02T00:00:00Z"}]},
    });
    for (k, v) in meta.as_object().unwrap() {
        p["metadata"][k] = v.clone();
    }
    for (k, v) in spec.as_object().unwrap() {
        p["spec"][k] = v.clone();
    }
    serde_json::from_value(p).unwrap()
}

/// A fake API server for slices: applies actions, names creations, bumps resourceVersions.
#[derive(Default)]
struct Store {
    slices: Vec<Arc<EndpointSlice>>,
    next: u64,
}

impl Store {
    fn apply(&mut self, actions: &[Action]) {
        for a in actions {
            self.next += 1;
            match a {
                Action::Create(s) => {
                    let mut s = s.clone();
                    assert!(s.metadata.name.is_none());
                    s.metadata.name = Some(format!(
                        "{}{}",
                        s.metadata.generate_name.clone().unwrap(),
                        self.next
                    ));
                    s.metadata.resource_version = Some(self.next.to_string());
                    self.slices.push(Arc::new(s));
                }
                Action::Update(s) => {
                    let i = self
                        .slices
                        .iter()
                        .position(|o| o.metadata.name == s.metadata.name)
                        .expect("updates an existing slice");
                    let mut s = s.clone();
                    s.metadata.resource_version = Some(self.next.to_string());
                    self.slices[i] = Arc::new(s);
                }
                Action::Delete(n) => {
                    let before = self.slices.len();
                    self.slices
                        .retain(|o| o.metadata.name.as_deref() != Some(n));
                    assert_eq!(before - 1, self.slices.len(), "deletes an existing slice");
                }
            }
        }
    }

    fn run(&mut self, svc: &Service, pods: &[Pod], max: usize) -> Vec<Action> {
        let pods: Vec<Arc<Pod>> = pods.iter().cloned().map(Arc::new).collect();
        let zones = BTreeMap::from([("node-a".to_owned(), "zone-1".to_owned())]);
        let actions = reconcile(&Input {
            service: svc,
            pods: &pods,
            zones: &zones,
            slices: &self.slices,
            max_per_slice: max,
        });
        self.apply(&actions);
        actions
    }

    fn endpoints(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .slices
            .iter()
            .flat_map(|s| {
                s.endpoints
                    .iter()
                    .map(move |e| (s.address_type.clone(), e.addresses[0].clone()))
            })
            .collect();
        v.sort();
        v
    }
}

fn conditions(e: &Endpoint) -> (bool, bool, bool) {
    let c = e.conditions.clone().unwrap();
    (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
}

#[test]
fn one_slice_with_metadata_and_noop_resync() {
    let svc = service(json!({}));
    let mut store = Store::default();
    let pods = [pod("a", "10.244.1.2", true), pod("b", "10.244.1.3", false)];
    let actions = store.run(&svc, &pods, 100);
    assert_eq!(actions.len(), 1);
    let Action::Create(s) = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(s.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(s.address_type, "IPv4");
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/service-name"], "web");
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(labels["team"], "a");
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
        ("Service", "web", "svc-uid")
    );
    assert_eq!(
        (owner.controller, owner.block_owner_deletion),
        (Some(true), Some(true))
    );
    assert_eq!(
        s.metadata.annotations.as_ref().unwrap()["endpoints.kubernetes.io/last-change-trigger-time"],
        "2026-01-02T00:00:00Z"
    );
    let ports = s.ports.clone().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), Some(8080))
    );
    assert_eq!(s.endpoints.len(), 2);
    let a = &s.endpoints[0];
    assert_eq!(a.addresses, ["10.244.1.2"]);
    assert_eq!(conditions(a), (true, true, false));
    assert_eq!(conditions(&s.endpoints[1]), (false, false, false));
    assert_eq!(a.node_name.as_deref(), Some("node-a"));
    assert_eq!(a.zone.as_deref(), Some("zone-1"));
    let r = a.target_ref.clone().unwrap();
    assert_eq!(
        (r.kind.as_deref(), r.name.as_deref(), r.uid.as_deref()),
        (Some("Pod"), Some("a"), Some("uid-a"))
    );
    // Level-triggered: the same state again writes nothing.
    assert_eq!(store.run(&svc, &pods, 100), []);
    // Readiness flips: one update in place.
    let pods2 = [pod("a", "10.244.1.2", true), pod("b", "10.244.1.3", true)];
    let actions = store.run(&svc, &pods2, 100);
    assert!(
        matches!(&actions[..], [Action::Update(s)] if conditions(&s.endpoints[1]) == (true, true, false)),
        "{actions:?}"
    );
}

#[test]
fn skipped_pods_and_selectorless_services() {
    let svc = service(json!({}));
    let mut store = Store::default();
    let pods = [
        pod_with("noip", json!([""]), true, json!({}), json!({})),
        pod_with(
            "unscheduled",
            json!(["10.0.0.1"]),
            true,
            json!({}),
            json!({"nodeName": null}),
        ),
        {
            let mut p = pod("done", "10.0.0.2", false);
            p.status.as_mut().unwrap().phase = Some("Succeeded".into());
            p
        },
        {
            let mut p = pod("failed", "10.0.0.3", false);
            p.status.as_mut().unwrap().phase = Some("Failed".into());
            p
        },
        pod("ok", "10.0.0.4", true),
    ];
    store.run(&svc, &pods, 100);
    assert_eq!(
        store.endpoints(),
        [("IPv4".to_owned(), "10.0.0.4".to_owned())]
    );
    let mut none = service(json!({}));
    none.spec.as_mut().unwrap().selector = None;
    assert_eq!(Store::default().run(&none, &pods, 100), []);
}

#[test]
fn terminating_pods_serve_while_ready_but_are_not_ready() {
    let svc = service(json!({}));
    let terminating = json!({"deletionTimestamp": "2026-01-03T00:00:00Z"});
    let pods = [
        pod_with(
            "t-ready",
            json!(["10.0.0.1"]),
            true,
            terminating.clone(),
            json!({}),
        ),
        pod_with(
            "t-unready",
            json!(["10.0.0.2"]),
            false,
            terminating,
            json!({}),
        ),
    ];
    let mut store = Store::default();
    store.run(&svc, &pods, 100);
    let eps = &store.slices[0].endpoints;
    assert_eq!(conditions(&eps[0]), (false, true, true));
    assert_eq!(conditions(&eps[1]), (false, false, true));
    // publishNotReadyAddresses: everything is ready and serving.
    let publish = service(json!({"publishNotReadyAddresses": true}));
    let mut store = Store::default();
    store.run(&publish, &pods, 100);
    let eps = &store.slices[0].endpoints;
    assert_eq!(conditions(&eps[0]), (true, true, true));
    assert_eq!(conditions(&eps[1]), (true, true, true));
}

#[test]
fn named_ports_differing_per_pod_make_separate_slices() {
    let svc = service(
        json!({"ports": [{"name": "web", "port": 80, "targetPort": "http", "protocol": "TCP"}]}),
    );
    let p8080 = pod("a", "10.0.0.1", true);
    let p9090 = pod_with(
        "b",
        json!(["10.0.0.2"]),
        true,
        json!({}),
        json!({"containers": [{"name": "c", "image": "x", "ports": [{"name": "http", "containerPort": 9090}]}]}),
    );
    let p8080b = pod("c", "10.0.0.3", true);
    let mut store = Store::default();
    store.run(&svc, &[p8080, p9090, p8080b], 100);
    assert_eq!(store.slices.len(), 2);
    let mut by_port: Vec<(i32, Vec<String>)> = store
        .slices
        .iter()
        .map(|s| {
            (
                s.ports.as_ref().unwrap()[0].port.unwrap(),
                s.endpoints.iter().map(|e| e.addresses[0].clone()).collect(),
            )
        })
        .collect();
    by_port.sort();
    assert_eq!(
        by_port,
        [
            (8080, vec!["10.0.0.1".to_owned(), "10.0.0.3".to_owned()]),
            (9090, vec!["10.0.0.2".to_owned()])
        ]
    );
}

#[test]
fn hostname_only_with_matching_subdomain() {
    let svc = service(json!({"clusterIP": "None"}));
    let pods = [
        pod_with(
            "a",
            json!(["10.0.0.1"]),
            true,
            json!({}),
            json!({"hostname": "a-host", "subdomain": "web"}),
        ),
        pod_with(
            "b",
            json!(["10.0.0.2"]),
            true,
            json!({}),
            json!({"hostname": "b-host", "subdomain": "other"}),
        ),
    ];
    let mut store = Store::default();
    store.run(&svc, &pods, 100);
    let s = &store.slices[0];
    assert_eq!(s.endpoints[0].hostname.as_deref(), Some("a-host"));
    assert_eq!(s.endpoints[1].hostname, None);
    assert_eq!(
        s.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );
}

#[test]
fn over_one_hundred_endpoints_fill_slices_without_churn() {
    let svc = service(json!({}));
    let mut pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.0.{}.{}", i / 200, i % 200 + 1),
                true,
            )
        })
        .collect();
    let mut store = Store::default();
    let actions = store.run(&svc, &pods, 100);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Create(_)))
            .count(),
        3
    );
    let mut sizes: Vec<usize> = store.slices.iter().map(|s| s.endpoints.len()).collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);
    assert_eq!(store.run(&svc, &pods, 100), []);

    // One pod becomes unready: exactly one slice is rewritten.
    pods[5] = pod("p005", "10.0.0.6", false);
    let actions = store.run(&svc, &pods, 100);
    assert!(matches!(&actions[..], [Action::Update(_)]), "{actions:?}");

    // One pod goes and another comes: the new one fills the slice that is written anyway.
    pods.remove(7);
    pods.push(pod("z", "10.9.9.9", true));
    let actions = store.run(&svc, &pods, 100);
    assert!(matches!(&actions[..], [Action::Update(_)]), "{actions:?}");
    assert_eq!(store.endpoints().len(), 250);

    // Ten new pods go into the slice with room instead of a new slice.
    pods.extend((0..10).map(|i| pod(&format!("n{i}"), &format!("10.8.0.{}", i + 1), true)));
    let actions = store.run(&svc, &pods, 100);
    assert!(
        matches!(&actions[..], [Action::Update(s)] if s.endpoints.len() == 60),
        "{actions:?}"
    );
    assert_eq!(store.slices.len(), 3);

    // All pods gone: one placeholder slice stays, and it is stable.
    store.run(&svc, &[], 100);
    assert_eq!(store.slices.len(), 1);
    assert!(store.slices[0].endpoints.is_empty());
    assert_eq!(store.run(&svc, &[], 100), []);
    // Pods back: the placeholder is reused rather than deleted and recreated.
    let actions = store.run(&svc, &pods[..3], 100);
    assert!(
        matches!(&actions[..], [Action::Update(s)] if s.endpoints.len() == 3),
        "{actions:?}"
    );
}

#[test]
fn dual_stack_services_get_one_slice_per_address_type() {
    let svc =
        service(json!({"ipFamilies": ["IPv4", "IPv6"], "ipFamilyPolicy": "RequireDualStack"}));
    let pods = [
        pod_with(
            "a",
            json!(["10.0.0.1", "fd00::1"]),
            true,
            json!({}),
            json!({}),
        ),
        pod_with("b", json!(["10.0.0.2"]), true, json!({}), json!({})),
    ];
    let mut store = Store::default();
    store.run(&svc, &pods, 100);
    assert_eq!(
        store.endpoints(),
        [
            ("IPv4".into(), "10.0.0.1".into()),
            ("IPv4".into(), "10.0.0.2".into()),
            ("IPv6".into(), "fd00::1".into())
        ]
    );
    assert_eq!(store.run(&svc, &pods, 100), []);
    // Back to single-stack: the IPv6 slice goes.
    let single = service(json!({"ipFamilies": ["IPv4"]}));
    store.run(&single, &pods, 100);
    assert!(store.slices.iter().all(|s| s.address_type == "IPv4"));
}

#[test]
fn single_stack_ipv6_services_get_ipv6_slices() {
    let svc = service(json!({"clusterIP": "fd00:96::10", "ipFamilies": ["IPv6"],
        "ipFamilyPolicy": "SingleStack"}));
    let pods = [
        pod_with(
            "a",
            json!(["10.0.0.1", "fd00::1"]),
            true,
            json!({}),
            json!({}),
        ),
        // An IPv4-only pod has nothing for this Service.
        pod("b", "10.0.0.2", true),
    ];
    let mut store = Store::default();
    store.run(&svc, &pods, 100);
    assert_eq!(store.endpoints(), [("IPv6".into(), "fd00::1".into())]);
    // ipFamilies order (IPv6 first) does not change what each slice holds.
    let dual = service(
        json!({"clusterIP": "fd00:96::10", "ipFamilies": ["IPv6", "IPv4"],
        "ipFamilyPolicy": "PreferDualStack"}),
    );
    store.run(&dual, &pods, 100);
    assert_eq!(
        store.endpoints(),
        [
            ("IPv4".into(), "10.0.0.1".into()),
            ("IPv4".into(), "10.0.0.2".into()),
            ("IPv6".into(), "fd00::1".into())
        ]
    );
}

#[test]
fn counts_follow_the_actions_for_the_endpoints_changed_event() {
    let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
    let mut store = Store::default();
    store.run(
        &svc,
        &[pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", true)],
        100,
    );
    let pods = [
        pod("a", "10.0.0.1", true),
        pod("b", "10.0.0.2", false),
        pod("c", "10.0.0.3", true),
    ];
    let arcs: Vec<Arc<Pod>> = pods.iter().cloned().map(Arc::new).collect();
    let zones = BTreeMap::new();
    let actions = reconcile(&Input {
        service: &svc,
        pods: &arcs,
        zones: &zones,
        slices: &store.slices,
        max_per_slice: 100,
    });
    let (before, after) = counts_before_after(&store.slices, &actions);
    assert_eq!(
        before,
        Counts {
            ready: 2,
            not_ready: 0
        }
    );
    assert_eq!(
        after,
        Counts {
            ready: 2,
            not_ready: 1
        }
    );
    assert_eq!(after.to_string(), "2 ready, 1 not ready");
    // Nothing to do: the counts agree.
    store.apply(&actions);
    let (b, a) = counts_before_after(&store.slices, &[]);
    assert_eq!(b, a);
}

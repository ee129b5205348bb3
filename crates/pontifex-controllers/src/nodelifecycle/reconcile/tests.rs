use super::*;
use serde_json::json;

const GRACE: Duration = Duration::from_secs(40);

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn node(name: &str, ready: &str, reason: &str, heartbeat: i64) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name, "creationTimestamp": at(0).to_string()},
        "status": {"conditions": [
            {"type": "Ready", "status": ready, "reason": reason,
             "lastHeartbeatTime": at(heartbeat).to_string(), "lastTransitionTime": at(0).to_string()},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory"}]}}))
    .unwrap()
}

fn pod(name: &str, node: &str, ready: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
    .unwrap()
}

fn leases(entries: &[(&str, i64)]) -> BTreeMap<String, Timestamp> {
    entries
        .iter()
        .map(|(n, t)| ((*n).to_owned(), at(*t)))
        .collect()
}

#[test]
fn a_fresh_lease_keeps_a_node_ready_even_with_an_old_heartbeat() {
    let nodes = [node("a", "True", "KubeletReady", 0)];
    assert_eq!(
        reconcile(&nodes, &leases(&[("a", 95)]), &[], at(100), GRACE),
        []
    );
    // Exactly at the grace period is still fine.
    assert_eq!(
        reconcile(&nodes, &leases(&[("a", 60)]), &[], at(100), GRACE),
        []
    );
}

#[test]
fn a_silent_node_goes_unknown_and_its_pods_unready() {
    let nodes = [
        node("a", "True", "KubeletReady", 0),
        node("b", "True", "KubeletReady", 0),
    ];
    let pods = [
        pod("on-a", "a", "True"),
        pod("on-b", "b", "True"),
        pod("already", "a", "False"),
    ];
    let got = reconcile(
        &nodes,
        &leases(&[("a", 59), ("b", 95)]),
        &pods,
        at(100),
        GRACE,
    );
    assert_eq!(got.len(), 2, "{got:?}");
    let Action::NodeStatus {
        node,
        conditions,
        change,
    } = &got[0]
    else {
        panic!("{got:?}")
    };
    assert_eq!((node.as_str(), *change), ("a", "NodeNotReady"));
    for c in conditions {
        assert_eq!(c.status, "Unknown", "{c:?}");
        assert_eq!(c.reason.as_deref(), Some(UNKNOWN_REASON));
        assert_eq!(c.message.as_deref(), Some(UNKNOWN_MESSAGE));
        assert_eq!(c.last_transition_time, Some(Time(at(100))));
    }
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        ready.last_heartbeat_time,
        Some(Time(at(0))),
        "the heartbeat time is kept"
    );
    let Action::PodNotReady {
        name, conditions, ..
    } = &got[1]
    else {
        panic!("{got:?}")
    };
    assert_eq!(name, "on-a");
    assert_eq!(conditions[0].status, "False");
}

#[test]
fn without_a_lease_the_ready_heartbeat_counts() {
    let nodes = [node("a", "True", "KubeletReady", 90)];
    assert_eq!(reconcile(&nodes, &BTreeMap::new(), &[], at(100), GRACE), []);
    let got = reconcile(&nodes, &BTreeMap::new(), &[], at(200), GRACE);
    assert!(matches!(
        got.as_slice(),
        [Action::NodeStatus {
            change: "NodeNotReady",
            ..
        }]
    ));
}

#[test]
fn an_unknown_node_stays_quiet_but_its_new_ready_pods_are_marked() {
    let nodes = [node("a", "Unknown", UNKNOWN_REASON, 0)];
    assert_eq!(
        reconcile(&nodes, &leases(&[("a", 10)]), &[], at(100), GRACE),
        [],
        "no-op resync"
    );
    let got = reconcile(
        &nodes,
        &leases(&[("a", 10)]),
        &[pod("p", "a", "True")],
        at(100),
        GRACE,
    );
    assert!(
        matches!(got.as_slice(), [Action::PodNotReady { .. }]),
        "{got:?}"
    );
}

#[test]
fn a_renewed_lease_brings_an_unknown_node_back() {
    let nodes = [node("a", "Unknown", UNKNOWN_REASON, 0)];
    let got = reconcile(&nodes, &leases(&[("a", 99)]), &[], at(100), GRACE);
    let [
        Action::NodeStatus {
            conditions,
            change: "NodeReady",
            ..
        },
    ] = got.as_slice()
    else {
        panic!("{got:?}")
    };
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("True", Some("KubeletReady"))
    );
    assert_eq!(ready.last_heartbeat_time, Some(Time(at(100))));
}

#[test]
fn a_node_agents_not_ready_is_left_alone_but_its_pods_go_unready() {
    let nodes = [node("a", "False", "KubeletNotReady", 99)];
    let got = reconcile(
        &nodes,
        &leases(&[("a", 99)]),
        &[pod("p", "a", "True")],
        at(100),
        GRACE,
    );
    assert!(
        matches!(got.as_slice(), [Action::PodNotReady { .. }]),
        "{got:?}"
    );
}

#[test]
fn a_node_that_never_posted_status_gets_an_unknown_ready_condition() {
    let n: Node = serde_json::from_value(json!({
        "metadata": {"name": "a", "creationTimestamp": at(0).to_string()}}))
    .unwrap();
    assert_eq!(
        reconcile(
            std::slice::from_ref(&n),
            &BTreeMap::new(),
            &[],
            at(10),
            GRACE
        ),
        []
    );
    let got = reconcile(&[n], &BTreeMap::new(), &[], at(100), GRACE);
    let [Action::NodeStatus { conditions, .. }] = got.as_slice() else {
        panic!("{got:?}")
    };
    assert_eq!(
        conditions[0].reason.as_deref(),
        Some("NodeStatusNeverUpdated")
    );
    assert_eq!(
        conditions[0].message.as_deref(),
        Some("Kubelet never posted node status.")
    );
}

use super::*;
use serde_json::json;

fn node(name: &str, extra: serde_json::Value) -> Node {
    let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    merge(&mut n, extra);
    serde_json::from_value(n).unwrap()
}

fn pod(name: &str, node: Option<&str>, extra: serde_json::Value) -> Pod {
    let mut p = json!({"metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}, "status": {"phase": "Pending"}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    merge(&mut p, extra);
    serde_json::from_value(p).unwrap()
}

fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    match (base, extra) {
        (serde_json::Value::Object(b), serde_json::Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, e) => *b = e,
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::UNIX_EPOCH)
}

fn binds(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Bind { name, node, .. } => Some((name.clone(), node.clone())),
            Action::Unschedulable { .. } => None,
        })
        .collect()
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    }
}

fn toleration(key: &str, op: &str, value: Option<&str>, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()).filter(|k: &String| !k.is_empty()),
        operator: Some(op.into()).filter(|o: &String| !o.is_empty()),
        value: value.map(Into::into),
        effect: Some(effect.into()).filter(|e: &String| !e.is_empty()),
        toleration_seconds: None,
    }
}

#[test]
fn tolerations_follow_upstream_matching() {
    let t = taint("dedicated", Some("infra"), "NoSchedule");
    assert!(tolerates(
        &toleration("dedicated", "Equal", Some("infra"), "NoSchedule"),
        &t
    ));
    assert!(
        tolerates(&toleration("dedicated", "", Some("infra"), ""), &t),
        "empty effect and default operator"
    );
    assert!(!tolerates(
        &toleration("dedicated", "Equal", Some("other"), "NoSchedule"),
        &t
    ));
    assert!(!tolerates(
        &toleration("dedicated", "Equal", None, "NoSchedule"),
        &t
    ));
    assert!(tolerates(
        &toleration("dedicated", "Exists", None, "NoSchedule"),
        &t
    ));
    assert!(
        !tolerates(&toleration("dedicated", "Exists", None, "NoExecute"), &t),
        "effect differs"
    );
    assert!(!tolerates(&toleration("other", "Exists", None, ""), &t));
    assert!(
        tolerates(&toleration("", "Exists", None, ""), &t),
        "empty key with Exists tolerates all"
    );
    // Upstream's matcher only compares a non-empty key (validation forbids an empty key with Equal).
    assert!(tolerates(&toleration("", "Equal", Some("infra"), ""), &t));
    assert!(!tolerates(&toleration("", "Equal", Some("x"), ""), &t));
    assert!(!tolerates(
        &toleration("dedicated", "Bogus", Some("infra"), ""),
        &t
    ));
}

#[test]
fn filters_give_upstream_reasons() {
    let plain = pod("p", None, json!({}));
    assert_eq!(filter(&plain, &node("a", json!({}))), Ok(()));
    assert_eq!(
        filter(&plain, &node("a", json!({"spec": {"unschedulable": true}}))),
        Err("node(s) were unschedulable".into())
    );
    let cordon_tolerant = pod(
        "p",
        None,
        json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}),
    );
    assert_eq!(
        filter(
            &cordon_tolerant,
            &node("a", json!({"spec": {"unschedulable": true}}))
        ),
        Ok(())
    );
    let tainted = node(
        "a",
        json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoExecute"}]}}),
    );
    assert_eq!(
        filter(&plain, &tainted),
        Err("node(s) had untolerated taint {k: v}".into())
    );
    let soft = node(
        "a",
        json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]}}),
    );
    assert_eq!(
        filter(&plain, &soft),
        Ok(()),
        "PreferNoSchedule does not filter"
    );
    let not_ready = node(
        "a",
        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    assert_eq!(
        filter(&plain, &not_ready),
        Err("node(s) had untolerated taint {node.kubernetes.io/unreachable: }".into())
    );
    let selective = pod(
        "p",
        None,
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    );
    assert_eq!(
        filter(&selective, &node("a", json!({}))),
        Err(AFFINITY.into())
    );
    assert_eq!(
        filter(
            &selective,
            &node("a", json!({"metadata": {"labels": {"disk": "ssd"}}}))
        ),
        Ok(())
    );
    // Taints are checked before affinity, as in the default plugin order.
    assert_eq!(
        filter(&selective, &tainted),
        Err("node(s) had untolerated taint {k: v}".into())
    );
}

#[test]
fn required_node_affinity_terms_are_ored_and_expressions_anded() {
    let p = pod(
        "p",
        None,
        json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                                  {"key": "gpu", "operator": "DoesNotExist"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["8"]}]}
        ]}}}}}),
    );
    let with = |labels: serde_json::Value| node("n", json!({"metadata": {"labels": labels}}));
    assert_eq!(filter(&p, &with(json!({"zone": "a"}))), Ok(()));
    assert!(filter(&p, &with(json!({"zone": "a", "gpu": "yes"}))).is_err());
    assert!(filter(&p, &with(json!({"zone": "c"}))).is_err());
    assert_eq!(filter(&p, &node("special", json!({}))), Ok(()));
    assert_eq!(filter(&p, &with(json!({"cores": "16"}))), Ok(()));
    assert!(filter(&p, &with(json!({"cores": "4"}))).is_err());
}

#[test]
fn pending_pods_spread_over_nodes_in_one_pass() {
    let nodes = [node("a", json!({})), node("b", json!({}))];
    let pods = [
        pod("p1", None, json!({})),
        pod("p2", None, json!({})),
        pod("p3", None, json!({})),
    ];
    let got = binds(&schedule(&nodes, &pods, 0, now()));
    assert_eq!(got.len(), 3);
    let on_a = got.iter().filter(|(_, n)| n == "a").count();
    assert!(on_a == 1 || on_a == 2, "{got:?}");
    // The tie-break decides the first choice and nothing else.
    let other = binds(&schedule(&nodes, &pods, 1, now()));
    assert_ne!(got[0].1, other[0].1);
    assert_eq!(
        binds(&schedule(&nodes, &pods, 0, now())),
        got,
        "deterministic"
    );
}

#[test]
fn same_owner_spreads_before_total_load() {
    let nodes = [node("a", json!({})), node("b", json!({}))];
    let owned = |name: &str, node: Option<&str>| {
        pod(
            name,
            node,
            json!({"metadata": {"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]}}),
        )
    };
    // b is busier overall, but a already runs a replica of the same owner.
    let pods = [
        owned("r1", Some("a")),
        pod("x1", Some("b"), json!({})),
        pod("x2", Some("b"), json!({})),
        owned("r2", None),
    ];
    assert_eq!(
        binds(&schedule(&nodes, &pods, 0, now())),
        [("r2".into(), "b".into())]
    );
    // Without the owner it goes to the less busy node.
    let pods = [
        pods[0].clone(),
        pods[1].clone(),
        pods[2].clone(),
        pod("r2", None, json!({})),
    ];
    assert_eq!(
        binds(&schedule(&nodes, &pods, 0, now())),
        [("r2".into(), "a".into())]
    );
}

#[test]
fn only_unbound_live_default_scheduler_pods_are_scheduled() {
    let nodes = [node("a", json!({}))];
    let pods = [
        pod("bound", Some("a"), json!({})),
        pod(
            "other",
            None,
            json!({"spec": {"schedulerName": "my-scheduler"}}),
        ),
        pod(
            "gone",
            None,
            json!({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}}),
        ),
        pod("done", None, json!({"status": {"phase": "Succeeded"}})),
        pod(
            "mine",
            None,
            json!({"spec": {"schedulerName": "default-scheduler"}}),
        ),
    ];
    assert_eq!(
        binds(&schedule(&nodes, &pods, 0, now())),
        [("mine".into(), "a".into())]
    );
}

#[test]
fn no_fitting_node_gives_the_upstream_message_once() {
    let nodes = [
        node(
            "a",
            json!({"spec": {"taints": [{"key": "key", "value": "value", "effect": "NoSchedule"}]}}),
        ),
        node("b", json!({})),
    ];
    let p = pod(
        "x",
        None,
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    );
    let actions = schedule(&nodes, std::slice::from_ref(&p), 0, now());
    let [
        Action::Unschedulable {
            conditions,
            message,
            ..
        },
    ] = actions.as_slice()
    else {
        panic!("{actions:?}")
    };
    assert_eq!(
        message,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
         1 node(s) had untolerated taint {key: value}. preemption: 0/2 nodes are available: \
         2 Preemption is not helpful for scheduling."
    );
    let c = &conditions[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
        ("PodScheduled", "False", Some("Unschedulable"))
    );
    // Once the pod says so, a resync does nothing.
    let mut p = p;
    p.status.as_mut().unwrap().conditions = Some(conditions.clone());
    assert_eq!(schedule(&nodes, &[p], 0, now()), []);
    // No nodes at all.
    assert!(fit_error(0, &BTreeMap::new()).starts_with("0/0 nodes are available: preemption"));
}

#[test]
fn a_resync_with_everything_bound_does_nothing() {
    let nodes = [node("a", json!({})), node("b", json!({}))];
    let pods = [
        pod("p1", Some("a"), json!({})),
        pod("p2", Some("b"), json!({})),
    ];
    assert_eq!(schedule(&nodes, &pods, 7, now()), []);
}

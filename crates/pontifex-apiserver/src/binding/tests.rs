use super::*;

fn pod(node: Option<&str>) -> Value {
    let mut p = json!({"metadata": {"name": "x", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn binding(kind: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "x", "annotations": {"a": "b"}},
           "target": {"kind": kind, "name": node}})
}

#[test]
fn binding_sets_node_name_annotations_and_scheduled_condition() {
    let b = binding("Node", "node-a");
    let node = target_node("x", &b).unwrap();
    let out = bind(&pod(None), &b, &node, Timestamp::UNIX_EPOCH).unwrap();
    assert_eq!(out["spec"]["nodeName"], "node-a");
    assert_eq!(out["metadata"]["annotations"]["a"], "b");
    let conds = out["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds.len(), 1);
    assert_eq!(conds[0]["status"], "True");
    assert!(conds[0].get("reason").is_none());
}

#[test]
fn a_bound_pod_cannot_be_bound_again() {
    let b = binding("", "node-b");
    let err = bind(&pod(Some("node-a")), &b, "node-b", Timestamp::UNIX_EPOCH).unwrap_err();
    assert_eq!(err.code(), 409);
    assert_eq!(
        err.to_string(),
        "Operation cannot be fulfilled on pods \"x\": pod x is already assigned to node \"node-a\""
    );
}

#[test]
fn a_terminating_pod_cannot_be_bound() {
    let mut p = pod(None);
    p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
    let err = bind(&p, &binding("Node", "n"), "n", Timestamp::UNIX_EPOCH).unwrap_err();
    assert_eq!(err.code(), 409);
}

#[test]
fn the_target_must_be_a_named_node() {
    assert_eq!(
        target_node("x", &binding("Service", ""))
            .unwrap_err()
            .code(),
        422
    );
    assert_eq!(
        target_node("y", &binding("Node", "n")).unwrap_err().code(),
        400
    );
}

use super::*;
use serde_json::json;

fn now() -> Timestamp {
    "2025-01-01T00:10:00Z".parse().unwrap()
}

fn rs(replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web-abc", "namespace": "default", "uid": "rs-uid", "generation": 2},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    }))
    .unwrap()
}

/// A pod owned by the ReplicaSet (or an orphan), created at `minute`, on `node` ("" = unscheduled).
fn pod(name: &str, owned: bool, minute: i64, node: &str, ready: bool) -> Pod {
    let owners = if owned {
        json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs-uid", "controller": true}])
    } else {
        json!([])
    };
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                     "labels": {"app": "web"}, "ownerReferences": owners,
                     "creationTimestamp": format!("2025-01-01T00:{minute:02}:00Z")},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": if node.is_empty() { "Pending" } else { "Running" },
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" },
                                   "lastTransitionTime": "2025-01-01T00:05:00Z"}]},
    }))
    .unwrap()
}

#[test]
fn too_few_pods_creates_from_the_template() {
    let r = rs(3);
    let p = pod("a", true, 1, "n1", true);
    let pods = [&p];
    let plan = plan(&r, &pods);
    assert_eq!(plan.create, 2);
    let t = plan.template.unwrap();
    assert_eq!(t.metadata.generate_name.as_deref(), Some("web-abc-"));
    assert_eq!(t.metadata.labels.unwrap()["app"], "web");
    let o = &t.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (o.uid.as_str(), o.controller, o.block_owner_deletion),
        ("rs-uid", Some(true), Some(true))
    );
}

#[test]
fn too_many_pods_deletes_unscheduled_then_not_ready_then_newest() {
    let r = rs(1);
    let (old, new) = (
        pod("old", true, 1, "n1", true),
        pod("new", true, 3, "n1", true),
    );
    let (unready, pending) = (
        pod("unready", true, 0, "n1", false),
        pod("pending", true, 0, "", false),
    );
    let pods = [&old, &new, &unready, &pending];
    let names: Vec<_> = plan(&r, &pods)
        .delete
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, vec!["pending", "unready", "new"]);
}

#[test]
fn orphans_are_adopted_non_matching_released_terminating_not_counted() {
    let r = rs(2);
    let orphan = pod("orphan", false, 1, "n1", true);
    let mut stray = pod("stray", true, 1, "n1", true);
    stray.metadata.labels = Some([("app".to_owned(), "other".to_owned())].into());
    let mut dying = pod("dying", true, 1, "n1", true);
    dying.metadata.deletion_timestamp = Some(Time(now()));
    let pods = [&orphan, &stray, &dying];
    let plan = plan(&r, &pods);
    assert_eq!(plan.claim.adopt.len(), 1);
    assert_eq!(plan.claim.release.len(), 1);
    assert_eq!(plan.active.len(), 1, "only the adopted pod counts");
    assert_eq!(plan.create, 1);
}

#[test]
fn status_counts_ready_and_available_and_reports_failures() {
    let mut r = rs(2);
    r.spec.as_mut().unwrap().min_ready_seconds = Some(600);
    let (a, b) = (
        pod("a", true, 1, "n1", true),
        pod("b", true, 1, "n1", false),
    );
    let active = [&a, &b];
    let s = status(&r, &active, None, now());
    assert_eq!(
        (s.replicas, s.fully_labeled_replicas, s.ready_replicas),
        (2, Some(2), Some(1))
    );
    assert_eq!(s.available_replicas, Some(0), "ready for 5 of 10 minutes");
    assert_eq!(s.observed_generation, Some(2));
    assert!(requeue_after(&r, &active, now()).is_some());
    let later = now()
        .checked_add(jiff::SignedDuration::from_secs(300))
        .unwrap();
    assert_eq!(status(&r, &active, None, later).available_replicas, Some(1));
    let f = Failure {
        reason: "FailedCreate",
        message: "quota".into(),
    };
    let s = status(&r, &active, Some(&f), now());
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.reason.as_deref()),
        ("ReplicaFailure", Some("FailedCreate"))
    );
    r.status = Some(s);
    assert!(
        status(&r, &active, None, now()).conditions.is_none(),
        "cleared on success"
    );
}

#[test]
fn a_resync_of_a_settled_replica_set_does_nothing() {
    let mut r = rs(2);
    let (a, b) = (pod("a", true, 1, "n1", true), pod("b", true, 2, "n2", true));
    let pods = [&a, &b];
    let p = plan(&r, &pods);
    r.status = Some(status(&r, &p.active, None, now()));
    let again = plan(&r, &pods);
    assert_eq!(
        (again.create, again.delete.len(), again.claim.adopt.len()),
        (0, 0, 0)
    );
    assert!(!status_changed(&r, &status(&r, &again.active, None, now())));
}

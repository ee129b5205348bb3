use super::*;
use serde_json::json;

fn now() -> Timestamp {
    "2025-01-01T00:00:00Z".parse().unwrap()
}

fn deployment(replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "d-uid", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": image}]}},
            "strategy": strategy,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
    }))
    .unwrap()
}

fn rolling(surge: serde_json::Value, unavailable: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

/// A ReplicaSet of `d` for `image`, created at minute `minute`, with `replicas` all available.
fn rs_for(
    d: &Deployment,
    image: &str,
    minute: i64,
    replicas: i32,
    available: i32,
    rev: i64,
) -> ReplicaSet {
    let mut template = d.spec.as_ref().unwrap().template.clone();
    template.spec.as_mut().unwrap().containers[0].image = Some(image.to_owned());
    let hash = pod_template_hash(&template, None);
    template
        .metadata
        .get_or_insert_default()
        .labels
        .get_or_insert_default()
        .insert(HASH_LABEL.into(), hash.clone());
    let n = desired(d);
    serde_json::from_value(json!({
        "metadata": {
            "name": format!("web-{hash}"), "namespace": "default", "uid": format!("rs-{image}"),
            "resourceVersion": "5", "generation": 1,
            "creationTimestamp": format!("2025-01-01T00:{minute:02}:00Z"),
            "labels": {"app": "web", "pod-template-hash": hash},
            "annotations": {REVISION: rev.to_string(), DESIRED_REPLICAS: n.to_string(),
                            MAX_REPLICAS: (n + max_surge(d)).to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                 "uid": "d-uid", "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web", "pod-template-hash": hash}},
                 "template": template},
        "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available,
                   "observedGeneration": 1},
    }))
    .unwrap()
}

fn scales(plan: &Plan) -> Vec<(String, i32)> {
    plan.actions
        .iter()
        .filter_map(|a| match a {
            Action::UpdateReplicaSet(rs) | Action::CreateReplicaSet(rs) => {
                Some((name(rs), replicas(rs)))
            }
            _ => None,
        })
        .collect()
}

fn status_of(plan: &Plan) -> Option<&DeploymentStatus> {
    plan.actions.iter().find_map(|a| match a {
        Action::Status(s) => Some(s),
        _ => None,
    })
}

#[test]
fn the_hash_is_stable_and_changes_with_template_and_collisions() {
    let d = deployment(3, "nginx:1.19", rolling(json!("25%"), json!("25%")));
    let t = &d.spec.as_ref().unwrap().template;
    let h = pod_template_hash(t, None);
    assert_eq!(h, pod_template_hash(&t.clone(), None));
    assert!(
        h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{h}"
    );
    assert!(!h.is_empty() && h.len() <= 10);
    assert_ne!(h, pod_template_hash(t, Some(1)));
    assert_ne!(pod_template_hash(t, Some(1)), pod_template_hash(t, Some(2)));
    let d2 = deployment(3, "nginx:1.20", rolling(json!("25%"), json!("25%")));
    assert_ne!(
        h,
        pod_template_hash(&d2.spec.as_ref().unwrap().template, None)
    );
    // A golden value: the hash must not drift between releases, or every Deployment would roll.
    assert_eq!(h, GOLDEN_HASH);
}

const GOLDEN_HASH: &str = "588794fc97";

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let cases = [
        (4, json!("25%"), json!("25%"), (1, 1)),
        (10, json!("25%"), json!("25%"), (3, 2)),
        (3, json!("25%"), json!("25%"), (1, 0)),
        (10, json!(0), json!(0), (0, 1)),
        (10, json!(2), json!("50%"), (2, 5)),
    ];
    for (n, s, u, want) in cases {
        let d = deployment(n, "x", rolling(s.clone(), u.clone()));
        assert_eq!(fenceposts(&d), want, "{n} {s} {u}");
    }
}

#[test]
fn a_new_deployment_creates_its_replica_set_at_full_size() {
    let d = deployment(3, "nginx:1.19", rolling(json!("25%"), json!("25%")));
    let plan = reconcile(&d, &[], &[], now());
    let created = plan.actions.iter().find_map(|a| match a {
        Action::CreateReplicaSet(rs) => Some(rs.clone()),
        _ => None,
    });
    let rs = created.expect("a ReplicaSet is created");
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(name(&rs), format!("web-{hash}"));
    assert_eq!(replicas(&rs), 3);
    assert_eq!(
        rs.spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()[HASH_LABEL],
        hash
    );
    let ann = rs.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        (
            ann[REVISION].as_str(),
            ann[DESIRED_REPLICAS].as_str(),
            ann[MAX_REPLICAS].as_str()
        ),
        ("1", "3", "4")
    );
    assert!(plan.actions.contains(&Action::AnnotateRevision("1".into())));
    assert!(plan.actions.contains(&Action::Event {
        type_: "Normal",
        reason: "ScalingReplicaSet",
        message: format!("Scaled up replica set web-{hash} to 3"),
    }));
    let st = status_of(&plan).unwrap();
    let p = condition(st, "Progressing").unwrap();
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetCreated"));
}

#[test]
fn scaling_up_and_down_resizes_the_only_replica_set() {
    for (from, to) in [(3, 5), (5, 2)] {
        let mut d = deployment(from, "a", rolling(json!("25%"), json!("25%")));
        let rs = rs_for(&d, "a", 0, from, from, 1);
        d.spec.as_mut().unwrap().replicas = Some(to);
        let plan = reconcile(&d, &[&rs], &[], now());
        assert_eq!(scales(&plan), vec![(name(&rs), to)]);
        let op = if to > from { "up" } else { "down" };
        assert!(plan.actions.contains(&Action::Event {
            type_: "Normal",
            reason: "ScalingReplicaSet",
            message: format!("Scaled {op} replica set {} to {to} from {from}", name(&rs)),
        }));
    }
}

/// Play a rolling update to the end: each step applies the plan, then every pod becomes available.
/// Returns the sizes (old, new) after each step.
fn roll(n: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Vec<(i32, i32)> {
    let d = deployment(n, "b", rolling(surge, unavailable));
    let mut old = rs_for(&d, "a", 0, n, n, 1);
    let mut new: Option<ReplicaSet> = None;
    let mut steps = Vec::new();
    for _ in 0..50 {
        let mut all = vec![&old];
        all.extend(new.as_ref());
        let plan = reconcile(&d, &all, &[], now());
        let changes = scales(&plan);
        if changes.is_empty() {
            break;
        }
        for a in plan.actions {
            match a {
                Action::CreateReplicaSet(mut rs) => {
                    rs.metadata.uid = Some("rs-b".into());
                    rs.metadata.creation_timestamp =
                        Some(Time("2025-01-01T00:05:00Z".parse().unwrap()));
                    new = Some(rs);
                }
                Action::UpdateReplicaSet(rs) if name(&rs) == name(&old) => old = rs,
                Action::UpdateReplicaSet(rs) => new = Some(rs),
                _ => {}
            }
        }
        // Check the bounds against the sizes the controller asked for, before pods catch up.
        let total = replicas(&old) + new.as_ref().map_or(0, replicas);
        let (s, u) = fenceposts(&d);
        assert!(total <= n + s, "total {total} exceeds {n}+{s}");
        let avail = available(&old).min(replicas(&old)) + new.as_ref().map_or(0, available);
        assert!(avail >= n - u, "available {avail} below {n}-{u}");
        // Pods catch up: every ReplicaSet's pods exist and are available.
        for rs in std::iter::once(&mut old).chain(new.as_mut()) {
            let r = replicas(rs);
            let s = rs.status.get_or_insert_default();
            s.replicas = r;
            s.available_replicas = Some(r);
            s.ready_replicas = Some(r);
        }
        steps.push((replicas(&old), new.as_ref().map_or(0, replicas)));
    }
    steps
}

#[test]
fn rolling_updates_respect_surge_and_unavailability() {
    // 4 replicas, 25%/25%: surge 1, unavailable 1. As upstream, the sync that creates the new
    // ReplicaSet (1, the surge) also scales the old one down by the unavailability (to 3).
    assert_eq!(
        roll(4, json!("25%"), json!("25%")),
        vec![(3, 1), (3, 2), (1, 2), (1, 4), (0, 4)]
    );
    // 10 replicas, 25%/25%: surge 3, unavailable 2.
    let ten = roll(10, json!("25%"), json!("25%"));
    assert_eq!(ten.first(), Some(&(8, 3)));
    assert_eq!(ten.last(), Some(&(0, 10)));
    // maxSurge 0: scale the old down first.
    let no_surge = roll(4, json!(0), json!(1));
    assert_eq!(no_surge.first(), Some(&(3, 0)));
    assert_eq!(no_surge.last(), Some(&(0, 4)));
}

#[test]
fn recreate_empties_the_old_replica_set_before_creating_the_new() {
    let strategy = json!({"type": "Recreate"});
    let d = deployment(3, "b", strategy);
    let old = rs_for(&d, "a", 0, 3, 3, 1);
    let plan = reconcile(&d, &[&old], &[], now());
    assert_eq!(scales(&plan), vec![(name(&old), 0)]);
    // Scaled to 0 but pods still reported: wait.
    let mut draining = old.clone();
    draining.spec.as_mut().unwrap().replicas = Some(0);
    assert!(scales(&reconcile(&d, &[&draining], &[], now())).is_empty());
    // Gone: the new one is created at full size.
    draining.status.as_mut().unwrap().replicas = 0;
    draining.status.as_mut().unwrap().available_replicas = Some(0);
    let plan = reconcile(&d, &[&draining], &[], now());
    let hash = pod_template_hash(&d.spec.as_ref().unwrap().template, None);
    assert_eq!(scales(&plan), vec![(format!("web-{hash}"), 3)]);
}

#[test]
fn history_beyond_the_limit_is_deleted_oldest_revision_first() {
    let mut d = deployment(2, "new", rolling(json!("25%"), json!("25%")));
    d.spec.as_mut().unwrap().revision_history_limit = Some(2);
    let new = rs_for(&d, "new", 10, 2, 2, 5);
    let olds: Vec<ReplicaSet> = (1..=4)
        .map(|i| rs_for(&d, &format!("old{i}"), i, 0, 0, i))
        .collect();
    d.status = Some(DeploymentStatus {
        replicas: Some(2),
        updated_replicas: Some(2),
        available_replicas: Some(2),
        observed_generation: Some(1),
        ..DeploymentStatus::default()
    });
    let mut all: Vec<&ReplicaSet> = olds.iter().collect();
    all.push(&new);
    let plan = reconcile(&d, &all, &[], now());
    let deleted: Vec<&str> = plan
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::DeleteReplicaSet { uid, .. } => Some(uid.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, vec!["rs-old1", "rs-old2"]);
}

#[test]
fn a_complete_rollout_reports_available_and_progressed_then_resyncs_to_nothing() {
    let mut d = deployment(3, "a", rolling(json!("25%"), json!("25%")));
    d.metadata.annotations = Some([(REVISION.to_owned(), "1".to_owned())].into());
    let rs = rs_for(&d, "a", 0, 3, 3, 1);
    let plan = reconcile(&d, &[&rs], &[], now());
    let st = status_of(&plan).expect("a first status").clone();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.available_replicas,
            st.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(0))
    );
    assert_eq!(st.observed_generation, Some(1));
    let a = condition(&st, "Available").unwrap();
    assert_eq!(
        (a.status.as_str(), a.reason.as_deref()),
        ("True", Some("MinimumReplicasAvailable"))
    );
    let p = condition(&st, "Progressing").unwrap();
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(
        p.message.as_deref(),
        Some(format!("ReplicaSet {:?} has successfully progressed.", name(&rs)).as_str())
    );
    // Stored, the same state yields no action at all, even later.
    d.status = Some(st);
    let later = now()
        .checked_add(jiff::SignedDuration::from_secs(3600))
        .unwrap();
    assert_eq!(reconcile(&d, &[&rs], &[], later).actions, vec![]);
}

#[test]
fn a_stuck_rollout_exceeds_its_progress_deadline() {
    let mut d = deployment(2, "a", rolling(json!("25%"), json!("25%")));
    d.metadata.annotations = Some([(REVISION.to_owned(), "1".to_owned())].into());
    let rs = rs_for(&d, "a", 0, 2, 0, 1);
    let plan = reconcile(&d, &[&rs], &[], now());
    let st = status_of(&plan).unwrap().clone();
    assert_eq!(condition(&st, "Available").unwrap().status, "False");
    assert!(plan.requeue_after.is_some());
    d.status = Some(st);
    let later = now()
        .checked_add(jiff::SignedDuration::from_secs(601))
        .unwrap();
    let plan = reconcile(&d, &[&rs], &[], later);
    let p = condition(status_of(&plan).unwrap(), "Progressing")
        .unwrap()
        .clone();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}

#[test]
fn a_paused_deployment_scales_but_does_not_roll() {
    let mut d = deployment(5, "b", rolling(json!("25%"), json!("25%")));
    d.spec.as_mut().unwrap().paused = Some(true);
    let old = rs_for(
        &deployment(3, "a", rolling(json!("25%"), json!("25%"))),
        "a",
        0,
        3,
        3,
        1,
    );
    let plan = reconcile(&d, &[&old], &[], now());
    assert_eq!(scales(&plan), vec![(name(&old), 5)]);
    let p = condition(status_of(&plan).unwrap(), "Progressing")
        .unwrap()
        .clone();
    assert_eq!(p.reason.as_deref(), Some("DeploymentPaused"));
}

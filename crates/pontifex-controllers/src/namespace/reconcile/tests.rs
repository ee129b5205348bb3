use jiff::Timestamp;

use super::{Action, Item, Observed, reconcile};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn terminating() -> Observed {
    Observed {
        deletion_timestamp: Some(t(0)),
        spec_finalizers: vec!["kubernetes".into()],
        conditions: Vec::new(),
    }
}

fn item(resource: usize, gr: &str, name: &str) -> Item {
    Item {
        resource,
        group_resource: gr.into(),
        name: name.into(),
        deletion_timestamp: None,
        finalizers: Vec::new(),
        bound_pod: false,
    }
}

/// Feed the conditions an action list set back into the namespace, as the API server would.
fn apply_conditions(ns: &mut Observed, actions: &[Action]) {
    for a in actions {
        if let Action::SetConditions(c) = a {
            ns.conditions = c
                .iter()
                .map(|c| {
                    (
                        c.type_.to_owned(),
                        c.status.to_owned(),
                        c.reason.to_owned(),
                        c.message.clone(),
                    )
                })
                .collect();
        }
    }
}

#[test]
fn active_namespace_or_one_without_our_finalizer_is_left_alone() {
    let content = [item(0, "configmaps", "a")];
    let active = Observed {
        deletion_timestamp: None,
        ..terminating()
    };
    assert!(reconcile(&active, &content, t(1)).is_empty());
    let done = Observed {
        spec_finalizers: Vec::new(),
        ..terminating()
    };
    assert!(reconcile(&done, &content, t(1)).is_empty());
}

#[test]
fn content_is_deleted_and_reported_remaining_without_finalizing() {
    let ns = terminating();
    let mut marked = item(1, "pods", "p");
    marked.deletion_timestamp = Some(t(30));
    marked.finalizers = vec!["example.com/hold".into()];
    let content = [item(0, "configmaps", "a"), item(2, "services", "s"), marked];
    let actions = reconcile(&ns, &content, t(1));
    assert!(actions.contains(&Action::Delete {
        resource: 0,
        name: "a".into()
    }));
    assert!(actions.contains(&Action::Delete {
        resource: 2,
        name: "s".into()
    }));
    assert!(!actions.iter().any(|a| matches!(a, Action::Finalize)));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::ForceDelete { .. }))
    );
    let Some(Action::SetConditions(c)) = actions
        .iter()
        .find(|a| matches!(a, Action::SetConditions(_)))
    else {
        panic!("conditions expected: {actions:?}");
    };
    let remaining = c
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .unwrap();
    assert_eq!(remaining.status, "True");
    assert_eq!(remaining.reason, "SomeResourcesRemain");
    assert_eq!(
        remaining.message,
        "Some resources are remaining: configmaps has 1 resource instances, pods has 1 resource instances, services has 1 resource instances"
    );
    let fin = c
        .iter()
        .find(|c| c.type_ == "NamespaceFinalizersRemaining")
        .unwrap();
    assert_eq!(fin.status, "True");
    assert_eq!(
        fin.message,
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
}

#[test]
fn bound_pod_is_force_deleted_only_after_its_grace_period() {
    let ns = terminating();
    let mut pod = item(1, "pods", "p");
    pod.bound_pod = true;
    pod.deletion_timestamp = Some(t(30));
    let early = reconcile(&ns, std::slice::from_ref(&pod), t(29));
    assert!(
        !early
            .iter()
            .any(|a| matches!(a, Action::ForceDelete { .. }))
    );
    let late = reconcile(&ns, std::slice::from_ref(&pod), t(30));
    assert!(late.contains(&Action::ForceDelete {
        resource: 1,
        name: "p".into()
    }));
    // An unbound pod marked for deletion is the API server's to finish, not ours.
    pod.bound_pod = false;
    assert!(
        !reconcile(&ns, &[pod], t(60))
            .iter()
            .any(|a| matches!(a, Action::ForceDelete { .. }))
    );
}

#[test]
fn empty_namespace_reports_all_clear_and_finalizes() {
    let mut ns = terminating();
    let actions = reconcile(&ns, &[], t(1));
    assert_eq!(actions.last(), Some(&Action::Finalize));
    apply_conditions(&mut ns, &actions);
    assert!(ns.conditions.iter().all(|(_, s, _, _)| s == "False"));
    // Resync with conditions already reported: finalize again (level-triggered), no status write.
    assert_eq!(reconcile(&ns, &[], t(2)), vec![Action::Finalize]);
}

#[test]
fn resync_with_nothing_changed_repeats_no_writes() {
    let mut ns = terminating();
    let mut a = item(0, "configmaps", "a");
    let first = reconcile(&ns, std::slice::from_ref(&a), t(1));
    apply_conditions(&mut ns, &first);
    a.deletion_timestamp = Some(t(1));
    a.finalizers = vec!["example.com/hold".into()];
    let second = reconcile(&ns, std::slice::from_ref(&a), t(2));
    apply_conditions(&mut ns, &second);
    assert!(reconcile(&ns, &[a], t(3)).is_empty());
}

use super::{Action, Node, OwnerRef, reconcile};

fn node(uid: &str, owners: &[(&str, bool)]) -> Node {
    Node {
        uid: uid.into(),
        owners: owners
            .iter()
            .map(|(u, b)| OwnerRef {
                uid: (*u).into(),
                block_owner_deletion: *b,
            })
            .collect(),
        finalizers: Vec::new(),
        deleting: false,
    }
}

fn deleting(mut n: Node, finalizer: &str) -> Node {
    n.deleting = true;
    n.finalizers.push(finalizer.into());
    n
}

#[test]
fn live_owners_and_ownerless_objects_need_nothing() {
    let nodes = [node("svc", &[]), node("cm", &[("svc", false)])];
    assert!(reconcile(&nodes).is_empty());
}

#[test]
fn dependent_of_a_vanished_owner_is_deleted() {
    let nodes = [
        node("cm", &[("gone", false)]),
        node("other", &[("gone2", true), ("x", false)]),
    ];
    let actions = reconcile(&nodes);
    assert!(actions.contains(&Action::Delete {
        uid: "cm".into(),
        foreground: false
    }));
    // Only when every owner is gone.
    let nodes = [
        node("x", &[]),
        node("other", &[("gone", true), ("x", false)]),
    ];
    assert!(reconcile(&nodes).is_empty());
}

#[test]
fn foreground_deletes_dependents_first_then_drops_the_finalizer() {
    let owner = deleting(node("deploy", &[]), "foregroundDeletion");
    let rs = node("rs", &[("deploy", true)]);
    let pod = node("pod", &[("rs", true)]);
    let actions = reconcile(&[owner.clone(), rs.clone(), pod.clone()]);
    // The ReplicaSet has its own dependents, so the cascade continues in the foreground.
    assert_eq!(
        actions,
        vec![Action::Delete {
            uid: "rs".into(),
            foreground: true
        }]
    );
    // The ReplicaSet is now deleting and still blocks its owner.
    let rs_going = deleting(rs, "foregroundDeletion");
    let actions = reconcile(&[owner.clone(), rs_going, pod.clone()]);
    assert!(actions.contains(&Action::Delete {
        uid: "pod".into(),
        foreground: false
    }));
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, Action::RemoveFinalizer { uid, .. } if uid == "deploy"))
    );
    // With the blocking dependents gone, the finalizer goes.
    assert_eq!(
        reconcile(&[owner]),
        vec![Action::RemoveFinalizer {
            uid: "deploy".into(),
            finalizer: "foregroundDeletion"
        }]
    );
}

#[test]
fn foreground_spares_a_dependent_with_another_live_owner_and_ignores_non_blocking_ones() {
    let owner = deleting(node("a", &[]), "foregroundDeletion");
    let shared = node("shared", &[("a", false), ("b", false)]);
    let actions = reconcile(&[owner, node("b", &[]), shared]);
    assert_eq!(
        actions,
        vec![Action::RemoveFinalizer {
            uid: "a".into(),
            finalizer: "foregroundDeletion"
        }]
    );
}

#[test]
fn orphan_removes_owner_references_then_the_finalizer() {
    let owner = deleting(node("deploy", &[]), "orphan");
    let rs = node("rs", &[("deploy", true), ("other", false)]);
    assert_eq!(
        reconcile(&[owner.clone(), rs, node("other", &[])]),
        vec![Action::RemoveOwners {
            uid: "rs".into(),
            owners: vec!["deploy".into()]
        }]
    );
    assert_eq!(
        reconcile(&[owner, node("rs", &[("other", false)]), node("other", &[])]),
        vec![Action::RemoveFinalizer {
            uid: "deploy".into(),
            finalizer: "orphan"
        }]
    );
}

#[test]
fn resync_of_a_settled_graph_does_nothing() {
    let nodes = [
        node("deploy", &[]),
        node("rs", &[("deploy", true)]),
        node("pod", &[("rs", true)]),
        deleting(node("held", &[]), "example.com/x"),
    ];
    assert!(reconcile(&nodes).is_empty());
}

use serde_json::json;

use super::{DeleteOptions, deletion_finished, finalized, gc_finalizers};

fn opts(policy: Option<&str>, orphan: Option<bool>) -> DeleteOptions {
    DeleteOptions {
        propagation_policy: policy.map(str::to_owned),
        orphan_dependents: orphan,
        ..DeleteOptions::default()
    }
}

fn list(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn foreground_adds_its_finalizer_and_drops_orphan() {
    assert_eq!(
        gc_finalizers(
            &opts(Some("Foreground"), None),
            &list(&["a.io/x", "orphan"])
        ),
        Some(list(&["a.io/x", "foregroundDeletion"]))
    );
    // Already there: nothing to change.
    assert_eq!(
        gc_finalizers(
            &opts(Some("Foreground"), None),
            &list(&["foregroundDeletion"])
        ),
        None
    );
}

#[test]
fn orphan_policy_and_orphan_dependents_add_orphan() {
    assert_eq!(
        gc_finalizers(&opts(Some("Orphan"), None), &[]),
        Some(list(&["orphan"]))
    );
    assert_eq!(
        gc_finalizers(&opts(None, Some(true)), &list(&["foregroundDeletion"])),
        Some(list(&["orphan"]))
    );
}

#[test]
fn background_removes_gc_finalizers_and_no_preference_keeps_them() {
    assert_eq!(
        gc_finalizers(
            &opts(Some("Background"), None),
            &list(&["orphan", "a.io/x"])
        ),
        Some(list(&["a.io/x"]))
    );
    assert_eq!(gc_finalizers(&opts(Some("Background"), None), &[]), None);
    assert_eq!(gc_finalizers(&opts(None, None), &list(&["orphan"])), None);
    assert_eq!(
        gc_finalizers(&opts(None, Some(false)), &list(&["orphan"])),
        Some(vec![])
    );
}

#[test]
fn a_terminating_namespace_is_held_by_its_spec_finalizers() {
    let ns = |spec_finalizers: serde_json::Value| {
        json!({
            "metadata": {"name": "demo", "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"finalizers": spec_finalizers},
            "status": {"phase": "Terminating"},
        })
    };
    // A status write while the namespace controller works must not delete it.
    assert!(!deletion_finished("Namespace", &ns(json!(["kubernetes"]))));
    assert!(deletion_finished("Namespace", &ns(json!([]))));
    assert!(deletion_finished("Namespace", &ns(json!(null))));
    // Other kinds have no spec.finalizers to wait for.
    assert!(deletion_finished("ConfigMap", &ns(json!(["kubernetes"]))));
    let mut held = ns(json!([]));
    held["metadata"]["finalizers"] = json!(["orphan"]);
    assert!(!deletion_finished("Namespace", &held));
    let mut live = ns(json!([]));
    live["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("deletionTimestamp");
    assert!(!deletion_finished("Namespace", &live));
}

#[test]
fn finalize_changes_spec_finalizers_only_and_keeps_an_omitted_list_empty() {
    let current = json!({
        "metadata": {"name": "demo", "labels": {"a": "b"}},
        "spec": {"finalizers": ["kubernetes", "example.com/x"]},
        "status": {"phase": "Terminating"},
    });
    let sent = json!({"metadata": {"name": "demo"}, "spec": {}, "status": {"phase": "Active"}});
    let out = finalized(&current, &sent);
    assert_eq!(out["spec"]["finalizers"], json!([]));
    assert_eq!(out["status"]["phase"], "Terminating");
    assert_eq!(out["metadata"]["labels"]["a"], "b");
    let sent = json!({"spec": {"finalizers": ["example.com/x"]}});
    assert_eq!(
        finalized(&current, &sent)["spec"]["finalizers"],
        json!(["example.com/x"])
    );
}

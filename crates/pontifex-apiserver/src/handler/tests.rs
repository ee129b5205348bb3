use super::{DeleteOptions, gc_finalizers};

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

//! What the workload controllers share: label selectors, controller references, and the claim of
//! objects (adopt orphans that match, release owned ones that stopped matching), as upstream's
//! `ControllerRefManager`.
//!
//! Pure: no client. The loops turn [`Claim`]'s adopt/release lists into patches.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

/// Does `selector` select an object with `labels`? An empty selector selects everything, a missing one
/// nothing (`metav1.LabelSelectorAsSelector`). Unknown operators select nothing.
pub(crate) fn selects(selector: Option<&LabelSelector>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .and_then(|s| pontifex_api::selector::LabelSelector::from_api(s).ok())
        .is_some_and(|s| s.matches(labels))
}

/// Is `selector` empty, selecting every object?
pub(crate) fn selects_everything(selector: Option<&LabelSelector>) -> bool {
    selector.is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
            && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
    })
}

/// The controller reference (`controller: true`) of an object, if any.
pub(crate) fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// The owner reference a controller sets on what it creates or adopts.
pub(crate) fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The result of claiming: which objects are the owner's (including those adopted now), which orphans
/// to adopt and which owned objects to release.
#[derive(Debug)]
pub(crate) struct Claim<'a, T> {
    pub(crate) owned: Vec<&'a T>,
    pub(crate) adopt: Vec<&'a T>,
    pub(crate) release: Vec<&'a T>,
}

/// Claim `objects` for the owner `owner` with `selector` (upstream `ClaimObject`): objects controlled by
/// the owner and still selected are its; controlled but no longer selected are released (unless the
/// owner is being deleted); orphans selected are adopted (unless the owner or the orphan is being
/// deleted). Objects controlled by someone else are left alone.
pub(crate) fn claim<'a, T>(
    owner: &ObjectMeta,
    selector: Option<&LabelSelector>,
    objects: impl IntoIterator<Item = &'a T>,
    meta: impl Fn(&T) -> &ObjectMeta,
) -> Claim<'a, T> {
    let mut out = Claim {
        owned: Vec::new(),
        adopt: Vec::new(),
        release: Vec::new(),
    };
    let owner_uid = owner.uid.as_deref().unwrap_or_default();
    let owner_deleting = owner.deletion_timestamp.is_some();
    let empty = BTreeMap::new();
    for obj in objects {
        let m = meta(obj);
        let matches = selects(selector, m.labels.as_ref().unwrap_or(&empty));
        match controller_of(m) {
            Some(r) if r.uid == owner_uid => {
                if matches {
                    out.owned.push(obj);
                } else if !owner_deleting {
                    out.release.push(obj);
                }
            }
            Some(_) => {}
            None => {
                if matches && !owner_deleting && m.deletion_timestamp.is_none() {
                    out.owned.push(obj);
                    out.adopt.push(obj);
                }
            }
        }
    }
    out
}

/// The owner references of `meta` with `reference` added (adoption).
pub(crate) fn with_owner(meta: &ObjectMeta, reference: OwnerReference) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = meta
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != reference.uid)
        .cloned()
        .collect();
    refs.push(reference);
    refs
}

/// The owner references of `meta` without the one to `owner_uid` (release).
pub(crate) fn without_owner(meta: &ObjectMeta, owner_uid: &str) -> Vec<OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;

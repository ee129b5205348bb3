//! The garbage collector's decision (upstream `pkg/controller/garbagecollector`, simplified), without
//! a client: from a snapshot of every object's uid, ownerReferences, finalizers and deletion state,
//! which dependents to delete, which ownerReferences to drop and which GC finalizers to remove.

use std::collections::{BTreeMap, BTreeSet};

pub(crate) const FOREGROUND: &str = "foregroundDeletion";
pub(crate) const ORPHAN: &str = "orphan";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OwnerRef {
    pub(crate) uid: String,
    pub(crate) block_owner_deletion: bool,
}

/// One object of the cluster, as the garbage collector sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) uid: String,
    pub(crate) owners: Vec<OwnerRef>,
    pub(crate) finalizers: Vec<String>,
    /// `metadata.deletionTimestamp` is set.
    pub(crate) deleting: bool,
}

impl Node {
    fn has(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|f| f == finalizer)
    }

    /// Deleted with `propagationPolicy: Foreground`: waits for its blocking dependents.
    fn waiting_for_dependents(&self) -> bool {
        self.deleting && self.has(FOREGROUND)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delete the object. `foreground` when it has dependents of its own and is deleted on behalf of
    /// a foreground deletion, so the cascade goes on depth-first.
    Delete { uid: String, foreground: bool },
    /// Remove the ownerReferences to these owners (orphaning).
    RemoveOwners { uid: String, owners: Vec<String> },
    /// Remove a GC finalizer: the owner's dependents are dealt with.
    RemoveFinalizer {
        uid: String,
        finalizer: &'static str,
    },
}

/// Decide over the whole snapshot. Owners are matched by uid only: an owner that was deleted and
/// re-created under the same name is a different owner. The loop confirms with a live read that an
/// owner is really gone before acting on a [`Action::Delete`] of an orphan, because a snapshot may
/// lag behind a just-created owner.
pub(crate) fn reconcile(nodes: &[Node]) -> Vec<Action> {
    let by_uid: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.uid.as_str(), n)).collect();
    let mut dependents: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in nodes {
        for o in &n.owners {
            dependents.entry(o.uid.as_str()).or_default().push(n);
        }
    }
    let mut actions = Vec::new();
    let mut deleted: BTreeSet<&str> = BTreeSet::new();

    for owner in nodes.iter().filter(|n| n.deleting) {
        let deps = dependents
            .get(owner.uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if owner.has(ORPHAN) {
            // Orphan: cut every dependent loose, then let the owner go.
            for d in deps {
                actions.push(Action::RemoveOwners {
                    uid: d.uid.clone(),
                    owners: vec![owner.uid.clone()],
                });
            }
            if deps.is_empty() {
                actions.push(Action::RemoveFinalizer {
                    uid: owner.uid.clone(),
                    finalizer: ORPHAN,
                });
            }
            continue;
        }
        if owner.has(FOREGROUND) {
            // Foreground: delete the dependents whose other owners are gone or also going in the
            // foreground; the owner goes once no dependent blocks it any more.
            for d in deps {
                let others_gone = d.owners.iter().all(|o| {
                    o.uid == owner.uid
                        || by_uid
                            .get(o.uid.as_str())
                            .is_none_or(|n| n.waiting_for_dependents())
                });
                if !d.deleting && others_gone && deleted.insert(d.uid.as_str()) {
                    actions.push(Action::Delete {
                        uid: d.uid.clone(),
                        foreground: dependents.contains_key(d.uid.as_str()),
                    });
                }
            }
            let blocked = deps.iter().any(|d| {
                d.owners
                    .iter()
                    .any(|o| o.uid == owner.uid && o.block_owner_deletion)
            });
            if !blocked {
                actions.push(Action::RemoveFinalizer {
                    uid: owner.uid.clone(),
                    finalizer: FOREGROUND,
                });
            }
        }
    }

    // Background: a dependent all of whose owners are gone is deleted.
    for n in nodes {
        if n.deleting || n.owners.is_empty() || deleted.contains(n.uid.as_str()) {
            continue;
        }
        if n.owners
            .iter()
            .all(|o| !by_uid.contains_key(o.uid.as_str()))
        {
            deleted.insert(n.uid.as_str());
            actions.push(Action::Delete {
                uid: n.uid.clone(),
                foreground: false,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests;

//! The namespace deleter's decision (upstream `pkg/controller/namespace/deletion`), without a client:
//! from a terminating Namespace and what is still in it, which objects to delete, which conditions to
//! report, and whether to remove the `kubernetes` finalizer.

use std::collections::BTreeMap;

use jiff::Timestamp;

/// The finalizer the namespace controller owns in `spec.finalizers`.
pub(crate) const FINALIZER: &str = "kubernetes";

/// One object still in the namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    /// Index of its resource in the caller's resource list.
    pub(crate) resource: usize,
    /// `pods`, `deployments.apps`: how conditions name the resource.
    pub(crate) group_resource: String,
    pub(crate) name: String,
    pub(crate) deletion_timestamp: Option<Timestamp>,
    pub(crate) finalizers: Vec<String>,
    /// A Pod bound to a node: the API server deletes it gracefully and waits for the node's agent.
    pub(crate) bound_pod: bool,
}

/// One of the five upstream deletion conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) type_: &'static str,
    pub(crate) status: &'static str,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delete the object (background propagation).
    Delete { resource: usize, name: String },
    /// Delete a pod now (grace period 0): see [`reconcile`] for why.
    ForceDelete { resource: usize, name: String },
    /// Replace `status.conditions` (only when they differ from the current ones).
    SetConditions(Vec<Condition>),
    /// Remove `kubernetes` from `spec.finalizers` through the `finalize` subresource.
    Finalize,
}

/// What the Namespace looks like now.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observed {
    pub(crate) deletion_timestamp: Option<Timestamp>,
    pub(crate) spec_finalizers: Vec<String>,
    /// `(type, status, reason, message)` of the current conditions.
    pub(crate) conditions: Vec<(String, String, String, String)>,
}

/// Decide for one namespace. Nothing unless it is terminating and still carries our finalizer.
///
/// Pods bound to a node are deleted gracefully by the API server and, in Kubernetes, finished by the
/// kubelet. pontifex has no node agent yet, so such a pod would hold the namespace forever; once its
/// grace period has run out (`deletionTimestamp <= now`) it is force-deleted here, as the kubelet would
/// have after killing its containers. Pods still inside their grace period are left alone.
pub(crate) fn reconcile(ns: &Observed, content: &[Item], now: Timestamp) -> Vec<Action> {
    if ns.deletion_timestamp.is_none() || !ns.spec_finalizers.iter().any(|f| f == FINALIZER) {
        return Vec::new();
    }
    let mut actions = Vec::new();
    for item in content {
        match item.deletion_timestamp {
            None => actions.push(Action::Delete {
                resource: item.resource,
                name: item.name.clone(),
            }),
            Some(t) if item.bound_pod && t <= now => actions.push(Action::ForceDelete {
                resource: item.resource,
                name: item.name.clone(),
            }),
            Some(_) => {}
        }
    }
    let conditions = conditions(content);
    let same = conditions.len() == ns.conditions.len()
        && conditions.iter().all(|c| {
            ns.conditions.iter().any(|(t, s, r, m)| {
                t == c.type_ && s == c.status && r == c.reason && *m == c.message
            })
        });
    if !same {
        actions.push(Action::SetConditions(conditions));
    }
    if content.is_empty() {
        actions.push(Action::Finalize);
    }
    actions
}

/// The upstream conditions: `True` with a failure reason when something is wrong, `False` with the
/// all-clear reason otherwise. Discovery and content-deletion failures end the pass before this point
/// (the loop retries), so only the remaining-content conditions can be `True` here.
fn conditions(content: &[Item]) -> Vec<Condition> {
    let mut remaining: BTreeMap<&str, usize> = BTreeMap::new();
    let mut finalizers: BTreeMap<&str, usize> = BTreeMap::new();
    for item in content {
        *remaining.entry(item.group_resource.as_str()).or_default() += 1;
        for f in &item.finalizers {
            *finalizers.entry(f.as_str()).or_default() += 1;
        }
    }
    let ok = |type_, reason, message: &str| Condition {
        type_,
        status: "False",
        reason,
        message: message.to_owned(),
    };
    let mut out = vec![
        ok(
            "NamespaceDeletionDiscoveryFailure",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        ok(
            "NamespaceDeletionGroupVersionParsingFailure",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        ok(
            "NamespaceDeletionContentFailure",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
    ];
    out.push(if remaining.is_empty() {
        ok(
            "NamespaceContentRemaining",
            "ContentRemoved",
            "All content successfully removed",
        )
    } else {
        let list: Vec<String> = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        Condition {
            type_: "NamespaceContentRemaining",
            status: "True",
            reason: "SomeResourcesRemain",
            message: format!("Some resources are remaining: {}", list.join(", ")),
        }
    });
    out.push(if finalizers.is_empty() {
        ok(
            "NamespaceFinalizersRemaining",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    } else {
        let list: Vec<String> = finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        Condition {
            type_: "NamespaceFinalizersRemaining",
            status: "True",
            reason: "SomeFinalizersRemain",
            message: format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
        }
    });
    out
}

#[cfg(test)]
mod tests;

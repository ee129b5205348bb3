//! Which node each pending pod goes to: filter the nodes as kube-scheduler's default plugins do
//! (NodeUnschedulable, TaintToleration, NodeAffinity), then spread: fewest pods of the same owner (or
//! the same labels), then fewest pods overall, then a tie-break passed in.
//!
//! Not here: resources (requests vs allocatable), host ports, volumes, pod (anti-)affinity,
//! topology spread, preemption, priorities. A node that is not Ready counts as carrying the taint the
//! node lifecycle controller would give it (`node.kubernetes.io/not-ready` or `.../unreachable`,
//! NoSchedule), which is how upstream's scheduler comes to avoid it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodCondition, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// What the loop should do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// POST the pod's `binding` subresource; then record `Scheduled`.
    Bind {
        namespace: String,
        name: String,
        node: String,
    },
    /// Write the pod's conditions (PodScheduled=False, Unschedulable) and record `FailedScheduling`.
    Unschedulable {
        namespace: String,
        name: String,
        conditions: Vec<PodCondition>,
        message: String,
    },
}

/// Why one node does not fit, in kube-scheduler's words.
const UNSCHEDULABLE: &str = "node(s) were unschedulable";
const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";

/// One decision per pending pod, in creation order; each binding counts for the pods after it.
pub(crate) fn schedule(nodes: &[Node], pods: &[Pod], tie_break: u64, now: Time) -> Vec<Action> {
    let mut nodes: Vec<&Node> = nodes.iter().collect();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    // (node, group) → pods, and node → pods, over the pods already placed and alive.
    let mut per_group: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods.iter().filter(|p| !terminal(p)) {
        if let Some(n) = bound_node(p) {
            *per_node.entry(n.to_owned()).or_default() += 1;
            if let Some(g) = group(p) {
                *per_group.entry((n.to_owned(), g)).or_default() += 1;
            }
        }
    }
    let mut pending: Vec<&Pod> = pods.iter().filter(|p| is_pending(p)).collect();
    pending.sort_by(|a, b| {
        let key = |p: &Pod| {
            (
                p.metadata.creation_timestamp.as_ref().map(|t| t.0),
                p.metadata.namespace.clone(),
                p.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut out = Vec::new();
    for pod in pending {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut fit = Vec::new();
        for node in &nodes {
            match filter(pod, node) {
                Ok(()) => fit.push(*node),
                Err(reason) => *reasons.entry(reason).or_default() += 1,
            }
        }
        if fit.is_empty() {
            let message = fit_error(nodes.len(), &reasons);
            if let Some(conditions) = unschedulable_conditions(pod, &message, &now) {
                out.push(Action::Unschedulable {
                    namespace,
                    name,
                    conditions,
                    message,
                });
            }
            continue;
        }
        let g = group(pod);
        let n = fit.len();
        let rank = |i: usize, node: &Node| {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let same = g
                .as_ref()
                .and_then(|g| per_group.get(&(node_name.clone(), g.clone())))
                .copied()
                .unwrap_or(0);
            let all = per_node.get(&node_name).copied().unwrap_or(0);
            // The tie-break rotates the (name-sorted) candidates.
            let rotated = (i + n - usize::try_from(tie_break % n as u64).unwrap_or(0)) % n;
            (same, all, rotated)
        };
        let best = fit
            .iter()
            .enumerate()
            .min_by_key(|(i, node)| rank(*i, node))
            .map(|(_, node)| node.metadata.name.clone().unwrap_or_default())
            .expect("at least one node fits");
        *per_node.entry(best.clone()).or_default() += 1;
        if let Some(g) = g {
            *per_group.entry((best.clone(), g)).or_default() += 1;
        }
        out.push(Action::Bind {
            namespace,
            name,
            node: best,
        });
    }
    out
}

/// The upstream FitError message: counts per reason, sorted as strings, then what preemption says
/// (it cannot help: every reason here is one that evicting pods does not change).
pub(crate) fn fit_error(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{total} nodes are available:");
    if !parts.is_empty() {
        msg.push_str(&format!(" {}.", parts.join(", ")));
    }
    msg.push_str(&format!(
        " preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
    ));
    msg
}

fn is_pending(p: &Pod) -> bool {
    let spec = p.spec.as_ref();
    bound_node(p).is_none()
        && p.metadata.deletion_timestamp.is_none()
        && !terminal(p)
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER)
}

fn bound_node(p: &Pod) -> Option<&str> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Pods that should spread from each other: the same controller, or else the same (non-empty) labels.
fn group(p: &Pod) -> Option<String> {
    if let Some(owner) = p
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
    {
        return Some(format!("owner:{}", owner.uid));
    }
    let labels = p.metadata.labels.as_ref().filter(|l| !l.is_empty())?;
    let ns = p.metadata.namespace.as_deref().unwrap_or_default();
    Some(format!("labels:{ns}:{labels:?}"))
}

/// Whether `pod` may run on `node`; the first failing plugin's reason otherwise.
pub(crate) fn filter(pod: &Pod, node: &Node) -> Result<(), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.unwrap_or_default();
    let node_spec = node.spec.clone().unwrap_or_default();
    // NodeUnschedulable: a cordoned node, unless the pod tolerates the unschedulable taint.
    if node_spec.unschedulable == Some(true) {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(UNSCHEDULABLE.into());
        }
    }
    // TaintToleration: NoSchedule and NoExecute taints must all be tolerated.
    let mut taints = node_spec.taints.unwrap_or_default();
    if let Some(t) = condition_taint(node) {
        taints.push(t);
    }
    for taint in taints
        .iter()
        .filter(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute"))
    {
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Err(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint.key,
                taint.value.as_deref().unwrap_or_default()
            ));
        }
    }
    // NodeAffinity: nodeSelector and required node affinity.
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if let Some(sel) = &spec.node_selector
        && sel.iter().any(|(k, v)| labels.get(k) != Some(v))
    {
        return Err(AFFINITY.into());
    }
    if let Some(terms) = spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|a| a.required_during_scheduling_ignored_during_execution)
        .map(|r| r.node_selector_terms)
    {
        let name = node.metadata.name.clone().unwrap_or_default();
        if !terms.iter().any(|t| term_matches(t, &labels, &name)) {
            return Err(AFFINITY.into());
        }
    }
    Ok(())
}

/// The taint the node lifecycle controller puts on a node whose Ready condition is not True.
fn condition_taint(node: &Node) -> Option<Taint> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    let key = match ready.map(|c| c.status.as_str()) {
        Some("True") => return None,
        Some("False") => "node.kubernetes.io/not-ready",
        _ => "node.kubernetes.io/unreachable",
    };
    Some(Taint {
        key: key.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    })
}

/// Upstream's `ToleratesTaint`: the effect matches (or is empty), the key matches (an empty key
/// with Exists matches every key), and the value matches for Equal (the default operator).
pub(crate) fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or_default() {
        "" | "Equal" => {
            t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        "Exists" => true,
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    // An empty term matches nothing, as upstream.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement(r, Some(name)))
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(int), values.first().and_then(|b| int(b)))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The pod's conditions with PodScheduled=False/Unschedulable, or None when they already say so.
fn unschedulable_conditions(pod: &Pod, message: &str, now: &Time) -> Option<Vec<PodCondition>> {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let wanted = |c: &PodCondition| {
        c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
            && c.message.as_deref() == Some(message)
    };
    match conditions.iter_mut().find(|c| c.type_ == "PodScheduled") {
        Some(c) if wanted(c) => return None,
        Some(c) => {
            if c.status != "False" {
                c.last_transition_time = Some(now.clone());
            }
            c.status = "False".into();
            c.reason = Some("Unschedulable".into());
            c.message = Some(message.into());
        }
        None => conditions.push(PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(now.clone()),
            ..PodCondition::default()
        }),
    }
    Some(conditions)
}

#[cfg(test)]
mod tests;

//! Node health from heartbeats: a node whose newest heartbeat (its `kube-node-lease` Lease's
//! `renewTime`, its Ready condition's `lastHeartbeatTime`, or its creation) is older than
//! `--node-monitor-grace-period` goes Ready=Unknown (`NodeStatusUnknown`, "Kubelet stopped posting
//! node status."), as kube-controller-manager's node lifecycle controller does; and the pods on a
//! node that is not Ready get their Ready condition False (upstream's `MarkPodsNotReady`), so their
//! endpoints leave the EndpointSlices.
//!
//! Deviation: upstream leaves setting Ready=True back to the kubelet. Pontifex's test nodes may only
//! renew a Lease, so when a node we marked Unknown renews its Lease again, we set Ready=True
//! (`KubeletReady`) ourselves. A Ready=False written by a real node agent is never overridden.
//!
//! Not here: the unreachable/not-ready taints and taint-based eviction, zones and disruption modes.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub(crate) const UNKNOWN_REASON: &str = "NodeStatusUnknown";
pub(crate) const UNKNOWN_MESSAGE: &str = "Kubelet stopped posting node status.";
const NEVER_REASON: &str = "NodeStatusNeverUpdated";
const NEVER_MESSAGE: &str = "Kubelet never posted node status.";

/// The conditions the controller flips to Unknown with Ready, and what a healthy kubelet says.
const PRESSURE: [(&str, &str, &str); 3] = [
    (
        "MemoryPressure",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
];

/// What the loop should do.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Write the node's conditions, and record a `Node <name> status is now: <change>` event.
    NodeStatus {
        node: String,
        conditions: Vec<NodeCondition>,
        change: &'static str,
    },
    /// Write the pod's conditions (Ready=False) and record `NodeNotReady` "Node is not ready".
    PodNotReady {
        namespace: String,
        name: String,
        conditions: Vec<PodCondition>,
    },
}

/// Decide for every node. `leases` maps node name to its Lease's renewTime.
pub(crate) fn reconcile(
    nodes: &[Node],
    leases: &BTreeMap<String, Timestamp>,
    pods: &[Pod],
    now: Timestamp,
    grace: Duration,
) -> Vec<Action> {
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    let fresh = |t: Timestamp| now.duration_since(t) <= grace;
    let mut out = Vec::new();
    let mut not_ready: Vec<String> = Vec::new();
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    for node in sorted {
        let name = node.metadata.name.clone().unwrap_or_default();
        let conditions = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let ready = conditions.iter().find(|c| c.type_ == "Ready");
        let lease = leases.get(&name).copied();
        let latest = [
            node.metadata.creation_timestamp.as_ref().map(|t| t.0),
            lease,
            ready
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0),
        ]
        .into_iter()
        .flatten()
        .max();
        let stale = latest.is_some_and(|t| !fresh(t));
        let status = ready.map(|c| c.status.clone());
        let status = status.as_deref();
        let ours = ready
            .is_some_and(|c| matches!(c.reason.as_deref(), Some(UNKNOWN_REASON | NEVER_REASON)));
        let had_ready = ready.is_some();
        if stale && status != Some("Unknown") {
            out.push(Action::NodeStatus {
                node: name.clone(),
                conditions: unknown(conditions, had_ready, now),
                change: "NodeNotReady",
            });
            not_ready.push(name);
        } else if !stale && status == Some("Unknown") && ours && lease.is_some_and(fresh) {
            out.push(Action::NodeStatus {
                node: name.clone(),
                conditions: recovered(conditions, now),
                change: "NodeReady",
            });
        } else if status != Some("True") && had_ready {
            not_ready.push(name);
        }
    }
    let mut pods: Vec<&Pod> = pods.iter().collect();
    pods.sort_by(|a, b| {
        (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name))
    });
    for pod in pods {
        let on = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if !on.is_some_and(|n| not_ready.iter().any(|x| x == n)) {
            continue;
        }
        let mut conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        let Some(ready) = conditions.iter_mut().find(|c| c.type_ == "Ready") else {
            continue;
        };
        if ready.status == "False" {
            continue;
        }
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(now));
        out.push(Action::PodNotReady {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            conditions,
        });
    }
    out
}

/// Ready and the pressure conditions go Unknown; a node that never posted Ready gets one.
fn unknown(
    mut conditions: Vec<NodeCondition>,
    had_ready: bool,
    now: Timestamp,
) -> Vec<NodeCondition> {
    for c in &mut conditions {
        if c.type_ == "Ready" || PRESSURE.iter().any(|(t, _, _)| *t == c.type_) {
            if c.status != "Unknown" {
                c.last_transition_time = Some(Time(now));
            }
            c.status = "Unknown".into();
            c.reason = Some(UNKNOWN_REASON.into());
            c.message = Some(UNKNOWN_MESSAGE.into());
        }
    }
    if !had_ready {
        conditions.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some(NEVER_REASON.into()),
            message: Some(NEVER_MESSAGE.into()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(Time(now)),
        });
    }
    conditions
}

/// What a healthy kubelet would post: Ready=True, no pressure.
fn recovered(mut conditions: Vec<NodeCondition>, now: Timestamp) -> Vec<NodeCondition> {
    for c in &mut conditions {
        if !matches!(c.reason.as_deref(), Some(UNKNOWN_REASON | NEVER_REASON)) {
            continue;
        }
        let (status, reason, message) = if c.type_ == "Ready" {
            ("True", "KubeletReady", "kubelet is posting ready status")
        } else if let Some((_, r, m)) = PRESSURE.iter().find(|(t, _, _)| *t == c.type_) {
            ("False", *r, *m)
        } else {
            continue;
        };
        c.status = status.into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
        c.last_heartbeat_time = Some(Time(now));
        c.last_transition_time = Some(Time(now));
    }
    conditions
}

#[cfg(test)]
mod tests;

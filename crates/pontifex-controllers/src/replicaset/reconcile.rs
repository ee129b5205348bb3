//! The ReplicaSet decision, as upstream `pkg/controller/replicaset`: claim pods, decide how many to
//! create or which to delete, and compute the status.
//!
//! Pure: the loop passes the ReplicaSet, the pods of its namespace and `now`; it applies the
//! [`Plan`] and then asks [`status`] for the status with the outcome of its creates and deletes.
//! Pod names come from `generateName` on the server, so nothing here is random.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use crate::ownership::{self, Claim};

/// Upstream `burstReplicas`: at most this many creates or deletes per sync.
pub(crate) const BURST_REPLICAS: usize = 500;

/// What one sync of a ReplicaSet does to its pods.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    /// Pods to adopt (orphans the selector matches) and to release (owned pods it no longer matches).
    pub(crate) claim: Claim<'a, Pod>,
    /// The active pods the ReplicaSet owns after the claim: not terminal, not being deleted.
    pub(crate) active: Vec<&'a Pod>,
    /// How many pods to create from [`Plan::template`].
    pub(crate) create: usize,
    /// The pod to create (with `generateName`), when `create > 0`.
    pub(crate) template: Option<Pod>,
    /// The pods to delete, best victims first.
    pub(crate) delete: Vec<&'a Pod>,
}

/// Why creating or deleting pods failed, for the `ReplicaFailure` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// `FailedCreate` or `FailedDelete`.
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// Decide what to do for `rs` given the pods of its namespace.
pub(crate) fn plan<'a>(rs: &ReplicaSet, pods: &'a [&'a Pod]) -> Plan<'a> {
    let spec = rs.spec.as_ref();
    let selector = spec.map(|s| &s.selector);
    let claim = ownership::claim(&rs.metadata, selector, pods.iter().copied(), |p| {
        &p.metadata
    });
    let active: Vec<&Pod> = claim
        .owned
        .iter()
        .copied()
        .filter(|p| is_active(p))
        .collect();
    let want = usize::try_from(spec.and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    let mut out = Plan {
        claim,
        active,
        create: 0,
        template: None,
        delete: Vec::new(),
    };
    // A ReplicaSet being deleted keeps its pods as they are; the garbage collector removes them.
    if rs.metadata.deletion_timestamp.is_some() {
        return out;
    }
    let have = out.active.len();
    if have < want {
        out.create = (want - have).min(BURST_REPLICAS);
        out.template = Some(pod_from_template(rs));
    } else if have > want {
        let n = (have - want).min(BURST_REPLICAS);
        let mut ranked = out.active.clone();
        ranked.sort_by(|a, b| deletion_order(a, b, &out.active));
        ranked.truncate(n);
        out.delete = ranked;
    }
    out
}

/// A pod counts toward replicas unless it finished or is being deleted (`FilterActivePods`).
pub(crate) fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod a ReplicaSet creates: its template's labels, annotations, finalizers and spec, a
/// `generateName` of `<rs>-`, and a controller reference to the ReplicaSet.
pub(crate) fn pod_from_template(rs: &ReplicaSet) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone());
    let tmeta = template
        .as_ref()
        .and_then(|t| t.metadata.clone())
        .unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", rs.metadata.name.as_deref().unwrap_or("rs"))),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![ownership::controller_ref(
                "apps/v1",
                "ReplicaSet",
                &rs.metadata,
            )]),
            ..ObjectMeta::default()
        },
        spec: template.and_then(|t| t.spec),
        status: None,
    }
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Is the pod's Ready condition True?
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When a ready pod became ready (the Ready condition's last transition).
fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Is the pod available: ready for at least `min_ready` (`podutil.IsPodAvailable`)?
pub(crate) fn is_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready.is_zero() {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since.checked_add(min_ready).is_ok_and(|until| until <= now),
        None => false,
    }
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn node(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// How many of `related` share this pod's node (upstream's rank: doubled-up pods go first).
fn colocated(pod: &Pod, related: &[&Pod]) -> usize {
    let n = node(pod);
    if n.is_empty() {
        return 0;
    }
    related.iter().filter(|p| node(p) == n).count()
}

/// Upstream `ActivePodsWithRanks.Less`: which pod to delete first. Unscheduled before scheduled;
/// Pending before Unknown before Running; not ready before ready; lower deletion cost first; more
/// pods on the same node first; ready for a shorter time first; more restarts first; newer first.
/// Times are compared exactly (upstream buckets them on a log scale).
pub(crate) fn deletion_order(a: &Pod, b: &Pod, related: &[&Pod]) -> Ordering {
    let assigned = |p: &Pod| !node(p).is_empty();
    let key_ready = |p: &Pod| is_ready(p);
    assigned(a)
        .cmp(&assigned(b))
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        .then_with(|| key_ready(a).cmp(&key_ready(b)))
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        .then_with(|| colocated(b, related).cmp(&colocated(a, related)))
        .then_with(|| {
            // Ready longer ago = kept longer: a later (newer) ready time goes first.
            match (ready_since(a), ready_since(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        })
        .then_with(|| restarts(b).cmp(&restarts(a)))
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            match (created(a), created(b)) {
                (Some(x), Some(y)) => y.cmp(&x),
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            }
        })
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// The status of `rs` given its active pods and the outcome of this sync's creates and deletes
/// (`calculateStatus`). The `ReplicaFailure` condition is added on a failure and removed once a sync
/// succeeds; an existing one is kept as it is (with its transition time).
pub(crate) fn status(
    rs: &ReplicaSet,
    active: &[&Pod],
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let min_ready = min_ready_seconds(rs);
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let fully_labeled = count(&|p: &Pod| {
        let labels = p.metadata.labels.as_ref();
        template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    });
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
    let existing = conditions.iter().position(|c| c.type_ == "ReplicaFailure");
    match (failure, existing) {
        (Some(f), None) => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".to_owned(),
            status: "True".to_owned(),
            reason: Some(f.reason.to_owned()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }),
        (None, Some(i)) => {
            conditions.remove(i);
        }
        _ => {}
    }
    ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: Some(fully_labeled),
        ready_replicas: Some(count(&is_ready)),
        available_replicas: Some(count(&|p: &Pod| is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Does `new` differ from the stored status (absent counts read as zero)?
pub(crate) fn status_changed(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let z = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || z(old.fully_labeled_replicas) != z(new.fully_labeled_replicas)
        || z(old.ready_replicas) != z(new.ready_replicas)
        || z(old.available_replicas) != z(new.available_replicas)
        || old.observed_generation != new.observed_generation
        || old.conditions.unwrap_or_default() != new.conditions.clone().unwrap_or_default()
}

/// `spec.minReadySeconds` as a duration.
pub(crate) fn min_ready_seconds(rs: &ReplicaSet) -> Duration {
    let secs = rs
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// When to look again because a ready pod becomes available only after `minReadySeconds`.
pub(crate) fn requeue_after(rs: &ReplicaSet, active: &[&Pod], now: Timestamp) -> Option<Duration> {
    let min_ready = min_ready_seconds(rs);
    if min_ready.is_zero() {
        return None;
    }
    active
        .iter()
        .filter(|p| is_ready(p) && !is_available(p, min_ready, now))
        .filter_map(|p| ready_since(p))
        .filter_map(|since| since.checked_add(min_ready).ok())
        .map(|until| {
            Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO)
                + Duration::from_millis(100)
        })
        .min()
}

#[cfg(test)]
mod tests;

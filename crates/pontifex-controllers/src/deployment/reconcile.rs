//! The Deployment decision, as upstream `pkg/controller/deployment`: claim ReplicaSets, find or create
//! the new one (named `<deployment>-<pod-template-hash>`), scale it and the old ones for a rolling
//! update or a Recreate, keep `revisionHistoryLimit` old ones, and compute the status and conditions.
//!
//! Pure: [`reconcile`] takes the Deployment, the ReplicaSets and Pods of its namespace and `now`, and
//! returns the ordered [`Action`]s one upstream sync would perform. Like upstream, later steps of a
//! sync see the effect of earlier ones (a ReplicaSet created then counted in the status), because the
//! function applies its own actions to its working copies.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::ownership;

pub(crate) const HASH_LABEL: &str = "pod-template-hash";
pub(crate) const REVISION: &str = "deployment.kubernetes.io/revision";
pub(crate) const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub(crate) const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub(crate) const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";

/// One step of a sync, in order. The loop stops at the first failure and retries later.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// Set the ReplicaSet's owner references (adopt an orphan or release one).
    SetOwners {
        name: String,
        uid: String,
        resource_version: Option<String>,
        owner_references: Vec<OwnerReference>,
    },
    CreateReplicaSet(ReplicaSet),
    /// Replace the ReplicaSet (its `resourceVersion` guards against a stale cache).
    UpdateReplicaSet(ReplicaSet),
    DeleteReplicaSet {
        name: String,
        uid: String,
    },
    /// Set the Deployment's `deployment.kubernetes.io/revision` annotation.
    AnnotateRevision(String),
    /// Record an Event on the Deployment.
    Event {
        type_: &'static str,
        reason: &'static str,
        message: String,
    },
    /// Write the whole status.
    Status(DeploymentStatus),
}

/// The actions of one sync, and when to sync again even if nothing changes (a progress deadline).
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) actions: Vec<Action>,
    pub(crate) requeue_after: Option<Duration>,
}

/// FNV-32a of the template's JSON form and, when set, the collision count (as 4 little-endian
/// bytes), written as decimal and mapped through `rand.SafeEncodeString`'s alphabet — upstream
/// `controller.ComputeHash`, except that upstream hashes a Go dump of the object, not its JSON, so
/// the values differ from a real cluster's.
pub(crate) fn pod_template_hash(
    template: &PodTemplateSpec,
    collision_count: Option<i32>,
) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        feed(&c.cast_unsigned().to_le_bytes());
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// The template without the `pod-template-hash` label, empty labels as none.
fn without_hash(t: Option<&PodTemplateSpec>) -> PodTemplateSpec {
    let mut t = t.cloned().unwrap_or_default();
    let meta = t.metadata.get_or_insert_default();
    if let Some(l) = meta.labels.as_mut() {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            meta.labels = None;
        }
    }
    for m in [&mut meta.annotations] {
        if m.as_ref().is_some_and(BTreeMap::is_empty) {
            *m = None;
        }
    }
    t
}

/// Do two templates differ only in the `pod-template-hash` label (`EqualIgnoreHash`)?
pub(crate) fn equal_ignore_hash(a: Option<&PodTemplateSpec>, b: Option<&PodTemplateSpec>) -> bool {
    without_hash(a) == without_hash(b)
}

/// Resolve an int-or-percent against `total` (`GetScaledValueFromIntOrPercent`); a bad value is 0.
pub(crate) fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> i32 {
    match v {
        IntOrString::Int(i) => *i,
        IntOrString::String(s) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let x = p * i64::from(total);
            let r = if round_up {
                (x + 99).div_euclid(100)
            } else {
                x.div_euclid(100)
            };
            i32::try_from(r).unwrap_or(0)
        }
    }
}

fn desired(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        != Some("Recreate")
}

/// maxSurge and maxUnavailable resolved against replicas: surge rounds up, unavailable down, and both
/// zero means one unavailable (`ResolveFenceposts`).
pub(crate) fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".to_owned());
    let surge = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct);
    let unavailable = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&pct);
    let n = desired(d);
    let surge = scaled_value(surge, n, true);
    let unavailable = scaled_value(unavailable, n, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

/// The surge a rolling update allows (0 for Recreate).
pub(crate) fn max_surge(d: &Deployment) -> i32 {
    if is_rolling(d) { fenceposts(d).0 } else { 0 }
}

/// The unavailability a rolling update allows, at most the replicas (0 for Recreate).
pub(crate) fn max_unavailable(d: &Deployment) -> i32 {
    let n = desired(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d).1.min(n)
}

fn replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn set_replicas(rs: &mut ReplicaSet, n: i32) {
    rs.spec.get_or_insert_default().replicas = Some(n);
}

fn st<'a>(
    rs: &'a ReplicaSet,
) -> impl Fn(fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32) -> i32 + 'a {
    move |f| rs.status.as_ref().map_or(0, f)
}

fn status_replicas(rs: &ReplicaSet) -> i32 {
    st(rs)(|s| s.replicas)
}

fn available(rs: &ReplicaSet) -> i32 {
    st(rs)(|s| s.available_replicas.unwrap_or(0))
}

fn ready(rs: &ReplicaSet) -> i32 {
    st(rs)(|s| s.ready_replicas.unwrap_or(0))
}

fn annotation<'a>(m: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    m.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_annotation(m: &mut ObjectMeta, key: &str, value: String) {
    m.annotations
        .get_or_insert_default()
        .insert(key.to_owned(), value);
}

/// The revision annotation as a number (0 when missing or bad).
pub(crate) fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

fn name(rs: &ReplicaSet) -> String {
    rs.metadata.name.clone().unwrap_or_default()
}

/// A status with absent counts as zero and no empty condition list, for comparisons.
pub(crate) fn normalized(s: Option<&DeploymentStatus>) -> DeploymentStatus {
    let mut s = s.cloned().unwrap_or_default();
    for v in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
    ] {
        v.get_or_insert(0);
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s
}

fn condition<'a>(s: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    s.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream `SetDeploymentCondition`: same status and reason is no change; same status keeps the
/// transition time.
fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(s, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time.clone_from(&cur.last_transition_time);
        }
    }
    remove_condition(s, &c.type_);
    s.conditions.get_or_insert_default().push(c);
}

fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = s.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            s.conditions = None;
        }
    }
}

fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// All of a rollout is done (`DeploymentComplete`).
fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = desired(d);
    s.updated_replicas.unwrap_or(0) == n
        && s.replicas.unwrap_or(0) == n
        && s.available_replicas.unwrap_or(0) == n
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Something moved since `old` (`DeploymentProgressing`).
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let z = |v: Option<i32>| v.unwrap_or(0);
    let old_old = z(old.replicas) - z(old.updated_replicas);
    let new_old = z(new.replicas) - z(new.updated_replicas);
    z(new.updated_replicas) > z(old.updated_replicas)
        || new_old < old_old
        || z(new.ready_replicas) > z(old.ready_replicas)
        || z(new.available_replicas) > z(old.available_replicas)
}

struct Sync<'a> {
    d: &'a Deployment,
    all_in_namespace: &'a [&'a ReplicaSet],
    pods: &'a [&'a Pod],
    now: Timestamp,
    rss: Vec<ReplicaSet>,
    status: DeploymentStatus,
    revision: Option<String>,
    actions: Vec<Action>,
    requeue_after: Option<Duration>,
}

/// One sync of `d` (upstream `syncDeployment`).
pub(crate) fn reconcile(
    d: &Deployment,
    replica_sets: &[&ReplicaSet],
    pods: &[&Pod],
    now: Timestamp,
) -> Plan {
    let original = normalized(d.status.as_ref());
    let mut s = Sync {
        d,
        all_in_namespace: replica_sets,
        pods,
        now,
        rss: Vec::new(),
        status: original.clone(),
        revision: annotation(&d.metadata, REVISION).map(str::to_owned),
        actions: Vec::new(),
        requeue_after: None,
    };
    let selector = d.spec.as_ref().map(|sp| &sp.selector);
    if ownership::selects_everything(selector) {
        s.event(
            "Warning",
            "SelectingAll",
            "This deployment is selecting all pods. A non-empty selector is required.".to_owned(),
        );
        if s.status.observed_generation < d.metadata.generation {
            s.status.observed_generation = d.metadata.generation;
        }
    } else {
        s.claim();
        s.sync();
    }
    let mut actions = s.actions;
    if normalized(Some(&s.status)) != original {
        actions.push(Action::Status(s.status));
    }
    Plan {
        actions,
        requeue_after: s.requeue_after,
    }
}

impl Sync<'_> {
    fn event(&mut self, type_: &'static str, reason: &'static str, message: String) {
        self.actions.push(Action::Event {
            type_,
            reason,
            message,
        });
    }

    fn claim(&mut self) {
        let d = self.d;
        let selector = d.spec.as_ref().map(|s| &s.selector);
        let claim = ownership::claim(
            &d.metadata,
            selector,
            self.all_in_namespace.iter().copied(),
            |r| &r.metadata,
        );
        let owner_uid = d.metadata.uid.clone().unwrap_or_default();
        for rs in &claim.adopt {
            let refs = ownership::with_owner(
                &rs.metadata,
                ownership::controller_ref("apps/v1", "Deployment", &d.metadata),
            );
            self.actions.push(Action::SetOwners {
                name: name(rs),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
                resource_version: rs.metadata.resource_version.clone(),
                owner_references: refs,
            });
        }
        for rs in &claim.release {
            self.actions.push(Action::SetOwners {
                name: name(rs),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
                resource_version: rs.metadata.resource_version.clone(),
                owner_references: ownership::without_owner(&rs.metadata, &owner_uid),
            });
        }
        // Adopted ReplicaSets change resourceVersion when adopted; drop the one we know so that an
        // update in the same sync is not refused as stale (the loop fills in the new one).
        self.rss = claim.owned.into_iter().cloned().collect();
        self.rss.sort_by(by_creation);
    }

    fn sync(&mut self) {
        if self.d.metadata.deletion_timestamp.is_some() {
            let (new, _) = self.new_and_old(false);
            self.status = self.calculate_status(new);
            return;
        }
        self.check_paused_conditions();
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused || self.is_scaling_event() {
            self.scale_sync(paused);
        } else if is_rolling(self.d) {
            self.rollout_rolling();
        } else {
            self.rollout_recreate();
        }
    }

    /// Find the new ReplicaSet (the oldest whose template is the Deployment's), bring its
    /// annotations up to date, and with `create` make it when missing. Returns (new, old) indices.
    fn new_and_old(&mut self, create: bool) -> (Option<usize>, Vec<usize>) {
        let d = self.d;
        let template = d.spec.as_ref().map(|s| &s.template);
        let new = (0..self.rss.len()).find(|&i| {
            equal_ignore_hash(
                self.rss[i].spec.as_ref().and_then(|s| s.template.as_ref()),
                template,
            )
        });
        let old: Vec<usize> = (0..self.rss.len()).filter(|i| Some(*i) != new).collect();
        let max_old = old
            .iter()
            .map(|&i| revision(&self.rss[i]))
            .max()
            .unwrap_or(0);
        let new_revision = (max_old + 1).to_string();
        let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = new {
            let mut rs = self.rss[i].clone();
            let mut changed = set_new_rs_annotations(d, &mut rs, &new_revision, true);
            if rs
                .spec
                .as_ref()
                .and_then(|s| s.min_ready_seconds)
                .unwrap_or(0)
                != min_ready.unwrap_or(0)
            {
                rs.spec.get_or_insert_default().min_ready_seconds = min_ready;
                changed = true;
            }
            if changed {
                self.actions.push(Action::UpdateReplicaSet(rs.clone()));
                self.rss[i] = rs;
            }
            let rev = annotation(&self.rss[i].metadata, REVISION).map(str::to_owned);
            self.set_deployment_revision(rev);
            if progress_deadline(d).is_some() && condition(&self.status, "Progressing").is_none() {
                let msg = format!("Found new replica set {:?}", name(&self.rss[i]));
                let c = new_condition("Progressing", "True", "FoundNewReplicaSet", msg, self.now);
                set_condition(&mut self.status, c);
            }
            return (Some(i), old);
        }
        if !create {
            return (None, old);
        }
        let collision = self.status.collision_count;
        let Some(template) = template else {
            return (None, old);
        };
        let hash = pod_template_hash(template, collision);
        let rs_name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        if self
            .all_in_namespace
            .iter()
            .any(|r| r.metadata.name.as_deref() == Some(rs_name.as_str()))
        {
            // Another ReplicaSet has this name but not our template: a hash collision. Bump the
            // count so the next sync computes another name (upstream does the same).
            self.status.collision_count = Some(collision.unwrap_or(0) + 1);
            self.requeue_after = Some(Duration::ZERO);
            return (None, old);
        }
        let mut new_template = template.clone();
        new_template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default()
            .insert(HASH_LABEL.to_owned(), hash.clone());
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(HASH_LABEL.to_owned(), hash);
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: new_template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.labels.clone()),
                owner_references: Some(vec![ownership::controller_ref(
                    "apps/v1",
                    "Deployment",
                    &d.metadata,
                )]),
                ..ObjectMeta::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(new_template),
            }),
            status: None,
        };
        self.rss.push(rs.clone());
        let i = self.rss.len() - 1;
        let n = self.new_rs_new_replicas(i);
        set_replicas(&mut rs, n);
        set_new_rs_annotations(d, &mut rs, &new_revision, false);
        self.rss[i] = rs.clone();
        self.actions.push(Action::CreateReplicaSet(rs));
        if n > 0 {
            self.event(
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled up replica set {rs_name} to {n}"),
            );
        }
        self.set_deployment_revision(Some(new_revision));
        if progress_deadline(d).is_some() {
            let msg = format!("Created new replica set {rs_name:?}");
            let c = new_condition("Progressing", "True", "NewReplicaSetCreated", msg, self.now);
            set_condition(&mut self.status, c);
        }
        (Some(i), old)
    }

    fn set_deployment_revision(&mut self, rev: Option<String>) {
        if let Some(rev) = rev
            && self.revision.as_deref() != Some(rev.as_str())
        {
            self.revision = Some(rev.clone());
            self.actions.push(Action::AnnotateRevision(rev));
        }
    }

    /// How big the new ReplicaSet may be now (`NewRSNewReplicas`).
    fn new_rs_new_replicas(&self, new: usize) -> i32 {
        let n = desired(self.d);
        if !is_rolling(self.d) {
            return n;
        }
        let cur = replicas(&self.rss[new]);
        let surge = fenceposts(self.d).0;
        let total: i32 = self.rss.iter().map(replicas).sum();
        let max_total = n + surge;
        if total >= max_total {
            return cur;
        }
        cur + (max_total - total).min(n - cur)
    }

    /// Scale `rs` to `to`, refreshing its replica annotations (`scaleReplicaSetAndRecordEvent`).
    /// True when the size changed.
    fn scale(&mut self, i: usize, to: i32) -> bool {
        let d = self.d;
        let (want, max) = (desired(d), desired(d) + max_surge(d));
        let rs = &mut self.rss[i];
        let from = replicas(rs);
        let size = from != to;
        let ann = annotation(&rs.metadata, DESIRED_REPLICAS) != Some(want.to_string().as_str())
            || annotation(&rs.metadata, MAX_REPLICAS) != Some(max.to_string().as_str());
        if !size && !ann {
            return false;
        }
        set_replicas(rs, to);
        set_annotation(&mut rs.metadata, DESIRED_REPLICAS, want.to_string());
        set_annotation(&mut rs.metadata, MAX_REPLICAS, max.to_string());
        let rs = rs.clone();
        self.actions.push(Action::UpdateReplicaSet(rs.clone()));
        if size {
            let op = if to > from { "up" } else { "down" };
            self.event(
                "Normal",
                "ScalingReplicaSet",
                format!("Scaled {op} replica set {} to {to} from {from}", name(&rs)),
            );
        }
        size
    }

    fn calculate_status(&self, new: Option<usize>) -> DeploymentStatus {
        let d = self.d;
        let avail: i32 = self.rss.iter().map(available).sum();
        let total: i32 = self.rss.iter().map(replicas).sum();
        let mut s = DeploymentStatus {
            observed_generation: d.metadata.generation,
            replicas: Some(self.rss.iter().map(status_replicas).sum()),
            updated_replicas: Some(new.map_or(0, |i| status_replicas(&self.rss[i]))),
            ready_replicas: Some(self.rss.iter().map(ready).sum()),
            available_replicas: Some(avail),
            unavailable_replicas: Some((total - avail).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        let c = if avail >= desired(d) - max_unavailable(d) {
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".to_owned(),
                self.now,
            )
        } else {
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".to_owned(),
                self.now,
            )
        };
        set_condition(&mut s, c);
        s
    }

    /// The status with the Progressing condition of a rollout (`syncRolloutStatus`).
    fn sync_rollout_status(&mut self, new: Option<usize>) {
        let d = self.d;
        let mut s = self.calculate_status(new);
        let deadline = progress_deadline(d);
        if deadline.is_none() {
            remove_condition(&mut s, "Progressing");
        }
        let current = condition(&self.status, "Progressing").cloned();
        let is_complete = s.replicas == s.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let what = match new {
            Some(i) => format!("ReplicaSet {:?}", name(&self.rss[i])),
            None => format!("Deployment {:?}", d.metadata.name.as_deref().unwrap_or("")),
        };
        if let Some(deadline) = deadline.filter(|_| !is_complete) {
            if complete(d, &s) {
                let c = new_condition(
                    "Progressing",
                    "True",
                    "NewReplicaSetAvailable",
                    format!("{what} has successfully progressed."),
                    self.now,
                );
                set_condition(&mut s, c);
            } else if progressing(&self.status, &s) {
                let mut c = new_condition(
                    "Progressing",
                    "True",
                    "ReplicaSetUpdated",
                    format!("{what} is progressing."),
                    self.now,
                );
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time.clone_from(&cur.last_transition_time);
                    }
                    remove_condition(&mut s, "Progressing");
                }
                set_condition(&mut s, c);
            } else if let Some(cur) = condition(&s, "Progressing").cloned() {
                let reason = cur.reason.as_deref();
                let since = cur.last_update_time.as_ref().map_or(self.now, |t| t.0);
                let until = since
                    .checked_add(Duration::from_secs(u64::try_from(deadline).unwrap_or(0)))
                    .unwrap_or(self.now);
                if reason != Some("NewReplicaSetAvailable")
                    && reason != Some("ProgressDeadlineExceeded")
                    && until < self.now
                {
                    let c = new_condition(
                        "Progressing",
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("{what} has timed out progressing."),
                        self.now,
                    );
                    set_condition(&mut s, c);
                }
            }
            // A rollout in progress is looked at again when its deadline passes
            // (`requeueStuckDeployment`).
            if let Some(cur) = condition(&s, "Progressing") {
                let reason = cur.reason.as_deref();
                if cur.status == "True" && reason != Some("NewReplicaSetAvailable") {
                    let since = cur.last_update_time.as_ref().map_or(self.now, |t| t.0);
                    let until = since
                        .checked_add(Duration::from_secs(u64::try_from(deadline).unwrap_or(0)))
                        .unwrap_or(self.now);
                    let left = Duration::try_from(until.duration_since(self.now))
                        .unwrap_or(Duration::ZERO)
                        + Duration::from_secs(1);
                    self.requeue_after = Some(self.requeue_after.map_or(left, |r| r.min(left)));
                }
            }
        }
        // The first ReplicaFailure of the ReplicaSets (the new one first) becomes the Deployment's.
        let order = new
            .into_iter()
            .chain((0..self.rss.len()).filter(|i| Some(*i) != new));
        let failure = order
            .filter_map(|i| {
                self.rss[i]
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure")
                    .cloned()
            })
            .next();
        match failure {
            Some(f) => {
                let mut c = new_condition(
                    "ReplicaFailure",
                    &f.status,
                    f.reason.as_deref().unwrap_or(""),
                    f.message.unwrap_or_default(),
                    self.now,
                );
                if let Some(t) = f.last_transition_time {
                    c.last_transition_time = Some(t);
                }
                set_condition(&mut s, c);
            }
            None => remove_condition(&mut s, "ReplicaFailure"),
        }
        self.status = s;
    }

    fn check_paused_conditions(&mut self) {
        if progress_deadline(self.d).is_none() {
            return;
        }
        let cur = condition(&self.status, "Progressing");
        let reason = cur.and_then(|c| c.reason.as_deref());
        if reason == Some("ProgressDeadlineExceeded") {
            return;
        }
        let paused_cond = reason == Some("DeploymentPaused");
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let c = if paused && !paused_cond {
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused".to_owned(),
                self.now,
            )
        } else if !paused && paused_cond {
            new_condition(
                "Progressing",
                "Unknown",
                "DeploymentResumed",
                "Deployment is resumed".to_owned(),
                self.now,
            )
        } else {
            return;
        };
        set_condition(&mut self.status, c);
    }

    /// Did `spec.replicas` change since the active ReplicaSets were sized (`isScalingEvent`)?
    fn is_scaling_event(&mut self) -> bool {
        let (new, old) = self.new_and_old(false);
        let want = desired(self.d).to_string();
        new.into_iter().chain(old).any(|i| {
            let rs = &self.rss[i];
            replicas(rs) > 0
                && annotation(&rs.metadata, DESIRED_REPLICAS).is_some_and(|a| a != want)
        })
    }

    /// Scale without rolling (paused, or a scaling event), then write the status (`sync`).
    fn scale_sync(&mut self, paused: bool) {
        let (new, old) = self.new_and_old(false);
        self.scale_all(new, &old);
        if paused {
            self.cleanup(&old);
        }
        let s = self.calculate_status(new);
        self.status = s;
    }

    /// Upstream `scale`: one active ReplicaSet takes all; a saturated new one empties the old ones;
    /// otherwise the change is spread proportionally to their sizes.
    fn scale_all(&mut self, new: Option<usize>, old: &[usize]) {
        let d = self.d;
        let n = desired(d);
        let mut old_newest_first = old.to_vec();
        old_newest_first.sort_by(|&a, &b| by_creation(&self.rss[b], &self.rss[a]));
        let active: Vec<usize> = old_newest_first
            .iter()
            .copied()
            .chain(new)
            .filter(|&i| replicas(&self.rss[i]) > 0)
            .collect();
        let lone = match active.len() {
            0 => new.or(old_newest_first.first().copied()),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = lone {
            if replicas(&self.rss[i]) != n {
                self.scale(i, n);
            }
            return;
        }
        if let Some(i) = new {
            let rs = &self.rss[i];
            if replicas(rs) == n
                && annotation(&rs.metadata, DESIRED_REPLICAS) == Some(n.to_string().as_str())
                && available(rs) == n
            {
                for &o in old {
                    if replicas(&self.rss[o]) > 0 {
                        self.scale(o, 0);
                    }
                }
                return;
            }
        }
        if !is_rolling(d) {
            return;
        }
        let total: i32 = active.iter().map(|&i| replicas(&self.rss[i])).sum();
        let allowed = if n > 0 { n + max_surge(d) } else { 0 };
        let to_add = allowed - total;
        let mut order = active.clone();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rss[a], &self.rss[b]);
            replicas(rb).cmp(&replicas(ra)).then_with(|| {
                if to_add > 0 {
                    by_creation(rb, ra)
                } else {
                    by_creation(ra, rb)
                }
            })
        });
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for &i in &order {
            let rs = &self.rss[i];
            let p = if to_add != 0 {
                self.proportion(rs, to_add, added)
            } else {
                0
            };
            added += p;
            sizes.push((i, replicas(rs) + p));
        }
        if to_add != 0
            && let Some(first) = sizes.first_mut()
        {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale(i, size);
        }
    }

    /// Upstream `GetProportion`.
    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let d = self.d;
        let fraction = if desired(d) == 0 {
            -replicas(rs)
        } else {
            let target = desired(d) + max_surge(d);
            let annotated = annotation(&rs.metadata, MAX_REPLICAS)
                .and_then(|a| a.parse::<i32>().ok())
                .unwrap_or(self.status.replicas.unwrap_or(0));
            if annotated == 0 {
                0
            } else {
                let size = f64::from(replicas(rs)) * f64::from(target) / f64::from(annotated);
                #[allow(clippy::cast_possible_truncation)]
                let rounded = size.round() as i32;
                rounded - replicas(rs)
            }
        };
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn rollout_rolling(&mut self) {
        let (new, old) = self.new_and_old(true);
        let Some(new) = new else {
            // A collision: the status carries the new count; the next sync retries.
            return;
        };
        if self.reconcile_new(new) || self.reconcile_old(new, &old) {
            self.sync_rollout_status(Some(new));
            return;
        }
        if complete(self.d, &self.status) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(Some(new));
    }

    fn reconcile_new(&mut self, new: usize) -> bool {
        let n = desired(self.d);
        let cur = replicas(&self.rss[new]);
        if cur == n {
            return false;
        }
        if cur > n {
            return self.scale(new, n);
        }
        let to = self.new_rs_new_replicas(new);
        self.scale(new, to)
    }

    /// Scale old ReplicaSets down as far as maxUnavailable allows (`reconcileOldReplicaSets`).
    fn reconcile_old(&mut self, new: usize, old: &[usize]) -> bool {
        let d = self.d;
        let old_count: i32 = old.iter().map(|&i| replicas(&self.rss[i])).sum();
        if old_count == 0 {
            return false;
        }
        let all: i32 = self.rss.iter().map(replicas).sum();
        let min_available = desired(d) - max_unavailable(d);
        let new_unavailable = replicas(&self.rss[new]) - available(&self.rss[new]);
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        let mut oldest_first: Vec<usize> = old
            .iter()
            .copied()
            .filter(|&i| replicas(&self.rss[i]) > 0)
            .collect();
        oldest_first.sort_by(|&a, &b| by_creation(&self.rss[a], &self.rss[b]));
        // First the unhealthy replicas of old ReplicaSets: they do not count as available anyway.
        let mut cleaned = 0;
        for &i in &oldest_first {
            if cleaned >= max_scaled_down {
                break;
            }
            let (r, a) = (replicas(&self.rss[i]), available(&self.rss[i]));
            if r == 0 || r == a {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(r - a);
            self.scale(i, r - down);
            cleaned += down;
        }
        // Then healthy ones, down to minAvailable.
        let available_all: i32 = self.rss.iter().map(available).sum();
        let mut scaled = 0;
        if available_all > min_available {
            let budget = available_all - min_available;
            for &i in &oldest_first {
                if scaled >= budget {
                    break;
                }
                let r = replicas(&self.rss[i]);
                if r == 0 {
                    continue;
                }
                let down = r.min(budget - scaled);
                self.scale(i, r - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    fn rollout_recreate(&mut self) {
        let (new, old) = self.new_and_old(false);
        let mut scaled_down = false;
        for &i in &old {
            if replicas(&self.rss[i]) > 0 {
                scaled_down |= self.scale(i, 0);
            }
        }
        if scaled_down || self.old_pods_running(&old) {
            self.sync_rollout_status(new);
            return;
        }
        let (new, old) = match new {
            Some(_) => (new, old),
            None => self.new_and_old(true),
        };
        if let Some(i) = new {
            self.scale(i, desired(self.d));
        }
        if complete(self.d, &self.status) {
            self.cleanup(&old);
        }
        self.sync_rollout_status(new);
    }

    /// Do pods of the old ReplicaSets still run (`oldPodsRunning`)? Recreate waits for them.
    fn old_pods_running(&self, old: &[usize]) -> bool {
        if old
            .iter()
            .map(|&i| status_replicas(&self.rss[i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|&i| self.rss[i].metadata.uid.as_deref())
            .collect();
        self.pods.iter().any(|p| {
            ownership::controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str()))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        })
    }

    /// Delete the oldest empty old ReplicaSets beyond `revisionHistoryLimit` (`cleanupDeployment`).
    fn cleanup(&mut self, old: &[usize]) {
        let Some(limit) = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return;
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|&i| self.rss[i].metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return;
        }
        cleanable.sort_by(|&a, &b| {
            let (ra, rb) = (&self.rss[a], &self.rss[b]);
            revision(ra)
                .cmp(&revision(rb))
                .then_with(|| by_creation(ra, rb))
        });
        for &i in &cleanable[..excess] {
            let rs = &self.rss[i];
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation);
            if status_replicas(rs) != 0 || replicas(rs) != 0 || rs.metadata.generation > observed {
                continue;
            }
            self.actions.push(Action::DeleteReplicaSet {
                name: name(rs),
                uid: rs.metadata.uid.clone().unwrap_or_default(),
            });
        }
    }
}

/// Upstream `SetNewReplicaSetAnnotations`: copy the Deployment's annotations, raise the revision
/// (remembering the old one in the history when the ReplicaSet comes back), and on creation set
/// the replica annotations. True when something changed.
fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        let skip = [
            LAST_APPLIED,
            REVISION,
            REVISION_HISTORY,
            DESIRED_REPLICAS,
            MAX_REPLICAS,
            ROLLBACK_TO,
        ];
        if skip.contains(&k.as_str()) || annotation(&rs.metadata, k) == Some(v.as_str()) {
            continue;
        }
        set_annotation(&mut rs.metadata, k, v.clone());
        changed = true;
    }
    let old_revision = annotation(&rs.metadata, REVISION).unwrap_or("").to_owned();
    let old_n: i64 = old_revision.parse().unwrap_or(0);
    let new_n: i64 = new_revision.parse().unwrap_or(0);
    if old_n < new_n {
        set_annotation(&mut rs.metadata, REVISION, new_revision.to_owned());
        changed = true;
        if !old_revision.is_empty() && exists {
            let history = match annotation(&rs.metadata, REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old_revision}"),
                _ => old_revision,
            };
            set_annotation(&mut rs.metadata, REVISION_HISTORY, history);
        }
    }
    if !exists {
        let n = desired(d);
        set_annotation(&mut rs.metadata, DESIRED_REPLICAS, n.to_string());
        set_annotation(
            &mut rs.metadata,
            MAX_REPLICAS,
            (n + max_surge(d)).to_string(),
        );
        changed = true;
    }
    changed
}

#[cfg(test)]
mod tests;

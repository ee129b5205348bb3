//! The ReplicaSet controller loop: informers for ReplicaSets and Pods feed [`reconcile::plan`]; the
//! loop adopts and releases pods, creates (in slow-start batches) and deletes them, and writes the
//! status. Level-triggered: every change resyncs every ReplicaSet, and a sync that finds nothing to do
//! sends nothing.
//!
//! Like upstream's expectations, a ReplicaSet whose creates or deletes are not yet visible in the pod
//! informer is skipped until they are (or a minute passed), so a stale cache never doubles a create.

pub(crate) mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};

use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::informer::{self, Cache};
use crate::ownership;

/// How long unobserved creates/deletes hold a ReplicaSet back (upstream `ExpectationsTimeout` is 5 min).
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(60);
/// A full resync even when nothing changed.
const RESYNC: Duration = Duration::from_secs(30);

/// Creates and deletes sent but not yet seen in the pod informer.
struct Expectation {
    created: HashSet<(String, String)>,
    deleted: HashSet<String>,
    since: Instant,
}

impl Expectation {
    fn satisfied(&self, pods: &Cache<Pod>) -> bool {
        if self.since.elapsed() > EXPECTATIONS_TIMEOUT {
            return true;
        }
        let state = pods.all();
        let seen = |(ns, name): &(String, String)| {
            state.iter().any(|p| {
                p.metadata.namespace.as_ref() == Some(ns) && p.metadata.name.as_ref() == Some(name)
            })
        };
        let gone = |uid: &String| {
            !state.iter().any(|p| {
                p.metadata.uid.as_ref() == Some(uid) && p.metadata.deletion_timestamp.is_none()
            })
        };
        self.created.iter().all(seen) && self.deleted.iter().all(gone)
    }
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let notify = Arc::new(Notify::new());
    let rss = ctx.informers.get::<ReplicaSet>();
    rss.wake_on_change(notify.clone());
    let pods = ctx.informers.get::<Pod>();
    pods.wake_on(notify.clone(), informer::owned_by_replica_set);
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            rss.wait_ready().await;
            pods.wait_ready().await;
        } => {}
    }
    tracing::info!("replicaset controller started");
    let mut expectations: HashMap<String, Expectation> = HashMap::new();
    let mut wake = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = notify.notified() => {},
            () = tokio::time::sleep_until(wake) => {},
        }
        wake = Instant::now() + RESYNC;
        let all_pods = pods.all();
        let mut by_ns: HashMap<&str, Vec<&Pod>> = HashMap::new();
        for p in &all_pods {
            by_ns
                .entry(p.metadata.namespace.as_deref().unwrap_or(""))
                .or_default()
                .push(p);
        }
        for rs in rss.all() {
            let uid = rs.metadata.uid.clone().unwrap_or_default();
            if let Some(e) = expectations.get(&uid) {
                if !e.satisfied(&pods) {
                    wake = wake.min(Instant::now() + Duration::from_secs(1));
                    continue;
                }
                expectations.remove(&uid);
            }
            let ns = rs.metadata.namespace.as_deref().unwrap_or("");
            let ns_pods = by_ns.get(ns).map(Vec::as_slice).unwrap_or_default();
            match sync(&ctx, &rs, ns_pods).await {
                Ok(outcome) => {
                    if let Some(after) = outcome.requeue {
                        wake = wake.min(Instant::now() + after);
                    }
                    if !outcome.expect.created.is_empty() || !outcome.expect.deleted.is_empty() {
                        expectations.insert(uid, outcome.expect);
                    }
                }
                Err(e) => {
                    tracing::info!(replicaset = %rs.metadata.name.as_deref().unwrap_or(""), error = %e, "sync failed, retrying");
                    wake = wake.min(Instant::now() + Duration::from_secs(1));
                }
            }
        }
        expectations.retain(|uid, _| {
            rss.all()
                .iter()
                .any(|r| r.metadata.uid.as_ref() == Some(uid))
        });
    }
    tracing::info!("replicaset controller stopped");
    Ok(())
}

struct Outcome {
    requeue: Option<Duration>,
    expect: Expectation,
}

async fn sync(ctx: &Context, rs: &ReplicaSet, pods: &[&Pod]) -> Result<Outcome, Error> {
    let ns = rs.metadata.namespace.as_deref().unwrap_or("default");
    let name = rs.metadata.name.as_deref().unwrap_or("");
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let plan = reconcile::plan(rs, pods);
    let owner_uid = rs.metadata.uid.as_deref().unwrap_or("");
    for pod in &plan.claim.adopt {
        let refs = ownership::with_owner(
            &pod.metadata,
            ownership::controller_ref("apps/v1", "ReplicaSet", &rs.metadata),
        );
        patch_owners(&pod_api, pod, &refs).await?;
        tracing::info!(replicaset = name, pod = ?pod.metadata.name, "adopted pod");
    }
    for pod in &plan.claim.release {
        let refs = ownership::without_owner(&pod.metadata, owner_uid);
        patch_owners(&pod_api, pod, &refs).await?;
        tracing::info!(replicaset = name, pod = ?pod.metadata.name, "released pod");
    }
    let mut expect = Expectation {
        created: HashSet::new(),
        deleted: HashSet::new(),
        since: Instant::now(),
    };
    let mut failure = None;
    let r = informer::reference(rs);
    if let Some(template) = &plan.template {
        // Slow start (upstream `slowStartBatch`): batches of 1, 2, 4, ... so a failing create (quota,
        // admission) fails once rather than `create` times.
        let pp = PostParams::default();
        let mut left = plan.create;
        let mut batch = 1;
        'batches: while left > 0 {
            let n = batch.min(left);
            let results =
                futures::future::join_all((0..n).map(|_| pod_api.create(&pp, template))).await;
            for res in results {
                match res {
                    Ok(p) => {
                        let pname = p.metadata.name.clone().unwrap_or_default();
                        ctx.event(
                            &r,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("Created pod: {pname}"),
                        )
                        .await;
                        expect.created.insert((ns.to_owned(), pname));
                    }
                    Err(e) => {
                        let message = api_message(&e);
                        ctx.event(
                            &r,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {message}"),
                        )
                        .await;
                        failure = Some(reconcile::Failure {
                            reason: "FailedCreate",
                            message,
                        });
                    }
                }
            }
            if failure.is_some() {
                break 'batches;
            }
            left -= n;
            batch *= 2;
        }
    }
    for pod in &plan.delete {
        let pname = pod.metadata.name.as_deref().unwrap_or("");
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pod_api.delete(pname, &dp).await {
            Ok(_) => {
                ctx.event(
                    &r,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pname}"),
                )
                .await;
                expect
                    .deleted
                    .insert(pod.metadata.uid.clone().unwrap_or_default());
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                let message = api_message(&e);
                ctx.event(
                    &r,
                    "Warning",
                    "FailedDelete",
                    &format!("Error deleting: {message}"),
                )
                .await;
                failure = Some(reconcile::Failure {
                    reason: "FailedDelete",
                    message,
                });
            }
        }
    }
    let now = jiff::Timestamp::now();
    let status = reconcile::status(rs, &plan.active, failure.as_ref(), now);
    if reconcile::status_changed(rs, &status) {
        let mut value = serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
        if status.conditions.is_none() {
            value["conditions"] = serde_json::Value::Null;
        }
        let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
        rs_api
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": value})),
            )
            .await?;
    }
    let mut requeue = reconcile::requeue_after(rs, &plan.active, now);
    if failure.is_some() {
        requeue = Some(requeue.map_or(Duration::from_secs(5), |d| d.min(Duration::from_secs(5))));
    }
    Ok(Outcome { requeue, expect })
}

async fn patch_owners(
    api: &Api<Pod>,
    pod: &Pod,
    refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference],
) -> Result<(), Error> {
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": pod.metadata.uid,
        "resourceVersion": pod.metadata.resource_version,
    }});
    api.patch(
        pod.metadata.name.as_deref().unwrap_or(""),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The server's message for an API error, or the error itself.
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

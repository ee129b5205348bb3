//! The Deployment controller loop: informers for Deployments, ReplicaSets and Pods feed
//! [`reconcile::reconcile`]; the loop performs its actions in order and stops at the first failure
//! (a 409 from a stale cache included), to retry on the next wake. Level-triggered: every change
//! resyncs every Deployment, and a sync that finds nothing to do sends nothing. A Deployment whose
//! ReplicaSet writes the cache has not shown yet waits for them ([`informer::Expectations`]): a
//! pass that saw an old ReplicaSet before its scale-down, or the new one before its scale-up,
//! would size the other against stale counts and surge past maxSurge.

pub(crate) mod reconcile;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::informer;
use reconcile::Action;

/// A full resync even when nothing changed.
const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let notify = Arc::new(Notify::new());
    let deploys = ctx.informers.get::<Deployment>();
    deploys.wake_on_change(notify.clone());
    let rss = ctx.informers.get::<ReplicaSet>();
    rss.wake_on_change(notify.clone());
    let pods = ctx.informers.get::<Pod>();
    pods.wake_on(notify.clone(), informer::owned_by_replica_set);
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            deploys.wait_ready().await;
            rss.wait_ready().await;
            pods.wait_ready().await;
        } => {}
    }
    tracing::info!("deployment controller started");
    let expectations = informer::Expectations::default();
    let mut wake = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = notify.notified() => {},
            () = tokio::time::sleep_until(wake) => {},
        }
        wake = Instant::now() + RESYNC;
        let all_rss = rss.all();
        let all_pods = pods.all();
        for d in deploys.all() {
            let key: informer::Key = (
                d.metadata.namespace.clone().unwrap_or_default(),
                d.metadata.name.clone().unwrap_or_default(),
            );
            if !expectations.satisfied(&key, &rss) {
                wake = wake.min(Instant::now() + Duration::from_millis(20));
                continue;
            }
            let ns = d.metadata.namespace.as_deref();
            let ns_rss: Vec<&ReplicaSet> = all_rss
                .iter()
                .map(AsRef::as_ref)
                .filter(|r: &&ReplicaSet| r.metadata.namespace.as_deref() == ns)
                .collect();
            let ns_pods: Vec<&Pod> = all_pods
                .iter()
                .map(AsRef::as_ref)
                .filter(|p: &&Pod| p.metadata.namespace.as_deref() == ns)
                .collect();
            let plan = reconcile::reconcile(&d, &ns_rss, &ns_pods, jiff::Timestamp::now());
            if let Some(after) = plan.requeue_after {
                wake = wake.min(Instant::now() + after);
            }
            let mut seen = Written::default();
            let result = apply(&ctx, &d, plan.actions, &mut seen).await;
            expectations.record(key, seen.written, seen.deleted);
            if let Err(e) = result {
                tracing::info!(deployment = %d.metadata.name.as_deref().unwrap_or(""), error = %e, "sync failed, retrying");
                wake = wake.min(Instant::now() + Duration::from_millis(500));
            }
        }
    }
    tracing::info!("deployment controller stopped");
    Ok(())
}

/// The ReplicaSet writes of one pass: (namespace, name, resourceVersion) written, and deleted.
#[derive(Default)]
struct Written {
    written: Vec<(String, String, String)>,
    deleted: Vec<(String, String)>,
}

impl Written {
    /// ReplicaSet `name` now has `rv`: for the rest of this pass (`versions`) and for the cache.
    fn wrote(
        &mut self,
        versions: &mut HashMap<String, Option<String>>,
        ns: &str,
        name: String,
        rv: Option<String>,
    ) {
        if let Some(v) = &rv {
            self.written.push((ns.to_owned(), name.clone(), v.clone()));
        }
        versions.insert(name, rv);
    }
}

/// Perform `actions` in order; an event follows the action before it only if that succeeded.
/// What reached the API server goes into `seen`, failures included.
async fn apply(
    ctx: &Context,
    d: &Deployment,
    actions: Vec<Action>,
    seen: &mut Written,
) -> Result<(), Error> {
    let ns = d.metadata.namespace.as_deref().unwrap_or("default");
    let name = d.metadata.name.as_deref().unwrap_or("");
    let rs_api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    // The resourceVersion each ReplicaSet has after our own writes in this sync, so that a second
    // update of the same ReplicaSet is not refused as stale.
    let mut versions: HashMap<String, Option<String>> = HashMap::new();
    let r = informer::reference(d);
    for action in actions {
        match action {
            Action::SetOwners {
                name: rs_name,
                uid,
                resource_version,
                owner_references,
            } => {
                let patch = json!({"metadata": {
                    "ownerReferences": owner_references, "uid": uid, "resourceVersion": resource_version,
                }});
                let rs = rs_api
                    .patch(&rs_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                seen.wrote(&mut versions, ns, rs_name, rs.metadata.resource_version);
            }
            Action::CreateReplicaSet(rs) => {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                let created = rs_api.create(&PostParams::default(), &rs).await?;
                tracing::info!(
                    deployment = name,
                    replicaset = rs_name,
                    "created replica set"
                );
                seen.wrote(
                    &mut versions,
                    ns,
                    rs_name,
                    created.metadata.resource_version,
                );
            }
            Action::UpdateReplicaSet(mut rs) => {
                let rs_name = rs.metadata.name.clone().unwrap_or_default();
                if let Some(v) = versions.get(&rs_name) {
                    rs.metadata.resource_version.clone_from(v);
                }
                let updated = rs_api
                    .replace(&rs_name, &PostParams::default(), &rs)
                    .await?;
                seen.wrote(
                    &mut versions,
                    ns,
                    rs_name,
                    updated.metadata.resource_version,
                );
            }
            Action::DeleteReplicaSet { name: rs_name, uid } => {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match rs_api.delete(&rs_name, &dp).await {
                    Ok(_) => {
                        tracing::info!(
                            deployment = name,
                            replicaset = rs_name,
                            "deleted old replica set"
                        );
                        seen.deleted.push((ns.to_owned(), rs_name));
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::AnnotateRevision(rev) => {
                let patch = json!({"metadata": {"annotations": {reconcile::REVISION: rev}}});
                d_api
                    .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            Action::Event {
                type_,
                reason,
                message,
            } => ctx.event(&r, type_, reason, &message).await,
            Action::Status(status) => {
                let mut value =
                    serde_json::to_value(&status).map_err(|e| Error::Invalid(e.to_string()))?;
                if status.conditions.is_none() {
                    value["conditions"] = serde_json::Value::Null;
                }
                d_api
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": value})),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}

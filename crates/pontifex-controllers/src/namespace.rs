//! The namespace controller: empties a terminating Namespace of every namespaced object, reports the
//! upstream deletion conditions, then removes the `kubernetes` finalizer through `finalize`, after
//! which the API server deletes the Namespace. The decision is in [`reconcile`]; this is the loop.
//!
//! Namespaces come from an informer; the content of each terminating one is listed afresh on each
//! pass over every namespaced kind found by discovery (so it works against any cluster), and a pass
//! runs on each Namespace event and every second while some namespace is terminating.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::dynamic::{self, Resource};
use crate::{Context, Error};
use reconcile::{Action, Item, Observed};

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .touched_objects();
    futures::pin_mut!(stream);
    let mut resources: Option<Vec<Resource>> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            ev = stream.next() => if ev.is_none() { return Ok(()) },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let terminating: Vec<Arc<Namespace>> = store
            .state()
            .into_iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_some())
            .collect();
        if terminating.is_empty() {
            continue;
        }
        // Rediscover on every pass that has work, so kinds added since are not missed.
        resources = match dynamic::resources(&ctx.client).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "namespace controller: discovery failed");
                resources
            }
        };
        let Some(resources) = &resources else {
            continue;
        };
        for ns in terminating {
            if let Err(e) = sync(&ctx, &ns, resources).await {
                tracing::info!(namespace = ?ns.metadata.name, error = %e, "namespace deletion pass failed; retrying");
            }
        }
    }
}

async fn sync(ctx: &Context, ns: &Namespace, resources: &[Resource]) -> Result<(), Error> {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let observed = Observed {
        deletion_timestamp: ns.metadata.deletion_timestamp.as_ref().map(|t| t.0),
        spec_finalizers: ns
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.clone())
            .unwrap_or_default(),
        conditions: ns
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                (
                    c.type_,
                    c.status,
                    c.reason.unwrap_or_default(),
                    c.message.unwrap_or_default(),
                )
            })
            .collect(),
    };
    if observed.deletion_timestamp.is_none()
        || !observed
            .spec_finalizers
            .iter()
            .any(|f| f == reconcile::FINALIZER)
    {
        return Ok(());
    }
    let mut content = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        if !r.namespaced {
            continue;
        }
        let group_resource = if r.ar.group.is_empty() {
            r.ar.plural.clone()
        } else {
            format!("{}.{}", r.ar.plural, r.ar.group)
        };
        for obj in dynamic::list(&ctx.client, r, Some(&name)).await? {
            let bound_pod = r.ar.group.is_empty()
                && r.ar.plural == "pods"
                && obj.data["spec"]["nodeName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
            content.push(Item {
                resource: i,
                group_resource: group_resource.clone(),
                name: obj.metadata.name.clone().unwrap_or_default(),
                deletion_timestamp: obj.metadata.deletion_timestamp.as_ref().map(|t| t.0),
                finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
                bound_pod,
            });
        }
    }
    let now = jiff::Timestamp::now();
    let api: Api<Namespace> = Api::all(ctx.client.clone());
    for action in reconcile::reconcile(&observed, &content, now) {
        let force = matches!(action, Action::ForceDelete { .. });
        match action {
            Action::Delete {
                resource,
                name: obj,
            }
            | Action::ForceDelete {
                resource,
                name: obj,
            } => {
                let mut dp = DeleteParams::background();
                if force {
                    dp.grace_period_seconds = Some(0);
                }
                let res = dynamic::api(&ctx.client, &resources[resource], Some(&name))
                    .delete(&obj, &dp)
                    .await;
                match res {
                    Ok(_) => tracing::debug!(namespace = %name, object = %obj, force, "deleted"),
                    Err(e) if dynamic::is_gone_or_conflict(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Action::SetConditions(conditions) => {
                let old = ns
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                let conditions: Vec<NamespaceCondition> = conditions
                    .into_iter()
                    .map(|c| {
                        // The transition time moves only when the status does.
                        let since = old
                            .iter()
                            .find(|o| o.type_ == c.type_ && o.status == c.status)
                            .and_then(|o| o.last_transition_time.clone())
                            .unwrap_or(Time(now));
                        NamespaceCondition {
                            type_: c.type_.to_owned(),
                            status: c.status.to_owned(),
                            reason: Some(c.reason.to_owned()),
                            message: Some(c.message),
                            last_transition_time: Some(since),
                        }
                    })
                    .collect();
                let patch = json!({ "status": { "conditions": conditions } });
                match api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if dynamic::is_gone_or_conflict(&e) => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            Action::Finalize => {
                let mut ns = api.get(&name).await?;
                if let Some(spec) = &mut ns.spec {
                    let left: Vec<String> = spec
                        .finalizers
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|f| f != reconcile::FINALIZER)
                        .collect();
                    spec.finalizers = Some(left);
                }
                match api
                    .replace_subresource("finalize", &name, &PostParams::default(), &ns)
                    .await
                {
                    Ok(_) => tracing::info!(namespace = %name, "namespace emptied and finalized"),
                    Err(e) if dynamic::is_gone_or_conflict(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

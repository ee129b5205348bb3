//! The scheduler: binds pending pods (no `spec.nodeName`, `schedulerName` default-scheduler) to nodes
//! through the `pods/binding` subresource, and tells why when no node fits (PodScheduled=False and a
//! FailedScheduling event). The decisions are in [`reconcile`]; this loop feeds it snapshots of the
//! Node and Pod informers and applies what it returns.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::informer::{self, Cache};
use crate::{Context, Error};
use reconcile::Action;

/// Unschedulable pods are retried this often even when nothing changes.
const RESYNC: Duration = Duration::from_secs(10);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let wake = Arc::new(Notify::new());
    let nodes = ctx.informers.get::<Node>();
    nodes.wake_on_change(wake.clone());
    let pods = ctx.informers.get::<Pod>();
    pods.wake_on(wake.clone(), informer::scheduling_relevant);
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        _ = async { tokio::join!(nodes.wait_ready(), pods.wait_ready()) } => {}
    }
    tracing::info!("scheduler started");
    let mut round: u64 = 0;
    loop {
        // A pass over every pod of a big cluster takes a while: keep it off the async workers the
        // other loops need.
        let actions = tokio::task::block_in_place(|| {
            reconcile::schedule(
                &nodes.snapshot(),
                &pods.snapshot(),
                round,
                Time(jiff::Timestamp::now()),
            )
        });
        round = round.wrapping_add(1);
        for action in actions {
            if let Err(e) = apply(&ctx, &pods, action).await {
                tracing::debug!(error = %e, "scheduling action failed; will retry");
            }
        }
        if informer::next(&wake, RESYNC, &shutdown).await {
            tracing::info!("scheduler stopped");
            return Ok(());
        }
    }
}

async fn apply(ctx: &Context, store: &Cache<Pod>, action: Action) -> Result<(), Error> {
    match action {
        Action::Bind {
            namespace,
            name,
            node,
        } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
            let _: serde_json::Value = api
                .create_subresource("binding", &name, &PostParams::default(), &binding)
                .await?;
            tracing::info!(pod = %format!("{namespace}/{name}"), node, "bound");
            if let Some(pod) = find(store, &namespace, &name) {
                ctx.event(
                    &informer::reference(&pod),
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {namespace}/{name} to {node}"),
                )
                .await;
            }
        }
        Action::Unschedulable {
            namespace,
            name,
            conditions,
            message,
        } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"status": {"conditions": conditions}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(pod = %format!("{namespace}/{name}"), message, "unschedulable");
            if let Some(pod) = find(store, &namespace, &name) {
                ctx.event(
                    &informer::reference(&pod),
                    "Warning",
                    "FailedScheduling",
                    &message,
                )
                .await;
            }
        }
    }
    Ok(())
}

fn find(store: &Cache<Pod>, namespace: &str, name: &str) -> Option<Pod> {
    store.get(namespace, name).map(|p| (*p).clone())
}

//! Node lifecycle: watches node heartbeats (Leases in `kube-node-lease`) and marks silent nodes
//! Ready=Unknown and their pods not Ready. Decisions in [`reconcile`]; this loop feeds it snapshots of
//! the Node, Lease and Pod informers and the clock, every few seconds (time alone changes the answer).

mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::informer::{self, Cache};
use crate::{Context, Error};
use reconcile::Action;

/// Where nodes keep their heartbeat Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let wake = Arc::new(Notify::new());
    let node_api = Api::<Node>::all(ctx.client.clone());
    let nodes = ctx.informers.get::<Node>();
    nodes.wake_on_change(wake.clone());
    let leases = ctx.informers.get::<Lease>();
    leases.wake_on_change(wake.clone());
    let pods = ctx.informers.get::<Pod>();
    // No wake-ups from pods: node and Lease changes (and the monitor period) drive this loop.
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        _ = async { tokio::join!(nodes.wait_ready(), leases.wait_ready(), pods.wait_ready()) } => {}
    }
    let grace = ctx.config.node_monitor_grace_period;
    // upstream's --node-monitor-period is 5s against a 40-50s grace; keep that ratio for short graces.
    let period = (grace / 5).clamp(Duration::from_millis(200), Duration::from_secs(5));
    tracing::info!(?grace, ?period, "node lifecycle controller started");
    loop {
        let renewed: BTreeMap<String, jiff::Timestamp> = leases
            .snapshot()
            .into_iter()
            .filter(|l| l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE))
            .filter_map(|l| Some((l.metadata.name?, l.spec?.renew_time?.0)))
            .collect();
        let node_list = nodes.snapshot();
        // Only pods on a node that is not Ready can need marking; copying every pod of a big
        // cluster each period would cost more than everything else this loop does. (A node going
        // stale in this pass is marked now, its pods on the pass its status change wakes.)
        let suspect: std::collections::HashSet<&str> = node_list
            .iter()
            .filter(|n| {
                let ready = n
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
                ready.is_some_and(|c| c.status != "True")
            })
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let pod_list: Vec<Pod> = if suspect.is_empty() {
            Vec::new()
        } else {
            pods.all()
                .into_iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_some_and(|n| suspect.contains(n))
                })
                .map(|p| (*p).clone())
                .collect()
        };
        let actions = reconcile::reconcile(
            &node_list,
            &renewed,
            &pod_list,
            jiff::Timestamp::now(),
            grace,
        );
        for action in actions {
            if let Err(e) = apply(&ctx, &node_api, &nodes, &pods, action).await {
                tracing::debug!(error = %e, "node lifecycle action failed; will retry");
            }
        }
        if informer::next(&wake, period, &shutdown).await {
            tracing::info!("node lifecycle controller stopped");
            return Ok(());
        }
    }
}

async fn apply(
    ctx: &Context,
    node_api: &Api<Node>,
    nodes: &Cache<Node>,
    pods: &Cache<Pod>,
    action: Action,
) -> Result<(), Error> {
    match action {
        Action::NodeStatus {
            node,
            conditions,
            change,
        } => {
            let patch = json!({"status": {"conditions": conditions}});
            node_api
                .patch_status(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(node, change, "node status changed");
            if let Some(n) = nodes.get("", &node) {
                ctx.event(
                    &informer::reference(&*n),
                    "Normal",
                    change,
                    &format!("Node {node} status is now: {change}"),
                )
                .await;
            }
        }
        Action::PodNotReady {
            namespace,
            name,
            conditions,
        } => {
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"status": {"conditions": conditions}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(pod = %format!("{namespace}/{name}"), "pod marked not ready");
            if let Some(p) = pods.get(&namespace, &name) {
                ctx.event(
                    &informer::reference(&*p),
                    "Warning",
                    "NodeNotReady",
                    "Node is not ready",
                )
                .await;
            }
        }
    }
    Ok(())
}

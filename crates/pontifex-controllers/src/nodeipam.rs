//! Node IPAM: gives every node a pod CIDR from each `--cluster-cidr` entry (`spec.podCIDRs`, one per IP
//! family, and `spec.podCIDR`, the first), as kube-controller-manager's range allocator does. Decisions
//! in [`reconcile`], flag checks in [`flags`]; this loop feeds it the Node informer's snapshot.

mod flags;
mod reconcile;

pub(crate) use flags::node_cidr_mask_sizes;
pub use flags::{
    DEFAULT_NODE_CIDR_MASK_SIZE_IPV4, DEFAULT_NODE_CIDR_MASK_SIZE_IPV6, NodeIpamFlagError,
    parse_cluster_cidr,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::informer;
use crate::{Context, Error};
use reconcile::Action;

const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let wake = Arc::new(Notify::new());
    let api = Api::<Node>::all(ctx.client.clone());
    let nodes = ctx.informers.get::<Node>();
    nodes.wake_on_change(wake.clone());
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        _ = nodes.wait_ready() => {}
    }
    let masks = ctx
        .config
        .node_cidr_mask_sizes()
        .map_err(|e| Error::Invalid(e.to_string()))?;
    tracing::info!(cluster_cidr = %ctx.config.cluster_cidr, ?masks, "node IPAM started");
    // Written but not yet seen by the informer, so a quick second pass does not hand it out again.
    let mut pending: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    loop {
        let snapshot = nodes.snapshot();
        let names: BTreeSet<String> = snapshot
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        pending.retain(|n, _| {
            names.contains(n)
                && snapshot
                    .iter()
                    .find(|x| x.metadata.name.as_deref() == Some(n))
                    .is_some_and(|x| reconcile::pod_cidrs(x).is_empty())
        });
        reported.retain(|n| names.contains(n));
        let actions = reconcile::reconcile(
            &ctx.config.cluster_cidr,
            &masks,
            &snapshot,
            &pending,
            &reported,
        );
        for action in actions {
            match action {
                Action::Assign { node, cidrs } => {
                    let list: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
                    let patch = json!({"spec": {"podCIDR": list[0], "podCIDRs": list}});
                    match api
                        .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(node, cidrs = ?list, "pod CIDRs assigned");
                            pending.insert(node, cidrs);
                        }
                        Err(e) => tracing::warn!(node, error = %e, "could not set the pod CIDR"),
                    }
                }
                Action::Full { node } => {
                    tracing::warn!(node, "no pod CIDR left");
                    if let Some(n) = snapshot
                        .iter()
                        .find(|n| n.metadata.name.as_deref() == Some(&node))
                    {
                        ctx.event(
                            &informer::reference(n),
                            "Normal",
                            "CIDRNotAvailable",
                            &format!("Node {node} status is now: CIDRNotAvailable"),
                        )
                        .await;
                    }
                    reported.insert(node);
                }
            }
        }
        if informer::next(&wake, RESYNC, &shutdown).await {
            tracing::info!("node IPAM stopped");
            return Ok(());
        }
    }
}

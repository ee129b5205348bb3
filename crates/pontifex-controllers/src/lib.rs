//! The pontifex controllers: the brain between "a Service selects app=nginx" and "these three pod IPs
//! are its endpoints", and between "a Deployment wants three replicas" and three scheduled Pods.
//!
//! Every controller is two parts: a pure reconcile function from (desired, observed) to actions, unit
//! tested without a server, and a thin loop that feeds it from kube-rs informers and applies the
//! actions through the Kubernetes API. They talk to the API only, so they run the same against
//! pontifex's API server (`pontifex up` runs them in-process) and against a real cluster
//! (`pontifex controllers --kubeconfig ...`).
//!
//! Not here: anything on a node (pod sandboxes, the service proxy): see the node agent.
#![forbid(unsafe_code)]

mod context;
mod deployment;
mod dynamic;
mod endpoints;
mod endpointslice;
mod events;
mod gc;
mod informer;
mod lbpool;
mod leader;
mod mirroring;
mod namespace;
mod nodeipam;
mod nodelifecycle;
mod ownership;
mod replicaset;
mod scheduler;

pub use context::{Config, Context, Error};
pub use nodeipam::{
    DEFAULT_NODE_CIDR_MASK_SIZE_IPV4, DEFAULT_NODE_CIDR_MASK_SIZE_IPV6, NodeIpamFlagError,
    parse_cluster_cidr,
};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Run every controller until `shutdown` is cancelled.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    // The controllers stop on `shutdown` and also when leadership is lost: they get a child token.
    let outer = shutdown;
    let shutdown = outer.child_token();
    let ctx = Arc::new(Context::new(client, config, shutdown.clone()));
    let mut leading = None;
    if ctx.config.leader_elect {
        if !leader::acquire(&ctx, &outer).await? {
            return Ok(());
        }
        leading = Some(tokio::spawn(leader::hold(ctx.clone(), outer.clone())));
    }
    let mut tasks: tokio::task::JoinSet<Result<(), Error>> = tokio::task::JoinSet::new();
    // Each controller module adds itself here: `tasks.spawn(module::run(ctx.clone(), shutdown.clone()));`
    tasks.spawn(scheduler::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(nodeipam::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(nodelifecycle::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(lbpool::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(replicaset::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(deployment::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(namespace::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(gc::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(endpointslice::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(endpoints::run(ctx.clone(), shutdown.clone()));
    tasks.spawn(mirroring::run(ctx.clone(), shutdown.clone()));
    let outcome = match leading {
        Some(hold) => match hold.await {
            Ok(r) => r,
            Err(e) => Err(Error::Invalid(format!("leader election task failed: {e}"))),
        },
        None => {
            outer.cancelled().await;
            Ok(())
        }
    };
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "controller ended with an error");
        }
    }
    outcome
}

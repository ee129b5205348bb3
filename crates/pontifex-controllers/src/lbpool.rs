//! The LoadBalancer IP pool: Services of type LoadBalancer (no `loadBalancerClass`, or
//! `pontifex.io/lb-pool`) get `status.loadBalancer.ingress[0].ip` from `--lb-pool`, which is what
//! `kubectl get svc` shows as EXTERNAL-IP. Decisions in [`reconcile`]; this loop feeds it the Service
//! informer's snapshot.

mod reconcile;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::informer::{self, Cache};
use crate::{Context, Error};
use reconcile::Action;

const RESYNC: Duration = Duration::from_secs(30);

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let wake = Arc::new(Notify::new());
    let services = ctx.informers.get::<Service>();
    services.wake_on_change(wake.clone());
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        _ = services.wait_ready() => {}
    }
    let pool = ctx.config.lb_pool;
    tracing::info!(%pool, "LoadBalancer IP pool started");
    let mut pending: BTreeMap<(String, String), Ipv4Addr> = BTreeMap::new();
    let mut failed: BTreeMap<(String, String), String> = BTreeMap::new();
    loop {
        let snapshot = services.snapshot();
        // Forget what the informer now shows (or what is gone).
        pending.retain(|(ns, name), _| {
            snapshot.iter().any(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
                    && reconcile::ours(s)
                    && s.status
                        .as_ref()
                        .and_then(|st| st.load_balancer.as_ref())
                        .and_then(|lb| lb.ingress.as_ref())
                        .is_none_or(Vec::is_empty)
            })
        });
        failed.retain(|(ns, name), _| {
            snapshot.iter().any(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            })
        });
        for action in reconcile::reconcile(pool, &snapshot, &pending, &failed) {
            if let Err(e) = apply(&ctx, &services, &mut pending, &mut failed, action).await {
                tracing::debug!(error = %e, "LoadBalancer IP action failed; will retry");
            }
        }
        if informer::next(&wake, RESYNC, &shutdown).await {
            tracing::info!("LoadBalancer IP pool stopped");
            return Ok(());
        }
    }
}

async fn apply(
    ctx: &Context,
    store: &Cache<Service>,
    pending: &mut BTreeMap<(String, String), Ipv4Addr>,
    failed: &mut BTreeMap<(String, String), String>,
    action: Action,
) -> Result<(), Error> {
    let service = |ns: &str, name: &str| store.get(ns, name);
    match action {
        Action::Assign {
            namespace,
            name,
            ip,
        } => {
            let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": [{"ip": ip.to_string(), "ipMode": "VIP"}]}}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(service = %format!("{namespace}/{name}"), %ip, "LoadBalancer IP assigned");
            if let Some(s) = service(&namespace, &name) {
                ctx.event(
                    &informer::reference(&*s),
                    "Normal",
                    "IPAllocated",
                    &format!("Assigned IP [\"{ip}\"]"),
                )
                .await;
            }
            failed.remove(&(namespace.clone(), name.clone()));
            pending.insert((namespace, name), ip);
        }
        Action::Fail {
            namespace,
            name,
            message,
        } => {
            tracing::warn!(service = %format!("{namespace}/{name}"), message, "no LoadBalancer IP");
            if let Some(s) = service(&namespace, &name) {
                ctx.event(
                    &informer::reference(&*s),
                    "Warning",
                    "AllocationFailed",
                    &message,
                )
                .await;
            }
            failed.insert((namespace, name), message);
        }
        Action::Release { namespace, name } => {
            let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": null}}});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::info!(service = %format!("{namespace}/{name}"), "LoadBalancer IP released");
        }
    }
    Ok(())
}

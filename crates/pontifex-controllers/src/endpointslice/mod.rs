//! The EndpointSlice controller: every Service with a selector gets EndpointSlices listing the
//! pods it selects (`reconcile` decides, `placement` keeps churn low); this module is the loop that
//! feeds it from watches and applies its writes. Also home of what the Endpoints and mirroring
//! controllers share (`pods`, `placement`, `informer`).
//!
//! Not here: deleting slices of a deleted Service is the garbage collector's job upstream (they are
//! owned by it); this loop also deletes them itself, so it does not depend on one running.

pub(crate) mod placement;
pub(crate) mod pods;
mod reconcile;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::informer::{self, Cache, Expectations, Key, Queue, status_code};
use placement::Action;

/// Concurrent reconciles (distinct Services).
const WORKERS: usize = 32;

/// Run the EndpointSlice controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let nodes = ctx.informers.get::<Node>();
    let queue = Queue::new();

    services.subscribe(informer::enqueue_self(queue.clone()));
    pods.subscribe(informer::enqueue_pod_services(
        queue.clone(),
        services.clone(),
        pods.clone(),
    ));
    let q = queue.clone();
    slices.subscribe(move |old, new| {
        for s in [old, new].into_iter().flatten() {
            if let Some(k) = informer::managed_service(s, reconcile::CONTROLLER_NAME) {
                q.add(k);
            }
        }
    });
    // A node's zone changing (rare) changes the zone of every endpoint on it: queue every Service.
    let (q, svcs) = (queue.clone(), services.clone());
    nodes.subscribe(move |old: Option<&Node>, new: Option<&Node>| {
        let zone = |n: Option<&Node>| {
            n.and_then(|n| n.metadata.labels.as_ref())
                .and_then(|l| l.get(pods::ZONE_LABEL).cloned())
        };
        if old.is_some() && zone(old) != zone(new) {
            for s in svcs.all() {
                q.add(key(&s.metadata));
            }
        }
    });
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            services.wait_ready().await;
            pods.wait_ready().await;
            slices.wait_ready().await;
            nodes.wait_ready().await;
        } => {}
    }
    tracing::info!("endpointslice controller: caches synced");
    for s in services.all() {
        queue.add(key(&s.metadata));
    }
    let expectations = Arc::new(Expectations::default());
    let max = ctx.config.max_endpoints_per_slice;
    let work = move |key: Key| {
        let (ctx, services, pods, slices, nodes, expectations) = (
            ctx.clone(),
            services.clone(),
            pods.clone(),
            slices.clone(),
            nodes.clone(),
            expectations.clone(),
        );
        async move {
            sync(
                &ctx,
                &key,
                &services,
                &pods,
                &slices,
                &nodes,
                &expectations,
                max,
            )
            .await
        }
    };
    queue.run(WORKERS, work, shutdown).await;
    Ok(())
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

#[allow(clippy::too_many_arguments)]
async fn sync(
    ctx: &Context,
    key: &Key,
    services: &Cache<Service>,
    pods: &Cache<Pod>,
    slices: &Cache<EndpointSlice>,
    nodes: &Cache<Node>,
    expectations: &Expectations,
    max: usize,
) -> Option<Duration> {
    if !expectations.satisfied(key, slices) {
        return Some(Duration::from_millis(20));
    }
    let (ns, name) = key;
    let mine = informer::managed_slices(slices, reconcile::CONTROLLER_NAME, ns, name);
    let service = services.get(ns, name);
    let actions = match &service {
        None => mine
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .map(Action::Delete)
            .collect(),
        Some(service) => {
            let selector = pods::selector(service)?;
            let selected = informer::selected_pods(pods, ns, selector);
            let zones: BTreeMap<String, String> = nodes
                .all()
                .iter()
                .filter_map(|n| {
                    let zone = n.metadata.labels.as_ref()?.get(pods::ZONE_LABEL)?;
                    Some((n.metadata.name.clone()?, zone.clone()))
                })
                .collect();
            reconcile::reconcile(&reconcile::Input {
                service,
                pods: &selected,
                zones: &zones,
                slices: &mine,
                max_per_slice: max,
            })
        }
    };
    if actions.is_empty() {
        return None;
    }
    let (before, after) = reconcile::counts_before_after(&mine, &actions);
    let retry = apply(&ctx.client, key, actions, expectations).await;
    // A Service's first slices are not news (and a restart rebuilding 10,000 of them should not
    // write 10,000 Events); a change in what its slices list is.
    if let Some(service) =
        service.filter(|_| retry.is_none() && !mine.is_empty() && before != after)
    {
        ctx.event(
            &informer::reference(&*service),
            "Normal",
            "EndpointsChanged",
            &format!("Endpoints: {after} (was {before})"),
        )
        .await;
    }
    retry
}

/// Apply slice writes for `key`, recording them; a retry delay when one failed.
pub(crate) async fn apply(
    client: &kube::Client,
    key: &Key,
    actions: Vec<Action>,
    expectations: &Expectations,
) -> Option<Duration> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), &key.0);
    let (mut written, mut deleted) = (Vec::new(), Vec::new());
    let mut retry = None;
    for action in actions {
        let result = match &action {
            Action::Create(s) => api.create(&PostParams::default(), s).await.map(Some),
            Action::Update(s) => {
                let name = s.metadata.name.clone().unwrap_or_default();
                api.replace(&name, &PostParams::default(), s)
                    .await
                    .map(Some)
            }
            Action::Delete(name) => match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    deleted.push((key.0.clone(), name.clone()));
                    Ok(None)
                }
                Err(e) if status_code(&e) == Some(404) => Ok(None),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(Some(s)) => {
                if let (Some(n), Some(rv)) = (s.metadata.name, s.metadata.resource_version) {
                    written.push((key.0.clone(), n, rv));
                }
            }
            Ok(None) => {}
            Err(e) => {
                if status_code(&e) != Some(409) {
                    tracing::warn!(service = %format!("{}/{}", key.0, key.1), error = %e, "writing an EndpointSlice failed");
                }
                retry = Some(Duration::from_millis(if status_code(&e) == Some(409) {
                    50
                } else {
                    1000
                }));
            }
        }
    }
    expectations.record(key.clone(), written, deleted);
    retry
}

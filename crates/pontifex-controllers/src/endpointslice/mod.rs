//! The EndpointSlice controller: every Service with a selector gets EndpointSlices listing the
//! pods it selects (`reconcile` decides, `placement` keeps churn low); this module is the loop that
//! feeds it from watches and applies its writes. Also home of what the Endpoints and mirroring
//! controllers share (`pods`, `placement`, `informer`).
//!
//! Not here: deleting slices of a deleted Service is the garbage collector's job upstream (they are
//! owned by it); this loop also deletes them itself, so it does not depend on one running.

pub(crate) mod informer;
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
use informer::{Cache, Expectations, Key, Queue, spawn_informer, status_code};
use placement::Action;

/// Concurrent reconciles (distinct Services).
const WORKERS: usize = 32;

/// Slices of this controller, indexed by `namespace/service`.
fn managed_slice_index(s: &EndpointSlice) -> Vec<String> {
    slice_index(s, reconcile::CONTROLLER_NAME)
}

/// `namespace/service` for slices that `controller` manages.
pub(crate) fn slice_index(s: &EndpointSlice, controller: &str) -> Vec<String> {
    let labels = s.metadata.labels.as_ref();
    let managed = labels
        .and_then(|l| l.get(pods::MANAGED_BY_LABEL))
        .map(String::as_str);
    match (
        managed,
        labels.and_then(|l| l.get(pods::SERVICE_NAME_LABEL)),
    ) {
        (Some(m), Some(svc)) if m == controller => vec![format!(
            "{}/{svc}",
            s.metadata.namespace.as_deref().unwrap_or_default()
        )],
        _ => Vec::new(),
    }
}

/// Run the EndpointSlice controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let services: Arc<Cache<Service>> = Cache::new(informer::namespace_index);
    let pods: Arc<Cache<Pod>> = Cache::new(informer::pod_label_index);
    let slices: Arc<Cache<EndpointSlice>> = Cache::new(managed_slice_index);
    let nodes: Arc<Cache<Node>> = Cache::new(|_| Vec::new());
    let queue = Queue::new();

    let q = queue.clone();
    spawn_informer(
        Api::<Service>::all(client.clone()),
        services.clone(),
        move |old, new| {
            if let Some(s) = new.or(old) {
                q.add(key(&s.metadata));
            }
        },
        shutdown.clone(),
    );
    spawn_informer(
        Api::<Pod>::all(client.clone()),
        pods.clone(),
        informer::enqueue_pod_services(queue.clone(), services.clone(), pods.clone()),
        shutdown.clone(),
    );
    let q = queue.clone();
    spawn_informer(
        Api::<EndpointSlice>::all(client.clone()),
        slices.clone(),
        move |old, new| {
            for s in [old, new].into_iter().flatten() {
                if let Some((ns, name)) = managed_slice_index(s)
                    .first()
                    .and_then(|i| i.split_once('/'))
                {
                    q.add((ns.to_owned(), name.to_owned()));
                }
            }
        },
        shutdown.clone(),
    );
    // A node's zone changing (rare) changes the zone of every endpoint on it: queue every Service.
    let (q, svcs) = (queue.clone(), services.clone());
    spawn_informer(
        Api::<Node>::all(client.clone()),
        nodes.clone(),
        move |old: Option<&Node>, new: Option<&Node>| {
            let zone = |n: Option<&Node>| {
                n.and_then(|n| n.metadata.labels.as_ref())
                    .and_then(|l| l.get(pods::ZONE_LABEL).cloned())
            };
            if old.is_some() && zone(old) != zone(new) {
                for s in svcs.all() {
                    q.add(key(&s.metadata));
                }
            }
        },
        shutdown.clone(),
    );
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
    // Services were queued as they were listed; their caches are complete now.
    let expectations = Arc::new(Expectations::default());
    let max = ctx.config.max_endpoints_per_slice;
    let work = move |key: Key| {
        let (client, services, pods, slices, nodes, expectations) = (
            client.clone(),
            services.clone(),
            pods.clone(),
            slices.clone(),
            nodes.clone(),
            expectations.clone(),
        );
        async move {
            sync(
                &client,
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
    client: &kube::Client,
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
    let mine = slices.indexed(&format!("{ns}/{name}"));
    let actions = match services.get(ns, name) {
        None => mine
            .iter()
            .filter_map(|s| s.metadata.name.clone())
            .map(Action::Delete)
            .collect(),
        Some(service) => {
            let selector = pods::selector(&service)?;
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
                service: &service,
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
    apply(client, key, actions, expectations).await
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

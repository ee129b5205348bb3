//! The Endpoints controller: keeps the core/v1 Endpoints object of every Service with a selector
//! (what `kubectl get endpoints` shows) in step with its pods. `reconcile` decides; this module is
//! the loop around it.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt as _};
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::informer::{self, Cache, Expectations, Key, Queue, status_code};
use reconcile::Action;

const WORKERS: usize = 32;

/// Run the Endpoints controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let queue = Queue::new();
    services.subscribe(informer::enqueue_self(queue.clone()));
    endpoints.subscribe(informer::enqueue_self(queue.clone()));
    pods.subscribe(informer::enqueue_pod_services(
        queue.clone(),
        services.clone(),
        pods.clone(),
    ));
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            services.wait_ready().await;
            pods.wait_ready().await;
            endpoints.wait_ready().await;
        } => {}
    }
    tracing::info!("endpoints controller: caches synced");
    for s in services.all() {
        queue.add((s.namespace().unwrap_or_default(), s.name_any()));
    }
    let expectations = Arc::new(Expectations::default());
    let work = move |key: Key| {
        let (client, services, pods, endpoints, expectations) = (
            client.clone(),
            services.clone(),
            pods.clone(),
            endpoints.clone(),
            expectations.clone(),
        );
        async move { sync(&client, &key, &services, &pods, &endpoints, &expectations).await }
    };
    queue.run(WORKERS, work, shutdown).await;
    Ok(())
}

async fn sync(
    client: &kube::Client,
    key: &Key,
    services: &Cache<Service>,
    pods: &Cache<Pod>,
    endpoints: &Cache<Endpoints>,
    expectations: &Expectations,
) -> Option<Duration> {
    if !expectations.satisfied(key, endpoints) {
        return Some(Duration::from_millis(20));
    }
    let (ns, name) = key;
    let service = services.get(ns, name);
    let selected = service
        .as_deref()
        .and_then(crate::endpointslice::pods::selector)
        .map(|sel| informer::selected_pods(pods, ns, sel))
        .unwrap_or_default();
    let current = endpoints.get(ns, name);
    let action = reconcile::reconcile(ns, name, service.as_deref(), &selected, current.as_deref())?;
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let result = match &action {
        Action::Create(e) => api.create(&PostParams::default(), e).await.map(Some),
        Action::Update(e) => api.replace(name, &PostParams::default(), e).await.map(Some),
        Action::Delete(n) => match api.delete(n, &DeleteParams::default()).await {
            Ok(_) => {
                expectations.record(key.clone(), Vec::new(), vec![key.clone()]);
                return None;
            }
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(Some(e)) => {
            if let Some(rv) = e.metadata.resource_version {
                expectations.record(
                    key.clone(),
                    vec![(ns.clone(), name.clone(), rv)],
                    Vec::new(),
                );
            }
            None
        }
        Ok(None) => None,
        Err(e) if status_code(&e) == Some(409) => Some(Duration::from_millis(50)),
        Err(e) => {
            tracing::warn!(service = %format!("{ns}/{name}"), error = %e, "writing Endpoints failed");
            Some(Duration::from_secs(1))
        }
    }
}

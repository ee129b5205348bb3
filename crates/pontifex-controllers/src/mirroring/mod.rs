//! The EndpointSlice mirroring controller: hand-written Endpoints of selector-less Services get
//! EndpointSlices mirroring them. `reconcile` decides; this module is the loop around it.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::endpointslice::informer::{self, Cache, Expectations, Key, Queue, spawn_informer};
use crate::endpointslice::{apply, slice_index};

const WORKERS: usize = 4;

fn mirrored_index(s: &EndpointSlice) -> Vec<String> {
    slice_index(s, reconcile::CONTROLLER_NAME)
}

/// Run the mirroring controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let services: Arc<Cache<Service>> = Cache::new(|_| Vec::new());
    let endpoints: Arc<Cache<Endpoints>> = Cache::new(|_| Vec::new());
    let slices: Arc<Cache<EndpointSlice>> = Cache::new(mirrored_index);
    let queue = Queue::new();
    spawn_informer(
        Api::<Service>::all(client.clone()),
        services.clone(),
        informer::enqueue_self(queue.clone()),
        shutdown.clone(),
    );
    spawn_informer(
        Api::<Endpoints>::all(client.clone()),
        endpoints.clone(),
        informer::enqueue_self(queue.clone()),
        shutdown.clone(),
    );
    let q = queue.clone();
    spawn_informer(
        Api::<EndpointSlice>::all(client.clone()),
        slices.clone(),
        move |old, new| {
            for s in [old, new].into_iter().flatten() {
                if let Some((ns, name)) = mirrored_index(s).first().and_then(|i| i.split_once('/'))
                {
                    q.add((ns.to_owned(), name.to_owned()));
                }
            }
        },
        shutdown.clone(),
    );
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            services.wait_ready().await;
            endpoints.wait_ready().await;
            slices.wait_ready().await;
        } => {}
    }
    tracing::info!("endpointslice mirroring controller: caches synced");
    let expectations = Arc::new(Expectations::default());
    let work = move |key: Key| {
        let (client, services, endpoints, slices, expectations) = (
            client.clone(),
            services.clone(),
            endpoints.clone(),
            slices.clone(),
            expectations.clone(),
        );
        async move {
            if !expectations.satisfied(&key, &slices) {
                return Some(Duration::from_millis(20));
            }
            let (ns, name) = &key;
            let mine = slices.indexed(&format!("{ns}/{name}"));
            let actions = reconcile::reconcile(
                services.get(ns, name).as_deref(),
                endpoints.get(ns, name).as_deref(),
                &mine,
            );
            if actions.is_empty() {
                return None;
            }
            apply(&client, &key, actions, &expectations).await
        }
    };
    queue.run(WORKERS, work, shutdown).await;
    Ok(())
}

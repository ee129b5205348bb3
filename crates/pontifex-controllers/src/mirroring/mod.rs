//! The EndpointSlice mirroring controller: hand-written Endpoints of selector-less Services get
//! EndpointSlices mirroring them. `reconcile` decides; this module is the loop around it.

mod reconcile;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt as _;
use tokio_util::sync::CancellationToken;

use crate::context::{Context, Error};
use crate::endpointslice::apply;
use crate::informer::{self, Expectations, Key, Queue};

const WORKERS: usize = 4;

/// Run the mirroring controller until `shutdown`.
pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let client = ctx.client.clone();
    let services = ctx.informers.get::<Service>();
    let endpoints = ctx.informers.get::<Endpoints>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let queue = Queue::new();
    services.subscribe(informer::enqueue_self(queue.clone()));
    endpoints.subscribe(informer::enqueue_self(queue.clone()));
    let q = queue.clone();
    slices.subscribe(move |old, new| {
        for s in [old, new].into_iter().flatten() {
            if let Some(k) = informer::managed_service(s, reconcile::CONTROLLER_NAME) {
                q.add(k);
            }
        }
    });
    tokio::select! {
        () = shutdown.cancelled() => return Ok(()),
        () = async {
            services.wait_ready().await;
            endpoints.wait_ready().await;
            slices.wait_ready().await;
        } => {}
    }
    tracing::info!("endpointslice mirroring controller: caches synced");
    for e in endpoints.all() {
        queue.add((e.namespace().unwrap_or_default(), e.name_any()));
    }
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
            let mine = informer::managed_slices(&slices, reconcile::CONTROLLER_NAME, ns, name);
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

//! A reflector store fed by a watch, which wakes its controller on every change. The node-side
//! controllers (scheduler, node IPAM, node lifecycle, LB pool) are level-triggered: each wake-up
//! takes whole snapshots of their stores and recomputes, so one shared wake signal suffices.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Start watching `api` into a store; every event calls `wake.notify_one()`. The watch stops with
/// `shutdown`.
pub(crate) fn store<K>(api: Api<K>, wake: Arc<Notify>, shutdown: CancellationToken) -> Store<K>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = stream.next() => match event {
                    Some(Ok(_)) => wake.notify_one(),
                    Some(Err(e)) => tracing::debug!(error = %e, "watch failed; retrying"),
                    None => break,
                },
            }
        }
    });
    reader
}

/// The store's objects, owned.
pub(crate) fn snapshot<K: kube::Resource + Clone>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|o| (**o).clone()).collect()
}

/// Wait for the next wake-up, the periodic resync, or shutdown (true).
pub(crate) async fn next(
    wake: &Notify,
    resync: std::time::Duration,
    shutdown: &CancellationToken,
) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => return true,
        () = wake.notified() => {}
        () = tokio::time::sleep(resync) => {}
    }
    // Let a burst of events land before recomputing.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    shutdown.is_cancelled()
}

/// A reference to an object for an Event.
pub(crate) fn reference<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: obj.meta().name.clone(),
        namespace: obj.meta().namespace.clone(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

//! A kube-rs reflector whose every change wakes a [`Notify`]: the workload loops resync all their
//! objects on any change (level-triggered) rather than keeping per-key work queues.

use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt as _;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Watch every object of `api` into a store; each event wakes `notify`. The task ends with `shutdown`.
pub(crate) fn start<K>(api: Api<K>, notify: &Arc<Notify>, shutdown: &CancellationToken) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let (notify, shutdown) = (notify.clone(), shutdown.clone());
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                ev = stream.next() => match ev {
                    Some(Ok(_)) => notify.notify_one(),
                    Some(Err(e)) => tracing::debug!(error = %e, "watch error, retrying"),
                    None => break,
                },
            }
        }
    });
    store
}

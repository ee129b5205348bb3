//! The IO shell every controller loop shares: one cache per kind fed by ONE kube-rs watcher for the
//! whole process (the Endpoints, EndpointSlice, scheduler, ReplicaSet... loops all read the same pod
//! cache, so 100,000 pods are listed and decoded once, not once per controller), a de-duplicating
//! work queue of `namespace/name` keys, and a record of a controller's own writes so a pass never
//! acts on a cache older than them.
//!
//! Why not `kube::runtime::reflector`'s `Store`: it has no indexes (finding the pods of one selector,
//! or the slices of one Service, would scan every object on every pass, which does not scale to
//! 100,000 pods), and it has one subscriber.
//!
//! Tasks: one per watched kind (applies events to its cache, then calls every subscriber, which only
//! enqueue keys or wake a loop — never block) and each queue-driven loop's `workers` tasks taking keys
//! off one unbounded queue. A key is never processed by two workers at once: a key added while in
//! flight is processed again afterwards. A subscriber added after the first list has missed it, so
//! a loop subscribes first, then waits for [`Cache::wait_ready`], then looks at [`Cache::all`].

use std::any::{Any, TypeId};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

/// `(namespace, name)`.
pub(crate) type Key = (String, String);

/// A kind the controllers cache, with the secondary index its readers need.
pub(crate) trait Cached:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    /// The index entries of one object (none by default).
    fn index(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Cached for Pod {
    fn index(&self) -> Vec<String> {
        pod_label_index(self)
    }
}
impl Cached for Service {
    fn index(&self) -> Vec<String> {
        namespace_index(self)
    }
}
impl Cached for EndpointSlice {
    fn index(&self) -> Vec<String> {
        slice_index(self)
    }
}
impl Cached for Endpoints {}
impl Cached for Node {}
impl Cached for Lease {}
impl Cached for Namespace {}
impl Cached for ReplicaSet {}
impl Cached for Deployment {}

/// A subscriber: called with (old, new) after every change.
type Handler<K> = Arc<dyn Fn(Option<&K>, Option<&K>) + Send + Sync>;

/// Objects of one kind by key, plus a secondary index.
pub(crate) struct Cache<K> {
    inner: RwLock<Inner<K>>,
    index: fn(&K) -> Vec<String>,
    handlers: RwLock<Vec<Handler<K>>>,
    ready: tokio::sync::watch::Sender<bool>,
}

struct Inner<K> {
    objects: HashMap<Key, Arc<K>>,
    by_index: HashMap<String, BTreeSet<Key>>,
}

fn key_of<K: Resource>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl<K: Resource> Cache<K> {
    /// An empty cache indexing each object under the strings `index` returns.
    pub(crate) fn new(index: fn(&K) -> Vec<String>) -> Arc<Self> {
        Arc::new(Cache {
            inner: RwLock::new(Inner {
                objects: HashMap::new(),
                by_index: HashMap::new(),
            }),
            index,
            handlers: RwLock::default(),
            ready: tokio::sync::watch::channel(false).0,
        })
    }

    /// Call `f(old, new)` after every change from now on.
    pub(crate) fn subscribe(&self, f: impl Fn(Option<&K>, Option<&K>) + Send + Sync + 'static) {
        self.handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// Wake `wake` after every change from now on (for level-triggered loops).
    pub(crate) fn wake_on_change(&self, wake: Arc<Notify>) {
        self.subscribe(move |_, _| wake.notify_one());
    }

    /// Wake `wake` after the changes `matters(old, new)` picks: a loop that recomputes over every
    /// object must not run on each of 100,000 pods' status writes when only a few kinds of change
    /// concern it.
    pub(crate) fn wake_on(
        &self,
        wake: Arc<Notify>,
        matters: impl Fn(Option<&K>, Option<&K>) -> bool + Send + Sync + 'static,
    ) {
        self.subscribe(move |old, new| {
            if matters(old, new) {
                wake.notify_one();
            }
        });
    }

    fn notify(&self, old: Option<&K>, new: Option<&K>) {
        let handlers = self.handlers.read().unwrap_or_else(|e| e.into_inner());
        for h in handlers.iter() {
            h(old, new);
        }
    }

    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// The objects indexed under `index`.
    pub(crate) fn indexed(&self, index: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .by_index
            .get(index)
            .into_iter()
            .flatten()
            .filter_map(|k| inner.objects.get(k).cloned())
            .collect()
    }

    pub(crate) fn all(&self) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.objects.values().cloned().collect()
    }

    /// Every object, owned (for the pure reconcilers of the level-triggered loops).
    pub(crate) fn snapshot(&self) -> Vec<K>
    where
        K: Clone,
    {
        // Clone outside the lock: the informer must not wait for a deep copy to apply an event.
        self.all().into_iter().map(|o| (*o).clone()).collect()
    }

    /// Has the first complete list arrived?
    pub(crate) fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Wait for the first complete list.
    pub(crate) async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    fn put(&self, obj: Arc<K>) -> Option<Arc<K>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let key = key_of(&*obj);
        let old = inner.objects.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            for i in (self.index)(old) {
                if let Some(set) = inner.by_index.get_mut(&i) {
                    set.remove(&key);
                    if set.is_empty() {
                        inner.by_index.remove(&i);
                    }
                }
            }
        }
        for i in (self.index)(&obj) {
            inner.by_index.entry(i).or_default().insert(key.clone());
        }
        old
    }

    fn remove(&self, key: &Key) -> Option<Arc<K>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let old = inner.objects.remove(key)?;
        for i in (self.index)(&old) {
            if let Some(set) = inner.by_index.get_mut(&i) {
                set.remove(key);
                if set.is_empty() {
                    inner.by_index.remove(&i);
                }
            }
        }
        Some(old)
    }
}

/// The process's caches, one per kind, each started by the first loop that asks for it and stopped
/// with the controllers' shutdown token.
pub(crate) struct Informers {
    client: kube::Client,
    shutdown: CancellationToken,
    caches: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Informers {
    pub(crate) fn new(client: kube::Client, shutdown: CancellationToken) -> Self {
        Informers {
            client,
            shutdown,
            caches: Mutex::default(),
        }
    }

    /// The cluster-wide cache of `K`, watching from the first call on.
    pub(crate) fn get<K: Cached>(&self) -> Arc<Cache<K>> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = caches.get(&TypeId::of::<K>()) {
            return c
                .clone()
                .downcast::<Cache<K>>()
                .expect("caches are keyed by type");
        }
        let cache = Cache::new(K::index);
        caches.insert(TypeId::of::<K>(), cache.clone());
        spawn_informer(
            Api::<K>::all(self.client.clone()),
            cache.clone(),
            self.shutdown.clone(),
        );
        cache
    }
}

/// Keep `cache` in step with `api` until `shutdown`, notifying its subscribers after each change
/// (after a relist, for every object that changed or vanished).
fn spawn_informer<K>(
    api: Api<K>,
    cache: Arc<Cache<K>>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        // Big pages: a relist of 100,000 pods in pages of 500 is 200 round trips.
        let mut stream = watcher(api, watcher::Config::default().page_size(5_000))
            .default_backoff()
            .boxed();
        let mut buffer: Vec<K> = Vec::new();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Err(e)) => tracing::debug!(error = %e, "watch failed; retrying"),
                Some(Ok(watcher::Event::Init)) => buffer.clear(),
                Some(Ok(watcher::Event::InitApply(o))) => buffer.push(o),
                Some(Ok(watcher::Event::InitDone)) => {
                    let fresh: HashSet<Key> = buffer.iter().map(key_of).collect();
                    let gone: Vec<Key> = {
                        let inner = cache.inner.read().unwrap_or_else(|e| e.into_inner());
                        inner
                            .objects
                            .keys()
                            .filter(|k| !fresh.contains(*k))
                            .cloned()
                            .collect()
                    };
                    for k in gone {
                        if let Some(old) = cache.remove(&k) {
                            cache.notify(Some(&old), None);
                        }
                    }
                    for o in buffer.drain(..) {
                        let new = Arc::new(o);
                        let old = cache.put(new.clone());
                        let same = old.as_ref().is_some_and(|old| {
                            old.resource_version().is_some()
                                && old.resource_version() == new.resource_version()
                        });
                        if !same {
                            cache.notify(old.as_deref(), Some(&new));
                        }
                    }
                    cache.ready.send_replace(true);
                }
                Some(Ok(watcher::Event::Apply(o))) => {
                    let new = Arc::new(o);
                    let old = cache.put(new.clone());
                    cache.notify(old.as_deref(), Some(&new));
                }
                Some(Ok(watcher::Event::Delete(o))) => {
                    let old = cache.remove(&key_of(&o));
                    cache.notify(old.as_deref().or(Some(&o)), None);
                }
            }
        }
    })
}

/// Wait for the next wake-up, the periodic resync, or shutdown (true). For level-triggered loops.
pub(crate) async fn next(wake: &Notify, resync: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => return true,
        () = wake.notified() => {}
        () = tokio::time::sleep(resync) => {}
    }
    // Let a burst of events land before recomputing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    shutdown.is_cancelled()
}

/// A reference to an object for an Event.
pub(crate) fn reference<K: Resource<DynamicType = ()>>(
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

/// A de-duplicating queue of keys.
pub(crate) struct Queue {
    tx: mpsc::UnboundedSender<Key>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Key>>,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    pending: HashSet<Key>,
    active: HashSet<Key>,
    dirty: HashSet<Key>,
}

impl Queue {
    pub(crate) fn new() -> Arc<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        Arc::new(Queue {
            tx,
            rx: tokio::sync::Mutex::new(rx),
            state: Mutex::new(QueueState::default()),
        })
    }

    pub(crate) fn add(&self, key: Key) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.active.contains(&key) {
            st.dirty.insert(key);
        } else if st.pending.insert(key.clone()) {
            let _ = self.tx.send(key);
        }
    }

    pub(crate) fn add_after(self: &Arc<Self>, key: Key, delay: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.add(key);
        });
    }

    /// Process keys with `workers` concurrent calls of `work` until `shutdown`. `work` returns a
    /// delay after which to process the key again, if it must.
    pub(crate) async fn run<F, Fut>(
        self: Arc<Self>,
        workers: usize,
        work: F,
        shutdown: CancellationToken,
    ) where
        F: Fn(Key) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<Duration>> + Send,
    {
        let work = Arc::new(work);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let (me, work, shutdown) = (self.clone(), work.clone(), shutdown.clone());
            set.spawn(async move {
                loop {
                    let key = tokio::select! {
                        () = shutdown.cancelled() => return,
                        k = async { me.rx.lock().await.recv().await } => match k {
                            Some(k) => k,
                            None => return,
                        },
                    };
                    {
                        let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.pending.remove(&key);
                        st.active.insert(key.clone());
                    }
                    let again = work(key.clone()).await;
                    let dirty = {
                        let mut st = me.state.lock().unwrap_or_else(|e| e.into_inner());
                        st.active.remove(&key);
                        st.dirty.remove(&key)
                    };
                    if dirty {
                        me.add(key);
                    } else if let Some(delay) = again {
                        me.add_after(key, delay);
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// What this controller last wrote per key, so that a pass waits for its cache to catch up rather
/// than act on state older than its own writes (and, say, create a slice twice).
#[derive(Default)]
pub(crate) struct Expectations {
    inner: Mutex<HashMap<Key, Expected>>,
}

struct Expected {
    /// Objects (namespace, name) that must show at least this resourceVersion.
    written: Vec<(String, String, String)>,
    /// Objects that must be gone.
    deleted: Vec<(String, String)>,
    since: Instant,
}

/// How long to wait for the cache before acting anyway.
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);

fn rv_at_least(seen: Option<&str>, want: &str) -> bool {
    match (
        seen.and_then(|s| s.parse::<u64>().ok()),
        want.parse::<u64>(),
    ) {
        (Some(s), Ok(w)) => s >= w,
        _ => seen == Some(want),
    }
}

impl Expectations {
    pub(crate) fn record(
        &self,
        key: Key,
        written: Vec<(String, String, String)>,
        deleted: Vec<(String, String)>,
    ) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if written.is_empty() && deleted.is_empty() {
            inner.remove(&key);
        } else {
            inner.insert(
                key,
                Expected {
                    written,
                    deleted,
                    since: Instant::now(),
                },
            );
        }
    }

    /// Has `cache` caught up with the writes recorded for `key`?
    pub(crate) fn satisfied<K: Resource>(&self, key: &Key, cache: &Cache<K>) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(exp) = inner.get(key) else {
            return true;
        };
        let ok = exp.since.elapsed() > EXPECTATION_TIMEOUT
            || (exp.written.iter().all(|(ns, name, rv)| {
                rv_at_least(
                    cache
                        .get(ns, name)
                        .as_deref()
                        .and_then(|o| o.meta().resource_version.as_deref()),
                    rv,
                )
            }) && exp
                .deleted
                .iter()
                .all(|(ns, name)| cache.get(ns, name).is_none()));
        if ok {
            inner.remove(key);
        }
        ok
    }
}

/// The HTTP status of an API error.
pub(crate) fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Whether a pod change can matter to a workload controller: a pod owned by a ReplicaSet.
pub(crate) fn owned_by_replica_set(old: Option<&Pod>, new: Option<&Pod>) -> bool {
    [old, new].into_iter().flatten().any(|p| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "ReplicaSet")
    })
}

/// Whether a pod change can matter to the scheduler: a pod without a node, or one that comes or goes
/// (which changes how loaded its node is).
pub(crate) fn scheduling_relevant(old: Option<&Pod>, new: Option<&Pod>) -> bool {
    let unbound = |p: Option<&Pod>| {
        p.is_some_and(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none())
    };
    old.is_none() || new.is_none() || unbound(old) || unbound(new)
}

/// Index keys for a pod: `namespace/label=value` for each label.
pub(crate) fn pod_label_index(pod: &k8s_openapi::api::core::v1::Pod) -> Vec<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    pod.metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{ns}/{k}={v}"))
        .collect()
}

/// The pods of `namespace` that `selector` matches, through the label index.
pub(crate) fn selected_pods(
    pods: &Cache<k8s_openapi::api::core::v1::Pod>,
    namespace: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> Vec<Arc<k8s_openapi::api::core::v1::Pod>> {
    let Some((k, v)) = selector.iter().next() else {
        return Vec::new();
    };
    pods.indexed(&format!("{namespace}/{k}={v}"))
        .into_iter()
        .filter(|p| crate::endpointslice::pods::selects(selector, p.metadata.labels.as_ref()))
        .collect()
}

/// Index keys for an EndpointSlice: `<managed-by>/<namespace>/<service>`.
pub(crate) fn slice_index(s: &EndpointSlice) -> Vec<String> {
    let labels = s.metadata.labels.as_ref();
    match (
        labels.and_then(|l| l.get(crate::endpointslice::pods::MANAGED_BY_LABEL)),
        labels.and_then(|l| l.get(crate::endpointslice::pods::SERVICE_NAME_LABEL)),
    ) {
        (Some(by), Some(svc)) => vec![format!(
            "{by}/{}/{svc}",
            s.metadata.namespace.as_deref().unwrap_or_default()
        )],
        _ => Vec::new(),
    }
}

/// The Service of a slice that `controller` manages.
pub(crate) fn managed_service(s: &EndpointSlice, controller: &str) -> Option<Key> {
    let labels = s.metadata.labels.as_ref()?;
    if labels.get(crate::endpointslice::pods::MANAGED_BY_LABEL)? != controller {
        return None;
    }
    let svc = labels.get(crate::endpointslice::pods::SERVICE_NAME_LABEL)?;
    Some((
        s.metadata.namespace.clone().unwrap_or_default(),
        svc.clone(),
    ))
}

/// The slices `controller` manages for the Service `namespace/name`.
pub(crate) fn managed_slices(
    slices: &Cache<EndpointSlice>,
    controller: &str,
    namespace: &str,
    name: &str,
) -> Vec<Arc<EndpointSlice>> {
    slices.indexed(&format!("{controller}/{namespace}/{name}"))
}

/// Index keys for a Service: its namespace.
pub(crate) fn namespace_index<K: Resource>(o: &K) -> Vec<String> {
    vec![o.namespace().unwrap_or_default()]
}

/// An `on_change` for pods: queue the Services selecting the pod before or after the change. Not
/// during the first list: every Service is queued when the Services are first listed, and mapping
/// 100,000 listed pods one by one to their Services would only queue them again.
pub(crate) fn enqueue_pod_services(
    queue: Arc<Queue>,
    services: Arc<Cache<k8s_openapi::api::core::v1::Service>>,
    pods: Arc<Cache<k8s_openapi::api::core::v1::Pod>>,
) -> impl Fn(Option<&k8s_openapi::api::core::v1::Pod>, Option<&k8s_openapi::api::core::v1::Pod>)
+ Send
+ Sync
+ 'static {
    move |old, new| {
        if !pods.is_ready() {
            return;
        }
        for k in services_of_pod(&services, old, new) {
            queue.add(k);
        }
    }
}

/// The Services of the pod's namespace whose selector matches `old` or `new`.
pub(crate) fn services_of_pod(
    services: &Cache<k8s_openapi::api::core::v1::Service>,
    old: Option<&k8s_openapi::api::core::v1::Pod>,
    new: Option<&k8s_openapi::api::core::v1::Pod>,
) -> Vec<Key> {
    let Some(ns) = new.or(old).and_then(|p| p.metadata.namespace.clone()) else {
        return Vec::new();
    };
    services
        .indexed(&ns)
        .into_iter()
        .filter(|s| {
            crate::endpointslice::pods::selector(s).is_some_and(|sel| {
                [old, new]
                    .into_iter()
                    .flatten()
                    .any(|p| crate::endpointslice::pods::selects(sel, p.metadata.labels.as_ref()))
            })
        })
        .map(|s| key_of(&*s))
        .collect()
}

/// An `on_change` that queues the changed object's own key.
pub(crate) fn enqueue_self<K: Resource>(
    queue: Arc<Queue>,
) -> impl Fn(Option<&K>, Option<&K>) + Send + Sync + 'static {
    move |old, new| {
        if let Some(o) = new.or(old) {
            queue.add(key_of(o));
        }
    }
}

#[cfg(test)]
mod tests;

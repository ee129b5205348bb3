//! The garbage collector: deletes objects whose owners are gone, and carries out the `Foreground` and
//! `Orphan` cascades the API server records as the `foregroundDeletion` and `orphan` finalizers. The
//! decision is in [`reconcile`]; this is the loop.
//!
//! Like upstream's graph builder, it watches every listable, deletable kind that discovery finds
//! (again every minute, for kinds that appear later) and keeps, per object, only what the decision
//! needs: its ownerReferences, finalizers and deletion state ([`Meta`] decodes nothing else, so a
//! pod's spec and status are skipped, not parsed). A pass decides over that graph whenever a change
//! can matter — an object deleted (it may have been an owner), one being deleted (finalizers to
//! honour), or one whose owner is not in the graph — at most every [`MIN_PASS_INTERVAL`], and in any
//! case every [`RESYNC`].

mod reconcile;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{
    Api, ApiResource, DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dynamic::{self, Resource};
use crate::{Context, Error};
use reconcile::{Action, Node, OwnerRef};

const MIN_PASS_INTERVAL: Duration = Duration::from_millis(500);
const RESYNC: Duration = Duration::from_secs(30);
const REDISCOVER: Duration = Duration::from_secs(60);

/// An object's metadata only: the rest of the document is skipped while decoding.
#[derive(Clone, Debug, serde::Deserialize)]
struct Meta {
    #[serde(default)]
    metadata: ObjectMeta,
}

impl kube::Resource for Meta {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.kind.as_str().into()
    }
    fn group(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.group.as_str().into()
    }
    fn version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.version.as_str().into()
    }
    fn api_version(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.api_version.as_str().into()
    }
    fn plural(dt: &ApiResource) -> std::borrow::Cow<'_, str> {
        dt.plural.as_str().into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What the collector keeps of one object.
#[derive(Clone, Debug)]
struct Entry {
    resource: Arc<Resource>,
    namespace: Option<String>,
    name: String,
    resource_version: Option<String>,
    owners: Vec<OwnerReference>,
    finalizers: Vec<String>,
    deleting: bool,
}

/// Every watched object by uid, and whether a pass is due.
#[derive(Default)]
struct Graph {
    objects: Mutex<HashMap<String, Entry>>,
    due: Notify,
    /// Watches that have not delivered their first complete list yet: until they have, an owner
    /// may only look missing.
    unlisted: AtomicUsize,
}

impl Graph {
    fn apply(&self, resource: &Arc<Resource>, meta: ObjectMeta) {
        let Some(uid) = meta.uid else { return };
        let entry = Entry {
            resource: resource.clone(),
            namespace: meta.namespace,
            name: meta.name.unwrap_or_default(),
            resource_version: meta.resource_version,
            owners: meta.owner_references.unwrap_or_default(),
            finalizers: meta.finalizers.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        };
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        // Dropped references (an orphaning step done) and changed finalizers can unblock an
        // owner's deletion; a new reference to an unknown owner may be to one already gone.
        let matters = entry.deleting
            || entry.owners.iter().any(|o| !objects.contains_key(&o.uid))
            || objects.get(&uid).is_some_and(|old| {
                old.owners != entry.owners || old.finalizers != entry.finalizers
            });
        objects.insert(uid, entry);
        if matters {
            self.due.notify_one();
        }
    }

    fn delete(&self, uid: Option<&str>) {
        if let Some(uid) = uid {
            self.objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(uid);
        }
        self.due.notify_one();
    }

    /// After a relist of `resource`: forget its objects that were not listed.
    fn retain_listed(&self, resource: &Arc<Resource>, listed: &HashSet<String>) {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.retain(|uid, e| !Arc::ptr_eq(&e.resource, resource) || listed.contains(uid));
        self.due.notify_one();
    }

    fn snapshot(&self) -> HashMap<String, Entry> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub(crate) async fn run(ctx: Arc<Context>, shutdown: CancellationToken) -> Result<(), Error> {
    let graph = Arc::new(Graph::default());
    let mut watched: HashSet<(String, String)> = HashSet::new();
    let mut resources: Vec<Resource> = Vec::new();
    let mut discovered_at = None::<tokio::time::Instant>;
    loop {
        if discovered_at.is_none_or(|t| t.elapsed() >= REDISCOVER) {
            match dynamic::resources(&ctx.client).await {
                Ok(found) => {
                    for r in &found {
                        let id = (r.ar.api_version.clone(), r.ar.plural.clone());
                        if watched.insert(id) {
                            let r = Arc::new(r.clone());
                            if !feed_from_shared_cache(&ctx, &r, &graph) {
                                spawn_watch(&ctx, r, graph.clone(), &shutdown);
                            }
                        }
                    }
                    resources = found;
                    discovered_at = Some(tokio::time::Instant::now());
                }
                Err(e) => {
                    tracing::info!(error = %e, "garbage collector discovery failed; retrying")
                }
            }
        }
        if graph.unlisted.load(Ordering::Acquire) > 0 {
            // Not every kind is listed yet; wait for more of the graph.
        } else if let Err(e) = pass(&ctx, &resources, &graph).await {
            tracing::info!(error = %e, "garbage collection pass failed; retrying");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = graph.due.notified() => {}
            () = tokio::time::sleep(RESYNC) => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(MIN_PASS_INTERVAL) => {}
        }
    }
}

/// For the kinds the other controllers already cache (pods above all), feed the graph from that
/// cache rather than list and watch them a second time. False for any other kind.
fn feed_from_shared_cache(ctx: &Context, resource: &Arc<Resource>, graph: &Arc<Graph>) -> bool {
    use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
    use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let ar = &resource.ar;
    match (ar.group.as_str(), ar.version.as_str(), ar.kind.as_str()) {
        ("", "v1", "Pod") => feed::<Pod>(ctx, resource, graph),
        ("", "v1", "Service") => feed::<Service>(ctx, resource, graph),
        ("", "v1", "Endpoints") => feed::<Endpoints>(ctx, resource, graph),
        ("discovery.k8s.io", "v1", "EndpointSlice") => feed::<EndpointSlice>(ctx, resource, graph),
        ("apps", "v1", "ReplicaSet") => feed::<ReplicaSet>(ctx, resource, graph),
        ("apps", "v1", "Deployment") => feed::<Deployment>(ctx, resource, graph),
        _ => return false,
    }
    true
}

fn feed<K: crate::informer::Cached>(ctx: &Context, resource: &Arc<Resource>, graph: &Arc<Graph>) {
    let cache = ctx.informers.get::<K>();
    let (r, g) = (resource.clone(), graph.clone());
    // Subscribe first, then take what is cached: nothing falls between the two (twice is harmless).
    cache.subscribe(move |old, new| match new {
        Some(n) => g.apply(&r, n.meta().clone()),
        None => g.delete(old.and_then(|o| o.meta().uid.as_deref())),
    });
    graph.unlisted.fetch_add(1, Ordering::AcqRel);
    let (r, g) = (resource.clone(), graph.clone());
    tokio::spawn(async move {
        cache.wait_ready().await;
        for o in cache.all() {
            g.apply(&r, o.meta().clone());
        }
        g.unlisted.fetch_sub(1, Ordering::AcqRel);
        g.due.notify_one();
    });
}

/// Watch the metadata of `resource` into `graph` until `shutdown`.
fn spawn_watch(
    ctx: &Context,
    resource: Arc<Resource>,
    graph: Arc<Graph>,
    shutdown: &CancellationToken,
) {
    let api: Api<Meta> = Api::all_with(ctx.client.clone(), &resource.ar);
    let shutdown = shutdown.clone();
    graph.unlisted.fetch_add(1, Ordering::AcqRel);
    tokio::spawn(async move {
        let mut first_list = true;
        let mut stream = watcher(api, watcher::Config::default().page_size(5_000))
            .default_backoff()
            .boxed();
        let mut listed = HashSet::new();
        loop {
            let event = tokio::select! {
                () = shutdown.cancelled() => return,
                e = stream.next() => e,
            };
            match event {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "garbage collector watch failed; retrying")
                }
                Some(Ok(watcher::Event::Init)) => listed.clear(),
                Some(Ok(watcher::Event::InitApply(m))) => {
                    listed.extend(m.metadata.uid.clone());
                    graph.apply(&resource, m.metadata);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    graph.retain_listed(&resource, &listed);
                    if std::mem::take(&mut first_list) {
                        graph.unlisted.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Some(Ok(watcher::Event::Apply(m))) => graph.apply(&resource, m.metadata),
                Some(Ok(watcher::Event::Delete(m))) => graph.delete(m.metadata.uid.as_deref()),
            }
        }
    });
}

async fn pass(ctx: &Context, resources: &[Resource], graph: &Graph) -> Result<(), Error> {
    let objects = graph.snapshot();
    let nodes: Vec<Node> = objects
        .iter()
        .map(|(uid, e)| Node {
            uid: uid.clone(),
            owners: e
                .owners
                .iter()
                .map(|o| OwnerRef {
                    uid: o.uid.clone(),
                    block_owner_deletion: o.block_owner_deletion == Some(true),
                })
                .collect(),
            finalizers: e.finalizers.clone(),
            deleting: e.deleting,
        })
        .collect();
    for action in reconcile::reconcile(&nodes) {
        let uid = match &action {
            Action::Delete { uid, .. }
            | Action::RemoveOwners { uid, .. }
            | Action::RemoveFinalizer { uid, .. } => uid.clone(),
        };
        let Some(l) = objects.get(&uid) else { continue };
        let ns = l.namespace.as_deref();
        let name = l.name.clone();
        let api = dynamic::api(&ctx.client, &l.resource, ns);
        let result = match action {
            Action::Delete { foreground, .. } => {
                let orphaned = l.owners.iter().all(|o| !objects.contains_key(&o.uid));
                // The graph may lag behind a just-created owner: ask the server before deleting.
                if orphaned && any_owner_live(ctx, resources, ns, &l.owners).await {
                    continue;
                }
                let dp = DeleteParams {
                    propagation_policy: Some(if foreground {
                        PropagationPolicy::Foreground
                    } else {
                        PropagationPolicy::Background
                    }),
                    preconditions: Some(Preconditions {
                        uid: Some(uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                tracing::info!(kind = %l.resource.ar.kind, namespace = ?ns, %name, "garbage collecting");
                api.delete(&name, &dp).await.map(|_| ())
            }
            Action::RemoveOwners { owners, .. } => {
                let left: Vec<_> = l
                    .owners
                    .iter()
                    .filter(|o| !owners.contains(&o.uid))
                    .collect();
                // An empty list is sent as null: removed, as Kubernetes never stores an empty one.
                let left = if left.is_empty() {
                    json!(null)
                } else {
                    json!(left)
                };
                let patch = json!({ "metadata": {
                    "ownerReferences": left,
                    "resourceVersion": l.resource_version,
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            Action::RemoveFinalizer { finalizer, .. } => {
                let left: Vec<&String> = l.finalizers.iter().filter(|f| *f != finalizer).collect();
                let left = if left.is_empty() {
                    json!(null)
                } else {
                    json!(left)
                };
                let patch = json!({ "metadata": {
                    "finalizers": left,
                    "resourceVersion": l.resource_version,
                }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
        };
        match result {
            Ok(()) => {}
            // Changed or gone since the snapshot: the next pass sees the new state.
            Err(e) if dynamic::is_gone_or_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Whether some owner of `obj` exists now with the uid the reference names. An owner whose kind
/// discovery does not know, and any error other than 404, count as live: as upstream, the collector
/// does not delete what it cannot prove orphaned (it retries on the next pass).
async fn any_owner_live(
    ctx: &Context,
    resources: &[Resource],
    namespace: Option<&str>,
    owners: &[OwnerReference],
) -> bool {
    for o in owners {
        // Any served version of the owner's group and kind will do: the uid is the same in each.
        let group = o.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let Some(r) = resources
            .iter()
            .find(|r| r.ar.group == group && r.ar.kind == o.kind)
        else {
            return true;
        };
        let api = dynamic::api(&ctx.client, r, namespace);
        match api.get_opt(&o.name).await {
            Ok(Some(owner)) if owner.metadata.uid.as_deref() == Some(o.uid.as_str()) => {
                return true;
            }
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}

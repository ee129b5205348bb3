//! kube-rs against the real server: CRUD and paged lists of Services, a reflector that converges
//! through updates, deletes, a server restart and a 410 Gone, optimistic concurrency on one ConfigMap,
//! and watch bookmarks.
//!
//! The shared helpers at the top (`start`, `client`, `service`) are used by the other suites too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Client, ResourceExt as _};
use serde_json::json;
use test_support::TestServer;

/// Start `pontifex apiserver` with `extra` flags on a new data directory.
pub(crate) fn start(extra: &[&str]) -> TestServer {
    TestServer::start(Path::new(env!("CARGO_BIN_EXE_pontifex")), extra)
        .expect("starting pontifex apiserver")
}

/// A kube-rs client built from the kubeconfig the server wrote (bearer token, inline CA).
pub(crate) async fn client(server: &TestServer) -> Client {
    let kubeconfig = Kubeconfig::read_from(server.kubeconfig()).expect("reading the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("building the client")
}

/// A Service named `name` with `spec` (ports default to one TCP port 80).
pub(crate) fn service(name: &str, mut spec: serde_json::Value) -> Service {
    if spec.get("ports").is_none() {
        spec["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))
        .expect("a valid Service")
}

/// Create namespace `ns`.
pub(crate) async fn namespace(client: &Client, ns: &str) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(json!({"metadata": {"name": ns}})).expect("a valid Namespace");
    nss.create(&PostParams::default(), &obj)
        .await
        .expect("creating the namespace");
}

/// The HTTP status code of an API error (None for transport errors).
/// Open a watch from the current list's resourceVersion, create Service `name`, and check that the
/// watch reports it as ADDED. Returns the open watch.
pub(crate) async fn watch_and_create(
    api: &Api<Service>,
    name: &str,
) -> impl futures::Stream<Item = Result<WatchEvent<Service>, kube::Error>> {
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .expect("a list RV");
    let mut watch = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &service(name, json!({})))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await {
        Ok(Ok(Some(WatchEvent::Added(s)))) => assert_eq!(s.name_any(), name),
        other => panic!("expected ADDED {name}, got {other:?}"),
    }
    watch
}

pub(crate) fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Run `f` on this worker thread without starving the runtime (TestServer's calls block).
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn config_map(name: &str, data: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
        .expect("a valid ConfigMap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_crud_and_paged_list() {
    let server = start(&[]);
    let client = client(&server).await;
    namespace(&client, "crud").await;
    let api: Api<Service> = Api::namespaced(client.clone(), "crud");

    for i in 0..5 {
        let created = api
            .create(
                &PostParams::default(),
                &service(&format!("svc-{i}"), json!({})),
            )
            .await
            .unwrap();
        let ip = created
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .expect("a cluster IP");
        let ip: std::net::Ipv4Addr = ip.parse().expect("an IPv4 cluster IP");
        assert_eq!(ip.octets()[0], 10, "{ip} is not in 10.96.0.0/12");
        assert_eq!(ip.octets()[1] & 0xf0, 96, "{ip} is not in 10.96.0.0/12");
        assert!(created.metadata.uid.is_some() && created.metadata.resource_version.is_some());
    }
    // A second create of the same name is a conflict.
    let err = api
        .create(&PostParams::default(), &service("svc-0", json!({})))
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409), "{err}");

    let got = api.get("svc-3").await.unwrap();
    assert_eq!(got.name_any(), "svc-3");
    assert_eq!(got.namespace().as_deref(), Some("crud"));

    // Pages of two, linked by continue tokens: 2 + 2 + 1, in name order, the last without a token.
    let mut names = Vec::new();
    let mut sizes = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = api.list(&params).await.unwrap();
        sizes.push(page.items.len());
        names.extend(page.items.iter().map(|s| s.name_any()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(2).continue_token(&token),
            None => break,
        }
        assert!(sizes.len() < 10, "the continue tokens never end");
    }
    assert_eq!(sizes, [2, 2, 1]);
    assert_eq!(names, ["svc-0", "svc-1", "svc-2", "svc-3", "svc-4"]);

    // The unpaged list agrees, and a list of another namespace does not see them.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        5
    );
    let other: Api<Service> = Api::namespaced(client.clone(), "default");
    assert!(
        other
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .all(|s| s.name_any() == "kubernetes")
    );

    api.delete("svc-3", &DeleteParams::default()).await.unwrap();
    let err = api.get("svc-3").await.unwrap_err();
    assert_eq!(api_code(&err), Some(404), "{err}");
    let err = api
        .delete("svc-3", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(404), "{err}");
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(left, ["svc-0", "svc-1", "svc-2", "svc-4"]);
}

/// A reflector over the Services of one namespace, polled by a task that can be paused.
struct Reflector {
    store: Store<Service>,
    /// How many times the watcher (re)started from a full list.
    inits: Arc<AtomicUsize>,
    gate: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reflector {
    fn start(api: Api<Service>, config: watcher::Config) -> Self {
        let (store, writer) = reflector::store();
        let inits = Arc::new(AtomicUsize::new(0));
        let (gate, mut open) = tokio::sync::watch::channel(true);
        let counter = inits.clone();
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            loop {
                // While paused, the watcher is not polled: its watch connection stays as it is.
                if open.wait_for(|open| *open).await.is_err() {
                    return;
                }
                match stream.next().await {
                    Some(Ok(watcher::Event::Init)) => {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        });
        Reflector {
            store,
            inits,
            gate,
            task,
        }
    }

    /// Wait until the store holds exactly the Services the server lists, at the same resourceVersions.
    async fn converges(&self, api: &Api<Service>, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut server_view = BTreeMap::new();
        let mut cached = BTreeMap::new();
        while tokio::time::Instant::now() < deadline {
            if let Ok(list) = api.list(&ListParams::default()).await {
                server_view = list
                    .items
                    .iter()
                    .map(|s| (s.name_any(), s.resource_version()))
                    .collect();
                cached = self
                    .store
                    .state()
                    .iter()
                    .map(|s| (s.name_any(), s.resource_version()))
                    .collect();
                if server_view == cached {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the reflector did not converge:\n server: {server_view:?}\n cache:  {cached:?}");
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Creates, updates (a label) and deletes Services named `<prefix>-<i>`.
async fn churn(api: &Api<Service>, prefix: &str) {
    for i in 0..4 {
        api.create(
            &PostParams::default(),
            &service(&format!("{prefix}-{i}"), json!({})),
        )
        .await
        .unwrap();
    }
    let mut s = api.get(&format!("{prefix}-1")).await.unwrap();
    s.labels_mut().insert("changed".into(), "yes".into());
    api.replace(&format!("{prefix}-1"), &PostParams::default(), &s)
        .await
        .unwrap();
    api.delete(&format!("{prefix}-2"), &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_converges_and_survives_a_restart() {
    let mut server = start(&[]);
    let client = client(&server).await;
    namespace(&client, "refl").await;
    let api: Api<Service> = Api::namespaced(client.clone(), "refl");
    api.create(&PostParams::default(), &service("before", json!({})))
        .await
        .unwrap();

    let reflector = Reflector::start(api.clone(), watcher::Config::default());
    reflector.converges(&api, Duration::from_secs(20)).await;
    assert_eq!(reflector.store.state().len(), 1);

    churn(&api, "a").await;
    reflector.converges(&api, Duration::from_secs(20)).await;
    let changed = reflector
        .store
        .get(&reflector::ObjectRef::new("a-1").within("refl"))
        .expect("a-1 cached");
    assert_eq!(
        changed.labels().get("changed").map(String::as_str),
        Some("yes")
    );
    assert!(
        reflector
            .store
            .get(&reflector::ObjectRef::new("a-2").within("refl"))
            .is_none()
    );

    // Restart on the same data directory and port; the watcher reconnects by itself.
    blocking(|| server.restart()).expect("restarting the server");
    churn(&api, "b").await;
    reflector.converges(&api, Duration::from_secs(30)).await;
    assert_eq!(reflector.store.state().len(), 1 + 3 + 3);
    // Either way is correct; the count says whether the watch resumed (1) or re-listed (2+).
    eprintln!(
        "reflector lists after the restart: {}",
        reflector.inits.load(Ordering::SeqCst)
    );
    assert!(
        reflector
            .store
            .get(&reflector::ObjectRef::new("b-3").within("refl"))
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_old_resource_version_is_410_and_the_reflector_relists() {
    const HISTORY: usize = 20;
    let server = start(&["--watch-history-revisions", &HISTORY.to_string()]);
    let client = client(&server).await;
    namespace(&client, "gone").await;
    namespace(&client, "noise").await;
    let api: Api<Service> = Api::namespaced(client.clone(), "gone");
    let noise: Api<ConfigMap> = Api::namespaced(client.clone(), "noise");
    api.create(&PostParams::default(), &service("first", json!({})))
        .await
        .unwrap();

    // The server ends each watch after 1 s, so the paused watcher's connection is gone while the
    // writes below push its resourceVersion out of the history window.
    let reflector = Reflector::start(api.clone(), watcher::Config::default().timeout(1));
    reflector.converges(&api, Duration::from_secs(20)).await;
    assert_eq!(reflector.inits.load(Ordering::SeqCst), 1);

    // A recent resourceVersion is fine.
    drop(watch_and_create(&api, "second").await);
    reflector.converges(&api, Duration::from_secs(20)).await;

    // Pause the reflector just after it has seen one more event.
    reflector.gate.send_replace(false);
    api.create(&PostParams::default(), &service("third", json!({})))
        .await
        .unwrap();
    let rv_before = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;

    for i in 0..HISTORY + 10 {
        noise
            .create(
                &PostParams::default(),
                &config_map(&format!("n-{i}"), json!({})),
            )
            .await
            .unwrap();
    }
    api.create(&PostParams::default(), &service("fourth", json!({})))
        .await
        .unwrap();
    api.delete("first", &DeleteParams::default()).await.unwrap();

    // A raw watch from before the window: 200, then one ERROR event with a 410 Expired Status.
    let mut stale = api
        .watch(&WatchParams::default(), &rv_before)
        .await
        .expect("the watch starts")
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), stale.try_next()).await {
        Ok(Ok(Some(WatchEvent::Error(status)))) => {
            assert_eq!(status.code, 410, "{status:?}");
            assert_eq!(status.reason, "Expired", "{status:?}");
            assert!(
                status.message.contains("too old resource version"),
                "{status:?}"
            );
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    drop(stale);

    // Resumed, the reflector's watch gets the same 410; it re-lists and converges.
    reflector.gate.send_replace(true);
    reflector.converges(&api, Duration::from_secs(30)).await;
    let names: Vec<String> = {
        let mut n: Vec<String> = reflector
            .store
            .state()
            .iter()
            .map(|s| s.name_any())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names, ["fourth", "second", "third"]);
    assert!(
        reflector.inits.load(Ordering::SeqCst) >= 2,
        "the reflector never re-listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replaces_lose_no_update() {
    const TASKS: usize = 16;
    const INCREMENTS: usize = 5;
    let server = start(&[]);
    let client = client(&server).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(
        &PostParams::default(),
        &config_map("counter", json!({"count": "0"})),
    )
    .await
    .unwrap();

    let successes = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let start_line = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (api, successes, conflicts, start_line) = (
            api.clone(),
            successes.clone(),
            conflicts.clone(),
            start_line.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start_line.wait().await;
            for _ in 0..INCREMENTS {
                loop {
                    let mut cm = api.get("counter").await.unwrap();
                    let data = cm.data.get_or_insert_default();
                    let n: usize = data
                        .get("count")
                        .and_then(|c| c.parse().ok())
                        .expect("a count");
                    data.insert("count".into(), (n + 1).to_string());
                    // The GET's resourceVersion stays in the object: the PUT is conditional on it.
                    match api.replace("counter", &PostParams::default(), &cm).await {
                        Ok(_) => {
                            successes.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(e) if api_code(&e) == Some(409) => {
                            conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("replace failed: {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let final_count: usize = api.get("counter").await.unwrap().data.unwrap()["count"]
        .parse()
        .unwrap();
    let successes = successes.load(Ordering::SeqCst);
    assert_eq!(successes, TASKS * INCREMENTS);
    assert_eq!(final_count, successes, "an acknowledged replace was lost");
    assert!(
        conflicts.load(Ordering::SeqCst) > 0,
        "16 racing writers never saw a 409"
    );

    // A replace without a resourceVersion is unconditional (Kubernetes allows it for ConfigMaps).
    let mut cm = api.get("counter").await.unwrap();
    cm.metadata.resource_version = None;
    cm.data
        .get_or_insert_default()
        .insert("count".into(), "reset".into());
    api.replace("counter", &PostParams::default(), &cm)
        .await
        .unwrap();
    // A stale resourceVersion is a 409 Conflict.
    let mut stale = cm.clone();
    stale.metadata.resource_version = Some("1".into());
    let err = api
        .replace("counter", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(api_code(&err), Some(409), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_come_only_when_asked_for() {
    let server = start(&["--watch-bookmark-interval-seconds", "1"]);
    let client = client(&server).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    let mut with = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), with.try_next()).await {
        Ok(Ok(Some(WatchEvent::Bookmark(b)))) => {
            let got: i64 = b
                .metadata
                .resource_version
                .parse()
                .expect("a numeric resourceVersion");
            assert!(
                got >= rv.parse::<i64>().unwrap(),
                "bookmark at {got}, watch from {rv}"
            );
            assert_eq!(b.types.kind, "Service");
        }
        other => panic!("expected a BOOKMARK within 5 s, got {other:?}"),
    }

    let mut without = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(2500), without.try_next()).await {
        panic!("a watch without allowWatchBookmarks got {item:?}");
    }
}

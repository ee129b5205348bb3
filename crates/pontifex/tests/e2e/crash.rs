//! Crash safety at the API level: Services created one at a time while the server is SIGKILLed
//! mid-stream; after each restart every acknowledged Service is back with the same cluster IP and node
//! ports, nothing is allocated twice, and what is held stays held until its Service goes. Also: SIGTERM
//! with a watch open is a clean, quick exit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt as _};
use pontifex_store::{RedbStore, Store as _, StoreOptions};
use serde_json::json;

use crate::client::{api_code, blocking, client, namespace, service, start, watch_and_create};

/// What an acknowledged create handed out.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Allocated {
    cluster_ip: String,
    node_ports: Vec<u16>,
}

fn allocated(svc: &Service) -> Allocated {
    let spec = svc.spec.as_ref().expect("a Service has a spec");
    let mut node_ports: Vec<u16> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .map(|p| u16::try_from(p).expect("a port"))
        .collect();
    node_ports.sort_unstable();
    Allocated {
        cluster_ip: spec.cluster_ip.clone().unwrap_or_default(),
        node_ports,
    }
}

/// Even Services are ClusterIP, odd ones NodePort with two auto-allocated node ports.
fn writer_spec(i: usize) -> serde_json::Value {
    if i.is_multiple_of(2) {
        json!({"type": "ClusterIP"})
    } else {
        json!({"type": "NodePort", "ports": [
            {"name": "http", "port": 80, "protocol": "TCP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ]})
    }
}

/// Create Services one at a time until a request fails; every acknowledged one goes into `acked`.
/// Returns the error that stopped it.
async fn write_until_failure(
    api: Api<Service>,
    prefix: String,
    acked: Arc<Mutex<BTreeMap<String, Allocated>>>,
) -> kube::Error {
    for i in 0.. {
        let name = format!("{prefix}-{i}");
        match api
            .create(&PostParams::default(), &service(&name, writer_spec(i)))
            .await
        {
            Ok(svc) => {
                let a = allocated(&svc);
                assert!(
                    !a.cluster_ip.is_empty(),
                    "{name} was created without a cluster IP"
                );
                assert_eq!(
                    a.node_ports.len(),
                    if i.is_multiple_of(2) { 0 } else { 2 },
                    "{name}: {a:?}"
                );
                acked.lock().unwrap().insert(name, a);
            }
            Err(e) => return e,
        }
    }
    unreachable!("the loop only ends by returning")
}

/// Every Service in the cluster with what it holds.
async fn all_services(client: &Client) -> BTreeMap<(String, String), Allocated> {
    let all: Api<Service> = Api::all(client.clone());
    all.list(&ListParams::default())
        .await
        .expect("listing Services")
        .items
        .iter()
        .map(|s| {
            (
                (s.namespace().unwrap_or_default(), s.name_any()),
                allocated(s),
            )
        })
        .collect()
}

/// No cluster IP or node port is held by two Services.
fn assert_unique(services: &BTreeMap<(String, String), Allocated>) {
    let mut ips = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for (who, a) in services {
        if let Some(other) = ips.insert(a.cluster_ip.clone(), who) {
            panic!(
                "cluster IP {} is held by {other:?} and {who:?}",
                a.cluster_ip
            );
        }
        for p in &a.node_ports {
            if let Some(other) = ports.insert(*p, who) {
                panic!("node port {p} is held by {other:?} and {who:?}");
            }
        }
    }
}

/// The allocation keys in the server's store file, with the `namespace/name` each names as its owner.
/// Read with the server down and before it restarts, so its start-up repair pass has not touched them.
async fn allocation_keys(data_dir: &Path) -> BTreeMap<String, String> {
    let path = data_dir.join("store.redb");
    let store = blocking(|| RedbStore::open(&path, StoreOptions::default()))
        .expect("opening the store file");
    let mut keys = BTreeMap::new();
    for prefix in ["/ranges/serviceips/", "/ranges/servicenodeports/"] {
        for kv in store
            .range(prefix, None, 0)
            .await
            .expect("reading the allocation keys")
            .kvs
        {
            keys.insert(kv.key, String::from_utf8_lossy(&kv.value).into_owned());
        }
    }
    blocking(|| store.shutdown());
    keys
}

/// The allocation keys `services` should own: exactly one per cluster IP and node port.
fn expected_keys(services: &BTreeMap<(String, String), Allocated>) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for ((ns, name), a) in services {
        let owner = format!("{ns}/{name}");
        keys.insert(
            format!("/ranges/serviceips/{}", a.cluster_ip),
            owner.clone(),
        );
        for p in &a.node_ports {
            keys.insert(format!("/ranges/servicenodeports/{p}"), owner.clone());
        }
    }
    keys
}

/// A delay between 0.5 and 1.5 s that differs between runs, so the kill lands at different points.
fn kill_delay(cycle: usize) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    Duration::from_millis(500 + (u64::from(nanos) / 1_000 + cycle as u64 * 337) % 1000)
}

fn assert_refused(result: Result<Service, kube::Error>, what: &str, message: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{what}: {status:?}");
            assert!(status.message.contains(message), "{what}: {status:?}");
        }
        Ok(svc) => panic!("{what} was accepted: {:?}", allocated(&svc)),
        Err(e) => panic!("{what}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_services_and_allocations_survive_sigkill() {
    let mut server = start(&[]);
    let ns = "crash";
    namespace(&client(&server).await, ns).await;
    let acked: Arc<Mutex<BTreeMap<String, Allocated>>> = Arc::default();

    for cycle in 0..3 {
        let client = client(&server).await;
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let writer = tokio::spawn(write_until_failure(
            api.clone(),
            format!("c{cycle}"),
            acked.clone(),
        ));
        let before = acked.lock().unwrap().len();
        tokio::time::sleep(kill_delay(cycle)).await;
        blocking(|| server.kill());
        let stopped_by = writer.await.expect("the writer task");
        assert_eq!(
            api_code(&stopped_by),
            None,
            "a create failed while the server was up: {stopped_by}\nserver log:\n{}",
            server.log()
        );
        let written = acked.lock().unwrap().len() - before;
        eprintln!("cycle {cycle}: {written} creates acknowledged before SIGKILL");
        assert!(
            written >= 5,
            "cycle {cycle}: only {written} creates were acknowledged before the kill"
        );

        let keys = allocation_keys(server.data_dir()).await;
        blocking(|| server.restart()).expect("restarting after SIGKILL");
        let client = crate::client::client(&server).await;
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let services = all_services(&client).await;
        // The keys were written in the Services' own transactions: none leaked by a create that the
        // kill interrupted, none missing, owners right (and no repair was needed to get there).
        assert_eq!(
            keys,
            expected_keys(&services),
            "cycle {cycle}: allocation keys after SIGKILL"
        );

        // Every acknowledged create survived, holding what it was given.
        let acked_now = acked.lock().unwrap().clone();
        for (name, a) in &acked_now {
            let got = services.get(&(ns.to_owned(), name.clone()));
            assert_eq!(
                got,
                Some(a),
                "cycle {cycle}: acknowledged Service {name} after the restart"
            );
        }
        assert_unique(&services);

        // What an acknowledged Service holds cannot be chosen by another.
        for (i, (name, a)) in acked_now.iter().enumerate() {
            let probe = format!("probe-{cycle}-{i}");
            let res = api
                .create(
                    &PostParams::default(),
                    &service(&probe, json!({"clusterIP": a.cluster_ip})),
                )
                .await;
            assert_refused(
                res,
                &format!("clusterIP {} of {name}", a.cluster_ip),
                "provided IP is already allocated",
            );
            for p in &a.node_ports {
                let spec = json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": p}]});
                let res = api
                    .create(&PostParams::default(), &service(&probe, spec))
                    .await;
                assert_refused(
                    res,
                    &format!("nodePort {p} of {name}"),
                    "provided port is already allocated",
                );
            }
        }
    }

    // Delete every Service of the namespace (including any whose create committed but was never
    // acknowledged); then every value they held can be chosen again: nothing leaked.
    let client = client(&server).await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let held: Vec<Allocated> = all_services(&client)
        .await
        .into_iter()
        .filter(|((n, _), _)| n == ns)
        .map(|(_, a)| a)
        .collect();
    assert!(held.len() >= acked.lock().unwrap().len());
    for name in api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| s.name_any())
    {
        api.delete(&name, &DeleteParams::default()).await.unwrap();
    }
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let mut reused_ips = BTreeSet::new();
    for (i, a) in held.iter().enumerate() {
        let spec = if a.node_ports.is_empty() {
            json!({"type": "ClusterIP", "clusterIP": a.cluster_ip})
        } else {
            let ports: Vec<_> = a
                .node_ports
                .iter()
                .enumerate()
                .map(|(k, p)| json!({"name": format!("p{k}"), "port": 80 + k, "protocol": "TCP", "nodePort": p}))
                .collect();
            json!({"type": "NodePort", "clusterIP": a.cluster_ip, "ports": ports})
        };
        let created = api
            .create(
                &PostParams::default(),
                &service(&format!("again-{i}"), spec),
            )
            .await
            .unwrap_or_else(|e| panic!("{a:?} was not released: {e}"));
        assert_eq!(&allocated(&created), a);
        reused_ips.insert(a.cluster_ip.clone());
    }
    assert_eq!(reused_ips.len(), held.len());

    // The reused values are held again, durably, by the new Services.
    blocking(|| server.kill());
    let keys = allocation_keys(server.data_dir()).await;
    blocking(|| server.restart()).expect("restarting");
    let services = all_services(&client).await;
    assert_unique(&services);
    assert_eq!(
        keys,
        expected_keys(&services),
        "allocation keys after the reuse"
    );
    assert_eq!(services.keys().filter(|(n, _)| n == ns).count(), held.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_an_open_watch_exits_cleanly() {
    let mut server = start(&[]);
    let client = client(&server).await;
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let watch = watch_and_create(&api, "watched").await;
    let mut watch = Box::pin(watch);

    let started = Instant::now();
    let clean = blocking(|| server.stop()).expect("the server stops after SIGTERM");
    let took = started.elapsed();
    assert!(
        clean,
        "the server exited with a failure status after SIGTERM:\n{}",
        server.log()
    );
    assert!(
        took < Duration::from_secs(4),
        "stopping took {took:?} with a watch open"
    );
    assert!(
        server.log().contains("API server stopped"),
        "no shutdown in the log:\n{}",
        server.log()
    );

    // The watch ended with the server (it does not hang).
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch ended");
    assert!(
        !matches!(end, Some(Ok(_))),
        "an event after shutdown: {end:?}"
    );
}

//! The seeds' story end to end under `pontifex up`, with every controller at work and no node agent:
//! two fake nodes; kubectl applies the nginx example; the scheduler spreads the Deployment's pods over
//! both nodes; a fake kubelet (below) reports them Running and Ready with addresses from their node's
//! pod CIDR; `kubectl get endpoints nginx` then lists them, and follows scaling, a deleted pod, a pod
//! going unready and a node going silent. Also: the selector-less example's mirrored slice, a
//! LoadBalancer's EXTERNAL-IP, and a namespace deleted with everything in it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use serde_json::Value;
use test_support::{Kubectl, TestServer, examples_dir};

use crate::fake::{FakeNode, set_pod_status, until};

/// What the fake kubelet has done: pod name → its IP.
type Started = Arc<Mutex<BTreeMap<String, String>>>;

/// Report every pod bound to one of `nodes` as Running and Ready, with the next address of that node's
/// pod CIDR; finish graceful deletes. Runs until aborted.
fn kubelet(
    client: kube::Client,
    nodes: Vec<String>,
    started: Started,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::all(client.clone());
        let node_api: Api<Node> = Api::all(client.clone());
        let mut next_host: BTreeMap<String, u32> = BTreeMap::new();
        loop {
            for p in pods
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
            {
                let (Some(name), Some(ns)) =
                    (p.metadata.name.clone(), p.metadata.namespace.clone())
                else {
                    continue;
                };
                let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                if !nodes.contains(&node) {
                    continue;
                }
                if p.metadata.deletion_timestamp.is_some() {
                    let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                    let _ = api
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                    continue;
                }
                if started.lock().unwrap().contains_key(&name) {
                    continue;
                }
                let Some(cidr) = node_api
                    .get(&node)
                    .await
                    .ok()
                    .and_then(|n| n.spec?.pod_cidr)
                    .and_then(|c| c.parse::<Ipv4Net>().ok())
                else {
                    continue;
                };
                let host = next_host.entry(node.clone()).or_insert(1);
                *host += 1;
                let ip = Ipv4Addr::from(u32::from(cidr.network()) + *host).to_string();
                set_pod_status(&client, &ns, &name, &ip, true).await;
                started.lock().unwrap().insert(name, ip);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// `kubectl get endpoints NAME -o json`: (ready `ip:port`s, not-ready ips).
fn endpoints(kubectl: &Kubectl, ns: &str, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let run = kubectl.run(&["get", "endpoints", "-n", ns, name, "-o", "json"]);
    if !run.success {
        return Default::default();
    }
    let ep: Value = serde_json::from_str(&run.stdout).expect("Endpoints JSON");
    let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"][0]["port"].as_i64().unwrap_or(0);
        for a in subset["addresses"].as_array().into_iter().flatten() {
            ready.insert(format!("{}:{port}", a["ip"].as_str().unwrap_or("")));
        }
        for a in subset["notReadyAddresses"].as_array().into_iter().flatten() {
            not_ready.insert(a["ip"].as_str().unwrap_or("").to_owned());
        }
    }
    (ready, not_ready)
}

/// The running nginx pods: name → (node, ip) as the API reports them.
async fn nginx_pods(api: &Api<Pod>) -> BTreeMap<String, (String, String)> {
    api.list(&ListParams::default().labels("app=nginx"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            Some((p.metadata.name?, (node, ip)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_story_with_every_controller() {
    let server = TestServer::start_up(
        Path::new(env!("CARGO_BIN_EXE_pontifex")),
        &["--node-monitor-grace-period", "4s"],
    )
    .expect("starting pontifex up");
    let client = crate::client::client(&server).await;
    let kubectl = server.kubectl("1.33").unwrap();
    let mut fake_nodes = BTreeMap::new();
    fake_nodes.insert(
        "node-a",
        FakeNode::register(&client, "node-a", "172.31.0.11").await,
    );
    fake_nodes.insert(
        "node-b",
        FakeNode::register(&client, "node-b", "172.31.0.12").await,
    );
    let started: Started = Arc::default();
    let kubelet = kubelet(
        client.clone(),
        vec!["node-a".into(), "node-b".into()],
        started.clone(),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let wait = Duration::from_secs(30);

    // Three pods, spread over both nodes, Ready, and listed as endpoints.
    let nginx = examples_dir().join("nginx-nodeport.yaml");
    kubectl.run(&["apply", "-f", nginx.to_str().unwrap()]).ok();
    let three = until(wait, "3 running nginx pods", async || {
        let p = nginx_pods(&pods).await;
        (p.len() == 3).then_some(p)
    })
    .await;
    let nodes: BTreeSet<&String> = three.values().map(|(n, _)| n).collect();
    assert_eq!(
        nodes.len(),
        2,
        "the scheduler spreads the pods over both nodes: {three:?}"
    );
    let want: BTreeSet<String> = three.values().map(|(_, ip)| format!("{ip}:80")).collect();
    until(wait, "three endpoints", async || {
        (endpoints(&kubectl, "default", "nginx").0 == want).then_some(())
    })
    .await;
    let row = kubectl.run(&["get", "endpoints", "nginx"]).ok().stdout;
    assert!(
        row.contains(":80,") && row.contains("+ 0 more") || row.matches(":80").count() == 3,
        "{row}"
    );

    // Scale to 5 and back to 2: the endpoints follow.
    kubectl
        .run(&["scale", "deployment", "nginx", "--replicas=5"])
        .ok();
    until(wait, "five endpoints", async || {
        (endpoints(&kubectl, "default", "nginx").0.len() == 5).then_some(())
    })
    .await;
    kubectl
        .run(&["scale", "deployment", "nginx", "--replicas=2"])
        .ok();
    until(wait, "two endpoints", async || {
        let live = nginx_pods(&pods).await;
        let want: BTreeSet<String> = live.values().map(|(_, ip)| format!("{ip}:80")).collect();
        (live.len() == 2 && endpoints(&kubectl, "default", "nginx").0 == want).then_some(())
    })
    .await;

    // A deleted pod is replaced, and its address with the new pod's.
    let before = nginx_pods(&pods).await;
    let victim = before.keys().next().unwrap().clone();
    kubectl.run(&["delete", "pod", &victim]).ok();
    let after = until(wait, "a replacement pod", async || {
        let live = nginx_pods(&pods).await;
        (live.len() == 2 && !live.contains_key(&victim)).then_some(live)
    })
    .await;
    let want: BTreeSet<String> = after.values().map(|(_, ip)| format!("{ip}:80")).collect();
    until(wait, "endpoints of the replacement", async || {
        (endpoints(&kubectl, "default", "nginx").0 == want).then_some(())
    })
    .await;

    // A pod that stops being ready moves to notReadyAddresses.
    let (unready, (_, unready_ip)) = after
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    set_pod_status(&client, "default", &unready, &unready_ip, false).await;
    until(wait, "the unready address", async || {
        let (ready, not_ready) = endpoints(&kubectl, "default", "nginx");
        (not_ready.contains(&unready_ip) && !ready.contains(&format!("{unready_ip}:80")))
            .then_some(())
    })
    .await;
    set_pod_status(&client, "default", &unready, &unready_ip, true).await;
    until(wait, "the address ready again", async || {
        endpoints(&kubectl, "default", "nginx")
            .0
            .contains(&format!("{unready_ip}:80"))
            .then_some(())
    })
    .await;

    // A node goes silent: once the grace period is over its pods' endpoints leave the ready set.
    let live = nginx_pods(&pods).await;
    let silent = live
        .values()
        .next()
        .map(|(n, _)| n.clone())
        .expect("a running pod");
    let on_silent: Vec<String> = live
        .values()
        .filter(|(n, _)| *n == silent)
        .map(|(_, ip)| format!("{ip}:80"))
        .collect();
    fake_nodes
        .get_mut(silent.as_str())
        .expect("a fake node")
        .stop_heartbeat();
    until(
        Duration::from_secs(40),
        "the silent node's endpoints to leave",
        async || {
            let ready = endpoints(&kubectl, "default", "nginx").0;
            on_silent.iter().all(|a| !ready.contains(a)).then_some(())
        },
    )
    .await;
    let nodes_out = kubectl.run(&["get", "nodes"]).ok().stdout;
    assert!(
        nodes_out
            .lines()
            .any(|l| l.starts_with(silent.as_str()) && l.contains("NotReady")),
        "{nodes_out}"
    );

    // The selector-less Service with hand-written Endpoints gets a mirrored slice.
    let manual = examples_dir().join("selectorless-manual-endpoints.yaml");
    kubectl.run(&["apply", "-f", manual.to_str().unwrap()]).ok();
    until(wait, "the mirrored slice", async || {
        let out = kubectl
            .run(&[
                "get",
                "endpointslices",
                "-n",
                "kube-system",
                "-l",
                "kubernetes.io/service-name=service-test",
            ])
            .stdout;
        out.contains("10.1.21.32").then_some(())
    })
    .await;

    // A LoadBalancer gets its EXTERNAL-IP from the pool.
    let lb = examples_dir().join("loadbalancer.yaml");
    kubectl.run(&["apply", "-f", lb.to_str().unwrap()]).ok();
    until(wait, "an external IP", async || {
        let out = kubectl
            .run(&["get", "svc", "example-service", "--no-headers"])
            .stdout;
        out.split_whitespace()
            .nth(3)
            .filter(|ip| ip.starts_with("172.31.255."))
            .map(str::to_owned)
    })
    .await;

    // A namespace goes with everything in it.
    kubectl.run(&["create", "namespace", "demo"]).ok();
    let svc = examples_dir().join("svc-1-nodeport.yaml");
    kubectl
        .run(&["apply", "-n", "demo", "-f", svc.to_str().unwrap()])
        .ok();
    kubectl
        .run(&[
            "create",
            "configmap",
            "-n",
            "demo",
            "settings",
            "--from-literal=a=b",
        ])
        .ok();
    kubectl
        .run(&["delete", "namespace", "demo", "--wait=false"])
        .ok();
    until(wait, "namespace demo to go", async || {
        let gone = kubectl.run(&["get", "namespace", "demo"]);
        (!gone.success && gone.stderr.contains("NotFound")).then_some(())
    })
    .await;
    assert!(
        !kubectl
            .run(&["get", "configmap", "-n", "demo", "settings"])
            .success
    );
    kubelet.abort();
    assert!(
        started.lock().unwrap().len() >= 6,
        "the fake kubelet started the replicas and replacements"
    );
}

//! The node-side controllers under `pontifex up`, seen through kubectl: node pod CIDRs, the
//! scheduler (spreading, node selectors, taints and tolerations, FailedScheduling), node lifecycle
//! (a silent node goes NotReady and its pods unready, and comes back), and LoadBalancer IPs.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use test_support::{Kubectl, TestServer, examples_dir};

use crate::fake::{FakeNode, set_pod_status, until};

fn up(extra: &[&str]) -> TestServer {
    TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), extra)
        .expect("starting pontifex up")
}

/// `kubectl get pods -o wide`: pod name → NODE column.
fn pod_nodes(kubectl: &Kubectl) -> Vec<(String, String)> {
    let out = kubectl.run(&["get", "pods", "-o", "wide"]).ok().stdout;
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let col = header.find("NODE ").expect("a NODE column");
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap_or_default().to_owned();
            let node = l[col..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            (name, node)
        })
        .collect()
}

fn node_of(kubectl: &Kubectl, pod: &str) -> Option<String> {
    pod_nodes(kubectl)
        .into_iter()
        .find(|(p, _)| p == pod)
        .map(|(_, n)| n)
        .filter(|n| n != "<none>")
}

/// `kubectl get nodes`: node name → STATUS column.
fn node_status(kubectl: &Kubectl, node: &str) -> String {
    let out = kubectl.run(&["get", "nodes"]).ok().stdout;
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_owned()
}

fn pod_ready(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_cidrs_pods_get_scheduled_and_silent_nodes_go_not_ready() {
    let server = up(&["--node-monitor-grace-period", "5s"]);
    let client = crate::client::client(&server).await;
    let kubectl = server.kubectl("1.33").expect("kubectl 1.33");
    let mut a = FakeNode::register(&client, "node-a", "172.31.0.11").await;
    let mut b = FakeNode::register(&client, "node-b", "172.31.0.12").await;

    // Node IPAM: distinct /24s from the cluster CIDR.
    let nodes: Api<Node> = Api::all(client.clone());
    let cidrs = until(Duration::from_secs(20), "pod CIDRs", async || {
        let mut out = Vec::new();
        for n in ["node-a", "node-b"] {
            let spec = nodes.get(n).await.ok()?.spec?;
            let cidr = spec.pod_cidr?;
            assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
            out.push(cidr);
        }
        Some(out)
    })
    .await;
    for c in &cidrs {
        assert!(
            c.starts_with("10.244.") && c.ends_with(".0/24"),
            "{c} is a /24 of 10.244.0.0/16"
        );
    }
    assert_ne!(cidrs[0], cidrs[1], "each node has its own pod CIDR");

    // Three bare pods spread over both nodes.
    for p in ["p1", "p2", "p3"] {
        kubectl.run(&["run", p, "--image=nginx"]).ok();
    }
    let placed = until(
        Duration::from_secs(20),
        "three pods scheduled",
        async || {
            let placed: Vec<String> = ["p1", "p2", "p3"]
                .iter()
                .map(|p| node_of(&kubectl, p))
                .collect::<Option<_>>()?;
            Some(placed)
        },
    )
    .await;
    assert!(placed.iter().any(|n| n == "node-a"), "{placed:?}");
    assert!(placed.iter().any(|n| n == "node-b"), "{placed:?}");
    let describe = kubectl.run(&["describe", "pod", "p1"]).ok().stdout;
    assert!(
        describe.contains(&format!(
            "Successfully assigned default/p1 to {}",
            placed[0]
        )),
        "{describe}"
    );

    // A node selector that matches nothing: Pending, with upstream's FailedScheduling message.
    let stuck = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stuck"},
        "spec": {"nodeSelector": {"disktype": "ssd"}, "containers": [{"name": "c", "image": "nginx"}]}}"#;
    kubectl.run_stdin(&["apply", "-f", "-"], stuck).ok();
    let describe = until(Duration::from_secs(20), "FailedScheduling", async || {
        let out = kubectl.run(&["describe", "pod", "stuck"]).ok().stdout;
        out.contains("FailedScheduling").then_some(out)
    })
    .await;
    assert!(
        describe.contains(
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        ),
        "{describe}"
    );
    assert!(describe.contains("Pending"), "{describe}");
    assert_eq!(node_of(&kubectl, "stuck"), None);

    // A tainted node is avoided, unless tolerated.
    kubectl
        .run(&["taint", "nodes", "node-a", "dedicated=infra:NoSchedule"])
        .ok();
    let describe = until(
        Duration::from_secs(20),
        "the taint in the message",
        async || {
            let out = kubectl.run(&["describe", "pod", "stuck"]).ok().stdout;
            out.contains("1 node(s) had untolerated taint {dedicated: infra}")
                .then_some(out)
        },
    )
    .await;
    assert!(
        describe.contains("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: infra}."),
        "{describe}"
    );
    for p in ["t1", "t2"] {
        kubectl.run(&["run", p, "--image=nginx"]).ok();
        let n = until(
            Duration::from_secs(20),
            "an untolerating pod scheduled",
            async || node_of(&kubectl, p),
        )
        .await;
        assert_eq!(n, "node-b", "{p} avoids the tainted node");
    }
    let tolerant = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "tolerant"},
        "spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
                 "containers": [{"name": "c", "image": "nginx"}]}}"#;
    kubectl.run_stdin(&["apply", "-f", "-"], tolerant).ok();
    let n = until(
        Duration::from_secs(20),
        "the tolerant pod scheduled",
        async || node_of(&kubectl, "tolerant"),
    )
    .await;
    // node-b has at least three pods, node-a at most two: spreading picks the tainted node.
    assert_eq!(n, "node-a", "the tolerating pod may use the tainted node");

    // A node that stops heartbeating goes NotReady, and its pods unready.
    set_pod_status(&client, "default", "t1", "10.244.9.9", true).await;
    assert_eq!(node_status(&kubectl, "node-b"), "Ready");
    b.stop_heartbeat();
    let stopped = Instant::now();
    until(Duration::from_secs(20), "node-b NotReady", async || {
        (node_status(&kubectl, "node-b") == "NotReady").then_some(())
    })
    .await;
    assert!(
        stopped.elapsed() >= Duration::from_secs(4),
        "not before the grace period ({:?})",
        stopped.elapsed()
    );
    assert_eq!(
        node_status(&kubectl, "node-a"),
        "Ready",
        "node-a still beats"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    until(Duration::from_secs(10), "t1 not Ready", async || {
        (pod_ready(&pods.get("t1").await.ok()?)? == "False").then_some(())
    })
    .await;
    let node = nodes.get("node-b").await.unwrap();
    let ready = node
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_deref(),
            ready.message.as_deref()
        ),
        (
            "Unknown",
            Some("NodeStatusUnknown"),
            Some("Kubelet stopped posting node status.")
        )
    );

    // Heartbeats resume: Ready again.
    b.resume_heartbeat();
    until(Duration::from_secs(20), "node-b Ready again", async || {
        (node_status(&kubectl, "node-b") == "Ready").then_some(())
    })
    .await;
    a.stop_heartbeat();
}

/// `kubectl get svc NAME`: the EXTERNAL-IP column.
fn external_ip(kubectl: &Kubectl, svc: &str) -> Option<String> {
    let out = kubectl.run(&["get", "svc", svc]).stdout;
    let mut lines = out.lines();
    let header = lines.next()?;
    let col = header.find("EXTERNAL-IP")?;
    let ip = lines
        .next()?
        .get(col..)?
        .split_whitespace()
        .next()?
        .to_owned();
    (ip != "<pending>").then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_pool_ips_that_are_reused_after_delete() {
    let server = up(&[]);
    let kubectl = server.kubectl("1.33").expect("kubectl 1.33");
    let manifest = examples_dir().join("loadbalancer.yaml");
    let manifest = manifest.to_str().unwrap();
    kubectl.run(&["apply", "-f", manifest]).ok();
    let ip = until(Duration::from_secs(20), "an EXTERNAL-IP", async || {
        external_ip(&kubectl, "example-service")
    })
    .await;
    assert!(ip.starts_with("172.31.255."), "{ip}");
    assert_ne!(ip, "172.31.255.0", "never the network address");
    let describe = kubectl
        .run(&["describe", "svc", "example-service"])
        .ok()
        .stdout;
    assert!(describe.contains("IPAllocated"), "{describe}");

    // A second one gets another address; after the first is deleted, a third reuses its address.
    let second = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "second"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}"#;
    kubectl.run_stdin(&["apply", "-f", "-"], second).ok();
    let ip2 = until(
        Duration::from_secs(20),
        "a second EXTERNAL-IP",
        async || external_ip(&kubectl, "second"),
    )
    .await;
    assert_ne!(ip, ip2);
    kubectl.run(&["delete", "-f", manifest]).ok();
    let third = second.replace("\"second\"", "\"third\"");
    kubectl.run_stdin(&["apply", "-f", "-"], &third).ok();
    let ip3 = until(Duration::from_secs(20), "a third EXTERNAL-IP", async || {
        external_ip(&kubectl, "third")
    })
    .await;
    assert_eq!(ip3, ip, "the deleted Service's address is reused");
    assert_eq!(external_ip(&kubectl, "second"), Some(ip2), "stable");
}

//! Stand-ins for what the node agent does, so the controllers can be tested without one: register a
//! Node and keep its heartbeat Lease fresh, and write a pod's status as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::task::JoinHandle;

/// A registered Node whose Lease is renewed every second until [`FakeNode::stop_heartbeat`] or drop.
pub(crate) struct FakeNode {
    pub(crate) name: String,
    client: kube::Client,
    heartbeat: Option<JoinHandle<()>>,
}

impl FakeNode {
    /// Register `name` as a Ready node with `address` as its InternalIP, and start its heartbeat.
    pub(crate) async fn register(client: &kube::Client, name: &str, address: &str) -> FakeNode {
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "status": {
                "addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}],
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "fake node is ready",
                                "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
                "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "pontifex fake node", "kernelVersion": "",
                             "containerRuntimeVersion": "pontifex://0", "architecture": "amd64",
                             "operatingSystem": "linux", "bootID": "", "machineID": "", "systemUUID": "",
                             "kubeProxyVersion": ""},
            }
        }))
        .expect("a Node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("registering the node");
        let heartbeat = beat(client, name);
        FakeNode {
            name: name.to_owned(),
            client: client.clone(),
            heartbeat: Some(heartbeat),
        }
    }

    /// The node renews its Lease again, as a node that came back would.
    pub(crate) fn resume_heartbeat(&mut self) {
        if self.heartbeat.is_none() {
            self.heartbeat = Some(beat(&self.client, &self.name));
        }
    }

    /// The node stops renewing its Lease, as a node that died would.
    pub(crate) fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// Renew `name`'s Lease in kube-node-lease every second.
fn beat(client: &kube::Client, name: &str) -> JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease_name = name.to_owned();
    tokio::spawn(async move {
        loop {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": lease_name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": lease_name, "leaseDurationSeconds": 40, "renewTime": micro_now()},
            });
            let _ = leases
                .patch(
                    &lease_name,
                    &PatchParams::apply("fake-kubelet").force(),
                    &Patch::Apply(&lease),
                )
                .await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

/// Poll `f` every 200 ms until it returns Some, or panic with `what` after `timeout`.
pub(crate) async fn until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Write a pod's status as its kubelet would: Running with `ip` on its node, Ready or not.
pub(crate) async fn set_pod_status(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    ip: &str,
    ready: bool,
) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now()},
            {"type": "Ready", "status": status, "lastTransitionTime": now()},
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("writing pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fake_node_registers_beats_and_reports_pod_status() {
    let server = crate::client::start(&[]);
    let client = crate::client::client(&server).await;
    let mut node = FakeNode::register(&client, "node-a", "172.31.0.11").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let renewed = |l: Lease| l.spec.and_then(|s| s.renew_time).map(|t| t.0);
    let mut first = None;
    for _ in 0..50 {
        if let Ok(l) = leases.get("node-a").await {
            first = renewed(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.expect("the lease appears");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let later = renewed(leases.get("node-a").await.unwrap()).unwrap();
    assert!(
        later > first,
        "{}: the heartbeat renews the lease ({first} then {later})",
        node.name
    );
    node.stop_heartbeat();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped = renewed(leases.get("node-a").await.unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        stopped,
        renewed(leases.get("node-a").await.unwrap()).unwrap(),
        "no renewals once stopped"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p"}, "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    set_pod_status(&client, "default", "p", "10.244.1.5", true).await;
    let status = pods.get("p").await.unwrap().status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.5"));
    let ready = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "True");
}

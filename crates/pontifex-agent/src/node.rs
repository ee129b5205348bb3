//! The agent's Node: registered at start (created, or its status refreshed when it exists), its
//! Ready condition and addresses kept current, and its heartbeat Lease in `kube-node-lease` renewed
//! the way the kubelet does (every 10 s, for a 40 s lease), which is what the node lifecycle
//! controller watches.
//!
//! A dual-stack node (kubelet's `--node-ip` with one address per family) reports an `InternalIP`
//! address per family, primary first, as the kubelet does; its podCIDRs are `spec.podCIDRs`.

use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// The kubelet's `--node-lease-duration-seconds` default (40 s) and its renew interval (a quarter of it).
const LEASE_DURATION_SECONDS: i32 = 40;
const RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// The kubelet's `--node-status-update-frequency` default.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// The field manager of what the agent writes.
pub(crate) const MANAGER: &str = "pontifex-agent";
pub(crate) const LEASE_NAMESPACE: &str = "kube-node-lease";

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The node's addresses: an `InternalIP` per node IP (primary first), then its `Hostname`.
pub(crate) fn addresses(name: &str, ips: &[IpAddr]) -> Value {
    let mut out: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    out.push(json!({"type": "Hostname", "address": name}));
    Value::Array(out)
}

/// The status the agent reports for its node: addresses, capacity, Ready, version info.
pub(crate) fn status(name: &str, ips: &[IpAddr], since: &str) -> Value {
    let now = now();
    json!({
        "addresses": addresses(name, ips),
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "pontifex agent is posting ready status",
                        "lastHeartbeatTime": now, "lastTransitionTime": since}],
        "capacity": {"cpu": cpus(), "memory": "4Gi", "pods": "110"},
        "allocatable": {"cpu": cpus(), "memory": "4Gi", "pods": "110"},
        "nodeInfo": {"kubeletVersion": "v1.33.0", "osImage": "pontifex lab node",
                     "kernelVersion": kernel(), "containerRuntimeVersion": "pontifex://0.1.0",
                     "architecture": "amd64", "operatingSystem": "linux", "bootID": "", "machineID": "",
                     "systemUUID": "", "kubeProxyVersion": ""},
    })
}

fn cpus() -> String {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string()
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Create the Node, or refresh the status of the one that exists (an agent restart keeps its podCIDR).
pub(crate) async fn register(
    client: &kube::Client,
    name: &str,
    ips: &[IpAddr],
) -> Result<Node, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let since = now();
    if let Some(existing) = nodes.get_opt(name).await? {
        let patch = json!({"status": status(name, ips, &since)});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        return Ok(existing);
    }
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "status": status(name, ips, &since),
    }))?;
    Ok(nodes.create(&PostParams::default(), &node).await?)
}

/// The podCIDRs of a Node, primary first: `spec.podCIDRs`, or `spec.podCIDR` alone when the list
/// is absent (a server that predates it); unparsable entries are skipped.
pub(crate) fn node_pod_cidrs(node: &Node) -> Vec<ipnet::IpNet> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let list = match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(l), _) if !l.is_empty() => l.clone(),
        (_, Some(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    list.iter().filter_map(|c| c.parse().ok()).collect()
}

/// Wait until the node IPAM controller has given the node its podCIDRs (primary first); `wanted`
/// families (`true` = IPv6) must all be there — a dual-stack node waits for both.
pub(crate) async fn pod_cidrs(
    client: &kube::Client,
    name: &str,
    want_v6: bool,
    shutdown: &CancellationToken,
) -> Result<Option<Vec<ipnet::IpNet>>, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut warned = false;
    loop {
        let cidrs = nodes
            .get_opt(name)
            .await?
            .map(|n| node_pod_cidrs(&n))
            .unwrap_or_default();
        let v4 = cidrs.iter().any(|c| matches!(c, ipnet::IpNet::V4(_)));
        let v6 = cidrs.iter().any(|c| matches!(c, ipnet::IpNet::V6(_)));
        if v4 && (v6 || !want_v6) {
            return Ok(Some(cidrs));
        }
        if v4 && !warned {
            warned = true;
            tracing::warn!(
                ?cidrs,
                "the node has an IPv6 address but no IPv6 podCIDR yet (is the cluster CIDR dual-stack?); waiting"
            );
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Renew the node's Lease and refresh its status until `shutdown`.
pub(crate) async fn heartbeat(
    client: kube::Client,
    name: String,
    ips: Vec<IpAddr>,
    shutdown: CancellationToken,
) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let nodes: Api<Node> = Api::all(client);
    let since = now();
    let mut last_status = tokio::time::Instant::now();
    loop {
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()},
        });
        if let Err(e) = leases
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&lease),
            )
            .await
        {
            tracing::warn!(error = %e, "renewing the node lease failed");
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            last_status = tokio::time::Instant::now();
            let patch = json!({"status": status(&name, &ips, &since)});
            if let Err(e) = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(error = %e, "updating the node status failed");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RENEW_INTERVAL) => {}
        }
    }
}

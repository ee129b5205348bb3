//! A dual-stack lab (`pontifex up --nodes 2` with an IPv4 and an IPv6 Service range and cluster
//! CIDR), end to end with real packets: a Deployment of two agnhost pods gets an address of each
//! family, a `RequireDualStack` NodePort Service gets a ClusterIP of each family and an
//! EndpointSlice per address type, and every path works in both families — both ClusterIPs from a
//! node, the NodePort on each node's IPv4 and IPv6 address from this machine, a pod reaching the
//! other node's pod by its IPv6 address. Each node holds `ip6 pontifex`; `pontifex rules` prints
//! both families; `down` leaves nothing behind.
//!
//! The lab does not route the Service ranges from this machine (for IPv4 neither): ClusterIPs are
//! tried from a node's namespace, where the lab routes both ranges.

use std::collections::BTreeSet;
use std::process::Command;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::ListParams;

use crate::lab::{LabRun, hostnames, http_get, links_and_namespaces, until};

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: dual
spec:
  replicas: 2
  selector:
    matchLabels: {app: dual}
  template:
    metadata:
      labels: {app: dual}
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.53
        args: ["netexec", "--http-port=8080"]
        ports:
        - containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: dual
spec:
  type: NodePort
  ipFamilyPolicy: RequireDualStack
  selector: {app: dual}
  ports:
  - port: 80
    targetPort: 8080
    nodePort: 30111
"#;

/// The nodes' addresses in a dual-stack lab: (IPv4, IPv6) of node-1 and node-2.
const NODES: [(&str, &str); 2] = [
    ("172.31.0.10", "fd00:172:31::10"),
    ("172.31.0.11", "fd00:172:31::11"),
];

/// `curl` inside namespace `ns` (`-g`: IPv6 brackets are no glob); the body, or `None`.
fn curl_in(ns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-gsf", "-m", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A URL host part: IPv6 in brackets.
fn host(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_lab_serves_both_families_end_to_end() {
    let prefix = format!("pxd{}", std::process::id() % 100);
    let Some(lab) = LabRun::start(
        &prefix,
        &[
            "--nodes",
            "2",
            "--service-cluster-ip-range",
            "10.96.0.0/12,fd00:10:96::/112",
            "--cluster-cidr",
            "10.244.0.0/16,fd00:10:244::/56",
        ],
    )
    .await
    else {
        return;
    };
    let k = lab.server.kubectl("1.33").unwrap();
    k.run_stdin(&["apply", "-f", "-"], MANIFEST).ok();

    // Both nodes report an InternalIP per family.
    let nodes: Api<Node> = Api::all(lab.client.clone());
    for (i, (v4, v6)) in NODES.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let internal = until(60, &format!("{name} registered"), async || {
            let node = nodes.get_opt(&name).await.ok()??;
            let ips: Vec<String> = node
                .status
                .and_then(|s| s.addresses)
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .map(|a| a.address)
                .collect();
            Some(ips)
        })
        .await;
        assert_eq!(internal, [*v4, *v6], "{name}");
    }

    // Two pods, one per node, each with an IPv4 and an IPv6 address (IPv4 primary).
    let pods = lab.ready_n("app=dual", 2).await;
    let on: BTreeSet<&str> = pods.iter().map(|p| p.2.as_str()).collect();
    assert_eq!(on.len(), 2, "one pod per node: {pods:?}");
    let mut ips = Vec::new();
    for (name, _, _) in &pods {
        let p = lab.pods().get(name).await.unwrap();
        let st = p.status.unwrap();
        let all: Vec<String> = st
            .pod_ips
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip)
            .collect();
        assert_eq!(all.len(), 2, "{name}: {all:?}");
        assert!(all[0].starts_with("10.244."), "{all:?}");
        assert!(all[1].starts_with("fd00:10:244:"), "{all:?}");
        assert_eq!(st.pod_ip.as_deref(), Some(all[0].as_str()));
        ips.push((name.clone(), all[0].clone(), all[1].clone()));
    }
    let names: BTreeSet<String> = pods.iter().map(|p| p.0.clone()).collect();

    // The Service has a ClusterIP per family, and an EndpointSlice per address type.
    let svc = lab.services().get("dual").await.unwrap().spec.unwrap();
    let cluster_ips = svc.cluster_ips.unwrap_or_default();
    assert_eq!(cluster_ips.len(), 2, "{cluster_ips:?}");
    assert!(cluster_ips[0].starts_with("10."), "{cluster_ips:?}");
    assert!(
        cluster_ips[1].starts_with("fd00:10:96::"),
        "{cluster_ips:?}"
    );
    let slices: Api<EndpointSlice> = Api::namespaced(lab.client.clone(), "default");
    let by_type = until(
        30,
        "an EndpointSlice per family with both pods",
        async || {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=dual"))
                .await
                .ok()?;
            let mut types: Vec<(String, usize)> = list
                .items
                .iter()
                .map(|s| (s.address_type.clone(), s.endpoints.len()))
                .collect();
            types.sort();
            (types == [("IPv4".to_owned(), 2), ("IPv6".to_owned(), 2)]).then_some(types)
        },
    )
    .await;
    assert_eq!(by_type.len(), 2);

    // Each node programs an IPv6 table too.
    for i in 1..=2 {
        let ns = format!("{prefix}-node-node-{i}");
        let out = Command::new("ip")
            .args([
                "netns", "exec", &ns, "nft", "list", "table", "ip6", "pontifex",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Both ClusterIPs from a node's namespace reach both pods.
    let node1 = format!("{prefix}-node-node-1");
    for ip in &cluster_ips {
        let url = format!("http://{}/hostname", host(ip));
        let seen = until(
            40,
            &format!("both pods through ClusterIP {ip}"),
            async || {
                let seen: BTreeSet<String> =
                    (0..12).filter_map(|_| curl_in(&node1, &url)).collect();
                (seen == names).then_some(seen)
            },
        )
        .await;
        assert_eq!(seen, names);
    }

    // The NodePort on each node's IPv4 and IPv6 address, from this machine, reaches both pods.
    for (v4, v6) in NODES {
        for ip in [v4, v6] {
            let addr = format!("{}:30111", host(ip));
            until(
                40,
                &format!("both pods through NodePort {addr}"),
                async || (hostnames(&addr, 12) == names).then_some(()),
            )
            .await;
        }
    }

    // This machine reaches a pod by its IPv6 address (the lab's host routes), and that pod reaches
    // the other node's pod by its IPv6 address (host-gw routes between the nodes).
    let (a, b) = (&ips[0], &ips[1]);
    let body = until(20, "pod A over IPv6 from this machine", async || {
        http_get(&format!("[{}]:8080", a.2), "/hostname")
    })
    .await;
    assert_eq!(body.trim(), a.0);
    let dial = http_get(
        &format!("[{}]:8080", a.2),
        &format!(
            "/dial?request=hostname&protocol=http&host={}&port=8080&tries=1",
            b.2
        ),
    )
    .expect("dial answers");
    assert!(
        dial.contains(&b.0),
        "{} reached {} at {}: {dial}",
        a.0,
        b.0,
        b.2
    );

    // `pontifex rules` for a dual-stack node prints both tables.
    let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .args(["rules", "--node", "node-1", "--kubeconfig"])
        .arg(lab.server.kubeconfig())
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(rules.contains("table ip pontifex"), "{rules}");
    assert!(rules.contains("table ip6 pontifex"), "{rules}");
    assert!(rules.contains(cluster_ips[1].as_str()), "{rules}");

    // `down` (on drop) removes everything, IPv6 routes included.
    drop(lab);
    assert_eq!(links_and_namespaces(&prefix), Vec::<String>::new());
    let routes = Command::new("ip")
        .args(["-6", "route", "show"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout);
    assert!(
        !routes.contains("fd00:10:244") && !routes.contains("fd00:172:31"),
        "{routes}"
    );
}

/// Rootless mode is IPv4 only: `up --rootless` with a dual-stack range exits at once with a
/// message naming the ranges and the way out, before anything is started.
#[test]
fn rootless_up_refuses_dual_stack_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .args([
            "up",
            "--rootless",
            "--service-cluster-ip-range",
            "10.96.0.0/12,fd00:10:96::/112",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("rootless mode is IPv4 only"), "{err}");
    assert!(err.contains("fd00:10:96::/112"), "{err}");
    assert!(!dir.path().join("kubeconfig").exists(), "nothing started");
}

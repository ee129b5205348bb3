//! The service proxy, black box. `pontifex rules` (no root) prints the rules for kubectl-made
//! Services. In the lab (root), one lab per proxy mode (nftables, iptables) with the same checks: the
//! seed scenario through NodePorts from the host, ClusterIPs from a pod and from a node, REJECT for
//! Services without endpoints, `externalTrafficPolicy: Local` (source preserved, drop on a node
//! without endpoints, the health check node port), SNAT for Cluster policy, session affinity, a
//! LoadBalancer IP from the host, kube-proxy's metrics in the node namespace, the semantics of
//! [`semantics`] (externalIPs, source ranges, hairpin, `internalTrafficPolicy: Local`, the
//! masquerade matrix, a UDP stream across an endpoint's deletion), terminating endpoints used only
//! while no ready one is left ([`terminating`], KEP-1669), and last an agent killed with -9
//! and restarted under load without one failed request. A failing lab prints every agent's log.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use test_support::{TestServer, examples_dir};

use crate::lab::{LabRun, NODE_IPS, http_get, links_and_namespaces, seed_nodeport_reaches, until};

mod semantics;
mod terminating;

use semantics::{MATRIX, Matrix};

const HOST_IP: &str = "172.31.0.1";

/// `GET http://addr/path`: status code and body, whatever the status.
fn http_any(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// `curl` run inside network namespace `ns`: the body, or `None` on failure.
fn curl_in(ns: &str, url: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "curl", "-sf", "-m", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Kills a process (an agent this test restarted) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn rules_prints_both_modes_for_kubectl_made_services() {
    let mut server =
        TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[]).expect("pontifex up");
    let k = server.kubectl("1.33").unwrap();
    k.run(&["create", "service", "nodeport", "web", "--tcp=80:8080"])
        .ok();
    k.run(&["create", "service", "clusterip", "db", "--tcp=5432"])
        .ok();
    let rules = |mode: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
            .args(["rules", "--mode", mode, "--kubeconfig"])
            .arg(server.kubeconfig())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let svc_ip = |name: &str| {
        k.run(&["get", "svc", name, "-o", "jsonpath={.spec.clusterIP}"])
            .ok()
            .stdout
    };
    let (web, db) = (svc_ip("web"), svc_ip("db"));
    let nft = rules("nftables");
    assert!(nft.starts_with("# nftables layout: maps\n"), "{nft}");
    assert!(nft.contains("add table ip pontifex"), "{nft}");
    // No endpoints: both Services are in the reject map, web also by its node port.
    assert!(
        nft.contains(&format!(
            "no-endpoint-services {{ {web} . tcp . 80 comment \"default/web:80-8080\" : goto reject-chain }}"
        )),
        "{nft}"
    );
    assert!(
        nft.contains(&format!(
            "no-endpoint-services {{ {db} . tcp . 5432 comment \"default/db:5432\" : goto reject-chain }}"
        )),
        "{nft}"
    );
    assert!(
        nft.lines().any(|l| l
            .starts_with("add element ip pontifex no-endpoint-nodeports { tcp . ")
            && l.contains("default/web:80-8080")),
        "{nft}"
    );
    let ipt = rules("iptables");
    assert!(ipt.starts_with("*filter"), "{ipt}");
    assert!(ipt.contains("*nat"), "{ipt}");
    assert!(
        ipt.contains(&format!(
            "-A KUBE-SERVICES -m comment --comment \"default/db:5432 has no endpoints\" -m tcp -p tcp -d {db} --dport 5432 -j REJECT"
        )),
        "{ipt}"
    );
    assert!(
        ipt.contains(
            "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"default/web:80-8080 has no endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport"
        ),
        "{ipt}"
    );
    server.stop().unwrap();
}

const EXTRA: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: empty}
spec:
  type: NodePort
  selector: {app: nothing-here}
  ports: [{port: 80, nodePort: 30010}]
---
apiVersion: v1
kind: Service
metadata: {name: sticky}
spec:
  type: NodePort
  selector: {app: nginx}
  sessionAffinity: ClientIP
  ports: [{port: 80, nodePort: 30011}]
---
apiVersion: v1
kind: Service
metadata: {name: local}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, nodePort: 30012}]
---
apiVersion: v1
kind: Service
metadata: {name: lb}
spec:
  type: LoadBalancer
  selector: {app: nginx}
  ports: [{port: 8080, targetPort: 80, nodePort: 30013}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: solo}
spec:
  replicas: 1
  selector: {matchLabels: {app: solo}}
  template:
    metadata: {labels: {app: solo}}
    spec:
      containers: [{name: solo, image: nginx:1.19, ports: [{containerPort: 80}]}]
"#;

/// The whole scenario in one lab per mode (labs are slow to build and must run one at a time).
/// `layout` is the nftables layout (`maps`, the default, or `chains`; iptables ignores it).
async fn lab_scenario(mode: &str, layout: &str, prefix: &str) {
    let prefix = format!("{prefix}{}", std::process::id() % 100);
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let Some(lab) = LabRun::start(
        &prefix,
        &[
            "--nodes",
            "2",
            "--proxy-mode",
            mode,
            "--nftables-layout",
            layout,
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .await
    else {
        return;
    };
    let data_dir = lab.data_dir();
    let services = lab.services();
    let k = lab.server.kubectl("1.33").unwrap();
    k.run_stdin(&["apply", "-f", "-"], EXTRA).ok();
    k.run_stdin(&["apply", "-f", "-"], MATRIX).ok();
    k.run_stdin(&["apply", "-f", "-"], terminating::TERMINATING)
        .ok();

    let nginx = lab.ready_n("app=nginx", 3).await;
    let names: BTreeSet<String> = nginx.iter().map(|p| p.0.clone()).collect();

    // The seed: NodePort 30002 on either node reaches all three pods from the host.
    seed_nodeport_reaches(&names, 40).await;

    // ClusterIP from a pod (agnhost's /dial) and from a node's own namespace.
    let cluster_ip = services
        .get("nginx")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let dial = http_get(
        &format!("{}:80", nginx[0].1),
        &format!("/dial?request=hostname&protocol=http&host={cluster_ip}&port=80&tries=1"),
    )
    .expect("dial answers");
    assert!(
        names.iter().any(|n| dial.contains(n.as_str())),
        "pod → ClusterIP: {dial}"
    );
    let node1 = format!("{prefix}-node-node-1");
    let from_node =
        curl_in(&node1, &format!("http://{cluster_ip}/hostname")).expect("node → ClusterIP");
    assert!(names.contains(from_node.trim()), "{from_node}");

    // A Service without endpoints rejects at once (once its rules are in: the first sync of
    // the manifests applied after `up` may still be pending).
    let empty = format!("{}:30010", NODE_IPS[0]).parse().unwrap();
    until(20, "the empty Service's rules", async || {
        TcpStream::connect_timeout(&empty, Duration::from_secs(1))
            .err()
            .filter(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
    })
    .await;
    // The reject is an ICMP error, and the kernel rate-limits those per destination (a burst of
    // 6, one more per second): let the bucket refill before timing, or a SYN retry shows up.
    std::thread::sleep(Duration::from_secs(3));
    for _ in 0..2 {
        let started = Instant::now();
        let err = TcpStream::connect_timeout(&empty, Duration::from_secs(3))
            .expect_err("no endpoints: no connection");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    // Cluster policy: the source is SNATed (the pod does not see the host's address).
    let seen = http_get(&format!("{}:30002", NODE_IPS[1]), "/clientip").expect("clientip");
    assert!(
        !seen.starts_with(&format!("{HOST_IP}:")),
        "Cluster policy SNATs: {seen}"
    );

    // kube-proxy's metrics, served in the node's namespace; /healthz on the node address.
    let metrics = curl_in(&node1, "http://127.0.0.1:10249/metrics").expect("metrics");
    let last = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_last_timestamp_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("last sync timestamp");
    assert!(last > 1.0e9, "{last}");
    let mode_served = curl_in(&node1, "http://127.0.0.1:10249/proxyMode").unwrap();
    assert_eq!(mode_served, mode);
    let (code, _) = http_any(&format!("{}:10256", NODE_IPS[0]), "/healthz").expect("healthz");
    assert_eq!(code, 200);

    {
        // Session affinity ClientIP: every request from the host lands on one pod.
        let addr = format!("{}:30011", NODE_IPS[0]);
        let mut sticky = BTreeSet::new();
        for _ in 0..20 {
            sticky.insert(http_get(&addr, "/hostname").expect("sticky"));
        }
        assert_eq!(sticky.len(), 1, "{sticky:?}");

        // externalTrafficPolicy: Local with one endpoint.
        let solo = lab.ready_n("app=solo", 1).await.remove(0);
        let (with, without) = if solo.2 == "node-1" {
            (NODE_IPS[0], NODE_IPS[1])
        } else {
            (NODE_IPS[1], NODE_IPS[0])
        };
        let seen = until(20, "the Local NodePort", async || {
            http_get(&format!("{with}:30012"), "/clientip")
        })
        .await;
        assert!(
            seen.starts_with(&format!("{HOST_IP}:")),
            "source preserved: {seen}"
        );
        let started = Instant::now();
        let err = TcpStream::connect_timeout(
            &format!("{without}:30012").parse().unwrap(),
            Duration::from_secs(1),
        )
        .expect_err("no local endpoint: dropped");
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::TimedOut,
            "dropped, not rejected: {err}"
        );
        assert!(started.elapsed() >= Duration::from_millis(900));
        let hc = services.get("local").await.unwrap().spec.unwrap();
        let hc_port = hc.health_check_node_port.expect("healthCheckNodePort");
        let (code, body) = http_any(&format!("{with}:{hc_port}"), "/").expect("hc answers");
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"localEndpoints\":1"), "{body}");
        let (code, body) = http_any(&format!("{without}:{hc_port}"), "/").expect("hc answers");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"localEndpoints\":0"), "{body}");

        // A LoadBalancer IP from the host (the lab routes the pool to node-1).
        let lb_ip = until(30, "a LoadBalancer IP", async || {
            let s = services.get("lb").await.ok()?;
            s.status?.load_balancer?.ingress?.first()?.ip.clone()
        })
        .await;
        let body = until(20, "the LoadBalancer IP to answer", async || {
            http_get(&format!("{lb_ip}:8080"), "/hostname")
        })
        .await;
        assert!(names.contains(body.trim()), "{body}");
    }

    let m = Matrix::new(&lab, &prefix).await;
    m.external_ips_and_source_ranges(&lab).await;
    m.hairpin_and_internal_traffic_policy().await;
    m.masquerade_matrix(mode).await;
    m.udp_stream_moves_when_its_endpoint_goes(&lab).await;
    terminating::fallback_to_terminating_endpoints(&lab).await;

    // kill -9 node-1's agent under load, then restart it: the rules stay in the kernel.
    let pids = std::fs::read_to_string(data_dir.join("lab").join("agents.pid")).unwrap();
    let pid: u32 = pids.lines().next().unwrap().trim().parse().unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(argv.iter().any(|a| a == "node-1"), "{argv:?}");
    let addr = format!("{}:30002", NODE_IPS[0]);
    let load = std::thread::spawn(move || {
        // Failures with their time since the load started (kill at ~1 s, restart at ~4 s).
        let (mut ok, mut failed) = (0, Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(12) {
            match http_get(&addr, "/hostname") {
                Some(_) => ok += 1,
                None => failed.push(start.elapsed()),
            }
        }
        (ok, failed)
    });
    std::thread::sleep(Duration::from_secs(1));
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let log =
        std::fs::File::create(data_dir.join("lab").join("agent-node-1-restarted.log")).unwrap();
    let restarted = KillOnDrop(
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restarting the agent"),
    );
    let (ok, failed) = load.join().unwrap();
    // While the agent is dead, the kernel's rules carry every request.
    let while_down: Vec<_> = failed
        .iter()
        .filter(|t| **t < Duration::from_millis(3900))
        .collect();
    assert!(
        while_down.is_empty(),
        "failed at {while_down:?} ({ok} ok) while the agent was killed"
    );
    // After the restart too — unless the restarted agent restarted the pods themselves (pod
    // adoption is the pod runtime's business, not the proxy's: its log says so when it happens).
    let restarted_log =
        std::fs::read_to_string(data_dir.join("lab").join("agent-node-1-restarted.log"))
            .unwrap_or_default();
    if restarted_log.contains("restarting the containers of a pod found running") {
        eprintln!(
            "note: the restarted agent restarted its pods; failures at {failed:?} not counted"
        );
    } else {
        assert!(
            failed.is_empty(),
            "failed at {failed:?} ({ok} ok) across kill -9 (~1 s) and restart (~4 s)"
        );
    }
    assert!(ok > 20, "load ran: {ok}");
    // The restarted agent took over: it serves metrics with a fresh sync.
    until(20, "the restarted agent's sync", async || {
        let m = curl_in(&node1, "http://127.0.0.1:10249/metrics")?;
        let t: f64 = m
            .lines()
            .find_map(|l| l.strip_prefix("kubeproxy_sync_proxy_rules_last_timestamp_seconds "))?
            .trim()
            .parse()
            .ok()?;
        (t > last).then_some(())
    })
    .await;
    assert!(http_get(&format!("{}:30002", NODE_IPS[0]), "/hostname").is_some());

    drop(restarted);
    let mut lab = lab;
    assert!(lab.stop(), "up exits cleanly");
    drop(lab);
    assert_eq!(links_and_namespaces(&prefix), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_lab_nftables() {
    lab_scenario("nftables", "maps", "pxn").await;
}

/// kube-proxy's own layout keeps its real-packet coverage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_lab_nftables_chains() {
    lab_scenario("nftables", "chains", "pxc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_lab_iptables() {
    lab_scenario("iptables", "maps", "pxi").await;
}

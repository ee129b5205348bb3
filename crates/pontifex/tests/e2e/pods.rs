//! Pods in the lab (`pontifex up --nodes N`, root only), seen from outside: a readiness probe flips the
//! Ready condition and the Service's endpoints follow; a failing liveness probe restarts the container;
//! a crashing command is restarted with the kubelet's back-off (immediately, then after 10 s) and shows
//! CrashLoopBackOff in between; a command container sees seed 002's Service environment variables; the
//! seed Deployment spreads over three nodes and pods reach each other across nodes (TCP and UDP, host-gw
//! and VXLAN); `pontifex down` after a SIGKILLed `up` leaves nothing behind.
//!
//! Each test runs its own lab with its own prefix, one lab at a time (they share the host address
//! 172.31.0.1). A failing test prints the `up` log and every agent's log before the lab goes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ContainerStatus, Endpoints, Pod, Service};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::json;
use test_support::examples_dir;

use crate::lab::{LabRun, http_get, ip_and_node, is_ready, links_and_namespaces, until};

fn condition(p: &Pod, type_: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

fn container_status(p: &Pod) -> Option<ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()
        .cloned()
}

/// The ready and not-ready addresses of Endpoints `name` in `default`.
async fn endpoint_ips(client: &Client, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let (mut ready, mut not_ready) = (BTreeSet::new(), BTreeSet::new());
    if let Ok(Some(ep)) = api.get_opt(name).await {
        for s in ep.subsets.iter().flatten() {
            ready.extend(s.addresses.iter().flatten().map(|a| a.ip.clone()));
            not_ready.extend(s.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
        }
    }
    (ready, not_ready)
}

/// A file path no other test run uses, removed when dropped.
struct Marker(PathBuf);

impl Marker {
    fn new(what: &str) -> Marker {
        Marker(std::env::temp_dir().join(format!("pontifex-{what}-{}", std::process::id())))
    }
    fn set(&self, present: bool) {
        if present {
            std::fs::write(&self.0, "ok").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Marker {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probe_flips_ready_and_the_endpoints_follow() {
    let Some(lab) = LabRun::start("pbr", &["--nodes", "1"]).await else {
        return;
    };
    // An exec probe on a file this test owns: the pod's processes see the host's filesystem.
    let marker = Marker::new("ready");
    marker.set(true);
    lab.create_service(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))
    .await;
    lab.create_pod(json!({
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "web", "image": "nginx",
            "ports": [{"containerPort": 80}],
            "readinessProbe": {
                "exec": {"command": ["test", "-e", marker.path()]},
                "periodSeconds": 1, "failureThreshold": 1, "successThreshold": 1,
            },
        }]},
    }))
    .await;
    let (ip, _) = lab.ready("web").await;
    until(20, "the pod among the ready endpoints", async || {
        let (ready, _) = endpoint_ips(&lab.client, "web").await;
        ready.contains(&ip).then_some(())
    })
    .await;

    // The probe fails: Ready goes False, the pod keeps running, the endpoint moves to notReady.
    marker.set(false);
    let pods = lab.pods();
    until(20, "Ready=False after the probe fails", async || {
        let p = pods.get("web").await.ok()?;
        let phase = p.status.as_ref()?.phase.clone();
        (condition(&p, "Ready").as_deref() == Some("False")
            && condition(&p, "ContainersReady").as_deref() == Some("False")
            && phase.as_deref() == Some("Running"))
        .then_some(())
    })
    .await;
    until(
        20,
        "the endpoint among the not-ready addresses",
        async || {
            let (ready, not_ready) = endpoint_ips(&lab.client, "web").await;
            (!ready.contains(&ip) && not_ready.contains(&ip)).then_some(())
        },
    )
    .await;
    let p = pods.get("web").await.unwrap();
    assert_eq!(
        container_status(&p).map(|c| c.restart_count),
        Some(0),
        "a readiness failure never restarts"
    );

    // And back.
    marker.set(true);
    lab.ready("web").await;
    until(20, "the pod back among the ready endpoints", async || {
        let (ready, not_ready) = endpoint_ips(&lab.client, "web").await;
        (ready.contains(&ip) && !not_ready.contains(&ip)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_liveness_probe_restarts_the_container() {
    let Some(lab) = LabRun::start("pbl", &["--nodes", "1"]).await else {
        return;
    };
    let marker = Marker::new("alive");
    marker.set(true);
    lab.create_pod(json!({
        "metadata": {"name": "live"},
        "spec": {"containers": [{
            "name": "live", "image": "nginx",
            "ports": [{"containerPort": 80}],
            "livenessProbe": {
                "exec": {"command": ["test", "-e", marker.path()]},
                "periodSeconds": 1, "failureThreshold": 2,
            },
        }]},
    }))
    .await;
    let (ip, _) = lab.ready("live").await;
    until(20, "the server answers", async || {
        http_get(&format!("{ip}:80"), "/hostname")
    })
    .await;
    let first_id = container_status(&lab.pods().get("live").await.unwrap())
        .and_then(|c| c.container_id)
        .expect("a container id");
    // Healthy for a while: no restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = lab.pods().get("live").await.unwrap();
    assert_eq!(container_status(&p).map(|c| c.restart_count), Some(0));

    marker.set(false);
    let pods = lab.pods();
    let cs = until(30, "a restart after the liveness probe fails", async || {
        let cs = container_status(&pods.get("live").await.ok()?)?;
        (cs.restart_count >= 1).then_some(cs)
    })
    .await;
    assert_ne!(cs.container_id.as_deref(), Some(first_id.as_str()));
    let last = cs
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated of the killed instance");
    assert_eq!(last.container_id.as_deref(), Some(first_id.as_str()));
    // Healthy again: the new instance runs and answers on the same pod IP.
    marker.set(true);
    let (ip2, _) = lab.ready("live").await;
    assert_eq!(ip, ip2, "a container restart keeps the sandbox");
    until(20, "the restarted server answers", async || {
        http_get(&format!("{ip}:80"), "/hostname")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_command_is_restarted_with_back_off() {
    let Some(lab) = LabRun::start("pbc", &["--nodes", "1"]).await else {
        return;
    };
    lab.create_pod(json!({
        "metadata": {"name": "crash"},
        "spec": {"containers": [{
            "name": "crash", "image": "busybox",
            "command": ["sh", "-c", "exit 1"],
        }]},
    }))
    .await;
    let pods = lab.pods();
    // Poll often and note when each restart count is first seen, and the waiting reasons seen.
    let started = Instant::now();
    let mut first_seen: Vec<Option<Instant>> = vec![None; 3];
    let mut reasons = BTreeSet::new();
    let mut exit_codes = BTreeSet::new();
    while first_seen[2].is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "two restarts within 40 s; saw {first_seen:?}, reasons {reasons:?}"
        );
        if let Some(cs) = pods
            .get("crash")
            .await
            .ok()
            .as_ref()
            .and_then(container_status)
        {
            let n = usize::try_from(cs.restart_count).unwrap();
            if n < first_seen.len() && first_seen[n].is_none() {
                first_seen[n] = Some(Instant::now());
            }
            if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                reasons.extend(w.reason.clone());
            }
            if let Some(t) = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()) {
                exit_codes.insert(t.exit_code);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let one = first_seen[1].expect("restart 1 seen");
    let two = first_seen[2].expect("restart 2 seen");
    // The kubelet restarts the first crash at once, then waits 10 s, 20 s, ... (cap 5 min).
    assert!(
        one.duration_since(started) < Duration::from_secs(8),
        "the first restart is immediate: {:?}",
        one.duration_since(started)
    );
    let gap = two.duration_since(one);
    assert!(
        gap >= Duration::from_secs(9) && gap < Duration::from_secs(16),
        "the second restart waits the 10 s back-off: {gap:?}"
    );
    assert!(
        reasons.contains("CrashLoopBackOff"),
        "waiting reasons: {reasons:?}"
    );
    assert_eq!(exit_codes, BTreeSet::from([1]));
    let p = pods.get("crash").await.unwrap();
    assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
}

/// The `name=value` lines a container printed, from its log file under the agent's data directory
/// (`<data>/nodes/<node>/pods/<ns>_<pod>_<uid>/<container>/0.log`, CRI log format).
fn logged_env(data_dir: &Path, node: &str, pod: &Pod, container: &str) -> Option<Vec<String>> {
    let dir = data_dir
        .join("nodes")
        .join(node)
        .join("pods")
        .join(format!(
            "default_{}_{}",
            pod.metadata.name.as_deref()?,
            pod.metadata.uid.as_deref()?
        ))
        .join(container);
    let text = std::fs::read_to_string(dir.join("0.log")).ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3))
            .map(str::to_owned)
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_containers_see_the_service_environment_of_seed_002() {
    let Some(lab) = LabRun::start("pbe", &["--nodes", "1"]).await else {
        return;
    };
    // Seed 002's shapes: a one-port Service with a named port, and kube-dns's three ports (UDP first).
    let test = lab
        .create_service(json!({
            "metadata": {"name": "service-test"},
            "spec": {"selector": {"app": "x"}, "ports": [{"name": "work", "port": 6180}]},
        }))
        .await;
    let dns = lab
        .create_service(json!({
            "metadata": {"name": "kube-dns"},
            "spec": {"selector": {"app": "y"}, "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                {"name": "metrics", "port": 9153, "protocol": "TCP"},
            ]},
        }))
        .await;
    let kubernetes = Api::<Service>::namespaced(lab.client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("the kubernetes Service");
    let ip_of = |s: &Service| s.spec.as_ref().unwrap().cluster_ip.clone().unwrap();
    let (t, d, k) = (ip_of(&test), ip_of(&dns), ip_of(&kubernetes));

    let env_pod = |name: &str, links: bool| {
        json!({
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": "Never",
                "enableServiceLinks": links,
                "containers": [{
                    "name": "env", "image": "busybox",
                    "command": ["sh", "-c", "env"],
                    "env": [{"name": "OWN", "value": "mine"}],
                }],
            },
        })
    };
    let with = lab.create_pod(env_pod("with-links", true)).await;
    let without = lab.create_pod(env_pod("without-links", false)).await;
    let data = lab.data_dir();
    let pods = lab.pods();
    let mut envs = Vec::new();
    for pod in [&with, &without] {
        let name = pod.metadata.name.clone().unwrap();
        let done = until(30, &format!("{name} Succeeded"), async || {
            let p = pods.get(&name).await.ok()?;
            (p.status.as_ref()?.phase.as_deref() == Some("Succeeded")).then_some(p)
        })
        .await;
        let node = ip_and_node(&done).1;
        envs.push(
            until(10, "the env log", async || {
                logged_env(&data, &node, pod, "env").filter(|l| !l.is_empty())
            })
            .await,
        );
    }
    let expected_with = [
        format!("SERVICE_TEST_SERVICE_HOST={t}"),
        "SERVICE_TEST_SERVICE_PORT=6180".into(),
        "SERVICE_TEST_SERVICE_PORT_WORK=6180".into(),
        format!("SERVICE_TEST_PORT=tcp://{t}:6180"),
        format!("SERVICE_TEST_PORT_6180_TCP=tcp://{t}:6180"),
        "SERVICE_TEST_PORT_6180_TCP_PROTO=tcp".into(),
        "SERVICE_TEST_PORT_6180_TCP_PORT=6180".into(),
        format!("SERVICE_TEST_PORT_6180_TCP_ADDR={t}"),
        format!("KUBE_DNS_SERVICE_HOST={d}"),
        "KUBE_DNS_SERVICE_PORT=53".into(),
        "KUBE_DNS_SERVICE_PORT_DNS=53".into(),
        "KUBE_DNS_SERVICE_PORT_DNS_TCP=53".into(),
        "KUBE_DNS_SERVICE_PORT_METRICS=9153".into(),
        format!("KUBE_DNS_PORT=udp://{d}:53"),
        format!("KUBE_DNS_PORT_53_UDP=udp://{d}:53"),
        "KUBE_DNS_PORT_53_UDP_PROTO=udp".into(),
        "KUBE_DNS_PORT_53_UDP_PORT=53".into(),
        format!("KUBE_DNS_PORT_53_UDP_ADDR={d}"),
        format!("KUBE_DNS_PORT_53_TCP_ADDR={d}"),
        "KUBE_DNS_PORT_9153_TCP_PROTO=tcp".into(),
    ];
    let always = [
        format!("KUBERNETES_SERVICE_HOST={k}"),
        "KUBERNETES_SERVICE_PORT=443".into(),
        "KUBERNETES_SERVICE_PORT_HTTPS=443".into(),
        format!("KUBERNETES_PORT=tcp://{k}:443"),
        format!("KUBERNETES_PORT_443_TCP=tcp://{k}:443"),
        "KUBERNETES_PORT_443_TCP_PROTO=tcp".into(),
        "KUBERNETES_PORT_443_TCP_PORT=443".into(),
        format!("KUBERNETES_PORT_443_TCP_ADDR={k}"),
        "OWN=mine".into(),
    ];
    for line in expected_with.iter().chain(&always) {
        assert!(envs[0].contains(line), "{line} in {:#?}", envs[0]);
    }
    // enableServiceLinks: false drops the namespace's Services but keeps the kubernetes Service's.
    for line in &always {
        assert!(envs[1].contains(line), "{line} in {:#?}", envs[1]);
    }
    let leaked: Vec<&String> = envs[1]
        .iter()
        .filter(|l| l.starts_with("SERVICE_TEST_") || l.starts_with("KUBE_DNS_"))
        .collect();
    assert!(leaked.is_empty(), "enableServiceLinks=false: {leaked:?}");
}

/// A server pod pinned to `node` with HTTP on 80 and the UDP echo on 8081.
fn server_pod(name: &str, node: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"app": "dialer"}},
        "spec": {
            "nodeName": node,
            "containers": [{
                "name": "srv", "image": "nginx",
                "ports": [
                    {"containerPort": 80},
                    {"containerPort": 8081, "protocol": "UDP"},
                ],
            }],
        },
    })
}

/// `/dial` from the pod at `from_ip` to `to_ip` over `protocol` (http to port 80, udp to 8081); the
/// answers.
fn dial(from_ip: &str, to_ip: &str, protocol: &str) -> Option<String> {
    let port = if protocol == "udp" { 8081 } else { 80 };
    http_get(
        &format!("{from_ip}:80"),
        &format!("/dial?request=hostname&protocol={protocol}&host={to_ip}&port={port}&tries=1"),
    )
}

/// The seed Deployment on `nodes` lab nodes with `backend`: its pods spread over at least two nodes
/// and every pod reaches every other over HTTP; two pinned pods on different nodes reach each other
/// over UDP as well.
async fn seed_spreads_and_pods_reach_across_nodes(prefix: &str, nodes: usize, backend: &str) {
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let n = nodes.to_string();
    let Some(lab) = LabRun::start(
        prefix,
        &[
            "--nodes",
            &n,
            "--backend",
            backend,
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .await
    else {
        return;
    };
    let pods = lab.pods();
    let running = until(60, "three Running, Ready nginx pods", async || {
        let list = pods
            .list(&ListParams::default().labels("app=nginx"))
            .await
            .ok()?;
        let ready: Vec<(String, String, String)> = list
            .items
            .iter()
            .filter(|p| is_ready(p))
            .map(|p| {
                let (ip, node) = ip_and_node(p);
                (p.metadata.name.clone().unwrap(), ip, node)
            })
            .collect();
        (ready.len() == 3).then_some(ready)
    })
    .await;
    let on: BTreeSet<&str> = running.iter().map(|(_, _, n)| n.as_str()).collect();
    assert!(on.len() >= 2, "pods spread over the nodes: {running:?}");
    if nodes >= 3 {
        // The scheduler's spreading puts one replica on each of three empty nodes.
        assert_eq!(on.len(), 3, "one pod per node: {running:?}");
    }
    for (a_name, a_ip, _) in &running {
        for (b_name, b_ip, _) in &running {
            if a_name == b_name {
                continue;
            }
            let answer = until(20, &format!("{a_name} reaching {b_name}"), async || {
                dial(a_ip, b_ip, "http").filter(|d| d.contains(b_name.as_str()))
            })
            .await;
            assert!(answer.contains("responses"), "{answer}");
        }
    }
    // UDP across nodes: agnhost's UDP echo answers `hostname` with the pod's name.
    lab.create_pod(server_pod("udp-a", "node-1")).await;
    lab.create_pod(server_pod("udp-b", "node-2")).await;
    let (a_ip, _) = lab.ready("udp-a").await;
    let (b_ip, _) = lab.ready("udp-b").await;
    for (from, to, to_name) in [(&a_ip, &b_ip, "udp-b"), (&b_ip, &a_ip, "udp-a")] {
        until(20, &format!("UDP to {to_name} across nodes"), async || {
            dial(from, to, "udp").filter(|d| d.contains(&format!("\"{to_name}\"")))
        })
        .await;
        until(20, &format!("TCP to {to_name} across nodes"), async || {
            dial(from, to, "http").filter(|d| d.contains(&format!("\"{to_name}\"")))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_spreads_over_three_nodes_host_gw() {
    seed_spreads_and_pods_reach_across_nodes("pb3", 3, "host-gw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_reaches_across_nodes_over_vxlan() {
    seed_spreads_and_pods_reach_across_nodes("pbx", 2, "vxlan").await;
}

/// Lines of `cmd` output (root namespace) that mention `needle`.
fn lines_with(cmd: &[&str], needle: &str) -> Vec<String> {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not yet reaped by its parent) has stopped running.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_after_a_killed_up_leaves_nothing_behind() {
    let prefix = "pbd";
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let tables_before = lines_with(&["nft", "list", "tables"], "");
    let Some(mut lab) =
        LabRun::start(prefix, &["--nodes", "2", "-f", manifest.to_str().unwrap()]).await
    else {
        return;
    };
    let pods = lab.pods();
    until(60, "three Ready nginx pods", async || {
        let list = pods
            .list(&ListParams::default().labels("app=nginx"))
            .await
            .ok()?;
        (list.items.iter().filter(|p| is_ready(p)).count() == 3).then_some(())
    })
    .await;
    // What the lab runs: agents (their pids in agents.pid) and pod processes (in pod namespaces).
    let agents: Vec<u32> = std::fs::read_to_string(lab.data_dir().join("lab").join("agents.pid"))
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    assert_eq!(agents.len(), 2, "two agents");
    let mut workloads = Vec::new();
    for ns in lines_with(&["ip", "netns", "list"], &format!("{prefix}-pod-")) {
        let ns = ns.split_whitespace().next().unwrap().to_owned();
        let pids = lines_with(&["ip", "netns", "pids", &ns], "");
        workloads.extend(pids.iter().filter_map(|p| p.trim().parse::<u32>().ok()));
    }
    assert!(workloads.len() >= 3, "pod processes: {workloads:?}");
    let routes_before = lines_with(
        &["ip", "route", "show", "proto", "88"],
        &format!("dev {prefix}0"),
    );
    assert!(
        !routes_before.is_empty(),
        "the host routes pod CIDRs into the lab"
    );

    // kill -9 `up`: nothing of its own shutdown runs; agents and pods outlive it.
    lab.server.kill();
    assert!(
        agents.iter().all(|p| alive(*p)),
        "agents outlive a crashed up"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .args(["down", "--lab-prefix", prefix, "--data-dir"])
        .arg(lab.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // Processes take a moment to be reaped by their parents.
    until(10, "agents and pod processes gone", async || {
        (!agents.iter().chain(&workloads).any(|p| alive(*p))).then_some(())
    })
    .await;
    assert_eq!(links_and_namespaces(prefix), Vec::<String>::new());
    assert_eq!(
        lines_with(&["ip", "route", "show", "proto", "88"], prefix),
        Vec::<String>::new()
    );
    assert_eq!(
        lines_with(
            &["ip", "route", "show", "table", "all"],
            &format!("{prefix}0")
        ),
        Vec::<String>::new()
    );
    let new_tables: Vec<String> = lines_with(&["nft", "list", "tables"], "")
        .into_iter()
        .filter(|t| !tables_before.contains(t))
        .collect();
    assert_eq!(new_tables, Vec::<String>::new(), "nftables tables left");
}

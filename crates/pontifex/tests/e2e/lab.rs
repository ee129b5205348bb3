//! The lab (`pontifex up --nodes N`, root only): lab nodes are network namespaces with a real agent
//! each; the seed Deployment's pods run, get IPs from their node's podCIDR, answer HTTP with their own
//! name, reach each other across nodes, and show up in `kubectl get endpoints`. Stopping `up` removes
//! every namespace and link it made. Labs give the host 172.31.0.1, so they run one at a time.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use test_support::{TestServer, examples_dir};

pub(crate) static ONE_LAB_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Runs `pontifex down` for the lab when dropped, so a failing test leaves nothing behind.
pub(crate) struct Down {
    pub(crate) prefix: String,
    pub(crate) data_dir: PathBuf,
}

impl Drop for Down {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pontifex"))
            .args(["down", "--lab-prefix", &self.prefix, "--data-dir"])
            .arg(&self.data_dir)
            .output();
    }
}

/// `GET http://addr/path` with a plain socket: status line and body.
pub(crate) fn http_get(addr: &str, path: &str) -> Option<String> {
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
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The lab nodes' underlay addresses (node-1, node-2), as `up --nodes 2` assigns them.
pub(crate) const NODE_IPS: [&str; 2] = ["172.31.0.10", "172.31.0.11"];

/// Waits until the seed's NodePort 30002 on either node reaches every pod in `names` from the
/// host (the distinct `/hostname`s).
pub(crate) async fn seed_nodeport_reaches(names: &BTreeSet<String>, secs: u64) {
    for ip in NODE_IPS {
        let addr = format!("{ip}:30002");
        until(secs, "all three pods through the NodePort", async || {
            (hostnames(&addr, 12) == *names).then_some(())
        })
        .await;
    }
}

/// The distinct `/hostname` answers of `tries` requests to `addr` (which pods a Service reaches).
pub(crate) fn hostnames(addr: &str, tries: usize) -> BTreeSet<String> {
    (0..tries)
        .filter_map(|_| http_get(addr, "/hostname"))
        .map(|b| b.trim().to_owned())
        .collect()
}

pub(crate) fn links_and_namespaces(prefix: &str) -> Vec<String> {
    let ns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ns.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&links.stdout).lines())
        .filter(|l| {
            l.contains(&format!("{prefix}-"))
                || l.contains(&format!(" {prefix}0"))
                || l.contains(&format!(" {prefix}v"))
        })
        .map(str::to_owned)
        .collect()
}

pub(crate) async fn until<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A running lab; dropping it stops `up`, runs `pontifex down` and, when a test is failing, prints
/// the logs first.
pub(crate) struct LabRun {
    // Field order is drop order: `down` needs the data directory `server` deletes, and the lock is
    // released only once the lab is gone.
    _down: Down,
    pub(crate) server: TestServer,
    pub(crate) client: Client,
    _one: tokio::sync::MutexGuard<'static, ()>,
}

impl LabRun {
    /// `pontifex up --lab-prefix <prefix> <extra>`; `None` (test skipped) without root.
    pub(crate) async fn start(prefix: &str, extra: &[&str]) -> Option<LabRun> {
        if !is_root() {
            eprintln!("skipped: the lab needs root");
            return None;
        }
        let one = ONE_LAB_AT_A_TIME.lock().await;
        let mut args = vec!["--lab-prefix", prefix];
        args.extend_from_slice(extra);
        let server = TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), &args)
            .expect("pontifex up");
        let down = Down {
            prefix: prefix.to_owned(),
            data_dir: server.data_dir().to_owned(),
        };
        let client = crate::client::client(&server).await;
        Some(LabRun {
            _down: down,
            server,
            client,
            _one: one,
        })
    }

    pub(crate) fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.server.data_dir().to_owned()
    }

    pub(crate) async fn create_pod(&self, manifest: serde_json::Value) -> Pod {
        let pod: Pod = serde_json::from_value(manifest).expect("a pod manifest");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("creating the pod")
    }

    pub(crate) async fn create_service(&self, manifest: serde_json::Value) -> Service {
        let svc: Service = serde_json::from_value(manifest).expect("a service manifest");
        Api::<Service>::namespaced(self.client.clone(), "default")
            .create(&PostParams::default(), &svc)
            .await
            .expect("creating the service")
    }

    pub(crate) fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Every pod matching `selector` that is Running and Ready: (name, IP, node).
    pub(crate) async fn ready_pods(&self, selector: &str) -> Vec<(String, String, String)> {
        let Ok(list) = self
            .pods()
            .list(&ListParams::default().labels(selector))
            .await
        else {
            return Vec::new();
        };
        list.items
            .iter()
            .filter(|p| is_ready(p))
            .map(|p| {
                let (ip, node) = ip_and_node(p);
                (p.metadata.name.clone().unwrap_or_default(), ip, node)
            })
            .collect()
    }

    /// Waits for exactly `n` ready pods matching `selector`.
    pub(crate) async fn ready_n(&self, selector: &str, n: usize) -> Vec<(String, String, String)> {
        until(90, &format!("{n} ready pods {selector}"), async || {
            let p = self.ready_pods(selector).await;
            (p.len() == n).then_some(p)
        })
        .await
    }

    /// Stops `up` gracefully; whether it exited cleanly. `pontifex down` still runs on drop.
    pub(crate) fn stop(&mut self) -> bool {
        self.server.stop().expect("stopping up")
    }

    /// Waits until pod `name` is Running and Ready; its IP and node.
    pub(crate) async fn ready(&self, name: &str) -> (String, String) {
        let pods = self.pods();
        until(60, &format!("pod {name} Running and Ready"), async || {
            let p = pods.get_opt(name).await.ok()??;
            is_ready(&p).then(|| ip_and_node(&p))
        })
        .await
    }
}

impl Drop for LabRun {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- pontifex up log ----\n{}", self.server.log());
            print_agent_logs(self.server.data_dir());
        }
        // SIGKILL, then `down` (the field's Drop) removes agents, pods and links: quick, and the same
        // path a crashed `up` takes.
        self.server.kill();
    }
}

/// Every `*.log` under `dir`, depth first.
fn log_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            log_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "log") {
            out.push(p);
        }
    }
}

/// The agents' logs and every container log (`<data>/nodes/<node>/pods/...`).
pub(crate) fn print_agent_logs(data_dir: &Path) {
    let mut logs = Vec::new();
    log_files(&data_dir.join("lab"), &mut logs);
    log_files(&data_dir.join("nodes"), &mut logs);
    logs.sort();
    for p in logs {
        eprintln!(
            "---- {} ----\n{}",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        );
    }
}

pub(crate) fn is_ready(p: &Pod) -> bool {
    let Some(st) = p.status.as_ref() else {
        return false;
    };
    st.phase.as_deref() == Some("Running")
        && st
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub(crate) fn ip_and_node(p: &Pod) -> (String, String) {
    (
        p.status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .unwrap_or_default(),
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_runs_on_two_lab_nodes_and_the_lab_goes_away() {
    let prefix = format!("e{}", std::process::id() % 100_000);
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let Some(mut lab) =
        LabRun::start(&prefix, &["--nodes", "2", "-f", manifest.to_str().unwrap()]).await
    else {
        return;
    };
    // Three Running, Ready pods with IPs, on both nodes.
    let running = lab.ready_n("app=nginx", 3).await;
    let nodes: BTreeSet<&str> = running.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(nodes.len(), 2, "pods spread over both nodes: {running:?}");
    for (_, ip, _) in &running {
        assert!(
            ip.starts_with("10.244."),
            "pod IP from a node podCIDR: {ip}"
        );
    }

    // Each pod answers on port 80 with its own name, reached from the host through the lab routes.
    for (name, ip, _) in &running {
        let body = until(20, "the pod to answer /hostname", async || {
            http_get(&format!("{ip}:80"), "/hostname")
        })
        .await;
        assert_eq!(body.trim(), name);
    }
    // Pod to pod across nodes (agnhost's /dial from one pod to a pod on the other node).
    let (a, b) = {
        let a = &running[0];
        let b = running.iter().find(|p| p.2 != a.2).unwrap();
        (a, b)
    };
    let dial = http_get(
        &format!("{}:80", a.1),
        &format!(
            "/dial?request=hostname&protocol=http&host={}&port=80&tries=1",
            b.1
        ),
    )
    .expect("dial answers");
    assert!(
        dial.contains(&b.0),
        "{} reached {} across nodes: {dial}",
        a.0,
        b.0
    );

    // kubectl shows the endpoints.
    let k = lab.server.kubectl("1.33").unwrap();
    let out = k.run(&["get", "endpoints", "nginx", "--no-headers"]);
    for (_, ip, _) in &running {
        assert!(out.stdout.contains(&format!("{ip}:80")), "{}", out.stdout);
    }

    // Stopping `up` removes the lab.
    assert!(lab.stop(), "up exits cleanly");
    drop(lab);
    assert_eq!(links_and_namespaces(&prefix), Vec::<String>::new());
}

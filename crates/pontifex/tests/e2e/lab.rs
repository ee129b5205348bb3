//! The lab (`pontifex up --nodes N`, root only): lab nodes are network namespaces with a real agent
//! each; the seed Deployment's pods run, get IPs from their node's podCIDR, answer HTTP with their own
//! name, reach each other across nodes, and show up in `kubectl get endpoints`. Stopping `up` removes
//! every namespace and link it made. Labs give the host 172.31.0.1, so they run one at a time.

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use test_support::{TestServer, examples_dir};

pub(crate) static ONE_LAB_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    })
}

/// Runs `pontifex down` for the lab when dropped, so a failing test leaves nothing behind.
pub(crate) struct Down<'a> {
    pub(crate) prefix: String,
    pub(crate) data_dir: &'a Path,
}

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new(env!("CARGO_BIN_EXE_pontifex"))
            .args(["down", "--lab-prefix", &self.prefix, "--data-dir"])
            .arg(self.data_dir)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_deployment_runs_on_two_lab_nodes_and_the_lab_goes_away() {
    if !is_root() {
        eprintln!("skipped: the lab needs root");
        return;
    }
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let prefix = format!("e{}", std::process::id() % 100_000);
    let manifest = examples_dir().join("nginx-nodeport.yaml");
    let mut server = TestServer::start_up(
        Path::new(env!("CARGO_BIN_EXE_pontifex")),
        &[
            "--nodes",
            "2",
            "--lab-prefix",
            &prefix,
            "-f",
            manifest.to_str().unwrap(),
        ],
    )
    .expect("pontifex up --nodes 2");
    let data_dir = server.data_dir().to_owned();
    let down = Down {
        prefix: prefix.clone(),
        data_dir: &data_dir,
    };
    let client = crate::client::client(&server).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Three Running, Ready pods with IPs, on both nodes.
    let running = until(90, "three Running, Ready nginx pods", async || {
        let list = pods
            .list(&ListParams::default().labels("app=nginx"))
            .await
            .ok()?;
        let ready: Vec<(String, String, String)> = list
            .items
            .iter()
            .filter_map(|p| {
                let st = p.status.as_ref()?;
                let ready = st
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                (st.phase.as_deref() == Some("Running") && ready).then(|| {
                    (
                        p.metadata.name.clone().unwrap(),
                        st.pod_ip.clone().unwrap_or_default(),
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.clone())
                            .unwrap_or_default(),
                    )
                })
            })
            .collect();
        (ready.len() == 3).then_some(ready)
    })
    .await;
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
    let k = server.kubectl("1.33").unwrap();
    let out = k.run(&["get", "endpoints", "nginx", "--no-headers"]);
    for (_, ip, _) in &running {
        assert!(out.stdout.contains(&format!("{ip}:80")), "{}", out.stdout);
    }

    // Stopping `up` removes the lab.
    assert!(
        server.stop().expect("stopping up"),
        "up exits cleanly: {}",
        server.log()
    );
    drop(down);
    assert_eq!(links_and_namespaces(&prefix), Vec::<String>::new());
}

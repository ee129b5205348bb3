//! The pod runtime across agent restarts (root, a one-node lab): an agent killed with SIGKILL and
//! started again re-adopts its pods — same container process, same IP, same restartCount — tears down
//! a pod deleted while it was down, and hands a new pod another address. `pontifex exec` sees the pod's
//! resolv.conf; `pontifex logs` shows a command container's output.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use test_support::TestServer;

use crate::lab::{LabRun, http_get, until};

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "cmd", "image": "busybox", "command": ["sh", "-c", "echo hello-from-$HOSTNAME; exec sleep 3600"]}
        ]}
    }))
    .unwrap()
}

/// (pod IP, restartCount of `web`, ready) once the pod runs.
async fn running(pods: &Api<Pod>, name: &str) -> Option<(String, i32)> {
    let p = pods.get(name).await.ok()?;
    let st = p.status?;
    let ready = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let web = st
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "web")?;
    let ip = st.pod_ip.clone()?;
    (ready && st.phase.as_deref() == Some("Running")).then_some((ip, web.restart_count))
}

fn record(data_dir: &Path, pod: &Pod, container: &str) -> serde_json::Value {
    let dir = data_dir.join("nodes/node-1/pods").join(format!(
        "default_{}_{}",
        pod.metadata.name.as_deref().unwrap(),
        pod.metadata.uid.as_deref().unwrap()
    ));
    serde_json::from_slice(&std::fs::read(dir.join(container).join("state.json")).unwrap()).unwrap()
}

fn pontifex(server: &TestServer, args: &[&str]) -> std::process::Output {
    // The flags go right after the subcommand: what follows `--` is the command to run.
    Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .arg(args[0])
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(&args[1..])
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_comes_back_to_its_running_pods() {
    let prefix = format!("r{}", std::process::id() % 1000);
    let Some(mut lab) = LabRun::start(&prefix, &["--nodes", "1"]).await else {
        return;
    };
    let data_dir: PathBuf = std::fs::canonicalize(lab.data_dir()).unwrap();
    let client = lab.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let keep = pods
        .create(&PostParams::default(), &pod("keep"))
        .await
        .unwrap();
    let gone = pods
        .create(&PostParams::default(), &pod("gone"))
        .await
        .unwrap();
    let (ip, restarts) = until(90, "pod keep running", async || {
        running(&pods, "keep").await
    })
    .await;
    let (gone_ip, _) = until(60, "pod gone running", async || {
        running(&pods, "gone").await
    })
    .await;
    assert_eq!(restarts, 0);
    let pid = record(&data_dir, &keep, "web")["running"]["process"]["pid"]
        .as_u64()
        .unwrap();
    let gone_pid = record(&data_dir, &gone, "cmd")["running"]["process"]["pid"]
        .as_u64()
        .unwrap();

    // exec sees the pod's resolv.conf, hostname and network; logs show the command's output.
    let out = pontifex(
        &lab.server,
        &["exec", "keep", "-c", "cmd", "--", "cat", "/etc/resolv.conf"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("nameserver 10.96.0.10"), "{text}");
    assert!(
        text.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{text}"
    );
    assert!(text.contains("options ndots:5"), "{text}");
    let out = pontifex(
        &lab.server,
        &["exec", "keep", "--", "sh", "-c", "hostname; exit 7"],
    );
    assert_eq!(out.status.code(), Some(7), "the exit code passes through");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "keep");
    let logs = until(20, "the command's output in its log", async || {
        let out = pontifex(&lab.server, &["logs", "keep", "-c", "cmd"]);
        let t = String::from_utf8_lossy(&out.stdout).into_owned();
        t.contains("hello-from-keep").then_some(t)
    })
    .await;
    assert_eq!(logs.trim(), "hello-from-keep");

    // kill -9 the agent; its pods keep running.
    let pid_file = data_dir.join("lab/agents.pid");
    let agent: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{agent}/cmdline")).unwrap();
    let argv: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the container outlived its agent"
    );
    assert!(http_get(&format!("{ip}:80"), "/hostname").is_some_and(|b| b.trim() == "keep"));

    // Meanwhile one pod is deleted for good.
    pods.delete(
        "gone",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    until(20, "pod gone removed", async || {
        pods.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;

    // The agent comes back.
    let log = std::fs::File::create(data_dir.join("lab/agent-restarted.log")).unwrap();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // `down` (the Drop guard) stops agents by this file.
    std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();

    // The orphan goes: its processes and its namespace.
    until(30, "the deleted pod's container killed", async || {
        let stat = std::fs::read_to_string(format!("/proc/{gone_pid}/stat")).unwrap_or_default();
        (stat.is_empty() || stat.contains(") Z ")).then_some(())
    })
    .await;
    until(30, "the deleted pod's namespace removed", async || {
        let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let uid = gone.metadata.uid.as_deref().unwrap();
        (!String::from_utf8_lossy(&list.stdout).contains(uid)).then_some(())
    })
    .await;

    // The kept pod: same process, same IP, same restart count, still answering.
    let new = pods
        .create(&PostParams::default(), &pod("new"))
        .await
        .unwrap();
    let (new_ip, _) = until(60, "pod new running", async || running(&pods, "new").await).await;
    let (ip2, restarts2) = until(30, "pod keep still running", async || {
        running(&pods, "keep").await
    })
    .await;
    assert_eq!((ip2.as_str(), restarts2), (ip.as_str(), 0));
    let rec = record(&data_dir, &keep, "web");
    assert_eq!(
        rec["running"]["process"]["pid"].as_u64(),
        Some(pid),
        "not restarted"
    );
    assert_eq!(rec["restart_count"].as_i64(), Some(0));
    assert!(http_get(&format!("{ip}:80"), "/hostname").is_some_and(|b| b.trim() == "keep"));
    assert_ne!(new_ip, ip, "a new pod gets another address");
    let _ = (new, gone_ip);
    let _ = lab.stop();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
}

/// `curl -s --max-time 3 http://addr/path` run by `prefix` (an argv), its stdout when it worked.
fn curl_via(prefix: &[&str], url: &str) -> Option<String> {
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(["curl", "-s", "--fail", "--max-time", "3", url])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_reaches_its_pod_from_host_node_and_pods_until_deleted() {
    let prefix = format!("hp{}", std::process::id() % 1000);
    let Some(mut lab) = LabRun::start(&prefix, &["--nodes", "1"]).await else {
        return;
    };
    let data_dir: PathBuf = std::fs::canonicalize(lab.data_dir()).unwrap();
    let client = lab.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let web: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hp-web"},
        "spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80, "hostPort": 8080}]}
        ]}
    }))
    .unwrap();
    let client_pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hp-client"},
        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}]}
    }))
    .unwrap();
    let host_net: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hp-hostnet"},
        "spec": {"hostNetwork": true, "containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 8090}]}
        ]}
    }))
    .unwrap();
    for p in [&web, &client_pod, &host_net] {
        pods.create(&PostParams::default(), p).await.unwrap();
    }
    until(90, "hostPort pods running", async || {
        for name in ["hp-web", "hp-client", "hp-hostnet"] {
            let st = pods.get(name).await.ok()?.status?;
            (st.phase.as_deref() == Some("Running")).then_some(())?;
        }
        Some(())
    })
    .await;
    let st = pods.get("hp-web").await.unwrap().status.unwrap();
    let node_ip = st.host_ip.clone().unwrap();
    let pod_ip = st.pod_ip.clone().unwrap();
    assert!(node_ip.starts_with("172.31.0."), "{node_ip}");
    assert_ne!(pod_ip, node_ip);

    // hostNetwork: the node's namespace and address.
    let hn = pods.get("hp-hostnet").await.unwrap().status.unwrap();
    assert_eq!(hn.pod_ip.as_deref(), Some(node_ip.as_str()));
    let body = until(
        20,
        "the hostNetwork pod on the node's address",
        async || http_get(&format!("{node_ip}:8090"), "/hostname"),
    )
    .await;
    // A hostNetwork pod's hostname is the node's, as in Kubernetes.
    assert_eq!(body.trim(), "node-1");

    // From the host (outside the node).
    let body = until(20, "the hostPort from the host", async || {
        http_get(&format!("{node_ip}:8080"), "/hostname")
    })
    .await;
    assert_eq!(body.trim(), "hp-web");
    // From the node itself.
    let node_ns = format!("{prefix}-node-node-1");
    let url = format!("http://{node_ip}:8080/hostname");
    assert_eq!(
        curl_via(&["ip", "netns", "exec", &node_ns], &url).as_deref(),
        Some("hp-web")
    );
    // From another pod on the node, and from the pod itself (hairpin).
    let bin = env!("CARGO_BIN_EXE_pontifex");
    let dd = data_dir.to_str().unwrap();
    for from in ["hp-client", "hp-web"] {
        assert_eq!(
            curl_via(&[bin, "exec", "--data-dir", dd, from, "--"], &url).as_deref(),
            Some("hp-web"),
            "from pod {from}"
        );
    }
    // The client pod sees the target's node address (masqueraded), not its own pod address.
    let client_ip = pods
        .get("hp-client")
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_ip
        .unwrap();
    let seen = curl_via(
        &[bin, "exec", "--data-dir", dd, "hp-client", "--"],
        &format!("http://{node_ip}:8080/clientip"),
    )
    .unwrap();
    assert!(!seen.starts_with(&format!("{client_ip}:")), "{seen}");

    // Deleted: the port goes with it.
    pods.delete("hp-web", &DeleteParams::default())
        .await
        .unwrap();
    until(60, "pod hp-web removed", async || {
        pods.get_opt("hp-web").await.ok()?.is_none().then_some(())
    })
    .await;
    until(10, "the hostPort rule removed", async || {
        http_get(&format!("{node_ip}:8080"), "/hostname")
            .is_none()
            .then_some(())
    })
    .await;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node_ns,
            "nft",
            "list",
            "table",
            "ip",
            "pontifex-hostport",
        ])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !rules.contains("dnat"), "{rules}");
    let _ = lab.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_reads_containers_through_the_api_and_the_nodes_kubelet_port() {
    let prefix = format!("kl{}", std::process::id() % 1000);
    let Some(mut lab) = LabRun::start(&prefix, &["--nodes", "1"]).await else {
        return;
    };
    let client = lab.client.clone();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let chatty: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "chatty"},
        "spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "cmd", "image": "busybox", "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; exec sleep 3600"]}
        ]}
    }))
    .unwrap();
    let once: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "once"},
        "spec": {"restartPolicy": "Never", "containers": [
            {"name": "count", "image": "busybox", "command": ["sh", "-c", "for i in 1 2 3; do echo tick-$i; sleep 1; done"]}
        ]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &chatty).await.unwrap();
    until(90, "pod chatty running", async || {
        let st = pods.get("chatty").await.ok()?.status?;
        (st.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    let k = lab.server.kubectl("1.33").unwrap();
    let out = until(20, "the command's output through kubectl", async || {
        let out = k.run(&["logs", "chatty", "-c", "cmd"]);
        out.stdout.contains("line-5").then_some(out)
    })
    .await;
    assert_eq!(out.stdout, "line-1\nline-2\nline-3\nline-4\nline-5\n");
    let out = k.run(&["logs", "chatty", "-c", "cmd", "--tail", "2"]);
    assert_eq!(out.stdout, "line-4\nline-5\n");
    let out = k.run(&["logs", "chatty", "-c", "cmd", "--tail", "1", "--timestamps"]);
    let (ts, rest) = out.stdout.split_once(' ').unwrap();
    assert_eq!(rest, "line-5\n");
    assert!(ts.parse::<jiff::Timestamp>().is_ok(), "{ts}");
    let out = k.run(&["logs", "chatty", "-c", "cmd", "--previous"]);
    assert!(
        out.stderr.contains("previous terminated container"),
        "{out:?}"
    );
    let out = k.run(&["logs", "chatty", "-c", "nope"]);
    assert!(
        out.stderr
            .contains("container nope is not valid for pod chatty"),
        "{out:?}"
    );
    // Following a container to its end: kubectl returns when it exits.
    pods.create(&PostParams::default(), &once).await.unwrap();
    until(60, "pod once running", async || {
        let st = pods.get("once").await.ok()?.status?;
        st.container_statuses?
            .first()?
            .state
            .as_ref()?
            .running
            .as_ref()?;
        Some(())
    })
    .await;
    let started = std::time::Instant::now();
    let out = k.run(&["logs", "-f", "once"]);
    assert_eq!(out.stdout, "tick-1\ntick-2\ntick-3\n", "{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    let _ = lab.stop();
}

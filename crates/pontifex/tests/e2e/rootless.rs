//! Rootless mode, black box: the seed quickstart (`up -f examples/nginx-nodeport.yaml`) run as an
//! unprivileged user (`setpriv --reuid=65534`, the test harness being root) — the three pods answer
//! through the NodePort on 127.0.0.1:30002 and through the ClusterIP (a loopback address; port 80
//! is privileged, so it is served on 10080), `pontifex ipvsadm` reads the proxy, and stopping `up`
//! stops everything.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use test_support::{Kubectl, examples_dir, free_port};

use crate::lab::{ONE_LAB_AT_A_TIME, hostnames, http_get, is_root, until};

/// The unprivileged user the cluster runs as (`nobody`).
const NOBODY: u32 = 65_534;

/// Stops `up` (SIGTERM, then SIGKILL) and any agent it left (from its pid file) when dropped.
struct Up {
    child: Child,
    data_dir: PathBuf,
}

impl Up {
    /// SIGTERM and wait; whether it exited within `secs` with success.
    fn stop(&mut self, secs: u64) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if !self.stop(10) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The agent and pods outlive a killed `up`: `down` ends them by their records (with a
        // lab prefix of this test's own, so no lab is touched).
        let _ = Command::new(env!("CARGO_BIN_EXE_pontifex"))
            .args([
                "down",
                "--lab-prefix",
                &format!("rl{}", std::process::id() % 1000),
            ])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output();
    }
}

/// The real uid of process `pid`.
fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Distinct `/hostname` answers of `tries` requests to `addr`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rootless_seed_quickstart_as_an_unprivileged_user() {
    if !is_root() {
        eprintln!("skipped: dropping privileges with setpriv needs a root harness");
        return;
    }
    // Not a lab (no 172.31.0.1), but 127.0.0.1:30002 is one per machine, as a lab's host is.
    let _one = ONE_LAB_AT_A_TIME.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let data_dir = tmp.path().join("data");
    let log_path = tmp.path().join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port().unwrap().to_string();
    // The unprivileged user must reach the program and the manifest: a checkout (and its target
    // directory) may sit where only root can look, e.g. under /root or a 0700 temporary directory.
    let exe = tmp.path().join("pontifex");
    std::fs::copy(env!("CARGO_BIN_EXE_pontifex"), &exe).unwrap();
    let manifest = tmp.path().join("nginx-nodeport.yaml");
    std::fs::copy(examples_dir().join("nginx-nodeport.yaml"), &manifest).unwrap();
    let child = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
        ])
        .arg(&exe)
        .arg("up")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--secure-port", &port, "-f"])
        .arg(&manifest)
        .env("HOME", tmp.path())
        .env_remove("KUBECONFIG")
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("setpriv pontifex up");
    let mut up = Up {
        child,
        data_dir: data_dir.clone(),
    };
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let kubeconfig = data_dir.join("kubeconfig");
    until(30, "the kubeconfig", async || {
        kubeconfig.exists().then_some(())
    })
    .await;
    assert_eq!(uid_of(up.child.id()), Some(NOBODY), "up runs unprivileged");
    // Printed with up's summary, once every manifest is applied: slow on a busy CI machine.
    until(90, "up's rootless notice", async || {
        log().contains("Rootless mode:").then_some(())
    })
    .await;
    assert!(log().contains("NetworkPolicy"), "{}", log());

    // The seed: three pods, each reached through the NodePort on the host.
    let nodeport = "127.0.0.1:30002";
    let seen = until(120, "three pods through 127.0.0.1:30002", async || {
        let seen = hostnames(nodeport, 12);
        (seen.len() == 3).then_some(seen)
    })
    .await;
    assert!(
        seen.iter().all(|n| n.starts_with("nginx-")),
        "{seen:?}\n{}",
        log()
    );

    // The ClusterIP: a loopback address; port 80 is privileged, so it listens on 10080.
    let k = Kubectl::new("1.33", &kubeconfig).unwrap();
    let cluster_ip = k
        .run(&["get", "svc", "nginx", "-o", "jsonpath={.spec.clusterIP}"])
        .ok()
        .stdout;
    assert!(cluster_ip.starts_with("127."), "{cluster_ip}");
    let by_cluster_ip = until(30, "three pods through the ClusterIP", async || {
        let s = hostnames(&format!("{cluster_ip}:10080"), 12);
        (s.len() == 3).then_some(s)
    })
    .await;
    assert_eq!(by_cluster_ip, seen);
    // The pods' IPs are ordinary pod IPs in the API (Kubernetes refuses loopback endpoints).
    let ips = k
        .run(&[
            "get",
            "pods",
            "-l",
            "app=nginx",
            "-o",
            "jsonpath={.items[*].status.podIP}",
        ])
        .ok()
        .stdout;
    assert!(
        ips.split_whitespace().all(|ip| ip.starts_with("10.244.")),
        "{ips}"
    );

    // `pontifex ipvsadm` reads the rootless proxy.
    let out = Command::new(env!("CARGO_BIN_EXE_pontifex"))
        .args(["ipvsadm", "-L", "-n", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TCP  127.0.0.1:30002 rr"), "{text}");
    assert!(
        text.contains(&format!("TCP  {cluster_ip}:10080 rr")),
        "{text}"
    );

    // Each pod listens on its IP's loopback image, port 80 shifted to 10080.
    let images: Vec<String> = ips
        .split_whitespace()
        .map(|ip| format!("127.{}:10080", ip.split_once('.').unwrap().1))
        .collect();
    for addr in &images {
        let name = http_get(addr, "/hostname").unwrap_or_default();
        assert!(seen.contains(name.trim()), "{addr}: {name:?}");
    }

    // Stopping `up` stops the agent and its pods: nothing answers any more.
    assert!(up.stop(20), "up exits cleanly:\n{}", log());
    until(10, "the NodePort and the pods to close", async || {
        let open = std::iter::once(nodeport)
            .chain(images.iter().map(String::as_str))
            .any(|a| http_get(a, "/hostname").is_some());
        (!open).then_some(())
    })
    .await;
    drop(up);
}

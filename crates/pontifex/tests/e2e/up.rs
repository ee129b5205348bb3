//! `pontifex up`: applies the seed manifests, says how to use kubectl, stops cleanly on Ctrl-C, and a
//! second `up` on the same data directory resumes the same cluster.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use test_support::{Kubectl, examples_dir, free_port};

/// Start `pontifex up` and collect its standard output until the ready banner.
fn up(data: &Path, port: u16, files: &[&Path]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pontifex"));
    cmd.arg("up")
        .arg("--data-dir")
        .arg(data)
        .arg("--secure-port")
        .arg(port.to_string());
    for f in files {
        cmd.arg("-f").arg(f);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting pontifex up");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) {
        out.push_str(&line);
        out.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(
        out.contains("Press Ctrl-C"),
        "up did not become ready:\n{out}"
    );
    (child, out)
}

fn interrupt(mut child: Child) -> bool {
    Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .expect("kill -INT");
    for _ in 0..300 {
        if let Some(status) = child.try_wait().expect("waiting") {
            return status.success();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    false
}

#[test]
fn up_applies_manifests_stops_cleanly_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("lab");
    let port = free_port().unwrap();
    let nginx = examples_dir().join("nginx-nodeport.yaml");
    let (child, out) = up(&data, port, &[&nginx]);
    assert!(out.contains("service/nginx created"), "{out}");
    assert!(out.contains("deployment.apps/nginx created"), "{out}");
    assert!(
        out.contains(&format!(
            "export KUBECONFIG={}",
            std::fs::canonicalize(data.join("kubeconfig"))
                .unwrap()
                .display()
        )),
        "{out}"
    );

    let kubectl = Kubectl::new("1.33", &data.join("kubeconfig")).unwrap();
    let ip = kubectl
        .run(&["get", "svc", "nginx", "-o", "jsonpath={.spec.clusterIP}"])
        .ok()
        .stdout;
    assert!(ip.starts_with("10."), "{ip}");
    assert!(interrupt(child), "up did not exit cleanly on SIGINT");

    // The same data directory: the same cluster, the same allocations; applying again is a no-op.
    let (child, out) = up(&data, port, &[&nginx]);
    assert!(out.contains("service/nginx unchanged"), "{out}");
    let again = kubectl
        .run(&["get", "svc", "nginx", "-o", "jsonpath={.spec.clusterIP}"])
        .ok()
        .stdout;
    assert_eq!(ip, again);
    let row = kubectl
        .run(&["get", "svc", "nginx", "--no-headers"])
        .ok()
        .stdout;
    assert!(row.contains("80:30002/TCP"), "{row}");
    assert!(interrupt(child));
}

//! Object lifecycle controllers, black-box: namespace deletion empties the namespace and removes it
//! (releasing its Services' cluster IPs), the garbage collector follows ownerReferences with the
//! background, foreground and orphan cascades kubectl asks for, and two `pontifex controllers`
//! processes elect one leader that a standby replaces when it dies.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use test_support::{Kubectl, TestServer, eventually};

use crate::client::blocking;
use crate::fake::FakeNode;

fn start_up() -> TestServer {
    TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[])
        .expect("starting pontifex up")
}

/// `kubectl get` of one field (jsonpath), or None when the object is not found.
fn field(k: &Kubectl, args: &[&str], path: &str) -> Option<String> {
    let jsonpath = format!("jsonpath={path}");
    let mut all = args.to_vec();
    all.extend(["-o", &jsonpath]);
    let run = k.run(&all);
    if run.success {
        Some(run.stdout)
    } else {
        assert!(
            run.stderr.contains("NotFound") || run.stderr.contains("not found"),
            "{}",
            run.stderr
        );
        None
    }
}

fn gone(k: &Kubectl, args: &[&str]) -> bool {
    field(k, args, "{.metadata.name}").is_none()
}

const DEMO: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: demo}
data: {a: "1"}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: demo}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: demo}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: nginx}]
---
apiVersion: v1
kind: Pod
metadata: {name: bound, namespace: demo}
spec:
  nodeName: node-a
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_the_content_then_the_namespace() {
    let server = blocking(start_up);
    let client = crate::client::client(&server).await;
    let _node = FakeNode::register(&client, "node-a", "10.0.0.11").await;
    blocking(|| {
        let k = server.kubectl("1.33").unwrap();
        k.run_stdin(&["apply", "-f", "-"], DEMO).ok();
        // The namespace must exist before its content: apply sends in order, so all are there now.
        let ip = field(
            &k,
            &["get", "svc", "web", "-n", "demo"],
            "{.spec.clusterIP}",
        )
        .unwrap();
        assert!(!ip.is_empty());

        k.run(&["delete", "namespace", "demo", "--timeout=60s"])
            .ok();
        assert!(
            eventually(Duration::from_secs(20), || gone(&k, &["get", "ns", "demo"])),
            "namespace demo still there: {}",
            k.run(&["get", "ns", "demo", "-o", "yaml"]).stdout
        );
        for kind in [
            "configmap/settings",
            "service/web",
            "deployment/web",
            "pod/bound",
        ] {
            assert!(gone(&k, &["get", kind, "-n", "demo"]), "{kind} survived");
        }
        // Its Service's cluster IP is free again.
        let other = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: taker}}\nspec: {{clusterIP: {ip}, ports: [{{port: 80}}]}}\n"
        );
        k.run_stdin(&["apply", "-f", "-"], &other).ok();
        // A namespace cannot be re-created while terminating, but after removal it can.
        k.run(&["create", "namespace", "demo"]).ok();
    });
}

#[test]
fn namespace_reports_remaining_content_while_a_finalizer_holds_it() {
    let server = start_up();
    let k = server.kubectl("1.33").unwrap();
    k.run(&["create", "namespace", "held"]).ok();
    k.run_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: held, finalizers: [example.com/hold]}\n",
    )
    .ok();
    k.run(&["delete", "namespace", "held", "--wait=false"]).ok();
    let condition = "{.status.conditions[?(@.type==\"NamespaceContentRemaining\")].status}";
    assert!(
        eventually(Duration::from_secs(15), || {
            field(&k, &["get", "ns", "held"], condition).as_deref() == Some("True")
        }),
        "{}",
        k.run(&["get", "ns", "held", "-o", "yaml"]).stdout
    );
    let message = field(
        &k,
        &["get", "ns", "held"],
        "{.status.conditions[?(@.type==\"NamespaceFinalizersRemaining\")].message}",
    );
    assert_eq!(
        message.as_deref(),
        Some(
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        )
    );
    assert_eq!(
        field(&k, &["get", "ns", "held"], "{.status.phase}").as_deref(),
        Some("Terminating")
    );
    k.run(&[
        "patch",
        "configmap",
        "c",
        "-n",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    assert!(eventually(Duration::from_secs(15), || gone(
        &k,
        &["get", "ns", "held"]
    )));
}

/// ConfigMap `name` owned by the object of `kind`/`owner` (uid read from the server).
fn owned_config_map(k: &Kubectl, name: &str, kind: &str, owner: &str, block: bool) {
    let resource = if kind == "Service" {
        "service"
    } else {
        "configmap"
    };
    let uid = field(k, &["get", resource, owner], "{.metadata.uid}").unwrap();
    let yaml = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  ownerReferences:\n  - {{apiVersion: v1, kind: {kind}, name: {owner}, uid: {uid}, blockOwnerDeletion: {block}}}\n"
    );
    k.run_stdin(&["apply", "-f", "-"], &yaml).ok();
}

#[test]
fn garbage_collector_follows_owner_references() {
    let server = start_up();
    let k = server.kubectl("1.33").unwrap();

    // Background: the dependent goes after its owner.
    k.run(&["create", "service", "clusterip", "owner", "--tcp=80"])
        .ok();
    owned_config_map(&k, "of-service", "Service", "owner", false);
    k.run(&["delete", "service", "owner"]).ok();
    assert!(eventually(Duration::from_secs(15), || gone(
        &k,
        &["get", "cm", "of-service"]
    )));

    // Foreground: the owner waits, with `foregroundDeletion`, for its blocking dependent.
    k.run(&["create", "configmap", "fg-owner"]).ok();
    owned_config_map(&k, "fg-dep", "ConfigMap", "fg-owner", true);
    k.run(&[
        "patch",
        "cm",
        "fg-dep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ])
    .ok();
    k.run(&[
        "delete",
        "cm",
        "fg-owner",
        "--cascade=foreground",
        "--wait=false",
    ])
    .ok();
    assert_eq!(
        field(&k, &["get", "cm", "fg-owner"], "{.metadata.finalizers}").as_deref(),
        Some(r#"["foregroundDeletion"]"#)
    );
    assert!(eventually(Duration::from_secs(15), || {
        field(
            &k,
            &["get", "cm", "fg-dep"],
            "{.metadata.deletionTimestamp}",
        )
        .is_some_and(|t| !t.is_empty())
    }));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !gone(&k, &["get", "cm", "fg-owner"]),
        "the owner went before its blocking dependent"
    );
    k.run(&[
        "patch",
        "cm",
        "fg-dep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .ok();
    assert!(eventually(Duration::from_secs(15), || gone(
        &k,
        &["get", "cm", "fg-owner"]
    )));
    assert!(gone(&k, &["get", "cm", "fg-dep"]));

    // Orphan: the owner goes, the dependent stays without the reference.
    k.run(&["create", "configmap", "or-owner"]).ok();
    owned_config_map(&k, "or-dep", "ConfigMap", "or-owner", true);
    k.run(&[
        "delete",
        "cm",
        "or-owner",
        "--cascade=orphan",
        "--timeout=30s",
    ])
    .ok();
    assert!(gone(&k, &["get", "cm", "or-owner"]));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        field(&k, &["get", "cm", "or-dep"], "{.metadata.ownerReferences}").as_deref(),
        Some("")
    );
}

/// A `pontifex controllers` process, killed on drop.
struct Controllers(Child);

impl Controllers {
    fn start(server: &TestServer) -> Controllers {
        let child = Command::new(env!("CARGO_BIN_EXE_pontifex"))
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args([
                "--leader-elect=true",
                "--leader-elect-lease-duration=4s",
                "--leader-elect-renew-deadline=3s",
                "--leader-elect-retry-period=1s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting pontifex controllers");
        Controllers(child)
    }

    fn identity(&self) -> String {
        format!("pontifex-controllers-{}", self.0.id())
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn holder(k: &Kubectl) -> Option<String> {
    field(
        k,
        &["get", "lease", "pontifex-controllers", "-n", "kube-system"],
        "{.spec.holderIdentity}",
    )
    .filter(|h| !h.is_empty())
}

#[test]
fn a_standby_controller_takes_over_when_the_leader_dies() {
    let server = TestServer::start(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[])
        .expect("starting pontifex apiserver");
    let k = server.kubectl("1.33").unwrap();
    let mut a = Some(Controllers::start(&server));
    let b = Controllers::start(&server);
    assert!(eventually(Duration::from_secs(20), || holder(&k).is_some()));
    let first = holder(&k).unwrap();
    let a_id = a.as_ref().unwrap().identity();
    assert!(
        first == a_id || first == b.identity(),
        "unknown holder {first}"
    );
    // The holder stays the holder while it lives.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(holder(&k).as_deref(), Some(first.as_str()));

    // SIGKILL the leader: no release, the standby waits out the lease.
    let (mut dead, survivor) = if first == a_id {
        (a.take().unwrap(), b)
    } else {
        (b, a.take().unwrap())
    };
    let dead_id = dead.identity();
    dead.0.kill().unwrap();
    let _ = dead.0.wait();
    // Until the standby takes over, nobody acts: a namespace deleted now stays Terminating.
    k.run(&["create", "namespace", "during"]).ok();
    k.run(&["delete", "namespace", "during", "--wait=false"])
        .ok();
    std::thread::sleep(Duration::from_millis(1500));
    let phase = field(&k, &["get", "ns", "during"], "{.status.phase}");
    if holder(&k).as_deref() == Some(dead_id.as_str()) {
        assert_eq!(
            phase.as_deref(),
            Some("Terminating"),
            "a standby acted without the lease"
        );
    }
    assert!(
        eventually(Duration::from_secs(12), || holder(&k).as_deref()
            == Some(survivor.identity().as_str())),
        "the standby did not take over: holder {:?}",
        holder(&k)
    );
    let transitions = field(
        &k,
        &["get", "lease", "pontifex-controllers", "-n", "kube-system"],
        "{.spec.leaseTransitions}",
    );
    assert_eq!(transitions.as_deref(), Some("1"));

    // The new leader acts: a namespace deletion completes.
    k.run(&["create", "namespace", "after"]).ok();
    k.run(&["create", "configmap", "c", "-n", "after"]).ok();
    k.run(&["delete", "namespace", "after", "--timeout=30s"])
        .ok();
    assert!(eventually(Duration::from_secs(15), || gone(
        &k,
        &["get", "ns", "after"]
    )));
    assert!(eventually(Duration::from_secs(15), || gone(
        &k,
        &["get", "ns", "during"]
    )));

    // A leader that cannot renew (the API server is gone) gives up and exits with an error.
    let mut server = server;
    server.stop().expect("stopping the API server");
    let mut survivor = survivor;
    let mut status = None;
    assert!(
        eventually(Duration::from_secs(20), || {
            status = survivor.0.try_wait().expect("waiting");
            status.is_some()
        }),
        "the leader kept running without its lease"
    );
    assert!(!status.unwrap().success());
}

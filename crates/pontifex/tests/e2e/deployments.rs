//! Deployments end to end under `pontifex up`: kubectl applies the nginx example and the controllers
//! make a ReplicaSet and its Pods; a fake kubelet marks every pod Ready (whatever node it is on, or
//! none: the test does not depend on scheduling) and finishes graceful deletes; kubectl scales, sets
//! a new image and waits for `rollout status`.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use test_support::TestServer;

use crate::fake::{FakeNode, set_pod_status};

/// [`crate::fake::until`] with a timeout in seconds.
async fn until<T>(secs: u64, what: &str, f: impl AsyncFnMut() -> Option<T>) -> T {
    crate::fake::until(Duration::from_secs(secs), what, f).await
}

/// Mark every new nginx pod Running and Ready, and finish the deletes of terminating ones, until the
/// returned handle is aborted. The names it marked are in `marked`.
fn fake_kubelet(
    client: kube::Client,
    marked: Arc<Mutex<HashSet<String>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let mut n = 10;
        loop {
            if let Ok(list) = pods.list(&ListParams::default().labels("app=nginx")).await {
                for p in list.items {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(&name, &DeleteParams::default().grace_period(0))
                            .await;
                        continue;
                    }
                    if marked.lock().unwrap().contains(&name) {
                        continue;
                    }
                    n += 1;
                    set_pod_status(&client, "default", &name, &format!("10.244.1.{n}"), true).await;
                    marked.lock().unwrap().insert(name);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// The live (not terminating) nginx pods.
async fn live_pods(api: &Api<Pod>) -> Vec<Pod> {
    api.list(&ListParams::default().labels("app=nginx"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_creates_scales_rolls_and_reports() {
    let server = TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[])
        .expect("starting pontifex up");
    let client = crate::client::client(&server).await;
    let _a = FakeNode::register(&client, "node-a", "172.31.0.11").await;
    let _b = FakeNode::register(&client, "node-b", "172.31.0.12").await;
    let marked = Arc::new(Mutex::new(HashSet::new()));
    let kubelet = fake_kubelet(client.clone(), marked.clone());
    let kubectl = server.kubectl("1.33").unwrap();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/nginx-nodeport.yaml"
    );
    kubectl.run(&["apply", "-f", example]).ok();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    // A ReplicaSet nginx-<hash> whose hash labels it, its selector and its template.
    let rs = until(15, "the ReplicaSet", || async {
        rss.list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let rs_name = rs.metadata.name.clone().unwrap();
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(rs_name, format!("nginx-{hash}"));
    assert_eq!(
        hash.len(),
        hash.trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .len()
    );
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(
        spec.selector.match_labels.as_ref().unwrap()["pod-template-hash"],
        hash
    );
    assert_eq!(
        rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    let owner = &rs.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Deployment", "nginx", Some(true))
    );

    // Three pods owned by it, named <rs>-<5 chars>, with the template's labels.
    let three = until(15, "3 pods", || async {
        let p = live_pods(&pods).await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &three {
        let name = p.metadata.name.as_deref().unwrap();
        assert!(
            name.starts_with(&format!("{rs_name}-")) && name.len() == rs_name.len() + 6,
            "{name}"
        );
        let r = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (r.kind.as_str(), r.name.as_str()),
            ("ReplicaSet", rs_name.as_str())
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
        assert_eq!(
            p.metadata.labels.as_ref().unwrap()["pod-template-hash"],
            hash
        );
    }
    until(20, "kubectl get deploy nginx shows 3/3", || async {
        let out = kubectl.run(&["get", "deploy", "nginx", "--no-headers"]);
        out.stdout.contains("3/3").then_some(())
    })
    .await;
    kubectl
        .run(&["rollout", "status", "deploy/nginx", "--timeout=20s"])
        .ok();

    // Scale up and down.
    kubectl
        .run(&["scale", "deploy", "nginx", "--replicas=5"])
        .ok();
    until(15, "5 pods", || async {
        (live_pods(&pods).await.len() == 5).then_some(())
    })
    .await;
    kubectl
        .run(&["scale", "deploy", "nginx", "--replicas=2"])
        .ok();
    until(15, "2 pods", || async {
        (live_pods(&pods).await.len() == 2).then_some(())
    })
    .await;
    until(15, "2/2", || async {
        let out = kubectl.run(&["get", "deploy", "nginx", "--no-headers"]);
        out.stdout.contains("2/2").then_some(())
    })
    .await;

    // A deleted pod is replaced.
    let victim = live_pods(&pods).await[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    until(15, "a replacement pod", || async {
        let p = live_pods(&pods).await;
        (p.len() == 2
            && p.iter()
                .all(|p| p.metadata.name.as_deref() != Some(&victim)))
        .then_some(())
    })
    .await;

    // A new image rolls over to a new ReplicaSet; the old one ends at 0 and stays for history.
    kubectl
        .run(&["scale", "deploy", "nginx", "--replicas=4"])
        .ok();
    until(15, "4/4", || async {
        let out = kubectl.run(&["get", "deploy", "nginx", "--no-headers"]);
        out.stdout.contains("4/4").then_some(())
    })
    .await;
    kubectl
        .run(&["set", "image", "deploy/nginx", "nginx=nginx:1.20"])
        .ok();
    // While it rolls: never more than 4 + 1 (25% surge, rounded up) replicas, never fewer than 3
    // (25% unavailable, rounded down) Ready pods. The surge bound is on the ReplicaSets' replicas, as
    // Kubernetes' deployment controller keeps it: pods can briefly outnumber it, between an old
    // ReplicaSet's scale-down and its controller deleting the pod, upstream as here.
    let watch = {
        let pods = pods.clone();
        let rss = rss.clone();
        let marked = marked.clone();
        tokio::spawn(async move {
            let mut worst = (0, usize::MAX);
            for _ in 0..100 {
                let live = live_pods(&pods).await;
                let replicas: i32 = rss
                    .list(&ListParams::default())
                    .await
                    .unwrap()
                    .items
                    .iter()
                    .map(rs_replicas)
                    .sum();
                let ready = live
                    .iter()
                    .filter(|p| {
                        marked
                            .lock()
                            .unwrap()
                            .contains(p.metadata.name.as_deref().unwrap())
                    })
                    .count();
                worst = (worst.0.max(replicas as usize), worst.1.min(ready));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst
        })
    };
    kubectl
        .run(&["rollout", "status", "deploy/nginx", "--timeout=30s"])
        .ok();
    let (most, fewest_ready) = watch.await.unwrap();
    assert!(
        most <= 5,
        "at most replicas + maxSurge in the ReplicaSets at once, saw {most}"
    );
    assert!(
        fewest_ready >= 3,
        "at least replicas - maxUnavailable ready, saw {fewest_ready}"
    );
    let all = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2, "the old ReplicaSet is kept for history");
    let old = all
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(&rs_name))
        .unwrap();
    assert_eq!(rs_replicas(old), 0);
    let new = all
        .iter()
        .find(|r| r.metadata.name.as_deref() != Some(&rs_name))
        .unwrap();
    assert_eq!(rs_replicas(new), 4);
    assert_eq!(
        new.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "2"
    );
    let live = live_pods(&pods).await;
    assert_eq!(live.len(), 4);
    assert!(
        live.iter()
            .all(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some("nginx:1.20"))
    );
    let history = kubectl
        .run(&["rollout", "history", "deploy/nginx"])
        .ok()
        .stdout;
    assert!(history.contains('1') && history.contains('2'), "{history}");
    let events = kubectl
        .run(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=nginx",
            "-o",
            "jsonpath={.items[*].message}",
        ])
        .ok()
        .stdout;
    assert!(
        events.contains(&format!("Scaled up replica set {rs_name} to 3")),
        "{events}"
    );
    kubelet.abort();
}

//! The endpoint controllers end to end: `pontifex up` runs them; pods are written directly (with
//! kubelet-style status from two fake nodes), and the real kubectl shows Endpoints, EndpointSlices
//! and `describe svc` following the pods' readiness and deletion; a selector-less Service's
//! hand-written Endpoints get a mirrored slice.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Pod};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use test_support::{TestServer, examples_dir};

use crate::client::blocking;
use crate::fake::{FakeNode, set_pod_status};

/// Poll `f` every 100 ms until it is Some, or panic with `what` after 20 s.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn example(name: &str) -> String {
    examples_dir().join(name).to_string_lossy().into_owned()
}

/// `(ready, ip)` of the endpoints of slices of `svc`.
async fn slice_endpoints(api: &Api<EndpointSlice>, svc: &str) -> Vec<(bool, String)> {
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let mut v: Vec<(bool, String)> = api
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            (ready, e.addresses[0].clone())
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_pods_and_hand_written_endpoints_are_mirrored() {
    let server = TestServer::start_up(Path::new(env!("CARGO_BIN_EXE_pontifex")), &[])
        .expect("starting pontifex up");
    let client = crate::client::client(&server).await;
    let kubectl = server.kubectl("1.33").expect("kubectl 1.33");
    let _a = FakeNode::register(&client, "node-a", "172.31.0.11").await;
    let _b = FakeNode::register(&client, "node-b", "172.31.0.12").await;

    let out = blocking(|| {
        kubectl
            .run(&["apply", "-f", &example("nginx-nodeport.yaml")])
            .ok()
    });
    assert!(
        out.stdout.contains("service/nginx created"),
        "{}",
        out.stdout
    );

    // The Deployment controller is not what this test is about: write its three pods directly.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let ips = ["10.244.1.10", "10.244.2.10", "10.244.1.11"];
    for (i, ip) in ips.iter().enumerate() {
        let node = if i == 1 { "node-b" } else { "node-a" };
        let pod: Pod = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("nginx-{i}"), "labels": {"app": "nginx"}},
            "spec": {"nodeName": node, "containers": [{"name": "nginx", "image": "nginx:1.19",
                     "ports": [{"containerPort": 80}]}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        set_pod_status(&client, "default", &format!("nginx-{i}"), ip, true).await;
    }

    let mut want: Vec<String> = ips.iter().map(|ip| format!("{ip}:80")).collect();
    want.sort();
    let shown = until(
        "kubectl get endpoints nginx to list the three pods",
        || async {
            let out = blocking(|| kubectl.run(&["get", "endpoints", "nginx", "--no-headers"]));
            let line = out.stdout.lines().next()?.to_owned();
            let mut eps: Vec<String> = line
                .split_whitespace()
                .nth(1)?
                .split(',')
                .map(str::to_owned)
                .collect();
            eps.sort();
            (eps == want).then_some(line)
        },
    )
    .await;
    assert!(shown.starts_with("nginx "), "{shown}");

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let out = blocking(|| {
        kubectl
            .run(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=nginx",
                "--no-headers",
            ])
            .ok()
    });
    let line = out.stdout.lines().next().unwrap_or_default().to_owned();
    assert!(
        line.starts_with("nginx-") && line.contains("IPv4") && line.contains("80"),
        "{}",
        out.stdout
    );
    for ip in ips {
        assert!(line.contains(ip), "{line}");
    }
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=nginx"))
        .await
        .unwrap()
        .items
        .remove(0);
    let labels = slice.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Service", "nginx", Some(true))
    );
    let describe = blocking(|| kubectl.run(&["describe", "svc", "nginx"]).ok()).stdout;
    let line = describe
        .lines()
        .find(|l| l.starts_with("Endpoints:"))
        .unwrap_or_default()
        .to_owned();
    for ip in ips {
        assert!(
            line.contains(&format!("{ip}:80")),
            "describe shows the endpoints:\n{describe}"
        );
    }

    // Settled: a resync writes nothing (no churn against the real server's round-trip).
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let rv_slice = slice.metadata.resource_version.clone();
    let rv_endpoints = endpoints
        .get("nginx")
        .await
        .unwrap()
        .metadata
        .resource_version;
    tokio::time::sleep(Duration::from_millis(1500)).await; // an observation window, not a wait
    let again = slices
        .get(slice.metadata.name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, rv_slice,
        "the slice is not rewritten"
    );
    assert_eq!(
        endpoints
            .get("nginx")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv_endpoints
    );

    // Readiness false: the address moves to notReadyAddresses, the endpoint turns not ready.
    set_pod_status(&client, "default", "nginx-1", ips[1], false).await;
    until("the address to move to notReadyAddresses", || async {
        let e = endpoints.get("nginx").await.ok()?;
        let s = e.subsets?.into_iter().next()?;
        let nr: Vec<String> = s.not_ready_addresses?.into_iter().map(|a| a.ip).collect();
        (nr == [ips[1]] && s.addresses.map(|a| a.len()) == Some(2)).then_some(())
    })
    .await;
    until("the slice endpoint to be not ready", || async {
        let eps = slice_endpoints(&slices, "nginx").await;
        eps.contains(&(false, ips[1].to_owned())).then_some(())
    })
    .await;
    // ... and the Service's Events say so.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    until("an EndpointsChanged Event on the Service", || async {
        let list = events
            .list(
                &ListParams::default()
                    .fields("involvedObject.kind=Service,involvedObject.name=nginx"),
            )
            .await
            .ok()?;
        list.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("EndpointsChanged")
                    && e.message.as_deref()
                        == Some("Endpoints: 2 ready, 1 not ready (was 3 ready, 0 not ready)")
            })
            .then_some(())
    })
    .await;

    // Pod deleted: gone from both.
    pods.delete("nginx-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    until(
        "the deleted pod to leave Endpoints and EndpointSlices",
        || async {
            let e = endpoints.get("nginx").await.ok()?;
            let all: Vec<String> = e
                .subsets
                .into_iter()
                .flatten()
                .flat_map(|s| {
                    s.addresses
                        .into_iter()
                        .flatten()
                        .chain(s.not_ready_addresses.into_iter().flatten())
                })
                .map(|a| a.ip)
                .collect();
            let eps = slice_endpoints(&slices, "nginx").await;
            let gone = !all.contains(&ips[0].to_owned()) && all.len() == 2;
            (gone && eps == [(false, ips[1].to_owned()), (true, ips[2].to_owned())]).then_some(())
        },
    )
    .await;

    // The selector-less example: a mirrored slice.
    blocking(|| {
        kubectl
            .run(&[
                "apply",
                "-f",
                &example("selectorless-manual-endpoints.yaml"),
            ])
            .ok()
    });
    let mirrored: Api<EndpointSlice> = Api::namespaced(client.clone(), "kube-system");
    let slice = until("a mirrored slice for service-test", || async {
        let list = mirrored
            .list(&ListParams::default().labels("kubernetes.io/service-name=service-test"))
            .await
            .ok()?;
        list.items
            .into_iter()
            .find(|s| s.endpoints.iter().any(|e| e.addresses == ["10.1.21.32"]))
    })
    .await;
    assert_eq!(
        slice.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
        "endpointslicemirroring-controller.k8s.io"
    );
    let out = blocking(|| {
        kubectl
            .run(&[
                "get",
                "endpointslices",
                "-n",
                "kube-system",
                "-l",
                "kubernetes.io/service-name=service-test",
                "--no-headers",
            ])
            .ok()
    });
    assert!(
        out.stdout.contains("10.1.21.32") && out.stdout.contains("6180"),
        "{}",
        out.stdout
    );
    // The Endpoints controller left the hand-written Endpoints alone.
    let hand = Api::<Endpoints>::namespaced(client.clone(), "kube-system")
        .get("service-test")
        .await
        .unwrap();
    assert!(
        !hand
            .metadata
            .labels
            .unwrap()
            .contains_key("endpointslice.kubernetes.io/skip-mirror")
    );
    // The Endpoints go: so does the mirrored slice.
    blocking(|| {
        kubectl
            .run(&["delete", "endpoints", "service-test", "-n", "kube-system"])
            .ok()
    });
    until("the mirrored slice to go", || async {
        let list = mirrored
            .list(&ListParams::default().labels("kubernetes.io/service-name=service-test"))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
}

//! Terminating endpoints (KEP-1669), with real packets: a pod being deleted that still serves (agnhost
//! `netexec --delay-shutdown`, as Kubernetes' own e2e tests do) stays in its EndpointSlice as
//! `serving: true, terminating: true, ready: false`. The proxy sends traffic to such endpoints only
//! while a Service has no ready endpoint left — then a rolling pod does not turn into refused
//! connections — and stops the moment a ready one appears.

use std::collections::BTreeSet;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use crate::lab::{LabRun, NODE_IPS, http_get, until};

/// A Service with one endpoint pod that keeps serving for a while after SIGTERM.
pub(super) const TERMINATING: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: term}
spec:
  type: NodePort
  selector: {app: term}
  ports: [{port: 80, nodePort: 30025}]
---
apiVersion: v1
kind: Pod
metadata: {name: term-1, labels: {app: term}}
spec:
  nodeName: node-1
  terminationGracePeriodSeconds: 120
  containers:
  - name: srv
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=80, --delay-shutdown=90]
"#;

/// The second pod, created while `term-1` terminates.
const REPLACEMENT: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: term-2, labels: {app: term}}
spec:
  nodeName: node-2
  containers:
  - name: srv
    image: registry.k8s.io/e2e-test-images/agnhost:2.53
    args: [netexec, --http-port=80]
"#;

/// The `/hostname`s of `n` requests to `addr`, or `None` if one failed: a fallback that drops
/// some connections is no fallback.
fn answered_by(addr: &str, n: usize) -> Option<BTreeSet<String>> {
    (0..n)
        .map(|_| http_get(addr, "/hostname").map(|b| b.trim().to_owned()))
        .collect()
}

/// `(serving, terminating, ready)` of the endpoint of `term`'s slices at `ip`.
async fn conditions(slices: &Api<EndpointSlice>, ip: &str) -> Option<(bool, bool, bool)> {
    let list = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=term"))
        .await
        .ok()?;
    let ep = list
        .items
        .into_iter()
        .flat_map(|s| s.endpoints)
        .find(|e| e.addresses.iter().any(|a| a == ip))?;
    let c = ep.conditions?;
    Some((
        c.serving.unwrap_or(false),
        c.terminating.unwrap_or(false),
        c.ready.unwrap_or(false),
    ))
}

/// Traffic falls back to the terminating pod while it is the only one, and leaves it once a ready
/// pod exists. Expects [`TERMINATING`] applied.
pub(super) async fn fallback_to_terminating_endpoints(lab: &LabRun) {
    let (ip1, _) = lab.ready("term-1").await;
    let slices: Api<EndpointSlice> = Api::namespaced(lab.client.clone(), "default");
    let addrs: Vec<String> = NODE_IPS.iter().map(|n| format!("{n}:30025")).collect();
    let only = |name: &str| BTreeSet::from([name.to_owned()]);
    for a in &addrs {
        until(20, "term-1 through the NodePort", async || {
            (answered_by(a, 5)? == only("term-1")).then_some(())
        })
        .await;
    }

    lab.pods()
        .delete("term-1", &DeleteParams::default())
        .await
        .expect("delete term-1");
    until(20, "term-1 serving and terminating", async || {
        (conditions(&slices, &ip1).await? == (true, true, false)).then_some(())
    })
    .await;
    // No ready endpoint is left: every request still reaches the terminating pod, on both nodes
    // (node-2 reaches it across the underlay).
    for a in &addrs {
        assert_eq!(answered_by(a, 10), Some(only("term-1")), "fallback via {a}");
    }

    let k = lab.server.kubectl("1.33").unwrap();
    k.run_stdin(&["apply", "-f", "-"], REPLACEMENT).ok();
    lab.ready("term-2").await;
    // A ready endpoint exists: the terminating one gets no new connections.
    for a in &addrs {
        until(20, "only term-2 once it is ready", async || {
            (answered_by(a, 10)? == only("term-2")).then_some(())
        })
        .await;
    }
    assert_eq!(
        conditions(&slices, &ip1).await,
        Some((true, true, false)),
        "term-1 was still terminating while traffic left it"
    );
    // Do not leave a pod in its 90 s of delayed shutdown behind.
    let _ = lab
        .pods()
        .delete("term-1", &DeleteParams::default().grace_period(0))
        .await;
}

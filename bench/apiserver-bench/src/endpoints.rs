//! Endpoint programming, measured against `pontifex apiserver` plus `pontifex controllers` in their
//! own processes:
//! - **latency**: with S Services × P ready pods programmed, one pod's Ready status is flipped at a
//!   time (a kubelet-style merge patch of `/status`); the time from just before that write to a
//!   watcher of the namespace's EndpointSlices reading the slice event that shows the pod's new
//!   readiness.
//! - **rebuild**: S Services × P ready pods written while no controller runs; then the controllers
//!   start (as after a restart) and we time until every Service's slice lists all its pods, as seen
//!   on a watch.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::client::{Endpoint, Proto};
use crate::creates;
use crate::procs::Server;
use crate::stats::Samples;

const NS: &str = "epbench";

/// Slice events as read: when, the Service, and (pod, ready) of each endpoint.
type Events = mpsc::UnboundedReceiver<(Instant, String, Vec<(String, bool)>)>;

#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) services: usize,
    pub(crate) pods_per_service: usize,
    /// Writing the Services, pods and pod statuses.
    pub(crate) populate: Duration,
    /// From starting the controllers to every slice complete.
    pub(crate) rebuild: Duration,
    /// Pod Ready write to slice event (empty when not measured).
    pub(crate) latency: Samples,
    pub(crate) flips: usize,
}

fn pod_ip(i: usize) -> String {
    format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)
}

/// Write S Services and S×P Running, Ready pods with `workers` concurrent writers.
async fn populate(
    ep: &Endpoint,
    services: usize,
    per: usize,
    workers: usize,
) -> anyhow::Result<()> {
    creates::namespace(ep, NS).await?;
    let conn = ep.connect(Proto::H2).await?;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            for s in (w..services).step_by(workers) {
                let svc = json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("svc-{s}")},
                    "spec": {"selector": {"app": format!("svc-{s}")}, "ports": [{"port": 80, "targetPort": 8080}]}});
                let (st, body) = conn
                    .call(Method::POST, &format!("/api/v1/namespaces/{NS}/services"), None, Some(Bytes::from(svc.to_string())))
                    .await?;
                if st != 201 {
                    bail!("service: {st} {}", String::from_utf8_lossy(&body));
                }
                for p in 0..per {
                    let name = format!("svc-{s}-{p}");
                    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": name, "labels": {"app": format!("svc-{s}")}},
                        "spec": {"nodeName": "bench-node", "containers": [{"name": "c", "image": "x",
                                 "ports": [{"containerPort": 8080}]}]}});
                    let (st, body) = conn
                        .call(Method::POST, &format!("/api/v1/namespaces/{NS}/pods"), None, Some(Bytes::from(pod.to_string())))
                        .await?;
                    if st != 201 {
                        bail!("pod: {st} {}", String::from_utf8_lossy(&body));
                    }
                    set_ready(&mut conn, &name, &pod_ip(s * per + p), true).await?;
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn set_ready(
    conn: &mut crate::client::Conn,
    name: &str,
    ip: &str,
    ready: bool,
) -> anyhow::Result<()> {
    let status = if ready { "True" } else { "False" };
    let patch = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": status}]}});
    let resp = conn
        .send_typed(
            Method::PATCH,
            &format!("/api/v1/namespaces/{NS}/pods/{name}/status"),
            None,
            Some(Bytes::from(patch.to_string())),
            "application/merge-patch+json",
        )
        .await?;
    let st = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    if st != 200 {
        bail!("pod status: {st} {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// Watch the namespace's EndpointSlices from now on; each event is sent as (service, [(pod, ready)]).
async fn watch_slices(ep: &Endpoint) -> anyhow::Result<Events> {
    let mut conn = ep.connect(Proto::H1).await?;
    let list = format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?limit=1");
    let (st, body) = conn.call(Method::GET, &list, None, None).await?;
    if st != 200 {
        bail!("list slices: {st}");
    }
    let rv = serde_json::from_slice::<Value>(&body)?["metadata"]["resourceVersion"]
        .as_str()
        .context("a list resourceVersion")?
        .to_owned();
    let path = format!(
        "/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices?watch=true&resourceVersion={rv}&timeoutSeconds=3600"
    );
    let resp = conn.send(Method::GET, &path, None, None).await?;
    if resp.status() != 200 {
        bail!("watch slices: {}", resp.status());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let _conn = conn;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let at = Instant::now();
            buf.extend_from_slice(&data);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(ev) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                let obj = &ev["object"];
                let svc = obj["metadata"]["labels"]["kubernetes.io/service-name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let eps = obj["endpoints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["targetRef"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                            e["conditions"]["ready"].as_bool().unwrap_or(false),
                        )
                    })
                    .collect();
                if tx.send((at, svc, eps)).is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn controllers(bin: &Path, kubeconfig: &Path, log: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new(bin)
        .args(["controllers", "--leader-elect", "false", "--kubeconfig"])
        .arg(kubeconfig)
        .env("RUST_LOG", "warn,pontifex_controllers=info")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting pontifex controllers")
}

/// Wait until every Service's slices list all `per` pods ready.
async fn until_complete(
    rx: &mut Events,
    services: usize,
    per: usize,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut done: HashMap<String, bool> = HashMap::new();
    let mut complete = 0;
    while complete < services {
        let Ok(Some((_, svc, eps))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            bail!("only {complete} of {services} Services complete before the timeout");
        };
        let full = eps.len() == per && eps.iter().all(|(_, r)| *r);
        let was = done.insert(svc, full).unwrap_or(false);
        match (was, full) {
            (false, true) => complete += 1,
            (true, false) => complete -= 1,
            _ => {}
        }
    }
    Ok(())
}

pub(crate) async fn run(
    bin: &Path,
    tmp: &Path,
    services: usize,
    per: usize,
    flips: usize,
) -> anyhow::Result<Outcome> {
    let server = Server::pontifex(bin, tmp)?;
    let ep = server.endpoint.clone();
    let started = Instant::now();
    populate(&ep, services, per, 32).await?;
    let populate_time = started.elapsed();
    let kubeconfig = server.data_dir().join("kubeconfig");
    let mut rx = watch_slices(&ep).await?;
    let log = tmp.join(format!("epbench-controllers-{services}.log"));
    let started = Instant::now();
    let mut child = controllers(bin, &kubeconfig, &log)?;
    let result = async {
        until_complete(&mut rx, services, per, Duration::from_secs(300)).await?;
        let rebuild = started.elapsed();
        // Let the controllers go idle, then flip one pod at a time.
        tokio::time::sleep(Duration::from_secs(1)).await;
        while rx.try_recv().is_ok() {}
        let mut conn = ep.connect(Proto::H2).await?;
        let mut samples = Vec::with_capacity(flips);
        for i in 0..flips {
            let s = (i * 7919) % services;
            let p = i % per;
            let name = format!("svc-{s}-{p}");
            let ready = (i / (services * per).max(1)) % 2 == 1; // first pass: not ready
            let t0 = Instant::now();
            set_ready(&mut conn, &name, &pod_ip(s * per + p), ready).await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let Ok(Some((at, _, eps))) = tokio::time::timeout_at(deadline, rx.recv()).await
                else {
                    bail!("no slice event for {name} within 10 s");
                };
                if eps.iter().any(|(n, r)| *n == name && *r == ready) {
                    samples.push(at.saturating_duration_since(t0));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok((rebuild, samples))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let (rebuild, samples) = result.with_context(|| {
        format!(
            "controllers log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })?;
    Ok(Outcome {
        services,
        pods_per_service: per,
        populate: populate_time,
        rebuild,
        latency: Samples::new(samples),
        flips,
    })
}

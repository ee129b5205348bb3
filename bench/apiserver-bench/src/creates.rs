//! Creates per second: N clients each POST objects back to back for a fixed time. A create counts
//! when its 201 (etcd: 200) has been read, i.e. after the server fsynced it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use serde_json::json;

use crate::client::{Conn, Endpoint, Proto};
use crate::stats::Samples;

/// What one create is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `POST /api/v1/namespaces/{ns}/configmaps` with a small ConfigMap.
    ConfigMap,
    /// `POST /api/v1/namespaces/{ns}/services`: a ClusterIP Service, so admission allocates an IP.
    Service,
    /// etcd `POST /v3/kv/put` of a ConfigMap-sized value under a `/registry/...` key.
    EtcdPut,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Service => "Service",
            Kind::EtcdPut => "etcd put",
        })
    }
}

fn configmap(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "backend"}},
        "data": {"config.yaml": "listen: 0.0.0.0:8080\nlog-level: info\nupstreams:\n- a.example:443\n- b.example:443\n"},
    })
}

fn service(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": "bench", "tier": "backend"}},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    })
}

/// The method, path and body of create number `name` of `kind` in `ns`.
fn request(kind: Kind, ns: &str, name: &str) -> (String, Bytes, u16) {
    match kind {
        Kind::ConfigMap => (
            format!("/api/v1/namespaces/{ns}/configmaps"),
            Bytes::from(configmap(name).to_string()),
            201,
        ),
        Kind::Service => (
            format!("/api/v1/namespaces/{ns}/services"),
            Bytes::from(service(name).to_string()),
            201,
        ),
        Kind::EtcdPut => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let key = format!("/registry/configmaps/{ns}/{name}");
            let body =
                json!({"key": b64.encode(key), "value": b64.encode(configmap(name).to_string())});
            ("/v3/kv/put".to_owned(), Bytes::from(body.to_string()), 200)
        }
    }
}

/// One measured point.
#[derive(Debug)]
pub(crate) struct Point {
    pub(crate) kind: Kind,
    pub(crate) proto: Proto,
    pub(crate) clients: usize,
    pub(crate) ok: usize,
    pub(crate) elapsed: Duration,
    pub(crate) latency: Samples,
}

impl Point {
    pub(crate) fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// Create namespace `ns` (201, or 409 when it is there already).
pub(crate) async fn namespace(ep: &Endpoint, ns: &str) -> anyhow::Result<()> {
    let mut conn = ep.connect(Proto::H2).await?;
    let body =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).to_string();
    let (status, text) = conn
        .call(Method::POST, "/api/v1/namespaces", None, Some(body.into()))
        .await?;
    if status != 201 && status != 409 {
        bail!(
            "creating namespace {ns}: {status} {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// Connections for `clients` workers: one shared HTTP/2 connection, or one HTTP/1.1 connection each.
pub(crate) async fn connections(
    ep: &Endpoint,
    proto: Proto,
    clients: usize,
) -> anyhow::Result<Vec<Conn>> {
    match proto {
        Proto::H2 => {
            let conn = ep.connect(Proto::H2).await?;
            Ok((0..clients).map(|_| conn.clone()).collect())
        }
        Proto::H1 => {
            let mut v = Vec::with_capacity(clients);
            for _ in 0..clients {
                v.push(ep.connect(Proto::H1).await?);
            }
            Ok(v)
        }
    }
}

/// One load to apply: who creates what, for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) kind: Kind,
    pub(crate) proto: Proto,
    pub(crate) clients: usize,
    pub(crate) duration: Duration,
    /// Stop after this many creates in all, even before `duration` is over.
    pub(crate) limit: Option<usize>,
}

/// Run `load.clients` workers creating objects in `ns` for `load.duration`, or until `load.limit`
/// objects in all (whichever comes first). Names are `{tag}-{worker}-{i}`, so runs with distinct
/// tags never collide. Fails on the first non-success answer: a benchmark that counts errors as
/// creates lies.
pub(crate) async fn run(ep: &Endpoint, load: Load, ns: &str, tag: &str) -> anyhow::Result<Point> {
    let Load {
        kind,
        proto,
        clients,
        duration,
        limit,
    } = load;
    let conns = connections(ep, proto, clients).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let remaining = Arc::new(std::sync::atomic::AtomicUsize::new(
        limit.unwrap_or(usize::MAX),
    ));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (w, mut conn) in conns.into_iter().enumerate() {
        let (stop, remaining, ns, tag) = (
            stop.clone(),
            remaining.clone(),
            ns.to_owned(),
            tag.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Take one create from the budget; give up when it is spent.
                if remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let name = format!("{tag}-{w}-{i}");
                i += 1;
                let (path, body, want) = request(kind, &ns, &name);
                let t0 = Instant::now();
                let (status, text) = match conn.call(Method::POST, &path, None, Some(body)).await {
                    Ok(r) => r,
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(e.context(format!("creating {kind} {name}")));
                    }
                };
                if status != want {
                    stop.store(true, Ordering::Relaxed);
                    bail!(
                        "creating {kind} {name}: {status} {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                lat.push(t0.elapsed());
            }
            Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    Ok(Point {
        kind,
        proto,
        clients,
        ok: all.len(),
        elapsed,
        latency: Samples::new(all),
    })
}

//! kube-proxy's HTTP endpoints: the proxy health state and `/healthz` + `/livez` (port 10256),
//! `/metrics` + `/healthz` + `/proxyMode` (port 10249), and the per-Service
//! `healthCheckNodePort` servers of `externalTrafficPolicy: Local` LoadBalancers, opened and
//! closed as Services change.
//!
//! Semantics (pkg/proxy/healthcheck): the proxy is unhealthy when an update was queued and not
//! applied for longer than the timeout (2 × sync period); `/healthz` also reports the node's
//! eligibility. A dual-stack node's two proxiers (one per IP family) share one [`ProxyHealth`],
//! each reporting under its family: the proxy is unhealthy as soon as either family is late, and
//! `lastUpdated` is the newer of the two. A service health server answers 200 when the Service has local endpoints and
//! the proxy is healthy, 503 otherwise, with the local endpoint count in JSON.
//!
//! The HTTP side is deliberately tiny (one request per connection, `Connection: close`):
//! these are probes and scrapes, not an API. Servers take an already-bound listener (the
//! caller chooses the address and namespace) and a cancellation token.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::metrics::ProxyMetrics;
use crate::model::{IpFamily, ServiceKey};

/// One family's sync times.
#[derive(Debug, Default)]
struct FamilyHealth {
    last_updated: Option<SystemTime>,
    oldest_pending: Option<SystemTime>,
}

#[derive(Debug, Default)]
struct HealthInner {
    families: BTreeMap<IpFamily, FamilyHealth>,
    node_ineligible: bool,
}

/// The proxier's health, as kube-proxy's `ProxyHealthServer` keeps it.
#[derive(Debug)]
pub struct ProxyHealth {
    timeout: Duration,
    inner: Mutex<HealthInner>,
}

/// Go's `time.Time.String()` without the monotonic part, as kube-proxy prints it with `%q`:
/// `2025-01-02 03:04:05.123456789 +0000 UTC` (fraction trimmed of zeros).
pub fn go_time(t: Option<SystemTime>) -> String {
    match t.and_then(|t| jiff::Timestamp::try_from(t).ok()) {
        Some(ts) => ts.strftime("%Y-%m-%d %H:%M:%S%.f +0000 UTC").to_string(),
        None => "0001-01-01 00:00:00 +0000 UTC".to_owned(),
    }
}

impl ProxyHealth {
    /// Health with kube-proxy's timeout: `2 × sync_period`.
    pub fn new(sync_period: Duration) -> Self {
        ProxyHealth {
            timeout: sync_period * 2,
            inner: Mutex::new(HealthInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An update arrived that the rules do not reflect yet (kept if one is already pending), for
    /// a single-family proxy (IPv4's slot).
    pub fn queued_update(&self, now: SystemTime) {
        self.queued_update_for(IpFamily::V4, now);
    }

    /// The rules reflect everything queued so far (single-family proxy: IPv4's slot).
    pub fn updated(&self, now: SystemTime) {
        self.updated_for(IpFamily::V4, now);
    }

    /// [`ProxyHealth::queued_update`] for the proxier of `family`.
    pub fn queued_update_for(&self, family: IpFamily, now: SystemTime) {
        let mut h = self.lock();
        h.families
            .entry(family)
            .or_default()
            .oldest_pending
            .get_or_insert(now);
    }

    /// [`ProxyHealth::updated`] for the proxier of `family`.
    pub fn updated_for(&self, family: IpFamily, now: SystemTime) {
        let mut h = self.lock();
        let f = h.families.entry(family).or_default();
        f.oldest_pending = None;
        f.last_updated = Some(now);
    }

    /// The Node is being deleted or tainted `ToBeDeletedByClusterAutoscaler` (`/healthz` 503).
    pub fn set_node_eligible(&self, eligible: bool) {
        self.lock().node_ineligible = !eligible;
    }

    /// Healthy, and the last update time (the newest of the families'). Healthy while starting
    /// (a family that applied nothing yet is not late) and while every family's pending update is
    /// younger than the timeout.
    pub fn is_healthy(&self, now: SystemTime) -> (bool, Option<SystemTime>) {
        let h = self.lock();
        let late = h.families.values().any(|f| {
            f.last_updated.is_some()
                && f.oldest_pending
                    .is_some_and(|p| now.duration_since(p).unwrap_or_default() >= self.timeout)
        });
        let last = h.families.values().filter_map(|f| f.last_updated).max();
        (!late, last)
    }

    /// The `/healthz` (with node eligibility) or `/livez` answer: status code and JSON body.
    pub fn answer(&self, now: SystemTime, healthz: bool) -> (u16, String) {
        let (mut healthy, last) = self.is_healthy(now);
        let eligible = !self.lock().node_ineligible;
        if healthz {
            healthy &= eligible;
        }
        // kube-proxy reports "now" as lastUpdated when healthy (older releases' meaning).
        let last = if healthy { Some(now) } else { last };
        let mut body = format!(
            "{{\"lastUpdated\": \"{}\",\"currentTime\": \"{}\"",
            go_time(last),
            go_time(Some(now))
        );
        if healthz {
            body.push_str(&format!(", \"nodeEligible\": {eligible}"));
        }
        body.push('}');
        (if healthy { 200 } else { 503 }, body)
    }
}

/// An HTTP response: status, content type, extra headers, body.
type Response = (u16, &'static str, Vec<(&'static str, String)>, String);

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Bad Request",
    }
}

/// Reads one request head and returns its method and path (query dropped).
async fn read_request(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        // A probe's request head is small; refuse anything larger than 8 KiB.
        if buf.len() > 8192 {
            return None;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next()?.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    Some((method, path))
}

async fn respond(stream: &mut TcpStream, method: &str, r: Response) {
    let (code, ctype, headers, body) = r;
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(code),
        body.len()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    if method != "HEAD" {
        out.push_str(&body);
    }
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Accepts connections until cancelled, answering each with `handler(method, path)`.
async fn serve<F>(listener: TcpListener, cancel: CancellationToken, handler: F)
where
    F: Fn(&str, &str) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let Ok(Some((method, path))) =
                tokio::time::timeout(Duration::from_secs(10), read_request(&mut stream)).await
            else {
                return;
            };
            let r = if method == "GET" || method == "HEAD" {
                handler(&method, &path)
            } else {
                (405, "text/plain", Vec::new(), String::new())
            };
            respond(&mut stream, &method, r).await;
        });
    }
    tracing::debug!(addr = ?listener.local_addr().ok(), "HTTP server stopped");
}

fn json(code: u16, body: String) -> Response {
    (
        code,
        "application/json",
        vec![("X-Content-Type-Options", "nosniff".to_owned())],
        body,
    )
}

fn not_found() -> Response {
    (
        404,
        "text/plain; charset=utf-8",
        Vec::new(),
        "404 page not found\n".into(),
    )
}

/// Serves `/healthz` and `/livez` (kube-proxy's port 10256) until cancelled.
pub async fn serve_healthz(
    listener: TcpListener,
    health: Arc<ProxyHealth>,
    cancel: CancellationToken,
) {
    serve(listener, cancel, move |_, path| match path {
        "/healthz" => {
            let (c, b) = health.answer(SystemTime::now(), true);
            json(c, b)
        }
        "/livez" => {
            let (c, b) = health.answer(SystemTime::now(), false);
            json(c, b)
        }
        _ => not_found(),
    })
    .await
}

/// Serves `/metrics`, `/healthz` and `/proxyMode` (kube-proxy's port 10249) until cancelled.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<ProxyMetrics>,
    health: Arc<ProxyHealth>,
    mode: &'static str,
    cancel: CancellationToken,
) {
    serve(listener, cancel, move |_, path| match path {
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            Vec::new(),
            metrics.render(),
        ),
        "/healthz" => {
            let (c, b) = health.answer(SystemTime::now(), true);
            json(c, b)
        }
        "/proxyMode" => (
            200,
            "text/plain; charset=utf-8",
            Vec::new(),
            mode.to_owned(),
        ),
        _ => not_found(),
    })
    .await
}

/// The answer of a Service's health check server.
pub fn service_health_answer(
    svc: &ServiceKey,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> (u16, String) {
    let body = format!(
        "{{\"service\":{{\"namespace\":\"{}\",\"name\":\"{}\"}},\"localEndpoints\":{local_endpoints},\"serviceProxyHealthy\":{proxy_healthy}}}",
        svc.namespace, svc.name
    );
    let code = if local_endpoints > 0 && proxy_healthy {
        200
    } else {
        503
    };
    (code, body)
}

/// Binds a health check port (the caller decides address and network namespace).
pub type Binder = Arc<dyn Fn(u16) -> io::Result<std::net::TcpListener> + Send + Sync>;

/// A binder on `0.0.0.0:port` in the current network namespace.
pub fn default_binder() -> Binder {
    Arc::new(|port| std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))))
}

struct ServiceServer {
    port: u16,
    local: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

/// The `healthCheckNodePort` servers, one per Service that has one.
pub struct HealthCheckServers {
    bind: Binder,
    health: Arc<ProxyHealth>,
    servers: BTreeMap<ServiceKey, ServiceServer>,
}

impl std::fmt::Debug for HealthCheckServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthCheckServers")
            .field("ports", &self.ports())
            .finish()
    }
}

impl HealthCheckServers {
    /// No servers yet.
    pub fn new(bind: Binder, health: Arc<ProxyHealth>) -> Self {
        HealthCheckServers {
            bind,
            health,
            servers: BTreeMap::new(),
        }
    }

    /// The open servers: Service and port.
    pub fn ports(&self) -> BTreeMap<ServiceKey, u16> {
        self.servers
            .iter()
            .map(|(k, s)| (k.clone(), s.port))
            .collect()
    }

    /// Makes the servers match `wanted` (Service → health check port and local endpoint
    /// count): opens new ones, closes gone or moved ones, updates counts. Must run inside a
    /// tokio runtime. A port that cannot be bound is reported and retried next time.
    pub fn sync(
        &mut self,
        wanted: &BTreeMap<ServiceKey, (u16, usize)>,
    ) -> Vec<(ServiceKey, io::Error)> {
        self.servers.retain(|k, s| {
            let keep = wanted.get(k).is_some_and(|(p, _)| *p == s.port);
            if !keep {
                s.cancel.cancel();
            }
            keep
        });
        let mut errors = Vec::new();
        for (k, (port, count)) in wanted {
            if let Some(s) = self.servers.get(k) {
                s.local.store(*count, Ordering::Relaxed);
                continue;
            }
            let listener = (self.bind)(*port).and_then(|l| {
                l.set_nonblocking(true)?;
                TcpListener::from_std(l)
            });
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    errors.push((k.clone(), e));
                    continue;
                }
            };
            let local = Arc::new(AtomicUsize::new(*count));
            let cancel = CancellationToken::new();
            let (svc, l2, health) = (k.clone(), local.clone(), self.health.clone());
            tokio::spawn(serve(listener, cancel.clone(), move |_, _| {
                let (healthy, _) = health.is_healthy(SystemTime::now());
                let n = l2.load(Ordering::Relaxed);
                let (code, body) = service_health_answer(&svc, n, healthy);
                let mut r = json(code, body);
                r.2.push(("X-Load-Balancing-Endpoint-Weight", n.to_string()));
                r
            }));
            self.servers.insert(
                k.clone(),
                ServiceServer {
                    port: *port,
                    local,
                    cancel,
                },
            );
        }
        errors
    }
}

impl Drop for HealthCheckServers {
    fn drop(&mut self) {
        for s in self.servers.values() {
            s.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests;

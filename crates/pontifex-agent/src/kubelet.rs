//! The one kubelet HTTP endpoint pontifex serves: `GET /containerLogs/{namespace}/{pod}/{container}`
//! on the kubelet port (10250) in the node's namespace, which the API server's `pods/log`
//! subresource proxies to (what `kubectl logs` reads). Query parameters are the kubelet's:
//! `follow`, `previous`, `tailLines`, `timestamps`, `limitBytes`.
//!
//! Deviations, on purpose: plain HTTP instead of the kubelet's HTTPS with client certificates (the
//! lab's node addresses are reachable only from this machine); `sinceSeconds`/`sinceTime` are not
//! supported (the API server rejects them before asking). Nothing else of the kubelet API is here.
//!
//! Path segments are checked against Kubernetes' name rules before they name a directory, so a
//! request cannot leave the agent's pod directory.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::channel::mpsc;
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use pontifex_node::workload::logs::{self, LogLine};
use pontifex_node::workload::state::{self, ContainerRecord};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio_util::sync::CancellationToken;

/// The kubelet's port.
pub(crate) const KUBELET_PORT: u16 = 10250;

/// A parsed `/containerLogs` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogRequest {
    pub(crate) namespace: String,
    pub(crate) pod: String,
    pub(crate) container: String,
    pub(crate) follow: bool,
    pub(crate) previous: bool,
    pub(crate) tail_lines: Option<usize>,
    pub(crate) timestamps: bool,
    pub(crate) limit_bytes: Option<usize>,
}

/// Why a request is refused: the HTTP status and the message (the API server relays it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) message: String,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: message.into(),
    }
}

/// A namespace, pod or container name as Kubernetes allows it (DNS subdomain characters), which
/// also keeps it a single, harmless path component.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !s.starts_with('.')
}

/// Go's `strconv.ParseBool`, which the kubelet's query decoding uses.
fn parse_bool(v: &str) -> Result<bool, Refusal> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(bad(format!("invalid boolean {v:?}"))),
    }
}

impl LogRequest {
    /// Parses the path and query of a request.
    pub(crate) fn parse(path: &str, query: Option<&str>) -> Result<LogRequest, Refusal> {
        let rest = path.strip_prefix("/containerLogs/").ok_or(Refusal {
            status: 404,
            message: "not found".into(),
        })?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [namespace, pod, container] = parts[..] else {
            return Err(bad("expected /containerLogs/{namespace}/{pod}/{container}"));
        };
        for n in [namespace, pod, container] {
            if !valid_name(n) {
                return Err(bad(format!("invalid name {n:?}")));
            }
        }
        let mut req = LogRequest {
            namespace: namespace.into(),
            pod: pod.into(),
            container: container.into(),
            follow: false,
            previous: false,
            tail_lines: None,
            timestamps: false,
            limit_bytes: None,
        };
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "follow" => req.follow = parse_bool(&v)?,
                "previous" => req.previous = parse_bool(&v)?,
                "timestamps" => req.timestamps = parse_bool(&v)?,
                "tailLines" => {
                    let n: i64 = v.parse().map_err(|_| bad("tailLines must be a number"))?;
                    // Negative means "all", as in the kubelet.
                    req.tail_lines = usize::try_from(n).ok();
                }
                "limitBytes" => {
                    let n: i64 = v.parse().map_err(|_| bad("limitBytes must be a number"))?;
                    if n < 1 {
                        return Err(bad("limitBytes must be greater than zero"));
                    }
                    req.limit_bytes = usize::try_from(n).ok();
                }
                "sinceSeconds" | "sinceTime" => {
                    return Err(bad(format!("{k} is not supported by this node")));
                }
                _ => {}
            }
        }
        Ok(req)
    }
}

/// Which instance's log a request reads (the kubelet's rules): the current one, or with
/// `previous` the last one that ended.
pub(crate) fn instance(req: &LogRequest, rec: &ContainerRecord) -> Result<i32, Refusal> {
    let n = rec.restart_count;
    if !req.previous {
        return Ok(n);
    }
    if rec.last_termination.is_none() || (n == 0 && rec.running.is_some()) {
        return Err(bad(format!(
            "previous terminated container \"{}\" in pod \"{}\" not found",
            req.container, req.pod
        )));
    }
    Ok(if rec.running.is_some() { n - 1 } else { n })
}

/// What a log entry shows: its content (with `timestamps`, the kubelet's RFC 3339 time first), a
/// newline after a full line.
pub(crate) fn render_entry(e: &LogLine, timestamps: bool) -> String {
    let mut out = String::new();
    if timestamps {
        // The kubelet's `timeFormatOut`: RFC 3339 with nanoseconds, kept at nine digits.
        out.push_str(&e.time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string());
        out.push(' ');
    }
    out.push_str(&e.content);
    if !e.partial {
        out.push('\n');
    }
    out
}

/// The last `n` full lines of a log's entries (a line is its partial entries and the full one
/// that ends it), as the kubelet's `tailLines` counts them.
pub(crate) fn tail(entries: &[LogLine], n: usize) -> &[LogLine] {
    let mut lines = 0;
    for i in (0..entries.len()).rev() {
        // A full entry starts counting a line; partial entries before it belong to it.
        if !entries[i].partial {
            if lines == n {
                return &entries[i + 1..];
            }
            lines += 1;
        }
    }
    entries
}

/// Cuts a chunk so that no more than `left` bytes are sent in all.
fn limited(chunk: String, left: &mut Option<usize>) -> Option<Bytes> {
    match left {
        None => Some(Bytes::from(chunk)),
        Some(0) => None,
        Some(l) => {
            let mut b = Bytes::from(chunk);
            if b.len() > *l {
                b.truncate(*l);
            }
            *l -= b.len();
            Some(b)
        }
    }
}

/// The pod directory `<data dir>/pods/<ns>_<pod>_<uid>` of a pod (names have no `_`, so the
/// prefix names one pod; the newest when an old one of the same name is still being removed).
fn pod_dir(data_dir: &Path, namespace: &str, pod: &str) -> Option<PathBuf> {
    let prefix = format!("{namespace}_{pod}_");
    std::fs::read_dir(data_dir.join("pods"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

type Body = BoxBody<Bytes, Infallible>;

fn text(status: u16, message: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(message.to_owned())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn serve_logs(data_dir: &Path, req: &LogRequest, stop: CancellationToken) -> Response<Body> {
    let Some(dir) = pod_dir(data_dir, &req.namespace, &req.pod) else {
        return text(
            404,
            &format!("pod {}/{} not found on this node", req.namespace, req.pod),
        );
    };
    let dir = dir.join(&req.container);
    let rec = match state::read::<ContainerRecord>(&state::state_path(&dir)) {
        Ok(Some(r)) => r,
        _ => {
            return text(
                400,
                &format!(
                    "container \"{}\" in pod \"{}\" is waiting to start: ContainerCreating",
                    req.container, req.pod
                ),
            );
        }
    };
    let n = match instance(req, &rec) {
        Ok(n) => n,
        Err(r) => return text(r.status, &r.message),
    };
    let path = logs::log_path(&dir, n);
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return text(500, &format!("reading {}: {e}", path.display())),
    };
    let (mut tx, rx) = mpsc::channel::<Bytes>(16);
    let exit = state::exit_path(&dir, n);
    let req = req.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(file);
        let mut left = req.limit_bytes;
        // What is there now: all of it, or its tail.
        let mut existing = Vec::new();
        let mut buf = String::new();
        while reader.read_line(&mut buf).await.unwrap_or(0) > 0 && buf.ends_with('\n') {
            existing.extend(logs::parse_entry(buf.trim_end_matches('\n')));
            buf.clear();
        }
        let start = match req.tail_lines {
            Some(t) => tail(&existing, t),
            None => &existing,
        };
        for e in start {
            let Some(b) = limited(render_entry(e, req.timestamps), &mut left) else {
                return;
            };
            if tx.send(b).await.is_err() {
                return;
            }
        }
        // Following: new entries as they come, until the instance ends, the client goes or the
        // agent stops.
        if !req.follow {
            return;
        }
        loop {
            let n = reader.read_line(&mut buf).await.unwrap_or(0);
            if n == 0 || !buf.ends_with('\n') {
                if exit.exists() && n == 0 {
                    return;
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
            if let Some(e) = logs::parse_entry(buf.trim_end_matches('\n')) {
                let Some(b) = limited(render_entry(&e, req.timestamps), &mut left) else {
                    return;
                };
                if tx.send(b).await.is_err() {
                    return;
                }
            }
            buf.clear();
        }
    });
    let body = StreamBody::new(rx.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(http_body_util::BodyExt::boxed(body));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

async fn handle(
    data_dir: Arc<PathBuf>,
    request: Request<hyper::body::Incoming>,
    stop: CancellationToken,
) -> Result<Response<Body>, Infallible> {
    if request.method() != hyper::Method::GET {
        return Ok(text(405, "method not allowed"));
    }
    let uri = request.uri();
    Ok(match LogRequest::parse(uri.path(), uri.query()) {
        Ok(req) => serve_logs(&data_dir, &req, stop).await,
        Err(r) => text(r.status, &r.message),
    })
}

/// Serves the endpoint on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let data_dir = Arc::new(data_dir);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "kubelet port accept failed");
                    continue;
                }
            },
        };
        let (dir, stop) = (data_dir.clone(), shutdown.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |r| handle(dir.clone(), r, stop.clone()));
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "kubelet port connection");
            }
        });
    }
    tracing::info!("kubelet log endpoint stopped");
}

#[cfg(test)]
mod tests;

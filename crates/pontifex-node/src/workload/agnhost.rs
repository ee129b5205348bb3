//! The built-in test server: a stand-in for the `agnhost` image of the Kubernetes e2e tests
//! (`netexec`, `serve-hostname`, `pause`), and what a container without a command runs.
//!
//! It is started as `pontifex agnhost <args…>` inside the pod's network namespace, so it binds the pod's
//! addresses and `/hostname` reads the pod's UTS name. Behaviour follows agnhost:
//!
//! - `netexec [--http-port=N]… [--udp-port=N]…`: HTTP on each TCP port (default 8080) with `/`,
//!   `/hostname` (`/hostName`), `/clientip` (`ip:port`), `/echo?msg=&code=`, `/dial?host=&port=&protocol=
//!   http|udp&request=&tries=`, `/healthz`, `/header?key=`, `/redirect?location=&code=`, `/shell?cmd=`,
//!   `/exit?code=&wait=`, `/shutdown`; UDP on each UDP port (default 8081) answering `hostname`, `echo X`
//!   and `clientip`. Unlike agnhost the ports may repeat (one server per port) and `-1` disables either.
//! - `serve-hostname [--port=9376] [--http=true] [--udp] [--tcp] [--close]`: the hostname on every request.
//! - `pause`: waits until shut down.
//!
//! Deviations: no TLS, SCTP or `/upload`; `/healthz` is 200 once every configured listener is bound
//! (agnhost answers 412 when its UDP server is disabled); `/exit` answers before exiting.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgnhostError {
    /// The first argument is not a known subcommand.
    #[error("unknown agnhost subcommand {0:?} (known: netexec, serve-hostname, pause)")]
    UnknownSubcommand(String),
    /// A flag has a value that does not parse.
    #[error("invalid value {value:?} for flag --{flag}")]
    BadFlag {
        /// The flag name.
        flag: String,
        /// The value given.
        value: String,
    },
    /// A listening socket could not be bound.
    #[error("listen on port {port}/{proto}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// "tcp" or "udp".
        proto: &'static str,
        /// The bind error.
        source: std::io::Error,
    },
}

/// Parsed `netexec` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NetexecOptions {
    pub(crate) http_ports: Vec<u16>,
    pub(crate) udp_ports: Vec<u16>,
    /// `--delay-shutdown=N`: on SIGTERM keep serving N seconds, then exit 0 — what Kubernetes'
    /// e2e tests use to hold a pod in the terminating-but-serving state (KEP-1669).
    pub(crate) delay_shutdown_seconds: u64,
}

/// Parsed `serve-hostname` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServeHostnameOptions {
    pub(crate) port: u16,
    pub(crate) http: bool,
    pub(crate) udp: bool,
    pub(crate) tcp: bool,
    pub(crate) close: bool,
}

/// A parsed agnhost command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Netexec(NetexecOptions),
    ServeHostname(ServeHostnameOptions),
    Pause,
}

/// Splits `--flag=value`, `--flag value` and `-flag` forms into (name, value) pairs.
fn flags(args: &[String]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        let Some(body) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue; // agnhost's subcommands take no positional arguments
        };
        if let Some((k, v)) = body.split_once('=') {
            out.push((k.to_string(), Some(v.to_string())));
        } else if it.peek().is_some_and(|n| !n.starts_with('-')) {
            out.push((body.to_string(), it.next().cloned()));
        } else {
            out.push((body.to_string(), None));
        }
    }
    out
}

fn port_flag(flag: &str, value: Option<&str>) -> Result<Option<u16>, AgnhostError> {
    let v = value.unwrap_or("");
    let bad = || AgnhostError::BadFlag {
        flag: flag.to_string(),
        value: v.to_string(),
    };
    let n: i64 = v.parse().map_err(|_| bad())?;
    match n {
        -1 => Ok(None),
        0..=65535 => Ok(Some(n as u16)),
        _ => Err(bad()),
    }
}

fn bool_flag(flag: &str, value: Option<&str>) -> Result<bool, AgnhostError> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => Err(AgnhostError::BadFlag {
            flag: flag.to_string(),
            value: v.to_string(),
        }),
    }
}

/// Parses an agnhost command line (`netexec --http-port=80`, …).
pub(crate) fn parse(args: &[String]) -> Result<Mode, AgnhostError> {
    let Some(sub) = args.first() else {
        return Ok(Mode::Pause);
    };
    let rest = flags(&args[1..]);
    match sub.as_str() {
        "netexec" => {
            let (mut http, mut udp) = (None::<Vec<u16>>, None::<Vec<u16>>);
            let mut delay_shutdown_seconds = 0;
            for (k, v) in &rest {
                let target = match k.as_str() {
                    "delay-shutdown" => {
                        let v = v.as_deref().unwrap_or("");
                        delay_shutdown_seconds = v.parse().map_err(|_| AgnhostError::BadFlag {
                            flag: k.clone(),
                            value: v.to_string(),
                        })?;
                        continue;
                    }
                    "http-port" => &mut http,
                    "udp-port" => &mut udp,
                    other => {
                        tracing::warn!(flag = other, "netexec: flag not supported, ignored");
                        continue;
                    }
                };
                let list = target.get_or_insert_with(Vec::new);
                if let Some(p) = port_flag(k, v.as_deref())? {
                    list.push(p);
                }
            }
            Ok(Mode::Netexec(NetexecOptions {
                http_ports: http.unwrap_or_else(|| vec![8080]),
                udp_ports: udp.unwrap_or_else(|| vec![8081]),
                delay_shutdown_seconds,
            }))
        }
        "serve-hostname" => {
            let mut o = ServeHostnameOptions {
                port: 9376,
                http: true,
                udp: false,
                tcp: false,
                close: false,
            };
            for (k, v) in &rest {
                match k.as_str() {
                    "port" => o.port = port_flag(k, v.as_deref())?.unwrap_or(9376),
                    "http" => o.http = bool_flag(k, v.as_deref())?,
                    "udp" => o.udp = bool_flag(k, v.as_deref())?,
                    "tcp" => o.tcp = bool_flag(k, v.as_deref())?,
                    "close" => o.close = bool_flag(k, v.as_deref())?,
                    other => {
                        tracing::warn!(flag = other, "serve-hostname: flag not supported, ignored")
                    }
                }
            }
            Ok(Mode::ServeHostname(o))
        }
        "pause" => Ok(Mode::Pause),
        other => Err(AgnhostError::UnknownSubcommand(other.to_string())),
    }
}

/// The hostname of this process's UTS namespace (the pod name inside a pod). A rootless pod has
/// no UTS namespace of its own: there the runtime's `HOSTNAME` (the pod name) stands in.
pub(crate) fn hostname() -> String {
    if super::rootless::from_process_env().is_some()
        && let Ok(h) = std::env::var("HOSTNAME")
    {
        return h;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// Runs the server described by `args` until `shutdown` is cancelled or a client asks it to exit
/// (`/exit`, `/shutdown`). Returns the exit code the process should end with.
pub async fn run(args: Vec<String>, shutdown: CancellationToken) -> Result<i32, AgnhostError> {
    match parse(&args)? {
        Mode::Pause => {
            shutdown.cancelled().await;
            Ok(0)
        }
        Mode::Netexec(o) => {
            let (tcp, udp) = bind_all(&o.http_ports, &o.udp_ports).await?;
            Ok(serve_netexec(tcp, udp, shutdown).await)
        }
        Mode::ServeHostname(o) => serve_hostname(o, shutdown).await,
    }
}

/// [`run`] with SIGTERM and SIGINT as the shutdown signal, for the `pontifex agnhost` subcommand.
/// A signal ends the process with 128 + the signal number, as an unhandled signal would — except
/// SIGTERM to `netexec --delay-shutdown=N`, which serves N more seconds and then exits 0.
pub async fn run_until_signal(args: Vec<String>) -> Result<i32, AgnhostError> {
    use tokio::signal::unix::{SignalKind, signal};
    let delay = match parse(&args)? {
        Mode::Netexec(o) => Duration::from_secs(o.delay_shutdown_seconds),
        _ => Duration::ZERO,
    };
    let token = CancellationToken::new();
    let code = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let (t, c) = (token.clone(), code.clone());
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        let n = tokio::select! { _ = term.recv() => libc::SIGTERM, _ = int.recv() => libc::SIGINT };
        let graceful = n == libc::SIGTERM && !delay.is_zero();
        if graceful {
            tracing::info!(
                seconds = delay.as_secs(),
                "SIGTERM: serving on before exiting"
            );
            // A SIGINT meanwhile still ends it at once.
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = int.recv() => c.store(128 + libc::SIGINT, std::sync::atomic::Ordering::SeqCst),
            }
        } else {
            c.store(128 + n, std::sync::atomic::Ordering::SeqCst);
        }
        t.cancel();
    });
    let result = run(args, token).await?;
    let by_signal = code.load(std::sync::atomic::Ordering::SeqCst);
    Ok(if by_signal != 0 { by_signal } else { result })
}

async fn bind_tcp(port: u16) -> Result<TcpListener, AgnhostError> {
    // A rootless pod shares the host's network: its own loopback address, privileged ports shifted.
    let bound = if let Some((addr, shift)) = super::rootless::from_process_env() {
        TcpListener::bind((addr, shift.port(port))).await
    } else {
        // Dual-stack like Go's ":port"; plain IPv4 when the namespace has no IPv6.
        match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind(("0.0.0.0", port)).await,
        }
    };
    bound.map_err(|source| AgnhostError::Bind {
        port,
        proto: "tcp",
        source,
    })
}

async fn bind_udp(port: u16) -> Result<UdpSocket, AgnhostError> {
    let bound = if let Some((addr, shift)) = super::rootless::from_process_env() {
        UdpSocket::bind((addr, shift.port(port))).await
    } else {
        match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(s) => Ok(s),
            Err(_) => UdpSocket::bind(("0.0.0.0", port)).await,
        }
    };
    bound.map_err(|source| AgnhostError::Bind {
        port,
        proto: "udp",
        source,
    })
}

pub(crate) async fn bind_all(
    http_ports: &[u16],
    udp_ports: &[u16],
) -> Result<(Vec<TcpListener>, Vec<UdpSocket>), AgnhostError> {
    let mut tcp = Vec::new();
    for &port in http_ports {
        tcp.push(bind_tcp(port).await?);
    }
    let mut udp = Vec::new();
    for &port in udp_ports {
        udp.push(bind_udp(port).await?);
    }
    Ok((tcp, udp))
}

/// Go prints IPv4 clients of a dual-stack socket as plain IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Serves netexec on already-bound sockets until shut down or asked to exit; returns the exit code.
pub(crate) async fn serve_netexec(
    tcp: Vec<TcpListener>,
    udp: Vec<UdpSocket>,
    shutdown: CancellationToken,
) -> i32 {
    let (exit_tx, mut exit_rx) = mpsc::channel::<i32>(1);
    let stop = shutdown.child_token();
    for sock in udp {
        tokio::spawn(udp_loop(sock, stop.clone()));
    }
    for listener in tcp {
        let exit_tx = exit_tx.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                };
                let exit_tx = exit_tx.clone();
                let svc = hyper::service::service_fn(move |req| {
                    let exit_tx = exit_tx.clone();
                    async move {
                        Ok::<_, Infallible>(netexec_handler(req, canonical(peer), exit_tx).await)
                    }
                });
                let stop = stop.clone();
                tokio::spawn(async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = stop.cancelled() => {} }
                });
            }
        });
    }
    drop(exit_tx);
    let code = tokio::select! {
        _ = shutdown.cancelled() => 0,
        Some(code) = exit_rx.recv() => code,
    };
    stop.cancel();
    code
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("static"),
    );
    r
}

/// Go's `http.Error`: the message and a newline.
fn error(status: StatusCode, msg: String) -> Response<Full<Bytes>> {
    text(status, format!("{msg}\n"))
}

fn json(value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::OK, value.to_string());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    r
}

async fn netexec_handler(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    exit_tx: mpsc::Sender<i32>,
) -> Response<Full<Bytes>> {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let q = |key: &str| {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    tracing::debug!(path = req.uri().path(), %peer, "netexec request");
    match req.uri().path() {
        "/hostname" | "/hostName" => text(StatusCode::OK, hostname()),
        "/clientip" => text(StatusCode::OK, peer.to_string()),
        "/healthz" => text(StatusCode::OK, ""),
        "/echo" => {
            let (msg, code) = (q("msg"), q("code"));
            if code.is_empty() {
                return text(StatusCode::OK, msg);
            }
            match code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(status) => text(status, msg),
                None => text(
                    StatusCode::OK,
                    format!("argument 'code' must be an integer or empty, got {code:?}\n"),
                ),
            }
        }
        "/header" => {
            let key = q("key");
            if key.is_empty() {
                let all: serde_json::Map<String, serde_json::Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!([v.to_str().unwrap_or("")])))
                    .collect();
                json(&serde_json::Value::Object(all))
            } else {
                let v = req
                    .headers()
                    .get(key.as_str())
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                text(StatusCode::OK, v.to_string())
            }
        }
        "/redirect" => {
            let code = q("code");
            let status = if code.is_empty() {
                Ok(StatusCode::FOUND)
            } else {
                code.parse::<u16>()
                    .map_err(|_| ())
                    .and_then(|c| StatusCode::from_u16(c).map_err(|_| ()))
            };
            match status {
                Ok(status) => {
                    let mut r = text(status, "");
                    if let Ok(loc) = q("location").parse() {
                        r.headers_mut().insert(hyper::header::LOCATION, loc);
                    }
                    r
                }
                Err(()) => text(
                    StatusCode::OK,
                    format!("argument 'code' must be an integer or empty, got {code:?}\n"),
                ),
            }
        }
        "/dial" => {
            dial(
                &q("host"),
                &q("port"),
                &q("request"),
                &q("protocol"),
                &q("tries"),
            )
            .await
        }
        "/shell" => {
            let cmd = Some(q("shellCommand"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| q("cmd"));
            let out = tokio::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&cmd)
                .output()
                .await;
            let mut m = serde_json::Map::new();
            match out {
                Ok(o) => {
                    let mut all = o.stdout;
                    all.extend(o.stderr);
                    if !all.is_empty() {
                        m.insert("output".into(), String::from_utf8_lossy(&all).into());
                    }
                    if !o.status.success() {
                        m.insert(
                            "error".into(),
                            format!("exit status {}", o.status.code().unwrap_or(-1)).into(),
                        );
                    }
                }
                Err(e) => {
                    m.insert("error".into(), e.to_string().into());
                }
            }
            json(&serde_json::Value::Object(m))
        }
        "/exit" | "/shutdown" => {
            let code = q("code");
            let code: i32 = if code.is_empty() {
                0
            } else {
                match code.parse() {
                    Ok(c @ 0..=127) => c,
                    _ => {
                        return text(
                            StatusCode::OK,
                            format!(
                                "argument 'code' must be an integer [0-127] or empty, got {code:?}\n"
                            ),
                        );
                    }
                }
            };
            if let Ok(wait) = q("wait").trim_end_matches('s').parse::<f64>() {
                tokio::time::sleep(Duration::from_secs_f64(wait.max(0.0))).await;
            }
            let _ = exit_tx.try_send(code);
            text(StatusCode::OK, "")
        }
        _ => text(StatusCode::OK, format!("NOW: {}", jiff::Zoned::now())),
    }
}

/// `/dial`: agnhost's JSON of `responses` and `errors` after `tries` requests.
async fn dial(
    host: &str,
    port: &str,
    request: &str,
    protocol: &str,
    tries: &str,
) -> Response<Full<Bytes>> {
    let tries: u32 = if tries.is_empty() {
        1
    } else {
        match tries.parse() {
            Ok(t) => t,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("tries parameter is invalid. {e}"),
                );
            }
        }
    };
    if request.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "request parameter not specified. <nil>".into(),
        );
    }
    let proto = protocol.to_ascii_lowercase();
    if !matches!(proto.as_str(), "" | "http" | "udp") {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unsupported protocol. {protocol}"),
        );
    }
    // Like Go's Resolve*Addr the host may be a name; resolution happens here, inside the pod.
    let target = format!(
        "{}:{port}",
        if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        }
    );
    let addr = match tokio::net::lookup_host(&target)
        .await
        .ok()
        .and_then(|mut a| a.next())
    {
        Some(a) => a,
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("host and/or port param are invalid. {target}"),
            );
        }
    };
    let mut responses = Vec::new();
    let mut errors = Vec::new();
    let mut last = String::new();
    for _ in 0..tries {
        let r = if proto == "udp" {
            dial_udp(addr, request).await
        } else {
            dial_http(addr, request).await
        };
        match r {
            Ok(body) => {
                last = body.clone();
                responses.push(body);
            }
            Err(e) => {
                last.clear();
                errors.push(e);
            }
        }
    }
    let mut out = serde_json::Map::new();
    // agnhost reports responses only when the last try answered with a non-empty body.
    if !last.is_empty() {
        out.insert("responses".into(), responses.into());
    }
    if !errors.is_empty() {
        out.insert("errors".into(), errors.into());
    }
    json(&serde_json::Value::Object(out))
}

async fn dial_http(addr: SocketAddr, request: &str) -> Result<String, String> {
    let path = format!("/{}", request.trim_start_matches('/'));
    let host = addr.to_string();
    super::httpc::get(addr, &host, &path, &[], Duration::from_secs(5))
        .await
        .map(|(_, body)| String::from_utf8_lossy(&body).into_owned())
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))
}

async fn dial_udp(addr: SocketAddr, request: &str) -> Result<String, String> {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("static"),
        IpAddr::V6(_) => "[::]:0".parse().expect("static"),
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp dial failed. err:{e}"))?;
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp dial failed. err:{e}"))?;
    sock.send(request.as_bytes())
        .await
        .map_err(|e| format!("udp connection write failed. err:{e}"))?;
    let mut buf = [0u8; 2048];
    match tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Ok(_)) => Err("reading from udp connection failed. err:'<nil>'".into()),
        Ok(Err(e)) => Err(format!("reading from udp connection failed. err:'{e}'")),
        Err(_) => Err("reading from udp connection failed. err:'i/o timeout'".into()),
    }
}

/// The answer to one UDP command, or `None` for an unknown one (agnhost stays silent).
pub(crate) fn udp_answer(datagram: &[u8], peer: SocketAddr) -> Option<String> {
    let text = String::from_utf8_lossy(datagram).trim().to_lowercase();
    if text == "hostname" {
        Some(hostname())
    } else if let Some(rest) = text.strip_prefix("echo ") {
        Some(rest.to_string())
    } else if text == "clientip" {
        Some(canonical(peer).to_string())
    } else {
        None
    }
}

async fn udp_loop(sock: UdpSocket, stop: CancellationToken) {
    let mut buf = [0u8; 2048];
    loop {
        let (n, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r { Ok(x) => x, Err(_) => continue },
        };
        if let Some(answer) = udp_answer(&buf[..n], peer) {
            let _ = sock.send_to(answer.as_bytes(), peer).await;
        }
    }
}

async fn serve_hostname(
    o: ServeHostnameOptions,
    shutdown: CancellationToken,
) -> Result<i32, AgnhostError> {
    let stop = shutdown.child_token();
    if o.tcp {
        let l = bind_tcp(o.port).await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            loop {
                let mut s = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = l.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(hostname().as_bytes()).await;
            }
        });
    }
    if o.udp {
        let sock = bind_udp(o.port).await?;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let peer = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = sock.recv_from(&mut buf) => match r { Ok((_, p)) => p, Err(_) => continue },
                };
                let _ = sock.send_to(hostname().as_bytes(), peer).await;
            }
        });
    }
    if o.http {
        let l = bind_tcp(o.port).await?;
        let (stop, close) = (stop.clone(), o.close);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = l.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let svc = hyper::service::service_fn(
                    move |_req: Request<hyper::body::Incoming>| async move {
                        let mut r = text(StatusCode::OK, hostname());
                        if close {
                            r.headers_mut().insert(
                                hyper::header::CONNECTION,
                                "close".parse().expect("static"),
                            );
                        }
                        Ok::<_, Infallible>(r)
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
    }
    shutdown.cancelled().await;
    stop.cancel();
    Ok(0)
}

#[cfg(test)]
mod tests;

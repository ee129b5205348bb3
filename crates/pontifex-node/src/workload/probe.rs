//! Readiness, liveness and startup probes with the kubelet's semantics, and runners for the three
//! kinds of check (httpGet, tcpSocket, exec).
//!
//! [`ProbeWorker`] is the kubelet's per-container prober worker without a clock: the agent asks
//! [`ProbeWorker::due`] with `now`, runs the check, and feeds the outcome to [`ProbeWorker::record`], which
//! says when the result flips and when the container must be restarted. Rules kept from the kubelet:
//! defaults 10 s period, 1 s timeout, 1 success, 3 failures; nothing runs before `initialDelaySeconds` after
//! the container started; readiness and liveness wait until the startup probe succeeded; the startup probe
//! stops once it succeeded; readiness starts false, liveness true; a result changes only after
//! `successThreshold`/`failureThreshold` equal outcomes in a row; a failed liveness or startup result asks
//! for a restart and holds the worker until the next container instance.
//!
//! Not done: gRPC probes (they count as failures), HTTPS (the kubelet skips verification; here it fails).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::process::{self, SpawnSpec};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Gates endpoints (the Ready condition).
    Readiness,
    /// Restarts the container when it fails.
    Liveness,
    /// Holds the other probes until the container has started; restarts it when it fails.
    Startup,
}

/// A probe's timing, with the API's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// `initialDelaySeconds` (0).
    pub initial_delay: Duration,
    /// `periodSeconds` (10 s).
    pub period: Duration,
    /// `timeoutSeconds` (1 s).
    pub timeout: Duration,
    /// `successThreshold` (1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (3).
    pub failure_threshold: u32,
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.filter(|s| *s > 0).map_or(default, |s| s as u64))
}

impl Timings {
    /// The timings of `probe`, defaulted as the API server does.
    pub fn of(probe: &Probe) -> Timings {
        Timings {
            initial_delay: Duration::from_secs(
                probe.initial_delay_seconds.unwrap_or(0).max(0) as u64
            ),
            period: secs(probe.period_seconds, 10),
            timeout: secs(probe.timeout_seconds, 1),
            success_threshold: probe.success_threshold.filter(|t| *t > 0).unwrap_or(1) as u32,
            failure_threshold: probe.failure_threshold.filter(|t| *t > 0).unwrap_or(3) as u32,
        }
    }
}

/// What [`ProbeWorker::record`] asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeEvent {
    /// Nothing changed.
    None,
    /// The probe's result is now this (readiness: ready or not; startup: started).
    Changed(bool),
    /// Liveness or startup failed: kill the container and let the restart policy decide.
    Restart,
}

/// One probe of one container instance.
#[derive(Debug, Clone)]
pub struct ProbeWorker {
    kind: ProbeKind,
    timings: Timings,
    result: bool,
    last_outcome: Option<bool>,
    run: u32,
    on_hold: bool,
    next: Option<Instant>,
}

impl ProbeWorker {
    /// A worker for a container instance; `probe` is the container's probe of that kind.
    pub fn new(kind: ProbeKind, probe: &Probe) -> ProbeWorker {
        let mut timings = Timings::of(probe);
        if kind != ProbeKind::Readiness {
            timings.success_threshold = 1; // validation forces 1 for liveness and startup
        }
        ProbeWorker {
            kind,
            timings,
            result: kind == ProbeKind::Liveness,
            last_outcome: None,
            run: 0,
            on_hold: false,
            next: None,
        }
    }

    /// The probe's timings.
    pub fn timings(&self) -> Timings {
        self.timings
    }

    /// The current result: ready (readiness), alive (liveness), started (startup).
    pub fn result(&self) -> bool {
        self.result
    }

    /// Whether a check should run now. `started_at` is when the container instance started;
    /// `startup_done` whether its startup probe (if any) has succeeded.
    pub fn due(&self, now: Instant, started_at: Instant, startup_done: bool) -> bool {
        if self.on_hold || self.next.is_some_and(|n| now < n) {
            return false;
        }
        match self.kind {
            ProbeKind::Startup if self.result => return false,
            ProbeKind::Readiness | ProbeKind::Liveness if !startup_done => return false,
            _ => {}
        }
        now.saturating_duration_since(started_at) >= self.timings.initial_delay
    }

    /// When the worker next wants to be asked (the caller may ask earlier; [`Self::due`] says no).
    pub fn next_check(&self, now: Instant, started_at: Instant) -> Instant {
        let after_delay = started_at + self.timings.initial_delay;
        self.next.unwrap_or(now).max(after_delay)
    }

    /// Records the outcome of a check run at `now` (a timeout is a failure).
    pub fn record(&mut self, now: Instant, success: bool) -> ProbeEvent {
        self.next = Some(now + self.timings.period);
        if self.last_outcome == Some(success) {
            self.run += 1;
        } else {
            self.last_outcome = Some(success);
            self.run = 1;
        }
        let threshold = if success {
            self.timings.success_threshold
        } else {
            self.timings.failure_threshold
        };
        if self.run < threshold {
            return ProbeEvent::None;
        }
        if !success && self.kind != ProbeKind::Readiness {
            self.on_hold = true;
            self.run = 0;
            self.result = false;
            return ProbeEvent::Restart;
        }
        if self.result == success {
            return ProbeEvent::None;
        }
        self.result = success;
        ProbeEvent::Changed(success)
    }
}

/// Whether a container instance is ready, from its running state and its workers (the kubelet: no
/// readiness probe means ready once started).
pub fn container_ready(
    running: bool,
    startup: Option<&ProbeWorker>,
    readiness: Option<&ProbeWorker>,
) -> bool {
    let started = startup.is_none_or(ProbeWorker::result);
    running && started && readiness.is_none_or(ProbeWorker::result)
}

/// A check ready to run, resolved from a probe's handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// GET `path` on `addr`; success is a status of 200–399.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// The Host header.
        host: String,
        /// Path and query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A TCP connection to `addr`.
    Tcp {
        /// Where to connect.
        addr: SocketAddr,
    },
    /// A command in the pod's namespace; exit 0 is success.
    Exec {
        /// The command.
        argv: Vec<String>,
        /// The pod's network namespace.
        netns: Option<PathBuf>,
        /// The container's environment.
        env: Vec<(String, String)>,
    },
}

/// Why a probe cannot be turned into a check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// A named port that the container does not declare.
    #[error("port {0:?} not found in the container's ports")]
    UnknownPort(String),
    /// No handler, or one pontifex does not run (gRPC, HTTPS).
    #[error("unsupported probe handler: {0}")]
    Unsupported(&'static str),
    /// The host is not an IP address (names are not resolved).
    #[error("invalid probe host {0:?}")]
    BadHost(String),
}

fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).map_err(|_| ProbeError::UnknownPort(n.to_string()))
        }
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| ProbeError::UnknownPort(name.clone()))
        }
    }
}

fn host_ip(host: Option<&str>, pod_ip: IpAddr) -> Result<IpAddr, ProbeError> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(pod_ip),
        Some(h) => h
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| ProbeError::BadHost(h.to_string())),
    }
}

/// Turns `probe` of `container` into a check against `pod_ip` (pure).
pub fn check_for(
    probe: &Probe,
    container: &Container,
    pod_ip: IpAddr,
    netns: Option<PathBuf>,
    env: &[(String, String)],
) -> Result<Check, ProbeError> {
    if let Some(h) = &probe.http_get {
        if h.scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Err(ProbeError::Unsupported("httpGet with scheme HTTPS"));
        }
        let ip = host_ip(h.host.as_deref(), pod_ip)?;
        let port = resolve_port(&h.port, container)?;
        let addr = SocketAddr::new(ip, port);
        let mut path = h.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut headers: Vec<(String, String)> = vec![
            ("User-Agent".into(), "kube-probe/1.33".into()),
            ("Accept".into(), "*/*".into()),
        ];
        let mut host = addr.to_string();
        for hh in h.http_headers.iter().flatten() {
            if hh.name.eq_ignore_ascii_case("host") {
                host = hh.value.clone();
                continue;
            }
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&hh.name));
            headers.push((hh.name.clone(), hh.value.clone()));
        }
        return Ok(Check::Http {
            addr,
            host,
            path,
            headers,
        });
    }
    if let Some(t) = &probe.tcp_socket {
        let ip = host_ip(t.host.as_deref(), pod_ip)?;
        return Ok(Check::Tcp {
            addr: SocketAddr::new(ip, resolve_port(&t.port, container)?),
        });
    }
    if let Some(e) = &probe.exec {
        let argv = e.command.clone().unwrap_or_default();
        if argv.is_empty() {
            return Err(ProbeError::Unsupported("exec without a command"));
        }
        return Ok(Check::Exec {
            argv,
            netns,
            env: env.to_vec(),
        });
    }
    if probe.grpc.is_some() {
        return Err(ProbeError::Unsupported("grpc"));
    }
    Err(ProbeError::Unsupported("no handler"))
}

/// Runs a check once within `timeout`: `true` on success.
pub async fn run_check(check: &Check, timeout: Duration) -> bool {
    match check {
        Check::Http {
            addr,
            host,
            path,
            headers,
        } => match super::httpc::get(*addr, host, path, headers, timeout).await {
            Ok((status, _)) => (200..400).contains(&status),
            Err(e) => {
                tracing::debug!(%addr, error = %e, "http probe failed");
                false
            }
        },
        Check::Tcp { addr } => {
            matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await,
                Ok(Ok(_))
            )
        }
        Check::Exec { argv, netns, env } => {
            let spec = SpawnSpec {
                argv: argv.iter().map(Into::into).collect(),
                env: env.clone(),
                netns: netns.clone(),
                ..Default::default()
            };
            matches!(process::run(&spec, timeout).await, Ok(out) if out.exit.code == 0)
        }
    }
}

#[cfg(test)]
mod tests;

//! The engine task: follows the snapshot channel, binds and unbinds listeners, and serves stats.
//!
//! Tasks: one engine task (this file), one per TCP listener (a virtual service has
//! `ProxyConfig::listeners` of them, `SO_REUSEPORT`, by default one per runtime worker), one per
//! TCP connection, one per UDP service socket, one per UDP flow. Channels: the input `watch` of snapshots (latest wins, nothing
//! queues) and an output `watch` saying which snapshot was applied last. Removing a service aborts its
//! listener (and UDP flows) but never a TCP connection task, so connections finish on their own.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::model::{Protocol, ProxyConfig, Snapshot, VirtualService};
use super::service::Service;
use super::stats::StatsSnapshot;
use super::{tcp, udp};

/// Opens the proxy's sockets; injectable so that tests and rootless mode can choose how.
pub trait Binder: Send + Sync + 'static {
    /// A listening TCP socket on `addr`.
    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener>;
    /// `count` listening sockets on `addr` that share its connections (`SO_REUSEPORT`), one per
    /// runtime worker. The default binds one socket, which is always correct, only less parallel.
    fn bind_tcp_group(&self, addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
        let _ = count;
        self.bind_tcp(addr).map(|l| vec![l])
    }
    /// A UDP socket bound to `addr`.
    fn bind_udp(&self, addr: SocketAddr) -> io::Result<UdpSocket>;
}

/// Binds with `SO_REUSEADDR` (a restarted proxy rebinds at once despite TIME_WAIT) and a listen
/// backlog of 4096 (the kernel's default `somaxconn`), so bursts of connects are not refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultBinder;

/// Listen backlog of TCP listeners.
const BACKLOG: u32 = 4096;

fn listen_on(addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    if reuseport {
        sock.set_reuseport(true)?;
    }
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

impl Binder for DefaultBinder {
    fn bind_tcp(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        listen_on(addr, false)
    }

    /// With `count` > 1, `SO_REUSEPORT` sockets: the kernel spreads new connections over their
    /// accept queues by a hash of the 4-tuple, so each worker accepts from a queue of its own
    /// instead of all waking on one. A port that someone else holds without `SO_REUSEPORT` still
    /// fails to bind (EADDRINUSE), as a single socket would; the group is all or nothing.
    fn bind_tcp_group(&self, addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
        if count <= 1 {
            return self.bind_tcp(addr).map(|l| vec![l]);
        }
        let first = listen_on(addr, true)?;
        // Port 0: the rest of the group must share the port the first one got.
        let addr = first.local_addr()?;
        let mut group = vec![first];
        for _ in 1..count {
            group.push(listen_on(addr, true)?);
        }
        Ok(group)
    }

    fn bind_udp(&self, addr: SocketAddr) -> io::Result<UdpSocket> {
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        UdpSocket::from_std(std)
    }
}

type Key = (Protocol, SocketAddr);

#[derive(Debug, Default)]
struct Shared {
    services: Mutex<BTreeMap<Key, Arc<Service>>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Arc<Service>>> {
        self.services.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Control of a running userspace proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
    input: watch::Receiver<Arc<Snapshot>>,
    applied: watch::Receiver<Option<Arc<Snapshot>>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Start the userspace proxy on the current tokio runtime with the default binder. It follows
/// `snapshots` until [`ProxyHandle::shutdown`] or until the sender is dropped.
pub fn spawn(snapshots: watch::Receiver<Arc<Snapshot>>, config: ProxyConfig) -> ProxyHandle {
    spawn_with_binder(snapshots, config, Arc::new(DefaultBinder))
}

/// As [`spawn`], opening sockets through `binder`.
pub fn spawn_with_binder(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    config: ProxyConfig,
    binder: Arc<dyn Binder>,
) -> ProxyHandle {
    let shared = Arc::new(Shared::default());
    let (applied_tx, applied) = watch::channel(None);
    let mut config = config;
    if config.listeners.is_none() {
        config.listeners =
            std::num::NonZeroUsize::new(tokio::runtime::Handle::current().metrics().num_workers());
    }
    let cancel = CancellationToken::new();
    let engine = Engine {
        shared: shared.clone(),
        config: Arc::new(config),
        binder,
        running: BTreeMap::new(),
    };
    let task = tokio::spawn(engine.run(snapshots.clone(), applied_tx, cancel.clone()));
    ProxyHandle {
        shared,
        input: snapshots,
        applied,
        cancel,
        task,
    }
}

impl ProxyHandle {
    /// Counters of every virtual service, for `pontifex ipvsadm`.
    pub fn stats(&self) -> StatsSnapshot {
        let now = Instant::now();
        StatsSnapshot {
            services: self.shared.lock().values().map(|s| s.stats(now)).collect(),
        }
    }

    /// Wait until the engine has applied the newest snapshot published so far (listeners bound,
    /// endpoints updated). Returns at once if the engine has stopped.
    pub async fn synced(&self) {
        let target = self.input.borrow().clone();
        let mut applied = self.applied.clone();
        let _ = applied
            .wait_for(|a| a.as_ref().is_some_and(|a| Arc::ptr_eq(a, &target)))
            .await;
    }

    /// Stop listening (TCP listeners and UDP sockets close; UDP flows end); established TCP
    /// connections are left to finish. Returns when the engine task has stopped.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

struct Running {
    service: Arc<Service>,
    /// The accept tasks (one per listener of the group) or the UDP socket's task; empty while
    /// unbound.
    tasks: Vec<JoinHandle<()>>,
    flows: Option<Arc<udp::Flows>>,
}

impl Running {
    fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(f) = &self.flows {
            f.prune(&self.service, |_| false);
        }
        self.service.set_listening(false);
    }
}

struct Engine {
    shared: Arc<Shared>,
    config: Arc<ProxyConfig>,
    binder: Arc<dyn Binder>,
    running: BTreeMap<Key, Running>,
}

impl Engine {
    async fn run(
        mut self,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
        applied: watch::Sender<Option<Arc<Snapshot>>>,
        cancel: CancellationToken,
    ) {
        loop {
            let snap = snapshots.borrow_and_update().clone();
            self.apply(&snap);
            applied.send_replace(Some(snap));
            tokio::select! {
                () = cancel.cancelled() => break,
                changed = snapshots.changed() => if changed.is_err() { break },
            }
        }
        for r in self.running.values_mut() {
            r.stop();
        }
        self.shared.lock().clear();
        tracing::info!("userspace proxy stopped listening; open connections finish on their own");
    }

    fn apply(&mut self, snap: &Snapshot) {
        let mut wanted = HashSet::new();
        for vs in &snap.services {
            let key = (vs.protocol, vs.listen);
            if !wanted.insert(key) {
                tracing::warn!(service = %vs.listen, protocol = vs.protocol.as_str(), "duplicate virtual service ignored");
                continue;
            }
            match self.running.get_mut(&key) {
                Some(r) => {
                    r.service.update(vs);
                    if let Some(flows) = &r.flows {
                        let svc = r.service.clone();
                        flows.prune(&r.service, |ep| svc.accepts(ep));
                    }
                    if r.tasks.is_empty() {
                        // Binding failed before (address not local yet?): try again on each snapshot.
                        start(self.binder.as_ref(), &self.config, r, vs);
                    }
                }
                None => {
                    let service = Arc::new(Service::new(vs, self.config.clone()));
                    self.shared.lock().insert(key, service.clone());
                    let mut r = Running {
                        service,
                        tasks: Vec::new(),
                        flows: None,
                    };
                    start(self.binder.as_ref(), &self.config, &mut r, vs);
                    self.running.insert(key, r);
                }
            }
        }
        let gone: Vec<Key> = self
            .running
            .keys()
            .filter(|k| !wanted.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(mut r) = self.running.remove(&key) {
                r.stop();
            }
            self.shared.lock().remove(&key);
        }
    }
}

/// Bind the service's socket(s) and spawn their serving tasks; on failure the service stays
/// unbound. TCP gets one listener and accept task per runtime worker (see
/// [`Binder::bind_tcp_group`]); UDP one socket (flows are keyed by client on it).
fn start(binder: &dyn Binder, config: &Arc<ProxyConfig>, r: &mut Running, vs: &VirtualService) {
    let svc = r.service.clone();
    let config = config.clone();
    let tasks = match vs.protocol {
        Protocol::Tcp => binder
            .bind_tcp_group(vs.listen, config.listeners.map_or(1, |n| n.get()))
            .map(|group| {
                group
                    .into_iter()
                    .map(|l| tokio::spawn(tcp::serve(l, svc.clone(), config.clone())))
                    .collect()
            }),
        Protocol::Udp => binder.bind_udp(vs.listen).map(|s| {
            let flows = Arc::new(udp::Flows::new());
            r.flows = Some(flows.clone());
            vec![tokio::spawn(udp::serve(Arc::new(s), svc, flows, config))]
        }),
    };
    match tasks {
        Ok(t) => {
            r.tasks = t;
            r.service.set_listening(true);
        }
        Err(e) => {
            tracing::warn!(service = %vs.listen, protocol = vs.protocol.as_str(), error = %e, "cannot listen");
        }
    }
}

//! The agent's userspace proxy (`--proxy-mode userspace`, and rootless mode): the same Service and
//! EndpointSlice events the kernel proxier gets (one watch layer, see `proxy.rs`) go into a
//! [`ChangeTracker`]; each batch becomes a userspace [`Snapshot`] (`to_snapshot`) published on a
//! `watch` the engine follows — latest wins, nothing queues.
//!
//! **Service addresses.** A socket can only be bound to a local address, so ClusterIPs, external
//! IPs and load-balancer IPs must be local in the node namespace. kube-proxy's IPVS mode puts them
//! on a `dummy` device, `kube-ipvs0`; this kernel has no dummy module, so the agent makes
//! `kube-ipvs0` one end of a veth pair whose peer (`kube-ipvs0-p`) stays down: an up device with no
//! carrier, which never sends a frame, but whose addresses are local (the kernel adds their `local`
//! routes all the same). A device of its own rather than `/32`s on `lo`: every address on it is
//! the proxy's, so a restarted agent reconciles by reading the device back (adds what is missing,
//! removes what is stale) without ever touching `lo`'s 127.0.0.1 or the node's own addresses. The
//! addresses are changed before the snapshot is published (added first, so the engine can bind)
//! and stale ones removed after. Addresses in 127.0.0.0/8 are skipped: the whole /8 is local on
//! `lo` already, which is what rootless mode relies on (it creates no device and needs no root).
//!
//! **Weights.** The pod annotation `pontifex.io/weight` weighs a pod in every Service it backs
//! (`wrr`, `wlc`, … use it; 0 drains the pod). EndpointSlices carry no annotations, so a watch of
//! all pods ([`watch_weights`]) publishes the weights by pod IP on a second `watch`; a change
//! re-snapshots like a Service event does.
//!
//! **Stats.** The engine's counters are served as JSON ([`StatsSnapshot`]) on a unix socket,
//! `<data-dir>/ipvsadm.sock`: connect, read to EOF. `pontifex ipvsadm` prints them as
//! `ipvsadm -L -n` would. A file socket rather than a path on the metrics port: the metrics port
//! lives in the node's namespace, the socket in the file system every process on the host sees.
//!
//! **Rootless mode** ([`RootlessDial`]): endpoints that are pods are dialled where the rootless
//! runtime makes them listen (their IP's loopback image, privileged ports shifted); the
//! EndpointSlices keep the pods' real IPs and ports. Service ports below the unprivileged start are
//! listened on shifted the same way (`127.96.0.20:80` → `127.96.0.20:10080`).
//!
//! Not here: upstream connections are made from the agent's own namespace (the engine's `Binder`
//! covers listening sockets only; in the lab the host routes every pod CIDR, so they arrive), the
//! `ipvs`-specific metrics. The sync metrics of `/metrics` (`kubeproxy_sync_proxy_rules_*`,
//! network programming latency) are recorded per userspace sync as for kernel syncs.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Pod;
use pontifex_node::workload::rootless;
use pontifex_proxy::health::ProxyHealth;
use pontifex_proxy::metrics::{self, ProxyMetrics};
use pontifex_proxy::model::ChangeTracker;
use pontifex_proxy::sync::ProxyEvent;
use pontifex_proxy::userspace::{
    self as us, Binder, ConvertOptions, DefaultBinder, Snapshot, StatsSnapshot,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The device that holds the service addresses (kube-proxy's IPVS name).
pub(crate) const SERVICE_DEVICE: &str = "kube-ipvs0";
/// Its veth peer, kept down.
const SERVICE_DEVICE_PEER: &str = "kube-ipvs0-p";
/// The stats socket's file name in the agent's data dir.
pub const STATS_SOCKET: &str = "ipvsadm.sock";

/// Rootless mode's endpoint rewriting: pods listen on their IP's loopback image, privileged ports
/// shifted (`pontifex_node::workload::rootless`), so that is where the proxy dials.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RootlessDial {
    /// The pod CIDR: endpoints inside it are rootless pods (others — the API server's own
    /// endpoint, hand-written ones — are dialled as they are). `None`: every non-loopback IPv4.
    pub(crate) pods: Option<ipnet::IpNet>,
    /// The runtime's port shift.
    pub(crate) shift: rootless::PortShift,
}

impl RootlessDial {
    /// Where endpoint `ep` really listens.
    pub(crate) fn dial(&self, ep: SocketAddr) -> SocketAddr {
        let IpAddr::V4(v4) = ep.ip() else {
            return ep;
        };
        let is_pod = match self.pods {
            Some(net) => net.contains(&ep.ip()),
            None => !v4.is_loopback(),
        };
        if !is_pod {
            return ep;
        }
        SocketAddr::new(
            IpAddr::V4(rootless::loopback_of(v4)),
            self.shift.port(ep.port()),
        )
    }
}

/// The Services and EndpointSlices seen so far, and how they convert.
#[derive(Debug)]
pub(crate) struct Model {
    tracker: ChangeTracker,
    opts: ConvertOptions,
    rootless: Option<RootlessDial>,
}

impl Model {
    /// A model for node `node_name`, serving NodePorts on `node_ips`.
    pub(crate) fn new(node_name: &str, node_ips: Vec<IpAddr>) -> Self {
        Model {
            tracker: ChangeTracker::new(node_name),
            opts: ConvertOptions {
                node_ips,
                ..ConvertOptions::default()
            },
            rootless: None,
        }
    }

    /// Weigh endpoints by these pod weights (unlisted endpoints weigh 1).
    pub(crate) fn set_weights(&mut self, weights: &HashMap<IpAddr, u32>) {
        self.opts.weights = weights.clone();
    }

    /// Dial endpoints as rootless pods serve them.
    pub(crate) fn with_rootless(mut self, dial: Option<RootlessDial>) -> Self {
        self.rootless = dial;
        self
    }

    fn service(&mut self, s: &k8s_openapi::api::core::v1::Service) {
        if let Err(e) = self.tracker.update_service(s) {
            tracing::warn!(error = %e, "Service (partly) skipped");
        }
        let key = pontifex_proxy::model::ServiceKey::new(
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        );
        match us::scheduler_of(s) {
            Ok(Some(kind)) => {
                self.opts.schedulers.insert(key, kind);
            }
            Ok(None) => {
                self.opts.schedulers.remove(&key);
            }
            Err(e) => {
                tracing::warn!(service = %key, error = %e, "unknown scheduler; using the default");
                self.opts.schedulers.remove(&key);
            }
        }
    }

    /// Takes one informer event.
    pub(crate) fn handle(&mut self, ev: ProxyEvent) {
        match ev {
            ProxyEvent::ServicesUpdated(v) => v.iter().for_each(|s| self.service(s)),
            ProxyEvent::ServicesDeleted(v) => {
                for k in v {
                    self.tracker.delete_service(&k.namespace, &k.name);
                    self.opts.schedulers.remove(&k);
                }
            }
            ProxyEvent::SlicesUpdated(v) => {
                for s in &v {
                    if let Err(e) = self.tracker.update_endpoint_slice(s) {
                        tracing::warn!(error = %e, "EndpointSlice skipped");
                    }
                }
            }
            ProxyEvent::SlicesDeleted(v) => {
                for (ns, name) in v {
                    self.tracker.delete_endpoint_slice(&ns, &name);
                }
            }
            ProxyEvent::Replace { services, slices } => {
                self.tracker.clear_objects();
                self.opts.schedulers.clear();
                services.iter().for_each(|s| self.service(s));
                self.handle(ProxyEvent::SlicesUpdated(slices));
            }
        }
    }

    /// What the engine serves now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut snap = us::to_snapshot(&self.tracker.current(), &self.opts);
        if let Some(r) = &self.rootless {
            for vs in &mut snap.services {
                // A normal user cannot listen on a privileged service port either: ClusterIP:80
                // is served on ClusterIP:10080, as the pods' own ports are.
                vs.listen.set_port(r.shift.port(vs.listen.port()));
                for (ep, _) in &mut vs.endpoints {
                    *ep = r.dial(*ep);
                }
            }
        }
        snap
    }

    /// The addresses `snapshot` needs on the service device: its service addresses except
    /// loopback ones (local on `lo` already).
    pub(crate) fn device_addresses(&self, snapshot: &Snapshot) -> BTreeSet<IpAddr> {
        us::local_service_ips(snapshot, &self.opts)
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect()
    }
}

/// `ip -batch` lines that take the device from `have` to `want`: (additions, removals), either
/// empty when nothing is to do.
pub(crate) fn address_batches(
    have: &BTreeSet<IpAddr>,
    want: &BTreeSet<IpAddr>,
) -> (String, String) {
    let line = |verb: &str, ip: &IpAddr| {
        let len = if ip.is_ipv4() { 32 } else { 128 };
        format!("address {verb} {ip}/{len} dev {SERVICE_DEVICE}\n")
    };
    let add = want.difference(have).map(|ip| line("add", ip)).collect();
    let del = have.difference(want).map(|ip| line("del", ip)).collect();
    (add, del)
}

/// A zero-counter [`StatsSnapshot`] of `snapshot` (what `pontifex rules --mode userspace` prints).
pub(crate) fn idle_stats(snapshot: &Snapshot) -> StatsSnapshot {
    StatsSnapshot {
        services: snapshot
            .services
            .iter()
            .map(|vs| us::ServiceStats {
                protocol: vs.protocol,
                addr: vs.listen,
                scheduler: vs.scheduler.clone(),
                persistence: vs.affinity_timeout,
                listening: false,
                conns: 0,
                in_pkts: 0,
                out_pkts: 0,
                in_bytes: 0,
                out_bytes: 0,
                endpoints: vs
                    .endpoints
                    .iter()
                    .map(|(addr, weight)| us::EndpointStats {
                        addr: *addr,
                        weight: *weight,
                        active_conns: 0,
                        inactive_conns: 0,
                        conns: 0,
                        in_pkts: 0,
                        out_pkts: 0,
                        in_bytes: 0,
                        out_bytes: 0,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Opens the engine's sockets in the node namespace (a socket stays in the namespace it was
/// made in), registering them with the agent's runtime.
struct NodeBinder {
    netns: Option<String>,
    rt: tokio::runtime::Handle,
}

impl NodeBinder {
    fn run<T: Send>(&self, f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
        match &self.netns {
            None => f(),
            Some(ns) => {
                let rt = self.rt.clone();
                pontifex_node::net::netns::run_in(ns, move || {
                    let _entered = rt.enter();
                    f()
                })
                .map_err(std::io::Error::other)?
            }
        }
    }
}

impl Binder for NodeBinder {
    fn bind_tcp(&self, addr: SocketAddr) -> std::io::Result<TcpListener> {
        self.run(|| DefaultBinder.bind_tcp(addr))
    }
    fn bind_tcp_group(&self, addr: SocketAddr, count: usize) -> std::io::Result<Vec<TcpListener>> {
        self.run(|| DefaultBinder.bind_tcp_group(addr, count))
    }
    fn bind_udp(&self, addr: SocketAddr) -> std::io::Result<UdpSocket> {
        self.run(|| DefaultBinder.bind_udp(addr))
    }
}

/// `ip [-n ns] args...` with `stdin`; failures are logged.
async fn ip(netns: Option<&str>, args: &[&str], stdin: Option<&str>) -> Option<String> {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot run ip");
            return None;
        }
    };
    if let Some(mut w) = child.stdin.take() {
        let _ = w.write_all(stdin.unwrap_or("").as_bytes()).await;
    }
    let out = child.wait_with_output().await.ok()?;
    if !out.status.success() {
        tracing::warn!(?args, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "ip failed");
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Keeps the service device's addresses in step with the snapshots. Created lazily: a node (or a
/// rootless agent) whose services are all on loopback never needs it.
struct ServiceDevice {
    netns: Option<String>,
    /// What the device holds (read back when it is first needed).
    have: Option<BTreeSet<IpAddr>>,
}

impl ServiceDevice {
    async fn ensure(&mut self) -> &mut BTreeSet<IpAddr> {
        let ns = self.netns.as_deref();
        if self.have.is_none() {
            let shown = pontifex_node::net::addresses(ns, Some(SERVICE_DEVICE))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "cannot read {SERVICE_DEVICE}'s addresses");
                    None
                });
            let have = match shown {
                Some(found) => found.into_iter().collect(),
                None => {
                    ip(
                        ns,
                        &[
                            "link",
                            "add",
                            SERVICE_DEVICE,
                            "type",
                            "veth",
                            "peer",
                            "name",
                            SERVICE_DEVICE_PEER,
                        ],
                        None,
                    )
                    .await;
                    BTreeSet::new()
                }
            };
            // Up, so its addresses are local; the peer stays down, so nothing is ever sent.
            ip(ns, &["link", "set", SERVICE_DEVICE, "up"], None).await;
            self.have = Some(have);
        }
        self.have.get_or_insert_with(BTreeSet::new)
    }

    /// Adds what `want` lacks (before the engine binds).
    async fn add(&mut self, want: &BTreeSet<IpAddr>) {
        if want.is_empty() && self.have.is_none() {
            return;
        }
        let ns = self.netns.clone();
        let have = self.ensure().await;
        let (add, _) = address_batches(have, want);
        if !add.is_empty()
            && ip(ns.as_deref(), &["-batch", "-"], Some(&add))
                .await
                .is_some()
        {
            have.extend(want.iter().copied());
        }
    }

    /// Removes what `want` no longer has (after the engine let go of it).
    async fn remove_stale(&mut self, want: &BTreeSet<IpAddr>) {
        let ns = self.netns.clone();
        let Some(have) = self.have.as_mut() else {
            return;
        };
        let (_, del) = address_batches(have, want);
        if !del.is_empty() {
            // `-force`: one address someone else removed must not stop the rest.
            ip(ns.as_deref(), &["-force", "-batch", "-"], Some(&del)).await;
            have.retain(|ip| want.contains(ip));
        }
    }
}

/// Serves `stats` as JSON on a unix socket at `path` until `shutdown`; the file is removed at the end.
async fn serve_stats(
    path: PathBuf,
    handle: Arc<us::ProxyHandle>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt as _;
    // A socket file a previous agent left behind (kill -9) blocks bind: replace it.
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    loop {
        let (mut conn, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            c = listener.accept() => match c {
                Ok(c) => c,
                Err(e) => { tracing::debug!(error = %e, "stats accept failed"); continue; }
            },
        };
        let body = serde_json::to_vec(&handle.stats()).unwrap_or_default();
        tokio::spawn(async move {
            let _ = conn.write_all(&body).await;
            let _ = conn.shutdown().await;
        });
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Reads a running agent's counters from its stats socket.
pub async fn read_stats(path: &std::path::Path) -> std::io::Result<StatsSnapshot> {
    use tokio::io::AsyncReadExt as _;
    let mut conn = tokio::net::UnixStream::connect(path).await?;
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf).await?;
    serde_json::from_slice(&buf).map_err(std::io::Error::other)
}

/// What the userspace proxy needs from the agent.
pub(crate) struct Setup {
    pub(crate) node_name: String,
    pub(crate) node_ips: Vec<IpAddr>,
    pub(crate) netns: Option<String>,
    pub(crate) data_dir: PathBuf,
    /// Rootless mode: no service device (loopback service addresses only), rootless pods dialled.
    pub(crate) rootless: Option<RootlessDial>,
    /// Pod weights (`pontifex.io/weight`) by pod IP, from [`watch_weights`].
    pub(crate) weights: watch::Receiver<Weights>,
}

/// Pod weights by pod IP.
pub(crate) type Weights = Arc<HashMap<IpAddr, u32>>;

/// Weights of every annotated pod of `pods`.
pub(crate) fn weights_of<'a>(pods: impl Iterator<Item = &'a Pod>) -> HashMap<IpAddr, u32> {
    pods.flat_map(us::pod_weights).collect()
}

/// Follows every pod and publishes the weights of annotated ones whenever they change (a pod gains,
/// changes or loses the annotation or its IP, or goes). Why a watch of all pods: a Service's
/// endpoints may be on any node, and EndpointSlices carry no annotations.
pub(crate) async fn watch_weights(
    client: kube::Client,
    tx: watch::Sender<Weights>,
    shutdown: CancellationToken,
) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let mut pods = std::pin::pin!(
        watcher(kube::Api::<Pod>::all(client), watcher::Config::default()).default_backoff()
    );
    let mut cache = crate::proxy::Cache::<Pod>::new();
    loop {
        let ev = tokio::select! {
            () = shutdown.cancelled() => return,
            e = pods.next() => match e {
                None => return,
                Some(Err(e)) => { tracing::debug!(error = %e, "pod watch failed; retrying"); continue; }
                Some(Ok(e)) => e,
            },
        };
        if cache.apply(ev) == crate::proxy::Change::None {
            continue;
        }
        let weights = weights_of(cache.objects());
        tx.send_if_modified(|w| {
            let changed = **w != weights;
            if changed {
                *w = Arc::new(weights);
            }
            changed
        });
    }
}

/// What an event changed, for the sync metrics: (Services, EndpointSlices, slice trigger times).
pub(crate) fn event_changes(ev: &ProxyEvent) -> (u64, u64, Vec<SystemTime>) {
    let triggers = |slices: &[k8s_openapi::api::discovery::v1::EndpointSlice]| -> Vec<SystemTime> {
        slices.iter().filter_map(metrics::trigger_time).collect()
    };
    match ev {
        ProxyEvent::ServicesUpdated(v) => (v.len() as u64, 0, Vec::new()),
        ProxyEvent::ServicesDeleted(v) => (v.len() as u64, 0, Vec::new()),
        ProxyEvent::SlicesUpdated(v) => (0, v.len() as u64, triggers(v)),
        ProxyEvent::SlicesDeleted(v) => (0, v.len() as u64, Vec::new()),
        ProxyEvent::Replace { services, slices } => {
            (services.len() as u64, slices.len() as u64, triggers(slices))
        }
    }
}

/// Takes `ev` into `model`, recording it as queued in `metrics` and its trigger times in
/// `triggers` (network programming latency is measured when the sync that carries it ends).
fn take_event(
    model: &mut Model,
    ev: ProxyEvent,
    metrics: &ProxyMetrics,
    triggers: &mut Vec<SystemTime>,
) {
    let (services, slices, t) = event_changes(&ev);
    metrics.record_queued(services, slices, SystemTime::now());
    triggers.extend(t);
    model.handle(ev);
}

/// Runs the userspace proxy: events from `rx` until `shutdown`. Each sync (snapshot built,
/// device addresses added, engine applied, stale addresses removed) is recorded in `metrics` as
/// kube-proxy records a rule sync.
pub(crate) async fn run(
    setup: Setup,
    mut rx: mpsc::UnboundedReceiver<ProxyEvent>,
    health: Arc<ProxyHealth>,
    metrics: Arc<ProxyMetrics>,
    shutdown: CancellationToken,
) {
    let mut triggers = Vec::new();
    let mut model = Model::new(&setup.node_name, setup.node_ips).with_rootless(setup.rootless);
    let (tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let binder = Arc::new(NodeBinder {
        netns: setup.netns.clone(),
        rt: tokio::runtime::Handle::current(),
    });
    let handle = Arc::new(us::spawn_with_binder(
        snapshots,
        us::ProxyConfig::default(),
        binder,
    ));
    let _ = std::fs::create_dir_all(&setup.data_dir);
    let stats = tokio::spawn(serve_stats(
        setup.data_dir.join(STATS_SOCKET),
        handle.clone(),
        shutdown.clone(),
    ));
    let mut device = ServiceDevice {
        netns: setup.netns,
        have: None,
    };
    let mut weights = setup.weights;
    let mut weights_open = true;
    let mut listed = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => {
                    health.queued_update(SystemTime::now());
                    take_event(&mut model, ev, &metrics, &mut triggers);
                    listed = true;
                }
                None => break,
            },
            changed = weights.changed(), if weights_open => {
                // A weight watch that ended (shutdown) leaves the last weights in place.
                weights_open = changed.is_ok();
                let w = weights.borrow_and_update().clone();
                model.set_weights(&w);
            },
        }
        // Nothing is served before the informers' first complete list (as in kernel mode).
        if !listed {
            continue;
        }
        // Level-triggered: everything queued meanwhile goes into the same snapshot.
        while let Ok(ev) = rx.try_recv() {
            take_event(&mut model, ev, &metrics, &mut triggers);
        }
        let started = std::time::Instant::now();
        let snap = Arc::new(model.snapshot());
        // Rootless: no device can be made; only loopback service addresses can be served.
        let want = if setup.rootless.is_some() {
            BTreeSet::new()
        } else {
            model.device_addresses(&snap)
        };
        device.add(&want).await;
        tx.send_replace(snap);
        handle.synced().await;
        device.remove_stale(&want).await;
        let done = SystemTime::now();
        metrics.record_sync(started.elapsed(), done, triggers.drain(..));
        health.updated(done);
        tracing::debug!(
            services = tx.borrow().services.len(),
            "userspace proxy synced"
        );
    }
    if let Ok(Err(e)) = stats.await {
        tracing::warn!(error = %e, "stats socket failed");
    }
    if let Ok(h) = Arc::try_unwrap(handle) {
        h.shutdown().await;
    }
}

/// `pontifex rules --mode userspace`: the virtual services, as `ipvsadm -L -n` lists them.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = us::render_ipvsadm(&idle_stats(snapshot), true, false);
    if snapshot.services.is_empty() {
        let _ = writeln!(out, "# no virtual services");
    }
    out
}

#[cfg(test)]
mod tests;

//! The agent's service proxy (kube-proxy's job on this node): watches Services and EndpointSlices,
//! feeds them to `pontifex-proxy`'s proxier, which programs the kernel (nftables or iptables) in the
//! node's namespace, and serves kube-proxy's HTTP ports there: metrics on `--metrics-bind-address`
//! (127.0.0.1:10249), `/healthz` and `/livez` on `--healthz-bind-address` (0.0.0.0:10256), and the
//! `healthCheckNodePort` servers of `externalTrafficPolicy: Local` Services.
//!
//! Sockets are bound by a thread that entered the node namespace (a socket stays in the namespace
//! it was made in), then handed to tokio; so in the lab a probe of `172.31.0.10:10256` reaches this
//! node's proxy, as it would reach kube-proxy on a real node.
//!
//! Before its first sync a kernel proxier reads `nf_conntrack_tcp_be_liberal` in the node's
//! namespace and makes kube-proxy's nfacct objects (`pontifex_proxy::counters`): the INVALID drop
//! and its counter (both modes) and the localhost NodePort counter (iptables) are then exposed as
//! kube-proxy's `kubeproxy_iptables_*` metrics.
//!
//! Nothing is synced before both informers have listed: the proxier's first sync replaces the
//! table a previous agent left in one transaction, so a restart never blackholes traffic.
//!
//! Dual-stack (a node with an IPv6 address, [`Config::node_ip6`]): a kernel proxier per family, as
//! kube-proxy's meta-proxier runs them — `ip pontifex` and `ip6 pontifex` (or iptables and
//! ip6tables) —, both fed the same informer events; each renders its family's ClusterIPs, external
//! and LoadBalancer IPs and endpoints, serves NodePorts on its family's node addresses and detects
//! pod traffic by its family's cluster CIDR. They share the metrics and the health (`/healthz` is
//! 503 as soon as either family is late). The `healthCheckNodePort` servers (bound on `0.0.0.0`,
//! which the IPv4 proxier owns) answer with the IPv4 proxier's local endpoint count.
//!
//! What it does not do: IPv6 in userspace mode (its listeners are IPv4 only), IPv6-primary
//! nodes, ServiceCIDR objects (unallocated ClusterIPs are not dropped), node eligibility for
//! `/healthz` (a Node being deleted still answers 200), conntrack tuning sysctls.
//!
//! `--proxy-mode userspace` takes the same informer events into the userspace L4 proxy instead of
//! a kernel proxier (`userspace.rs`): listeners on the service addresses, counters for
//! `pontifex ipvsadm`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Resource, ResourceExt as _};
use pontifex_proxy::apply::KernelApplier;
use pontifex_proxy::health::{HealthCheckServers, ProxyHealth};
use pontifex_proxy::iptables::{IptablesConfig, LocalDetector};
use pontifex_proxy::metrics::ProxyMetrics;
use pontifex_proxy::model::{IpFamily, ServiceKey};
use pontifex_proxy::nftables::{NftConfig, NftLayout};
use pontifex_proxy::sync::{Proxier, ProxierConfig, ProxyEvent, ProxyMode as KernelMode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Config;

/// `--proxy-mode`: a kernel dataplane, or the userspace proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// nftables (`ip pontifex` table), the default.
    Nftables,
    /// iptables in kube-proxy's layout.
    Iptables,
    /// The userspace L4 proxy (`pontifex-proxy::userspace`): sockets on the service addresses,
    /// IPVS's schedulers; what rootless mode runs.
    Userspace,
}

impl ProxyMode {
    /// The flag's value (kube-proxy's `/proxyMode` answer).
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
            ProxyMode::Userspace => "userspace",
        }
    }

    /// The kernel dataplane, if it is one.
    fn kernel(self) -> Option<KernelMode> {
        match self {
            ProxyMode::Nftables => Some(KernelMode::Nftables),
            ProxyMode::Iptables => Some(KernelMode::Iptables),
            ProxyMode::Userspace => None,
        }
    }
}

impl std::str::FromStr for ProxyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nftables" => Ok(ProxyMode::Nftables),
            "iptables" => Ok(ProxyMode::Iptables),
            "userspace" => Ok(ProxyMode::Userspace),
            _ => Err(format!(
                "unknown proxy mode {s:?} (nftables, iptables or userspace)"
            )),
        }
    }
}

/// `--nodeport-addresses`: where NodePorts are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Unset: the mode's default (iptables: every local address; nftables: `primary`).
    Default,
    /// `primary`: the node's primary IP (its InternalIP).
    Primary,
    /// The node's local addresses inside these CIDRs.
    Cidrs(Vec<IpNet>),
}

impl NodePortAddresses {
    /// Parses the flag's values (kube-proxy: a list of CIDRs, or the single word `primary`).
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let values: Vec<&str> = values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        match values.as_slice() {
            [] => Ok(NodePortAddresses::Default),
            ["primary"] => Ok(NodePortAddresses::Primary),
            _ => values
                .iter()
                .map(|v| {
                    v.parse::<IpNet>()
                        .map_err(|_| format!("--nodeport-addresses: {v:?} must be a valid CIDR"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(NodePortAddresses::Cidrs),
        }
    }
}

/// The proxy's settings (kube-proxy's flags).
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// `--proxy-mode`.
    pub mode: ProxyMode,
    /// `--nftables-layout` (ours, no upstream flag): Maps (default) or kube-proxy's Chains.
    pub nftables_layout: NftLayout,
    /// `--cluster-cidr`: sources inside one are pods (local-traffic detection); at most one per
    /// family, each proxier takes its family's; none for a family: no detector there.
    pub cluster_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`.
    pub nodeport_addresses: NodePortAddresses,
    /// `--masquerade-all`: SNAT everything sent to a Service.
    pub masquerade_all: bool,
    /// `--min-sync-period`.
    pub min_sync_period: Duration,
    /// `--sync-period`.
    pub sync_period: Duration,
    /// `--metrics-bind-address` (in the node's namespace).
    pub metrics_bind_address: SocketAddr,
    /// `--healthz-bind-address` (in the node's namespace).
    pub healthz_bind_address: SocketAddr,
}

impl Default for ProxyConfig {
    /// kube-proxy's defaults, with nftables as the mode.
    fn default() -> Self {
        ProxyConfig {
            mode: ProxyMode::Nftables,
            nftables_layout: NftLayout::Maps,
            cluster_cidrs: Vec::new(),
            nodeport_addresses: NodePortAddresses::Default,
            masquerade_all: false,
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
            metrics_bind_address: SocketAddr::from(([127, 0, 0, 1], 10249)),
            healthz_bind_address: SocketAddr::from(([0, 0, 0, 0], 10256)),
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The node's namespace could not be entered.
    #[error("entering the node namespace: {0}")]
    Netns(#[from] pontifex_node::net::netns::NetnsError),
    /// A listening port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel applier refused its settings.
    #[error("kernel applier: {0}")]
    Apply(#[from] pontifex_proxy::apply::ApplyError),
}

/// The addresses the proxier of `family` serves NodePorts on: `None` = every local address of
/// the family (the renderers' meaning). `node_ip` is the node's address of that family; `local`
/// lists the node's addresses (only used for CIDRs). CIDRs of the other family are ignored, and a
/// family none is given for serves NodePorts everywhere (kube-proxy's `NewNodePortAddresses`).
pub(crate) fn node_port_addresses(
    mode: ProxyMode,
    spec: &NodePortAddresses,
    family: IpFamily,
    node_ip: Option<IpAddr>,
    local: &[IpAddr],
) -> Option<Vec<IpAddr>> {
    match (spec, mode) {
        (NodePortAddresses::Default, ProxyMode::Iptables) => None,
        // The userspace proxy listens per address; like nftables, it defaults to the primary one.
        (NodePortAddresses::Default, ProxyMode::Nftables | ProxyMode::Userspace)
        | (NodePortAddresses::Primary, _) => {
            // Without a node (`pontifex rules` with no --node): every address.
            node_ip.map(|ip| vec![ip])
        }
        (NodePortAddresses::Cidrs(nets), _) => {
            let nets: Vec<&IpNet> = nets
                .iter()
                .filter(|n| IpFamily::of(&n.addr()) == family)
                .collect();
            // kube-proxy: a CIDR containing 0.0.0.0/0 (or none of this family) means every address.
            if nets.is_empty() || nets.iter().any(|n| n.prefix_len() == 0) {
                return None;
            }
            let mut out: Vec<IpAddr> = local
                .iter()
                .filter(|a| nets.iter().any(|n| n.contains(*a)))
                .copied()
                .collect();
            out.sort();
            out.dedup();
            Some(out)
        }
    }
}

/// The settings of this node's proxier for `family` (`node_ip`: the node's address of it).
pub(crate) fn proxier_config(
    cfg: &ProxyConfig,
    family: IpFamily,
    node_name: &str,
    node_ip: Option<IpAddr>,
    local: &[IpAddr],
) -> ProxierConfig {
    let detector = match cfg
        .cluster_cidrs
        .iter()
        .find(|n| IpFamily::of(&n.addr()) == family)
    {
        Some(net) => LocalDetector::Cidr(*net),
        None => LocalDetector::None,
    };
    let addresses = node_port_addresses(cfg.mode, &cfg.nodeport_addresses, family, node_ip, local);
    // Userspace mode has no kernel proxier; the nftables settings stand in (unused).
    let mut p = ProxierConfig::new(cfg.mode.kernel().unwrap_or(KernelMode::Nftables), node_name);
    p.nftables = NftConfig {
        layout: cfg.nftables_layout,
        family,
        node_ip,
        local_detector: detector.clone(),
        masquerade_all: cfg.masquerade_all,
        node_port_addresses: addresses.clone(),
        ..NftConfig::default()
    };
    p.iptables = IptablesConfig {
        family,
        node_ip,
        local_detector: detector,
        masquerade_all: cfg.masquerade_all,
        node_port_addresses: addresses,
        ..IptablesConfig::default()
    };
    p.min_sync_period = cfg.min_sync_period;
    p.sync_period = cfg.sync_period;
    p
}

/// Whether `route_localnet` must be on: kube-proxy's iptables mode serves NodePorts on 127.0.0.1
/// when NodePorts are on every address (`localhostNodePorts`), which needs it; nftables never does.
pub(crate) fn wants_route_localnet(cfg: &ProxierConfig) -> bool {
    cfg.mode == KernelMode::Iptables
        && cfg.iptables.localhost_node_ports
        && cfg.iptables.node_port_addresses.is_none()
}

/// The families `pontifex rules` prints: IPv4, and IPv6 for a dual-stack node (an IPv6 InternalIP)
/// or, without a node, a dual-stack cluster (an IPv6 cluster CIDR or a Service with an IPv6
/// ClusterIP).
pub(crate) fn rules_families(
    cfg: &ProxyConfig,
    node_ips: &[IpAddr],
    services: &[Service],
) -> Vec<IpFamily> {
    let v6 = if node_ips.is_empty() {
        cfg.cluster_cidrs.iter().any(|n| n.addr().is_ipv6())
            || services.iter().any(|s| {
                s.spec
                    .as_ref()
                    .and_then(|sp| sp.cluster_ips.as_ref())
                    .into_iter()
                    .flatten()
                    .any(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
            })
    } else {
        node_ips.iter().any(IpAddr::is_ipv6)
    };
    let mut out = vec![IpFamily::V4];
    if v6 {
        out.push(IpFamily::V6);
    }
    out
}

/// What `pontifex rules` prints: the rules a full sync on node `node_name` (InternalIPs
/// `node_ips`, primary first) programs for these objects, in the kernel tool's syntax, for each
/// family the node (or cluster) has ([`rules_families`]): nftables prints both tables (one valid
/// `nft -f` input), iptables the `iptables-restore` input then, after a `# IPv6` comment line, the
/// `ip6tables-restore` one. An empty `node_name` is no node: no endpoint is local, NodePorts are on
/// every address. The userspace proxy's view is IPv4 only.
pub fn render_rules(
    cfg: &ProxyConfig,
    node_name: &str,
    node_ips: &[IpAddr],
    services: &[Service],
    slices: &[EndpointSlice],
) -> String {
    if cfg.mode == ProxyMode::Userspace {
        let mut model = crate::userspace::Model::new(
            node_name,
            node_ips.iter().filter(|ip| ip.is_ipv4()).copied().collect(),
        );
        model.handle(ProxyEvent::Replace {
            services: services.to_vec(),
            slices: slices.to_vec(),
        });
        return crate::userspace::render(&model.snapshot());
    }
    let mut tracker = pontifex_proxy::model::ChangeTracker::new(node_name);
    for s in services {
        if let Err(e) = tracker.update_service(s) {
            tracing::warn!(error = %e, "Service (partly) skipped");
        }
    }
    for s in slices {
        if let Err(e) = tracker.update_endpoint_slice(s) {
            tracing::warn!(error = %e, "EndpointSlice skipped");
        }
    }
    let snapshot = tracker.current();
    let mut out = String::new();
    for family in rules_families(cfg, node_ips, services) {
        let node_ip = node_ips
            .iter()
            .find(|ip| IpFamily::of(ip) == family)
            .copied();
        let pcfg = proxier_config(cfg, family, node_name, node_ip, &[]);
        let rules = pontifex_proxy::sync::render_rules(
            pcfg.mode,
            &pcfg.nftables,
            &pcfg.iptables,
            &snapshot,
        );
        // Comments, so the output stays valid `nft -f` / `iptables-restore` input.
        if pcfg.mode == KernelMode::Nftables && family == IpFamily::V4 {
            out.push_str(&format!(
                "# nftables layout: {}\n",
                pcfg.nftables.layout.as_str()
            ));
        }
        if family == IpFamily::V6 {
            out.push_str(if pcfg.mode == KernelMode::Nftables {
                "# IPv6\n"
            } else {
                "# IPv6 (ip6tables-restore)\n"
            });
        }
        out.push_str(&rules);
    }
    out
}

type Key = (String, String);

fn key_of<K: Resource>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

/// One informer's objects, kept from watcher events, with relists buffered until complete.
#[derive(Debug)]
pub(crate) struct Cache<K> {
    objects: BTreeMap<Key, K>,
    relist: Option<BTreeMap<Key, K>>,
    listed: bool,
}

/// What one watcher event changed in a [`Cache`].
#[derive(Debug, PartialEq)]
pub(crate) enum Change<K> {
    /// Nothing visible yet (a relist in progress).
    None,
    /// A complete list replaced the objects.
    Listed,
    /// An object was added or changed.
    Upsert(K),
    /// An object was deleted.
    Delete(Key),
}

impl<K: Resource + Clone> Cache<K> {
    pub(crate) fn new() -> Self {
        Cache {
            objects: BTreeMap::new(),
            relist: None,
            listed: false,
        }
    }

    pub(crate) fn apply(&mut self, ev: watcher::Event<K>) -> Change<K> {
        match ev {
            watcher::Event::Init => {
                self.relist = Some(BTreeMap::new());
                Change::None
            }
            watcher::Event::InitApply(o) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key_of(&o), o);
                Change::None
            }
            watcher::Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.listed = true;
                Change::Listed
            }
            watcher::Event::Apply(o) => {
                self.objects.insert(key_of(&o), o.clone());
                Change::Upsert(o)
            }
            watcher::Event::Delete(o) => {
                let k = key_of(&o);
                self.objects.remove(&k);
                Change::Delete(k)
            }
        }
    }

    fn all(&self) -> Vec<K> {
        self.objects.values().cloned().collect()
    }

    /// The objects held now.
    pub(crate) fn objects(&self) -> impl Iterator<Item = &K> {
        self.objects.values()
    }
}

/// Services and EndpointSlices merged into proxier events: nothing until both have listed, then
/// one `Replace`, then updates; a relist of either sends a fresh `Replace`.
#[derive(Debug)]
pub(crate) struct Informers {
    pub(crate) services: Cache<Service>,
    pub(crate) slices: Cache<EndpointSlice>,
}

impl Informers {
    pub(crate) fn new() -> Self {
        Informers {
            services: Cache::new(),
            slices: Cache::new(),
        }
    }

    fn ready(&self) -> bool {
        self.services.listed && self.slices.listed
    }

    fn replace(&self) -> ProxyEvent {
        ProxyEvent::Replace {
            services: self.services.all(),
            slices: self.slices.all(),
        }
    }

    pub(crate) fn service(&mut self, ev: watcher::Event<Service>) -> Option<ProxyEvent> {
        let change = self.services.apply(ev);
        if !self.ready() {
            return None;
        }
        match change {
            Change::None => None,
            Change::Listed => Some(self.replace()),
            Change::Upsert(s) => Some(ProxyEvent::ServicesUpdated(vec![s])),
            Change::Delete((ns, name)) => {
                Some(ProxyEvent::ServicesDeleted(vec![ServiceKey::new(ns, name)]))
            }
        }
    }

    pub(crate) fn slice(&mut self, ev: watcher::Event<EndpointSlice>) -> Option<ProxyEvent> {
        let change = self.slices.apply(ev);
        if !self.ready() {
            return None;
        }
        match change {
            Change::None => None,
            Change::Listed => Some(self.replace()),
            Change::Upsert(s) => Some(ProxyEvent::SlicesUpdated(vec![s])),
            Change::Delete(k) => Some(ProxyEvent::SlicesDeleted(vec![k])),
        }
    }
}

/// Runs `f` in the node namespace (or here, with `None`).
fn in_node<T: Send>(
    netns: Option<&str>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, pontifex_node::net::netns::NetnsError> {
    match netns {
        Some(ns) => pontifex_node::net::netns::run_in(ns, f),
        None => Ok(f()),
    }
}

/// Binds a TCP listener in the node namespace and hands it to tokio.
fn bind_tcp(netns: Option<&str>, addr: SocketAddr) -> Result<tokio::net::TcpListener, ProxyError> {
    let l = in_node(netns, || std::net::TcpListener::bind(addr))?
        .and_then(|l| {
            l.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(l)
        })
        .map_err(|source| ProxyError::Bind { addr, source })?;
    Ok(l)
}

/// Writes sysctl `path` (under /proc/sys) in the node namespace; failures are logged (a missing
/// br_netfilter is the node administrator's business, as for kube-proxy).
fn sysctl(netns: Option<&str>, path: &str, value: &str) {
    let full = format!("/proc/sys/{path}");
    match in_node(netns, || std::fs::write(&full, value)) {
        Ok(Ok(())) => tracing::debug!(sysctl = path, value, "set"),
        Ok(Err(e)) => tracing::warn!(sysctl = path, error = %e, "cannot set sysctl"),
        Err(e) => tracing::warn!(sysctl = path, error = %e, "cannot enter the node namespace"),
    }
}

/// The node's addresses (netlink, in its namespace); empty when they cannot be read.
async fn local_addresses(netns: Option<&str>) -> Vec<IpAddr> {
    match pontifex_node::net::addresses(netns, None).await {
        Ok(found) => found.unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the node's addresses");
            Vec::new()
        }
    }
}

/// Starts the proxy: sysctls, listeners, the proxier loop and the informers. Returns once the
/// sockets are bound; the loop runs until `shutdown`.
pub(crate) async fn start(
    client: kube::Client,
    config: Arc<Config>,
    proxy: ProxyConfig,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ProxyError> {
    let ns = config.netns.as_deref();
    let local = match proxy.nodeport_addresses {
        NodePortAddresses::Cidrs(_) => local_addresses(ns).await,
        _ => Vec::new(),
    };
    let mode = if config.rootless {
        if proxy.mode != ProxyMode::Userspace {
            tracing::warn!(
                mode = proxy.mode.as_str(),
                "rootless mode serves Services with the userspace proxy only; using it"
            );
        }
        ProxyMode::Userspace
    } else {
        proxy.mode
    };
    // A proxier per family of the node's addresses, the primary (IPv4) first.
    let mut families = vec![(IpFamily::V4, IpAddr::V4(config.node_ip))];
    if let Some(ip6) = config.node_ip6 {
        if mode.kernel().is_some() {
            families.push((IpFamily::V6, IpAddr::V6(ip6)));
        } else {
            tracing::warn!("the userspace proxy is IPv4 only: IPv6 Services are not served");
        }
    }
    let configs: Vec<ProxierConfig> = families
        .iter()
        .map(|(family, ip)| proxier_config(&proxy, *family, &config.node_name, Some(*ip), &local))
        .collect();
    let pcfg = configs[0].clone();
    if proxy.mode.kernel().is_some() && !config.rootless {
        // What a node needs for kube-proxy: forwarding, bridged pod traffic through the nat hooks
        // (replies from a pod to a pod on the same bridge must be un-DNATed), and, for iptables'
        // localhost NodePorts, 127.0.0.1 routable. The userspace proxy needs none of it.
        sysctl(ns, "net/ipv4/ip_forward", "1");
        sysctl(ns, "net/bridge/bridge-nf-call-iptables", "1");
        if wants_route_localnet(&pcfg) {
            sysctl(ns, "net/ipv4/conf/all/route_localnet", "1");
        }
        if configs.len() > 1 {
            sysctl(ns, "net/ipv6/conf/all/forwarding", "1");
            sysctl(ns, "net/bridge/bridge-nf-call-ip6tables", "1");
        }
    }
    let metrics = Arc::new(ProxyMetrics::default());
    let health = Arc::new(ProxyHealth::new(pcfg.sync_period));
    let metrics_l = bind_tcp(ns, proxy.metrics_bind_address)?;
    let healthz_l = bind_tcp(ns, proxy.healthz_bind_address)?;
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    match mode.kernel() {
        Some(_) => {
            let mut counters: Option<pontifex_proxy::counters::NetlinkCounters> = None;
            for (i, pcfg) in configs.into_iter().enumerate() {
                let (tx, rx) = mpsc::unbounded_channel();
                senders.push(tx);
                let applier = KernelApplier::new(ns)?;
                // The Service health servers bind 0.0.0.0: the primary proxier's alone.
                let hc = (i == 0).then(|| {
                    let netns_owned = config.netns.clone();
                    let binder: pontifex_proxy::health::Binder = Arc::new(move |port| {
                        let addr = SocketAddr::from(([0, 0, 0, 0], port));
                        in_node(netns_owned.as_deref(), || std::net::TcpListener::bind(addr))
                            .map_err(std::io::Error::other)?
                    });
                    HealthCheckServers::new(binder, health.clone())
                });
                // kube-proxy's start-up: nf_conntrack_tcp_be_liberal decides the INVALID drop
                // and the nfacct objects (iptables) are made; the families' counters are read
                // together at every scrape (installed below).
                let mut pcfg = pcfg;
                let family_counters = pontifex_proxy::counters::setup(&mut pcfg, ns);
                match &mut counters {
                    None => counters = Some(family_counters),
                    Some(c) => c.merge(family_counters),
                }
                let proxier = Proxier::new(pcfg, applier, metrics.clone(), health.clone());
                let run = pontifex_proxy::sync::run(proxier, rx, hc, shutdown.clone());
                tasks.push(tokio::spawn(async move {
                    run.await;
                }));
            }
            if let Some(c) = counters {
                c.install(&metrics);
            }
        }
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            let node_ips = match &pcfg.nftables.node_port_addresses {
                Some(ips) => ips.clone(),
                // Every local address (a CIDR of 0.0.0.0/0).
                None => local_addresses(ns)
                    .await
                    .into_iter()
                    .filter(IpAddr::is_ipv4)
                    .collect(),
            };
            let (weights_tx, weights) = tokio::sync::watch::channel(Default::default());
            tokio::spawn(crate::userspace::watch_weights(
                client.clone(),
                weights_tx,
                shutdown.clone(),
            ));
            let setup = crate::userspace::Setup {
                weights,
                node_name: config.node_name.clone(),
                node_ips,
                netns: config.netns.clone(),
                data_dir: config.data_dir.clone(),
                rootless: config.rootless.then(|| crate::userspace::RootlessDial {
                    pods: proxy
                        .cluster_cidrs
                        .iter()
                        .find(|n| n.addr().is_ipv4())
                        .copied(),
                    shift: pontifex_node::workload::rootless::PortShift::of_this_machine(),
                }),
            };
            tasks.push(tokio::spawn(crate::userspace::run(
                setup,
                rx,
                health.clone(),
                metrics.clone(),
                shutdown.clone(),
            )));
        }
    }
    tokio::spawn(pontifex_proxy::health::serve_metrics(
        metrics_l,
        metrics,
        health.clone(),
        mode.as_str(),
        shutdown.clone(),
    ));
    tokio::spawn(pontifex_proxy::health::serve_healthz(
        healthz_l,
        health,
        shutdown.clone(),
    ));
    tracing::info!(
        mode = mode.as_str(),
        nftables_layout = proxy.nftables_layout.as_str(),
        families = ?families.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        "service proxy started"
    );
    Ok(tokio::spawn(async move {
        watch(client, senders, shutdown).await;
        for t in tasks {
            let _ = t.await;
        }
    }))
}

/// Feeds the proxiers from the Service and EndpointSlice watches until `shutdown`.
async fn watch(
    client: kube::Client,
    txs: Vec<mpsc::UnboundedSender<ProxyEvent>>,
    shutdown: CancellationToken,
) {
    let mut svcs = std::pin::pin!(
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default()
        )
        .default_backoff()
    );
    let mut slices = std::pin::pin!(
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default()
        )
        .default_backoff()
    );
    let mut informers = Informers::new();
    loop {
        let ev = tokio::select! {
            () = shutdown.cancelled() => return,
            e = svcs.next() => match e {
                None => return,
                Some(Err(e)) => { tracing::warn!(error = %e, "service watch failed; retrying"); continue; }
                Some(Ok(e)) => informers.service(e),
            },
            e = slices.next() => match e {
                None => return,
                Some(Err(e)) => { tracing::warn!(error = %e, "endpointslice watch failed; retrying"); continue; }
                Some(Ok(e)) => informers.slice(e),
            },
        };
        // Every family's proxier gets every event (each keeps its family's part).
        if let Some(ev) = ev
            && txs.iter().any(|tx| tx.send(ev.clone()).is_err())
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests;

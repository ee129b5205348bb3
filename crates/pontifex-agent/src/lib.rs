//! The pontifex node agent (`pontifex agent --node NAME`): registers its Node and keeps its heartbeat,
//! builds the node's pod network (the `cni0` bridge and cross-node routes, host-gw or VXLAN) once the
//! node IPAM controller has given it a podCIDR, and runs the pods the scheduler bound to it — sandbox,
//! containers, probes, status, graceful termination — through `pontifex-node`.
//!
//! It talks to the cluster only through the Kubernetes API (kube-rs), so it runs the same in the lab
//! (`pontifex up --nodes N` starts one per lab node, in the root namespace, working on its node's
//! namespace by name) and on a real machine (no namespace: the machine's own).
//!
//! It also runs the service proxy ([`ProxyConfig`]: kube-proxy's nftables or iptables dataplane,
//! programmed in the node's namespace, or the userspace L4 proxy listening there — its counters on
//! [`STATS_SOCKET`] for `pontifex ipvsadm` —, with kube-proxy's metrics and health ports).
//!
//! Dual-stack: with an IPv6 node address ([`Config::node_ip6`], kubelet's dual `--node-ip`) the
//! node reports both InternalIPs, waits for a podCIDR of each family, gives every pod an address of
//! each (`status.podIPs`, IPv4 first), routes both families to the other nodes, and runs a proxier
//! per family (`ip pontifex` and `ip6 pontifex`, or iptables and ip6tables), as kube-proxy's
//! dual-stack meta-proxier does. The primary family is IPv4; IPv6-primary nodes are not supported.
//!
//! In rootless mode ([`Config::rootless`]) it builds no network at all: pods are processes of the
//! agent's own namespace on loopback addresses, and the userspace proxy serves the Services.
//!
//! Not here yet: cluster DNS, ingress and network policy (later issues).
#![forbid(unsafe_code)]

mod hostport;
mod kubelet;
mod network;

pub use network::keep_routes;
mod node;
mod pods;
mod proxy;
mod userspace;

pub use pontifex_proxy::nftables::NftLayout;
pub use proxy::{NodePortAddresses, ProxyConfig, ProxyError, ProxyMode, render_rules};
pub use userspace::{STATS_SOCKET, read_stats};

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// How the agent's pods reach pods on other nodes (flannel's backends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A route per other node's podCIDR via its node IP (nodes share an L2 segment).
    HostGw,
    /// A VXLAN device and per-node FDB/neighbour entries (works across L3).
    Vxlan,
}

impl Backend {
    /// The flag value: `host-gw` or `vxlan`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::HostGw => "host-gw",
            Backend::Vxlan => "vxlan",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "host-gw" => Ok(Backend::HostGw),
            "vxlan" => Ok(Backend::Vxlan),
            _ => Err(format!("unknown backend {s:?} (host-gw or vxlan)")),
        }
    }
}

/// The agent's settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The Node name (kubelet's `--hostname-override`).
    pub node_name: String,
    /// The node's InternalIP (kubelet's `--node-ip`), its primary address.
    pub node_ip: Ipv4Addr,
    /// The node's IPv6 InternalIP on a dual-stack node (kubelet's `--node-ip` second address);
    /// `None`: IPv4 only (no IPv6 anything: pods, routes, proxier).
    pub node_ip6: Option<Ipv6Addr>,
    /// The node's network namespace (the lab's `<prefix>-node-<name>`); `None` for this namespace.
    pub netns: Option<String>,
    /// Prefix of pod namespace names: pods live in `<prefix>-pod-<node>-<uid>`.
    pub netns_prefix: String,
    /// Cross-node routing.
    pub backend: Backend,
    /// State that must survive a restart: the IPAM allocations, container logs.
    pub data_dir: PathBuf,
    /// The `pontifex` executable, which runs the built-in test server (`pontifex agnhost ...`) and the
    /// container shims (`pontifex container-shim`).
    pub pontifex_bin: PathBuf,
    /// The service proxy's settings; `None` runs no proxy (another one serves this node).
    pub proxy: Option<ProxyConfig>,
    /// The cluster DNS addresses pods' resolv.conf names (kubelet's `--cluster-dns`); empty:
    /// `ClusterFirst` pods get the node's resolv.conf.
    pub cluster_dns: Vec<std::net::IpAddr>,
    /// The cluster domain (kubelet's `--cluster-domain`).
    pub cluster_domain: String,
    /// Rootless mode: no network namespaces, no bridge, no routes. Pods are processes of this
    /// namespace listening on their IP's loopback image (`pontifex_node::workload::rootless`), the
    /// userspace proxy serves the Services. `netns` must be `None`.
    pub rootless: bool,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Kubernetes API refused a request or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Building the node's network failed.
    #[error("node network: {0}")]
    Net(#[from] pontifex_node::net::NetError),
    /// The IPAM store failed.
    #[error("ipam: {0}")]
    Ipam(#[from] pontifex_node::net::ipam::IpamError),
    /// An object could not be built or read.
    #[error("invalid object: {0}")]
    Json(#[from] serde_json::Error),
    /// The hostPort rules' applier could not be made (an invalid node namespace name).
    #[error("hostPort rules: {0}")]
    HostPort(#[from] pontifex_proxy::apply::ApplyError),
    /// The service proxy could not start.
    #[error("service proxy: {0}")]
    Proxy(#[from] ProxyError),
}

impl Config {
    /// The node's addresses, primary first.
    pub fn node_ips(&self) -> Vec<IpAddr> {
        let mut ips = vec![IpAddr::V4(self.node_ip)];
        ips.extend(self.node_ip6.map(IpAddr::V6));
        ips
    }

    /// [`Config::node_ips`] as text, as `status.hostIPs` and the downward API show them.
    pub fn node_ip_strings(&self) -> Vec<String> {
        self.node_ips().iter().map(ToString::to_string).collect()
    }
}

/// Run the agent until `shutdown`. Pods keep running when it stops (a restarted agent finds their
/// namespaces and addresses again); `pontifex down` or deleting the pods ends them.
pub async fn run(
    client: kube::Client,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut config = config;
    if config.rootless && config.node_ip6.take().is_some() {
        tracing::warn!("rootless mode is IPv4 only; the IPv6 node address is ignored");
    }
    let config = Arc::new(config);
    node::register(&client, &config.node_name, &config.node_ips()).await?;
    tracing::info!(node = %config.node_name, ips = ?config.node_ips(), "node registered");
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        config.node_name.clone(),
        config.node_ips(),
        shutdown.clone(),
    ));
    // The proxy needs no podCIDR: start it first, so Services work as early as they can.
    let proxy = match config.proxy.clone() {
        Some(p) => Some(proxy::start(client.clone(), config.clone(), p, shutdown.clone()).await?),
        None => None,
    };
    serve_kubelet_port(&config, &shutdown);
    let want_v6 = config.node_ip6.is_some();
    let Some(mut cidrs) = node::pod_cidrs(&client, &config.node_name, want_v6, &shutdown).await?
    else {
        return Ok(());
    };
    // IPv4 first (the primary family here), and IPv6 only on a node with an IPv6 address.
    cidrs.retain(|c| c.addr().is_ipv4() || want_v6);
    cidrs.sort_by_key(|c| c.addr().is_ipv6());
    cidrs.dedup_by_key(|c| c.addr().is_ipv6());
    tracing::info!(?cidrs, "pod CIDRs assigned");
    // Rootless: pods share this namespace (loopback addresses), so there is nothing to build.
    let routes = if config.rootless {
        None
    } else {
        pontifex_node::net::sandbox::ensure_bridge(config.netns.as_deref(), &cidrs).await?;
        Some(tokio::spawn(network::keep_routes(
            client.clone(),
            config.netns.clone(),
            config.node_name.clone(),
            config.backend,
            shutdown.clone(),
        )))
    };
    let result = pods::run(client, config, cidrs, shutdown).await;
    let _ = heartbeat.await;
    if let Some(r) = routes {
        let _ = r.await;
    }
    if let Some(p) = proxy {
        let _ = p.await;
    }
    result
}

/// Serves the kubelet's `/containerLogs` on 0.0.0.0:10250 in the node's namespace (what the API
/// server's `pods/log` proxies to). A port already taken (a real kubelet beside us) is logged and
/// skipped: logs are then the other kubelet's business.
fn serve_kubelet_port(config: &Config, shutdown: &CancellationToken) {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], kubelet::KUBELET_PORT));
    let bind = || std::net::TcpListener::bind(addr);
    let bound = match config.netns.as_deref() {
        Some(ns) => pontifex_node::net::netns::run_in(ns, bind).map_err(std::io::Error::other),
        None => Ok(bind()),
    }
    .and_then(|r| r)
    .and_then(|l| {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    });
    match bound {
        Ok(l) => {
            tokio::spawn(kubelet::serve(l, config.data_dir.clone(), shutdown.clone()));
        }
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve the kubelet port; no pod logs through the API")
        }
    }
}

//! What the userspace proxy is told to serve, and its tunables.

use std::net::SocketAddr;
use std::time::Duration;

/// Transport protocol of a virtual service.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Protocol {
    /// TCP: one upstream connection per client connection.
    Tcp,
    /// UDP: one upstream flow per client address, until idle.
    Udp,
}

impl Protocol {
    /// `TCP` / `UDP`, as `ipvsadm` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// One listening address (IPVS "virtual service"): a ClusterIP:port, a NodePort, an external IP…
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    /// The address clients connect to; the proxy listens on it.
    pub listen: SocketAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// An IPVS scheduler name (`rr`, `wrr`, `lc`, …); an unknown name falls back to `rr` with a warning.
    pub scheduler: String,
    /// ClientIP session affinity timeout (`sessionAffinityConfig.clientIP.timeoutSeconds`), if any.
    pub affinity_timeout: Option<Duration>,
    /// Endpoints and weights (0 drains one: existing connections finish, no new ones).
    pub endpoints: Vec<(SocketAddr, u32)>,
    /// Client source addresses admitted; empty admits every source. Set on load-balancer IPs of
    /// Services with `loadBalancerSourceRanges` (see `convert.rs`); a TCP client from elsewhere is
    /// reset right after the accept, a UDP datagram from elsewhere is dropped.
    pub source_ranges: Vec<ipnet::IpNet>,
}

/// Everything the proxy serves, published whole through a `watch` channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Virtual services; one per (protocol, listen address) — a later duplicate is ignored.
    pub services: Vec<VirtualService>,
}

/// Tunables of the userspace proxy. The defaults are IPVS's and kube-proxy's where they have one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// How long one upstream TCP connect may take before the next endpoint is tried.
    pub connect_timeout: Duration,
    /// Endpoints tried per client connection (the first choice included).
    pub max_attempts: usize,
    /// Consecutive connect failures after which an endpoint is ejected (skipped for new connections).
    pub eject_after: u32,
    /// How long an ejected endpoint is skipped.
    pub eject_for: Duration,
    /// A UDP flow with no datagram either way for this long is forgotten. Default 300 s, IPVS's UDP
    /// timeout (`ipvsadm --set` third value), which is what kube-proxy's IPVS mode leaves in place.
    pub udp_idle_timeout: Duration,
    /// Upper bound of concurrent UDP flows per service; datagrams of further clients are dropped.
    pub max_udp_flows: usize,
    /// How long a closed TCP connection still counts in InActConn: IPVS's TIME_WAIT timeout (120 s).
    pub tcp_time_wait: Duration,
    /// As `tcp_time_wait` for connections that ended with an error (IPVS's CLOSE state, 10 s).
    pub tcp_close: Duration,
    /// Move bulk TCP data with splice(2) through a pipe, without copying it through the proxy
    /// (Linux). A direction switches to it once one read fills the copy buffer; off, every byte is
    /// copied through userspace.
    pub splice: bool,
    /// TCP listening sockets per virtual service, sharing the address with `SO_REUSEPORT` so that
    /// accepts spread over the runtime's workers. `None` (the default): as many as the runtime
    /// the proxy is spawned on has workers.
    pub listeners: Option<std::num::NonZeroUsize>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            connect_timeout: Duration::from_secs(1),
            max_attempts: 3,
            eject_after: 3,
            eject_for: Duration::from_secs(10),
            udp_idle_timeout: Duration::from_secs(300),
            max_udp_flows: 65_536,
            tcp_time_wait: Duration::from_secs(120),
            tcp_close: Duration::from_secs(10),
            splice: true,
            listeners: None,
        }
    }
}

//! The proxy's view of the cluster: service ports and their endpoints, built from Services and
//! discovery/v1 EndpointSlices, with change tracking between syncs.
//!
//! Follows kube-proxy (pkg/proxy: servicechangetracker, endpointschangetracker,
//! endpointslicecache, topology): headless and ExternalName Services are skipped; endpoints
//! of several slices are merged per service port (ports resolved by name and protocol, a
//! duplicate address keeps the local copy); `conditions` default to ready/serving and not
//! terminating; endpoints are ordered by their `ip:port` text. Zone hints and
//! `trafficDistribution` are ignored (no topology-aware routing). The model holds every IP
//! family; renderers pick one ([`IpFamily`]).
//!
//! What this module does not do: talk to the API (the agent feeds it events), render rules,
//! or touch conntrack (it only says what the applier should flush).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// kube-proxy's default ClientIP affinity timeout (`v1.DefaultClientIPServiceAffinitySeconds`).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;
/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An IP family; one rendering per family, as kube-proxy runs one proxier per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }
}

/// A transport protocol a Service port can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parses the API spelling (`TCP`, `UDP`, `SCTP`); absent means TCP, as the API defaults.
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The lowercase name used by iptables and nft (`tcp`, `udp`, `sctp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// A Service's namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ServiceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// kube-proxy's `ServicePortName`: one port of one Service. Displays as `ns/name:port`, or
/// `ns/name` for an unnamed port (the string every chain name and comment is built from).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServicePortName {
    /// The Service.
    pub service: ServiceKey,
    /// The port's name ("" when the Service has a single unnamed port).
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}", self.service)
        } else {
            write!(f, "{}:{}", self.service, self.port)
        }
    }
}

// Ordered by the displayed name first (the order kube-proxy's tests sort rules in), then
// protocol, so iteration order is the golden files' order.
impl Ord for ServicePortName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_string()
            .cmp(&other.to_string())
            .then(self.protocol.cmp(&other.protocol))
            .then(self.service.cmp(&other.service))
            .then(self.port.cmp(&other.port))
    }
}

impl PartialOrd for ServicePortName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// One service port as the proxy sees it (kube-proxy's `ServicePort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name.
    pub name: ServicePortName,
    /// `spec.clusterIPs` (one per family).
    pub cluster_ips: Vec<IpAddr>,
    /// `port`.
    pub port: u16,
    /// `nodePort`, 0 when none.
    pub node_port: u16,
    /// `spec.externalIPs` that parse as addresses.
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip`, except ingresses with `ipMode: Proxy`.
    pub load_balancer_ips: Vec<IpAddr>,
    /// `spec.loadBalancerSourceRanges` (surrounding spaces tolerated), LoadBalancer Services only.
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `externalTrafficPolicy: Local` on an externally accessible Service.
    pub external_policy_local: bool,
    /// `internalTrafficPolicy: Local`.
    pub internal_policy_local: bool,
    /// ClientIP session affinity timeout in seconds, `None` without affinity.
    pub affinity_timeout: Option<u32>,
    /// `healthCheckNodePort` (LoadBalancer + `externalTrafficPolicy: Local` only), 0 when none.
    pub health_check_node_port: u16,
}

impl ServicePort {
    /// Reachable from outside: a node port, external IPs or load-balancer IPs.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }

    /// Some traffic uses the cluster-wide endpoint set: internal traffic under Cluster policy,
    /// or any external traffic — even under `externalTrafficPolicy: Local`, pods and the node
    /// itself are short-circuited to the cluster set (kube-proxy's `UsesClusterEndpoints`).
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Some traffic uses the node-local endpoint set.
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }

    /// The ClusterIP of a family, if the Service has one.
    pub fn cluster_ip(&self, family: IpFamily) -> Option<IpAddr> {
        self.cluster_ips
            .iter()
            .copied()
            .find(|ip| IpFamily::of(ip) == family)
    }
}

/// One endpoint of one service port (kube-proxy's `Endpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The endpoint's first address.
    pub ip: IpAddr,
    /// The target port resolved from the slice.
    pub port: u16,
    /// `nodeName` equals this node's name.
    pub is_local: bool,
    /// `conditions.ready` (absent = true).
    pub ready: bool,
    /// `conditions.serving` (absent = true).
    pub serving: bool,
    /// `conditions.terminating` (absent = false).
    pub terminating: bool,
}

impl Endpoint {
    /// `ip:port` (`[ip]:port` for IPv6), the text kube-proxy hashes and prints.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }
}

/// The endpoint sets of one service port, split as kube-proxy's `CategorizeEndpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Categorized {
    /// Endpoints for Cluster policy: ready ones, else serving+terminating ones (KEP-1669).
    pub cluster: Vec<Endpoint>,
    /// Endpoints for Local policy: local ready ones, else local serving+terminating ones.
    pub local: Vec<Endpoint>,
    /// Every endpoint some traffic on this node can reach (the union of the used sets).
    pub all_reachable: Vec<Endpoint>,
    /// A usable endpoint exists anywhere (otherwise: REJECT).
    pub has_any: bool,
}

/// Splits endpoints into the sets the policies use (kube-proxy `topology.go`).
pub fn categorize(endpoints: &[Endpoint], svc: &ServicePort) -> Categorized {
    let mut out = Categorized::default();
    let fallback = |e: &Endpoint| e.serving && e.terminating;
    if svc.uses_cluster_endpoints() {
        out.cluster = endpoints.iter().filter(|e| e.ready).cloned().collect();
        if out.cluster.is_empty() {
            out.cluster = endpoints.iter().filter(|e| fallback(e)).cloned().collect();
        }
        out.has_any = !out.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        out.all_reachable = out.cluster.clone();
        return out;
    }
    let mut local_ready = false;
    let mut local_fallback = false;
    for e in endpoints {
        if e.ready {
            out.has_any = true;
            local_ready |= e.is_local;
        } else if fallback(e) {
            out.has_any = true;
            local_fallback |= e.is_local;
        }
    }
    if local_ready {
        out.local = endpoints
            .iter()
            .filter(|e| e.is_local && e.ready)
            .cloned()
            .collect();
    } else if local_fallback {
        out.local = endpoints
            .iter()
            .filter(|e| e.is_local && fallback(e))
            .cloned()
            .collect();
    }
    if !svc.uses_cluster_endpoints() || out.local.is_empty() {
        out.all_reachable = if svc.uses_cluster_endpoints() {
            out.cluster.clone()
        } else {
            out.local.clone()
        };
        return out;
    }
    let mut merged: BTreeMap<String, Endpoint> = BTreeMap::new();
    for e in out.cluster.iter().chain(out.local.iter()) {
        merged.insert(e.addr().to_string(), e.clone());
    }
    out.all_reachable = merged.into_values().collect();
    out
}

/// Everything a renderer needs: service ports and their endpoints (ordered by `ip:port`
/// text), from one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxySnapshot {
    /// Service ports by name.
    pub services: BTreeMap<ServicePortName, ServicePort>,
    /// Endpoints by service port name (may name ports of Services that do not exist).
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

impl ProxySnapshot {
    /// The endpoints of a service port (empty when none).
    pub fn endpoints_of(&self, name: &ServicePortName) -> &[Endpoint] {
        self.endpoints.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// A service port as one IP family's dataplane sees it (both renderers start from this), or
    /// `None` when it has no cluster IP of that family.
    pub fn family_view(
        &self,
        name: &ServicePortName,
        svc: &ServicePort,
        family: IpFamily,
    ) -> Option<FamilyView> {
        let cluster_ip = svc.cluster_ip(family)?;
        let in_family = |ip: &&IpAddr| IpFamily::of(ip) == family;
        let endpoints: Vec<Endpoint> = self
            .endpoints_of(name)
            .iter()
            .filter(|e| IpFamily::of(&e.ip) == family)
            .cloned()
            .collect();
        Some(FamilyView {
            cluster_ip,
            external_ips: svc.external_ips.iter().filter(in_family).copied().collect(),
            lb_ips: svc
                .load_balancer_ips
                .iter()
                .filter(in_family)
                .copied()
                .collect(),
            source_ranges: svc
                .load_balancer_source_ranges
                .iter()
                .filter(|n| IpFamily::of(&n.addr()) == family)
                .copied()
                .collect(),
            categorized: categorize(&endpoints, svc),
        })
    }
}

/// One service port's addresses and endpoints in one IP family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyView {
    /// The cluster IP of this family.
    pub cluster_ip: IpAddr,
    /// `spec.externalIPs` of this family.
    pub external_ips: Vec<IpAddr>,
    /// Load-balancer ingress IPs of this family.
    pub lb_ips: Vec<IpAddr>,
    /// `loadBalancerSourceRanges` of this family.
    pub source_ranges: Vec<IpNet>,
    /// The endpoints of this family, split as the traffic policies use them.
    pub categorized: Categorized,
}

/// Where stale conntrack entries must be deleted (UDP only, as kube-proxy: TCP and SCTP
/// recover on their own).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConntrackTarget {
    /// Entries whose original destination is this address and port.
    Ip(IpAddr, u16),
    /// Entries whose original destination port is this node port (any local address).
    NodePort(u16),
}

/// One conntrack deletion the applier should perform after the sync's rules are in place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConntrackFlush {
    /// The service destination.
    pub target: ConntrackTarget,
    /// Only entries DNATed to this endpoint; `None` = every entry for the destination.
    pub endpoint: Option<SocketAddr>,
}

/// What one sync must do, beyond rendering `snapshot`.
#[derive(Debug, Clone, Default)]
pub struct SyncUpdate {
    /// The state to render (shared with the tracker: drop it before the next sync, or that
    /// sync copies the whole snapshot).
    pub snapshot: Arc<ProxySnapshot>,
    /// Services whose ports or endpoints changed since the previous sync (added, updated or
    /// deleted): the only ones a partial sync rewrites.
    pub changed_services: BTreeSet<ServiceKey>,
    /// Service ports that existed at the previous sync and no longer do.
    pub deleted_ports: Vec<ServicePortName>,
    /// UDP conntrack entries to delete: deleted services' destinations, removed endpoints, and
    /// destinations that had no endpoints (cached REJECT-less blackholes) and now have some.
    pub conntrack: Vec<ConntrackFlush>,
}

/// Why an object was not (fully) taken into the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The object has no namespace or no name.
    #[error("object without namespace or name")]
    MissingName,
    /// A Service port's protocol is not TCP, UDP or SCTP; the port is skipped.
    #[error("{service}: unsupported protocol {protocol:?}")]
    Protocol {
        /// The Service.
        service: ServiceKey,
        /// The protocol given.
        protocol: String,
    },
    /// A name would be unsafe in a rule comment or chain name; the object is skipped.
    #[error("{0:?} is not a valid Kubernetes name")]
    InvalidName(String),
}

/// A DNS-1123 label/subdomain or IANA service name: lowercase letters, digits, `-` and `.`.
/// Everything that reaches rule text must pass this (names are data, never syntax).
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// The endpoints of one slice for one of its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceData {
    service: ServiceKey,
    ports: Vec<(String, Protocol, u16)>,
    endpoints: Vec<SliceEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SliceEndpoint {
    ip: IpAddr,
    node_name: Option<String>,
    ready: bool,
    serving: bool,
    terminating: bool,
}

/// Services and EndpointSlices as seen so far, and the state of the previous sync.
///
/// A sync costs what changed, not the size of the cluster (kube-proxy's change trackers):
/// every update marks its Service dirty, and [`ChangeTracker::sync`] rebuilds only the dirty
/// Services' ports and endpoints in the previous snapshot and diffs those alone.
#[derive(Debug, Clone)]
pub struct ChangeTracker {
    node_name: String,
    services: BTreeMap<ServiceKey, Vec<ServicePort>>,
    slices: BTreeMap<(String, String), SliceData>,
    /// The slices of each Service (by the label), to merge one Service's endpoints alone.
    slices_of: HashMap<ServiceKey, BTreeSet<(String, String)>>,
    /// The state as of the previous sync.
    last: Arc<ProxySnapshot>,
    /// The service port names `last` holds (services or endpoints) per Service.
    names_of: HashMap<ServiceKey, BTreeSet<ServicePortName>>,
    /// Services whose objects were touched since the previous sync.
    dirty: BTreeSet<ServiceKey>,
    /// The previous sync did not reach the kernel: diff the next one against nothing.
    reset: bool,
}

impl ChangeTracker {
    /// A tracker for the node called `node_name` (endpoints there are local).
    pub fn new(node_name: impl Into<String>) -> Self {
        ChangeTracker {
            node_name: node_name.into(),
            services: BTreeMap::new(),
            slices: BTreeMap::new(),
            slices_of: HashMap::new(),
            last: Arc::default(),
            names_of: HashMap::new(),
            dirty: BTreeSet::new(),
            reset: false,
        }
    }

    /// Adds or replaces a Service. Headless and ExternalName Services are held as having no
    /// ports (so an update that turns a Service headless removes it). Ports that cannot be
    /// used are skipped and reported.
    pub fn update_service(&mut self, svc: &Service) -> Result<(), ModelError> {
        let key = object_key(
            svc.metadata.namespace.as_deref(),
            svc.metadata.name.as_deref(),
        )?;
        let (ports, errors) = service_ports(&key, svc);
        self.dirty.insert(key.clone());
        self.services.insert(key, ports);
        errors.into_iter().next().map_or(Ok(()), Err)
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, namespace: &str, name: &str) {
        let key = ServiceKey::new(namespace, name);
        self.services.remove(&key);
        self.dirty.insert(key);
    }

    /// Adds or replaces an EndpointSlice. Slices without the `kubernetes.io/service-name`
    /// label and FQDN slices are ignored (held as empty).
    pub fn update_endpoint_slice(&mut self, slice: &EndpointSlice) -> Result<(), ModelError> {
        let ns = slice
            .metadata
            .namespace
            .clone()
            .ok_or(ModelError::MissingName)?;
        let name = slice.metadata.name.clone().ok_or(ModelError::MissingName)?;
        let id = (ns.clone(), name);
        self.remove_slice(&id);
        if let Some(data) = slice_data(&ns, slice) {
            self.dirty.insert(data.service.clone());
            self.slices_of
                .entry(data.service.clone())
                .or_default()
                .insert(id.clone());
            self.slices.insert(id, data);
        }
        Ok(())
    }

    /// Removes an EndpointSlice.
    pub fn delete_endpoint_slice(&mut self, namespace: &str, name: &str) {
        self.remove_slice(&(namespace.to_owned(), name.to_owned()));
    }

    fn remove_slice(&mut self, id: &(String, String)) {
        if let Some(old) = self.slices.remove(id) {
            if let Some(ids) = self.slices_of.get_mut(&old.service) {
                ids.remove(id);
                if ids.is_empty() {
                    self.slices_of.remove(&old.service);
                }
            }
            self.dirty.insert(old.service);
        }
    }

    /// One Service's ports and merged endpoints (by port name), as [`ChangeTracker::current`]
    /// has them.
    fn service_state(&self, key: &ServiceKey) -> ProxySnapshot {
        let mut snap = ProxySnapshot::default();
        for p in self.services.get(key).into_iter().flatten() {
            snap.services.insert(p.name.clone(), p.clone());
        }
        let slices = self
            .slices_of
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.slices.get(id));
        self.merge_endpoints(slices, &mut snap);
        snap
    }

    /// The state as of now, without marking a sync.
    pub fn current(&self) -> ProxySnapshot {
        let mut snap = ProxySnapshot::default();
        for ports in self.services.values() {
            for p in ports {
                snap.services.insert(p.name.clone(), p.clone());
            }
        }
        self.merge_endpoints(self.slices.values(), &mut snap);
        snap
    }

    /// Merges slices per service port into `snap.endpoints`; a duplicate ip:port keeps the
    /// first copy unless a later one is local (kube-proxy favours the local copy).
    fn merge_endpoints<'a>(
        &self,
        slices: impl Iterator<Item = &'a SliceData>,
        snap: &mut ProxySnapshot,
    ) {
        let mut merged: BTreeMap<ServicePortName, BTreeMap<String, Endpoint>> = BTreeMap::new();
        for data in slices {
            for (port_name, protocol, port) in &data.ports {
                let spn = ServicePortName {
                    service: data.service.clone(),
                    port: port_name.clone(),
                    protocol: *protocol,
                };
                let set = merged.entry(spn).or_default();
                for e in &data.endpoints {
                    let is_local = e.node_name.as_deref() == Some(self.node_name.as_str());
                    let ep = Endpoint {
                        ip: e.ip,
                        port: *port,
                        is_local,
                        ready: e.ready,
                        serving: e.serving,
                        terminating: e.terminating,
                    };
                    let text = ep.addr().to_string();
                    if !set.contains_key(&text) || is_local {
                        set.insert(text, ep);
                    }
                }
            }
        }
        for (spn, set) in merged {
            if !set.is_empty() {
                // BTreeMap order = kube-proxy's sort by endpoint string.
                snap.endpoints.insert(spn, set.into_values().collect());
            }
        }
    }

    /// Marks a sync: returns the state to render and what changed since the previous sync.
    /// Call [`ChangeTracker::resync_failed`] if applying it failed. Costs the dirty Services
    /// only (unless a previous sync failed).
    pub fn sync(&mut self) -> SyncUpdate {
        let mut dirty = std::mem::take(&mut self.dirty);
        let reset = std::mem::take(&mut self.reset);
        if reset {
            dirty.extend(self.names_of.keys().cloned());
        }
        let mut old = ProxySnapshot::default();
        let mut new = ProxySnapshot::default();
        let states: Vec<(ServiceKey, ProxySnapshot)> = dirty
            .into_iter()
            .map(|k| {
                let st = self.service_state(&k);
                (k, st)
            })
            .collect();
        let last = Arc::make_mut(&mut self.last);
        for (key, state) in states {
            for spn in self.names_of.remove(&key).into_iter().flatten() {
                let p = last.services.remove(&spn);
                let e = last.endpoints.remove(&spn);
                if !reset {
                    if let Some(p) = p {
                        old.services.insert(spn.clone(), p);
                    }
                    if let Some(e) = e {
                        old.endpoints.insert(spn, e);
                    }
                }
            }
            let names: BTreeSet<ServicePortName> = state
                .services
                .keys()
                .chain(state.endpoints.keys())
                .cloned()
                .collect();
            if !names.is_empty() {
                self.names_of.insert(key, names);
            }
            for (spn, p) in state.services {
                last.services.insert(spn.clone(), p.clone());
                new.services.insert(spn, p);
            }
            for (spn, e) in state.endpoints {
                last.endpoints.insert(spn.clone(), e.clone());
                new.endpoints.insert(spn, e);
            }
        }
        let mut update = diff(&old, &new);
        update.snapshot = Arc::clone(&self.last);
        update
    }

    /// The state as of the previous sync.
    pub fn last(&self) -> &ProxySnapshot {
        &self.last
    }

    /// Forgets every Service and EndpointSlice (before replaying a fresh list), keeping what
    /// the previous sync applied so the next sync's changes are still relative to it.
    pub fn clear_objects(&mut self) {
        self.dirty.extend(self.names_of.keys().cloned());
        self.dirty.extend(self.services.keys().cloned());
        self.dirty.extend(self.slices_of.keys().cloned());
        self.services.clear();
        self.slices.clear();
        self.slices_of.clear();
    }

    /// The previous sync did not reach the kernel: the next one must be a full sync, and
    /// nothing is known to have been applied.
    pub fn resync_failed(&mut self) {
        self.reset = true;
    }
}

fn object_key(ns: Option<&str>, name: Option<&str>) -> Result<ServiceKey, ModelError> {
    let (Some(ns), Some(name)) = (ns, name) else {
        return Err(ModelError::MissingName);
    };
    for s in [ns, name] {
        if !is_safe_name(s) {
            return Err(ModelError::InvalidName(s.to_owned()));
        }
    }
    Ok(ServiceKey::new(ns, name))
}

fn parse_ips<'a>(it: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    it.into_iter()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn service_ports(key: &ServiceKey, svc: &Service) -> (Vec<ServicePort>, Vec<ModelError>) {
    let mut errors = Vec::new();
    let Some(spec) = &svc.spec else {
        return (Vec::new(), errors);
    };
    let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
    if ty == "ExternalName" {
        return (Vec::new(), errors);
    }
    let mut cluster_ips = parse_ips(spec.cluster_ips.iter().flatten());
    if cluster_ips.is_empty() {
        cluster_ips = parse_ips(spec.cluster_ip.iter());
    }
    if cluster_ips.is_empty() {
        // Headless ("None") or not yet allocated: nothing to proxy.
        return (Vec::new(), errors);
    }
    let is_lb = ty == "LoadBalancer";
    let external_ips = parse_ips(spec.external_ips.iter().flatten());
    let load_balancer_ips: Vec<IpAddr> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter(|ing| ing.ip_mode.as_deref() != Some("Proxy"))
        .filter_map(|ing| ing.ip.as_deref().and_then(|ip| ip.trim().parse().ok()))
        .collect();
    let load_balancer_source_ranges: Vec<IpNet> = if is_lb {
        spec.load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|s| s.trim().parse::<IpNet>().ok().map(|n| n.trunc()))
            .collect()
    } else {
        Vec::new()
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let etp_local = spec.external_traffic_policy.as_deref() == Some("Local");
    let itp_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            errors.push(ModelError::Protocol {
                service: key.clone(),
                protocol: p.protocol.clone().unwrap_or_default(),
            });
            continue;
        };
        let port_name = p.name.clone().unwrap_or_default();
        if !port_name.is_empty() && !is_safe_name(&port_name) {
            errors.push(ModelError::InvalidName(port_name));
            continue;
        }
        let Ok(port) = u16::try_from(p.port) else {
            continue;
        };
        let node_port = p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
        let mut sp = ServicePort {
            name: ServicePortName {
                service: key.clone(),
                port: port_name,
                protocol,
            },
            cluster_ips: cluster_ips.clone(),
            port,
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            external_policy_local: false,
            internal_policy_local: itp_local,
            affinity_timeout,
            health_check_node_port: 0,
        };
        sp.external_policy_local = etp_local && sp.externally_accessible();
        if is_lb && etp_local {
            sp.health_check_node_port = spec
                .health_check_node_port
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0);
        }
        out.push(sp);
    }
    (out, errors)
}

fn slice_data(ns: &str, slice: &EndpointSlice) -> Option<SliceData> {
    if slice.address_type == "FQDN" {
        return None;
    }
    let svc_name = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
    let service = ServiceKey::new(ns, svc_name.clone());
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port?).ok()?;
            let protocol = Protocol::parse(p.protocol.as_deref())?;
            Some((p.name.clone().unwrap_or_default(), protocol, port))
        })
        .collect();
    let endpoints = slice
        .endpoints
        .iter()
        .filter_map(|e| {
            let ip: IpAddr = e.addresses.first()?.parse().ok()?;
            let c = e.conditions.as_ref();
            Some(SliceEndpoint {
                ip,
                node_name: e.node_name.clone(),
                ready: c.and_then(|c| c.ready).unwrap_or(true),
                serving: c.and_then(|c| c.serving).unwrap_or(true),
                terminating: c.and_then(|c| c.terminating).unwrap_or(false),
            })
        })
        .collect();
    Some(SliceData {
        service,
        ports,
        endpoints,
    })
}

fn udp_targets(p: &ServicePort) -> Vec<ConntrackTarget> {
    let mut t: Vec<ConntrackTarget> = p
        .cluster_ips
        .iter()
        .chain(&p.external_ips)
        .chain(&p.load_balancer_ips)
        .map(|ip| ConntrackTarget::Ip(*ip, p.port))
        .collect();
    if p.node_port != 0 {
        t.push(ConntrackTarget::NodePort(p.node_port));
    }
    t
}

fn diff(old: &ProxySnapshot, new: &ProxySnapshot) -> SyncUpdate {
    let mut changed = BTreeSet::new();
    let mut deleted_ports = Vec::new();
    let mut conntrack = BTreeSet::new();
    for (name, p) in &old.services {
        if new.services.get(name) != Some(p) {
            changed.insert(name.service.clone());
        }
        if !new.services.contains_key(name) {
            deleted_ports.push(name.clone());
        }
    }
    for name in new.services.keys() {
        if !old.services.contains_key(name) {
            changed.insert(name.service.clone());
        }
    }
    let names: BTreeSet<&ServicePortName> =
        old.endpoints.keys().chain(new.endpoints.keys()).collect();
    for name in names {
        if old.endpoints.get(name) != new.endpoints.get(name) {
            changed.insert(name.service.clone());
        }
    }
    // UDP conntrack: what was reachable before and is not any more.
    let usable = |snap: &ProxySnapshot, p: &ServicePort| -> BTreeSet<SocketAddr> {
        categorize(snap.endpoints_of(&p.name), p)
            .all_reachable
            .iter()
            .map(Endpoint::addr)
            .collect()
    };
    for (name, old_p) in &old.services {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let old_targets = udp_targets(old_p);
        let new_p = new.services.get(name);
        let new_targets = new_p.map(udp_targets).unwrap_or_default();
        for t in &old_targets {
            if !new_targets.contains(t) {
                conntrack.insert(ConntrackFlush {
                    target: t.clone(),
                    endpoint: None,
                });
            }
        }
        let Some(new_p) = new_p else { continue };
        let before = usable(old, old_p);
        let after = usable(new, new_p);
        for gone in before.difference(&after) {
            for t in &old_targets {
                conntrack.insert(ConntrackFlush {
                    target: t.clone(),
                    endpoint: Some(*gone),
                });
            }
        }
    }
    for (name, new_p) in &new.services {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let had = old
            .services
            .get(name)
            .is_some_and(|p| !usable(old, p).is_empty());
        if !had && !usable(new, new_p).is_empty() {
            for t in udp_targets(new_p) {
                conntrack.insert(ConntrackFlush {
                    target: t,
                    endpoint: None,
                });
            }
        }
    }
    SyncUpdate {
        snapshot: Arc::default(),
        changed_services: changed,
        deleted_ports,
        conntrack: conntrack.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests;

//! From the service model ([`ProxySnapshot`], what the kernel renderers read) to the userspace
//! proxy's [`Snapshot`]: one virtual service per address a client may use.
//!
//! Per service port and IP family ([`ProxySnapshot::family_view`]):
//!
//! - `clusterIP:port` serves the *internal* endpoint set: the node-local endpoints under
//!   `internalTrafficPolicy: Local`, otherwise the cluster-wide set;
//! - `nodeIP:nodePort` for each given node address of the family, every `externalIP:port` and every
//!   load-balancer ingress `ip:port` serve the *external* set: local endpoints under
//!   `externalTrafficPolicy: Local`, otherwise the cluster-wide set.
//!
//! Both sets come from [`categorize`](crate::model::categorize), so terminating endpoints
//! (serving and terminating) are used only when no ready endpoint exists (KEP-1669), as kube-proxy
//! does. An empty set still yields a virtual service: the proxy accepts and closes at once, the
//! userspace analogue of kube-proxy's REJECT (IPVS leaves a virtual server without real servers).
//! SCTP ports are skipped (the userspace proxy carries TCP and UDP only).
//!
//! **`loadBalancerSourceRanges`** restrict the load-balancer IPs only (not the ClusterIP,
//! NodePorts or external IPs, as in kube-proxy): their virtual services carry the ranges, plus
//! the LB IPs themselves when the node's address is in a range (see `lb_sources`).
//!
//! **Scheduler**: the Service annotation [`SCHEDULER_ANNOTATION`] (`pontifex.io/scheduler: wrr`),
//! an IPVS scheduler name; absent or unknown, the default from configuration (`rr`, kube-proxy's
//! `--ipvs-scheduler` default). The model does not carry annotations, so the agent keeps the parsed
//! choice per Service ([`scheduler_of`]) in [`ConvertOptions::schedulers`].
//!
//! **Weights**: EndpointSlices carry no pod annotations, and kube-proxy's IPVS mode always used
//! weight 1. pontifex reads the pod annotation [`WEIGHT_ANNOTATION`] (`pontifex.io/weight: "3"`,
//! 0–65535; 0 drains the pod: it keeps its connections and gets no new ones). The agent, which
//! watches pods anyway, maps pod IPs to weights ([`pod_weights`]) into [`ConvertOptions::weights`];
//! the converter joins them on the endpoint's address. Unannotated pods, and endpoints that are not
//! pods (hand-written EndpointSlices), weigh 1.
//!
//! Not here: binding (the engine), making service addresses local (the agent, from
//! [`local_service_ips`]), health-check node ports (the health server).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use pontifex_balance::{BalanceError, SchedulerKind};

use super::model::{Protocol, Snapshot, VirtualService};
use crate::model::{self, Endpoint, FamilyView, IpFamily, ProxySnapshot, ServiceKey};

/// Service annotation naming the IPVS scheduler of all its ports: `rr`, `wrr`, `lc`, `wlc`, `sed`,
/// `nq`, `sh`, `dh` or `mh`.
pub const SCHEDULER_ANNOTATION: &str = "pontifex.io/scheduler";

/// Pod annotation giving the pod's weight in every Service it backs (an integer 0–65535).
pub const WEIGHT_ANNOTATION: &str = "pontifex.io/weight";

/// IPVS's largest weight (`ipvsadm -w`: 0–65535).
const MAX_WEIGHT: u32 = 65_535;

/// What the conversion needs beyond the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// This node's addresses; NodePorts listen on those of the service's family.
    pub node_ips: Vec<IpAddr>,
    /// The scheduler of Services without a (valid) annotation.
    pub default_scheduler: SchedulerKind,
    /// Schedulers chosen by annotation ([`scheduler_of`]), by Service.
    pub schedulers: BTreeMap<ServiceKey, SchedulerKind>,
    /// Weights of annotated pods ([`pod_weights`]), by pod IP.
    pub weights: HashMap<IpAddr, u32>,
}

/// The scheduler a Service asks for: `Ok(None)` without the annotation, an error for a name that is
/// not one of IPVS's (the caller logs it and uses the default).
pub fn scheduler_of(svc: &Service) -> Result<Option<SchedulerKind>, BalanceError> {
    svc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEDULER_ANNOTATION))
        .map(|v| v.parse())
        .transpose()
}

/// The weight a pod asks for, paired with each of its IPs; empty without a valid annotation (a value
/// that is not an integer in 0–65535 is ignored: the pod weighs 1).
pub fn pod_weights(pod: &Pod) -> Vec<(IpAddr, u32)> {
    let Some(weight) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(WEIGHT_ANNOTATION))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|w| *w <= MAX_WEIGHT)
    else {
        return Vec::new();
    };
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.trim().parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            status
                .pod_ip
                .as_deref()
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok()),
        );
    }
    ips.into_iter().map(|ip| (ip, weight)).collect()
}

/// The userspace proxy's snapshot of `snap`, sorted by protocol and address. When two service ports
/// claim the same protocol and address (a node address that is also some Service's external IP),
/// the first in model order keeps it, so the outcome does not depend on hash order.
pub fn to_snapshot(snap: &ProxySnapshot, opts: &ConvertOptions) -> Snapshot {
    let mut services = Vec::new();
    let mut taken = HashSet::new();
    for (name, svc) in &snap.services {
        let protocol = match name.protocol {
            model::Protocol::Tcp => Protocol::Tcp,
            model::Protocol::Udp => Protocol::Udp,
            model::Protocol::Sctp => continue,
        };
        let scheduler = opts
            .schedulers
            .get(&name.service)
            .copied()
            .unwrap_or(opts.default_scheduler)
            .name()
            .to_owned();
        let affinity_timeout = svc
            .affinity_timeout
            .map(|s| Duration::from_secs(u64::from(s)));
        for family in [IpFamily::V4, IpFamily::V6] {
            let Some(view) = snap.family_view(name, svc, family) else {
                continue;
            };
            let weigh = |eps: &[Endpoint]| -> Vec<(SocketAddr, u32)> {
                eps.iter()
                    .map(|e| (e.addr(), opts.weights.get(&e.ip).copied().unwrap_or(1)))
                    .collect()
            };
            let cat = &view.categorized;
            let internal = weigh(if svc.internal_policy_local {
                &cat.local
            } else {
                &cat.cluster
            });
            let external = weigh(if svc.external_policy_local {
                &cat.local
            } else {
                &cat.cluster
            });
            let mut add = |listen: SocketAddr,
                           endpoints: &Vec<(SocketAddr, u32)>,
                           source_ranges: &[ipnet::IpNet]| {
                if taken.insert((protocol, listen)) {
                    services.push(VirtualService {
                        listen,
                        protocol,
                        scheduler: scheduler.clone(),
                        affinity_timeout,
                        endpoints: endpoints.clone(),
                        source_ranges: source_ranges.to_vec(),
                    });
                }
            };
            add(SocketAddr::new(view.cluster_ip, svc.port), &internal, &[]);
            if svc.node_port != 0 {
                for ip in opts.node_ips.iter().filter(|ip| IpFamily::of(ip) == family) {
                    add(SocketAddr::new(*ip, svc.node_port), &external, &[]);
                }
            }
            for ip in &view.external_ips {
                add(SocketAddr::new(*ip, svc.port), &external, &[]);
            }
            let lb_sources = lb_sources(&view, opts, family);
            for ip in &view.lb_ips {
                add(SocketAddr::new(*ip, svc.port), &external, &lb_sources);
            }
        }
    }
    services.sort_by_key(|s| (s.protocol, s.listen));
    Snapshot { services }
}

/// Who may reach a load-balancer IP of `view`: its `loadBalancerSourceRanges` (empty: everyone),
/// plus — when the node's own address of this family (the first given, kube-proxy's `nodeIP`) lies
/// in one of them — the service's load-balancer IPs themselves, as kube-proxy's firewall chain
/// does: the LB IPs are local, so a client on the node reaching one has it as its source.
fn lb_sources(view: &FamilyView, opts: &ConvertOptions, family: IpFamily) -> Vec<ipnet::IpNet> {
    let mut sources = view.source_ranges.clone();
    if sources.is_empty() {
        return sources;
    }
    let node_ip = opts.node_ips.iter().find(|ip| IpFamily::of(ip) == family);
    if node_ip.is_some_and(|ip| view.source_ranges.iter().any(|n| n.contains(ip))) {
        sources.extend(view.lb_ips.iter().map(|ip| ipnet::IpNet::from(*ip)));
    }
    sources
}

/// The addresses the node must hold locally for the proxy to bind its services (ClusterIPs,
/// external IPs, load-balancer IPs): everything `to_snapshot` listens on except the node's own
/// addresses. kube-proxy's IPVS mode puts the same set on its `kube-ipvs0` dummy device.
pub fn local_service_ips(snapshot: &Snapshot, opts: &ConvertOptions) -> BTreeSet<IpAddr> {
    snapshot
        .services
        .iter()
        .map(|s| s.listen.ip())
        .filter(|ip| !opts.node_ips.contains(ip))
        .collect()
}

#[cfg(test)]
mod tests;

//! Which ingress IP each LoadBalancer Service gets from `--lb-pool`: its `spec.loadBalancerIP` when
//! that is a free host address of the pool, else the lowest free one (the pool's network and
//! broadcast addresses are never handed out). The allocation is rebuilt from the Services' own
//! `status.loadBalancer.ingress` every time, so it is stable across resyncs and restarts, and a
//! deleted Service's IP is free again. A Service that stops being ours (another type or class) has its
//! pool IP cleared.
//!
//! Not here: the `service.kubernetes.io/load-balancer-cleanup` finalizer, IPv6, several pools,
//! announcing the IPs (the node agent's job).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Service;

/// The `spec.loadBalancerClass` this allocator answers to (besides none).
pub(crate) const CLASS: &str = "pontifex.io/lb-pool";

/// What the loop should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Set `status.loadBalancer.ingress` to `[{ip}]`; record IPAllocated.
    Assign {
        namespace: String,
        name: String,
        ip: Ipv4Addr,
    },
    /// Record AllocationFailed with `message`.
    Fail {
        namespace: String,
        name: String,
        message: String,
    },
    /// Clear `status.loadBalancer` (the Service is no longer ours).
    Release { namespace: String, name: String },
}

type Key = (String, String);

fn key(s: &Service) -> Key {
    (
        s.metadata.namespace.clone().unwrap_or_default(),
        s.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether the pool serves `s`.
pub(crate) fn ours(s: &Service) -> bool {
    let Some(spec) = &s.spec else { return false };
    spec.type_.as_deref() == Some("LoadBalancer")
        && spec
            .load_balancer_class
            .as_deref()
            .is_none_or(|c| c == CLASS)
}

/// The IPv4 ingress IPs in a Service's status.
fn ingress_ips(s: &Service) -> Vec<Ipv4Addr> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// A host address of the pool (not its network or broadcast address, for pools larger than /31).
fn usable(pool: Ipv4Net, ip: Ipv4Addr) -> bool {
    pool.contains(&ip)
        && (pool.prefix_len() >= 31 || (ip != pool.network() && ip != pool.broadcast()))
}

/// One action per Service that needs one. `pending` holds assignments this process made that the
/// informer has not shown yet; `failed` the Services already told allocation failed (and why).
pub(crate) fn reconcile(
    pool: Ipv4Net,
    services: &[Service],
    pending: &BTreeMap<Key, Ipv4Addr>,
    failed: &BTreeMap<Key, String>,
) -> Vec<Action> {
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by_key(|s| (s.metadata.creation_timestamp.as_ref().map(|t| t.0), key(s)));
    let mut used: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut out = Vec::new();
    let mut todo: Vec<&Service> = Vec::new();
    for s in &services {
        let ips = ingress_ips(s);
        let in_pool = ips.iter().any(|ip| pool.contains(ip));
        if !ours(s) {
            if in_pool {
                let (namespace, name) = key(s);
                out.push(Action::Release { namespace, name });
            }
            continue;
        }
        // The oldest holder of an address keeps it; a later duplicate is reassigned.
        match ips.iter().find(|ip| usable(pool, **ip)) {
            Some(ip) if used.insert(*ip) => {}
            _ => match pending.get(&key(s)) {
                Some(ip) => {
                    used.insert(*ip);
                }
                None => todo.push(s),
            },
        }
    }
    let mut free = pool.hosts().filter(|ip| usable(pool, *ip));
    for s in todo {
        let (namespace, name) = key(s);
        let requested = s
            .spec
            .as_ref()
            .and_then(|sp| sp.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty());
        let result = match requested {
            Some(req) => match req.parse::<Ipv4Addr>() {
                Ok(ip) if usable(pool, ip) && !used.contains(&ip) => Ok(ip),
                Ok(ip) if usable(pool, ip) => Err(format!(
                    "Failed to allocate IP for \"{namespace}/{name}\": \"{ip}\" is already in use"
                )),
                _ => Err(format!(
                    "Failed to allocate IP for \"{namespace}/{name}\": \"{req}\" is not allowed in config"
                )),
            },
            None => free.by_ref().find(|ip| !used.contains(ip)).ok_or_else(|| {
                format!("Failed to allocate IP for \"{namespace}/{name}\": no available IPs")
            }),
        };
        match result {
            Ok(ip) => {
                used.insert(ip);
                out.push(Action::Assign {
                    namespace,
                    name,
                    ip,
                });
            }
            Err(message) => {
                let k = (namespace, name);
                if failed.get(&k) != Some(&message) {
                    out.push(Action::Fail {
                        namespace: k.0,
                        name: k.1,
                        message,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;

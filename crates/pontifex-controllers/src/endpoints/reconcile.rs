//! The Endpoints controller's decision: the core/v1 Endpoints object a selector Service should have
//! (what `kubectl get endpoints` shows), compared with the one it has. Pure: no client, no clock.
//!
//! Follows upstream: ready pods are `addresses`, the others `notReadyAddresses` (terminating pods
//! are left out unless the Service publishes not-ready addresses, which also makes every pod ready);
//! subsets are grouped by port set, addresses sorted by IP; past 1000 addresses the object is
//! truncated (ready addresses kept first) and annotated `endpoints.kubernetes.io/over-capacity:
//! truncated`. The object carries the Service's labels plus `endpointslice.kubernetes.io/skip-mirror`
//! so that mirroring leaves it alone. Services without a selector are not its business, and
//! `default/kubernetes` belongs to the API server.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::endpointslice::pods;

/// The most addresses one Endpoints object holds.
pub(crate) const MAX_CAPACITY: usize = 1000;
/// Annotation on an Endpoints object that was truncated.
pub(crate) const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

/// One write, or none.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    Create(Endpoints),
    /// Replace (carries the observed resourceVersion).
    Update(Endpoints),
    Delete(String),
}

/// Is this Endpoints object one this controller wrote?
pub(crate) fn is_managed(e: &Endpoints) -> bool {
    e.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(pods::SKIP_MIRROR_LABEL))
        .map(String::as_str)
        == Some("true")
}

/// The write for the Service `namespace/name`. `service` is None when it is gone; `pods` are the
/// namespace's pods its selector matches.
pub(crate) fn reconcile(
    namespace: &str,
    name: &str,
    service: Option<&Service>,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
) -> Option<Action> {
    if namespace == "default" && name == "kubernetes" {
        return None;
    }
    let Some(service) = service else {
        return current
            .filter(|e| is_managed(e))
            .map(|_| Action::Delete(name.to_owned()));
    };
    pods::selector(service)?;
    let (subsets, truncated) = subsets(service, pods);
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(pods::SKIP_MIRROR_LABEL.to_owned(), "true".to_owned());
    if pods::is_headless(service) {
        labels.insert(pods::HEADLESS_LABEL.to_owned(), String::new());
    } else {
        labels.remove(pods::HEADLESS_LABEL);
    }
    if let Some(cur) = current {
        let cur_truncated = cur
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(OVER_CAPACITY_ANNOTATION));
        if cur.subsets.as_deref().unwrap_or(&[]) == subsets.as_slice()
            && cur.metadata.labels.as_ref() == Some(&labels)
            && cur_truncated == truncated
        {
            return None;
        }
    }
    let mut annotations: BTreeMap<String, String> = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    match pods::trigger_time(service, pods.iter().map(|p| &**p)) {
        Some(t) => annotations.insert(pods::TRIGGER_TIME_ANNOTATION.to_owned(), t),
        None => annotations.remove(pods::TRIGGER_TIME_ANNOTATION),
    };
    if truncated {
        annotations.insert(OVER_CAPACITY_ANNOTATION.to_owned(), "truncated".to_owned());
    } else {
        annotations.remove(OVER_CAPACITY_ANNOTATION);
    }
    let metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        annotations: (!annotations.is_empty()).then_some(annotations),
        resource_version: current.and_then(|c| c.metadata.resource_version.clone()),
        uid: current.and_then(|c| c.metadata.uid.clone()),
        creation_timestamp: current.and_then(|c| c.metadata.creation_timestamp.clone()),
        ..ObjectMeta::default()
    };
    let endpoints = Endpoints {
        metadata,
        subsets: Some(subsets),
    };
    Some(match current {
        Some(_) => Action::Update(endpoints),
        None => Action::Create(endpoints),
    })
}

/// The one address family an Endpoints object has room for (upstream's
/// `podToEndpointAddressForService`): the Service's primary family; for a Service without
/// `ipFamilies` (written by an old API server), its ClusterIP's, or, headless, the pod's `podIP`'s.
fn family(service: &Service, pod: &Pod) -> &'static str {
    let spec = service.spec.as_ref();
    if let Some(first) = spec
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
    {
        return if first == "IPv6" { "IPv6" } else { "IPv4" };
    }
    let ip = match spec.and_then(|s| s.cluster_ip.as_deref()) {
        Some(ip) if !ip.is_empty() && ip != "None" => Some(ip),
        _ => pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
    };
    match ip.and_then(pods::address_type) {
        Some("IPv6") => "IPv6",
        _ => "IPv4",
    }
}

/// The subsets for `service`, and whether they were truncated.
fn subsets(service: &Service, pods: &[Arc<Pod>]) -> (Vec<EndpointSubset>, bool) {
    let publish = pods::publish_not_ready(service);
    // Subsets by port set: (ports, ready, not ready).
    type Set = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut by_ports: BTreeMap<Vec<(String, i32, String)>, Set> = BTreeMap::new();
    for pod in pods {
        if !pods::should_be_endpoint(pod, publish) {
            continue;
        }
        let family = family(service, pod);
        let Some(ip) = pods::pod_ips(pod)
            .into_iter()
            .find(|ip| pods::address_type(ip) == Some(family))
        else {
            continue;
        };
        let address = EndpointAddress {
            ip,
            hostname: pods::hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(pods::pod_ref(pod)),
        };
        let mut ports: Vec<EndpointPort> = pods::service_ports(service)
            .iter()
            .filter_map(|sp| {
                Some(EndpointPort {
                    name: sp.name.clone().filter(|n| !n.is_empty()),
                    port: pods::resolve_port(pod, sp)?,
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        if ports.is_empty() && !pods::service_ports(service).is_empty() {
            continue; // none of the Service's ports exists on this pod
        }
        ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
        let key = ports
            .iter()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.port,
                    p.protocol.clone().unwrap_or_default(),
                )
            })
            .collect();
        let entry = by_ports
            .entry(key)
            .or_insert_with(|| (ports, Vec::new(), Vec::new()));
        if publish || pods::is_ready(pod) {
            entry.1.push(address);
        } else {
            entry.2.push(address);
        }
    }
    let total: usize = by_ports.values().map(|(_, r, n)| r.len() + n.len()).sum();
    let truncated = total > MAX_CAPACITY;
    let mut sets: Vec<Set> = by_ports.into_values().collect();
    if truncated {
        truncate(&mut sets);
    }
    let subsets = sets
        .into_iter()
        .filter(|(_, r, n)| !r.is_empty() || !n.is_empty())
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
                let uid = |x: &EndpointAddress| x.target_ref.as_ref().and_then(|r| r.uid.clone());
                (a.ip.as_str(), uid(a)).cmp(&(b.ip.as_str(), uid(b)))
            };
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect();
    (subsets, truncated)
}

/// Cut the sets down to [`MAX_CAPACITY`] addresses, ready ones first, each set giving up its share.
fn truncate(
    sets: &mut [(
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    )],
) {
    let ready: usize = sets.iter().map(|s| s.1.len()).sum();
    let (ready_budget, not_ready_budget) = if ready >= MAX_CAPACITY {
        (MAX_CAPACITY, 0)
    } else {
        (ready, MAX_CAPACITY - ready)
    };
    let not_ready: usize = sets.iter().map(|s| s.2.len()).sum();
    share(
        sets.iter_mut().map(|s| &mut s.1).collect(),
        ready,
        ready_budget,
    );
    share(
        sets.iter_mut().map(|s| &mut s.2).collect(),
        not_ready,
        not_ready_budget,
    );
}

/// Shrink `lists` (holding `total` items) to `budget` items, in proportion to their sizes.
fn share(lists: Vec<&mut Vec<EndpointAddress>>, total: usize, budget: usize) {
    if total <= budget {
        return;
    }
    let mut left = budget;
    let n = lists.len();
    for (i, list) in lists.into_iter().enumerate() {
        let keep = if i + 1 == n {
            left
        } else {
            (list.len() * budget / total.max(1)).min(left)
        };
        list.truncate(keep);
        left -= list.len();
    }
}

#[cfg(test)]
mod tests;

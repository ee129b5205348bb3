//! The EndpointSlice controller's decision: from a Service, the pods it selects, their nodes and the
//! slices it already has, the slice writes that make them agree. Pure: no client, no clock.
//!
//! Which pods count and how they look follows upstream `podToEndpoint`: scheduled pods with an IP
//! that have not finished; a terminating pod stays (serving while its Ready is True) but is never
//! ready unless the Service publishes not-ready addresses. Named target ports are resolved per pod,
//! so pods that number a port differently land in different slices. The placement itself is
//! [`super::placement::place`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::placement::{Action, Desired, Group, place};
use super::pods;

/// The `managed-by` value of this controller's slices.
pub(crate) const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";

/// What one pass sees.
#[derive(Debug)]
pub(crate) struct Input<'a> {
    pub(crate) service: &'a Service,
    /// Pods of the Service's namespace that its selector matches.
    pub(crate) pods: &'a [Arc<Pod>],
    /// The zone label of each node that has one.
    pub(crate) zones: &'a BTreeMap<String, String>,
    /// This Service's slices managed by this controller.
    pub(crate) slices: &'a [Arc<EndpointSlice>],
    pub(crate) max_per_slice: usize,
}

/// The writes for one Service; nothing for a Service without a selector (mirroring's business).
pub(crate) fn reconcile(input: &Input<'_>) -> Vec<Action> {
    let service = input.service;
    if pods::selector(service).is_none() {
        return Vec::new();
    }
    let Some(desired) = desired(input) else {
        return Vec::new();
    };
    place(&desired, input.slices)
}

/// The labels of a Service's slices: the Service's own, plus who owns and manages them.
pub(crate) fn slice_labels(service: &Service, managed_by: &str) -> BTreeMap<String, String> {
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.remove(pods::HEADLESS_LABEL);
    labels.insert(
        pods::SERVICE_NAME_LABEL.to_owned(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(pods::MANAGED_BY_LABEL.to_owned(), managed_by.to_owned());
    if pods::is_headless(service) {
        labels.insert(pods::HEADLESS_LABEL.to_owned(), String::new());
    }
    labels
}

fn desired(input: &Input<'_>) -> Option<Desired> {
    let service = input.service;
    let name = service.metadata.name.clone()?;
    let uid = service.metadata.uid.clone()?;
    let address_types = pods::service_address_types(service);
    let publish = pods::publish_not_ready(service);
    let mut pods_sorted: Vec<&Pod> = input
        .pods
        .iter()
        .map(|p| &**p)
        .filter(|p| pods::should_be_endpoint(p, true))
        .collect();
    pods_sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));

    // Grouped by (address type, resolved ports), in first-seen order.
    let mut groups: Vec<Group> = Vec::new();
    for pod in &pods_sorted {
        let ports: Vec<EndpointPort> = pods::service_ports(service)
            .iter()
            .filter_map(|sp| {
                let port = pods::resolve_port(pod, sp)?;
                Some(EndpointPort {
                    name: Some(sp.name.clone().unwrap_or_default()),
                    port: Some(port),
                    protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                    app_protocol: sp.app_protocol.clone(),
                })
            })
            .collect();
        let serving = publish || pods::is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let ready = publish || (serving && !terminating);
        let ips = pods::pod_ips(pod);
        for &address_type in &address_types {
            let addresses: Vec<String> = ips
                .iter()
                .filter(|ip| pods::address_type(ip) == Some(address_type))
                .cloned()
                .collect();
            if addresses.is_empty() {
                continue;
            }
            let spec = pod.spec.as_ref();
            let node = spec.and_then(|s| s.node_name.clone());
            let endpoint = Endpoint {
                addresses,
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    serving: Some(serving),
                    terminating: Some(terminating),
                }),
                hostname: pods::hostname(pod, service),
                zone: node.as_ref().and_then(|n| input.zones.get(n)).cloned(),
                node_name: node,
                target_ref: Some(pods::pod_ref(pod)),
                ..Endpoint::default()
            };
            match groups
                .iter_mut()
                .find(|g| g.address_type == address_type && g.ports == ports)
            {
                Some(g) => g.endpoints.push(endpoint),
                None => groups.push(Group {
                    address_type,
                    ports: ports.clone(),
                    endpoints: vec![endpoint],
                }),
            }
        }
    }
    Some(Desired {
        namespace: service.metadata.namespace.clone().unwrap_or_default(),
        generate_name: format!("{name}-"),
        labels: slice_labels(service, CONTROLLER_NAME),
        owner: OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Service".to_owned(),
            name,
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        address_types,
        groups,
        trigger_time: pods::trigger_time(service, pods_sorted.iter().copied()),
        max_per_slice: input.max_per_slice,
    })
}

/// Ready and not-ready endpoints, counted over a Service's slices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ready: usize,
    pub(crate) not_ready: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ready, {} not ready", self.ready, self.not_ready)
    }
}

fn count<'a>(slices: impl Iterator<Item = &'a EndpointSlice>) -> Counts {
    let mut c = Counts::default();
    for e in slices.flat_map(|s| &s.endpoints) {
        // A missing `ready` condition means ready (the API's own reading of it).
        if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
            c.not_ready += 1;
        } else {
            c.ready += 1;
        }
    }
    c
}

/// The endpoint counts of `slices` before and after `actions` are applied to them, for the
/// "endpoints changed" Event.
pub(crate) fn counts_before_after(
    slices: &[Arc<EndpointSlice>],
    actions: &[Action],
) -> (Counts, Counts) {
    let before = count(slices.iter().map(|s| &**s));
    let mut after: Vec<&EndpointSlice> = slices.iter().map(|s| &**s).collect();
    for a in actions {
        match a {
            Action::Create(s) => after.push(s),
            Action::Update(s) => {
                after.retain(|o| o.metadata.name != s.metadata.name);
                after.push(s);
            }
            Action::Delete(name) => after.retain(|o| o.metadata.name.as_ref() != Some(name)),
        }
    }
    (before, count(after.into_iter()))
}

#[cfg(test)]
mod tests;

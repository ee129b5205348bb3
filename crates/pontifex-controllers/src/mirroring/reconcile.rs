//! The EndpointSlice mirroring controller's decision: a Service without a selector whose Endpoints
//! were written by hand (no `endpointslice.kubernetes.io/skip-mirror` label) gets EndpointSlices
//! mirroring them, managed by `endpointslicemirroring-controller.k8s.io`; when the Service gets a
//! selector, or the Endpoints or the Service goes, the mirrored slices go. Pure: no client, no clock.
//!
//! As upstream: one slice set per address type and port set, ready addresses become ready endpoints
//! and not-ready ones not ready, invalid IPs are skipped, and the slices are owned by the Endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::endpointslice::placement::{Action, Desired, Group, place};
use crate::endpointslice::pods;

/// The `managed-by` value of mirrored slices.
pub(crate) const CONTROLLER_NAME: &str = "endpointslicemirroring-controller.k8s.io";
/// Upstream's `--mirroring-max-endpoints-per-subset` default.
pub(crate) const MAX_PER_SLICE: usize = 1000;

/// Should this Service's Endpoints be mirrored at all?
pub(crate) fn should_mirror(service: Option<&Service>, endpoints: Option<&Endpoints>) -> bool {
    let (Some(service), Some(endpoints)) = (service, endpoints) else {
        return false;
    };
    let skip = endpoints
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(pods::SKIP_MIRROR_LABEL))
        .is_some_and(|v| v == "true");
    pods::selector(service).is_none() && !skip
}

/// The writes for one Service name: `slices` are the mirrored slices that name it.
pub(crate) fn reconcile(
    service: Option<&Service>,
    endpoints: Option<&Endpoints>,
    slices: &[Arc<EndpointSlice>],
) -> Vec<Action> {
    let (Some(service), Some(endpoints)) = (service, endpoints) else {
        return delete_all(slices);
    };
    if !should_mirror(Some(service), Some(endpoints)) {
        return delete_all(slices);
    }
    let Some(desired) = desired(service, endpoints) else {
        return delete_all(slices);
    };
    place(&desired, slices)
}

fn delete_all(slices: &[Arc<EndpointSlice>]) -> Vec<Action> {
    slices
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .map(Action::Delete)
        .collect()
}

fn desired(service: &Service, endpoints: &Endpoints) -> Option<Desired> {
    let name = endpoints.metadata.name.clone()?;
    let uid = endpoints.metadata.uid.clone()?;
    let mut groups: Vec<Group> = Vec::new();
    let mut types: Vec<&'static str> = Vec::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset
            .not_ready_addresses
            .iter()
            .flatten()
            .map(|a| (a, false));
        for (address, is_ready) in ready.chain(not_ready) {
            let Some(address_type) = pods::address_type(&address.ip) else {
                continue;
            };
            if !types.contains(&address_type) {
                types.push(address_type);
            }
            let endpoint = Endpoint {
                addresses: vec![address.ip.clone()],
                conditions: Some(EndpointConditions {
                    ready: Some(is_ready),
                    ..EndpointConditions::default()
                }),
                hostname: address.hostname.clone(),
                node_name: address.node_name.clone(),
                target_ref: address.target_ref.clone(),
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
    if types.is_empty() {
        types = pods::service_address_types(service);
    }
    let mut labels: BTreeMap<String, String> =
        endpoints.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        pods::SERVICE_NAME_LABEL.to_owned(),
        service.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(
        pods::MANAGED_BY_LABEL.to_owned(),
        CONTROLLER_NAME.to_owned(),
    );
    let trigger_time = endpoints
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(pods::TRIGGER_TIME_ANNOTATION))
        .cloned();
    Some(Desired {
        namespace: endpoints.metadata.namespace.clone().unwrap_or_default(),
        generate_name: format!("{name}-"),
        labels,
        owner: OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Endpoints".to_owned(),
            name,
            uid,
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
        address_types: types,
        groups,
        trigger_time,
        max_per_slice: MAX_PER_SLICE,
    })
}

#[cfg(test)]
mod tests;

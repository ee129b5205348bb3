//! What the Endpoints and EndpointSlice controllers both ask of a Pod: is it an endpoint at all, is it
//! ready, which port number does a Service port's `targetPort` name on it, which hostname does it
//! publish. Pure functions over the API types.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Label on Endpoints the Endpoints controller writes, so that mirroring leaves them alone.
pub(crate) const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Label naming the Service an EndpointSlice belongs to.
pub(crate) const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Label naming the controller that manages an EndpointSlice.
pub(crate) const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// Label on the endpoints of headless Services.
pub(crate) const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Annotation: when the change that this write reflects happened.
pub(crate) const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Node label carrying the node's zone.
pub(crate) const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Is `pod` an endpoint at all: scheduled, has an IP, not finished; terminating pods only when
/// `include_terminating`.
pub(crate) fn should_be_endpoint(pod: &Pod, include_terminating: bool) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if pod_ips(pod).is_empty() || !scheduled {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// The pod's IPs, `status.podIPs` or else `status.podIP`.
pub(crate) fn pod_ips(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let listed: Vec<String> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.clone())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status
        .pod_ip
        .iter()
        .filter(|ip| !ip.is_empty())
        .cloned()
        .collect()
}

/// The pod's Ready condition is True.
pub(crate) fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// When the pod last changed in a way endpoints care about (its Ready condition's transition).
pub(crate) fn change_time(pod: &Pod) -> Option<jiff::Timestamp> {
    ready_condition(pod)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// The latest change among the Service and its pods: the trigger-time annotation's value.
pub(crate) fn trigger_time<'a>(
    service: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
) -> Option<String> {
    let svc = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.into_iter()
        .filter_map(change_time)
        .chain(svc)
        .max()
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// The port `service_port` reaches on `pod`: a numbered targetPort as is, a named one looked up in
/// the pod's containerPorts (same protocol); None when the pod has no port of that name.
pub(crate) fn resolve_port(pod: &Pod, service_port: &ServicePort) -> Option<i32> {
    match &service_port.target_port {
        None => Some(service_port.port),
        Some(IntOrString::Int(0)) => Some(service_port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let protocol = service_port.protocol.as_deref().unwrap_or("TCP");
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The hostname the pod publishes under `service`: set when its `hostname` is set and its
/// `subdomain` names the Service (same namespace).
pub(crate) fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| host.to_owned())
}

/// A reference to `pod`, as endpoints carry it.
pub(crate) fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".to_owned()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..ObjectReference::default()
    }
}

/// Does `labels` satisfy the equality selector `selector` (Service selectors are plain maps)?
pub(crate) fn selects(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The Service's selector, if it has a non-empty one (Services without one are not the
/// selector-driven controllers' business).
pub(crate) fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// Whether the Service is headless (`clusterIP: None`).
pub(crate) fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether not-ready pods are published as ready.
pub(crate) fn publish_not_ready(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

/// The Service's ports (empty when none).
pub(crate) fn service_ports(service: &Service) -> &[ServicePort] {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

/// `IPv4` or `IPv6` for an address, None if it does not parse.
pub(crate) fn address_type(ip: &str) -> Option<&'static str> {
    match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(_) => Some("IPv4"),
        std::net::IpAddr::V6(_) => Some("IPv6"),
    }
}

/// The address types a Service's endpoints have: its `ipFamilies`; else its ClusterIP's family;
/// else (headless without families) both.
pub(crate) fn service_address_types(service: &Service) -> Vec<&'static str> {
    let spec = service.spec.as_ref();
    let families: Vec<&'static str> = spec
        .and_then(|s| s.ip_families.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|f| match f.as_str() {
            "IPv4" => Some("IPv4"),
            "IPv6" => Some("IPv6"),
            _ => None,
        })
        .collect();
    if !families.is_empty() {
        return families;
    }
    match spec
        .and_then(|s| s.cluster_ip.as_deref())
        .and_then(address_type)
    {
        Some(t) => vec![t],
        None => vec!["IPv4", "IPv6"],
    }
}

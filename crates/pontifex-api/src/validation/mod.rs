//! Validation, as the real API server does it (`pkg/apis/*/validation`): each function returns every
//! field error of an object, with the paths and messages Kubernetes uses. `old` is the stored object on
//! update. Objects are validated after defaulting, as upstream does; checks that need the store (cluster IP
//! and node port ranges, allocation) belong to the API server's admission, not here.

mod apps;
pub(crate) mod common;
mod core;
mod endpoints;
mod networking;
mod pod;
mod service;

pub(crate) use service::externally_accessible;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};

use crate::field::ErrorList;

pub(crate) fn namespace(new: &Namespace, old: Option<&Namespace>) -> ErrorList {
    core::namespace(new, old)
}

pub(crate) fn node(new: &Node, old: Option<&Node>) -> ErrorList {
    core::node(new, old)
}

pub(crate) fn pod(new: &Pod, old: Option<&Pod>) -> ErrorList {
    pod::validate(new, old)
}

pub(crate) fn service(new: &Service, old: Option<&Service>) -> ErrorList {
    service::validate(new, old)
}

/// `ValidateServiceClusterIPsRelatedFields` alone: clusterIP(s), ipFamilies and ipFamilyPolicy.
pub(crate) fn service_cluster_ips(spec: &k8s_openapi::api::core::v1::ServiceSpec) -> ErrorList {
    service::cluster_ips_related(spec)
}

pub(crate) fn endpoints(new: &Endpoints, old: Option<&Endpoints>) -> ErrorList {
    endpoints::endpoints(new, old)
}

pub(crate) fn secret(new: &Secret, old: Option<&Secret>) -> ErrorList {
    core::secret(new, old)
}

pub(crate) fn config_map(new: &ConfigMap, old: Option<&ConfigMap>) -> ErrorList {
    core::config_map(new, old)
}

pub(crate) fn event(new: &Event, old: Option<&Event>) -> ErrorList {
    core::event(new, old)
}

pub(crate) fn endpoint_slice(new: &EndpointSlice, old: Option<&EndpointSlice>) -> ErrorList {
    endpoints::endpoint_slice(new, old)
}

pub(crate) fn deployment(new: &Deployment, old: Option<&Deployment>) -> ErrorList {
    apps::deployment(new, old)
}

pub(crate) fn replica_set(new: &ReplicaSet, old: Option<&ReplicaSet>) -> ErrorList {
    apps::replica_set(new, old)
}

pub(crate) fn ingress(new: &Ingress, old: Option<&Ingress>) -> ErrorList {
    networking::ingress(new, old)
}

pub(crate) fn ingress_class(new: &IngressClass, old: Option<&IngressClass>) -> ErrorList {
    networking::ingress_class(new, old)
}

pub(crate) fn network_policy(new: &NetworkPolicy, old: Option<&NetworkPolicy>) -> ErrorList {
    networking::network_policy(new, old)
}

pub(crate) fn lease(new: &Lease, old: Option<&Lease>) -> ErrorList {
    core::lease(new, old)
}

#[cfg(test)]
mod tests;

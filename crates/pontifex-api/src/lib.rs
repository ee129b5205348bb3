//! The pure heart of the pontifex API: what kinds exist and how each one is checked, defaulted, patched,
//! selected and printed.
//!
//! Everything here is a synchronous function over values: no sockets, no clock (callers pass "now"),
//! no store. The API server (`pontifex-apiserver`) drives it; the controllers and agents never need it.
//!
//! - [`registry`]: the kinds registry — group, version, kind, resource, scope, short names, categories —
//!   and each kind's strategy (strict decoding, defaulting, validation, table printing, field labels).
//! - [`cidr`]: dual-stack CIDR lists (`--service-cluster-ip-range`, `--cluster-cidr`) and IP families.
//! - [`field`]: field paths and field errors, shaped like Kubernetes' `field.ErrorList`.
//! - [`patch`]: strategic merge patch, JSON merge patch, JSON patch, and apply as an upsert.
//! - [`status`]: API errors and their mapping to a Kubernetes `Status`, in one place.
//! - [`openapi`]: the OpenAPI v3 documents served at `/openapi/v3` (kubectl's validation check and `explain`).
//! - [`protobuf`]: decoding of Kubernetes protobuf request bodies (kubectl's typed clients) into JSON.
//! - [`patch`]: strategic merge patch, JSON merge patch, JSON patch, and server-side apply's merge.
//! - [`selector`]: label and field selectors: parsing, matching, printing.
//! - [`table`]: server-side Table printing (`kubectl get` columns) and `human_duration`.
//!
//! It does not allocate cluster IPs or node ports (that needs the store: see the API server's admission),
//! and it does not know about HTTP.
#![forbid(unsafe_code)]

pub mod cidr;
pub mod field;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod status;
pub mod table;

mod defaults;
mod validation;

/// Kubernetes' `ValidateServiceClusterIPsRelatedFields` on a Service's `spec` (JSON): the checks of
/// `clusterIP`, `clusterIPs`, `ipFamilies` and `ipFamilyPolicy` that need no cluster configuration. The
/// API server runs them before it defaults the IP family fields from its ranges, as upstream does; an
/// undecodable spec yields no errors here (strict decoding reports it).
pub fn validate_service_cluster_ips(spec: &serde_json::Value) -> Vec<field::FieldError> {
    match serde_json::from_value::<k8s_openapi::api::core::v1::ServiceSpec>(spec.clone()) {
        Ok(spec) => validation::service_cluster_ips(&spec),
        Err(_) => Vec::new(),
    }
}

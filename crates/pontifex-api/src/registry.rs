//! The kinds registry: every resource the API serves, described once, with the strategy that checks,
//! defaults and prints it. The API server has one generic REST handler; kinds differ only here.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::field::ErrorList;
use crate::status::ApiError;
use crate::table::Column;
use crate::{defaults, table, validation};

/// One served resource type and everything the generic handler needs to know about it.
#[derive(Debug)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// The plural resource name used in URLs (`services`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Has a `/status` subresource: the main resource ignores status changes and the subresource
    /// changes only status.
    pub status_subresource: bool,
    /// Create ignores any status the client sent (the controllers and agents own it).
    pub reset_status_on_create: bool,
    /// `metadata.generation` is set to 1 on create and bumped on every change outside metadata and status.
    pub tracks_generation: bool,
    /// Field selector labels beyond `metadata.name` and `metadata.namespace`, as (label, JSON pointer).
    pub field_labels: &'static [(&'static str, &'static str)],
    /// The kind-specific behaviour.
    pub strategy: &'static dyn Strategy,
}

impl ResourceType {
    /// `v1` for the core group, `apps/v1` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Has a `/scale` subresource (an `autoscaling/v1` Scale over `spec.replicas`).
    pub fn scale_subresource(&self) -> bool {
        self.group == "apps" && matches!(self.kind, "Deployment" | "ReplicaSet")
    }

    /// `ServiceList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The value of a field selector label on an object, if the label is supported for this kind.
    pub fn field_value(&self, obj: &Value, label: &str) -> Option<String> {
        let pointer = match label {
            "metadata.name" => "/metadata/name",
            "metadata.namespace" => "/metadata/namespace",
            other => self.field_labels.iter().find(|(l, _)| *l == other)?.1,
        };
        Some(match obj.pointer(pointer) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        })
    }
}

/// What a request body decoded to: the normalised object and the unknown fields strict decoding found.
#[derive(Debug)]
pub struct Decoded {
    pub object: Value,
    /// Unknown field paths, as `spec.ports[0].bogus`.
    pub unknown_fields: Vec<String>,
}

/// The per-kind hooks. Implemented once, generically, for every k8s-openapi type that has a [`KindSpec`].
pub trait Strategy: Sync + std::fmt::Debug {
    /// Decode a body into this kind: reports unknown fields, fails with BadRequest on type errors, and
    /// returns the object re-encoded in canonical form (typed field order, unknown fields dropped).
    fn decode(&self, body: &Value) -> Result<Decoded, ApiError>;
    /// Fill in defaults, as the real API server's defaulting does. `object` must have been decoded.
    fn default(&self, object: &mut Value) -> Result<(), ApiError>;
    /// Validate a new object (create) or a change (`old` is the stored object).
    fn validate(&self, object: &Value, old: Option<&Value>) -> Result<ErrorList, ApiError>;
    /// The Table columns, in the real API server's order.
    fn columns(&self) -> &'static [Column];
    /// The cells of one Table row.
    fn cells(&self, object: &Value, now: Timestamp) -> Result<Vec<Value>, ApiError>;
    /// The cells of one Table row, straight from the object's JSON bytes (no intermediate tree: the
    /// fast path for long lists).
    fn cells_from_json(&self, json: &[u8], now: Timestamp) -> Result<Vec<Value>, ApiError>;
}

/// What a kind adds to the generic strategy: defaulting, validation and printing, on the typed object.
pub(crate) trait KindSpec:
    k8s_openapi::Resource + Serialize + DeserializeOwned + Sync + 'static
{
    fn default_fields(&mut self) {}
    fn validate(&self, old: Option<&Self>) -> ErrorList;
    const COLUMNS: &'static [Column];
    fn cells(&self, now: Timestamp) -> Vec<Value>;
}

struct Typed<K>(std::marker::PhantomData<fn() -> K>);

impl<K> std::fmt::Debug for Typed<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Typed")
    }
}

fn typed<K: KindSpec>(v: &Value) -> Result<K, ApiError> {
    K::deserialize(v).map_err(|e| cannot_handle::<K>(&e.to_string()))
}

fn cannot_handle<K: k8s_openapi::Resource>(detail: &str) -> ApiError {
    ApiError::BadRequest(format!(
        "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
        kind = K::KIND,
        version = K::VERSION
    ))
}

fn encode<K: Serialize>(k: &K) -> Result<Value, ApiError> {
    serde_json::to_value(k).map_err(|e| ApiError::Internal(format!("encoding: {e}")))
}

impl<K: KindSpec> Strategy for Typed<K> {
    fn decode(&self, body: &Value) -> Result<Decoded, ApiError> {
        let mut unknown_fields = Vec::new();
        let typed: K =
            serde_ignored::deserialize(body, |path| unknown_fields.push(field_path(&path)))
                .map_err(|e| cannot_handle::<K>(&e.to_string()))?;
        Ok(Decoded {
            object: encode(&typed)?,
            unknown_fields,
        })
    }

    fn default(&self, object: &mut Value) -> Result<(), ApiError> {
        let mut k: K = typed(object)?;
        k.default_fields();
        *object = encode(&k)?;
        Ok(())
    }

    fn validate(&self, object: &Value, old: Option<&Value>) -> Result<ErrorList, ApiError> {
        let new: K = typed(object)?;
        let old: Option<K> = old.map(typed).transpose()?;
        Ok(new.validate(old.as_ref()))
    }

    fn columns(&self) -> &'static [Column] {
        K::COLUMNS
    }

    fn cells(&self, object: &Value, now: Timestamp) -> Result<Vec<Value>, ApiError> {
        Ok(typed::<K>(object)?.cells(now))
    }

    fn cells_from_json(&self, json: &[u8], now: Timestamp) -> Result<Vec<Value>, ApiError> {
        let k: K = serde_json::from_slice(json).map_err(|e| cannot_handle::<K>(&e.to_string()))?;
        Ok(k.cells(now))
    }
}

/// serde_ignored names list elements `ports.0`; Kubernetes says `ports[0]`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

macro_rules! kind_spec {
    ($ty:ty, $default:path, $validate:path, $columns:path, $cells:path) => {
        impl KindSpec for $ty {
            fn default_fields(&mut self) {
                $default(self)
            }
            fn validate(&self, old: Option<&Self>) -> ErrorList {
                $validate(self, old)
            }
            const COLUMNS: &'static [Column] = $columns;
            fn cells(&self, now: Timestamp) -> Vec<Value> {
                $cells(self, now)
            }
        }
    };
}

kind_spec!(
    Namespace,
    defaults::namespace,
    validation::namespace,
    table::NAMESPACE,
    table::namespace
);
kind_spec!(
    Node,
    defaults::node,
    validation::node,
    table::NODE,
    table::node
);
kind_spec!(Pod, defaults::pod, validation::pod, table::POD, table::pod);
kind_spec!(
    Service,
    defaults::service,
    validation::service,
    table::SERVICE,
    table::service
);
kind_spec!(
    Endpoints,
    defaults::endpoints,
    validation::endpoints,
    table::ENDPOINTS,
    table::endpoints
);
kind_spec!(
    Secret,
    defaults::secret,
    validation::secret,
    table::SECRET,
    table::secret
);
kind_spec!(
    ConfigMap,
    defaults::config_map,
    validation::config_map,
    table::CONFIG_MAP,
    table::config_map
);
kind_spec!(
    Event,
    defaults::event,
    validation::event,
    table::EVENT,
    table::event
);
kind_spec!(
    EndpointSlice,
    defaults::endpoint_slice,
    validation::endpoint_slice,
    table::ENDPOINT_SLICE,
    table::endpoint_slice
);
kind_spec!(
    Deployment,
    defaults::deployment,
    validation::deployment,
    table::DEPLOYMENT,
    table::deployment
);
kind_spec!(
    ReplicaSet,
    defaults::replica_set,
    validation::replica_set,
    table::REPLICA_SET,
    table::replica_set
);
kind_spec!(
    Ingress,
    defaults::ingress,
    validation::ingress,
    table::INGRESS,
    table::ingress
);
kind_spec!(
    IngressClass,
    defaults::ingress_class,
    validation::ingress_class,
    table::INGRESS_CLASS,
    table::ingress_class
);
kind_spec!(
    NetworkPolicy,
    defaults::network_policy,
    validation::network_policy,
    table::NETWORK_POLICY,
    table::network_policy
);
kind_spec!(
    Lease,
    defaults::lease,
    validation::lease,
    table::LEASE,
    table::lease
);

/// Build one registry entry from a k8s-openapi type; only the facts the type does not carry are given.
macro_rules! resource {
    ($ty:ty, singular: $singular:literal, namespaced: $ns:literal, short: $short:expr, categories: $cat:expr,
     status: $status:literal, reset: $reset:literal, generation: $gen:literal, fields: $fields:expr) => {
        ResourceType {
            group: <$ty as k8s_openapi::Resource>::GROUP,
            version: <$ty as k8s_openapi::Resource>::VERSION,
            kind: <$ty as k8s_openapi::Resource>::KIND,
            plural: <$ty as k8s_openapi::Resource>::URL_PATH_SEGMENT,
            singular: $singular,
            namespaced: $ns,
            short_names: $short,
            categories: $cat,
            status_subresource: $status,
            reset_status_on_create: $reset,
            tracks_generation: $gen,
            field_labels: $fields,
            strategy: &Typed::<$ty>(std::marker::PhantomData),
        }
    };
}

/// Every kind the API serves, in discovery order. Nodes keep the status they register with (the kubelet
/// sends it); every other kind with a status subresource starts without one.
pub static RESOURCES: &[ResourceType] = &[
    resource!(Namespace, singular: "namespace", namespaced: false, short: &["ns"], categories: &[],
        status: true, reset: true, generation: false, fields: &[("status.phase", "/status/phase")]),
    resource!(Node, singular: "node", namespaced: false, short: &["no"], categories: &[],
        status: true, reset: false, generation: false, fields: &[("spec.unschedulable", "/spec/unschedulable")]),
    resource!(Pod, singular: "pod", namespaced: true, short: &["po"], categories: &["all"],
    status: true, reset: true, generation: false, fields: &[
        ("spec.nodeName", "/spec/nodeName"),
        ("spec.restartPolicy", "/spec/restartPolicy"),
        ("spec.schedulerName", "/spec/schedulerName"),
        ("spec.serviceAccountName", "/spec/serviceAccountName"),
        ("spec.hostNetwork", "/spec/hostNetwork"),
        ("status.phase", "/status/phase"),
        ("status.podIP", "/status/podIP"),
        ("status.nominatedNodeName", "/status/nominatedNodeName"),
    ]),
    resource!(Service, singular: "service", namespaced: true, short: &["svc"], categories: &["all"],
        status: true, reset: true, generation: false, fields: &[("spec.clusterIP", "/spec/clusterIP"), ("spec.type", "/spec/type")]),
    resource!(Endpoints, singular: "endpoints", namespaced: true, short: &["ep"], categories: &[],
        status: false, reset: false, generation: false, fields: &[]),
    resource!(Secret, singular: "secret", namespaced: true, short: &[], categories: &[],
        status: false, reset: false, generation: false, fields: &[("type", "/type")]),
    resource!(ConfigMap, singular: "configmap", namespaced: true, short: &["cm"], categories: &[],
        status: false, reset: false, generation: false, fields: &[]),
    resource!(Event, singular: "event", namespaced: true, short: &["ev"], categories: &[],
    status: false, reset: false, generation: false, fields: &[
        ("involvedObject.kind", "/involvedObject/kind"),
        ("involvedObject.namespace", "/involvedObject/namespace"),
        ("involvedObject.name", "/involvedObject/name"),
        ("involvedObject.uid", "/involvedObject/uid"),
        ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
        ("involvedObject.resourceVersion", "/involvedObject/resourceVersion"),
        ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
        ("reason", "/reason"),
        ("reportingComponent", "/reportingComponent"),
        ("source", "/source/component"),
        ("type", "/type"),
    ]),
    resource!(EndpointSlice, singular: "endpointslice", namespaced: true, short: &[], categories: &[],
        status: false, reset: false, generation: false, fields: &[("addressType", "/addressType")]),
    resource!(Deployment, singular: "deployment", namespaced: true, short: &["deploy"], categories: &["all"],
        status: true, reset: true, generation: true, fields: &[]),
    resource!(ReplicaSet, singular: "replicaset", namespaced: true, short: &["rs"], categories: &["all"],
        status: true, reset: true, generation: true, fields: &[]),
    resource!(Ingress, singular: "ingress", namespaced: true, short: &["ing"], categories: &[],
        status: true, reset: true, generation: true, fields: &[]),
    resource!(IngressClass, singular: "ingressclass", namespaced: false, short: &[], categories: &[],
        status: false, reset: false, generation: true, fields: &[]),
    resource!(NetworkPolicy, singular: "networkpolicy", namespaced: true, short: &["netpol"], categories: &[],
        status: false, reset: false, generation: true, fields: &[]),
    resource!(Lease, singular: "lease", namespaced: true, short: &[], categories: &[],
        status: false, reset: false, generation: false, fields: &[]),
];

/// The groups served, in discovery order, with their one version each.
pub fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in RESOURCES {
        if !out.iter().any(|(g, _)| *g == r.group) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Find a resource by group, version and plural name.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Find a resource by apiVersion and kind, as written in a manifest.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

#[cfg(test)]
mod tests;

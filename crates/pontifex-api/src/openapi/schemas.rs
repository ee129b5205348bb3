//! `components.schemas` of one group-version document, from k8s-openapi's `schemars` schemas.
//!
//! k8s-openapi names every schema with its Kubernetes name (`io.k8s.api.core.v1.Service`), so the
//! generator's definitions are already keyed right. The OpenAPI 3 settings put them under
//! `#/components/schemas/` and rewrite a `$ref` with siblings (a field's description) into
//! `{"allOf":[{"$ref":..}],"description":..}`, which is the real server's shape. What k8s-openapi does
//! not carry is added here: the GVK extensions, `<Kind>List` schemas and enums.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, Pod, Secret, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, Status, WatchEvent};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::registry::ResourceType;

/// Prefix of every reference in a document.
pub(super) const REF_PREFIX: &str = "#/components/schemas/";

pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// A served kind and how to put its schema into a generator.
struct KindSchema {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    add: fn(&mut SchemaGenerator) -> schemars::Schema,
    name: fn() -> std::borrow::Cow<'static, str>,
}

fn add<K: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<K>()
}

macro_rules! kinds {
    ($($ty:ty),* $(,)?) => {
        &[$(KindSchema {
            group: <$ty as k8s_openapi::Resource>::GROUP,
            version: <$ty as k8s_openapi::Resource>::VERSION,
            kind: <$ty as k8s_openapi::Resource>::KIND,
            add: add::<$ty>,
            name: <$ty as JsonSchema>::schema_name,
        }),*]
    };
}

/// The registry holds no Rust types (only a type-erased strategy), so the kinds are listed again
/// here; a test checks that every registry entry has one.
static KINDS: &[KindSchema] = kinds!(
    Namespace,
    Node,
    Pod,
    Service,
    Endpoints,
    Secret,
    ConfigMap,
    Event,
    EndpointSlice,
    Deployment,
    ReplicaSet,
    Ingress,
    IngressClass,
    NetworkPolicy,
    Lease,
);

fn find(group: &str, version: &str, kind: &str) -> Option<&'static KindSchema> {
    KINDS
        .iter()
        .find(|k| k.group == group && k.version == version && k.kind == kind)
}

/// The Kubernetes schema name of a served kind (`io.k8s.api.core.v1.Service`).
pub(super) fn schema_name(group: &str, version: &str, kind: &str) -> Option<String> {
    find(group, version, kind).map(|k| (k.name)().into_owned())
}

/// The schema name of a kind's list (`io.k8s.api.core.v1.ServiceList`).
pub(super) fn list_schema_name(group: &str, version: &str, kind: &str) -> Option<String> {
    schema_name(group, version, kind).map(|n| format!("{n}List"))
}

/// Fields whose Go type is an enum in Kubernetes v1.33 (the real document lists their values under
/// `enum`; k8s-openapi drops them). (schema, property, values); on an array property the values
/// constrain its items.
pub(super) static ENUMS: &[(&str, &str, &[&str])] = &[
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "type",
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "sessionAffinity",
        &["ClientIP", "None"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "externalTrafficPolicy",
        &["Cluster", "Local"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "internalTrafficPolicy",
        &["Cluster", "Local"],
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ipFamilyPolicy",
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
    ),
    (
        "io.k8s.api.core.v1.ServicePort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.ContainerPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.EndpointPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "imagePullPolicy",
        &["Always", "IfNotPresent", "Never"],
    ),
    (
        "io.k8s.api.core.v1.Container",
        "terminationMessagePolicy",
        &["FallbackToLogsOnError", "File"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "restartPolicy",
        &["Always", "Never", "OnFailure"],
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "dnsPolicy",
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "phase",
        &["Failed", "Pending", "Running", "Succeeded", "Unknown"],
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "phase",
        &["Active", "Terminating"],
    ),
    (
        "io.k8s.api.discovery.v1.EndpointSlice",
        "addressType",
        &["FQDN", "IPv4", "IPv6"],
    ),
    (
        "io.k8s.api.discovery.v1.EndpointPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStrategy",
        "type",
        &["Recreate", "RollingUpdate"],
    ),
    (
        "io.k8s.api.networking.v1.HTTPIngressPath",
        "pathType",
        &["Exact", "ImplementationSpecific", "Prefix"],
    ),
    (
        "io.k8s.api.networking.v1.NetworkPolicyPort",
        "protocol",
        &["SCTP", "TCP", "UDP"],
    ),
    (
        "io.k8s.api.networking.v1.NetworkPolicySpec",
        "policyTypes",
        &["Egress", "Ingress"],
    ),
];

/// `components.schemas` for the given resources (all of one group-version): their kinds and
/// everything those reference, their lists, and the meta types the operations reference.
pub(super) fn component_schemas(resources: &[&ResourceType]) -> Map<String, Value> {
    let settings = SchemaSettings::openapi3().with(|s| s.meta_schema = None);
    let mut generator = settings.into_generator();
    let kinds: Vec<&KindSchema> = resources
        .iter()
        .filter_map(|r| find(r.group, r.version, r.kind))
        .collect();
    for k in &kinds {
        (k.add)(&mut generator);
    }
    generator.subschema_for::<ListMeta>();
    generator.subschema_for::<DeleteOptions>();
    generator.subschema_for::<Status>();
    // WatchEvent's schema does not depend on its type parameter (the object is a RawExtension).
    generator.subschema_for::<WatchEvent<Service>>();
    let mut schemas = generator.take_definitions(true);

    for k in &kinds {
        let name = (k.name)().into_owned();
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            // Rust makes `metadata` non-optional, so k8s-openapi lists it as required; the API
            // does not (an object without metadata is refused for its missing name instead).
            if let Some(Value::Array(required)) = schema.get_mut("required") {
                required.retain(|f| f.as_str() != Some("metadata"));
                if required.is_empty() {
                    schema.remove("required");
                }
            }
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                gvk_array(k.group, k.version, k.kind),
            );
        }
        schemas.insert(format!("{name}List"), list_schema(k, &name));
    }
    if let Some(Value::Object(status)) = schemas.get_mut(STATUS) {
        status.insert(
            "x-kubernetes-group-version-kind".into(),
            gvk_array("", "v1", "Status"),
        );
    }
    for (schema, property, values) in ENUMS {
        let Some(prop) = schemas
            .get_mut(*schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(|p| p.get_mut(*property))
        else {
            continue;
        };
        let target = if prop.get("type").and_then(Value::as_str) == Some("array") {
            prop.get_mut("items")
        } else {
            Some(prop)
        };
        if let Some(Value::Object(target)) = target {
            target.insert("enum".into(), json!(values));
        }
    }
    schemas
}

fn gvk_array(group: &str, version: &str, kind: &str) -> Value {
    json!([{ "group": group, "kind": kind, "version": version }])
}

/// `<Kind>List`, which k8s-openapi has no schema for (its `List<T>` is generic).
fn list_schema(k: &KindSchema, item_name: &str) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", k.kind, k.kind),
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "items": {
                "description": format!("List of {} objects.", k.kind),
                "items": { "allOf": [{ "$ref": format!("{REF_PREFIX}{item_name}") }], "default": {} },
                "type": "array",
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {
                "allOf": [{ "$ref": format!("{REF_PREFIX}{LIST_META}") }],
                "default": {},
                "description": "Standard list metadata.",
            },
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": gvk_array(k.group, k.version, &format!("{}List", k.kind)),
    })
}

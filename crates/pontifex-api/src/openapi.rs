//! The OpenAPI v3 documents the API server serves at `/openapi/v3` (the index) and
//! `/openapi/v3/<gv-path>` (one document per served group-version: `api/v1`, `apis/apps/v1`, ...).
//!
//! Two kubectl features depend on them (see `shared/research/kubectl-surface.md` §3, §4, §9):
//!
//! - **Server-side field validation.** Before `create`/`apply` with the default `--validate=strict`,
//!   kubectl scans the group-version document for a PATCH operation whose
//!   `x-kubernetes-group-version-kind` (a single object) names the kind and which lists a
//!   `fieldValidation` query parameter. If it finds one it trusts the server to validate; otherwise it
//!   falls back to client-side validation against `/openapi/v2` protobuf, which we do not serve.
//! - **`kubectl explain`.** It reads `components.schemas`, finds the schema whose
//!   `x-kubernetes-group-version-kind` (an array there) names the kind, and follows `$ref`s.
//!
//! The schemas come from k8s-openapi's `schemars` implementations (descriptions, types, formats,
//! `required`), post-processed into the real server's shape: Kubernetes schema names,
//! `{"allOf":[{"$ref":..}],"description":..}` where a reference carries a description, GVK extensions,
//! `<Kind>List` schemas, and `enum` for the fields whose Go types are enums.
//!
//! Deliberately absent: PATCH `requestBody`. kubectl builds strategic merge patches from the v3
//! schemas only when a PATCH operation accepts `application/strategic-merge-patch+json`; without it
//! kubectl uses its compiled-in Go types, which are exactly right for the built-in kinds. For the same
//! reason no `x-kubernetes-patch-*` extensions are emitted. Also absent: the deprecated `watch/` paths,
//! `deletecollection`, protobuf/YAML response types (we only speak JSON).
//!
//! Each document is built once, lazily, serialized compactly with sorted keys, and carries a content
//! hash; the index links to `/openapi/v3/<gv-path>?hash=<HASH>` as the real server does, so clients
//! may cache a hashed URL forever (the real server answers it with `Cache-Control: public, immutable`
//! and redirects a stale hash to the current one).

use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::registry::{self, RESOURCES};

mod paths;
mod schemas;

/// One served group-version document, serialized once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupVersionDocument {
    gv_path: String,
    json: Vec<u8>,
    hash: String,
}

impl GroupVersionDocument {
    /// `api/v1` or `apis/<group>/<version>`: the part after `/openapi/v3/`.
    pub fn gv_path(&self) -> &str {
        &self.gv_path
    }

    /// The document as compact JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// A stable content hash: 16 upper-case hex digits of FNV-1a 64 over [`Self::json`].
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// `/openapi/v3/<gv-path>?hash=<HASH>`, the URL the index advertises.
    pub fn server_relative_url(&self) -> String {
        format!("/openapi/v3/{}?hash={}", self.gv_path, self.hash)
    }
}

/// The `/openapi/v3` index: `{"paths":{"<gv-path>":{"serverRelativeURL":"/openapi/v3/<gv-path>?hash=.."}}}`,
/// listing exactly the served group-versions.
pub fn index() -> Value {
    let mut paths = Map::new();
    for doc in documents() {
        paths.insert(
            doc.gv_path.clone(),
            json!({ "serverRelativeURL": doc.server_relative_url() }),
        );
    }
    json!({ "paths": paths })
}

/// The document for one group-version path (`api/v1`, `apis/apps/v1`, ...), or `None` if that
/// group-version is not served. Built on first use; later calls are free.
pub fn group_version_document(gv_path: &str) -> Option<&'static GroupVersionDocument> {
    documents().iter().find(|d| d.gv_path == gv_path)
}

/// Every served document, in discovery order.
pub fn documents() -> &'static [GroupVersionDocument] {
    static DOCUMENTS: OnceLock<Vec<GroupVersionDocument>> = OnceLock::new();
    DOCUMENTS.get_or_init(build_documents)
}

/// The `components.schemas` entry for a served kind (e.g. `io.k8s.api.core.v1.Service`). Its `$ref`s
/// point into the same group-version document. Parses the cached document on each call: meant for
/// occasional use, not per request.
pub fn kind_schema(group: &str, version: &str, kind: &str) -> Option<Value> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)?;
    let doc = group_version_document(&gv_path(group, version))?;
    let parsed: Value = serde_json::from_slice(doc.json()).ok()?;
    let name = schemas::schema_name(group, version, kind)?;
    parsed
        .pointer(&format!("/components/schemas/{name}"))
        .cloned()
}

/// `api/v1` for the core group, `apis/<group>/<version>` otherwise.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn build_documents() -> Vec<GroupVersionDocument> {
    registry::groups()
        .into_iter()
        .map(|(group, version)| {
            let doc = build_document(group, version);
            // Serializing a Value cannot fail: every key is a string.
            let json = serde_json::to_vec(&doc).unwrap_or_default();
            let hash = format!("{:016X}", fnv1a64(&json));
            GroupVersionDocument {
                gv_path: gv_path(group, version),
                json,
                hash,
            }
        })
        .collect()
}

fn build_document(group: &str, version: &str) -> Value {
    let resources: Vec<&registry::ResourceType> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    let schemas = schemas::component_schemas(&resources);
    let paths = paths::paths(group, version, &resources);
    let mut doc = json!({
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "BearerToken": {
                    "description": "Bearer token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey",
                },
            },
        },
        "info": { "title": "Kubernetes", "version": "v1.33.0" },
        "openapi": "3.0.0",
        "paths": paths,
        "security": [{ "BearerToken": [] }],
    });
    sort_keys(&mut doc);
    doc
}

/// Sort every object's keys, recursively, as Go's encoder does for maps: the output is then
/// independent of insertion order (serde_json here preserves insertion order).
fn sort_keys(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, mut child) in entries {
                sort_keys(&mut child);
                map.insert(k, child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sort_keys),
        _ => {}
    }
}

/// FNV-1a, 64 bit: a content fingerprint for cache-busting URLs, not a security hash.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests;

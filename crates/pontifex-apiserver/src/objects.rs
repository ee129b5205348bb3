//! How objects live in the store: key layout, the stored form (JSON without `resourceVersion`, which is
//! the store's modification revision and is stamped on every read), and server-owned metadata.

use bytes::Bytes;
use jiff::Timestamp;
use pontifex_api::registry::ResourceType;
use pontifex_api::status::ApiError;
use pontifex_store::{KeyValue, Revision, StoreError};
use serde_json::{Value, json};

/// `/registry/services/` for core kinds, `/registry/apps/deployments/` for the others.
pub(crate) fn base(r: &ResourceType) -> String {
    if r.group.is_empty() {
        format!("/registry/{}/", r.plural)
    } else {
        format!("/registry/{}/{}/", r.group, r.plural)
    }
}

/// The key of one object.
pub(crate) fn key(r: &ResourceType, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/{name}", base(r)),
        _ => format!("{}{name}", base(r)),
    }
}

/// The prefix of a collection: one namespace, or all of them.
pub(crate) fn prefix(r: &ResourceType, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if r.namespaced => format!("{}{ns}/", base(r)),
        _ => base(r),
    }
}

/// Decode a stored object and stamp its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub(crate) fn set_resource_version(obj: &mut Value, rev: Revision) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Append a stored object to `out` with its resourceVersion, without parsing it: the stored form is
/// compact JSON written by [`encode`], so the top-level `"metadata":{` is found by a scan that follows
/// strings and nesting, and `"resourceVersion":"<rev>"` goes right after it. Anything unexpected falls
/// back to a full decode.
pub(crate) fn write_stamped(kv: &KeyValue, out: &mut Vec<u8>) -> Result<(), ApiError> {
    let raw = &kv.value[..];
    match top_level_object_start(raw, b"metadata") {
        Some(at) => {
            out.extend_from_slice(&raw[..at]);
            out.extend_from_slice(b"\"resourceVersion\":\"");
            out.extend_from_slice(kv.mod_revision.to_string().as_bytes());
            out.push(b'"');
            if raw.get(at) != Some(&b'}') {
                out.push(b',');
            }
            out.extend_from_slice(&raw[at..]);
        }
        None => {
            let obj = decode(kv)?;
            serde_json::to_writer(&mut *out, &obj)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
        }
    }
    Ok(())
}

/// The index just inside the `{` of the object value of top-level `key` in compact JSON.
fn top_level_object_start(json: &[u8], key: &[u8]) -> Option<usize> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => {
                // At depth 1 a string followed by `:` is a key; values are never followed by `:`.
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(json.len());
                if depth == 1
                    && &json[start..end] == key
                    && json.get(end + 1..end + 3) == Some(b":{")
                {
                    return Some(end + 3);
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The metadata of a stored object with its resourceVersion, parsing nothing else into a tree.
pub(crate) fn stored_metadata(kv: &KeyValue) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    struct MetadataOnly {
        #[serde(default)]
        metadata: Value,
    }
    let mut only: MetadataOnly = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is not JSON: {e}", kv.key)))?;
    if let Some(meta) = only.metadata.as_object_mut() {
        meta.insert(
            "resourceVersion".into(),
            Value::String(kv.mod_revision.to_string()),
        );
    }
    Ok(only.metadata)
}

/// Whether two versions of an object say the same, ignoring `resourceVersion` and key order (admission
/// and defaulting may add keys in different orders; that is not a change).
pub(crate) fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    // serde_json's map equality ignores order, even with `preserve_order`.
    strip(a) == strip(b)
}

/// The stored form: the object without `resourceVersion`.
pub(crate) fn encode(obj: &Value) -> Bytes {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    Bytes::from(serde_json::to_vec(&obj).unwrap_or_default())
}

pub(crate) fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub(crate) fn name(obj: &Value) -> Option<&str> {
    meta(obj).get("name").and_then(Value::as_str)
}

pub(crate) fn namespace(obj: &Value) -> Option<&str> {
    meta(obj).get("namespace").and_then(Value::as_str)
}

pub(crate) fn resource_version(obj: &Value) -> Option<&str> {
    meta(obj)
        .get("resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    meta(obj)
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// RFC 3339 with second precision, as Kubernetes writes `metav1.Time`.
pub(crate) fn timestamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Add `kind` and `apiVersion`: stored objects carry them, but single-object replies must have them
/// whatever was stored.
pub(crate) fn with_type(mut obj: Value, r: &ResourceType) -> Value {
    if let Some(m) = obj.as_object_mut()
        && !m.contains_key("kind")
    {
        // Keep apiVersion and kind first, as the real server prints them.
        let mut out = serde_json::Map::new();
        out.insert("apiVersion".into(), Value::String(r.api_version()));
        out.insert("kind".into(), Value::String(r.kind.to_owned()));
        out.extend(std::mem::take(m));
        return Value::Object(out);
    }
    obj
}

/// The error for a resourceVersion older than the kept history.
pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { requested, oldest } => {
            ApiError::Expired(format!("too old resource version: {requested} ({oldest})"))
        }
        StoreError::FutureRevision { requested, current } => ApiError::Internal(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        other => ApiError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests;

//! Patches: strategic merge patch, JSON merge patch (RFC 7386), JSON patch (RFC 6902), and a
//! simplified server-side apply — all pure functions over `serde_json::Value`.
//!
//! # Strategic merge patch
//!
//! [`strategic_merge`] follows apimachinery's `strategicpatch.StrategicMergeMapPatch` (the server
//! side, with parallel lists merged and unmatched nulls ignored):
//!
//! - maps merge recursively; `null` deletes a key;
//! - lists tagged `patchStrategy: merge` with a `patchMergeKey` merge element-wise by that key
//!   (a partial element merges into the existing one and keeps its other fields); lists of scalars
//!   tagged `merge` merge as sets; every other list is replaced;
//! - directives: `$patch: replace|delete` in maps and in list elements, `$setElementOrder/<list>`,
//!   `$retainKeys`, `$deleteFromPrimitiveList/<list>`. Other `$patch` values are errors.
//! - the final order of a merge list is upstream's: `$setElementOrder` first, then the patch's order,
//!   then the live order for elements only the server has.
//!
//! Which lists merge comes from [`schema_for`], a hand-written table of the served kinds' struct
//! tags; see [`PatchSchema`].
//!
//! Deviations from upstream, on purpose (upstream hands its result to a typed decoder that hides
//! them; we have no typed step):
//! - a value the patch *adds* (its key is absent from the original) is itself merged into an empty
//!   value, so nulls and directives inside it are resolved rather than stored verbatim;
//! - `$deleteFromPrimitiveList/x` when `x` is absent is a no-op;
//! - a field unknown to the schema is patched without metadata instead of failing the lookup
//!   (upstream returns "unable to find api field" only when both sides hold a map or list there).
//!
//! # Errors and HTTP status
//!
//! [`PatchError::http_status`] gives the code the real API server answers with (see its docs).
//!
//! # Not here
//!
//! Computing patches (kubectl's 2- and 3-way diffs), managed fields, and field ownership conflicts.

use serde_json::{Map, Value};

mod apply;
mod gofmt;
mod schema;
mod strategic;

pub use schema::{PatchSchema, schema_for};

/// The most operations one JSON patch may carry (`maxJSONPatchOperations` upstream).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Why a patch could not be applied. The messages are apimachinery's own, so clients see the same
/// text as from a real API server; [`PatchError::http_status`] gives the code it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The strategic merge patch body is valid JSON but not an object (nor `null`).
    #[error("json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")]
    PatchNotObject {
        /// Go's name for the JSON kind found: `array`, `string`, `number`, `bool`.
        kind: &'static str,
    },
    /// A `$deleteFromPrimitiveList` key is not `$deleteFromPrimitiveList/<field>`.
    #[error("invalid patch format of primitive list")]
    BadPrimitiveListFormat,
    /// `$retainKeys` is not a list, or the patch sets a field the list does not name.
    #[error("invalid patch format of retainKeys")]
    BadRetainKeysFormat,
    /// A `$setElementOrder` key is not `$setElementOrder/<field>`.
    #[error("invalid patch format of setElementOrder list")]
    BadSetElementOrderFormat,
    /// The elements of a patch list appear in another order than in its `$setElementOrder` list, or
    /// the patch list holds an element the order list lacks.
    #[error("The order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}\n")]
    SetElementOrderMismatch { patch: String, order: String },
    /// A `$patch` directive other than `replace` or `delete` (in a map or a list element).
    #[error("unknown patch type: {directive} in map: {map}")]
    UnknownPatchType { directive: String, map: String },
    /// A list element says `$patch: merge`, which upstream has never implemented.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// An element of a keyed merge list (original, patch or `$setElementOrder` list) lacks the key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    MissingMergeKey { map: String, key: String },
    /// A list declared as a set of scalars holds objects, so it has no key to merge them by.
    #[error("cannot merge lists without merge key for type {elem_type}")]
    MergeKeyRequired { elem_type: &'static str },
    /// A list holds lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// The elements of a merge list (original and patch together) are not all of one JSON type.
    #[error("list element types are not identical: {lists}")]
    MixedElementTypes { lists: String },
    /// A value has another JSON type than the patch needs there (e.g. a `$setElementOrder` that is
    /// not a list, a keyed list element that is not an object).
    #[error("expected a {expected}, but received a {actual}")]
    TypeMismatch {
        expected: &'static str,
        actual: &'static str,
    },
    /// An element of a keyed merge list in the original is not an object.
    #[error("value for key {index} is not a map.")]
    NotAMap { index: usize },
    /// A `$setElementOrder` directive names a list that is empty on both sides.
    #[error("no elements in any of the given slices")]
    NoElements,
    /// A JSON patch body is not a list of operation objects.
    #[error("{0}")]
    JsonPatchDecode(String),
    /// A JSON patch operation failed: a `test` did not match, a path does not exist, an operation is
    /// malformed.
    #[error("{0}")]
    JsonPatchApply(String),
    /// A JSON patch has more than [`MAX_JSON_PATCH_OPERATIONS`] operations.
    #[error("The allowed maximum operations in a JSON patch is {limit}, got {got}")]
    TooManyOperations { limit: usize, got: usize },
}

impl PatchError {
    /// The HTTP status the real API server answers with for this error (its
    /// `interpretStrategicMergePatchError` and JSON patch handling):
    ///
    /// - 400 BadRequest: undecodable bodies and malformed directives (`PatchNotObject`,
    ///   `BadPrimitiveListFormat`, `BadRetainKeysFormat`, `BadSetElementOrderFormat`,
    ///   `JsonPatchDecode`);
    /// - 422 (reason `Invalid`): `ListOfLists`, and a JSON patch that fails to apply;
    /// - 413: `TooManyOperations`;
    /// - 500 (reason `Unknown`, message as is): everything else. Upstream returns these errors
    ///   without wrapping them in a `Status`, so its generic error path answers 500 — an unknown
    ///   `$patch` value or a missing merge key really is a 500 there.
    pub fn http_status(&self) -> u16 {
        match self {
            PatchError::PatchNotObject { .. }
            | PatchError::BadPrimitiveListFormat
            | PatchError::BadRetainKeysFormat
            | PatchError::BadSetElementOrderFormat
            | PatchError::JsonPatchDecode(_) => 400,
            PatchError::ListOfLists | PatchError::JsonPatchApply(_) => 422,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::SetElementOrderMismatch { .. }
            | PatchError::UnknownPatchType { .. }
            | PatchError::MergeDirectiveInList
            | PatchError::MissingMergeKey { .. }
            | PatchError::MergeKeyRequired { .. }
            | PatchError::MixedElementTypes { .. }
            | PatchError::TypeMismatch { .. }
            | PatchError::NotAMap { .. }
            | PatchError::NoElements => 500,
        }
    }
}

/// Applies a strategic merge patch to `original` using the patch metadata in `schema`.
///
/// A `null` patch changes nothing (as upstream, which decodes it to an empty map); any other
/// non-object patch is [`PatchError::PatchNotObject`]. An `original` that is not an object is
/// treated as empty.
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    schema: &PatchSchema,
) -> Result<Value, PatchError> {
    let patch = match patch {
        Value::Object(map) => map.clone(),
        Value::Null => return Ok(original.clone()),
        other => {
            return Err(PatchError::PatchNotObject {
                kind: gofmt::json_kind(other),
            });
        }
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    strategic::merge_map(original, patch, schema).map(Value::Object)
}

/// Applies a JSON merge patch (RFC 7386): objects merge recursively, `null` removes a key, anything
/// else (lists included) replaces. A non-object patch replaces the whole document, per the RFC; the
/// caller's decoding then rejects it for an API object.
///
/// Keys keep their order (removals shift rather than swap), so the result reads like the input.
pub fn merge_patch(original: &Value, patch: &Value) -> Value {
    let Value::Object(patch) = patch else {
        return patch.clone();
    };
    let mut result = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if value.is_null() {
            result.shift_remove(key);
        } else {
            let merged = merge_patch(result.get(key).unwrap_or(&Value::Null), value);
            result.insert(key.clone(), merged);
        }
    }
    Value::Object(result)
}

/// Applies a JSON patch (RFC 6902) atomically: either every operation applies or `original` is
/// returned unchanged through the error.
///
/// A body that is not a list of objects is [`PatchError::JsonPatchDecode`] (400); an operation that
/// cannot be decoded (unknown `op`, missing `path`) or fails is [`PatchError::JsonPatchApply`] (422),
/// as upstream, whose decoder accepts any list of objects and fails when applying.
pub fn json_patch(original: &Value, patch_ops: &Value) -> Result<Value, PatchError> {
    let Value::Array(ops) = patch_ops else {
        return Err(PatchError::JsonPatchDecode(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            gofmt::json_kind(patch_ops)
        )));
    };
    if let Some(bad) = ops.iter().find(|op| !op.is_object()) {
        return Err(PatchError::JsonPatchDecode(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
            gofmt::json_kind(bad)
        )));
    }
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            limit: MAX_JSON_PATCH_OPERATIONS,
            got: ops.len(),
        });
    }
    let decoded: json_patch::Patch = serde_json::from_value(patch_ops.clone())
        .map_err(|err| PatchError::JsonPatchApply(err.to_string()))?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &decoded).map_err(|err| {
        let message = match err.kind {
            // evanphx/json-patch's wording, which kubectl users know.
            json_patch::PatchErrorKind::TestFailed => {
                format!("testing value {} failed: test failed", err.path)
            }
            _ => err.to_string(),
        };
        PatchError::JsonPatchApply(message)
    })?;
    Ok(doc)
}

/// Server-side apply as an upsert: merges the applied configuration into the live object.
///
/// - maps merge recursively; a `null` in `applied` removes the field;
/// - lists that the schema marks as keyed merge lists merge element-wise by key: an applied element
///   merges (recursively, by these same rules) into the live element with its key, live elements the
///   applied list does not mention are kept, new elements are added. The order is the applied order,
///   with live-only elements kept at their live position relative to the others (the rule strategic
///   merge patch uses). Scalar sets (`finalizers`) become the union;
/// - every other list, and every scalar, is replaced by the applied value.
///
/// What differs from real server-side apply: there are no managed fields, so nothing is owned —
/// a field removed from the applied configuration is **not** pruned from the live object (it stays
/// until someone deletes it), and there are never conflicts (every apply behaves as `--force-conflicts`).
/// Directives (`$patch`, ...) in `applied` are ordinary data here. A keyed list whose elements lack
/// their key is replaced rather than merged.
pub fn apply_merge(live: &Value, applied: &Value, schema: &PatchSchema) -> Value {
    apply::apply_merge(live, applied, schema)
}

#[cfg(test)]
mod tests;

//! Server-side apply simplified to an upsert (see [`super::apply_merge`] for the rules and for what
//! differs from real server-side apply).

use serde_json::{Map, Value};

use super::schema::{FieldPatch, PatchSchema, Strategy};
use super::strategic::{Kind, normalize_element_order, partition};

pub(crate) fn apply_merge(live: &Value, applied: &Value, schema: &PatchSchema) -> Value {
    merge_value(live.clone(), applied, FieldPatch::NONE, schema)
}

/// Merges `applied` into `live`, where the value sits in a field described by `field` (for maps,
/// `schema` describes the map itself).
fn merge_value(live: Value, applied: &Value, field: FieldPatch, schema: &PatchSchema) -> Value {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) if field.strategy != Strategy::Replace => {
            Value::Object(merge_object(live, applied, schema))
        }
        (Value::Array(live), Value::Array(applied)) if field.strategy == Strategy::Merge => {
            merge_list(live, applied, field)
                .map(Value::Array)
                .unwrap_or_else(|| without_nulls(&Value::Array(applied.clone())))
        }
        (_, applied) => without_nulls(applied),
    }
}

fn merge_object(
    mut live: Map<String, Value>,
    applied: &Map<String, Value>,
    schema: &PatchSchema,
) -> Map<String, Value> {
    for (key, value) in applied {
        if value.is_null() {
            live.shift_remove(key);
            continue;
        }
        let field = schema.field(key);
        match live.get_mut(key) {
            Some(current) => {
                let merged = merge_value(current.take(), value, field, field.schema);
                *current = merged;
            }
            None => {
                live.insert(key.clone(), without_nulls(value));
            }
        }
    }
    live
}

/// Merges a `merge` list; `None` when the lists cannot be merged (mixed element types, objects
/// without the key), and the caller then replaces the list.
fn merge_list(live: Vec<Value>, applied: &[Value], field: FieldPatch) -> Option<Vec<Value>> {
    let all_objects = live.iter().chain(applied).all(Value::is_object);
    let all_scalars = live
        .iter()
        .chain(applied)
        .all(|v| !v.is_object() && !v.is_array() && !v.is_null());
    if all_scalars {
        // A set: the union, ordered as a strategic merge of the same list would order it.
        let mut merged = live.clone();
        for item in applied {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        let kind = scalar_kind(merged.first()?);
        let (in_applied, live_only) = partition(merged, applied, None).ok()?;
        return normalize_element_order(in_applied, live_only, applied, &live, None, kind).ok();
    }
    let key = field.merge_key?;
    if !all_objects
        || !live
            .iter()
            .chain(applied)
            .all(|v| v.get(key).is_some_and(|k| !k.is_null()))
    {
        return None;
    }

    // Each applied element takes the first live element with its key that no earlier applied
    // element took, so duplicate keys pair up one to one (and applying an object onto itself is
    // the identity).
    let mut merged = live.clone();
    let mut taken = vec![false; merged.len()];
    for item in applied {
        let position = merged.iter().enumerate().position(|(i, v)| {
            !taken.get(i).copied().unwrap_or(true) && v.get(key) == item.get(key)
        });
        match position {
            Some(i) => {
                taken[i] = true;
                let current = merged[i].take();
                merged[i] = merge_value(current, item, FieldPatch::NONE, field.schema);
            }
            None => merged.push(without_nulls(item)),
        }
    }
    let (in_applied, live_only) = partition(merged, applied, Some(key)).ok()?;
    normalize_element_order(
        in_applied,
        live_only,
        applied,
        &live,
        Some(key),
        Kind::Object,
    )
    .ok()
}

fn scalar_kind(value: &Value) -> Kind {
    match value {
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Int,
        _ => Kind::String,
    }
}

/// The value with every null map entry removed, recursively (a null in applied configuration
/// means "not set").
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

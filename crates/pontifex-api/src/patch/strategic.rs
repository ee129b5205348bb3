//! The strategic merge patch algorithm (server side), step for step as apimachinery's
//! `strategicpatch` applies it, over owned `serde_json` values.
//!
//! Order of work inside one map, as upstream: a `$patch` directive decides first; then `$retainKeys`
//! prunes the original; then every `$setElementOrder/<list>` merges and orders its list; then the
//! remaining keys merge one by one (`$deleteFromPrimitiveList/<list>` among them).

use serde_json::{Map, Value};

use super::PatchError;
use super::gofmt::{go_type, go_value};
use super::schema::{FieldPatch, PatchSchema, Strategy};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const GO_MAP: &str = "map[string]interface {}";
const GO_SLICE: &str = "[]interface {}";

/// Merges `patch` into `original`, both maps described by `schema`.
pub(crate) fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: &PatchSchema,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // The patch becomes the value; resolve what it holds (see `clean`).
                merge_map(Map::new(), patch, schema)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::UnknownPatchType {
                directive: go_value(directive),
                map: go_value(&Value::Object(patch)),
            }),
        };
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        let (key, delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST)
                .ok_or(PatchError::BadPrimitiveListFormat)?;
            (field.to_owned(), true)
        } else {
            (key, false)
        };

        // Server side ignores nulls that match nothing: a null only ever deletes.
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }

        let field = schema.field(&key);
        let Some(current) = original.get_mut(&key) else {
            if !delete_list {
                let added = clean(patch_value, field)?;
                original.insert(key, added);
            }
            continue;
        };
        let merged = match (current.take(), patch_value) {
            (Value::Object(cur), Value::Object(p)) if field.strategy != Strategy::Replace => {
                Value::Object(merge_map(cur, p, field.schema)?)
            }
            (Value::Array(cur), Value::Array(p)) => {
                Value::Array(merge_list_field(cur, p, field, delete_list)?)
            }
            // A scalar, a type change, or a `replace` map: the patch value wins.
            (_, p) => clean(p, field)?,
        };
        *current = merged;
    }
    Ok(original)
}

/// `$retainKeys`: keep only the listed keys of the original; every key the patch sets must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadRetainKeysFormat);
    };
    let listed = |key: &str| retain.iter().any(|v| v.as_str() == Some(key));
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !listed(key) {
            return Err(PatchError::BadRetainKeysFormat);
        }
    }
    original.retain(|key, _| listed(key));
    Ok(())
}

/// Every `$setElementOrder/<list>`: merge the patch list into the original list, then order the
/// result — the order list first, live-only elements placed by their live order.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: &PatchSchema,
) -> Result<(), PatchError> {
    let order_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for order_key in order_keys {
        let Some(order) = patch.shift_remove(&order_key) else {
            continue;
        };
        let Value::Array(order) = order else {
            return Err(type_mismatch(GO_SLICE, &order));
        };
        let name = directive_field(&order_key, SET_ELEMENT_ORDER)
            .ok_or(PatchError::BadSetElementOrderFormat)?;
        let field = schema.field(name);

        let original_list = take_list(original, name)?;
        let patch_list = take_list(patch, name)?;
        validate_against_order(
            patch_list.as_deref().unwrap_or(&[]),
            &order,
            field.merge_key,
        )?;
        let kind = element_kind(&[
            original_list.as_deref().unwrap_or(&[]),
            patch_list.as_deref().unwrap_or(&[]),
        ]);
        let server_order = original_list.clone().unwrap_or_default();
        let merged = match (original_list, patch_list) {
            (Some(cur), None) => cur,
            (None, Some(p)) => clean_list(p, field)?,
            (Some(cur), Some(p)) => merge_list_field(cur, p, field, false)?,
            (None, None) => continue,
        };
        let (in_order, server_only) = partition(merged, &order, field.merge_key)?;
        let kind = kind?.ok_or(PatchError::NoElements)?;
        let ordered = normalize_element_order(
            in_order,
            server_only,
            &order,
            &server_order,
            field.merge_key,
            kind,
        )?;
        original.insert(name.to_owned(), Value::Array(ordered));
    }
    Ok(())
}

/// Removes and returns the list under `name`, if any.
fn take_list(map: &mut Map<String, Value>, name: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Array(_)) => match map.shift_remove(name) {
            Some(Value::Array(list)) => Ok(Some(list)),
            _ => Ok(None),
        },
        Some(other) => Err(type_mismatch(GO_SLICE, other)),
    }
}

/// The field name after `<prefix>/`, or `None` when the key is not of that shape.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

/// Checks that the patch list's elements (deletions and directive elements aside) appear in the
/// `$setElementOrder` list, in the same relative order.
fn validate_against_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut kept = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_some() {
            let Value::Object(map) = item else {
                return Err(type_mismatch(GO_MAP, item));
            };
            if map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        kept.push(item);
    }
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if has_directive(kept[p]) {
            p += 1;
            continue;
        }
        if merge_key_value_equal(kept[p], &order[o], merge_key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() && o >= order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: go_value(&Value::Array(patch_list.to_vec())),
            order: go_value(&Value::Array(order.to_vec())),
        });
    }
    Ok(())
}

fn has_directive(item: &Value) -> bool {
    item.as_object().is_some_and(|m| m.contains_key(DIRECTIVE))
}

fn merge_key_value_equal(
    left: &Value,
    right: &Value,
    merge_key: Option<&str>,
) -> Result<bool, PatchError> {
    let Some(key) = merge_key else {
        return Ok(left == right);
    };
    Ok(key_value(left, key)? == key_value(right, key)?)
}

/// The merge key's value of a keyed-list element; the element must be an object holding the key.
fn key_value<'a>(item: &'a Value, key: &str) -> Result<&'a Value, PatchError> {
    let Value::Object(map) = item else {
        return Err(type_mismatch(GO_MAP, item));
    };
    map.get(key).ok_or_else(|| missing_merge_key(item, key))
}

/// Merges two lists under one field, by the field's strategy: keyed/set merge, or replace.
fn merge_list_field(
    original: Vec<Value>,
    patch: Vec<Value>,
    field: FieldPatch,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if field.strategy == Strategy::Merge {
        merge_slice(original, patch, field.merge_key, field.schema, delete_list)
    } else {
        clean_list(patch, field)
    }
}

/// Merges a patch list into an original list of a `merge` field.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: Option<&str>,
    element_schema: &PatchSchema,
    delete_list: bool,
) -> Result<Vec<Value>, PatchError> {
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let Some(kind) = element_kind(&[&original, &patch])? else {
        return Ok(original);
    };

    if kind != Kind::Object {
        if delete_list {
            // `$deleteFromPrimitiveList`: drop every listed value, keep the rest in place.
            return Ok(original
                .into_iter()
                .filter(|v| !patch.contains(v))
                .collect());
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(patch.iter()) {
            if !merged.contains(item) {
                merged.push(item.clone());
            }
        }
        let (in_patch, server_only) = partition(merged, &patch, None)?;
        return normalize_element_order(in_patch, server_only, &patch, &original, None, kind);
    }

    let Some(key) = merge_key else {
        return Err(PatchError::MergeKeyRequired {
            elem_type: "string",
        });
    };

    // Directive elements first: deletions act on the original, `replace` swaps it for the patch.
    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = key_value(&item, key)?;
                original.retain(|e| e.get(key) != Some(value));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::MergeDirectiveInList),
            _ => {
                return Err(PatchError::UnknownPatchType {
                    directive: go_value(directive),
                    map: go_value(&item),
                });
            }
        }
    }
    let (original, plain) = if replace {
        let replaced = plain
            .into_iter()
            .map(|item| clean_value(item, element_schema))
            .collect::<Result<Vec<_>, _>>()?;
        (replaced, Vec::new())
    } else {
        (original, plain)
    };

    let server_order = original.clone();
    let mut merged = original;
    for item in &plain {
        let value = key_value(item, key)?;
        let mut found = None;
        for (index, existing) in merged.iter().enumerate() {
            let Value::Object(map) = existing else {
                return Err(PatchError::NotAMap { index });
            };
            if map.get(key) == Some(value) {
                found = Some(index);
                break;
            }
        }
        match found {
            Some(index) => {
                let Value::Object(cur) = merged[index].take() else {
                    return Err(PatchError::NotAMap { index });
                };
                let Value::Object(p) = item.clone() else {
                    return Err(type_mismatch(GO_MAP, item));
                };
                merged[index] = Value::Object(merge_map(cur, p, element_schema)?);
            }
            None => merged.push(clean_value(item.clone(), element_schema)?),
        }
    }
    let (in_patch, server_only) = partition(merged, &plain, Some(key))?;
    normalize_element_order(
        in_patch,
        server_only,
        &plain,
        &server_order,
        Some(key),
        kind,
    )
}

/// The JSON type shared by all elements of a list, as far as merging cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Bool,
    Int,
    Float,
    String,
}

/// The element kind of the lists together; `Ok(None)` when they are all empty.
fn element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
    let mut kind = None;
    for item in lists.iter().flat_map(|l| l.iter()) {
        let this = match item {
            Value::Array(_) if kind.is_none() => return Err(PatchError::ListOfLists),
            Value::Object(_) => Some(Kind::Object),
            Value::Bool(_) => Some(Kind::Bool),
            Value::Number(n) if n.is_f64() => Some(Kind::Float),
            Value::Number(_) => Some(Kind::Int),
            Value::String(_) => Some(Kind::String),
            Value::Array(_) | Value::Null => None,
        };
        match (kind, this) {
            (None, Some(t)) => kind = Some(t),
            (Some(k), Some(t)) if k == t => {}
            _ => {
                let all = lists
                    .iter()
                    .map(|l| Value::Array(l.to_vec()))
                    .collect::<Vec<_>>();
                return Err(PatchError::MixedElementTypes {
                    lists: go_value(&Value::Array(all)),
                });
            }
        }
    }
    Ok(kind)
}

/// Splits `items` into those present in `by` (by merge key, or by value for scalars) and the rest,
/// keeping the relative order of each part.
pub(crate) fn partition(
    items: Vec<Value>,
    by: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::with_capacity(items.len());
    let mut absent = Vec::with_capacity(items.len());
    for item in items {
        let found = match merge_key {
            None => by.contains(&item),
            Some(key) => {
                let value = key_value(&item, key)?;
                let mut found = false;
                for (index, candidate) in by.iter().enumerate() {
                    let Value::Object(map) = candidate else {
                        return Err(PatchError::NotAMap { index });
                    };
                    if map.get(key) == Some(value) {
                        found = true;
                        break;
                    }
                }
                found
            }
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Orders `patch_items` by `patch_order` and `server_only` by `server_order`, then interleaves them:
/// patch items keep their order, and each server-only item goes before the first patch item that
/// follows it in the server's order.
pub(crate) fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = normalize_slice_order(patch_items, patch_order, merge_key, kind)?;
    let server_only = normalize_slice_order(server_only, server_order, merge_key, kind)?;
    Ok(merge_sorted(
        server_only,
        patch_items,
        server_order,
        merge_key,
        kind,
    ))
}

/// Sorts `items` by their position in `order`, `$patch: delete` elements last.
fn normalize_slice_order(
    items: Vec<Value>,
    order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Result<Vec<Value>, PatchError> {
    let mut items = items;
    let mut deletions = Vec::new();
    if kind == Kind::Object {
        let key = merge_key.unwrap_or("");
        for item in items.iter().chain(order.iter()) {
            key_value(item, key)?;
        }
        let (keep, delete): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|i| i.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"));
        items = keep;
        deletions = delete;
    }
    // Upstream sorts with a comparator that calls an item "less" whenever either side is missing
    // from `order`; an insertion sort with the same comparator reproduces its result (Go's stable
    // sort is an insertion sort up to 20 elements). When every item is in `order`, this is simply a
    // stable sort by position.
    let position = |item: &Value| index_of(order, item, merge_key, kind);
    let less = |a: &Value, b: &Value| match (position(a), position(b)) {
        (Some(pa), Some(pb)) => pa < pb,
        _ => true,
    };
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && less(&items[j], &items[j - 1]) {
            items.swap(j, j - 1);
            j -= 1;
        }
    }
    items.extend(deletions);
    Ok(items)
}

/// Interleaves `left` (server-only items) into `right` (patch items), both already sorted.
fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Value],
    merge_key: Option<&str>,
    kind: Kind,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    index_of(server_order, l, merge_key, kind),
                    index_of(server_order, r, merge_key, kind),
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// The position of `item` in `list`: by merge key value for objects, by value otherwise.
fn index_of(list: &[Value], item: &Value, merge_key: Option<&str>, kind: Kind) -> Option<usize> {
    if kind == Kind::Object {
        let key = merge_key.unwrap_or("");
        let wanted = item.get(key);
        list.iter().position(|v| v.get(key) == wanted)
    } else {
        list.iter().position(|v| v == item)
    }
}

/// A value the patch adds where the original has nothing: merged into an empty value of its kind,
/// so nulls vanish and directives act (upstream stores it verbatim and lets typed decoding drop
/// what it cannot represent).
fn clean(value: Value, field: FieldPatch) -> Result<Value, PatchError> {
    match value {
        Value::Array(list) => Ok(Value::Array(clean_list(list, field)?)),
        other => clean_value(other, field.schema),
    }
}

fn clean_value(value: Value, schema: &PatchSchema) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => Ok(Value::Object(merge_map(Map::new(), map, schema)?)),
        other => Ok(other),
    }
}

fn clean_list(list: Vec<Value>, field: FieldPatch) -> Result<Vec<Value>, PatchError> {
    if field.strategy == Strategy::Merge {
        merge_slice(Vec::new(), list, field.merge_key, field.schema, false)
    } else {
        list.into_iter()
            .map(|item| clean_value(item, field.schema))
            .collect()
    }
}

fn type_mismatch(expected: &'static str, actual: &Value) -> PatchError {
    PatchError::TypeMismatch {
        expected,
        actual: go_type(actual),
    }
}

fn missing_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::MissingMergeKey {
        map: go_value(item),
        key: key.to_owned(),
    }
}

//! Building `meta.k8s.io` Tables — what every `kubectl get` asks for — from the registry's printers.

use jiff::Timestamp;
use pontifex_api::registry::ResourceType;
use pontifex_api::status::ApiError;
use serde_json::{Value, json};

use crate::objects;

/// What each row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Include {
    None,
    /// A `PartialObjectMetadata`: kubectl reads `-A`'s NAMESPACE and `--show-labels` from it.
    Metadata,
    Object,
}

impl Include {
    pub(crate) fn parse(v: Option<&str>) -> Self {
        match v {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// The `apiVersion` of the Table the client asked for in `Accept`, if it asked for one.
pub(crate) fn requested(accept: &str) -> Option<&'static str> {
    let mut found = None;
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if params.contains(&"as=Table") && params.contains(&"g=meta.k8s.io") {
            if params.contains(&"v=v1") {
                return Some("meta.k8s.io/v1");
            }
            if params.contains(&"v=v1beta1") {
                found = Some("meta.k8s.io/v1beta1");
            }
        }
    }
    found
}

pub(crate) struct TableOpts<'a> {
    pub(crate) api_version: &'static str,
    pub(crate) include: Include,
    pub(crate) resource_version: &'a str,
    pub(crate) continue_token: Option<&'a str>,
    pub(crate) now: Timestamp,
    /// Column definitions are sent once; watch events after the first carry none.
    pub(crate) with_columns: bool,
}

pub(crate) fn build(
    r: &ResourceType,
    objects_: &[Value],
    opts: &TableOpts<'_>,
) -> Result<Value, ApiError> {
    let mut rows = Vec::with_capacity(objects_.len());
    for obj in objects_ {
        let cells = r.strategy.cells(obj, opts.now)?;
        // Moved in, not through `json!`, which deep-copies any expression via `to_value`.
        let mut row = Value::Object(serde_json::Map::from_iter([(
            "cells".to_owned(),
            Value::Array(cells),
        )]));
        match opts.include {
            Include::None => {}
            Include::Metadata => {
                row["object"] = json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": opts.api_version,
                    "metadata": objects::meta(obj),
                });
            }
            Include::Object => row["object"] = objects::with_type(obj.clone(), r),
        }
        rows.push(row);
    }
    let mut metadata = json!({"resourceVersion": opts.resource_version});
    if let Some(c) = opts.continue_token {
        metadata["continue"] = json!(c);
    }
    let columns = if opts.with_columns {
        json!(r.strategy.columns())
    } else {
        Value::Null
    };
    let mut table = json!({
        "kind": "Table",
        "apiVersion": opts.api_version,
        "metadata": metadata,
        "columnDefinitions": columns,
    });
    table["rows"] = Value::Array(rows);
    Ok(table)
}

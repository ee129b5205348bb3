//! Building `meta.k8s.io` Tables — what every `kubectl get` asks for — from the registry's printers.

use jiff::Timestamp;
use pontifex_api::registry::ResourceType;
use pontifex_api::status::ApiError;
use serde_json::{Value, json};

use crate::objects;
use pontifex_store::KeyValue;

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

/// What a row is built from: a decoded object, or a stored one read straight from its bytes.
pub(crate) trait Row {
    fn cells(&self, r: &ResourceType, now: Timestamp) -> Result<Vec<Value>, ApiError>;
    fn metadata(&self) -> Result<Value, ApiError>;
    fn object(&self, r: &ResourceType) -> Result<Value, ApiError>;
}

impl Row for Value {
    fn cells(&self, r: &ResourceType, now: Timestamp) -> Result<Vec<Value>, ApiError> {
        r.strategy.cells(self, now)
    }

    fn metadata(&self) -> Result<Value, ApiError> {
        Ok(objects::meta(self).clone())
    }

    fn object(&self, r: &ResourceType) -> Result<Value, ApiError> {
        Ok(objects::with_type(self.clone(), r))
    }
}

impl Row for KeyValue {
    fn cells(&self, r: &ResourceType, now: Timestamp) -> Result<Vec<Value>, ApiError> {
        r.strategy.cells_from_json(&self.value, now)
    }

    fn metadata(&self) -> Result<Value, ApiError> {
        objects::stored_metadata(self)
    }

    fn object(&self, r: &ResourceType) -> Result<Value, ApiError> {
        Ok(objects::with_type(objects::decode(self)?, r))
    }
}

pub(crate) fn build<R: Row>(
    r: &ResourceType,
    items: &[R],
    opts: &TableOpts<'_>,
) -> Result<Value, ApiError> {
    let mut rows = Vec::with_capacity(items.len());
    for obj in items {
        let cells = obj.cells(r, opts.now)?;
        // Moved in, not through `json!`, which deep-copies any expression via `to_value`.
        let mut row = Value::Object(serde_json::Map::from_iter([(
            "cells".to_owned(),
            Value::Array(cells),
        )]));
        match opts.include {
            Include::None => {}
            Include::Metadata => {
                let mut partial =
                    json!({"kind": "PartialObjectMetadata", "apiVersion": opts.api_version});
                partial["metadata"] = obj.metadata()?;
                row["object"] = partial;
            }
            Include::Object => row["object"] = obj.object(r)?,
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

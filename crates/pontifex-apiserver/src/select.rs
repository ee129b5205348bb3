//! The label and field selectors of one list or watch request, checked against the kind once and then
//! applied to every object.

use pontifex_api::registry::ResourceType;
use pontifex_api::selector::{FieldSelector, LabelSelector};
use pontifex_api::status::ApiError;
use serde_json::Value;

use crate::objects;
use crate::request::Query;

#[derive(Clone, Debug, Default)]
pub(crate) struct Selectors {
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
    /// A single-object watch (`/watch/.../{name}` or `GET .../{name}?watch=true`).
    name: Option<String>,
}

fn bad(e: impl std::fmt::Display) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

impl Selectors {
    /// Parse `labelSelector` and `fieldSelector`, rejecting field labels the kind does not support
    /// before anything is read (so a bad selector fails even on an empty collection).
    pub(crate) fn parse(q: &Query, r: &ResourceType) -> Result<Self, ApiError> {
        let labels = q
            .get("labelSelector")
            .map(LabelSelector::parse)
            .transpose()
            .map_err(bad)?;
        let fields = q
            .get("fieldSelector")
            .map(FieldSelector::parse)
            .transpose()
            .map_err(bad)?;
        if let Some(f) = &fields {
            f.check_fields(|label| r.field_value(&Value::Null, label).is_some())
                .map_err(bad)?;
        }
        Ok(Selectors {
            labels,
            fields,
            name: None,
        })
    }

    /// No selector at all: everything matches without looking inside.
    pub(crate) fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none() && self.name.is_none()
    }

    pub(crate) fn pin_name(&mut self, name: &str) {
        self.name = Some(name.to_owned());
    }

    /// A field selector that pins the namespace narrows the store read to that namespace.
    pub(crate) fn narrow_namespace<'a>(&'a self, ns: Option<&'a str>) -> Option<&'a str> {
        ns.or_else(|| {
            self.fields
                .as_ref()
                .and_then(|f| f.requires_exact_match("metadata.namespace"))
        })
    }

    pub(crate) fn matches(&self, r: &ResourceType, obj: &Value) -> Result<bool, ApiError> {
        if let Some(name) = &self.name
            && objects::name(obj) != Some(name.as_str())
        {
            return Ok(false);
        }
        if let Some(labels) = &self.labels
            && !labels.matches(&objects::labels(obj))
        {
            return Ok(false);
        }
        match &self.fields {
            Some(f) => f.matches(|label| r.field_value(obj, label)).map_err(bad),
            None => Ok(true),
        }
    }
}

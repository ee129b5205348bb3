//! Field paths and field errors, printed exactly as Kubernetes prints them, because kubectl rebuilds its
//! `* spec.ports[0].port: Invalid value: 0: must be ...` lines from them.

use std::fmt;

use serde_json::Value;

/// A path to a field inside an object, such as `spec.ports[0].nodePort` or `metadata.labels[app]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// The path of a top-level field.
    pub fn new(root: &str) -> Self {
        Path(root.to_owned())
    }

    /// A named child field: `spec` → `spec.ports`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            return Path(name.to_owned());
        }
        Path(format!("{}.{name}", self.0))
    }

    /// An element of a list: `spec.ports` → `spec.ports[0]`.
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }

    /// An entry of a map: `metadata.labels` → `metadata.labels[app]`.
    pub fn key(&self, k: &str) -> Self {
        Path(format!("{}[{k}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a field; each maps to a Kubernetes `CauseType` (`FieldValueInvalid`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required field is missing or empty.
    Required,
    /// The value is malformed or out of range.
    Invalid,
    /// The value is not one of a fixed set.
    NotSupported,
    /// The value repeats one given before in the same list.
    Duplicate,
    /// The value is longer than allowed.
    TooLong,
    /// The field may not be set here (or may not change).
    Forbidden,
    /// The list has too many elements.
    TooMany,
}

impl ErrorKind {
    /// The `reason` of a `StatusCause`.
    pub fn cause_type(self) -> &'static str {
        match self {
            ErrorKind::Required => "FieldValueRequired",
            ErrorKind::Invalid => "FieldValueInvalid",
            ErrorKind::NotSupported => "FieldValueNotSupported",
            ErrorKind::Duplicate => "FieldValueDuplicate",
            ErrorKind::TooLong => "FieldValueTooLong",
            ErrorKind::Forbidden => "FieldValueForbidden",
            ErrorKind::TooMany => "FieldValueTooMany",
        }
    }
}

/// One invalid field: where, what kind of problem, the offending value and a human detail.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: ErrorKind,
    pub field: Path,
    /// The bad value, when the message shows it (`Invalid value: 0: ...`).
    pub value: Option<Value>,
    pub detail: String,
}

/// The field errors of one object; empty means valid.
pub type ErrorList = Vec<FieldError>;

impl FieldError {
    pub fn required(field: Path, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorKind::Required,
            field,
            value: None,
            detail: detail.into(),
        }
    }

    pub fn invalid(field: Path, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorKind::Invalid,
            field,
            value: Some(value.into()),
            detail: detail.into(),
        }
    }

    /// `Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: Path, value: impl Into<Value>, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        FieldError {
            kind: ErrorKind::NotSupported,
            field,
            value: Some(value.into()),
            detail,
        }
    }

    pub fn duplicate(field: Path, value: impl Into<Value>) -> Self {
        FieldError {
            kind: ErrorKind::Duplicate,
            field,
            value: Some(value.into()),
            detail: String::new(),
        }
    }

    pub fn forbidden(field: Path, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorKind::Forbidden,
            field,
            value: None,
            detail: detail.into(),
        }
    }

    /// `Too long: may not be more than 63 bytes`.
    pub fn too_long(field: Path, value: impl Into<Value>, max: usize) -> Self {
        FieldError {
            kind: ErrorKind::TooLong,
            field,
            value: Some(value.into()),
            detail: format!("may not be more than {max} bytes"),
        }
    }

    /// An error whose bad value Kubernetes prints with Go's `%#v` (a struct, a map, a nil slice), such as
    /// `Duplicate value: core.ServicePort{...}`. `literal` is that printed form, shown verbatim.
    pub fn with_go_value(
        kind: ErrorKind,
        field: Path,
        literal: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        let mut marker = serde_json::Map::new();
        marker.insert(GO_LITERAL.to_owned(), Value::String(literal.into()));
        FieldError {
            kind,
            field,
            value: Some(Value::Object(marker)),
            detail: detail.into(),
        }
    }

    pub fn too_many(field: Path, actual: usize, max: usize) -> Self {
        FieldError {
            kind: ErrorKind::TooMany,
            field,
            value: Some(actual.into()),
            detail: format!("must have at most {max} items"),
        }
    }

    /// The message of the `StatusCause`, without the field: what kubectl prints after `field: `.
    pub fn cause_message(&self) -> String {
        let with_detail = |head: String| {
            if self.detail.is_empty() {
                head
            } else {
                format!("{head}: {}", self.detail)
            }
        };
        match self.kind {
            ErrorKind::Required => with_detail("Required value".to_owned()),
            ErrorKind::Forbidden => with_detail("Forbidden".to_owned()),
            ErrorKind::TooLong => with_detail("Too long".to_owned()),
            ErrorKind::TooMany => {
                with_detail(format!("Too many: {}", render_value(self.value.as_ref())))
            }
            ErrorKind::Invalid => with_detail(format!(
                "Invalid value: {}",
                render_value(self.value.as_ref())
            )),
            ErrorKind::NotSupported => with_detail(format!(
                "Unsupported value: {}",
                render_value(self.value.as_ref())
            )),
            ErrorKind::Duplicate => with_detail(format!(
                "Duplicate value: {}",
                render_value(self.value.as_ref())
            )),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.cause_message())
    }
}

/// The key of the one-entry object that carries a Go literal (see [`FieldError::with_go_value`]); `$` cannot
/// start a JSON field name Kubernetes uses, so no real bad value is mistaken for one.
const GO_LITERAL: &str = "$goLiteral";

/// Values print the way Go's `%#v`-ish field errors show them: strings quoted, numbers bare, lists as
/// `[]string{"a", "b"}` — the forms users of kubectl know.
fn render_value(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_owned(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key(GO_LITERAL) => {
            m[GO_LITERAL].as_str().unwrap_or_default().to_owned()
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            let inner: Vec<String> = items
                .iter()
                .map(|i| format!("{:?}", i.as_str().unwrap_or_default()))
                .collect();
            format!("[]string{{{}}}", inner.join(", "))
        }
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests;

//! API errors, and the one place where they become a Kubernetes `Status` with its HTTP code and reason.
//!
//! kubectl prints `Error from server (<reason>): <message>` for most of these and rebuilds the text of
//! `Invalid` from `details.causes`, so the shapes here follow the real API server closely.

use serde_json::{Value, json};

use crate::field::ErrorList;

/// Why a request failed. Each variant names the HTTP status and `Status.reason` it becomes.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 404 NotFound: the object (`resource` "name") does not exist.
    #[error("{} \"{name}\" not found", qualified(group, resource))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    /// 404 NotFound for a path or resource type the server does not serve.
    #[error("the server could not find the requested resource")]
    NoSuchResource,
    /// 409 AlreadyExists: a create named an object that exists.
    #[error("{} \"{name}\" already exists", qualified(group, resource))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    /// 409 Conflict: an update carried a stale resourceVersion, or a precondition failed.
    #[error(
        "Operation cannot be fulfilled on {} \"{name}\": {detail}",
        qualified(group, resource)
    )]
    Conflict {
        group: String,
        resource: String,
        name: String,
        detail: String,
    },
    /// 422 Invalid: validation found field errors.
    #[error("{kind} \"{name}\" is invalid: {}", render_list(errors))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        errors: ErrorList,
    },
    /// 422 Invalid without field causes: a patch that cannot be applied (a failed JSON patch `test`).
    #[error("{0}")]
    Unprocessable(String),
    /// 400 BadRequest: the body could not be decoded, or strict decoding found unknown fields.
    #[error("{0}")]
    BadRequest(String),
    /// 405 MethodNotAllowed: the verb is not supported on this path.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 410 Expired: a list or watch asked for a resourceVersion older than the kept history.
    #[error("{0}")]
    Expired(String),
    /// 401 Unauthorized: no valid bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403 Forbidden: e.g. creating in a namespace that is being deleted.
    #[error("{0}")]
    Forbidden(String),
    /// 413 RequestEntityTooLarge: the body is over the size limit.
    #[error("the request is too large: limit is {limit} bytes")]
    TooLarge { limit: usize },
    /// 415 UnsupportedMediaType: a patch or body content type the server does not take.
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {accepted}"
    )]
    UnsupportedMediaType { accepted: String },
    /// 406 NotAcceptable: no offered media type can be produced.
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    /// 500 InternalError: the store or the server failed.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 503 ServiceUnavailable: the server is shutting down or overloaded.
    #[error("{0}")]
    Unavailable(String),
}

/// The group-qualified resource the real server names in messages: `services`, `deployments.apps`.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    }
}

fn render_list(errors: &ErrorList) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// The HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchResource => 404,
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::MethodNotAllowed => 405,
            ApiError::Expired(_) => 410,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::TooLarge { .. } => 413,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchResource => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Expired(_) => "Expired",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
        }
    }

    /// The whole `Status` object. `details.kind` is the resource for 404/409 and the Kind for 422, as the
    /// real server does (kubectl prints `The <Kind> "<name>" is invalid`).
    pub fn to_status(&self) -> Value {
        let details = match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                resource,
                name,
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(json!({"name": name, "group": group, "kind": resource})),
            ApiError::Invalid {
                group,
                kind,
                name,
                errors,
            } => {
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({"reason": e.kind.cause_type(), "message": e.cause_message(), "field": e.field.as_str()})
                    })
                    .collect();
                Some(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
            }
            _ => None,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// A `Status` of success, as returned by some deletes.
pub fn success_status(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": group, "kind": resource, "uid": uid}
    })
}

#[cfg(test)]
mod tests;

//! The `scale` subresource of Deployments and ReplicaSets: an `autoscaling/v1` Scale that reads and
//! writes the parent's `spec.replicas` (what `kubectl scale` and autoscalers use).

use http::Method;
use pontifex_api::selector::format_label_selector;
use pontifex_api::status::ApiError;
use serde_json::{Value, json};

use crate::Reply;
use crate::handler::{
    Request, apply_patch, content_type, parse_patch, read_current, update_object,
};
use crate::objects;

/// Turns the stored parent into the desired one.
type Change = dyn Fn(&Value) -> Result<Value, ApiError> + Send + Sync;

/// The Scale view of a stored Deployment or ReplicaSet.
fn scale_of(parent: &Value) -> Value {
    let meta = objects::meta(parent);
    let selector = parent["spec"]["selector"].clone();
    let selector = serde_json::from_value(selector).ok();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"],
            "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": parent["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {
            "replicas": parent["status"]["replicas"].as_i64().unwrap_or(0),
            "selector": format_label_selector(selector.as_ref()),
        },
    })
}

pub(crate) async fn handle(
    req: &Request<'_>,
    method: &Method,
    name: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let key = objects::key(req.r(), req.ns(), name);
    let change: Box<Change> = match *method {
        Method::GET => {
            let (_, current) = read_current(req, &key, name).await?;
            return Ok(Reply::json(200, &scale_of(&current)));
        }
        Method::PUT => {
            let wanted: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("decoding Scale: {e}")))?;
            Box::new(move |current| with_replicas(current, &wanted))
        }
        Method::PATCH => {
            let ct = content_type(req);
            let patch_doc = parse_patch(body)?;
            // Scale has no merge keys: every patch type works on it as on plain JSON.
            let schema = pontifex_api::patch::schema_for("autoscaling", "Scale");
            Box::new(move |current| {
                let mut base = scale_of(current);
                if let Some(m) = base.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                let wanted = apply_patch(&ct, &base, &patch_doc, schema)?;
                with_replicas(current, &wanted)
            })
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let (code, parent) = update_object(req, name, change).await?;
    // The reply is the Scale, not the parent.
    Ok(Reply::json(code, &scale_of(&parent)))
}

/// The parent with `spec.replicas` from a Scale (and its resourceVersion as a precondition).
fn with_replicas(current: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    let mut parent = current.clone();
    parent["spec"]["replicas"] = json!(replicas);
    let meta = objects::meta_mut(&mut parent);
    match scale["metadata"]["resourceVersion"]
        .as_str()
        .filter(|s| !s.is_empty())
    {
        Some(rv) => meta.insert("resourceVersion".into(), json!(rv)),
        None => meta.remove("resourceVersion"),
    };
    Ok(parent)
}

//! The `binding` subresource of Pods: `POST .../pods/{name}/binding` with a core/v1 Binding assigns
//! an unbound pod to a node (what the scheduler does). It sets `spec.nodeName` once, copies the
//! Binding's annotations onto the pod, and marks the pod's `PodScheduled` condition True.
//!
//! Not here: any check that the node exists or fits — the binder is trusted, as upstream.

use http::Method;
use jiff::Timestamp;
use pontifex_api::field::{FieldError, Path};
use pontifex_api::status::ApiError;
use serde_json::{Value, json};

use crate::Reply;
use crate::handler::{Request, update_object};
use crate::objects;

pub(crate) async fn handle(
    req: &Request<'_>,
    method: &Method,
    name: &str,
    body: &[u8],
) -> Result<Reply, ApiError> {
    if *method != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let binding: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("decoding Binding: {e}")))?;
    let node = target_node(name, &binding)?;
    let now = Timestamp::now();
    update_object(req, name, |current| bind(current, &binding, &node, now)).await?;
    Ok(Reply::json(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

/// The node a Binding names, after upstream's checks (name matches the URL, target kind is empty or
/// Node, target name is set).
fn target_node(name: &str, binding: &Value) -> Result<String, ApiError> {
    if let Some(n) = objects::name(binding)
        && n != name
    {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    let kind = binding["target"]["kind"].as_str().unwrap_or("");
    let node = binding["target"]["name"].as_str().unwrap_or("");
    let mut errors = Vec::new();
    if !kind.is_empty() && kind != "Node" {
        errors.push(FieldError::not_supported(
            Path::new("target").child("kind"),
            kind,
            &["Node", "<empty>"],
        ));
    }
    if node.is_empty() {
        errors.push(FieldError::required(Path::new("target").child("name"), ""));
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            name: name.into(),
            errors,
        });
    }
    Ok(node.to_owned())
}

/// The pod bound to `node`: 409 when it is already bound or being deleted.
fn bind(current: &Value, binding: &Value, node: &str, now: Timestamp) -> Result<Value, ApiError> {
    let name = objects::name(current).unwrap_or_default();
    let conflict = |detail: String| ApiError::Conflict {
        group: String::new(),
        resource: "pods".into(),
        name: name.into(),
        detail,
    };
    if !objects::meta(current)["deletionTimestamp"].is_null() {
        return Err(conflict(format!(
            "pod {name} is being deleted, cannot be assigned to a host"
        )));
    }
    if let Some(bound) = current["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        return Err(conflict(format!(
            "pod {name} is already assigned to node \"{bound}\""
        )));
    }
    let mut pod = current.clone();
    pod["spec"]["nodeName"] = json!(node);
    if let Some(extra) = binding["metadata"]["annotations"].as_object() {
        let meta = objects::meta_mut(&mut pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            for (k, v) in extra {
                a.insert(k.clone(), v.clone());
            }
        }
    }
    set_scheduled(&mut pod, now);
    Ok(pod)
}

/// `PodScheduled=True`, keeping the transition time when it already was True.
fn set_scheduled(pod: &mut Value, now: Timestamp) {
    let fresh = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
                       "lastTransitionTime": objects::timestamp(now)});
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let conditions = &mut pod["status"]["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("an array");
    match list.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => *c = fresh,
        None => list.push(fresh),
    }
}

#[cfg(test)]
mod tests;

//! The `log` subresource of Pods: `GET /api/v1/namespaces/{ns}/pods/{name}/log` (what `kubectl logs`
//! reads). As kube-apiserver does, it checks the request against the pod (container name, options),
//! finds the pod's node and proxies to that node's kubelet endpoint
//! `http://<InternalIP>:<kubelet port>/containerLogs/{ns}/{name}/{container}`, streaming the answer back
//! as `text/plain` (with `follow`, for as long as the kubelet keeps writing).
//!
//! Deviations: plain HTTP to the node (pontifex's agent serves no TLS on its kubelet port; the lab's node
//! addresses are reachable only from this machine); `sinceSeconds`/`sinceTime` and
//! `insecureSkipTLSVerifyBackend` are refused as unsupported.
//!
//! The checks are pure ([`plan`]); the proxying is the thin part.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt as _;
use http_body_util::{BodyExt as _, Empty};
use pontifex_api::registry;
use pontifex_api::status::ApiError;
use serde_json::Value;

use crate::handler::{Request, read_current};
use crate::request::Query;
use crate::{Reply, ReplyBody, objects};

/// The kubelet's default port, when the Node does not say (`status.daemonEndpoints`).
const KUBELET_PORT: u16 = 10250;
/// Connecting to a node's kubelet: a node that does not answer in this time is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to ask for the logs: the node, and the kubelet path with its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) node: String,
    pub(crate) path_and_query: String,
}

fn parse_bool(q: &Query, k: &str) -> Result<bool, ApiError> {
    match q.get(k) {
        None => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(v) => Err(ApiError::BadRequest(format!("invalid value {v:?} for {k}"))),
    }
}

fn parse_int(q: &Query, k: &str) -> Result<Option<i64>, ApiError> {
    q.get(k)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid value {v:?} for {k}")))
        })
        .transpose()
}

/// Checks a log request against the pod, as kube-apiserver does (`pod.LogLocation` and the
/// PodLogOptions validation), and says where the kubelet serves it.
pub(crate) fn plan(pod: &Value, query: &Query) -> Result<Plan, ApiError> {
    let name = objects::name(pod).unwrap_or_default();
    let ns = objects::namespace(pod).unwrap_or_default();
    let containers: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    let main: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match query.get("container") {
        Some(c) => {
            if !containers.contains(&c) {
                return Err(ApiError::BadRequest(format!(
                    "container {c} is not valid for pod {name}"
                )));
            }
            c.to_owned()
        }
        None if main.len() == 1 => main[0].to_owned(),
        None => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                main.join(" ")
            )));
        }
    };
    let follow = parse_bool(query, "follow")?;
    let previous = parse_bool(query, "previous")?;
    let timestamps = parse_bool(query, "timestamps")?;
    let tail = parse_int(query, "tailLines")?;
    let limit = parse_int(query, "limitBytes")?;
    let mut errors = Vec::new();
    if tail.is_some_and(|t| t < 0) {
        errors.push("tailLines: Invalid value: must be greater than or equal to 0");
    }
    if limit.is_some_and(|l| l < 1) {
        errors.push("limitBytes: Invalid value: must be greater than 0");
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable(errors.join(", ")));
    }
    if query.get("sinceSeconds").is_some() || query.get("sinceTime").is_some() {
        return Err(ApiError::BadRequest(
            "sinceSeconds and sinceTime are not supported".into(),
        ));
    }
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return Err(ApiError::BadRequest(format!(
            "pod {name} does not have a host assigned"
        )));
    };
    let mut q = form_urlencoded::Serializer::new(String::new());
    if follow {
        q.append_pair("follow", "true");
    }
    if previous {
        q.append_pair("previous", "true");
    }
    if timestamps {
        q.append_pair("timestamps", "true");
    }
    if let Some(t) = tail {
        q.append_pair("tailLines", &t.to_string());
    }
    if let Some(l) = limit {
        q.append_pair("limitBytes", &l.to_string());
    }
    let q = q.finish();
    let seg = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        seg(ns),
        seg(name),
        seg(&container)
    );
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q);
    }
    Ok(Plan {
        node: node.to_owned(),
        path_and_query: path,
    })
}

/// The kubelet address of a Node: its InternalIP (else its first address that is an IP) and the
/// port it reports (10250 by default).
pub(crate) fn kubelet_address(node: &Value) -> Option<SocketAddr> {
    let addrs = node["status"]["addresses"].as_array()?;
    let ip = addrs
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .chain(addrs.iter())
        .find_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(KUBELET_PORT);
    Some(SocketAddr::new(ip, port))
}

pub(crate) async fn handle(
    req: &Request<'_>,
    method: &http::Method,
    name: &str,
) -> Result<Reply, ApiError> {
    if *method != http::Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    let key = objects::key(req.r(), req.ns(), name);
    let (_, pod) = read_current(req, &key, name).await?;
    let plan = plan(&pod, &req.query)?;
    let nodes = registry::lookup("", "v1", "nodes").expect("registered");
    let node_key = objects::key(nodes, None, &plan.node);
    let node = req
        .state
        .store
        .get(&node_key)
        .await
        .map_err(objects::store_error)?
        .map(|kv| objects::decode(&kv))
        .transpose()?;
    let addr = node
        .as_ref()
        .and_then(kubelet_address)
        .ok_or_else(|| ApiError::Internal(format!("no address known for node {}", plan.node)))?;
    proxy(addr, &plan.path_and_query).await
}

/// GET from the kubelet; a 200 is streamed back, anything else becomes the error the kubelet said
/// (kube-apiserver's generic response checker: the body is the message).
async fn proxy(addr: SocketAddr, path: &str) -> Result<Reply, ApiError> {
    let unreachable = |e: String| ApiError::Internal(format!("node {addr}: {e}"));
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable("connect timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| unreachable(e.to_string()))?;
    tokio::spawn(conn);
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::new())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let response = send
        .send_request(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    if status != 200 {
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&bytes).trim().to_owned();
        return Err(match status {
            400 => ApiError::BadRequest(message),
            403 => ApiError::Forbidden(message),
            404 => ApiError::BadRequest(message),
            _ => ApiError::Internal(message),
        });
    }
    let (mut tx, rx) = futures::channel::mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            if let Ok(data) = frame.into_data()
                && tx.send(data).await.is_err()
            {
                // The client went; dropping the body closes the kubelet connection.
                return;
            }
        }
    });
    Ok(Reply {
        status: 200,
        content_type: "text/plain".into(),
        body: ReplyBody::Stream(rx),
        warnings: Vec::new(),
        cache_immutable: false,
    })
}

#[cfg(test)]
mod tests;

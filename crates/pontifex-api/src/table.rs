//! Server-side Table printing: the columns and cells of `kubectl get`, as the real API server prints them
//! (`pkg/printers/internalversion/printers.go`).
//!
//! The server always prints the wide form (upstream's table convertor asks for `Wide: true`): every
//! row carries the priority-1 cells too, and kubectl hides them unless `-o wide`. So every function here
//! returns one cell per column of its kind's column list, in order. Cells are strings, or integers where
//! upstream puts an `int64`.
//!
//! Not here: the `Table` envelope, row `object` metadata and row conditions (the API server builds those),
//! and client-side sorting.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerStatus, Endpoints, Event, Namespace, Node, Pod, PodSpec, Secret,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use serde::Serialize;
use serde_json::Value;

use crate::selector::{LabelSelector, format_label_selector, format_labels};

mod duration;

pub use duration::human_duration;

/// One column of a `meta.k8s.io/v1` Table (a `TableColumnDefinition`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Column {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    /// 0 for the default view; 1 for columns shown only with `-o wide`.
    pub priority: u8,
}

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated.";

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: NAME_DOC,
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.",
);
const CONTAINERS: Column = wide(
    "Containers",
    "string",
    "Names of each container in the template.",
);
const IMAGES: Column = wide(
    "Images",
    "string",
    "Images referenced by each container in the template.",
);

/// Cells are `interface{}` upstream: strings and int64s.
fn s(v: impl Into<String>) -> Value {
    Value::String(v.into())
}

fn int(v: impl Into<i64>) -> Value {
    Value::from(v.into())
}

fn name(meta: &ObjectMeta) -> Value {
    s(meta.name.clone().unwrap_or_default())
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is not set.
fn since(ts: Option<&Timestamp>, now: Timestamp) -> String {
    match ts {
        None => "<unknown>".to_owned(),
        Some(t) => human_duration(now.duration_since(*t)),
    }
}

fn since_time(ts: Option<&Time>, now: Timestamp) -> String {
    since(ts.map(|t| &t.0), now)
}

fn since_micro(ts: Option<&MicroTime>, now: Timestamp) -> String {
    since(ts.map(|t| &t.0), now)
}

fn age(meta: &ObjectMeta, now: Timestamp) -> Value {
    s(since_time(meta.creation_timestamp.as_ref(), now))
}

/// `layoutContainerCells`: container names and images, each comma-joined.
fn container_cells(spec: Option<&PodSpec>) -> (Value, Value) {
    let containers: &[Container] = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.image.as_deref().unwrap_or_default())
        .collect();
    (s(names.join(",")), s(images.join(",")))
}

/// `a,b,c + N more...` for lists cut at three entries, `<unset>` for an empty list.
fn list_with_more(list: &[String], total: usize, max: usize) -> String {
    if total > max {
        return format!("{} + {} more...", list.join(","), total - max);
    }
    if list.is_empty() {
        return "<unset>".to_owned();
    }
    list.join(",")
}

// --- Namespace ---------------------------------------------------------------------------------------

pub(crate) const NAMESPACE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the namespace"),
    AGE,
];

pub(crate) fn namespace(k: &Namespace, now: Timestamp) -> Vec<Value> {
    let phase = k.status.as_ref().and_then(|st| st.phase.clone());
    vec![
        name(&k.metadata),
        s(phase.unwrap_or_default()),
        age(&k.metadata, now),
    ]
}

// --- Node --------------------------------------------------------------------------------------------

pub(crate) const NODE: &[Column] = &[
    NAME,
    col("Status", "string", "The status of the node"),
    col("Roles", "string", "The roles of the node"),
    AGE,
    col("Version", "string", "Kubelet Version reported by the node."),
    wide(
        "Internal-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "External-IP",
        "string",
        "List of addresses reachable to the node.",
    ),
    wide(
        "OS-Image",
        "string",
        "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    wide(
        "Kernel-Version",
        "string",
        "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    wide(
        "Container-Runtime",
        "string",
        "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
    ),
];

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";

pub(crate) fn node(k: &Node, now: Timestamp) -> Vec<Value> {
    let status = k.status.as_ref();
    // Only the Ready condition is shown; the last one wins if it is listed twice, as with upstream's map.
    let ready = status
        .and_then(|st| st.conditions.as_ref())
        .and_then(|cs| cs.iter().rev().find(|c| c.type_ == "Ready"));
    let mut states = vec![match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if k.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        states.push("SchedulingDisabled");
    }

    let mut roles: Vec<&str> = Vec::new();
    for (key, value) in k.metadata.labels.iter().flatten() {
        if let Some(role) = key.strip_prefix(NODE_ROLE_PREFIX) {
            if !role.is_empty() {
                roles.push(role);
            }
        } else if key == NODE_ROLE_LABEL && !value.is_empty() {
            roles.push(value);
        }
    }
    roles.sort_unstable();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_owned()
    } else {
        roles.join(",")
    };

    let info = status.and_then(|st| st.node_info.as_ref());
    let or_unknown = |v: Option<&String>| match v {
        Some(v) if !v.is_empty() => v.clone(),
        _ => "<unknown>".to_owned(),
    };
    let address = |kind: &str| {
        status
            .and_then(|st| st.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == kind))
            .map_or_else(|| "<none>".to_owned(), |a| a.address.clone())
    };
    vec![
        name(&k.metadata),
        s(states.join(",")),
        s(roles),
        age(&k.metadata, now),
        s(info.map(|i| i.kubelet_version.clone()).unwrap_or_default()),
        s(address("InternalIP")),
        s(address("ExternalIP")),
        s(or_unknown(info.map(|i| &i.os_image))),
        s(or_unknown(info.map(|i| &i.kernel_version))),
        s(or_unknown(info.map(|i| &i.container_runtime_version))),
    ]
}

// --- Pod ---------------------------------------------------------------------------------------------

pub(crate) const POD: &[Column] = &[
    NAME,
    col(
        "Ready",
        "string",
        "The aggregate readiness state of this pod for accepting traffic.",
    ),
    col(
        "Status",
        "string",
        "The aggregate status of the containers in this pod.",
    ),
    col(
        "Restarts",
        "string",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
    ),
    AGE,
    wide(
        "IP",
        "string",
        "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
    ),
    wide(
        "Node",
        "string",
        "NodeName indicates in which node this pod is scheduled.",
    ),
    wide(
        "Nominated Node",
        "string",
        "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.",
    ),
    wide(
        "Readiness Gates",
        "string",
        "If specified, all readiness gates will be evaluated for pod readiness.",
    ),
];

/// A sidecar: an init container that keeps running (`restartPolicy: Always`).
fn is_restartable_init(c: Option<&Container>) -> bool {
    c.and_then(|c| c.restart_policy.as_deref()) == Some("Always")
}

/// The finish time of a container's previous run, if it was terminated.
fn last_finished(cs: &ContainerStatus) -> Option<Timestamp> {
    cs.last_state
        .as_ref()?
        .terminated
        .as_ref()?
        .finished_at
        .as_ref()
        .map(|t| t.0)
}

fn later(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `printPod`: Ready, Status (the phase, a container's waiting/terminated reason, `Init:…`,
/// `Terminating`), Restarts (`3 (5m ago)`), and the wide cells.
pub(crate) fn pod(k: &Pod, now: Timestamp) -> Vec<Value> {
    let empty_spec = PodSpec::default();
    let spec = k.spec.as_ref().unwrap_or(&empty_spec);
    let status = k.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.as_deref().unwrap_or_default();
    let conditions = status.conditions.as_deref().unwrap_or_default();

    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut total = spec.containers.len();
    let mut ready = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;

    let phase = status.phase.clone().unwrap_or_default();
    let mut reason = match status.reason.as_deref() {
        Some(r) if !r.is_empty() => r.to_owned(),
        _ => phase.clone(),
    };
    if conditions
        .iter()
        .any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated"))
    {
        reason = "SchedulingGated".to_owned();
    }

    let init_spec = |name: &str| init_specs.iter().find(|c| c.name == name);
    total += init_specs
        .iter()
        .filter(|c| is_restartable_init(Some(c)))
        .count();

    let mut initializing = false;
    let init_statuses = status
        .init_container_statuses
        .as_deref()
        .unwrap_or_default();
    for (i, cs) in init_statuses.iter().enumerate() {
        restarts += i64::from(cs.restart_count);
        last_restart = later(last_restart, last_finished(cs));
        let sidecar = is_restartable_init(init_spec(&cs.name));
        if sidecar {
            sidecar_restarts += i64::from(cs.restart_count);
            last_sidecar_restart = later(last_sidecar_restart, last_finished(cs));
        }
        let state = cs.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && cs.started == Some(true) {
            if cs.ready {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = &state.terminated {
            reason = match t.reason.as_deref() {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(r) = state
            .waiting
            .as_ref()
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing")
        {
            reason = format!("Init:{r}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        // Upstream walks the statuses backwards, so the first container's reason wins.
        for cs in status.container_statuses.iter().flatten().rev() {
            restarts += i64::from(cs.restart_count);
            last_restart = later(last_restart, last_finished(cs));
            let state = cs.state.clone().unwrap_or_default();
            let waiting = state
                .waiting
                .as_ref()
                .and_then(|w| w.reason.as_deref())
                .filter(|r| !r.is_empty());
            if let Some(r) = waiting {
                reason = r.to_owned();
            } else if let Some(t) = &state.terminated {
                reason = match t.reason.as_deref() {
                    Some(r) if !r.is_empty() => r.to_owned(),
                    _ => match t.signal {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if cs.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.to_owned();
        }
    }

    if k.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".to_owned();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_owned();
        }
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(&t), now)),
        _ => restarts.to_string(),
    };

    let none_if_empty = |v: Option<&str>| match v {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "<none>".to_owned(),
    };
    let ip = status
        .pod_ips
        .as_ref()
        .and_then(|ips| ips.first())
        .map(|p| p.ip.as_str());
    let gates = spec.readiness_gates.as_deref().unwrap_or_default();
    let gates_text = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let passing = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c.type_ == g.condition_type)
                    .is_some_and(|c| c.status == "True")
            })
            .count();
        format!("{passing}/{}", gates.len())
    };

    vec![
        name(&k.metadata),
        s(format!("{ready}/{total}")),
        s(reason),
        s(restarts_text),
        age(&k.metadata, now),
        s(none_if_empty(ip)),
        s(none_if_empty(spec.node_name.as_deref())),
        s(none_if_empty(status.nominated_node_name.as_deref())),
        s(gates_text),
    ]
}

// --- Service -----------------------------------------------------------------------------------------

pub(crate) const SERVICE: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer.",
    ),
    col(
        "Cluster-IP",
        "string",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
    ),
    col(
        "External-IP",
        "string",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
    ),
    col(
        "Port(s)",
        "string",
        "The list of ports that are exposed by this service.",
    ),
    AGE,
    wide(
        "Selector",
        "string",
        "Route service traffic to pods with label keys and values matching this selector.",
    ),
];

/// Load-balancer ingress points: IPs, or hostnames where there is no IP; sorted, without repeats.
/// Never cut short: the server prints the wide form.
fn lb_ingress<'a>(points: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>) -> String {
    let mut out: Vec<&str> = points
        .filter_map(|(ip, host)| {
            ip.filter(|i| !i.is_empty())
                .or(host.filter(|h| !h.is_empty()))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out.join(",")
}

pub(crate) fn service(k: &Service, now: Timestamp) -> Vec<Value> {
    let spec = k.spec.clone().unwrap_or_default();
    let type_ = spec.type_.clone().unwrap_or_default();
    let cluster_ip = spec
        .cluster_ips
        .as_ref()
        .and_then(|ips| ips.first().cloned())
        .unwrap_or_else(|| "<none>".to_owned());
    let external_ips = spec.external_ips.clone().unwrap_or_default();

    let external = match type_.as_str() {
        "ClusterIP" | "NodePort" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".to_owned(),
        "LoadBalancer" => {
            let lb = lb_ingress(
                k.status
                    .as_ref()
                    .and_then(|st| st.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .map(|i| (i.ip.as_deref(), i.hostname.as_deref())),
            );
            if !external_ips.is_empty() {
                let mut all: Vec<String> = Vec::new();
                if !lb.is_empty() {
                    all.extend(lb.split(',').map(str::to_owned));
                }
                all.extend(external_ips.iter().cloned());
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_owned()
            }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_owned(),
    };

    let ports: Vec<String> = spec
        .ports
        .iter()
        .flatten()
        .map(|p| {
            let proto = p.protocol.as_deref().unwrap_or_default();
            match p.node_port {
                Some(np) if np > 0 => format!("{}:{np}/{proto}", p.port),
                _ => format!("{}/{proto}", p.port),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_owned()
    } else {
        ports.join(",")
    };

    vec![
        name(&k.metadata),
        s(type_),
        s(cluster_ip),
        s(external),
        s(ports),
        age(&k.metadata, now),
        s(format_labels(spec.selector.as_ref())),
    ]
}

// --- Endpoints ---------------------------------------------------------------------------------------

pub(crate) const ENDPOINTS: &[Column] = &[
    NAME,
    col(
        "Endpoints",
        "string",
        "The set of all endpoints is the union of all subsets.",
    ),
    AGE,
];

/// `host:port`, with brackets around IPv6 hosts (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `formatEndpoints`: up to three `ip:port` (or bare IPs for port-less subsets), then `+ N more...`.
fn format_endpoints(k: &Endpoints) -> String {
    const MAX: usize = 3;
    let subsets = k.subsets.as_deref().unwrap_or_default();
    if subsets.is_empty() {
        return "<none>".to_owned();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0;
    for ss in subsets {
        let addresses = ss.addresses.as_deref().unwrap_or_default();
        let ports = ss.ports.as_deref().unwrap_or_default();
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    break;
                }
                list.push(a.ip.clone());
            }
            continue;
        }
        for p in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    break;
                }
                list.push(join_host_port(&a.ip, p.port));
            }
        }
    }
    // Unlike the EndpointSlice printer, an Endpoints with subsets but no addresses prints empty.
    if count > MAX {
        format!("{} + {} more...", list.join(","), count - MAX)
    } else {
        list.join(",")
    }
}

pub(crate) fn endpoints(k: &Endpoints, now: Timestamp) -> Vec<Value> {
    vec![
        name(&k.metadata),
        s(format_endpoints(k)),
        age(&k.metadata, now),
    ]
}

// --- EndpointSlice -----------------------------------------------------------------------------------

pub(crate) const ENDPOINT_SLICE: &[Column] = &[
    NAME,
    col(
        "AddressType",
        "string",
        "addressType specifies the type of address carried by this EndpointSlice.",
    ),
    col(
        "Ports",
        "string",
        "ports specifies the list of network ports exposed by each endpoint in this slice.",
    ),
    col(
        "Endpoints",
        "string",
        "endpoints is a list of unique endpoints in this slice.",
    ),
    AGE,
];

pub(crate) fn endpoint_slice(k: &EndpointSlice, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let ports: Vec<String> = k
        .ports
        .iter()
        .flatten()
        .map(|p| match (p.port, &p.name) {
            (Some(n), _) => n.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".to_owned(),
        })
        .collect();
    let port_total = ports.len();
    let ports: Vec<String> = ports.into_iter().take(MAX).collect();

    let addresses: Vec<&String> = k.endpoints.iter().flat_map(|e| &e.addresses).collect();
    let shown: Vec<String> = addresses.iter().take(MAX).map(|a| (*a).clone()).collect();

    vec![
        name(&k.metadata),
        s(k.address_type.clone()),
        s(list_with_more(&ports, port_total, MAX)),
        s(list_with_more(&shown, addresses.len(), MAX)),
        age(&k.metadata, now),
    ]
}

// --- Secret, ConfigMap -------------------------------------------------------------------------------

pub(crate) const SECRET: &[Column] = &[
    NAME,
    col(
        "Type",
        "string",
        "Used to facilitate programmatic handling of secret data.",
    ),
    col(
        "Data",
        "string",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

pub(crate) fn secret(k: &Secret, now: Timestamp) -> Vec<Value> {
    let data = k.data.as_ref().map_or(0, |d| d.len());
    vec![
        name(&k.metadata),
        s(k.type_.clone().unwrap_or_default()),
        int(data as i64),
        age(&k.metadata, now),
    ]
}

pub(crate) const CONFIG_MAP: &[Column] = &[
    NAME,
    col(
        "Data",
        "string",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'.",
    ),
    AGE,
];

pub(crate) fn config_map(k: &ConfigMap, now: Timestamp) -> Vec<Value> {
    let data =
        k.data.as_ref().map_or(0, |d| d.len()) + k.binary_data.as_ref().map_or(0, |d| d.len());
    vec![name(&k.metadata), int(data as i64), age(&k.metadata, now)]
}

// --- Event -------------------------------------------------------------------------------------------

pub(crate) const EVENT: &[Column] = &[
    col(
        "Last Seen",
        "string",
        "The time at which the most recent occurrence of this event was recorded.",
    ),
    col(
        "Type",
        "string",
        "Type of this event (Normal, Warning), new types could be added in the future",
    ),
    col(
        "Reason",
        "string",
        "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.",
    ),
    col("Object", "string", "The object that this event is about."),
    wide(
        "Subobject",
        "string",
        "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
    ),
    wide(
        "Source",
        "string",
        "The component reporting this event. Should be a short machine understandable string.",
    ),
    col(
        "Message",
        "string",
        "A human-readable description of the status of this operation.",
    ),
    wide(
        "First Seen",
        "string",
        "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)",
    ),
    wide(
        "Count",
        "string",
        "The number of times this event has occurred.",
    ),
    Column {
        priority: 1,
        ..NAME
    },
];

pub(crate) fn event(k: &Event, now: Timestamp) -> Vec<Value> {
    let first = match &k.first_timestamp {
        Some(t) => since_time(Some(t), now),
        None => since_micro(k.event_time.as_ref(), now),
    };
    let mut last = match &k.last_timestamp {
        Some(t) => since_time(Some(t), now),
        None => first.clone(),
    };
    let mut count = i64::from(k.count.unwrap_or(0));
    if let Some(series) = &k.series {
        last = since_micro(series.last_observed_time.as_ref(), now);
        count = i64::from(series.count.unwrap_or(0));
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }

    let obj = &k.involved_object;
    let kind = obj.kind.clone().unwrap_or_default().to_lowercase();
    let target = match obj.name.as_deref() {
        Some(n) if !n.is_empty() => format!("{kind}/{n}"),
        _ => kind,
    };

    let nonempty = |v: Option<&String>| v.filter(|v| !v.is_empty()).cloned();
    let source = k.source.as_ref();
    let component = nonempty(source.and_then(|s| s.component.as_ref()))
        .or_else(|| nonempty(k.reporting_component.as_ref()))
        .unwrap_or_default();
    let instance = nonempty(source.and_then(|s| s.host.as_ref()))
        .or_else(|| nonempty(k.reporting_instance.as_ref()))
        .unwrap_or_default();
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };

    vec![
        s(last),
        s(k.type_.clone().unwrap_or_default()),
        s(k.reason.clone().unwrap_or_default()),
        s(target),
        s(obj.field_path.clone().unwrap_or_default()),
        s(source),
        s(k.message.as_deref().unwrap_or_default().trim()),
        s(first),
        int(count),
        name(&k.metadata),
    ]
}

// --- Deployment, ReplicaSet --------------------------------------------------------------------------

pub(crate) const DEPLOYMENT: &[Column] = &[
    NAME,
    col("Ready", "string", "Number of the pod with ready state"),
    col(
        "Up-to-date",
        "string",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
    ),
    col(
        "Available",
        "string",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
    ),
];

/// `spec.replicas` as the internal (defaulted) type sees it: absent means the default of 1.
fn desired_replicas(replicas: Option<i32>) -> i64 {
    i64::from(replicas.unwrap_or(1))
}

pub(crate) fn deployment(k: &Deployment, now: Timestamp) -> Vec<Value> {
    let spec = k.spec.clone().unwrap_or_default();
    let status = k.status.clone().unwrap_or_default();
    let ready = i64::from(status.ready_replicas.unwrap_or(0));
    // The Deployment printer prints the selector as is (empty when it selects everything), and
    // `<invalid>` rather than FormatLabelSelector's `<error>`.
    let selector = match LabelSelector::from_api(&spec.selector) {
        Ok(sel) => sel.to_string(),
        Err(_) => "<invalid>".to_owned(),
    };
    let (names, images) = container_cells(spec.template.spec.as_ref());
    vec![
        name(&k.metadata),
        s(format!("{ready}/{}", desired_replicas(spec.replicas))),
        int(status.updated_replicas.unwrap_or(0)),
        int(status.available_replicas.unwrap_or(0)),
        age(&k.metadata, now),
        names,
        images,
        s(selector),
    ]
}

pub(crate) const REPLICA_SET: &[Column] = &[
    NAME,
    col(
        "Desired",
        "integer",
        "Replicas is the number of desired pods.",
    ),
    col(
        "Current",
        "integer",
        "Replicas is the most recently observed number of replicas.",
    ),
    col(
        "Ready",
        "integer",
        "The number of ready replicas for this replica set.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide(
        "Selector",
        "string",
        "Selector is a label query over pods that should match the replica count.",
    ),
];

pub(crate) fn replica_set(k: &ReplicaSet, now: Timestamp) -> Vec<Value> {
    let spec = k.spec.clone().unwrap_or_default();
    let status = k.status.clone().unwrap_or_default();
    let (names, images) = container_cells(spec.template.as_ref().and_then(|t| t.spec.as_ref()));
    vec![
        name(&k.metadata),
        int(desired_replicas(spec.replicas)),
        int(status.replicas),
        int(status.ready_replicas.unwrap_or(0)),
        age(&k.metadata, now),
        names,
        images,
        s(format_label_selector(Some(&spec.selector))),
    ]
}

// --- Ingress, IngressClass, NetworkPolicy ------------------------------------------------------------

pub(crate) const INGRESS: &[Column] = &[
    NAME,
    col(
        "Class",
        "string",
        "The name of the IngressClass resource that should be used for additional configuration",
    ),
    col(
        "Hosts",
        "string",
        "Hosts that incoming requests are matched against before the ingress rule",
    ),
    col(
        "Address",
        "string",
        "Address is a list containing ingress points for the load-balancer",
    ),
    col("Ports", "string", "Ports of TLS configurations that open"),
    AGE,
];

pub(crate) fn ingress(k: &Ingress, now: Timestamp) -> Vec<Value> {
    const MAX: usize = 3;
    let spec = k.spec.clone().unwrap_or_default();
    let rules = spec.rules.unwrap_or_default();
    // Hosts are collected until three are listed; any rule after that sets "more", and "+ N more"
    // counts rules beyond the third (not hosts), as upstream does.
    let mut hosts: Vec<&str> = Vec::new();
    let mut more = false;
    for r in &rules {
        if hosts.len() == MAX {
            more = true;
        }
        if let Some(h) = r.host.as_deref().filter(|h| !more && !h.is_empty()) {
            hosts.push(h);
        }
    }
    let hosts = if hosts.is_empty() {
        "*".to_owned()
    } else if more {
        format!("{} + {} more...", hosts.join(","), rules.len() - MAX)
    } else {
        hosts.join(",")
    };
    let address = lb_ingress(
        k.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .map(|i| (i.ip.as_deref(), i.hostname.as_deref())),
    );
    let ports = if spec.tls.is_some_and(|t| !t.is_empty()) {
        "80, 443"
    } else {
        "80"
    };
    vec![
        name(&k.metadata),
        s(spec
            .ingress_class_name
            .unwrap_or_else(|| "<none>".to_owned())),
        s(hosts),
        s(address),
        s(ports),
        age(&k.metadata, now),
    ]
}

pub(crate) const INGRESS_CLASS: &[Column] = &[
    NAME,
    col(
        "Controller",
        "string",
        "Controller that is responsible for handling this class",
    ),
    col(
        "Parameters",
        "string",
        "A reference to a resource with additional parameters",
    ),
    AGE,
];

pub(crate) fn ingress_class(k: &IngressClass, now: Timestamp) -> Vec<Value> {
    let spec = k.spec.clone().unwrap_or_default();
    let parameters = match &spec.parameters {
        None => "<none>".to_owned(),
        Some(p) => {
            let group = p
                .api_group
                .as_ref()
                .map(|g| format!(".{g}"))
                .unwrap_or_default();
            format!("{}{group}/{}", p.kind, p.name)
        }
    };
    vec![
        name(&k.metadata),
        s(spec.controller.unwrap_or_default()),
        s(parameters),
        age(&k.metadata, now),
    ]
}

pub(crate) const NETWORK_POLICY: &[Column] = &[
    NAME,
    col(
        "Pod-Selector",
        "string",
        "Selects the pods to which this NetworkPolicy object applies.",
    ),
    AGE,
];

pub(crate) fn network_policy(k: &NetworkPolicy, now: Timestamp) -> Vec<Value> {
    let selector = k
        .spec
        .as_ref()
        .and_then(|s| s.pod_selector.clone())
        .unwrap_or_default();
    vec![
        name(&k.metadata),
        s(format_label_selector(Some(&selector))),
        age(&k.metadata, now),
    ]
}

// --- Lease -------------------------------------------------------------------------------------------

pub(crate) const LEASE: &[Column] = &[
    NAME,
    col(
        "Holder",
        "string",
        "holderIdentity contains the identity of the holder of a current lease.",
    ),
    AGE,
];

pub(crate) fn lease(k: &Lease, now: Timestamp) -> Vec<Value> {
    let holder = k
        .spec
        .as_ref()
        .and_then(|s| s.holder_identity.clone())
        .unwrap_or_default();
    vec![name(&k.metadata), s(holder), age(&k.metadata, now)]
}

#[cfg(test)]
mod tests;

//! Defaulting, as the real API server applies it before validation (`pkg/apis/*/v1/defaults.go`), plus
//! the few normalisations upstream does in conversion or in a kind's create strategy that a client can
//! see in the stored object: Secret `stringData` folded into `data`, Service `clusterIP`/`clusterIPs`
//! kept in step, the IP family fields the Service allocator fills, empty Service and Pod status, and
//! Namespace finalizers. Each function only fills fields the user left out.
//!
//! Not here: allocation (cluster IPs, node ports, health-check node ports), admission plugins (service
//! account, default tolerations, priority), and update-time carry-over of allocated values from the old
//! object — that needs the old object and belongs to the API server.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ClientIPConfig, ConfigMap, Container, Endpoints, Event, Namespace, NamespaceSpec,
    NamespaceStatus, Node, Pod, PodSpec, PodStatus, PodTemplateSpec, Probe, Secret, Service,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::validation::externally_accessible;

/// `v1.DefaultClientIPServiceAffinitySeconds`: three hours.
const DEFAULT_AFFINITY_SECONDS: i32 = 10800;

fn set_if_none<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn set_if_empty(slot: &mut Option<String>, value: &str) {
    if slot.as_deref().unwrap_or_default().is_empty() {
        *slot = Some(value.to_owned());
    }
}

/// `SetDefaults_Namespace` adds the immutable name label; the create strategy adds the `kubernetes`
/// finalizer; `SetDefaults_NamespaceStatus` makes the phase Active.
pub(crate) fn namespace(obj: &mut Namespace) {
    if let Some(name) = obj.metadata.name.clone().filter(|n| !n.is_empty()) {
        obj.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("kubernetes.io/metadata.name".to_owned(), name);
    }
    let spec = obj.spec.get_or_insert_with(NamespaceSpec::default);
    if spec.finalizers.is_none() {
        spec.finalizers = Some(vec!["kubernetes".to_owned()]);
    }
    let status = obj.status.get_or_insert_with(NamespaceStatus::default);
    set_if_empty(&mut status.phase, "Active");
}

/// `SetDefaults_NodeStatus`: allocatable starts as the capacity.
pub(crate) fn node(obj: &mut Node) {
    if let Some(status) = &mut obj.status
        && status.allocatable.is_none()
    {
        status.allocatable.clone_from(&status.capacity);
    }
}

pub(crate) fn pod(obj: &mut Pod) {
    let spec = obj.spec.get_or_insert_with(PodSpec::default);
    // `SetDefaults_Pod`: limits without requests become the requests.
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if let Some(res) = &mut c.resources
            && let Some(limits) = &res.limits
        {
            let requests = res.requests.get_or_insert_with(BTreeMap::new);
            for (k, v) in limits {
                requests.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    // Host-network pods listen on the host: the host port is the container port.
    if spec.host_network == Some(true) {
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            for p in c.ports.iter_mut().flatten() {
                if p.host_port.unwrap_or(0) == 0 {
                    p.host_port = Some(p.container_port);
                }
            }
        }
    }
    pod_spec(spec);
    // The create strategy starts every pod Pending, with its QoS class.
    if obj.status.is_none() {
        let qos = qos_class(spec);
        obj.status = Some(PodStatus {
            phase: Some("Pending".to_owned()),
            qos_class: Some(qos.to_owned()),
            ..PodStatus::default()
        });
    }
}

/// A pod's QoS class (`qos.GetPodQOS`), on cpu and memory of the regular and init containers.
fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let empty = BTreeMap::new();
        let res = c.resources.as_ref();
        let requests = res.and_then(|r| r.requests.as_ref()).unwrap_or(&empty);
        let limits = res.and_then(|r| r.limits.as_ref()).unwrap_or(&empty);
        for name in ["cpu", "memory"] {
            let req = requests.get(name).filter(|q| !is_zero(q));
            let lim = limits.get(name).filter(|q| !is_zero(q));
            any |= req.is_some() || lim.is_some();
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

fn is_zero(q: &Quantity) -> bool {
    let number: String =
        q.0.chars()
            .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-'))
            .collect();
    number.parse::<f64>().is_ok_and(|n| n == 0.0)
}

/// `SetDefaults_PodSpec` and the container, port, probe and volume defaults under it.
fn pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(&mut spec.termination_grace_period_seconds, 30);
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    set_if_none(&mut spec.enable_service_links, true);
    set_if_none(&mut spec.security_context, Default::default());
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        // A volume with no source is an emptyDir.
        let mut probe = serde_json::to_value(&*v).unwrap_or_default();
        if let Some(m) = probe.as_object_mut() {
            m.remove("name");
            if m.is_empty() {
                v.empty_dir = Some(Default::default());
            }
        }
        if let Some(s) = &mut v.secret {
            set_if_none(&mut s.default_mode, 0o644);
        }
        if let Some(cm) = &mut v.config_map {
            set_if_none(&mut cm.default_mode, 0o644);
        }
    }
}

fn container(c: &mut Container) {
    if c.image_pull_policy
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        let image = c.image.as_deref().unwrap_or_default();
        c.image_pull_policy = Some(pull_policy_for(image).to_owned());
    }
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    for p in c.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set_if_empty(&mut f.api_version, "v1");
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
    if let Some(l) = &mut c.lifecycle {
        for h in [&mut l.post_start, &mut l.pre_stop].into_iter().flatten() {
            if let Some(g) = &mut h.http_get {
                set_if_empty(&mut g.path, "/");
                set_if_empty(&mut g.scheme, "HTTP");
            }
        }
    }
}

/// `Always` when the image names no tag or `:latest` (and no digest), `IfNotPresent` otherwise.
fn pull_policy_for(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // A tag follows the last ':' after the last '/'; a ':' before it belongs to a registry port.
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn probe_defaults(p: &mut Probe) {
    for (slot, v) in [
        (&mut p.timeout_seconds, 1),
        (&mut p.period_seconds, 10),
        (&mut p.success_threshold, 1),
        (&mut p.failure_threshold, 3),
    ] {
        if slot.unwrap_or(0) == 0 {
            *slot = Some(v);
        }
    }
    if let Some(g) = &mut p.http_get {
        set_if_empty(&mut g.path, "/");
        set_if_empty(&mut g.scheme, "HTTP");
    }
}

fn template(t: &mut PodTemplateSpec) {
    pod_spec(t.spec.get_or_insert_with(PodSpec::default));
}

pub(crate) fn service(obj: &mut Service) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    set_if_empty(&mut spec.session_affinity, "None");
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let missing = spec
            .session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .is_none();
        if missing {
            spec.session_affinity_config = Some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(DEFAULT_AFFINITY_SECONDS),
                }),
            });
        }
    }
    set_if_empty(&mut spec.type_, "ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        set_if_empty(&mut p.protocol, "TCP");
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if externally_accessible(spec) {
        set_if_empty(&mut spec.external_traffic_policy, "Cluster");
    }
    let ty = spec.type_.clone().unwrap_or_default();
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer" | "ClusterIP") {
        set_if_none(&mut spec.internal_traffic_policy, "Cluster".to_owned());
    }
    if ty == "LoadBalancer" {
        set_if_none(&mut spec.allocate_load_balancer_node_ports, true);
    }

    // The strategy keeps clusterIP and clusterIPs in step (`NormalizeClusterIPs`): a client that sets
    // only the singular field gets the plural. Not the reverse: a client setting `clusterIPs` must set
    // `clusterIP` too (validation says so). `ipFamilies` and `ipFamilyPolicy` depend on the cluster's
    // Service ranges: the API server's admission defaults them, not this crate.
    let cluster_ip = spec.cluster_ip.clone().unwrap_or_default();
    if !cluster_ip.is_empty() && spec.cluster_ips.as_ref().is_none_or(Vec::is_empty) {
        spec.cluster_ips = Some(vec![cluster_ip]);
    }

    // The server always returns `status: {loadBalancer: {}}`.
    let status = obj.status.get_or_insert_with(ServiceStatus::default);
    set_if_none(&mut status.load_balancer, Default::default());
    if ty == "LoadBalancer" {
        for ing in status
            .load_balancer
            .iter_mut()
            .flat_map(|lb| lb.ingress.iter_mut().flatten())
        {
            if ing.ip.as_deref().is_some_and(|ip| !ip.is_empty()) {
                set_if_none(&mut ing.ip_mode, "VIP".to_owned());
            }
        }
    }
}

/// `SetDefaults_Endpoints`: ports default to TCP.
pub(crate) fn endpoints(obj: &mut Endpoints) {
    for ss in obj.subsets.iter_mut().flatten() {
        for p in ss.ports.iter_mut().flatten() {
            set_if_empty(&mut p.protocol, "TCP");
        }
    }
}

/// `Opaque` by default; `stringData` is folded into `data` (write-only, as upstream's conversion does).
pub(crate) fn secret(obj: &mut Secret) {
    set_if_empty(&mut obj.type_, "Opaque");
    if let Some(string_data) = obj.string_data.take() {
        let data = obj.data.get_or_insert_with(BTreeMap::new);
        for (k, v) in string_data {
            data.insert(k, ByteString(v.into_bytes()));
        }
    }
}

pub(crate) fn config_map(_obj: &mut ConfigMap) {}

pub(crate) fn event(_obj: &mut Event) {}

/// discovery/v1: port names default to "" and protocols to TCP.
pub(crate) fn endpoint_slice(obj: &mut EndpointSlice) {
    for p in obj.ports.iter_mut().flatten() {
        set_if_none(&mut p.name, String::new());
        set_if_empty(&mut p.protocol, "TCP");
    }
}

/// apps/v1 `SetDefaults_Deployment`.
pub(crate) fn deployment(obj: &mut Deployment) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    let strategy = spec
        .strategy
        .get_or_insert_with(DeploymentStrategy::default);
    set_if_empty(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let ru = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdateDeployment::default);
        set_if_none(
            &mut ru.max_unavailable,
            IntOrString::String("25%".to_owned()),
        );
        set_if_none(&mut ru.max_surge, IntOrString::String("25%".to_owned()));
    }
    set_if_none(&mut spec.revision_history_limit, 10);
    set_if_none(&mut spec.progress_deadline_seconds, 600);
    template(&mut spec.template);
}

/// apps/v1 `SetDefaults_ReplicaSet`.
pub(crate) fn replica_set(obj: &mut ReplicaSet) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    set_if_none(&mut spec.replicas, 1);
    if let Some(t) = &mut spec.template {
        template(t);
    }
}

pub(crate) fn ingress(_obj: &mut Ingress) {}

/// networking/v1 `SetDefaults_IngressClass`: parameters are cluster-scoped unless told otherwise.
pub(crate) fn ingress_class(obj: &mut IngressClass) {
    if let Some(p) = obj.spec.as_mut().and_then(|s| s.parameters.as_mut()) {
        set_if_none(&mut p.scope, "Cluster".to_owned());
    }
}

/// networking/v1 `SetDefaults_NetworkPolicy`: ports default to TCP; policyTypes to Ingress, plus Egress
/// when egress rules are given.
pub(crate) fn network_policy(obj: &mut NetworkPolicy) {
    let spec = obj.spec.get_or_insert_with(Default::default);
    for rule in spec.ingress.iter_mut().flatten() {
        for p in rule.ports.iter_mut().flatten() {
            set_if_empty(&mut p.protocol, "TCP");
        }
    }
    for rule in spec.egress.iter_mut().flatten() {
        for p in rule.ports.iter_mut().flatten() {
            set_if_empty(&mut p.protocol, "TCP");
        }
    }
    if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
        let mut types = vec!["Ingress".to_owned()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push("Egress".to_owned());
        }
        spec.policy_types = Some(types);
    }
}

pub(crate) fn lease(_obj: &mut Lease) {}

#[cfg(test)]
mod tests;

//! Pod and pod-template validation: the core of `ValidatePodSpec` (containers, ports, env names, probes,
//! enums, volumes' names) and the update rule that a pod's spec is immutable except for images and a few
//! fields. Security contexts, resources, affinity, topology spread and volume sources are not checked.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Probe, Toleration};

use super::common::{self, NameFormat};
use crate::field::{ErrorList, FieldError, Path};

const RESTART_POLICIES: &[&str] = &["Always", "Never", "OnFailure"];
const DNS_POLICIES: &[&str] = &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"];
const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: &[&str] = &["FallbackToLogsOnError", "File"];

pub(crate) fn validate(new: &Pod, old: Option<&Pod>) -> ErrorList {
    let mut errs = Vec::new();
    match old {
        None => errs.extend(common::object_meta(
            &new.metadata,
            NameFormat::Dns1123Subdomain,
        )),
        Some(old) => errs.extend(common::object_meta_update(&new.metadata, &old.metadata)),
    }
    let empty = PodSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    errs.extend(pod_spec(spec, &Path::new("spec")));
    if let Some(old) = old {
        errs.extend(spec_update(spec, old.spec.as_ref().unwrap_or(&empty)));
    }
    errs
}

/// `ValidatePodTemplateSpec`: template labels and annotations, then the pod spec.
pub(crate) fn template(t: Option<&PodTemplateSpec>, path: &Path) -> ErrorList {
    let Some(t) = t else {
        return vec![FieldError::required(path.clone(), "")];
    };
    let mut errs = Vec::new();
    if let Some(meta) = &t.metadata {
        errs.extend(common::labels(
            meta.labels.as_ref(),
            &path.child("metadata").child("labels"),
        ));
        errs.extend(common::annotations(
            meta.annotations.as_ref(),
            &path.child("metadata").child("annotations"),
        ));
    }
    let empty = PodSpec::default();
    let spec = t.spec.as_ref().unwrap_or(&empty);
    errs.extend(pod_spec(spec, &path.child("spec")));
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

fn enum_value(value: Option<&str>, supported: &[&str], path: &Path) -> ErrorList {
    match value.unwrap_or_default() {
        "" => vec![FieldError::required(path.clone(), "")],
        v if supported.contains(&v) => Vec::new(),
        v => vec![FieldError::not_supported(path.clone(), v, supported)],
    }
}

pub(crate) fn pod_spec(spec: &PodSpec, path: &Path) -> ErrorList {
    let mut errs = Vec::new();

    let mut volumes = BTreeSet::new();
    for (i, v) in spec.volumes.iter().flatten().enumerate() {
        let np = path.child("volumes").index(i).child("name");
        if v.name.is_empty() {
            errs.push(FieldError::required(np, ""));
        } else {
            errs.extend(common::dns1123_label(&v.name, &np));
            if !volumes.insert(v.name.clone()) {
                errs.push(FieldError::duplicate(np, v.name.as_str()));
            }
        }
    }

    // Container names are unique across init and regular containers; port names across the pod.
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        errs.extend(container(
            c,
            &path.child("initContainers").index(i),
            &mut names,
            &mut port_names,
            true,
        ));
    }
    if spec.containers.is_empty() {
        errs.push(FieldError::required(path.child("containers"), ""));
    }
    for (i, c) in spec.containers.iter().enumerate() {
        errs.extend(container(
            c,
            &path.child("containers").index(i),
            &mut names,
            &mut port_names,
            false,
        ));
    }

    errs.extend(enum_value(
        spec.restart_policy.as_deref(),
        RESTART_POLICIES,
        &path.child("restartPolicy"),
    ));
    errs.extend(enum_value(
        spec.dns_policy.as_deref(),
        DNS_POLICIES,
        &path.child("dnsPolicy"),
    ));
    if let Some(sel) = &spec.node_selector {
        errs.extend(common::labels(Some(sel), &path.child("nodeSelector")));
    }
    if let Some(sa) = spec
        .service_account_name
        .as_deref()
        .filter(|s| !s.is_empty())
    {
        errs.extend(common::dns1123_subdomain(
            sa,
            &path.child("serviceAccountName"),
        ));
    }
    if let Some(n) = spec.node_name.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(common::dns1123_subdomain(n, &path.child("nodeName")));
    }
    if let Some(h) = spec.hostname.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(common::dns1123_label(h, &path.child("hostname")));
    }
    if let Some(s) = spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
        errs.extend(common::dns1123_label(s, &path.child("subdomain")));
    }
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        errs.push(FieldError::invalid(
            path.child("activeDeadlineSeconds"),
            d,
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    errs
}

fn container(
    c: &Container,
    path: &Path,
    names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    init: bool,
) -> ErrorList {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        errs.extend(common::dns1123_label(&c.name, &path.child("name")));
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(path.child("name"), c.name.as_str()));
        }
    }
    let image = c.image.as_deref().unwrap_or_default();
    if image.is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            path.child("image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    errs.extend(enum_value(
        c.image_pull_policy.as_deref(),
        PULL_POLICIES,
        &path.child("imagePullPolicy"),
    ));
    errs.extend(enum_value(
        c.termination_message_policy.as_deref(),
        TERMINATION_MESSAGE_POLICIES,
        &path.child("terminationMessagePolicy"),
    ));

    for (i, p) in c.ports.iter().flatten().enumerate() {
        let pp = path.child("ports").index(i);
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            errs.extend(common::invalid_each(
                &pp.child("name"),
                name,
                common::is_valid_port_name(name),
            ));
            if !port_names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(pp.child("name"), name));
            }
        }
        if p.container_port == 0 {
            errs.push(FieldError::required(pp.child("containerPort"), ""));
        } else {
            for m in common::is_valid_port_num(i64::from(p.container_port)) {
                errs.push(FieldError::invalid(
                    pp.child("containerPort"),
                    p.container_port,
                    m,
                ));
            }
        }
        if let Some(hp) = p.host_port.filter(|h| *h != 0) {
            for m in common::is_valid_port_num(i64::from(hp)) {
                errs.push(FieldError::invalid(pp.child("hostPort"), hp, m));
            }
        }
        errs.extend(common::protocol(
            p.protocol.as_deref(),
            &pp.child("protocol"),
        ));
    }

    for (i, e) in c.env.iter().flatten().enumerate() {
        let ep = path.child("env").index(i);
        if e.name.is_empty() {
            errs.push(FieldError::required(ep.child("name"), ""));
        } else {
            errs.extend(common::invalid_each(
                &ep.child("name"),
                &e.name,
                common::is_env_var_name(&e.name),
            ));
        }
        if e.value_from.is_some() && e.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errs.push(FieldError::invalid(
                ep.child("valueFrom"),
                "",
                "may not be specified when `value` is not empty",
            ));
        }
    }

    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(FieldError::required(mp.child("name"), ""));
        }
        if m.mount_path.is_empty() {
            errs.push(FieldError::required(mp.child("mountPath"), ""));
        }
    }

    // Init containers (other than sidecars) may not have probes; the rest follow the regular rules.
    let sidecar = c.restart_policy.as_deref() == Some("Always");
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (field, probe, single_success) in probes {
        let Some(probe) = probe else { continue };
        let pp = path.child(field);
        if init && !sidecar {
            errs.push(FieldError::forbidden(
                pp,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        errs.extend(validate_probe(probe, &pp));
        if single_success && probe.success_threshold.unwrap_or(0) != 1 {
            errs.push(FieldError::invalid(
                pp.child("successThreshold"),
                probe.success_threshold.unwrap_or(0),
                "must be 1",
            ));
        }
        if field == "readinessProbe" && probe.termination_grace_period_seconds.is_some() {
            errs.push(FieldError::invalid(
                pp.child("terminationGracePeriodSeconds"),
                probe.termination_grace_period_seconds.unwrap_or(0),
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_probe(p: &Probe, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    let mut handlers = 0;
    let mut one = |set: bool, name: &str, errs: &mut ErrorList| -> bool {
        if !set {
            return false;
        }
        if handlers > 0 {
            errs.push(FieldError::forbidden(
                path.child(name),
                "may not specify more than 1 handler type",
            ));
            return false;
        }
        handlers += 1;
        true
    };
    if one(p.exec.is_some(), "exec", &mut errs)
        && p.exec
            .as_ref()
            .and_then(|e| e.command.as_ref())
            .is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(
            path.child("exec").child("command"),
            "",
        ));
    }
    if one(p.http_get.is_some(), "httpGet", &mut errs)
        && let Some(h) = &p.http_get
    {
        let hp = path.child("httpGet");
        if h.path.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(hp.child("path"), ""));
        }
        errs.extend(common::port_num_or_name(&h.port, &hp.child("port")));
        let scheme = h.scheme.as_deref().unwrap_or_default();
        if scheme != "HTTP" && scheme != "HTTPS" {
            errs.push(FieldError::not_supported(
                hp.child("scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if one(p.tcp_socket.is_some(), "tcpSocket", &mut errs)
        && let Some(t) = &p.tcp_socket
    {
        errs.extend(common::port_num_or_name(
            &t.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if one(p.grpc.is_some(), "grpc", &mut errs)
        && let Some(g) = &p.grpc
    {
        for m in common::is_valid_port_num(i64::from(g.port)) {
            errs.push(FieldError::invalid(
                path.child("grpc").child("port"),
                g.port,
                m,
            ));
        }
    }
    if handlers == 0 {
        errs.push(FieldError::required(
            path.clone(),
            "must specify a handler type",
        ));
    }
    for (field, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        errs.extend(common::nonnegative(
            i64::from(v.unwrap_or(0)),
            &path.child(field),
        ));
    }
    errs
}

const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`'s core: after masking the mutable fields, old and new specs must be equal.
fn spec_update(new: &PodSpec, old: &PodSpec) -> ErrorList {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    if new.containers.len() != old.containers.len() {
        return vec![FieldError::forbidden(
            sp.child("containers"),
            "pod updates may not add or remove containers",
        )];
    }
    if let Some(d) = new.active_deadline_seconds {
        if let Some(od) = old.active_deadline_seconds
            && d > od
        {
            errs.push(FieldError::invalid(
                sp.child("activeDeadlineSeconds"),
                d,
                "must be less than or equal to previous value",
            ));
        }
    } else if old.active_deadline_seconds.is_some() {
        errs.push(FieldError::invalid(
            sp.child("activeDeadlineSeconds"),
            "null",
            "must not update from a positive integer to nil value",
        ));
    }
    let old_tolerations: &[Toleration] = old.tolerations.as_deref().unwrap_or_default();
    let new_tolerations: &[Toleration] = new.tolerations.as_deref().unwrap_or_default();
    let tolerations_ok = old_tolerations.iter().all(|t| new_tolerations.contains(t));

    let mut masked = new.clone();
    for (c, o) in masked.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    if let (Some(cs), Some(os)) = (&mut masked.init_containers, &old.init_containers) {
        for (c, o) in cs.iter_mut().zip(os) {
            c.image.clone_from(&o.image);
        }
    }
    masked.active_deadline_seconds = old.active_deadline_seconds;
    if tolerations_ok {
        masked.tolerations.clone_from(&old.tolerations);
    }
    // Negative grace periods were once allowed; moving one to 1 is the permitted repair.
    if old.termination_grace_period_seconds.is_some_and(|g| g < 0)
        && new.termination_grace_period_seconds == Some(1)
    {
        masked.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }
    // The scheduler binds through `pods/binding`, which sets nodeName on an unbound pod.
    if old.node_name.as_deref().unwrap_or_default().is_empty() {
        masked.node_name.clone_from(&old.node_name);
    }
    if masked != *old {
        errs.push(FieldError::forbidden(
            sp,
            format!("{POD_UPDATE_FORBIDDEN}\n{}", spec_diff(old, &masked)),
        ));
    }
    errs
}

/// A short account of which top-level spec fields differ; upstream prints a `cmp.Diff` here.
fn spec_diff(old: &PodSpec, new: &PodSpec) -> String {
    let (Ok(serde_json::Value::Object(o)), Ok(serde_json::Value::Object(n))) =
        (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return String::new();
    };
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    let mut out = String::from("  core.PodSpec{\n");
    for k in keys {
        if o.get(k) != n.get(k) {
            if let Some(v) = o.get(k) {
                out.push_str(&format!("- \t{k}: {v},\n"));
            }
            if let Some(v) = n.get(k) {
                out.push_str(&format!("+ \t{k}: {v},\n"));
            }
        }
    }
    out.push_str("  }\n");
    out
}

#[cfg(test)]
mod tests;

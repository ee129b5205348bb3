//! The smaller core/v1 and coordination kinds: Namespace, Node, Secret, ConfigMap, Event, Lease.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::common::{self, NameFormat};
use crate::field::{ErrorList, FieldError, Path};

/// `core.MaxSecretSize`: 1 MiB of data in a Secret or ConfigMap.
const MAX_SECRET_SIZE: usize = 1024 * 1024;
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

fn meta(new: &ObjectMeta, old: Option<&ObjectMeta>, format: NameFormat) -> ErrorList {
    match old {
        None => common::object_meta(new, format),
        Some(old) => {
            // Updates re-check the name's format too (labels twice, as upstream), since the per-kind update
            // functions call the create validation after `ValidateObjectMetaUpdate`.
            let mut errs = common::object_meta_update(new, old);
            errs.extend(common::object_meta(new, format));
            errs
        }
    }
}

pub(crate) fn namespace(new: &Namespace, old: Option<&Namespace>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Label,
    );
    let finalizers = new.spec.as_ref().and_then(|s| s.finalizers.as_deref());
    for (i, f) in finalizers.into_iter().flatten().enumerate() {
        errs.extend(common::finalizers(
            Some(std::slice::from_ref(f)),
            &Path::new("spec").child("finalizers").index(i),
        ));
    }
    errs
}

pub(crate) fn node(new: &Node, old: Option<&Node>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Subdomain,
    );
    let spec = new.spec.clone().unwrap_or_default();
    let cidrs = spec.pod_cidrs.clone().unwrap_or_default();
    let cp = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        errs.extend(common::valid_cidr(c, &cp.index(i)));
    }
    for (i, t) in spec.taints.iter().flatten().enumerate() {
        let tp = Path::new("metadata").child("taints").index(i);
        errs.extend(common::qualified_name(&t.key, &tp.child("key")));
        let v = t.value.as_deref().unwrap_or_default();
        let msgs = common::is_valid_label_value(v);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(tp.child("value"), v, msgs.join(";")));
        }
        const EFFECTS: &[&str] = &["NoExecute", "NoSchedule", "PreferNoSchedule"];
        if !EFFECTS.contains(&t.effect.as_str()) {
            errs.push(FieldError::not_supported(
                tp.child("effect"),
                t.effect.as_str(),
                EFFECTS,
            ));
        }
    }
    if let Some(old) = old {
        let old_cidrs = old
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default();
        if !old_cidrs.is_empty() && old_cidrs != cidrs {
            errs.push(FieldError::forbidden(
                cp,
                "node updates may not change podCIDR except from \"\" to valid",
            ));
        }
        let old_provider = old
            .spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default();
        if !old_provider.is_empty() && Some(&old_provider) != spec.provider_id.as_ref() {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("providerID"),
                "node updates may not change providerID except from \"\" to valid",
            ));
        }
    }
    errs
}

pub(crate) fn secret(new: &Secret, old: Option<&Secret>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Subdomain,
    );
    let dp = Path::new("data");
    let data = new.data.clone().unwrap_or_default();
    let mut total = 0;
    for (k, v) in &data {
        errs.extend(common::invalid_each(
            &dp.key(k),
            k,
            common::is_config_map_key(k),
        ));
        total += v.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(dp.clone(), "", MAX_SECRET_SIZE));
    }
    let required = |key: &str| FieldError::required(dp.key(key), "");
    match new.type_.as_deref().unwrap_or_default() {
        "kubernetes.io/service-account-token" => {
            let name = new
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/service-account.name"));
            if name.is_none_or(String::is_empty) {
                errs.push(FieldError::required(
                    Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" if !data.contains_key(".dockercfg") => {
            errs.push(required(".dockercfg"));
        }
        "kubernetes.io/dockerconfigjson" if !data.contains_key(".dockerconfigjson") => {
            errs.push(required(".dockerconfigjson"));
        }
        "kubernetes.io/basic-auth"
            if !data.contains_key("username") && !data.contains_key("password") =>
        {
            errs.push(required("username"));
            errs.push(required("password"));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(|v| v.0.is_empty()) => {
            errs.push(required("ssh-privatekey"));
        }
        "kubernetes.io/tls" => {
            if !data.contains_key("tls.crt") {
                errs.push(required("tls.crt"));
            }
            if !data.contains_key("tls.key") {
                errs.push(required("tls.key"));
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        errs.extend(common::immutable(
            &new.type_.clone().unwrap_or_default(),
            &old.type_.clone().unwrap_or_default(),
            &Path::new("type"),
        ));
        if old.immutable == Some(true) {
            if new.immutable != Some(true) {
                errs.push(FieldError::forbidden(
                    Path::new("immutable"),
                    IMMUTABLE_WHEN_SET,
                ));
            }
            if new.data != old.data {
                errs.push(FieldError::forbidden(dp, IMMUTABLE_WHEN_SET));
            }
        }
    }
    errs
}

pub(crate) fn config_map(new: &ConfigMap, old: Option<&ConfigMap>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Subdomain,
    );
    let data = new.data.clone().unwrap_or_default();
    let binary = new.binary_data.clone().unwrap_or_default();
    let mut total = 0;
    for (k, v) in &data {
        let kp = Path::new("data").key(k);
        errs.extend(common::invalid_each(&kp, k, common::is_config_map_key(k)));
        if binary.contains_key(k) {
            errs.push(FieldError::invalid(
                kp,
                k.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += v.len();
    }
    for (k, v) in &binary {
        let kp = Path::new("binaryData").key(k);
        errs.extend(common::invalid_each(&kp, k, common::is_config_map_key(k)));
        total += v.0.len();
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long(Path::new(""), "", MAX_SECRET_SIZE));
    }
    if let Some(old) = old
        && old.immutable == Some(true)
    {
        if new.immutable != Some(true) {
            errs.push(FieldError::forbidden(
                Path::new("immutable"),
                IMMUTABLE_WHEN_SET,
            ));
        }
        if new.data != old.data {
            errs.push(FieldError::forbidden(Path::new("data"), IMMUTABLE_WHEN_SET));
        }
        if new.binary_data != old.binary_data {
            errs.push(FieldError::forbidden(
                Path::new("binaryData"),
                IMMUTABLE_WHEN_SET,
            ));
        }
    }
    errs
}

/// The core/v1 Event rules, lightly: the involved object's namespace must be the event's own.
pub(crate) fn event(new: &Event, old: Option<&Event>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Subdomain,
    );
    let ns = new.metadata.namespace.as_deref().unwrap_or_default();
    let involved = new.involved_object.namespace.as_deref().unwrap_or_default();
    let bad_ns = if new.event_time.is_none() {
        if involved.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved
        }
    } else {
        involved.is_empty() && ns != "default" && ns != "kube-system"
    };
    if bad_ns {
        errs.push(FieldError::invalid(
            Path::new("involvedObject").child("namespace"),
            involved,
            "does not match event.namespace",
        ));
    }
    if new.event_time.is_some() {
        let controller = new.reporting_component.as_deref().unwrap_or_default();
        if controller.is_empty() {
            errs.push(FieldError::required(Path::new("reportingComponent"), ""));
        }
        errs.extend(common::qualified_name(
            controller,
            &Path::new("reportingComponent"),
        ));
        if new
            .reporting_instance
            .as_deref()
            .unwrap_or_default()
            .is_empty()
        {
            errs.push(FieldError::required(Path::new("reportingInstance"), ""));
        }
        if new.action.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(Path::new("action"), ""));
        }
    }
    errs
}

/// Lease, lightly: name, and non-negative durations and transitions.
pub(crate) fn lease(new: &Lease, old: Option<&Lease>) -> ErrorList {
    let mut errs = meta(
        &new.metadata,
        old.map(|o| &o.metadata),
        NameFormat::Dns1123Subdomain,
    );
    let sp = Path::new("spec");
    if let Some(spec) = &new.spec {
        if let Some(d) = spec.lease_duration_seconds
            && d <= 0
        {
            errs.push(FieldError::invalid(
                sp.child("leaseDurationSeconds"),
                d,
                "must be greater than 0",
            ));
        }
        if let Some(t) = spec.lease_transitions {
            errs.extend(common::nonnegative(
                i64::from(t),
                &sp.child("leaseTransitions"),
            ));
        }
    }
    errs
}

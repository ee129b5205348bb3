//! Deployment and ReplicaSet validation (`pkg/apis/apps/validation`): selector required, non-empty and
//! matching the template, replicas and strategy rules, the template validated as a pod template, and the
//! selector immutable on update (apps/v1).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{self, NameFormat, go_err};
use super::pod;
use crate::field::{ErrorKind, ErrorList, FieldError, Path};

pub(crate) fn deployment(new: &Deployment, old: Option<&Deployment>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let empty = DeploymentSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    errs.extend(common::nonnegative(
        i64::from(spec.replicas.unwrap_or(0)),
        &sp.child("replicas"),
    ));
    errs.extend(selector_and_template(
        Some(&spec.selector),
        Some(&spec.template),
        &sp,
        "deployment",
    ));
    errs.extend(strategy(spec, &sp.child("strategy")));
    if let Some(r) = spec.revision_history_limit {
        errs.extend(common::nonnegative(
            i64::from(r),
            &sp.child("revisionHistoryLimit"),
        ));
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    errs.extend(common::nonnegative(
        i64::from(min_ready),
        &sp.child("minReadySeconds"),
    ));
    if let Some(p) = spec.progress_deadline_seconds {
        let pp = sp.child("progressDeadlineSeconds");
        errs.extend(common::nonnegative(i64::from(p), &pp));
        if p <= min_ready {
            errs.push(FieldError::invalid(
                pp,
                p,
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        let old_sel = old.spec.as_ref().map(|s| &s.selector);
        errs.extend(selector_immutable(Some(&spec.selector), old_sel));
    }
    errs
}

pub(crate) fn replica_set(new: &ReplicaSet, old: Option<&ReplicaSet>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let empty = ReplicaSetSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    errs.extend(common::nonnegative(
        i64::from(spec.replicas.unwrap_or(0)),
        &sp.child("replicas"),
    ));
    errs.extend(common::nonnegative(
        i64::from(spec.min_ready_seconds.unwrap_or(0)),
        &sp.child("minReadySeconds"),
    ));
    errs.extend(selector_and_template(
        Some(&spec.selector),
        spec.template.as_ref(),
        &sp,
        "deployment",
    ));
    if let Some(old) = old {
        let old_sel = old.spec.as_ref().map(|s| &s.selector);
        errs.extend(selector_immutable(Some(&spec.selector), old_sel));
    }
    errs
}

fn meta(
    new: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    old: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> ErrorList {
    match old {
        None => common::object_meta(new, NameFormat::Dns1123Subdomain),
        Some(old) => common::object_meta_update(new, old),
    }
}

fn selector_immutable(new: Option<&LabelSelector>, old: Option<&LabelSelector>) -> ErrorList {
    if new == old {
        return Vec::new();
    }
    vec![go_err(
        ErrorKind::Invalid,
        Path::new("spec").child("selector"),
        common::go_label_selector(new),
        common::FIELD_IMMUTABLE,
    )]
}

/// The selector must be set and non-empty (upstream's message says "deployment" for ReplicaSets too),
/// must match the template's labels, and the template must be a valid pod template that restarts always.
fn selector_and_template(
    selector: Option<&LabelSelector>,
    template: Option<&PodTemplateSpec>,
    sp: &Path,
    what: &str,
) -> ErrorList {
    let mut errs = Vec::new();
    let selp = sp.child("selector");
    let mut usable = None;
    match selector {
        None => errs.push(FieldError::required(selp.clone(), "")),
        Some(sel) => {
            errs.extend(common::label_selector(sel, &selp));
            if common::selector_is_empty(sel) {
                errs.push(go_err(
                    ErrorKind::Invalid,
                    selp.clone(),
                    common::go_label_selector(Some(sel)),
                    &format!("empty selector is invalid for {what}"),
                ));
            } else {
                usable = Some(sel);
            }
        }
    }
    let tp = sp.child("template");
    let Some(t) = template else {
        errs.push(FieldError::required(tp, ""));
        return errs;
    };
    let labels = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    if let Some(sel) = usable
        && !crate::selector::LabelSelector::from_api(sel).is_ok_and(|s| s.matches(&labels))
    {
        errs.push(go_err(
            ErrorKind::Invalid,
            tp.child("metadata").child("labels"),
            common::go_string_map(t.metadata.as_ref().and_then(|m| m.labels.as_ref())),
            "`selector` does not match template `labels`",
        ));
    }
    errs.extend(pod::template(Some(t), &tp));
    let spec = t.spec.as_ref();
    let restart = spec
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or_default();
    if restart != "Always" {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if spec.is_some_and(|s| s.active_deadline_seconds.is_some()) {
        errs.push(FieldError::forbidden(
            tp.child("spec").child("activeDeadlineSeconds"),
            "activeDeadlineSeconds in ReplicaSet is not Supported",
        ));
    }
    errs
}

fn strategy(spec: &DeploymentSpec, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    let strategy = spec.strategy.clone().unwrap_or_default();
    match strategy.type_.as_deref().unwrap_or_default() {
        "Recreate" => {
            if strategy.rolling_update.is_some() {
                errs.push(FieldError::forbidden(
                    path.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs.push(FieldError::required(
                path.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rp = path.child("rollingUpdate");
                let mu = ru.max_unavailable.clone().unwrap_or(IntOrString::Int(0));
                let ms = ru.max_surge.clone().unwrap_or(IntOrString::Int(0));
                errs.extend(positive_int_or_percent(&mu, &rp.child("maxUnavailable")));
                errs.extend(positive_int_or_percent(&ms, &rp.child("maxSurge")));
                if is_zero(&mu) && is_zero(&ms) {
                    errs.push(FieldError::invalid(
                        rp.child("maxUnavailable"),
                        value_of(&mu),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                if let IntOrString::String(s) = &mu
                    && percent(s).is_some_and(|p| p > 100)
                {
                    errs.push(FieldError::invalid(
                        rp.child("maxUnavailable"),
                        s.as_str(),
                        "must not be greater than 100%",
                    ));
                }
            }
        },
        "" => errs.push(FieldError::required(path.child("type"), "")),
        other => errs.push(FieldError::not_supported(
            path.child("type"),
            other,
            &["Recreate", "RollingUpdate"],
        )),
    }
    errs
}

fn percent(s: &str) -> Option<i64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(n) => *n == 0,
        IntOrString::String(s) => percent(s) == Some(0),
    }
}

fn value_of(v: &IntOrString) -> serde_json::Value {
    match v {
        IntOrString::Int(n) => (*n).into(),
        IntOrString::String(s) => s.clone().into(),
    }
}

/// `ValidatePositiveIntOrPercent`: a non-negative integer or a `N%` string.
fn positive_int_or_percent(v: &IntOrString, path: &Path) -> ErrorList {
    match v {
        IntOrString::Int(n) => common::nonnegative(i64::from(*n), path),
        IntOrString::String(s) => {
            if percent(s).is_some() {
                Vec::new()
            } else {
                vec![FieldError::invalid(
                    path.clone(),
                    s.as_str(),
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )]
            }
        }
    }
}

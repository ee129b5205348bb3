//! The checks every kind shares: name formats (apimachinery's `IsDNS1123Label` and friends, with their exact
//! messages), object metadata on create and update, labels, annotations, label selectors, IPs, CIDRs and
//! ports. Messages are Kubernetes' own, because kubectl prints them verbatim.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{ErrorKind, ErrorList, FieldError, Path};

pub(crate) const FIELD_IMMUTABLE: &str = "field is immutable";
pub(crate) const NEGATIVE: &str = "must be greater than or equal to 0";
/// `metav1validation.TotalAnnotationSizeLimitB`: 256 KiB for all annotation keys and values together.
pub(crate) const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

// ---- string formats (apimachinery pkg/util/validation) ----

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

/// Go's `RegexError`: note the `', ` after each example, which yields the double space before ` or `.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

pub(crate) fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

pub(crate) fn is_dns1123_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !matches_dns1123_label(v) {
        if matches_dns1123_subdomain(v) {
            errs.push("must not contain dots".to_owned());
        } else {
            errs.push(regex_error(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

pub(crate) fn is_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !matches_dns1123_subdomain(v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

pub(crate) fn is_dns1035_label(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    let ok = matches_dns1123_label(v) && v.as_bytes()[0].is_ascii_lowercase();
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// RFC 1034 wildcard: `*.` followed by a DNS-1123 subdomain.
pub(crate) fn is_wildcard_dns1123_subdomain(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    let ok = v.strip_prefix("*.").is_some_and(matches_dns1123_subdomain);
    if !ok {
        errs.push(regex_error(
            "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character",
            &format!("\\*\\.{DNS1123_SUBDOMAIN_FMT}"),
            &["*.example.com"],
        ));
    }
    errs
}

/// `IsQualifiedName` as of v1.33 (label keys, annotation keys, finalizers, appProtocol).
pub(crate) fn is_qualified_name(v: &str) -> Vec<String> {
    let name_err = || {
        regex_error(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            QUALIFIED_NAME_FMT,
            &["MyName", "my.name", "123-abc"],
        )
    };
    let mut errs = Vec::new();
    let parts: Vec<&str> = v.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_owned());
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            return vec![format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                name_err()
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_owned());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!("name part {}", name_err()));
    }
    errs
}

pub(crate) fn is_valid_label_value(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !(v.is_empty() || matches_qualified_part(v)) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

pub(crate) fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// IANA_SVC_NAME (RFC 6335).
pub(crate) fn is_valid_port_name(port: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if port.len() > 15 {
        errs.push(max_len_error(15));
    }
    if port.is_empty()
        || !port
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    }
    if !port.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if port.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if port.starts_with('-') || port.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

fn has_chdir_prefix(v: &str) -> Vec<String> {
    if v == "." {
        vec!["must not be '.'".to_owned()]
    } else if v == ".." {
        vec!["must not be '..'".to_owned()]
    } else if v.starts_with("..") {
        vec!["must not start with '..'".to_owned()]
    } else {
        Vec::new()
    }
}

/// Keys of ConfigMap and Secret data.
pub(crate) fn is_config_map_key(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push(max_len_error(253));
    }
    if v.is_empty()
        || !v
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            "[-._a-zA-Z0-9]+",
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    errs.extend(has_chdir_prefix(v));
    errs
}

/// Environment variable names. v1.33 has `RelaxedEnvironmentVariableValidation` on by default: any printable
/// ASCII but '='.
pub(crate) fn is_env_var_name(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.is_empty() {
        errs.push("environment variable name must be non-empty".to_owned());
    }
    if v.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        errs.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_owned(),
        );
    }
    errs
}

/// Each message of `check` as an `Invalid` error on `path`.
pub(crate) fn invalid_each(path: &Path, value: &str, msgs: Vec<String>) -> ErrorList {
    msgs.into_iter()
        .map(|m| FieldError::invalid(path.clone(), value, m))
        .collect()
}

pub(crate) fn dns1123_label(value: &str, path: &Path) -> ErrorList {
    invalid_each(path, value, is_dns1123_label(value))
}

pub(crate) fn dns1123_subdomain(value: &str, path: &Path) -> ErrorList {
    invalid_each(path, value, is_dns1123_subdomain(value))
}

pub(crate) fn qualified_name(value: &str, path: &Path) -> ErrorList {
    invalid_each(path, value, is_qualified_name(value))
}

pub(crate) fn nonnegative(value: i64, path: &Path) -> ErrorList {
    if value < 0 {
        vec![FieldError::invalid(path.clone(), value, NEGATIVE)]
    } else {
        Vec::new()
    }
}

/// `ValidatePortNumOrName`: a number in range, or an IANA service name.
pub(crate) fn port_num_or_name(port: &IntOrString, path: &Path) -> ErrorList {
    match port {
        IntOrString::Int(n) => is_valid_port_num(i64::from(*n))
            .into_iter()
            .map(|m| FieldError::invalid(path.clone(), *n, m))
            .collect(),
        IntOrString::String(s) => invalid_each(path, s, is_valid_port_name(s)),
    }
}

pub(crate) const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// A port protocol that must be present (defaulting fills it) and one of TCP, UDP, SCTP.
pub(crate) fn protocol(value: Option<&str>, path: &Path) -> ErrorList {
    match value.unwrap_or_default() {
        "" => vec![FieldError::required(path.clone(), "")],
        p if PROTOCOLS.contains(&p) => Vec::new(),
        p => vec![FieldError::not_supported(path.clone(), p, PROTOCOLS)],
    }
}

/// `ValidateImmutableField` for values that print as plain JSON (strings, numbers, string lists).
pub(crate) fn immutable<T: PartialEq + Clone + Into<serde_json::Value>>(
    new: &T,
    old: &T,
    path: &Path,
) -> ErrorList {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path.clone(),
            new.clone(),
            FIELD_IMMUTABLE,
        )]
    }
}

// ---- Go `%#v` renderings, for bad values Kubernetes prints that way ----

pub(crate) fn go_str(s: &str) -> String {
    format!("{s:?}")
}

pub(crate) fn go_string_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".to_owned(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_str(k), go_str(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

pub(crate) fn go_string_slice(v: Option<&[String]>) -> String {
    match v {
        None => "[]string(nil)".to_owned(),
        Some(v) => {
            let items: Vec<String> = v.iter().map(|s| go_str(s)).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

pub(crate) fn go_label_selector(s: Option<&LabelSelector>) -> String {
    let Some(s) = s else {
        return "(*v1.LabelSelector)(nil)".to_owned();
    };
    let exprs = match &s.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_str(&r.key),
                        go_str(&r.operator),
                        go_string_slice(r.values.as_deref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(s.match_labels.as_ref())
    )
}

// ---- metadata ----

/// How a kind's `metadata.name` is checked.
#[derive(Clone, Copy, Debug)]
pub(crate) enum NameFormat {
    Dns1123Subdomain,
    Dns1123Label,
    Dns1035Label,
}

impl NameFormat {
    fn check(self, name: &str) -> Vec<String> {
        match self {
            NameFormat::Dns1123Subdomain => is_dns1123_subdomain(name),
            NameFormat::Dns1123Label => is_dns1123_label(name),
            NameFormat::Dns1035Label => is_dns1035_label(name),
        }
    }
}

/// `ValidateObjectMeta` (create). The server fills `name` from `generateName` before validating, so a
/// missing name is an error here. Cluster-scoped kinds get their namespace cleared by the handler
/// (`rest.BeforeCreate`), so only its format is checked when present.
pub(crate) fn object_meta(meta: &ObjectMeta, format: NameFormat) -> ErrorList {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    match meta.name.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        )),
        name => errs.extend(invalid_each(&path.child("name"), name, format.check(name))),
    }
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        errs.extend(invalid_each(
            &path.child("namespace"),
            ns,
            is_dns1123_label(ns),
        ));
    }
    if let Some(g) = meta.generation {
        errs.extend(nonnegative(g, &path.child("generation")));
    }
    errs.extend(labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(finalizers(
        meta.finalizers.as_deref(),
        &path.child("finalizers"),
    ));
    errs
}

/// `ValidateObjectMetaUpdate`: identity and creation time never change; labels and annotations are
/// re-checked. (The handler fills `resourceVersion` for unconditional updates, so it is not required here.)
pub(crate) fn object_meta_update(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let path = Path::new("metadata");
    let mut errs = Vec::new();
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    if new.generation.unwrap_or(0) < old.generation.unwrap_or(0) {
        errs.push(FieldError::invalid(
            path.child("generation"),
            new.generation.unwrap_or(0),
            "must not be decremented",
        ));
    }
    errs.extend(immutable(&s(&new.name), &s(&old.name), &path.child("name")));
    errs.extend(immutable(
        &s(&new.namespace),
        &s(&old.namespace),
        &path.child("namespace"),
    ));
    errs.extend(immutable(&s(&new.uid), &s(&old.uid), &path.child("uid")));
    if new.creation_timestamp != old.creation_timestamp {
        let shown = new
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            path.child("creationTimestamp"),
            shown,
            FIELD_IMMUTABLE,
        ));
    }
    errs.extend(labels(new.labels.as_ref(), &path.child("labels")));
    errs.extend(annotations(
        new.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs
}

/// `ValidateLabels`: errors sit on the map's path itself (`metadata.labels`), not on the key.
pub(crate) fn labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(invalid_each(path, k, is_qualified_name(k)));
        errs.extend(invalid_each(path, v, is_valid_label_value(v)));
    }
    errs
}

/// `ValidateAnnotations`: keys are qualified names compared case-insensitively; keys and values together
/// may hold at most 256 KiB.
pub(crate) fn annotations(ann: Option<&BTreeMap<String, String>>, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in ann.into_iter().flatten() {
        errs.extend(invalid_each(path, k, is_qualified_name(&k.to_lowercase())));
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(
            path.clone(),
            "",
            TOTAL_ANNOTATION_SIZE,
        ));
    }
    errs
}

/// `ValidateFinalizerName`: a qualified name; unprefixed ones must be a standard finalizer.
pub(crate) fn finalizers(list: Option<&[String]>, path: &Path) -> ErrorList {
    const STANDARD: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];
    let mut errs = Vec::new();
    for f in list.into_iter().flatten() {
        let msgs = is_qualified_name(f);
        if !msgs.is_empty() {
            errs.extend(invalid_each(path, f, msgs));
        } else if !f.contains('/') && !STANDARD.contains(&f.as_str()) {
            errs.push(FieldError::invalid(
                path.clone(),
                f.as_str(),
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// `metav1validation.ValidateLabelSelector`.
pub(crate) fn label_selector(sel: &LabelSelector, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        rp.child("values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        rp.child("values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                rp.child("operator"),
                op,
                "not a valid selector operator",
            )),
        }
        errs.extend(invalid_each(
            &rp.child("key"),
            &req.key,
            is_qualified_name(&req.key),
        ));
        for (j, v) in values.iter().enumerate() {
            errs.extend(invalid_each(
                &rp.child("values").index(j),
                v,
                is_valid_label_value(v),
            ));
        }
    }
    errs.extend(labels(
        sel.match_labels.as_ref(),
        &path.child("matchLabels"),
    ));
    errs
}

pub(crate) fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && sel.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

// ---- IPs and CIDRs ----

/// Go's `netutils.ParseIPSloppy`: like the standard parser, but IPv4 parts may carry leading zeros
/// (read as decimal), which Kubernetes still accepts in v1.33.
pub(crate) fn parse_ip_sloppy(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// Go's `netutils.ParseCIDRSloppy`: the network, ignoring host bits.
pub(crate) fn parse_cidr_sloppy(s: &str) -> Option<ipnet::IpNet> {
    let (ip, len) = s.split_once('/')?;
    let ip = parse_ip_sloppy(ip)?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    ipnet::IpNet::new(ip, len).ok().map(|n| n.trunc())
}

pub(crate) fn valid_ip(value: &str, path: &Path) -> ErrorList {
    if parse_ip_sloppy(value).is_some() {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path.clone(),
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )]
    }
}

pub(crate) fn valid_cidr(value: &str, path: &Path) -> ErrorList {
    if parse_cidr_sloppy(value).is_some() {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            path.clone(),
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    }
}

/// `ValidateNonSpecialIP` / `ValidateEndpointIP`: no unspecified, loopback or link-local addresses.
pub(crate) fn non_special_ip(value: &str, path: &Path) -> ErrorList {
    let Some(ip) = parse_ip_sloppy(value) else {
        return vec![FieldError::invalid(
            path.clone(),
            value,
            "must be a valid IP address",
        )];
    };
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let (link_local, ll_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_link_local(),
            v4.octets()[0] == 224 && v4.octets()[1] == 0 && v4.octets()[2] == 0,
        ),
        IpAddr::V6(v6) => (
            (v6.segments()[0] & 0xffc0) == 0xfe80,
            v6.is_multicast() && (v6.segments()[0] & 0x000f) == 2,
        ),
    };
    let mut errs = Vec::new();
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            format!("may not be unspecified ({value})"),
        ));
    }
    if ip.is_loopback() {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    if link_local {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    if ll_multicast {
        errs.push(FieldError::invalid(
            path.clone(),
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

/// A Forbidden/Invalid/Duplicate error carrying a Go-printed value.
pub(crate) fn go_err(kind: ErrorKind, path: Path, literal: String, detail: &str) -> FieldError {
    FieldError::with_go_value(kind, path, literal, detail)
}

#[cfg(test)]
mod tests;

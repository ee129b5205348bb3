//! networking.k8s.io/v1 validation (`pkg/apis/networking/validation`): Ingress, IngressClass and
//! NetworkPolicy.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, IPBlock, Ingress, IngressBackend, IngressClass, IngressClassSpec, IngressSpec,
    NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{self, NameFormat, go_err};
use crate::field::{ErrorKind, ErrorList, FieldError, Path};

const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: &[&str] = &["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: &[&str] = &["/..", "/."];
const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
const MAX_CONTROLLER_LEN: usize = 250;

fn meta(new: &ObjectMeta, old: Option<&ObjectMeta>) -> ErrorList {
    match old {
        None => common::object_meta(new, NameFormat::Dns1123Subdomain),
        Some(old) => common::object_meta_update(new, old),
    }
}

pub(crate) fn ingress(new: &Ingress, old: Option<&Ingress>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let empty = IngressSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    let rules = spec.rules.as_deref().unwrap_or_default();

    if rules.is_empty() && spec.default_backend.is_none() {
        let literal = if spec.rules.is_none() {
            "[]networking.IngressRule(nil)".to_owned()
        } else {
            "[]networking.IngressRule{}".to_owned()
        };
        errs.push(go_err(
            ErrorKind::Invalid,
            sp.clone(),
            literal,
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = &spec.default_backend {
        errs.extend(backend(b, &sp.child("defaultBackend")));
    }
    for (i, rule) in rules.iter().enumerate() {
        let rp = sp.child("rules").index(i);
        if let Some(host) = rule.host.as_deref().filter(|h| !h.is_empty()) {
            errs.extend(host_name(host, &rp.child("host")));
        }
        if let Some(http) = &rule.http {
            let hp = rp.child("http");
            if http.paths.is_empty() {
                errs.push(FieldError::required(hp.child("paths"), ""));
            }
            for (j, p) in http.paths.iter().enumerate() {
                errs.extend(http_path(p, &hp.child("paths").index(j)));
            }
        }
    }
    for (i, tls) in spec.tls.iter().flatten().enumerate() {
        let tp = sp.child("tls").index(i);
        for (j, host) in tls.hosts.iter().flatten().enumerate() {
            let msgs = if host.contains('*') {
                common::is_wildcard_dns1123_subdomain(host)
            } else {
                common::is_dns1123_subdomain(host)
            };
            errs.extend(common::invalid_each(
                &tp.child("hosts").index(j),
                host,
                msgs,
            ));
        }
        if let Some(secret) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) {
            errs.extend(common::dns1123_subdomain(secret, &tp.child("secretName")));
        }
    }
    if let Some(class) = &spec.ingress_class_name {
        errs.extend(common::dns1123_subdomain(
            class,
            &sp.child("ingressClassName"),
        ));
        // Only on create: stored objects with both keep working.
        let annotated = new
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INGRESS_CLASS_ANNOTATION));
        if let (None, Some(a)) = (old, annotated) {
            errs.push(FieldError::invalid(
                Path::new("annotations").child(INGRESS_CLASS_ANNOTATION),
                a.as_str(),
                "can not be set when the class field is also set",
            ));
        }
    }
    errs
}

fn host_name(host: &str, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    if common::parse_ip_sloppy(host).is_some() {
        errs.push(FieldError::invalid(
            path.clone(),
            host,
            "must be a DNS name, not an IP address",
        ));
    }
    let msgs = if host.contains('*') {
        common::is_wildcard_dns1123_subdomain(host)
    } else {
        common::is_dns1123_subdomain(host)
    };
    errs.extend(common::invalid_each(path, host, msgs));
    errs
}

fn http_path(p: &HTTPIngressPath, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    let value = p.path.as_deref().unwrap_or_default();
    let pp = path.child("path");
    match p.path_type.as_str() {
        "" => errs.push(FieldError::required(
            path.child("pathType"),
            "pathType must be specified",
        )),
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    pp.clone(),
                    value,
                    "must be an absolute path",
                ));
            }
            if !value.is_empty() {
                for seq in INVALID_PATH_SEQUENCES {
                    if value.contains(seq) {
                        errs.push(FieldError::invalid(
                            pp.clone(),
                            value,
                            format!("must not contain '{seq}'"),
                        ));
                    }
                }
                for suffix in INVALID_PATH_SUFFIXES {
                    if value.ends_with(suffix) {
                        errs.push(FieldError::invalid(
                            pp.clone(),
                            value,
                            format!("cannot end with '{suffix}'"),
                        ));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(pp, value, "must be an absolute path"));
            }
        }
        other => errs.push(FieldError::not_supported(
            path.child("pathType"),
            other,
            PATH_TYPES,
        )),
    }
    errs.extend(backend(&p.backend, &path.child("backend")));
    errs
}

fn backend(b: &IngressBackend, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    match (&b.resource, &b.service) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path.clone(),
            "",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => {
            let rp = path.child("resource");
            if r.kind.is_empty() {
                errs.push(FieldError::required(rp.child("kind"), ""));
            }
            if r.name.is_empty() {
                errs.push(FieldError::required(rp.child("name"), ""));
            }
        }
        (None, Some(svc)) => {
            let sp = path.child("service");
            if svc.name.is_empty() {
                errs.push(FieldError::required(sp.child("name"), ""));
            } else {
                errs.extend(common::invalid_each(
                    &sp.child("name"),
                    &svc.name,
                    common::is_dns1035_label(&svc.name),
                ));
            }
            let port = svc.port.clone().unwrap_or_default();
            let name = port.name.unwrap_or_default();
            let number = port.number.unwrap_or(0);
            match (!name.is_empty(), number != 0) {
                (true, true) => errs.push(FieldError::invalid(
                    path.clone(),
                    "",
                    "cannot set both port name & port number",
                )),
                (true, false) => errs.extend(common::invalid_each(
                    &sp.child("port").child("name"),
                    &name,
                    common::is_valid_port_name(&name),
                )),
                (false, true) => {
                    for m in common::is_valid_port_num(i64::from(number)) {
                        errs.push(FieldError::invalid(
                            sp.child("port").child("number"),
                            number,
                            m,
                        ));
                    }
                }
                (false, false) => errs.push(FieldError::required(
                    path.clone(),
                    "port name or number is required",
                )),
            }
        }
        (None, None) => errs.push(FieldError::invalid(
            path.clone(),
            "",
            "resource or service backend is required",
        )),
    }
    errs
}

pub(crate) fn ingress_class(new: &IngressClass, old: Option<&IngressClass>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let empty = IngressClassSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    let controller = spec.controller.as_deref().unwrap_or_default();
    let cp = sp.child("controller");
    if controller.len() > MAX_CONTROLLER_LEN {
        errs.push(FieldError::too_long(cp.clone(), "", MAX_CONTROLLER_LEN));
    }
    errs.extend(domain_prefixed_path(controller, &cp));
    if let Some(p) = &spec.parameters {
        let pp = sp.child("parameters");
        if p.kind.is_empty() {
            errs.push(FieldError::required(pp.child("kind"), "kind is required"));
        }
        if p.name.is_empty() {
            errs.push(FieldError::required(pp.child("name"), "name is required"));
        }
        match p.scope.as_deref() {
            Some("Namespace") => {
                if p.namespace.as_deref().unwrap_or_default().is_empty() {
                    errs.push(FieldError::required(
                        pp.child("namespace"),
                        "`parameters.scope` is set to 'Namespace'",
                    ));
                }
            }
            Some("Cluster") => {
                if p.namespace.is_some() {
                    errs.push(FieldError::forbidden(
                        pp.child("namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(FieldError::not_supported(
                pp.child("scope"),
                other,
                &["Cluster", "Namespace"],
            )),
            None => errs.push(FieldError::required(pp.child("scope"), "")),
        }
    }
    if let Some(old) = old {
        let old_c = old
            .spec
            .as_ref()
            .and_then(|s| s.controller.clone())
            .unwrap_or_default();
        errs.extend(common::immutable(&controller.to_owned(), &old_c, &cp));
    }
    errs
}

/// `IsDomainPrefixedPath`: `example.com/some-path`.
fn domain_prefixed_path(v: &str, path: &Path) -> ErrorList {
    if v.is_empty() {
        return vec![FieldError::required(path.clone(), "")];
    }
    let Some((host, rest)) = v
        .split_once('/')
        .filter(|(h, r)| !h.is_empty() && !r.is_empty())
    else {
        return vec![FieldError::invalid(
            path.clone(),
            v,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )];
    };
    let mut errs = common::invalid_each(path, host, common::is_dns1123_subdomain(host));
    let ok = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&c));
    if !ok {
        errs.push(FieldError::invalid(
            path.clone(),
            rest,
            "Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        ));
    }
    errs
}

pub(crate) fn network_policy(new: &NetworkPolicy, old: Option<&NetworkPolicy>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let empty = NetworkPolicySpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    let sp = Path::new("spec");
    errs.extend(common::label_selector(
        &spec.pod_selector.clone().unwrap_or_default(),
        &sp.child("podSelector"),
    ));
    for (i, rule) in spec.ingress.iter().flatten().enumerate() {
        let rp = sp.child("ingress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errs.extend(policy_port(port, &rp.child("ports").index(j)));
        }
        for (j, peer) in rule.from.iter().flatten().enumerate() {
            errs.extend(policy_peer(peer, &rp.child("from").index(j)));
        }
    }
    for (i, rule) in spec.egress.iter().flatten().enumerate() {
        let rp = sp.child("egress").index(i);
        for (j, port) in rule.ports.iter().flatten().enumerate() {
            errs.extend(policy_port(port, &rp.child("ports").index(j)));
        }
        for (j, peer) in rule.to.iter().flatten().enumerate() {
            errs.extend(policy_peer(peer, &rp.child("to").index(j)));
        }
    }
    let types = spec.policy_types.as_deref().unwrap_or_default();
    if types.len() > 2 {
        errs.push(FieldError::with_go_value(
            ErrorKind::Invalid,
            sp.child("policyTypes"),
            format!(
                "[]networking.PolicyType{{{}}}",
                types
                    .iter()
                    .map(|t| common::go_str(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in types.iter().enumerate() {
        if t != "Ingress" && t != "Egress" {
            errs.push(FieldError::not_supported(
                sp.child("policyTypes").index(i),
                t.as_str(),
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

fn policy_port(p: &NetworkPolicyPort, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    if let Some(proto) = p.protocol.as_deref()
        && !matches!(proto, "TCP" | "UDP" | "SCTP")
    {
        errs.push(FieldError::not_supported(
            path.child("protocol"),
            proto,
            &["TCP", "UDP", "SCTP"],
        ));
    }
    match &p.port {
        Some(IntOrString::Int(n)) => {
            for m in common::is_valid_port_num(i64::from(*n)) {
                errs.push(FieldError::invalid(path.child("port"), *n, m));
            }
            if let Some(end) = p.end_port {
                if end < *n {
                    errs.push(FieldError::invalid(
                        path.child("endPort"),
                        *n,
                        "must be greater than or equal to `port`",
                    ));
                }
                for m in common::is_valid_port_num(i64::from(end)) {
                    errs.push(FieldError::invalid(path.child("endPort"), end, m));
                }
            }
        }
        Some(IntOrString::String(s)) => {
            if let Some(end) = p.end_port {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            errs.extend(common::invalid_each(
                &path.child("port"),
                s,
                common::is_valid_port_name(s),
            ));
        }
        None => {
            if let Some(end) = p.end_port {
                errs.push(FieldError::invalid(
                    path.child("endPort"),
                    end,
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
    errs
}

fn policy_peer(peer: &NetworkPolicyPeer, path: &Path) -> ErrorList {
    let mut errs = Vec::new();
    let mut peers = 0;
    if let Some(s) = &peer.pod_selector {
        peers += 1;
        errs.extend(common::label_selector(s, &path.child("podSelector")));
    }
    if let Some(s) = &peer.namespace_selector {
        peers += 1;
        errs.extend(common::label_selector(s, &path.child("namespaceSelector")));
    }
    if let Some(b) = &peer.ip_block {
        peers += 1;
        errs.extend(ip_block(b, &path.child("ipBlock")));
    }
    if peers == 0 {
        errs.push(FieldError::required(path.clone(), "must specify a peer"));
    } else if peers > 1 && peer.ip_block.is_some() {
        errs.push(FieldError::forbidden(
            path.clone(),
            "may not specify both ipBlock and another peer",
        ));
    }
    errs
}

fn ip_block(b: &IPBlock, path: &Path) -> ErrorList {
    if b.cidr.is_empty() {
        return vec![FieldError::required(path.child("cidr"), "")];
    }
    let mut errs = common::valid_cidr(&b.cidr, &path.child("cidr"));
    let Some(cidr) = common::parse_cidr_sloppy(&b.cidr) else {
        return errs;
    };
    for (i, ex) in b.except.iter().flatten().enumerate() {
        let ep = path.child("except").index(i);
        errs.extend(common::valid_cidr(ex, &ep));
        let Some(except) = common::parse_cidr_sloppy(ex) else {
            continue;
        };
        if !cidr.contains(&except.network()) || cidr.prefix_len() >= except.prefix_len() {
            errs.push(FieldError::invalid(
                ep,
                ex.as_str(),
                "must be a strict subset of `cidr`",
            ));
        }
    }
    errs
}

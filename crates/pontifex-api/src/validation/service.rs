//! Service validation (`ValidateService`, `ValidateServiceUpdate`), in upstream's order.
//!
//! Not here, by design: whether a clusterIP lies in the service CIDR and whether a nodePort lies in the
//! node-port range (the allocator decides), and the allocation itself.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::common::{self, NameFormat, go_err, go_str};
use crate::field::{ErrorKind, ErrorList, FieldError, Path};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
/// `core.MaxClientIPServiceAffinitySeconds`.
const MAX_AFFINITY_SECONDS: i32 = 86400;

fn is_headless(spec: &ServiceSpec) -> bool {
    matches!(spec.cluster_ips.as_deref(), Some([ip]) if ip == "None")
}

fn type_of(spec: &ServiceSpec) -> &str {
    spec.type_.as_deref().unwrap_or_default()
}

/// `apiservice.ExternallyAccessible`.
pub(crate) fn externally_accessible(spec: &ServiceSpec) -> bool {
    match type_of(spec) {
        "LoadBalancer" | "NodePort" => true,
        "ClusterIP" => spec.external_ips.as_ref().is_some_and(|v| !v.is_empty()),
        _ => false,
    }
}

fn needs_health_check(spec: &ServiceSpec) -> bool {
    type_of(spec) == "LoadBalancer" && spec.external_traffic_policy.as_deref() == Some("Local")
}

pub(crate) fn validate(new: &Service, old: Option<&Service>) -> ErrorList {
    let mut errs = Vec::new();
    let empty = ServiceSpec::default();
    let spec = new.spec.as_ref().unwrap_or(&empty);
    if let Some(old) = old {
        let old_spec = old.spec.as_ref().unwrap_or(&empty);
        errs.extend(common::object_meta_update(&new.metadata, &old.metadata));
        errs.extend(upgrade_downgrade_cluster_ips(old_spec, spec));
        errs.extend(upgrade_downgrade_ip_families(old_spec, spec));
        if type_of(old_spec) == "LoadBalancer"
            && type_of(spec) == "LoadBalancer"
            && old_spec.load_balancer_class != spec.load_balancer_class
        {
            errs.push(FieldError::invalid(
                Path::new("spec").child("loadBalancerClass"),
                spec.load_balancer_class
                    .clone()
                    .unwrap_or_else(|| "null".into()),
                "may not change once set",
            ));
        }
        if needs_health_check(old_spec)
            && needs_health_check(spec)
            && old_spec.health_check_node_port != spec.health_check_node_port
        {
            errs.push(FieldError::forbidden(
                Path::new("spec").child("healthCheckNodePort"),
                common::FIELD_IMMUTABLE,
            ));
        }
    }
    errs.extend(validate_service(new, spec));
    errs
}

fn validate_service(svc: &Service, spec: &ServiceSpec) -> ErrorList {
    let mut errs = common::object_meta(&svc.metadata, NameFormat::Dns1035Label);
    let sp = Path::new("spec");
    let ports: &[ServicePort] = spec.ports.as_deref().unwrap_or_default();
    let headless = is_headless(spec);
    let ty = type_of(spec);

    if ports.is_empty() && !headless && ty != "ExternalName" {
        errs.push(FieldError::required(sp.child("ports"), ""));
    }
    match ty {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            sp.child("clusterIPs").index(0),
            "None",
            format!("may not be set to 'None' for {ty} services"),
        )),
        "ExternalName" => {
            if spec.cluster_ips.as_ref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::forbidden(
                    sp.child("clusterIPs"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_families.as_ref().is_some_and(|v| !v.is_empty()) {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilies"),
                    "may not be set for ExternalName services",
                ));
            }
            if spec.ip_family_policy.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("ipFamilyPolicy"),
                    "may not be set for ExternalName services",
                ));
            }
            // A CNAME may end in a dot to say it is fully qualified.
            let name = spec.external_name.as_deref().unwrap_or_default();
            let cname = name.strip_suffix('.').unwrap_or(name);
            if cname.is_empty() {
                errs.push(FieldError::required(sp.child("externalName"), ""));
            } else {
                errs.extend(common::dns1123_subdomain(cname, &sp.child("externalName")));
            }
        }
        _ => {}
    }

    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(validate_port(
            port,
            ports.len() > 1,
            &mut names,
            &sp.child("ports").index(i),
        ));
    }

    if let Some(sel) = &spec.selector {
        errs.extend(common::labels(Some(sel), &sp.child("selector")));
    }

    match spec.session_affinity.as_deref().unwrap_or_default() {
        "" => errs.push(FieldError::required(sp.child("sessionAffinity"), "")),
        "ClientIP" => errs.extend(client_ip_affinity(spec, &sp.child("sessionAffinityConfig"))),
        "None" => {
            if spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    sp.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            sp.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }

    errs.extend(cluster_ips_related(spec));

    for (i, ip) in spec.external_ips.iter().flatten().enumerate() {
        let p = sp.child("externalIPs").index(i);
        let bad = common::valid_ip(ip, &p);
        if bad.is_empty() {
            errs.extend(common::non_special_ip(ip, &p));
        } else {
            errs.extend(bad);
        }
    }

    if ty.is_empty() {
        errs.push(FieldError::required(sp.child("type"), ""));
    } else if !TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(sp.child("type"), ty, TYPES));
    }

    if ty == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if port.node_port.unwrap_or(0) != 0 {
                errs.push(FieldError::forbidden(
                    sp.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }

    // Node ports and ports must be unique per protocol.
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let np = port.node_port.unwrap_or(0);
        if np == 0 {
            continue;
        }
        if !node_ports.insert((port.protocol.clone(), np)) {
            errs.push(FieldError::duplicate(
                sp.child("ports").index(i).child("nodePort"),
                np,
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let proto = port.protocol.clone().unwrap_or_default();
        if !seen.insert((proto.clone(), port.port)) {
            // Kubernetes prints the key it compared, a ServicePort with only protocol and port set.
            let literal = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{}, TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
                go_str(&proto),
                port.port
            );
            errs.push(go_err(
                ErrorKind::Duplicate,
                sp.child("ports").index(i),
                literal,
                "",
            ));
        }
    }

    let ranges = spec
        .load_balancer_source_ranges
        .as_deref()
        .unwrap_or_default();
    if !ranges.is_empty() {
        // Upstream's path really is capitalised here.
        let fp = sp.child("LoadBalancerSourceRanges");
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                fp.clone(),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        for (i, r) in ranges.iter().enumerate() {
            // Space padding is tolerated, a leftover of the annotation this field replaced.
            errs.extend(common::valid_cidr(r.trim(), &fp.index(i)));
        }
    } else if let Some(val) = svc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LB_SOURCE_RANGES_ANNOTATION))
    {
        let fp = Path::new("metadata")
            .child("annotations")
            .key(LB_SOURCE_RANGES_ANNOTATION);
        if ty != "LoadBalancer" {
            errs.push(FieldError::forbidden(
                fp.clone(),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
        let val = val.trim();
        if !val.is_empty() {
            for r in val.split(',') {
                errs.extend(common::valid_cidr(r.trim(), &fp));
            }
        }
    }

    if spec.allocate_load_balancer_node_ports.is_some() && ty != "LoadBalancer" {
        errs.push(FieldError::forbidden(
            sp.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if ty == "LoadBalancer" && spec.allocate_load_balancer_node_ports.is_none() {
        // Upstream reports this one without the `spec.` prefix.
        errs.push(FieldError::required(
            Path::new("allocateLoadBalancerNodePorts"),
            "",
        ));
    }

    if let Some(class) = &spec.load_balancer_class {
        if ty == "LoadBalancer" {
            errs.extend(common::qualified_name(
                class,
                &sp.child("loadBalancerClass"),
            ));
        } else {
            errs.push(FieldError::forbidden(
                sp.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        }
    }

    errs.extend(external_traffic_policy(spec));

    match spec.internal_traffic_policy.as_deref() {
        None if matches!(ty, "NodePort" | "LoadBalancer" | "ClusterIP") => {
            errs.push(FieldError::required(sp.child("internalTrafficPolicy"), ""));
        }
        Some(p) if p != "Cluster" && p != "Local" => errs.push(FieldError::not_supported(
            sp.child("internalTrafficPolicy"),
            p,
            &["Cluster", "Local"],
        )),
        _ => {}
    }

    if let Some(td) = spec.traffic_distribution.as_deref()
        && td != "PreferClose"
    {
        errs.push(FieldError::not_supported(
            sp.child("trafficDistribution"),
            td,
            &["PreferClose"],
        ));
    }
    errs
}

/// Go prints a nil pointer bad value as the quoted string "null", hence the `unwrap_or_else` above.
const LB_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

fn validate_port(
    port: &ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    path: &Path,
) -> ErrorList {
    let mut errs = Vec::new();
    let name = port.name.as_deref().unwrap_or_default();
    if require_name && name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else if !name.is_empty() {
        errs.extend(common::dns1123_label(name, &path.child("name")));
        if !names.insert(name.to_owned()) {
            errs.push(FieldError::duplicate(path.child("name"), name));
        }
    }
    for m in common::is_valid_port_num(i64::from(port.port)) {
        errs.push(FieldError::invalid(path.child("port"), port.port, m));
    }
    errs.extend(common::protocol(
        port.protocol.as_deref(),
        &path.child("protocol"),
    ));
    // Defaulting sets targetPort to port; an unset one reads as 0, as in Go.
    let target = port.target_port.clone().unwrap_or(IntOrString::Int(0));
    errs.extend(common::port_num_or_name(&target, &path.child("targetPort")));
    if let Some(ap) = &port.app_protocol {
        errs.extend(common::qualified_name(ap, &path.child("appProtocol")));
    }
    errs
}

fn client_ip_affinity(spec: &ServiceSpec, path: &Path) -> ErrorList {
    let required = "when session affinity type is ClientIP";
    let Some(cfg) = &spec.session_affinity_config else {
        return vec![FieldError::required(path.clone(), required)];
    };
    let Some(client_ip) = &cfg.client_ip else {
        return vec![FieldError::required(path.child("clientIP"), required)];
    };
    let tp = path.child("clientIP").child("timeoutSeconds");
    match client_ip.timeout_seconds {
        None => vec![FieldError::required(tp, required)],
        Some(t) if t <= 0 || t > MAX_AFFINITY_SECONDS => vec![FieldError::invalid(
            tp,
            t,
            format!("must be greater than 0 and less than {MAX_AFFINITY_SECONDS}"),
        )],
        Some(_) => Vec::new(),
    }
}

fn external_traffic_policy(spec: &ServiceSpec) -> ErrorList {
    let sp = Path::new("spec");
    let mut errs = Vec::new();
    let etp = spec.external_traffic_policy.as_deref().unwrap_or_default();
    if !externally_accessible(spec) {
        if !etp.is_empty() {
            errs.push(FieldError::invalid(
                sp.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        }
    } else if etp.is_empty() {
        errs.push(FieldError::required(sp.child("externalTrafficPolicy"), ""));
    } else if etp != "Cluster" && etp != "Local" {
        errs.push(FieldError::not_supported(
            sp.child("externalTrafficPolicy"),
            etp,
            &["Cluster", "Local"],
        ));
    }
    let hc = spec.health_check_node_port.unwrap_or(0);
    if !needs_health_check(spec) {
        if hc != 0 {
            errs.push(FieldError::invalid(
                sp.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Upstream also requires a non-zero value here, but by then its allocator has filled one in;
        // pontifex allocates after validation, so 0 means "allocate" rather than an error.
        for m in common::is_valid_port_num(i64::from(hc)) {
            errs.push(FieldError::invalid(sp.child("healthCheckNodePort"), hc, m));
        }
    }
    errs
}

/// `ValidateServiceClusterIPsRelatedFields`; also the API server's loose check before it initialises
/// the IP family fields.
pub(crate) fn cluster_ips_related(spec: &ServiceSpec) -> ErrorList {
    if type_of(spec) == "ExternalName" {
        return Vec::new();
    }
    let sp = Path::new("spec");
    let ips_path = sp.child("clusterIPs");
    let fam_path = sp.child("ipFamilies");
    let mut errs = Vec::new();
    let cluster_ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let ips: &[String] = spec.cluster_ips.as_deref().unwrap_or_default();
    let families: &[String] = spec.ip_families.as_deref().unwrap_or_default();

    if !cluster_ip.is_empty() {
        if ips.is_empty() {
            errs.push(FieldError::required(ips_path.clone(), ""));
        } else if ips[0] != cluster_ip {
            errs.push(FieldError::invalid(
                ips_path.clone(),
                ips.to_vec(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !ips.is_empty() {
        errs.push(FieldError::invalid(
            ips_path.clone(),
            ips.to_vec(),
            "must be empty when `clusterIP` is not specified",
        ));
    }

    let mut seen = BTreeSet::new();
    for (i, f) in families.iter().enumerate() {
        if f != "IPv4" && f != "IPv6" {
            errs.push(FieldError::not_supported(
                fam_path.index(i),
                f.as_str(),
                &["IPv4", "IPv6"],
            ));
        }
        if !seen.insert(f) {
            errs.push(FieldError::duplicate(fam_path.index(i), f.as_str()));
        }
    }

    if let Some(p) = spec.ip_family_policy.as_deref() {
        const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
        if !POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                sp.child("ipFamilyPolicy"),
                p,
                POLICIES,
            ));
        }
    }

    let mut invalid_ips = false;
    for (i, ip) in ips.iter().enumerate() {
        if i == 0 && ip == "None" {
            if ips.len() > 1 {
                invalid_ips = true;
                errs.push(FieldError::invalid(
                    ips_path.clone(),
                    ips.to_vec(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let bad = common::valid_ip(ip, &ips_path.index(i));
        invalid_ips |= !bad.is_empty();
        errs.extend(bad);
    }
    if ips.len() > 2 {
        errs.push(FieldError::invalid(
            ips_path.clone(),
            ips.to_vec(),
            "may only hold up to 2 values",
        ));
    }
    if invalid_ips {
        return errs;
    }
    if ips.len() > 1 {
        let v6: Vec<bool> = ips
            .iter()
            .map(|ip| common::parse_ip_sloppy(ip).is_some_and(|a| a.is_ipv6()))
            .collect();
        let dual = ips.len() == 2 && v6[0] != v6[1];
        if !dual {
            errs.push(FieldError::invalid(
                ips_path.clone(),
                ips.to_vec(),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !is_headless(spec) && !ips.is_empty() && !families.is_empty() {
        for (i, ip) in ips.iter().enumerate().take(families.len()) {
            let is_v6 = common::parse_ip_sloppy(ip).is_some_and(|a| a.is_ipv6());
            if families[i] == "IPv4" && is_v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip.as_str(),
                    format!("expected an IPv4 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
            if families[i] == "IPv6" && !is_v6 {
                errs.push(FieldError::invalid(
                    ips_path.index(i),
                    ip.as_str(),
                    format!("expected an IPv6 value as indicated by `ipFamilies[{i}]`"),
                ));
            }
        }
    }
    errs
}

/// Cluster IPs may be added (dual-stack upgrade) or the secondary released, never changed, unless the
/// Service moves to or from ExternalName.
fn upgrade_downgrade_cluster_ips(old: &ServiceSpec, new: &ServiceSpec) -> ErrorList {
    if type_of(new) == "ExternalName" || type_of(old) == "ExternalName" {
        return Vec::new();
    }
    if is_headless(old) && is_headless(new) {
        return Vec::new();
    }
    let ips_path = Path::new("spec").child("clusterIPs");
    let old_ips: &[String] = old.cluster_ips.as_deref().unwrap_or_default();
    let new_ips: &[String] = new.cluster_ips.as_deref().unwrap_or_default();
    let mut errs = Vec::new();
    let changed = |i: usize| {
        FieldError::invalid(
            ips_path.index(i),
            new_ips.to_vec(),
            "may not change once set",
        )
    };
    if old_ips.len() == new_ips.len() {
        for (i, ip) in old_ips.iter().enumerate() {
            if *ip != new_ips[i] {
                errs.push(changed(i));
            }
        }
    } else if old_ips.len() > new_ips.len() {
        if new_ips.is_empty() {
            errs.push(FieldError::invalid(
                ips_path.index(0),
                new_ips.to_vec(),
                "primary clusterIP can not be unset",
            ));
        }
        if !old_ips.is_empty() && !new_ips.is_empty() && new_ips[0] != old_ips[0] {
            errs.push(changed(0));
        }
        if new_ips.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                Path::new("spec").child("ipFamilyPolicy"),
                new.ip_family_policy
                    .clone()
                    .unwrap_or_else(|| "null".into()),
                "must be set to 'SingleStack' when releasing the secondary clusterIP",
            ));
        }
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(changed(0));
    }
    errs
}

fn upgrade_downgrade_ip_families(old: &ServiceSpec, new: &ServiceSpec) -> ErrorList {
    if type_of(new) == "ExternalName" || type_of(old) == "ExternalName" {
        return Vec::new();
    }
    if is_headless(old) || is_headless(new) {
        return Vec::new();
    }
    let fam_path = Path::new("spec").child("ipFamilies");
    let old_f: &[String] = old.ip_families.as_deref().unwrap_or_default();
    let new_f: &[String] = new.ip_families.as_deref().unwrap_or_default();
    let new_ips: &[String] = new.cluster_ips.as_deref().unwrap_or_default();
    let mut errs = Vec::new();
    if old_f.len() == new_f.len() {
        for (i, f) in old_f.iter().enumerate() {
            if *f != new_f[i] {
                errs.push(FieldError::invalid(
                    fam_path.index(0),
                    new_f.to_vec(),
                    "may not change once set",
                ));
            }
        }
    } else if old_f.len() > new_f.len() {
        if new_ips.is_empty() {
            errs.push(FieldError::invalid(
                fam_path.index(0),
                new_f.to_vec(),
                "primary ipFamily can not be unset",
            ));
        }
        if !new_f.is_empty() && new_f[0] != old_f[0] {
            errs.push(FieldError::invalid(
                fam_path.index(0),
                new_ips.to_vec(),
                "may not change once set",
            ));
        }
        if new_f.len() == 1 && new.ip_family_policy.as_deref() != Some("SingleStack") {
            errs.push(FieldError::invalid(
                Path::new("spec").child("ipFamilyPolicy"),
                new.ip_family_policy
                    .clone()
                    .unwrap_or_else(|| "null".into()),
                "must be set to 'SingleStack' when releasing the secondary ipFamily",
            ));
        }
    } else if !old_f.is_empty() && !new_f.is_empty() && new_f[0] != old_f[0] {
        errs.push(FieldError::invalid(
            fam_path.index(0),
            new_ips.to_vec(),
            "may not change once set",
        ));
    }
    errs
}

#[cfg(test)]
mod tests;

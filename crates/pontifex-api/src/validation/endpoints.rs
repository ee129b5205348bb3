//! Endpoints (core/v1) and EndpointSlice (discovery.k8s.io/v1) validation.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{EndpointAddress, Endpoints};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::common::{self, NameFormat};
use crate::field::{ErrorList, FieldError, Path};

/// `discovery/validation`: at most this many endpoints per slice, addresses per endpoint, ports per slice.
const MAX_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;
const MAX_PORTS: usize = 20000;
const ADDRESS_TYPES: &[&str] = &["FQDN", "IPv4", "IPv6"];

fn meta(new: &ObjectMeta, old: Option<&ObjectMeta>) -> ErrorList {
    match old {
        None => common::object_meta(new, NameFormat::Dns1123Subdomain),
        Some(old) => common::object_meta_update(new, old),
    }
}

pub(crate) fn endpoints(new: &Endpoints, old: Option<&Endpoints>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    for (i, ss) in new.subsets.iter().flatten().enumerate() {
        let sp = Path::new("subsets").index(i);
        let addresses = ss.addresses.as_deref().unwrap_or_default();
        let not_ready = ss.not_ready_addresses.as_deref().unwrap_or_default();
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                sp.clone(),
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (j, a) in addresses.iter().enumerate() {
            errs.extend(endpoint_address(a, &sp.child("addresses").index(j)));
        }
        for (j, a) in not_ready.iter().enumerate() {
            errs.extend(endpoint_address(a, &sp.child("notReadyAddresses").index(j)));
        }
        let ports = ss.ports.as_deref().unwrap_or_default();
        let mut names = BTreeSet::new();
        for (j, p) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = p.name.as_deref().unwrap_or_default();
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(pp.child("name"), ""));
            } else if !name.is_empty() {
                errs.extend(common::dns1123_label(name, &pp.child("name")));
                if !names.insert(name.to_owned()) {
                    errs.push(FieldError::duplicate(pp.child("name"), name));
                }
            }
            for m in common::is_valid_port_num(i64::from(p.port)) {
                errs.push(FieldError::invalid(pp.child("port"), p.port, m));
            }
            errs.extend(common::protocol(
                p.protocol.as_deref(),
                &pp.child("protocol"),
            ));
            if let Some(ap) = &p.app_protocol {
                errs.extend(common::qualified_name(ap, &pp.child("appProtocol")));
            }
        }
    }
    errs
}

fn endpoint_address(a: &EndpointAddress, path: &Path) -> ErrorList {
    let ip_path = path.child("ip");
    let mut errs = common::valid_ip(&a.ip, &ip_path);
    if errs.is_empty() {
        errs.extend(common::non_special_ip(&a.ip, &ip_path));
    }
    if let Some(h) = a.hostname.as_deref().filter(|h| !h.is_empty()) {
        errs.extend(common::dns1123_label(h, &path.child("hostname")));
    }
    if let Some(n) = a.node_name.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(common::dns1123_subdomain(n, &path.child("nodeName")));
    }
    errs
}

pub(crate) fn endpoint_slice(new: &EndpointSlice, old: Option<&EndpointSlice>) -> ErrorList {
    let mut errs = meta(&new.metadata, old.map(|o| &o.metadata));
    let at = new.address_type.as_str();
    let at_path = Path::new("addressType");
    if at.is_empty() {
        errs.push(FieldError::required(at_path.clone(), ""));
    } else if !ADDRESS_TYPES.contains(&at) {
        errs.push(FieldError::not_supported(
            at_path.clone(),
            at,
            ADDRESS_TYPES,
        ));
    }
    let ep_path = Path::new("endpoints");
    if new.endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many(
            ep_path.clone(),
            new.endpoints.len(),
            MAX_ENDPOINTS,
        ));
    } else {
        for (i, ep) in new.endpoints.iter().enumerate() {
            let p = ep_path.index(i);
            let ap = p.child("addresses");
            if ep.addresses.is_empty() {
                errs.push(FieldError::required(
                    ap.clone(),
                    "must contain at least 1 address",
                ));
            } else if ep.addresses.len() > MAX_ADDRESSES {
                errs.push(FieldError::too_many(
                    ap.clone(),
                    ep.addresses.len(),
                    MAX_ADDRESSES,
                ));
            } else {
                for (j, addr) in ep.addresses.iter().enumerate() {
                    errs.extend(slice_address(at, addr, &ap.index(j)));
                }
            }
            if let Some(n) = ep.node_name.as_deref().filter(|n| !n.is_empty()) {
                errs.extend(common::dns1123_subdomain(n, &p.child("nodeName")));
            }
            if let Some(h) = ep.hostname.as_deref().filter(|h| !h.is_empty()) {
                errs.extend(common::dns1123_label(h, &p.child("hostname")));
            }
        }
    }
    let ports = new.ports.as_deref().unwrap_or_default();
    let pp = Path::new("ports");
    if ports.len() > MAX_PORTS {
        errs.push(FieldError::too_many(pp.clone(), ports.len(), MAX_PORTS));
    } else {
        let mut names = BTreeSet::new();
        for (i, port) in ports.iter().enumerate() {
            let ip = pp.index(i);
            let name = port.name.as_deref().unwrap_or_default();
            if !name.is_empty() {
                errs.extend(common::dns1123_label(name, &ip.child("name")));
            }
            if !names.insert(name.to_owned()) {
                errs.push(FieldError::duplicate(ip.child("name"), name));
            }
            errs.extend(common::protocol(
                port.protocol.as_deref(),
                &ip.child("protocol"),
            ));
            if let Some(p) = port.port
                && !(0..=65535).contains(&p)
            {
                errs.push(FieldError::invalid(
                    ip.child("port"),
                    p,
                    common::inclusive_range_error(0, 65535),
                ));
            }
            if let Some(ap) = &port.app_protocol {
                errs.extend(common::qualified_name(ap, &ip.child("appProtocol")));
            }
        }
    }
    if let Some(old) = old {
        errs.extend(common::immutable(
            &new.address_type,
            &old.address_type,
            &at_path,
        ));
    }
    errs
}

fn slice_address(address_type: &str, addr: &str, path: &Path) -> ErrorList {
    let parsed = common::parse_ip_sloppy(addr);
    match address_type {
        "IPv4" => match parsed {
            Some(ip) if ip.is_ipv4() => common::non_special_ip(addr, path),
            _ => vec![FieldError::invalid(
                path.clone(),
                addr,
                "must be a valid IPv4 address",
            )],
        },
        "IPv6" => match parsed {
            Some(ip) if ip.is_ipv6() => common::non_special_ip(addr, path),
            _ => vec![FieldError::invalid(
                path.clone(),
                addr,
                "must be a valid IPv6 address",
            )],
        },
        "FQDN" => fqdn(addr, path),
        _ => Vec::new(),
    }
}

/// `IsFullyQualifiedDomainName`: a subdomain of at least two labels, an optional trailing dot.
fn fqdn(name: &str, path: &Path) -> ErrorList {
    if name.is_empty() {
        return vec![FieldError::required(path.clone(), "")];
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    let msgs = common::is_dns1123_subdomain(name);
    if !msgs.is_empty() {
        return vec![FieldError::invalid(path.clone(), name, msgs.join(","))];
    }
    if name.split('.').count() < 2 {
        return vec![FieldError::invalid(
            path.clone(),
            name,
            "should be a domain with at least two segments separated by dots",
        )];
    }
    for label in name.split('.') {
        let msgs = common::is_dns1123_label(label);
        if !msgs.is_empty() {
            return vec![FieldError::invalid(path.clone(), label, msgs.join(","))];
        }
    }
    Vec::new()
}

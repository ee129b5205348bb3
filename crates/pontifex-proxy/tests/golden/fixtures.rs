//! Loads the case files: the compact YAML the conformance data uses, turned into real
//! Service and EndpointSlice objects so the model is exercised too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Service, ServicePort, ServiceSpec,
    ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

pub(crate) fn dir(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case)
}

pub(crate) fn read(case: &str, file: &str) -> String {
    let p = dir(case).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub(crate) fn yaml(case: &str) -> Value {
    serde_saphyr::from_str(&read(case, "input.yaml")).expect("input.yaml parses")
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn i(v: &Value, k: &str) -> Option<i32> {
    v.get(k).and_then(Value::as_i64).map(|n| n as i32)
}

fn strings(v: &Value, k: &str) -> Option<Vec<String>> {
    v.get(k).and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    })
}

/// A Service from the compact fixture form.
pub(crate) fn service(v: &Value) -> Service {
    let ports = v["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ServicePort {
            name: s(p, "name").filter(|n| !n.is_empty()),
            port: i(p, "port").unwrap(),
            protocol: s(p, "protocol"),
            node_port: i(p, "nodePort"),
            ..Default::default()
        })
        .collect();
    let affinity_timeout = i(v, "sessionAffinityTimeoutSeconds");
    Service {
        metadata: ObjectMeta {
            namespace: s(v, "namespace"),
            name: s(v, "name"),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: s(v, "type"),
            cluster_ip: s(v, "clusterIP"),
            cluster_ips: s(v, "clusterIP").map(|ip| vec![ip]),
            external_ips: strings(v, "externalIPs"),
            external_traffic_policy: s(v, "externalTrafficPolicy"),
            internal_traffic_policy: s(v, "internalTrafficPolicy"),
            health_check_node_port: i(v, "healthCheckNodePort"),
            load_balancer_source_ranges: strings(v, "loadBalancerSourceRanges"),
            session_affinity: s(v, "sessionAffinity"),
            session_affinity_config: affinity_timeout.map(|t| SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(t),
                }),
            }),
            ports: Some(ports),
            ..Default::default()
        }),
        status: strings(v, "loadBalancerIngress").map(|ips| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(
                    ips.into_iter()
                        .map(|ip| LoadBalancerIngress {
                            ip: Some(ip),
                            ..Default::default()
                        })
                        .collect(),
                ),
            }),
            ..Default::default()
        }),
    }
}

fn slice_port(p: &Value) -> EndpointPort {
    EndpointPort {
        name: s(p, "name"),
        port: i(p, "port"),
        protocol: s(p, "protocol"),
        ..Default::default()
    }
}

/// An EndpointSlice from the compact fixture form (`addresses`/`nodeName` endpoints).
pub(crate) fn slice(v: &Value, previous: Option<&EndpointSlice>) -> EndpointSlice {
    let svc = s(v, "service")
        .or_else(|| {
            previous.and_then(|p| {
                p.metadata
                    .labels
                    .as_ref()?
                    .get("kubernetes.io/service-name")
                    .cloned()
            })
        })
        .unwrap();
    let name = s(v, "name").unwrap_or_else(|| format!("{svc}-1"));
    let ports = match v.get("ports").and_then(Value::as_array) {
        Some(ps) => ps.iter().map(slice_port).collect(),
        None => previous.and_then(|p| p.ports.clone()).unwrap_or_default(),
    };
    let endpoints = v["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Endpoint {
            addresses: strings(e, "addresses").unwrap(),
            node_name: s(e, "nodeName"),
            ..Default::default()
        })
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: s(v, "namespace"),
            name: Some(name),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                svc,
            )])),
            ..Default::default()
        },
        address_type: s(v, "addressType").unwrap_or_else(|| "IPv4".into()),
        endpoints,
        ports: Some(ports),
    }
}

/// An EndpointSlice from iptables-03's `{ip, node, ready, serving, terminating}` endpoints.
pub(crate) fn slice_with_conditions(
    ns: &str,
    svc: &str,
    port: i32,
    eps: &Value,
    local_node: &str,
) -> EndpointSlice {
    let endpoints = eps
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let node = s(e, "node").unwrap();
            Endpoint {
                addresses: vec![s(e, "ip").unwrap()],
                node_name: Some(if node == "LOCAL" {
                    local_node.to_owned()
                } else {
                    node
                }),
                conditions: Some(EndpointConditions {
                    ready: e.get("ready").and_then(Value::as_bool),
                    serving: e.get("serving").and_then(Value::as_bool),
                    terminating: e.get("terminating").and_then(Value::as_bool),
                }),
                ..Default::default()
            }
        })
        .collect();
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.to_owned()),
            name: Some(format!("{svc}-1")),
            labels: Some(BTreeMap::from([(
                "kubernetes.io/service-name".to_owned(),
                svc.to_owned(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(vec![EndpointPort {
            name: Some(String::new()),
            port: Some(port),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// Line diff for failure messages.
pub(crate) fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let mut out = String::new();
    for l in &e {
        if !a.contains(l) {
            out.push_str(&format!("- {l}\n"));
        }
    }
    for l in &a {
        if !e.contains(l) {
            out.push_str(&format!("+ {l}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("(same lines, different order)\n");
    }
    out
}

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};

use super::*;

#[test]
fn pull_policy_follows_the_tag() {
    assert_eq!(pull_policy_for("nginx"), "Always");
    assert_eq!(pull_policy_for("nginx:latest"), "Always");
    assert_eq!(pull_policy_for("nginx:1.19"), "IfNotPresent");
    assert_eq!(pull_policy_for("localhost:5000/nginx"), "Always");
    assert_eq!(pull_policy_for("localhost:5000/nginx:v2"), "IfNotPresent");
    assert_eq!(pull_policy_for("nginx@sha256:0123"), "IfNotPresent");
}

fn with_resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> PodSpec {
    let map = |v: &[(&str, &str)]| {
        (!v.is_empty()).then(|| {
            v.iter()
                .map(|(k, q)| ((*k).to_owned(), Quantity((*q).to_owned())))
                .collect()
        })
    };
    PodSpec {
        containers: vec![Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn qos_classes() {
    assert_eq!(qos_class(&with_resources(&[], &[])), "BestEffort");
    assert_eq!(
        qos_class(&with_resources(&[("cpu", "100m")], &[])),
        "Burstable"
    );
    assert_eq!(
        qos_class(&with_resources(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")]
        )),
        "Guaranteed"
    );
    assert_eq!(
        qos_class(&with_resources(&[("cpu", "0.5")], &[])),
        "Burstable"
    );
}

#[test]
fn limits_become_requests() {
    let mut p = Pod {
        spec: Some(with_resources(&[], &[("cpu", "1"), ("memory", "1Gi")])),
        ..Default::default()
    };
    pod(&mut p);
    let status = p.status.unwrap();
    assert_eq!(status.qos_class.as_deref(), Some("Guaranteed"));
    let c = &p.spec.unwrap().containers[0];
    assert_eq!(
        c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"],
        Quantity("1".into())
    );
}

#[test]
fn defaulting_is_idempotent_and_keeps_user_values() {
    let mut svc = Service {
        spec: Some(k8s_openapi::api::core::v1::ServiceSpec {
            type_: Some("LoadBalancer".into()),
            external_traffic_policy: Some("Local".into()),
            allocate_load_balancer_node_ports: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    service(&mut svc);
    let once = svc.clone();
    service(&mut svc);
    assert_eq!(once, svc);
    let spec = svc.spec.unwrap();
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(false));
}

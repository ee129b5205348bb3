use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapEnvSource, ConfigMapKeySelector, Container, EnvFromSource, EnvVar,
    EnvVarSource, ObjectFieldSelector, Pod, PodSpec, Secret, SecretKeySelector, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;

fn svc(ns: &str, name: &str, ip: &str, ports: &[(Option<&str>, i32, &str)]) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(
                ports
                    .iter()
                    .map(|(n, p, proto)| ServicePort {
                        name: n.map(String::from),
                        port: *p,
                        protocol: Some(proto.to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Services behind seed 002's `docker inspect` output (its pod runs in kube-system).
fn seed_services() -> Vec<Service> {
    vec![
        svc(
            "default",
            "kubernetes",
            "10.0.0.1",
            &[(Some("https"), 443, "TCP")],
        ),
        svc("default", "service-test", "None", &[(None, 4330, "TCP")]),
        svc(
            "kube-system",
            "kube-dns",
            "10.0.0.2",
            &[
                (Some("dns"), 53, "UDP"),
                (Some("dns-tcp"), 53, "TCP"),
                (Some("metrics"), 9153, "TCP"),
            ],
        ),
        svc(
            "kube-system",
            "kubernetes-dashboard",
            "10.0.65.81",
            &[(None, 443, "TCP")],
        ),
        svc(
            "kube-system",
            "tiller-deploy",
            "10.0.34.221",
            &[(Some("tiller"), 44134, "TCP")],
        ),
        svc(
            "kube-system",
            "service-test",
            "10.0.46.79",
            &[(Some("work"), 6180, "TCP")],
        ),
        svc("other", "elsewhere", "10.0.9.9", &[(None, 80, "TCP")]),
    ]
}

const SEED_002: &str = "KUBERNETES_DASHBOARD_PORT=tcp://10.0.65.81:443 KUBERNETES_DASHBOARD_PORT_443_TCP=tcp://10.0.65.81:443 KUBERNETES_DASHBOARD_PORT_443_TCP_ADDR=10.0.65.81 KUBERNETES_DASHBOARD_PORT_443_TCP_PORT=443 KUBERNETES_DASHBOARD_PORT_443_TCP_PROTO=tcp KUBERNETES_DASHBOARD_SERVICE_HOST=10.0.65.81 KUBERNETES_DASHBOARD_SERVICE_PORT=443 KUBERNETES_PORT=tcp://10.0.0.1:443 KUBERNETES_PORT_443_TCP=tcp://10.0.0.1:443 KUBERNETES_PORT_443_TCP_ADDR=10.0.0.1 KUBERNETES_PORT_443_TCP_PORT=443 KUBERNETES_PORT_443_TCP_PROTO=tcp KUBERNETES_SERVICE_HOST=10.0.0.1 KUBERNETES_SERVICE_PORT=443 KUBERNETES_SERVICE_PORT_HTTPS=443 KUBE_DNS_PORT=udp://10.0.0.2:53 KUBE_DNS_PORT_53_TCP=tcp://10.0.0.2:53 KUBE_DNS_PORT_53_TCP_ADDR=10.0.0.2 KUBE_DNS_PORT_53_TCP_PORT=53 KUBE_DNS_PORT_53_TCP_PROTO=tcp KUBE_DNS_PORT_53_UDP=udp://10.0.0.2:53 KUBE_DNS_PORT_53_UDP_ADDR=10.0.0.2 KUBE_DNS_PORT_53_UDP_PORT=53 KUBE_DNS_PORT_53_UDP_PROTO=udp KUBE_DNS_PORT_9153_TCP=tcp://10.0.0.2:9153 KUBE_DNS_PORT_9153_TCP_ADDR=10.0.0.2 KUBE_DNS_PORT_9153_TCP_PORT=9153 KUBE_DNS_PORT_9153_TCP_PROTO=tcp KUBE_DNS_SERVICE_HOST=10.0.0.2 KUBE_DNS_SERVICE_PORT=53 KUBE_DNS_SERVICE_PORT_DNS=53 KUBE_DNS_SERVICE_PORT_DNS_TCP=53 KUBE_DNS_SERVICE_PORT_METRICS=9153 SERVICE_TEST_PORT=tcp://10.0.46.79:6180 SERVICE_TEST_PORT_6180_TCP=tcp://10.0.46.79:6180 SERVICE_TEST_PORT_6180_TCP_ADDR=10.0.46.79 SERVICE_TEST_PORT_6180_TCP_PORT=6180 SERVICE_TEST_PORT_6180_TCP_PROTO=tcp SERVICE_TEST_SERVICE_HOST=10.0.46.79 SERVICE_TEST_SERVICE_PORT=6180 SERVICE_TEST_SERVICE_PORT_WORK=6180 TILLER_DEPLOY_PORT=tcp://10.0.34.221:44134 TILLER_DEPLOY_PORT_44134_TCP=tcp://10.0.34.221:44134 TILLER_DEPLOY_PORT_44134_TCP_ADDR=10.0.34.221 TILLER_DEPLOY_PORT_44134_TCP_PORT=44134 TILLER_DEPLOY_PORT_44134_TCP_PROTO=tcp TILLER_DEPLOY_SERVICE_HOST=10.0.34.221 TILLER_DEPLOY_SERVICE_PORT=44134 TILLER_DEPLOY_SERVICE_PORT_TILLER=44134";

#[test]
fn seed_002_environment_exactly() {
    let env = service_env(&seed_services(), "kube-system", true);
    let got: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut want: Vec<&str> = SEED_002.split(' ').collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn service_links_off_keeps_only_the_master_service() {
    let env = service_env(&seed_services(), "kube-system", false);
    assert!(
        env.keys()
            .all(|k| k.starts_with("KUBERNETES_") && !k.starts_with("KUBERNETES_DASHBOARD")),
        "{env:?}"
    );
    assert_eq!(env.len(), 8);
}

#[test]
fn headless_and_ipless_services_give_nothing_and_master_wins() {
    let mut services = seed_services();
    services.push(svc("default", "no-ip", "", &[(None, 1, "TCP")]));
    services.push(svc("team", "kubernetes", "10.0.99.1", &[(None, 80, "TCP")]));
    let env = service_env(&services, "default", true);
    assert!(
        !env.keys()
            .any(|k| k.starts_with("SERVICE_TEST") || k.starts_with("NO_IP"))
    );
    let team = service_env(&services, "team", true);
    assert_eq!(team["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
}

#[test]
fn expansion_follows_kubelet_rules() {
    let vars: BTreeMap<&str, &str> = [("A", "a"), ("EMPTY", "")].into();
    let f = |s: &str| vars.get(s).map(|v| v.to_string());
    for (input, want) in [
        ("$(A)", "a"),
        ("x$(A)y$(A)", "xaya"),
        ("$(B)", "$(B)"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$$", "$"),
        ("$", "$"),
        ("a$", "a$"),
        ("$A", "$A"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("$(EMPTY)-", "-"),
        ("é$é$(A)", "é$éa"),
        ("plain", "plain"),
    ] {
        assert_eq!(expand(input, f), want, "{input}");
    }
}

struct Objects;

impl ObjectLookup for Objects {
    fn config_map(&self, ns: &str, name: &str) -> Option<ConfigMap> {
        (ns == "web" && name == "cfg").then(|| ConfigMap {
            data: Some(
                [
                    ("mode".to_string(), "fast".to_string()),
                    ("1bad".to_string(), "x".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        })
    }
    fn secret(&self, ns: &str, name: &str) -> Option<Secret> {
        (ns == "web" && name == "creds").then(|| Secret {
            data: Some([("password".to_string(), ByteString(b"s3cret".to_vec()))].into()),
            ..Default::default()
        })
    }
}

fn var(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn from(name: &str, source: EnvVarSource) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(source),
        ..Default::default()
    }
}

fn field(path: &str) -> EnvVarSource {
    EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod() -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("web-1".into()),
            namespace: Some("web".into()),
            uid: Some("u-1".into()),
            labels: Some(
                [
                    ("app".to_string(), "web".to_string()),
                    ("tier".to_string(), "fe".to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("node-a".into()),
            service_account_name: Some("sa".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn container_env_resolves_every_source_in_order() {
    let addrs = PodAddresses {
        pod_ips: vec!["10.244.1.5".into(), "fd00::5".into()],
        host_ips: vec!["172.31.0.2".into()],
    };
    let services: BTreeMap<String, String> = [
        ("WEB_SERVICE_HOST".to_string(), "10.96.0.9".to_string()),
        ("OVERRIDDEN".to_string(), "svc".to_string()),
    ]
    .into();
    let c = Container {
        name: "c".into(),
        env_from: Some(vec![EnvFromSource {
            prefix: Some("CFG_".into()),
            config_map_ref: Some(ConfigMapEnvSource {
                name: "cfg".into(),
                optional: None,
            }),
            ..Default::default()
        }]),
        env: Some(vec![
            var("FIRST", "1"),
            var("URL", "http://$(WEB_SERVICE_HOST):$(PORT)/$(FIRST)"),
            var("PORT", "80"),
            var("LATER", "$(PORT)"),
            from("POD", field("metadata.name")),
            from("NS", field("metadata.namespace")),
            from("UID", field("metadata.uid")),
            from("APP", field("metadata.labels['app']")),
            from("LABELS", field("metadata.labels")),
            from("NODE", field("spec.nodeName")),
            from("SA", field("spec.serviceAccountName")),
            from("IP", field("status.podIP")),
            from("IPS", field("status.podIPs")),
            from("HOST", field("status.hostIP")),
            from(
                "MODE",
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: "cfg".into(),
                        key: "mode".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "PASS",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "password".into(),
                        optional: None,
                    }),
                    ..Default::default()
                },
            ),
            from(
                "MAYBE",
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "creds".into(),
                        key: "nope".into(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                },
            ),
            var("OVERRIDDEN", "mine"),
        ]),
        ..Default::default()
    };
    let env = container_env(&pod(), &c, &services, &Objects, &addrs).unwrap();
    let got: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        got,
        [
            "CFG_1bad=x", // valid once prefixed (BTreeMap order: digits first)
            "CFG_mode=fast",
            "FIRST=1",
            "URL=http://10.96.0.9:$(PORT)/1", // PORT is declared later: not expanded
            "PORT=80",
            "LATER=80",
            "POD=web-1",
            "NS=web",
            "UID=u-1",
            "APP=web",
            "LABELS=app=\"web\"\ntier=\"fe\"",
            "NODE=node-a",
            "SA=sa",
            "IP=10.244.1.5",
            "IPS=10.244.1.5,fd00::5",
            "HOST=172.31.0.2",
            "MODE=fast",
            "PASS=s3cret",
            "OVERRIDDEN=mine",
            "WEB_SERVICE_HOST=10.96.0.9",
        ]
        .map(String::from)
        .to_vec()
    );
}

#[test]
fn missing_objects_fail_unless_optional() {
    let c = |sel: ConfigMapKeySelector| Container {
        name: "c".into(),
        env: Some(vec![from(
            "X",
            EnvVarSource {
                config_map_key_ref: Some(sel),
                ..Default::default()
            },
        )]),
        ..Default::default()
    };
    let empty = BTreeMap::new();
    let addrs = PodAddresses::default();
    let missing = ConfigMapKeySelector {
        name: "nope".into(),
        key: "k".into(),
        optional: None,
    };
    assert!(matches!(
        container_env(&pod(), &c(missing), &empty, &Objects, &addrs),
        Err(EnvError::NotFound { .. })
    ));
    let optional = ConfigMapKeySelector {
        name: "nope".into(),
        key: "k".into(),
        optional: Some(true),
    };
    assert_eq!(
        container_env(&pod(), &c(optional), &empty, &Objects, &addrs).unwrap(),
        vec![]
    );
    let no_key = ConfigMapKeySelector {
        name: "cfg".into(),
        key: "k".into(),
        optional: None,
    };
    assert!(matches!(
        container_env(&pod(), &c(no_key), &empty, &Objects, &addrs),
        Err(EnvError::MissingKey { .. })
    ));
    let bad_field = Container {
        name: "c".into(),
        env: Some(vec![from("X", field("spec.hostname"))]),
        ..Default::default()
    };
    assert!(matches!(
        container_env(&pod(), &bad_field, &empty, &NoObjects, &addrs),
        Err(EnvError::UnsupportedField(_))
    ));
}

#[test]
fn runtime_defaults_add_hostname_and_path() {
    let env = with_runtime_defaults(vec![("A".into(), "1".into())], "web-1");
    assert_eq!(env[0], ("HOSTNAME".to_string(), "web-1".to_string()));
    assert!(env.iter().any(|(k, _)| k == "PATH"));
    let env = with_runtime_defaults(vec![("PATH".into(), "/x".into())], "h");
    assert_eq!(env.iter().filter(|(k, _)| k == "PATH").count(), 1);
}

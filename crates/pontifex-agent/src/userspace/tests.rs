use super::*;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pontifex_proxy::model::ServiceKey;
use pontifex_proxy::userspace::Protocol;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn svc(name: &str, cluster_ip: &str, node_port: Option<i32>, scheduler: Option<&str>) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(name.into()),
            annotations: scheduler.map(|s| {
                [(us::SCHEDULER_ANNOTATION.to_owned(), s.to_owned())]
                    .into_iter()
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(
                if node_port.is_some() {
                    "NodePort"
                } else {
                    "ClusterIP"
                }
                .into(),
            ),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            external_ips: Some(vec!["172.31.255.7".into()]),
            ports: Some(vec![ServicePort {
                port: 80,
                protocol: Some("TCP".into()),
                node_port,
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn slice(service: &str, ips: &[&str]) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("{service}-abc")),
            labels: Some(
                [("kubernetes.io/service-name".to_owned(), service.to_owned())]
                    .into_iter()
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|a| Endpoint {
                addresses: vec![(*a).into()],
                conditions: Some(EndpointConditions {
                    ready: Some(true),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Endpoint::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            port: Some(8080),
            protocol: Some("TCP".into()),
            name: Some(String::new()),
            ..EndpointPort::default()
        }]),
    }
}

fn listens(snap: &Snapshot) -> Vec<String> {
    snap.services
        .iter()
        .map(|s| format!("{} {} {}", s.protocol.as_str(), s.listen, s.scheduler))
        .collect()
}

#[test]
fn events_become_virtual_services_with_the_annotated_scheduler() {
    let mut m = Model::new("node-1", vec![ip("172.31.0.10")]);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("web", "10.96.0.20", Some(30002), Some("wlc"))],
        slices: vec![slice("web", &["10.244.1.2", "10.244.2.2"])],
    });
    let snap = m.snapshot();
    assert_eq!(
        listens(&snap),
        [
            "TCP 10.96.0.20:80 wlc",
            "TCP 172.31.0.10:30002 wlc",
            "TCP 172.31.255.7:80 wlc",
        ]
    );
    let eps: Vec<String> = snap.services[0]
        .endpoints
        .iter()
        .map(|(a, w)| format!("{a}/{w}"))
        .collect();
    assert_eq!(eps, ["10.244.1.2:8080/1", "10.244.2.2:8080/1"]);
    // The node's own address is not the device's business.
    assert_eq!(
        m.device_addresses(&snap),
        [ip("10.96.0.20"), ip("172.31.255.7")].into_iter().collect()
    );
}

#[test]
fn updates_and_deletes_follow_and_the_scheduler_annotation_can_go() {
    let mut m = Model::new("node-1", vec![]);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("web", "10.96.0.20", None, Some("sh"))],
        slices: vec![],
    });
    assert_eq!(listens(&m.snapshot())[0], "TCP 10.96.0.20:80 sh");
    m.handle(ProxyEvent::ServicesUpdated(vec![svc(
        "web",
        "10.96.0.20",
        None,
        None,
    )]));
    assert_eq!(listens(&m.snapshot())[0], "TCP 10.96.0.20:80 rr");
    m.handle(ProxyEvent::ServicesUpdated(vec![svc(
        "web",
        "10.96.0.20",
        None,
        Some("bogus"),
    )]));
    assert_eq!(listens(&m.snapshot())[0], "TCP 10.96.0.20:80 rr");
    m.handle(ProxyEvent::SlicesUpdated(vec![slice(
        "web",
        &["10.244.1.2"],
    )]));
    assert_eq!(m.snapshot().services[0].endpoints.len(), 1);
    m.handle(ProxyEvent::SlicesDeleted(vec![(
        "default".into(),
        "web-abc".into(),
    )]));
    assert!(m.snapshot().services[0].endpoints.is_empty());
    m.handle(ProxyEvent::ServicesDeleted(vec![ServiceKey::new(
        "default", "web",
    )]));
    assert!(m.snapshot().services.is_empty());
}

#[test]
fn replace_forgets_what_the_new_list_lacks() {
    let mut m = Model::new("node-1", vec![]);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("a", "10.96.0.20", None, Some("lc"))],
        slices: vec![],
    });
    m.handle(ProxyEvent::Replace {
        services: vec![svc("b", "10.96.0.21", None, None)],
        slices: vec![],
    });
    assert_eq!(
        listens(&m.snapshot()),
        ["TCP 10.96.0.21:80 rr", "TCP 172.31.255.7:80 rr"]
    );
}

#[test]
fn loopback_service_addresses_need_no_device() {
    let mut m = Model::new("rootless", vec![ip("127.0.0.1")]);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("web", "127.96.0.20", Some(30002), None)],
        slices: vec![],
    });
    let snap = m.snapshot();
    assert!(listens(&snap).contains(&"TCP 127.0.0.1:30002 rr".to_owned()));
    // Only the (non-loopback) external IP would go on the device.
    assert_eq!(
        m.device_addresses(&snap),
        [ip("172.31.255.7")].into_iter().collect()
    );
}

#[test]
fn address_batches_add_missing_and_remove_stale() {
    let have: BTreeSet<IpAddr> = [ip("10.96.0.1"), ip("10.96.0.9")].into_iter().collect();
    let want: BTreeSet<IpAddr> = [ip("10.96.0.1"), ip("10.96.0.10"), ip("fd00::a")]
        .into_iter()
        .collect();
    let (add, del) = address_batches(&have, &want);
    assert_eq!(
        add,
        "address add 10.96.0.10/32 dev kube-ipvs0\naddress add fd00::a/128 dev kube-ipvs0\n"
    );
    assert_eq!(del, "address del 10.96.0.9/32 dev kube-ipvs0\n");
    let (add, del) = address_batches(&want, &want);
    assert!(add.is_empty() && del.is_empty());
}

#[test]
fn rules_render_as_ipvsadm_lists_them() {
    let mut m = Model::new("node-1", vec![]);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("web", "10.96.0.20", None, None)],
        slices: vec![slice("web", &["10.244.1.2"])],
    });
    let text = render(&m.snapshot());
    assert!(text.contains("TCP  10.96.0.20:80 rr\n"), "{text}");
    assert!(text.contains("  -> 10.244.1.2:8080"), "{text}");
    assert!(render(&Snapshot::default()).contains("# no virtual services"));
}

#[tokio::test]
async fn stats_socket_serves_json_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(STATS_SOCKET);
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        services: vec![us::VirtualService {
            listen: "127.0.0.1:0".parse().unwrap(),
            protocol: Protocol::Tcp,
            scheduler: "rr".into(),
            affinity_timeout: None,
            endpoints: vec![("127.0.0.1:9".parse().unwrap(), 1)],
            source_ranges: Vec::new(),
        }],
    }));
    let handle = Arc::new(us::spawn(rx, us::ProxyConfig::default()));
    handle.synced().await;
    let cancel = CancellationToken::new();
    let server = tokio::spawn(serve_stats(path.clone(), handle.clone(), cancel.clone()));
    let mut stats = None;
    for _ in 0..50 {
        if let Ok(s) = read_stats(&path).await {
            stats = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = stats.expect("stats socket answered");
    assert_eq!(stats, handle.stats());
    assert_eq!(stats.services.len(), 1);
    cancel.cancel();
    server.await.unwrap().unwrap();
    assert!(!path.exists(), "the socket file is removed on shutdown");
    drop(tx);
}

#[test]
fn rootless_dials_pods_at_their_loopback_image_with_shifted_ports() {
    let dial = RootlessDial {
        pods: Some("10.244.0.0/16".parse().unwrap()),
        shift: rootless::PortShift {
            unprivileged_start: 1024,
            shift: 10_000,
        },
    };
    let mut m = Model::new("node-1", vec![ip("127.0.0.1")]).with_rootless(Some(dial));
    let mut s = slice("web", &["10.244.0.5"]);
    s.ports.as_mut().unwrap()[0].port = Some(80);
    let mut api = slice("kubernetes", &["172.31.9.9"]);
    api.metadata.name = Some("kubernetes".into());
    m.handle(ProxyEvent::Replace {
        services: vec![
            svc("web", "127.96.0.20", Some(30002), None),
            svc("kubernetes", "127.96.0.1", None, None),
        ],
        slices: vec![s, api],
    });
    let snap = m.snapshot();
    let eps = |listen: &str| -> Vec<String> {
        snap.services
            .iter()
            .find(|v| v.listen.to_string() == listen)
            .unwrap()
            .endpoints
            .iter()
            .map(|(a, _)| a.to_string())
            .collect()
    };
    // Privileged service ports are listened on shifted too; NodePorts never need it.
    assert_eq!(eps("127.96.0.20:10080"), ["127.244.0.5:10080"]);
    assert_eq!(eps("127.0.0.1:30002"), ["127.244.0.5:10080"]);
    // Not a pod: dialled as it is.
    assert_eq!(eps("127.96.0.1:10080"), ["172.31.9.9:8080"]);
    // Without a CIDR every non-loopback IPv4 endpoint is a pod; loopback ones are left alone.
    let any = RootlessDial { pods: None, ..dial };
    assert_eq!(
        any.dial("10.1.2.3:8080".parse().unwrap()).to_string(),
        "127.1.2.3:8080"
    );
    assert_eq!(
        any.dial("127.0.0.1:443".parse().unwrap()).to_string(),
        "127.0.0.1:443"
    );
}

#[test]
fn pod_weights_reach_the_endpoints() {
    use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
    let pod = |ip: &str, weight: Option<&str>| Pod {
        metadata: ObjectMeta {
            annotations: weight.map(|w| {
                [(us::WEIGHT_ANNOTATION.to_owned(), w.to_owned())]
                    .into_iter()
                    .collect()
            }),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    };
    let pods = [
        pod("10.244.1.2", Some("3")),
        pod("10.244.2.2", None),
        pod("10.244.3.2", Some("0")),
    ];
    let weights = weights_of(pods.iter());
    assert_eq!(weights.len(), 2);
    let mut m = Model::new("node-1", vec![]);
    m.set_weights(&weights);
    m.handle(ProxyEvent::Replace {
        services: vec![svc("web", "10.96.0.20", None, Some("wrr"))],
        slices: vec![slice("web", &["10.244.1.2", "10.244.2.2", "10.244.3.2"])],
    });
    let eps: Vec<String> = m.snapshot().services[0]
        .endpoints
        .iter()
        .map(|(a, w)| format!("{}/{w}", a.ip()))
        .collect();
    assert_eq!(eps, ["10.244.1.2/3", "10.244.2.2/1", "10.244.3.2/0"]);
}

#[test]
fn events_count_their_changes_and_trigger_times() {
    let mut s = slice("web", &["10.244.1.5"]);
    s.metadata.annotations = Some(
        [(
            pontifex_proxy::sync::TRIGGER_TIME_ANNOTATION.to_owned(),
            "1970-01-01T00:16:40Z".to_owned(),
        )]
        .into(),
    );
    let plain = slice("db", &["10.244.1.6"]);
    let (svcs, slices, triggers) =
        event_changes(&ProxyEvent::SlicesUpdated(vec![s.clone(), plain.clone()]));
    assert_eq!((svcs, slices), (0, 2));
    assert_eq!(
        triggers,
        [SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000)]
    );
    let replace = ProxyEvent::Replace {
        services: vec![svc("web", "10.96.0.10", None, None)],
        slices: vec![s, plain],
    };
    let (svcs, slices, triggers) = event_changes(&replace);
    assert_eq!((svcs, slices, triggers.len()), (1, 2, 1));
}

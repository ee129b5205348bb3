use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;

fn now() -> Timestamp {
    "2024-06-01T12:00:00Z".parse().unwrap()
}

/// An RFC 3339 time `secs` seconds before `now()`.
fn ago(secs: i64) -> String {
    (now() - SignedDuration::from_secs(secs)).to_string()
}

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Expected cells, written as JSON so integers stay integers.
fn cells(v: Value) -> Vec<Value> {
    v.as_array().unwrap().clone()
}

fn check(columns: &[Column], got: Vec<Value>, want: Value) {
    assert_eq!(got.len(), columns.len(), "one cell per column");
    assert_eq!(got, cells(want));
}

#[test]
fn every_kind_prints_one_cell_per_column_even_when_empty() {
    let n = now();
    assert_eq!(namespace(&Default::default(), n).len(), NAMESPACE.len());
    assert_eq!(node(&Default::default(), n).len(), NODE.len());
    assert_eq!(pod(&Default::default(), n).len(), POD.len());
    assert_eq!(service(&Default::default(), n).len(), SERVICE.len());
    assert_eq!(endpoints(&Default::default(), n).len(), ENDPOINTS.len());
    assert_eq!(secret(&Default::default(), n).len(), SECRET.len());
    assert_eq!(config_map(&Default::default(), n).len(), CONFIG_MAP.len());
    assert_eq!(event(&Default::default(), n).len(), EVENT.len());
    assert_eq!(
        endpoint_slice(&Default::default(), n).len(),
        ENDPOINT_SLICE.len()
    );
    assert_eq!(deployment(&Default::default(), n).len(), DEPLOYMENT.len());
    assert_eq!(replica_set(&Default::default(), n).len(), REPLICA_SET.len());
    assert_eq!(ingress(&Default::default(), n).len(), INGRESS.len());
    assert_eq!(
        ingress_class(&Default::default(), n).len(),
        INGRESS_CLASS.len()
    );
    assert_eq!(
        network_policy(&Default::default(), n).len(),
        NETWORK_POLICY.len()
    );
    assert_eq!(lease(&Default::default(), n).len(), LEASE.len());
}

#[test]
fn column_definitions_serialise_as_table_column_definitions() {
    let v = serde_json::to_value(SERVICE).unwrap();
    assert_eq!(
        v[0],
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DOC, "priority": 0})
    );
    let names: Vec<&str> = SERVICE.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "Name",
            "Type",
            "Cluster-IP",
            "External-IP",
            "Port(s)",
            "Age",
            "Selector"
        ]
    );
    let wide_pod: Vec<&str> = POD
        .iter()
        .filter(|c| c.priority == 1)
        .map(|c| c.name)
        .collect();
    assert_eq!(
        wide_pod,
        ["IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    let event_cols: Vec<(&str, u8)> = EVENT.iter().map(|c| (c.name, c.priority)).collect();
    assert_eq!(
        event_cols,
        [
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1)
        ]
    );
    assert!(EVENT[9].format == "name");
}

#[test]
fn ages() {
    let ns = |created: Option<String>| {
        let mut v = json!({"metadata": {"name": "a"}});
        if let Some(c) = created {
            v["metadata"]["creationTimestamp"] = json!(c);
        }
        namespace(&obj(v), now())[2].clone()
    };
    assert_eq!(ns(None), "<unknown>");
    assert_eq!(ns(Some(ago(0))), "0s");
    assert_eq!(ns(Some(ago(-1))), "0s"); // clock skew within tolerance
    assert_eq!(ns(Some(ago(-5))), "<invalid>");
    assert_eq!(ns(Some(ago(59))), "59s");
    assert_eq!(ns(Some(ago(5 * 60 + 30))), "5m30s");
    assert_eq!(ns(Some(ago(3 * 3600 + 5 * 60))), "3h5m");
    assert_eq!(ns(Some(ago(5 * 86400))), "5d");
}

#[test]
fn namespace_secret_config_map_lease() {
    let n: Namespace = obj(json!({
        "metadata": {"name": "default", "creationTimestamp": ago((3 * 365 + 45) * 86400)},
        "status": {"phase": "Active"}
    }));
    check(
        NAMESPACE,
        namespace(&n, now()),
        json!(["default", "Active", "3y45d"]),
    );

    let sec: Secret = obj(json!({
        "metadata": {"name": "tls", "creationTimestamp": ago(600)},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "YQ==", "tls.key": "Yg=="}
    }));
    check(
        SECRET,
        secret(&sec, now()),
        json!(["tls", "kubernetes.io/tls", 2, "10m"]),
    );

    let cm: ConfigMap = obj(json!({
        "metadata": {"name": "cfg", "creationTimestamp": ago(90)},
        "data": {"a": "1", "b": "2"},
        "binaryData": {"c": "YQ=="}
    }));
    check(CONFIG_MAP, config_map(&cm, now()), json!(["cfg", 3, "90s"]));
    let empty: ConfigMap = obj(json!({"metadata": {"name": "e", "creationTimestamp": ago(1)}}));
    check(CONFIG_MAP, config_map(&empty, now()), json!(["e", 0, "1s"]));

    let l: Lease = obj(json!({
        "metadata": {"name": "kube-scheduler", "creationTimestamp": ago(7200)},
        "spec": {"holderIdentity": "node-1_abc"}
    }));
    check(
        LEASE,
        lease(&l, now()),
        json!(["kube-scheduler", "node-1_abc", "120m"]),
    );
    let free: Lease = obj(json!({"metadata": {"name": "x", "creationTimestamp": ago(1)}}));
    check(LEASE, lease(&free, now()), json!(["x", "", "1s"]));
}

// --- Service -------------------------------------------------------------------------------------

fn svc(spec: Value, status: Value) -> Service {
    obj(json!({
        "metadata": {"name": "nginx", "creationTimestamp": ago(17 * 60)},
        "spec": spec,
        "status": status
    }))
}

#[test]
fn service_node_port() {
    let s = svc(
        json!({
            "type": "NodePort", "clusterIP": "10.109.98.33", "clusterIPs": ["10.109.98.33"],
            "selector": {"app": "nginx"},
            "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30002}]
        }),
        json!({}),
    );
    check(
        SERVICE,
        service(&s, now()),
        json!([
            "nginx",
            "NodePort",
            "10.109.98.33",
            "<none>",
            "80:30002/TCP",
            "17m",
            "app=nginx"
        ]),
    );
}

#[test]
fn service_cluster_ip_variants() {
    let two_ports = svc(
        json!({
            "type": "ClusterIP", "clusterIPs": ["10.96.0.10"],
            "externalIPs": ["172.31.255.5", "172.31.255.6"],
            "selector": {"tier": "web", "app": "nginx"},
            "ports": [{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]
        }),
        json!({}),
    );
    check(
        SERVICE,
        service(&two_ports, now()),
        json!([
            "nginx",
            "ClusterIP",
            "10.96.0.10",
            "172.31.255.5,172.31.255.6",
            "80/TCP,53/UDP",
            "17m",
            "app=nginx,tier=web"
        ]),
    );

    let headless = svc(
        json!({"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"]}),
        json!({}),
    );
    check(
        SERVICE,
        service(&headless, now()),
        json!([
            "nginx",
            "ClusterIP",
            "None",
            "<none>",
            "<none>",
            "17m",
            "<none>"
        ]),
    );
}

#[test]
fn service_load_balancer_and_external_name() {
    let pending = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.1"],
               "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31443}]}),
        json!({"loadBalancer": {}}),
    );
    assert_eq!(service(&pending, now())[3], "<pending>");
    assert_eq!(service(&pending, now())[4], "443:31443/TCP");

    let assigned = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.1"]}),
        json!({"loadBalancer": {"ingress": [
            {"ip": "172.31.255.20"}, {"hostname": "lb.example.com"}, {"ip": "172.31.255.10"},
            {"ip": "172.31.255.10"}
        ]}}),
    );
    // Sorted, without repeats, never truncated (the server prints the wide form).
    assert_eq!(
        service(&assigned, now())[3],
        "172.31.255.10,172.31.255.20,lb.example.com"
    );

    let with_external = svc(
        json!({"type": "LoadBalancer", "clusterIPs": ["10.96.1.1"], "externalIPs": ["1.2.3.4"]}),
        json!({"loadBalancer": {"ingress": [{"ip": "172.31.255.10"}]}}),
    );
    assert_eq!(service(&with_external, now())[3], "172.31.255.10,1.2.3.4");
    let external_only = svc(
        json!({"type": "LoadBalancer", "externalIPs": ["1.2.3.4"]}),
        json!({}),
    );
    assert_eq!(service(&external_only, now())[3], "1.2.3.4");

    let ext_name = svc(
        json!({"type": "ExternalName", "externalName": "db.example.com"}),
        json!({}),
    );
    check(
        SERVICE,
        service(&ext_name, now()),
        json!([
            "nginx",
            "ExternalName",
            "<none>",
            "db.example.com",
            "<none>",
            "17m",
            "<none>"
        ]),
    );
}

// --- Endpoints and EndpointSlices ------------------------------------------------------------------

#[test]
fn endpoints_lists_three_then_counts_the_rest() {
    let e: Endpoints = obj(json!({
        "metadata": {"name": "nginx", "creationTimestamp": ago(60)},
        "subsets": [
            {"addresses": [{"ip": "10.244.0.5"}, {"ip": "10.244.0.6"}], "ports": [{"port": 9376}]},
            {"addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.1.6"}, {"ip": "10.244.1.7"}],
             "ports": [{"port": 9376}]}
        ]
    }));
    check(
        ENDPOINTS,
        endpoints(&e, now()),
        json!([
            "nginx",
            "10.244.0.5:9376,10.244.0.6:9376,10.244.1.5:9376 + 2 more...",
            "60s"
        ]),
    );

    let two: Endpoints = obj(json!({
        "metadata": {"name": "nginx"},
        "subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "fd00::6"}],
                     "ports": [{"port": 80, "name": "http"}]}]
    }));
    assert_eq!(endpoints(&two, now())[1], "10.244.0.5:80,[fd00::6]:80");

    // Each port multiplies the addresses.
    let ports: Endpoints = obj(json!({
        "metadata": {"name": "x"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                     "ports": [{"port": 80}, {"port": 443}]}]
    }));
    assert_eq!(
        endpoints(&ports, now())[1],
        "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
    );

    let headless: Endpoints = obj(json!({
        "metadata": {"name": "x"},
        "subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]
    }));
    assert_eq!(endpoints(&headless, now())[1], "10.0.0.1");

    let none: Endpoints = obj(json!({"metadata": {"name": "x"}}));
    assert_eq!(endpoints(&none, now())[1], "<none>");
    let not_ready_only: Endpoints = obj(json!({
        "metadata": {"name": "x"},
        "subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]
    }));
    assert_eq!(endpoints(&not_ready_only, now())[1], "");
}

#[test]
fn endpoint_slices() {
    let es: EndpointSlice = obj(json!({
        "metadata": {"name": "nginx-abc12", "creationTimestamp": ago(300)},
        "addressType": "IPv4",
        "ports": [{"port": 80, "name": "http", "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["10.244.0.5"]}, {"addresses": ["10.244.0.6"]},
            {"addresses": ["10.244.0.7"]}, {"addresses": ["10.244.0.8"]}
        ]
    }));
    check(
        ENDPOINT_SLICE,
        endpoint_slice(&es, now()),
        json!([
            "nginx-abc12",
            "IPv4",
            "80",
            "10.244.0.5,10.244.0.6,10.244.0.7 + 1 more...",
            "5m"
        ]),
    );

    let odd_ports: EndpointSlice = obj(json!({
        "metadata": {"name": "x"},
        "addressType": "IPv6",
        "ports": [{"name": "dns"}, {}, {"port": 1}, {"port": 2}],
        "endpoints": [{"addresses": ["fd00::1", "fd00::2"]}]
    }));
    let row = endpoint_slice(&odd_ports, now());
    assert_eq!(row[2], "dns,*,1 + 1 more...");
    assert_eq!(row[3], "fd00::1,fd00::2");

    let empty: EndpointSlice =
        obj(json!({"metadata": {"name": "x"}, "addressType": "IPv4", "endpoints": []}));
    let row = endpoint_slice(&empty, now());
    assert_eq!(
        (row[2].clone(), row[3].clone()),
        (json!("<unset>"), json!("<unset>"))
    );
}

// --- Pods ----------------------------------------------------------------------------------------

fn pod_obj(spec: Value, status: Value) -> Pod {
    obj(json!({
        "metadata": {"name": "web-0", "creationTimestamp": ago(3600)},
        "spec": spec,
        "status": status
    }))
}

fn one_container() -> Value {
    json!({"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-1"})
}

#[test]
fn pod_running() {
    let p = pod_obj(
        one_container(),
        json!({
            "phase": "Running",
            "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00::5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0, "image": "nginx", "imageID": "",
                "state": {"running": {"startedAt": ago(3500)}}
            }]
        }),
    );
    check(
        POD,
        pod(&p, now()),
        json!([
            "web-0",
            "1/1",
            "Running",
            "0",
            "60m",
            "10.244.1.5",
            "node-1",
            "<none>",
            "<none>"
        ]),
    );
}

#[test]
fn pod_restarts_show_when_the_last_one_was() {
    let p = pod_obj(
        json!({"containers": [{"name": "a"}, {"name": "b"}]}),
        json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 3, "image": "", "imageID": "",
                 "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(300)}}},
                {"name": "b", "ready": false, "restartCount": 2, "image": "", "imageID": "",
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 2, "finishedAt": ago(30)}}}
            ]
        }),
    );
    let row = pod(&p, now());
    assert_eq!(row[1], "1/2");
    assert_eq!(row[2], "CrashLoopBackOff");
    assert_eq!(row[3], "5 (30s ago)");
    // Without a finish time, only the count.
    let p = pod_obj(
        json!({"containers": [{"name": "a"}]}),
        json!({"phase": "Running", "containerStatuses": [
            {"name": "a", "ready": true, "restartCount": 4, "image": "", "imageID": "", "state": {"running": {}}}
        ]}),
    );
    assert_eq!(pod(&p, now())[3], "4");
}

#[test]
fn pod_status_reasons() {
    let status_of = |spec: Value, status: Value| pod(&pod_obj(spec, status), now())[2].clone();

    // Pending with no statuses shows the phase; a pod-level reason overrides it.
    assert_eq!(
        status_of(one_container(), json!({"phase": "Pending"})),
        "Pending"
    );
    assert_eq!(
        status_of(
            one_container(),
            json!({"phase": "Failed", "reason": "Evicted"})
        ),
        "Evicted"
    );
    assert_eq!(
        status_of(
            one_container(),
            json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})
        ),
        "SchedulingGated"
    );
    // Terminated containers: reason, else signal, else exit code.
    let term = |t: Value| {
        status_of(
            one_container(),
            json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": t}}]}),
        )
    };
    assert_eq!(
        term(json!({"exitCode": 0, "reason": "Completed"})),
        "Completed"
    );
    assert_eq!(term(json!({"exitCode": 137, "signal": 9})), "Signal:9");
    assert_eq!(term(json!({"exitCode": 2})), "ExitCode:2");

    // A completed container next to a running one: Running if the pod is ready, else NotReady.
    let mixed = |ready_cond: &str| {
        status_of(
            json!({"containers": [{"name": "a"}, {"name": "b"}]}),
            json!({"phase": "Running",
                   "conditions": [{"type": "Ready", "status": ready_cond}],
                   "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 0, "image": "", "imageID": "",
                 "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}
            ]}),
        )
    };
    assert_eq!(mixed("True"), "Running");
    assert_eq!(mixed("False"), "NotReady");
}

#[test]
fn pod_init_containers() {
    let spec = json!({
        "initContainers": [{"name": "init-a"}, {"name": "init-b"}],
        "containers": [{"name": "app"}]
    });
    let init = |statuses: Value| {
        pod(
            &pod_obj(
                spec.clone(),
                json!({"phase": "Pending", "initContainerStatuses": statuses}),
            ),
            now(),
        )
    };
    let st = |name: &str, state: Value| json!({"name": name, "ready": false, "restartCount": 0, "image": "", "imageID": "", "state": state});
    let row = init(json!([
        st("init-a", json!({"running": {}})),
        st("init-b", json!({"waiting": {}}))
    ]));
    assert_eq!(row[2], "Init:0/2");
    assert_eq!(row[1], "0/1");
    let row = init(json!([
        st("init-a", json!({"terminated": {"exitCode": 0}})),
        st("init-b", json!({"waiting": {"reason": "ImagePullBackOff"}}))
    ]));
    assert_eq!(row[2], "Init:ImagePullBackOff");
    let row = init(json!([st(
        "init-a",
        json!({"terminated": {"exitCode": 3}})
    )]));
    assert_eq!(row[2], "Init:ExitCode:3");
    let row = init(json!([st(
        "init-a",
        json!({"terminated": {"exitCode": 1, "reason": "Error"}})
    )]));
    assert_eq!(row[2], "Init:Error");
    let row = init(json!([st(
        "init-a",
        json!({"waiting": {"reason": "PodInitializing"}})
    )]));
    assert_eq!(row[2], "Init:0/2");

    // A sidecar (restartable init container) counts towards Ready and its restarts always show.
    let sidecar_spec = json!({
        "initContainers": [{"name": "proxy", "restartPolicy": "Always"}],
        "containers": [{"name": "app"}]
    });
    let p = pod_obj(
        sidecar_spec,
        json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{"name": "proxy", "ready": true, "started": true,
                "restartCount": 1, "image": "", "imageID": "", "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(120)}}}],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "image": "",
                "imageID": "", "state": {"running": {}}}]
        }),
    );
    let row = pod(&p, now());
    assert_eq!(row[1], "2/2");
    assert_eq!(row[2], "Running");
    assert_eq!(row[3], "1 (2m ago)");
}

#[test]
fn pod_terminating_and_wide_cells() {
    let mut p = pod_obj(
        json!({"containers": [{"name": "app"}], "readinessGates": [
            {"conditionType": "example.com/lb"}, {"conditionType": "example.com/other"}]}),
        json!({"phase": "Running", "nominatedNodeName": "node-2", "conditions": [
            {"type": "example.com/lb", "status": "True"}]}),
    );
    p.metadata.deletion_timestamp = Some(Time(now()));
    let row = pod(&p, now());
    assert_eq!(row[2], "Terminating");
    assert_eq!(
        &row[5..],
        &cells(json!(["<none>", "<none>", "node-2", "1/2"]))[..]
    );

    // A finished pod being deleted keeps its phase; a lost node's pod reads Unknown.
    let mut done = pod_obj(one_container(), json!({"phase": "Succeeded"}));
    done.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(pod(&done, now())[2], "Succeeded");
    let mut lost = pod_obj(
        one_container(),
        json!({"phase": "Running", "reason": "NodeLost"}),
    );
    lost.metadata.deletion_timestamp = Some(Time(now()));
    assert_eq!(pod(&lost, now())[2], "Unknown");
}

// --- Workloads -----------------------------------------------------------------------------------

#[test]
fn deployment_row() {
    let d: Deployment = obj(json!({
        "metadata": {"name": "nginx", "creationTimestamp": ago(5 * 86400)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [
                {"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}}
        },
        "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2}
    }));
    check(
        DEPLOYMENT,
        deployment(&d, now()),
        json!([
            "nginx",
            "2/3",
            3,
            2,
            "5d",
            "nginx,log",
            "nginx:1.25,busybox",
            "app=nginx"
        ]),
    );

    // No status yet; an empty selector prints empty here (not <none>), an invalid one <invalid>.
    let fresh: Deployment = obj(json!({
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {}}
    }));
    check(
        DEPLOYMENT,
        deployment(&fresh, now()),
        json!(["x", "0/1", 0, 0, "<unknown>", "", "", ""]),
    );
    let invalid: Deployment = obj(json!({
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}, "template": {}}
    }));
    assert_eq!(deployment(&invalid, now())[7], "<invalid>");
}

#[test]
fn replica_set_row() {
    let rs: ReplicaSet = obj(json!({
        "metadata": {"name": "nginx-7c5b", "creationTimestamp": ago(49 * 3600)},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx", "pod-template-hash": "7c5b"},
                         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]}}
        },
        "status": {"replicas": 3, "readyReplicas": 1}
    }));
    check(
        REPLICA_SET,
        replica_set(&rs, now()),
        json!([
            "nginx-7c5b",
            3,
            3,
            1,
            "2d1h",
            "nginx",
            "nginx:1.25",
            "app=nginx,pod-template-hash=7c5b,tier in (web)"
        ]),
    );
    let bare: ReplicaSet = obj(json!({"metadata": {"name": "x"}, "spec": {"selector": {}}}));
    assert_eq!(
        replica_set(&bare, now()),
        cells(json!(["x", 1, 0, 0, "<unknown>", "", "", "<none>"]))
    );
}

// --- Nodes ---------------------------------------------------------------------------------------

#[test]
fn node_rows() {
    let n: Node = obj(json!({
        "metadata": {"name": "node-1", "creationTimestamp": ago(10 * 86400), "labels": {
            "node-role.kubernetes.io/control-plane": "",
            "node-role.kubernetes.io/worker": "",
            "node-role.kubernetes.io/": "",
            "kubernetes.io/role": "edge",
            "kubernetes.io/hostname": "node-1"
        }},
        "spec": {"unschedulable": true},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"}
            ],
            "addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "172.31.0.11"},
                {"type": "InternalIP", "address": "172.31.0.12"}
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.1", "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.7.13",
                "architecture": "amd64", "bootID": "", "kubeProxyVersion": "", "machineID": "",
                "operatingSystem": "linux", "systemUUID": ""
            }
        }
    }));
    check(
        NODE,
        node(&n, now()),
        json!([
            "node-1",
            "Ready,SchedulingDisabled",
            "control-plane,edge,worker",
            "10d",
            "v1.33.1",
            "172.31.0.11",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0-18-amd64",
            "containerd://1.7.13"
        ]),
    );

    let not_ready: Node = obj(json!({
        "metadata": {"name": "n2"},
        "status": {"conditions": [{"type": "Ready", "status": "Unknown"}],
                   "addresses": [{"type": "ExternalIP", "address": "203.0.113.7"}]}
    }));
    check(
        NODE,
        node(&not_ready, now()),
        json!([
            "n2",
            "NotReady",
            "<none>",
            "<unknown>",
            "",
            "<none>",
            "203.0.113.7",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ]),
    );
    let fresh: Node = obj(json!({"metadata": {"name": "n3"}}));
    assert_eq!(node(&fresh, now())[1], "Unknown");
}

// --- Networking ----------------------------------------------------------------------------------

#[test]
fn ingress_rows() {
    let ing: Ingress = obj(json!({
        "metadata": {"name": "web", "creationTimestamp": ago(120)},
        "spec": {
            "ingressClassName": "pontifex",
            "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}],
            "rules": [{"host": "a.example.com"}, {"host": "b.example.com"}]
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "172.31.255.1"}]}}
    }));
    check(
        INGRESS,
        ingress(&ing, now()),
        json!([
            "web",
            "pontifex",
            "a.example.com,b.example.com",
            "172.31.255.1",
            "80, 443",
            "2m"
        ]),
    );

    let bare: Ingress = obj(
        json!({"metadata": {"name": "x"}, "spec": {"defaultBackend": {
        "service": {"name": "s", "port": {"number": 80}}}}}),
    );
    check(
        INGRESS,
        ingress(&bare, now()),
        json!(["x", "<none>", "*", "", "80", "<unknown>"]),
    );

    // Hosts stop at three; "+ N more" counts the rules past the third.
    let many: Ingress = obj(json!({"metadata": {"name": "x"}, "spec": {"rules": [
        {"host": "a"}, {}, {"host": "b"}, {"host": "c"}, {"host": "d"}, {"host": "e"}
    ]}}));
    assert_eq!(ingress(&many, now())[2], "a,b,c + 3 more...");
    let hostless: Ingress = obj(json!({"metadata": {"name": "x"}, "spec": {"rules": [{}, {}]}}));
    assert_eq!(ingress(&hostless, now())[2], "*");
}

#[test]
fn ingress_class_and_network_policy_rows() {
    let ic: IngressClass = obj(json!({
        "metadata": {"name": "pontifex", "creationTimestamp": ago(30)},
        "spec": {"controller": "pontifex.dev/ingress",
                 "parameters": {"apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p"}}
    }));
    check(
        INGRESS_CLASS,
        ingress_class(&ic, now()),
        json!([
            "pontifex",
            "pontifex.dev/ingress",
            "IngressParameters.k8s.example.com/p",
            "30s"
        ]),
    );
    let core_params: IngressClass = obj(json!({
        "metadata": {"name": "x"},
        "spec": {"controller": "c", "parameters": {"kind": "ConfigMap", "name": "cfg"}}
    }));
    assert_eq!(ingress_class(&core_params, now())[2], "ConfigMap/cfg");
    let none: IngressClass = obj(json!({"metadata": {"name": "x"}, "spec": {}}));
    assert_eq!(ingress_class(&none, now())[2], "<none>");

    let np: NetworkPolicy = obj(json!({
        "metadata": {"name": "allow-web", "creationTimestamp": ago(600)},
        "spec": {"podSelector": {"matchLabels": {"app": "web"},
                 "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}}
    }));
    check(
        NETWORK_POLICY,
        network_policy(&np, now()),
        json!(["allow-web", "app=web,env notin (dev)", "10m"]),
    );
    let all: NetworkPolicy =
        obj(json!({"metadata": {"name": "deny-all"}, "spec": {"podSelector": {}}}));
    assert_eq!(network_policy(&all, now())[1], "<none>");
}

// --- Events --------------------------------------------------------------------------------------

#[test]
fn event_rows() {
    let e: Event = obj(json!({
        "metadata": {"name": "web-0.17a", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "web-0", "fieldPath": "spec.containers{app}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container\n",
        "source": {"component": "kubelet", "host": "node-1"},
        "firstTimestamp": ago(600),
        "lastTimestamp": ago(30),
        "count": 7,
        "type": "Warning"
    }));
    check(
        EVENT,
        event(&e, now()),
        json!([
            "30s",
            "Warning",
            "BackOff",
            "pod/web-0",
            "spec.containers{app}",
            "kubelet, node-1",
            "Back-off restarting failed container",
            "10m",
            7,
            "web-0.17a"
        ]),
    );

    // events.k8s.io-style: eventTime instead of timestamps, reporting fields, no count.
    let new_style: Event = obj(json!({
        "metadata": {"name": "n"},
        "involvedObject": {"kind": "Node"},
        "eventTime": ago(90),
        "reportingComponent": "pontifex-controllers",
        "type": "Normal"
    }));
    let row = event(&new_style, now());
    assert_eq!(row[0], "90s");
    assert_eq!(row[3], "node");
    assert_eq!(row[5], "pontifex-controllers");
    assert_eq!(row[7], "90s");
    assert_eq!(row[8], 1);

    // A series reports its own last time and count.
    let series: Event = obj(json!({
        "metadata": {"name": "s"},
        "involvedObject": {"kind": "Service", "name": "web"},
        "eventTime": ago(3600),
        "series": {"count": 12, "lastObservedTime": ago(5)}
    }));
    let row = event(&series, now());
    assert_eq!(
        (row[0].clone(), row[7].clone(), row[8].clone()),
        (json!("5s"), json!("60m"), json!(12))
    );

    let unknown: Event = obj(json!({"metadata": {"name": "u"}, "involvedObject": {}}));
    assert_eq!(event(&unknown, now())[0], "<unknown>");
}

use serde_json::json;

use super::*;

fn pod(containers: &[&str], node: Option<&str>) -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {
            "nodeName": node,
            "initContainers": [{"name": "init"}],
            "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
        }
    })
}

fn q(pairs: &[(&str, &str)]) -> Query {
    Query::from_pairs(pairs)
}

#[test]
fn kubectl_logs_options_reach_the_kubelet() {
    let p = plan(
        &pod(&["web", "cmd"], Some("node-1")),
        &q(&[
            ("container", "cmd"),
            ("follow", "true"),
            ("previous", "true"),
            ("tailLines", "5"),
            ("timestamps", "true"),
            ("limitBytes", "100"),
        ]),
    )
    .unwrap();
    assert_eq!(p.node, "node-1");
    assert_eq!(
        p.path_and_query,
        "/containerLogs/default/web%2D1/cmd?follow=true&previous=true&timestamps=true&tailLines=5&limitBytes=100"
    );
    // One container: it is the default; false flags are left out.
    let p = plan(&pod(&["web"], Some("n")), &q(&[("follow", "false")])).unwrap();
    assert_eq!(p.path_and_query, "/containerLogs/default/web%2D1/web");
    // Init containers have logs too.
    let p = plan(&pod(&["web"], Some("n")), &q(&[("container", "init")])).unwrap();
    assert!(p.path_and_query.ends_with("/init"));
}

#[test]
fn requests_kube_apiserver_refuses_are_refused() {
    let two = pod(&["web", "cmd"], Some("n"));
    match plan(&two, &q(&[])) {
        Err(ApiError::BadRequest(m)) => assert_eq!(
            m,
            "a container name must be specified for pod web-1, choose one of: [web cmd]"
        ),
        other => panic!("{other:?}"),
    }
    match plan(&two, &q(&[("container", "nope")])) {
        Err(ApiError::BadRequest(m)) => assert_eq!(m, "container nope is not valid for pod web-1"),
        other => panic!("{other:?}"),
    }
    match plan(&pod(&["web"], None), &q(&[])) {
        Err(ApiError::BadRequest(m)) => assert_eq!(m, "pod web-1 does not have a host assigned"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        plan(&two, &q(&[("container", "web"), ("tailLines", "-1")])),
        Err(ApiError::Unprocessable(_))
    ));
    assert!(matches!(
        plan(&two, &q(&[("container", "web"), ("limitBytes", "0")])),
        Err(ApiError::Unprocessable(_))
    ));
    assert!(matches!(
        plan(&two, &q(&[("container", "web"), ("follow", "maybe")])),
        Err(ApiError::BadRequest(_))
    ));
    assert!(matches!(
        plan(&two, &q(&[("container", "web"), ("sinceSeconds", "10")])),
        Err(ApiError::BadRequest(_))
    ));
}

#[test]
fn the_kubelet_is_found_at_the_nodes_internal_ip() {
    let node = json!({"status": {"addresses": [
        {"type": "Hostname", "address": "node-1"},
        {"type": "InternalIP", "address": "172.31.0.2"}
    ]}});
    assert_eq!(
        kubelet_address(&node),
        Some("172.31.0.2:10250".parse().unwrap())
    );
    let node = json!({"status": {
        "addresses": [{"type": "ExternalIP", "address": "10.0.0.9"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10255}}
    }});
    assert_eq!(
        kubelet_address(&node),
        Some("10.0.0.9:10255".parse().unwrap())
    );
    assert_eq!(kubelet_address(&json!({"status": {}})), None);
}

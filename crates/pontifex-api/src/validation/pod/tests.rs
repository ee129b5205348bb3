use serde_json::{Value, json};

use crate::validation::tests::{admit, defaulted};

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

#[test]
fn pod_rules_table() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"containers": [{"name": "c", "image": "nginx"}]}),
            vec![],
        ),
        (
            json!({"containers": []}),
            vec!["spec.containers: Required value"],
        ),
        (
            json!({"containers": [{"name": "c"}]}),
            vec!["spec.containers[0].image: Required value"],
        ),
        (
            json!({"containers": [{"name": "C", "image": "x"}]}),
            vec![
                "spec.containers[0].name: Invalid value: \"C\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]}),
            vec!["spec.containers[1].name: Duplicate value: \"c\""],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "ports": [
            {"containerPort": 70000, "name": "http"}, {"containerPort": 81, "name": "http", "protocol": "ICMP"}]}]}),
            vec![
                "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.containers[0].ports[1].name: Duplicate value: \"http\"",
                "spec.containers[0].ports[1].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "name": "123"}]}]}),
            vec![
                "spec.containers[0].ports[0].name: Invalid value: \"123\": must contain at least one letter (a-z)",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "env": [{"name": "A=B"}]}]}),
            vec![
                "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {"periodSeconds": 5}}]}),
            vec!["spec.containers[0].livenessProbe: Required value: must specify a handler type"],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {
            "httpGet": {"port": 80}, "tcpSocket": {"port": 80}}}]}),
            vec![
                "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "livenessProbe": {
            "tcpSocket": {"port": 80}, "successThreshold": 2}}]}),
            vec!["spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1"],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "readinessProbe": {
            "tcpSocket": {"port": 80}, "successThreshold": 2, "initialDelaySeconds": -1}}]}),
            vec![
                "spec.containers[0].readinessProbe.initialDelaySeconds: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            json!({"restartPolicy": "Sometimes", "containers": [{"name": "c", "image": "x"}]}),
            vec![
                "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\"",
            ],
        ),
        (
            json!({"containers": [{"name": "c", "image": "x", "imagePullPolicy": "Sometimes"}]}),
            vec![
                "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            ],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(admit(&pod(spec.clone()), None), want, "spec: {spec}");
    }
}

#[test]
fn pod_defaults() {
    let d = defaulted(&pod(json!({"containers": [
        {"name": "a", "image": "nginx", "ports": [{"containerPort": 80}],
         "livenessProbe": {"httpGet": {"port": 80}}},
        {"name": "b", "image": "registry:5000/app:1.2"},
        {"name": "c", "image": "nginx:latest"},
        {"name": "d", "image": "nginx@sha256:abcd"}
    ]})));
    let spec = &d["spec"];
    assert_eq!(spec["restartPolicy"], json!("Always"));
    assert_eq!(spec["dnsPolicy"], json!("ClusterFirst"));
    assert_eq!(spec["terminationGracePeriodSeconds"], json!(30));
    assert_eq!(spec["schedulerName"], json!("default-scheduler"));
    assert_eq!(spec["enableServiceLinks"], json!(true));
    let c = &spec["containers"];
    assert_eq!(c[0]["imagePullPolicy"], json!("Always"));
    assert_eq!(c[1]["imagePullPolicy"], json!("IfNotPresent"));
    assert_eq!(c[2]["imagePullPolicy"], json!("Always"));
    assert_eq!(c[3]["imagePullPolicy"], json!("IfNotPresent"));
    assert_eq!(c[0]["terminationMessagePolicy"], json!("File"));
    assert_eq!(c[0]["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(
        c[0]["livenessProbe"],
        json!({"failureThreshold": 3, "httpGet": {"path": "/", "port": 80, "scheme": "HTTP"},
               "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1})
    );
    assert_eq!(
        d["status"],
        json!({"phase": "Pending", "qosClass": "BestEffort"})
    );
}

#[test]
fn pod_spec_is_immutable_but_images() {
    let old = defaulted(&pod(
        json!({"containers": [{"name": "c", "image": "nginx:1.19"}]}),
    ));
    let mut new = old.clone();
    new["spec"]["containers"][0]["image"] = json!("nginx:1.20");
    new["metadata"]["labels"] = json!({"a": "b"});
    assert_eq!(admit(&new, Some(&old)), Vec::<String>::new());

    let mut new = old.clone();
    new["spec"]["restartPolicy"] = json!("Never");
    let errs = admit(&new, Some(&old));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("restartPolicy"), "{}", errs[0]);
}

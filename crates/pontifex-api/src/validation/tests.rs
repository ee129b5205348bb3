use serde_json::{Value, json};

use crate::field::FieldError;
use crate::registry;

/// Decode, default and validate one manifest document through the registry, as the API server does.
pub(super) fn admit(doc: &Value, old: Option<&Value>) -> Vec<String> {
    let api_version = doc["apiVersion"].as_str().expect("apiVersion");
    let kind = doc["kind"].as_str().expect("kind");
    let rt = registry::by_kind(api_version, kind).expect("known kind");
    let decoded = rt.strategy.decode(doc).expect("decodes");
    assert!(
        decoded.unknown_fields.is_empty(),
        "unknown fields {:?}",
        decoded.unknown_fields
    );
    let mut obj = decoded.object;
    rt.strategy.default(&mut obj).expect("defaults");
    rt.strategy
        .validate(&obj, old)
        .expect("validates")
        .iter()
        .map(FieldError::to_string)
        .collect()
}

/// Defaulted form of a document, for tests that inspect the result.
pub(super) fn defaulted(doc: &Value) -> Value {
    let rt = registry::by_kind(
        doc["apiVersion"].as_str().unwrap(),
        doc["kind"].as_str().unwrap(),
    )
    .unwrap();
    let mut obj = rt.strategy.decode(doc).unwrap().object;
    rt.strategy.default(&mut obj).unwrap();
    obj
}

#[test]
fn every_shared_example_defaults_and_validates_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples directory") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for mut doc in docs.into_iter().filter(|d| !d.is_null()) {
            // The API server puts namespaced objects in the request's namespace before validating.
            let kind = doc["kind"].as_str().unwrap().to_owned();
            if kind != "Namespace" && doc["metadata"]["namespace"].is_null() {
                doc["metadata"]["namespace"] = json!("default");
            }
            let errs = admit(&doc, None);
            assert!(errs.is_empty(), "{}: {kind}: {errs:#?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 15, "only {seen} documents found");
}

#[test]
fn example_service_defaults_match_the_real_server() {
    // The IP family fields are the API server's admission's (they depend on its ranges): see
    // pontifex-apiserver's admission tests.
    let svc = defaulted(&json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "example-service", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "example"},
                 "ports": [{"port": 8765, "targetPort": 9376}]}
    }));
    assert_eq!(
        svc["spec"],
        json!({
            "allocateLoadBalancerNodePorts": true,
            "externalTrafficPolicy": "Cluster",
            "internalTrafficPolicy": "Cluster",
            "ports": [{"port": 8765, "protocol": "TCP", "targetPort": 9376}],
            "selector": {"app": "example"},
            "sessionAffinity": "None",
            "type": "LoadBalancer"
        })
    );
    assert_eq!(svc["status"], json!({"loadBalancer": {}}));
}

fn errs_of(doc: Value) -> Vec<String> {
    admit(&doc, None)
}

#[test]
fn deployment_rules() {
    let base = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    assert!(errs_of(base.clone()).is_empty());

    let mut d = base.clone();
    d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    assert_eq!(
        errs_of(d),
        vec![
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
        ]
    );

    let mut d = base.clone();
    d["spec"]["replicas"] = json!(-1);
    assert_eq!(
        errs_of(d),
        vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
    );

    let mut d = base.clone();
    d["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
    assert_eq!(
        errs_of(d),
        vec![
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
        ]
    );

    let mut d = base.clone();
    d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}});
    assert_eq!(
        errs_of(d),
        vec![
            "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"
        ]
    );

    let mut d = base.clone();
    d["spec"]["strategy"] = json!({"rollingUpdate": {"maxUnavailable": "50"}});
    assert_eq!(
        errs_of(d),
        vec![
            "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"50\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
        ]
    );

    let mut d = base.clone();
    d["spec"]["selector"] = json!({});
    assert_eq!(
        errs_of(d),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"
        ]
    );

    let mut d = base.clone();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
    assert_eq!(
        errs_of(d),
        vec![
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        ]
    );

    // Defaults: 25%/25%, history 10, deadline 600, one replica, container defaults in the template.
    let dd = defaulted(&base);
    assert_eq!(dd["spec"]["replicas"], json!(1));
    assert_eq!(
        dd["spec"]["strategy"],
        json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"})
    );
    assert_eq!(dd["spec"]["revisionHistoryLimit"], json!(10));
    assert_eq!(dd["spec"]["progressDeadlineSeconds"], json!(600));
    let c = &dd["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], json!("Always"));
    assert_eq!(c["terminationMessagePath"], json!("/dev/termination-log"));

    // The selector is immutable.
    let old = defaulted(&base);
    let mut new = old.clone();
    new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "x"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "tier": "x"});
    assert_eq!(
        admit(&new, Some(&old)),
        vec![
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        ]
    );
}

#[test]
fn replica_set_requires_matching_selector() {
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": []}]},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx:1.19"}]}}}
    });
    let errs = errs_of(rs);
    assert_eq!(
        errs[0],
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
    );
}

#[test]
fn ingress_rules() {
    let base = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "ing", "namespace": "default"},
        "spec": {"rules": [{"host": "foo.bar.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}
        ]}}]}
    });
    assert!(errs_of(base.clone()).is_empty());
    let case = |patch: &dyn Fn(&mut Value)| {
        let mut d = base.clone();
        patch(&mut d);
        errs_of(d)
    };
    assert_eq!(
        case(&|d| d["spec"]["rules"][0]["host"] = json!("*.*.bar.com")),
        vec![
            "spec.rules[0].host: Invalid value: \"*.*.bar.com\": a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
    assert!(case(&|d| d["spec"]["rules"][0]["host"] = json!("*.bar.com")).is_empty());
    assert_eq!(
        case(&|d| d["spec"]["rules"][0]["host"] = json!("10.0.0.1")),
        vec![
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
        ]
    );
    assert_eq!(
        case(&|d| d["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!("foo")),
        vec!["spec.rules[0].http.paths[0].path: Invalid value: \"foo\": must be an absolute path"]
    );
    assert_eq!(
        case(&|d| d["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("Regex")),
        vec![
            "spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
        ]
    );
    assert!(
        case(&|d| {
            d["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = json!("ImplementationSpecific");
            d["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!("");
        })
        .is_empty()
    );
    assert_eq!(
        case(
            &|d| d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
                json!({"number": 80, "name": "http"})
        ),
        vec![
            "spec.rules[0].http.paths[0].backend: Invalid value: \"\": cannot set both port name & port number"
        ]
    );
    assert_eq!(
        case(
            &|d| d["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
                json!({})
        ),
        vec![
            "spec.rules[0].http.paths[0].backend: Required value: port name or number is required"
        ]
    );
    assert_eq!(
        case(&|d| d["spec"]["rules"][0]["http"]["paths"][0]["backend"] = json!({})),
        vec![
            "spec.rules[0].http.paths[0].backend: Invalid value: \"\": resource or service backend is required"
        ]
    );
    assert_eq!(
        case(&|d| d["spec"] = json!({})),
        vec![
            "spec: Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified"
        ]
    );
    assert_eq!(
        case(&|d| d["spec"]["tls"] = json!([{"hosts": ["Foo.com"], "secretName": "s"}])),
        vec![
            "spec.tls[0].hosts[0]: Invalid value: \"Foo.com\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        ]
    );
}

#[test]
fn ingress_class_rules() {
    let ic = |controller: &str| {
        errs_of(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": "nginx"}, "spec": {"controller": controller}}),
        )
    };
    assert!(ic("k8s.io/ingress-nginx").is_empty());
    assert_eq!(ic(""), vec!["spec.controller: Required value"]);
    assert_eq!(
        ic("nginx"),
        vec![
            "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
        ]
    );
}

#[test]
fn network_policy_rules() {
    let np = |ingress: Value| {
        errs_of(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"podSelector": {}, "ingress": ingress}}),
        )
    };
    assert_eq!(
        np(json!([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}])),
        vec!["spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"]
    );
    assert_eq!(
        np(json!([{"from": [{}]}])),
        vec!["spec.ingress[0].from[0]: Required value: must specify a peer"]
    );
    assert_eq!(
        np(
            json!([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16", "bad"]}}]}])
        ),
        vec![
            "spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"11.0.0.0/16\": must be a strict subset of `cidr`",
            "spec.ingress[0].from[0].ipBlock.except[1]: Invalid value: \"bad\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ]
    );
    assert_eq!(
        np(json!([{"ports": [{"protocol": "ICMP", "port": 80, "endPort": 70}]}])),
        vec![
            "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            "spec.ingress[0].ports[0].endPort: Invalid value: 80: must be greater than or equal to `port`"
        ]
    );
    assert_eq!(
        np(json!([{"ports": [{"port": "http", "endPort": 90}]}])),
        vec![
            "spec.ingress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"
        ]
    );
    // Defaults: Ingress, plus Egress when egress rules exist; ports TCP.
    let d = defaulted(
        &json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}}),
    );
    assert_eq!(d["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(d["spec"]["egress"][0]["ports"][0]["protocol"], json!("TCP"));
    let errs = errs_of(
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Sideways"]}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
        ]
    );
}

#[test]
fn endpoints_and_slices() {
    let ep = |subsets: Value| {
        errs_of(json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "e", "namespace": "default"}, "subsets": subsets}))
    };
    assert_eq!(
        ep(
            json!([{"addresses": [{"ip": "10.1.2.3"}, {"ip": "127.0.0.1"}, {"ip": "nope"}],
                   "ports": [{"port": 80}, {"port": 0, "name": "b"}]}])
        ),
        vec![
            "subsets[0].addresses[1].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
            "subsets[0].addresses[2].ip: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            "subsets[0].ports[0].name: Required value",
            "subsets[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ]
    );
    assert_eq!(
        ep(json!([{"ports": [{"port": 80}]}])),
        vec!["subsets[0]: Required value: must specify `addresses` or `notReadyAddresses`"]
    );

    let slice = |at: &str, addrs: Value| {
        errs_of(
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "s", "namespace": "default"}, "addressType": at,
            "endpoints": [{"addresses": addrs}], "ports": [{"port": 80}]}),
        )
    };
    assert!(slice("IPv4", json!(["10.0.0.1"])).is_empty());
    assert!(slice("FQDN", json!(["db.example.com"])).is_empty());
    assert_eq!(
        slice("IPv4", json!(["fd00::1"])),
        vec!["endpoints[0].addresses[0]: Invalid value: \"fd00::1\": must be a valid IPv4 address"]
    );
    assert_eq!(
        slice("IPv4", json!([])),
        vec!["endpoints[0].addresses: Required value: must contain at least 1 address"]
    );
    let many: Vec<String> = (0..101).map(|i| format!("10.0.0.{}", i + 1)).collect();
    assert_eq!(
        slice("IPv4", json!(many)),
        vec!["endpoints[0].addresses: Too many: 101: must have at most 100 items"]
    );
    assert_eq!(
        slice("IPX", json!(["10.0.0.1"]))[0],
        "addressType: Unsupported value: \"IPX\": supported values: \"FQDN\", \"IPv4\", \"IPv6\""
    );
    // addressType is immutable.
    let old = defaulted(
        &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4", "endpoints": []}),
    );
    let mut new = old.clone();
    new["addressType"] = json!("IPv6");
    assert_eq!(
        admit(&new, Some(&old)),
        vec!["addressType: Invalid value: \"IPv6\": field is immutable"]
    );
}

#[test]
fn namespace_secret_config_map() {
    let ns = defaulted(
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}),
    );
    assert_eq!(ns["spec"], json!({"finalizers": ["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase": "Active"}));
    assert_eq!(
        ns["metadata"]["labels"],
        json!({"kubernetes.io/metadata.name": "team-a"})
    );
    assert_eq!(
        errs_of(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}})),
        vec!["metadata.name: Invalid value: \"a.b\": must not contain dots"]
    );

    let secret = |ty: &str, data: Value| {
        errs_of(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"}, "type": ty, "data": data}))
    };
    assert_eq!(
        secret("kubernetes.io/tls", json!({"tls.crt": "YQ=="})),
        vec!["data[tls.key]: Required value"]
    );
    assert_eq!(
        secret("Opaque", json!({"bad key": "YQ=="})),
        vec![
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        ]
    );
    let s = defaulted(&json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "default"}, "stringData": {"a": "b"}}));
    assert_eq!(s["type"], json!("Opaque"));
    assert_eq!(s["data"], json!({"a": "Yg=="}));
    assert!(s.get("stringData").is_none());

    assert_eq!(
        errs_of(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"}, "data": {"..x": "1"}})),
        vec!["data[..x]: Invalid value: \"..x\": must not start with '..'"]
    );
}

#[test]
fn event_namespace_must_match() {
    let errs = errs_of(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "other"}}));
    assert_eq!(
        errs,
        vec!["involvedObject.namespace: Invalid value: \"other\": does not match event.namespace"]
    );
}

#[test]
fn lease_durations() {
    let errs = errs_of(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "l", "namespace": "kube-system"},
        "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}}),
    );
    assert_eq!(
        errs,
        vec![
            "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
            "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"
        ]
    );
}

#[test]
fn node_name_and_cidrs() {
    let errs = errs_of(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "Node_1"}, "spec": {"podCIDRs": ["10.244.1.0/24", "10.244.300.0/24"]}}));
    assert_eq!(
        errs,
        vec![
            "metadata.name: Invalid value: \"Node_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            "spec.podCIDRs[1]: Invalid value: \"10.244.300.0/24\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        ]
    );
}

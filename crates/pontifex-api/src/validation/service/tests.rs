use serde_json::{Value, json};

use crate::validation::tests::{admit, defaulted};

fn svc(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn errs(spec: Value) -> Vec<String> {
    admit(&svc(spec), None)
}

/// Each case: a spec, and exactly the lines kubectl would print after `* `.
#[test]
fn service_rules_table() {
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({"ports": [{"port": 80}]}), vec![]),
        (
            json!({"ports": [{"port": 0}]}),
            vec![
                "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[0].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive",
            ],
        ),
        (
            json!({"ports": [{"port": 70000, "targetPort": 80}]}),
            vec![
                "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            ],
        ),
        (json!({}), vec!["spec.ports: Required value"]),
        (json!({"clusterIP": "None"}), vec![]),
        (
            json!({"type": "ExternalName", "externalName": "db.example.com."}),
            vec![],
        ),
        (
            json!({"type": "ExternalName"}),
            vec!["spec.externalName: Required value"],
        ),
        (
            json!({"type": "ExternalName", "externalName": "Db_x"}),
            vec![
                "spec.externalName: Invalid value: \"Db_x\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            ],
        ),
        (
            json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "10.0.0.5"}),
            vec!["spec.clusterIPs: Forbidden: may not be set for ExternalName services"],
        ),
        (
            json!({"ports": [{"port": 80, "protocol": "ICMP"}]}),
            vec![
                "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            ],
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": "HTTP"}]}),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "spec.ports[0].targetPort: Invalid value: \"HTTP\": must contain at least one letter (a-z)",
            ],
        ),
        (
            json!({"ports": [{"port": 80, "targetPort": "a-very-long-port-name"}]}),
            vec![
                "spec.ports[0].targetPort: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters",
            ],
        ),
        (json!({"ports": [{"port": 80, "targetPort": 0}]}), vec![]),
        (
            json!({"ports": [{"port": 80}, {"port": 81}]}),
            vec![
                "spec.ports[0].name: Required value",
                "spec.ports[1].name: Required value",
            ],
        ),
        (
            json!({"ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]}),
            vec!["spec.ports[1].name: Duplicate value: \"http\""],
        ),
        (
            json!({"ports": [{"port": 80, "name": "Http"}]}),
            vec![
                "spec.ports[0].name: Invalid value: \"Http\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
        (
            json!({"ports": [{"port": 53, "name": "a", "protocol": "UDP"}, {"port": 53, "name": "b"}]}),
            vec![],
        ),
        (
            json!({"ports": [{"port": 53, "name": "a"}, {"port": 53, "name": "b"}]}),
            vec![
                "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:53, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            ],
        ),
        (
            json!({"ports": [{"port": 80, "nodePort": 30080}]}),
            vec!["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"],
        ),
        (
            json!({"type": "NodePort", "ports": [{"port": 80, "name": "a", "nodePort": 30080}, {"port": 81, "name": "b", "nodePort": 30080}]}),
            vec!["spec.ports[1].nodePort: Duplicate value: 30080"],
        ),
        (
            json!({"type": "Bogus", "ports": [{"port": 80}]}),
            vec![
                "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            ],
        ),
        (
            json!({"type": "NodePort", "clusterIP": "None", "ports": [{"port": 80}]}),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for NodePort services",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.300", "ports": [{"port": 80}]}),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.11"], "ports": [{"port": 80}]}),
            vec![
                "spec.clusterIPs: Invalid value: []string{\"10.0.0.11\"}: first value must match `clusterIP`",
            ],
        ),
        (
            json!({"clusterIP": "10.0.0.10", "clusterIPs": ["10.0.0.10", "10.0.0.11"], "ipFamilyPolicy": "PreferDualStack", "ports": [{"port": 80}]}),
            vec![
                "spec.clusterIPs: Invalid value: []string{\"10.0.0.10\", \"10.0.0.11\"}: may specify no more than one IP for each IP family",
            ],
        ),
        (
            json!({"clusterIP": "fd00::10", "ipFamilies": ["IPv4"], "ports": [{"port": 80}]}),
            vec![
                "spec.clusterIPs[0]: Invalid value: \"fd00::10\": expected an IPv4 value as indicated by `ipFamilies[0]`",
            ],
        ),
        (
            json!({"ipFamilies": ["IPv5"], "ports": [{"port": 80}]}),
            vec![
                "spec.ipFamilies[0]: Unsupported value: \"IPv5\": supported values: \"IPv4\", \"IPv6\"",
            ],
        ),
        (
            json!({"sessionAffinity": "Sticky", "ports": [{"port": 80}]}),
            vec![
                "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            ],
        ),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}, "ports": [{"port": 80}]}),
            vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401: must be greater than 0 and less than 86400",
            ],
        ),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}, "ports": [{"port": 80}]}),
            vec![
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400",
            ],
        ),
        (
            json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {}, "ports": [{"port": 80}]}),
            vec![],
        ),
        (
            json!({"sessionAffinity": "None", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 80}]}),
            vec![
                "spec.sessionAffinityConfig: Forbidden: must not be set when session affinity is None",
            ],
        ),
        (
            json!({"externalIPs": ["1.2.3.4", "nope", "127.0.0.1", "0.0.0.0"], "ports": [{"port": 80}]}),
            vec![
                "spec.externalIPs[1]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                "spec.externalIPs[2]: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)",
                "spec.externalIPs[3]: Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)",
            ],
        ),
        (
            json!({"externalIPs": ["169.254.1.1"], "ports": [{"port": 80}]}),
            vec![
                "spec.externalIPs[0]: Invalid value: \"169.254.1.1\": may not be in the link-local range (169.254.0.0/16, fe80::/10)",
            ],
        ),
        (
            json!({"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8", " 192.168.0.0/16 ", "1.2.3.4"], "ports": [{"port": 80}]}),
            vec![
                "spec.LoadBalancerSourceRanges[2]: Invalid value: \"1.2.3.4\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ],
        ),
        (
            json!({"loadBalancerSourceRanges": ["10.0.0.0/8"], "ports": [{"port": 80}]}),
            vec![
                "spec.LoadBalancerSourceRanges: Forbidden: may only be used when `type` is 'LoadBalancer'",
            ],
        ),
        (
            json!({"externalTrafficPolicy": "Local", "ports": [{"port": 80}]}),
            vec![
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
            ],
        ),
        (
            json!({"type": "NodePort", "externalTrafficPolicy": "Nearest", "ports": [{"port": 80}]}),
            vec![
                "spec.externalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\"",
            ],
        ),
        (
            json!({"type": "NodePort", "healthCheckNodePort": 30001, "ports": [{"port": 80}]}),
            vec![
                "spec.healthCheckNodePort: Invalid value: 30001: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ],
        ),
        (
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30001, "ports": [{"port": 80}]}),
            vec![],
        ),
        (
            json!({"allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
            vec![
                "spec.allocateLoadBalancerNodePorts: Forbidden: may only be used when `type` is 'LoadBalancer'",
            ],
        ),
        (
            json!({"internalTrafficPolicy": "Node", "ports": [{"port": 80}]}),
            vec![
                "spec.internalTrafficPolicy: Unsupported value: \"Node\": supported values: \"Cluster\", \"Local\"",
            ],
        ),
        (
            json!({"loadBalancerClass": "x/y", "ports": [{"port": 80}]}),
            vec![
                "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'",
            ],
        ),
        (
            json!({"selector": {"app": "bad value!"}, "ports": [{"port": 80}]}),
            vec![
                "spec.selector: Invalid value: \"bad value!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ],
        ),
        (
            json!({"trafficDistribution": "Anywhere", "ports": [{"port": 80}]}),
            vec![
                "spec.trafficDistribution: Unsupported value: \"Anywhere\": supported values: \"PreferClose\"",
            ],
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(errs(spec.clone()), want, "spec: {spec}");
    }
}

#[test]
fn service_names_are_dns1035_labels() {
    let mut s = svc(json!({"ports": [{"port": 80}]}));
    s["metadata"]["name"] = json!("1web");
    assert_eq!(
        admit(&s, None),
        vec![
            "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        ]
    );
    s["metadata"]["name"] = json!("");
    assert_eq!(
        admit(&s, None),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
}

#[test]
fn service_defaults() {
    let d = defaulted(&svc(
        json!({"type": "NodePort", "sessionAffinity": "ClientIP",
        "ports": [{"port": 80, "name": "http"}, {"port": 81, "name": "b", "targetPort": "web"}]}),
    ));
    let spec = &d["spec"];
    assert_eq!(spec["ports"][0]["targetPort"], json!(80));
    assert_eq!(spec["ports"][0]["protocol"], json!("TCP"));
    assert_eq!(spec["ports"][1]["targetPort"], json!("web"));
    assert_eq!(
        spec["sessionAffinityConfig"],
        json!({"clientIP": {"timeoutSeconds": 10800}})
    );
    assert_eq!(spec["externalTrafficPolicy"], json!("Cluster"));
    assert_eq!(spec["internalTrafficPolicy"], json!("Cluster"));
    assert!(spec.get("allocateLoadBalancerNodePorts").is_none());

    // ClusterIP: no externalTrafficPolicy unless externalIPs make it externally accessible.
    let d = defaulted(&svc(json!({"ports": [{"port": 80}]})));
    assert!(d["spec"].get("externalTrafficPolicy").is_none());
    assert_eq!(d["spec"]["type"], json!("ClusterIP"));
    assert_eq!(d["spec"]["sessionAffinity"], json!("None"));
    let d = defaulted(&svc(
        json!({"externalIPs": ["172.31.255.10"], "ports": [{"port": 80}]}),
    ));
    assert_eq!(d["spec"]["externalTrafficPolicy"], json!("Cluster"));

    // ExternalName gets no IP family fields and no internalTrafficPolicy.
    let d = defaulted(&svc(
        json!({"type": "ExternalName", "externalName": "x.example.com"}),
    ));
    assert!(d["spec"].get("ipFamilies").is_none());
    assert!(d["spec"].get("ipFamilyPolicy").is_none());
    assert!(d["spec"].get("internalTrafficPolicy").is_none());

    // A fixed clusterIP is mirrored into clusterIPs, not the reverse; the IP family fields are the
    // API server's to default (they depend on its ranges).
    let d = defaulted(&svc(
        json!({"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}),
    ));
    assert_eq!(d["spec"]["clusterIPs"], json!(["None"]));
    assert!(d["spec"].get("ipFamilyPolicy").is_none());
    assert!(d["spec"].get("ipFamilies").is_none());
    let d = defaulted(&svc(
        json!({"clusterIPs": ["fd00::10"], "ports": [{"port": 80}]}),
    ));
    assert!(d["spec"].get("clusterIP").is_none());
}

#[test]
fn service_updates() {
    let old = defaulted(&svc(
        json!({"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}),
    ));
    let mut new = old.clone();
    new["spec"]["clusterIP"] = json!("10.96.0.21");
    new["spec"]["clusterIPs"] = json!(["10.96.0.21"]);
    assert_eq!(
        admit(&new, Some(&old)),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.21\"}: may not change once set"
        ]
    );

    // Moving to ExternalName drops the cluster IP legitimately.
    let mut new = old.clone();
    new["spec"] = json!({"type": "ExternalName", "externalName": "db.example.com", "sessionAffinity": "None"});
    assert_eq!(admit(&new, Some(&old)), Vec::<String>::new());

    // Name is immutable.
    let mut new = old.clone();
    new["metadata"]["name"] = json!("other");
    assert_eq!(
        admit(&new, Some(&old)),
        vec!["metadata.name: Invalid value: \"other\": field is immutable"]
    );

    // Changing the type to NodePort keeps the IP and is allowed.
    let mut new = old.clone();
    new["spec"]["type"] = json!("NodePort");
    new["spec"]["externalTrafficPolicy"] = json!("Cluster");
    assert_eq!(admit(&new, Some(&old)), Vec::<String>::new());
}

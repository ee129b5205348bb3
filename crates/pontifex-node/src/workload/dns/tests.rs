use super::*;

fn pod(v: serde_json::Value) -> Pod {
    serde_json::from_value(v).unwrap()
}

fn node() -> NodeDns {
    NodeDns {
        cluster_dns: vec!["10.96.0.10".into()],
        cluster_domain: "cluster.local".into(),
        host_resolv_conf: "# host\nnameserver 192.168.1.1\nnameserver 192.168.1.2 # second\nsearch corp.example\noptions edns0\n".into(),
    }
}

#[test]
fn cluster_first_is_the_default() {
    let p = pod(
        serde_json::json!({"metadata": {"name": "a", "namespace": "shop"}, "spec": {"containers": []}}),
    );
    assert_eq!(
        resolv_conf(&p, &node()).render(),
        "nameserver 10.96.0.10\nsearch shop.svc.cluster.local svc.cluster.local cluster.local corp.example\noptions ndots:5\n"
    );
}

#[test]
fn host_network_and_default_use_the_node_file_unless_with_host_net() {
    let host =
        "nameserver 192.168.1.1\nnameserver 192.168.1.2\nsearch corp.example\noptions edns0\n";
    let hn = pod(
        serde_json::json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": [], "hostNetwork": true}}),
    );
    assert_eq!(resolv_conf(&hn, &node()).render(), host);
    let d = pod(
        serde_json::json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": [], "dnsPolicy": "Default"}}),
    );
    assert_eq!(resolv_conf(&d, &node()).render(), host);
    let w = pod(
        serde_json::json!({"metadata": {"name": "a", "namespace": "x"}, "spec": {"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}}),
    );
    assert_eq!(resolv_conf(&w, &node()).nameservers, ["10.96.0.10"]);
    // No cluster DNS configured: ClusterFirst falls back to the node's.
    let p = pod(serde_json::json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
    let none = NodeDns {
        cluster_dns: vec![],
        ..node()
    };
    assert_eq!(resolv_conf(&p, &none).render(), host);
}

#[test]
fn none_takes_only_dns_config_and_options_override_by_name() {
    let p = pod(
        serde_json::json!({"metadata": {"name": "a"}, "spec": {"containers": [], "dnsPolicy": "None",
        "dnsConfig": {"nameservers": ["1.2.3.4", "1.2.3.4", "5.6.7.8", "9.9.9.9", "8.8.8.8"], "searches": ["a.b"],
                      "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}}),
    );
    let r = resolv_conf(&p, &node());
    assert_eq!(
        r.nameservers,
        ["1.2.3.4", "5.6.7.8", "9.9.9.9"],
        "deduplicated, at most three"
    );
    assert_eq!(r.searches, ["a.b"]);
    assert_eq!(r.options, ["ndots:2", "edns0"]);
    let c = pod(
        serde_json::json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"containers": [],
        "dnsConfig": {"options": [{"name": "ndots", "value": "1"}], "searches": ["extra.example"]}}}),
    );
    let r = resolv_conf(&c, &node());
    assert_eq!(r.options, ["ndots:1"]);
    assert_eq!(r.searches.last().unwrap(), "extra.example");
}

#[test]
fn hosts_file_names_the_pod() {
    let p = pod(
        serde_json::json!({"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {"containers": [],
        "hostname": "web-0", "subdomain": "web", "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}}),
    );
    let h = hosts_file(&p, &["10.244.1.5".into()], "cluster.local");
    assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
    assert!(
        h.contains("10.244.1.5\tweb-0.web.shop.svc.cluster.local\tweb-0\n"),
        "{h}"
    );
    assert!(h.ends_with("10.1.2.3\tfoo.local\tbar.local\n"), "{h}");
    let q = pod(serde_json::json!({"metadata": {"name": "plain"}, "spec": {"containers": []}}));
    assert!(
        hosts_file(&q, &["10.244.1.6".into()], "cluster.local").ends_with("10.244.1.6\tplain\n")
    );
}

#[test]
fn a_dual_stack_pod_has_a_hosts_line_per_ip() {
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"containers": [{"name": "c"}]},
    }))
    .unwrap();
    let h = hosts_file(
        &p,
        &["10.244.1.5".into(), "fd00:10:244:1::5".into()],
        "cluster.local",
    );
    assert!(
        h.ends_with("10.244.1.5\tweb\nfd00:10:244:1::5\tweb\n"),
        "{h}"
    );
}

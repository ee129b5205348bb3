use k8s_openapi::api::core::v1::Node;

use super::*;

fn node(name: &str, ips: &[&str], cidrs: &[&str], single: Option<&str>) -> Node {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"podCIDRs": cidrs, "podCIDR": single},
        "status": {"addresses": ips.iter().map(|ip| serde_json::json!({"type": "InternalIP", "address": ip}))
            .chain([serde_json::json!({"type": "Hostname", "address": name})]).collect::<Vec<_>>()},
    }))
    .unwrap()
}

fn route(name: &str, ip: &str, cidr: &str) -> NodeRoute {
    NodeRoute {
        name: name.into(),
        node_ip: ip.parse().unwrap(),
        pod_cidr: cidr.parse().unwrap(),
    }
}

#[test]
fn one_route_per_node_and_family() {
    let nodes = [
        node(
            "b",
            &["172.31.0.11", "fd00:172:31::11"],
            &["10.244.1.0/24", "fd00:10:244:1::/64"],
            Some("10.244.1.0/24"),
        ),
        // IPv4-only node in a dual-stack cluster: its IPv6 podCIDR has no next hop.
        node(
            "a",
            &["172.31.0.10"],
            &["10.244.0.0/24", "fd00:10:244::/64"],
            None,
        ),
        // A server without podCIDRs: the single podCIDR counts.
        node("c", &["172.31.0.12"], &[], Some("10.244.2.0/24")),
        // No podCIDR yet.
        node("d", &["172.31.0.13"], &[], None),
    ];
    assert_eq!(
        node_routes(&nodes),
        vec![
            route("a", "172.31.0.10", "10.244.0.0/24"),
            route("b", "172.31.0.11", "10.244.1.0/24"),
            route("b", "fd00:172:31::11", "fd00:10:244:1::/64"),
            route("c", "172.31.0.12", "10.244.2.0/24"),
        ]
    );
}

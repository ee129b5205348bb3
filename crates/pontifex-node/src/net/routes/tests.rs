use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn node(name: &str, node_ip: &str, cidr: &str) -> NodeRoute {
    NodeRoute {
        name: name.into(),
        node_ip: ip(node_ip),
        pod_cidr: net(cidr),
    }
}

fn r(dst: &str, gw: &str, oif: Option<u32>) -> Route {
    Route {
        dst: net(dst),
        gateway: ip(gw),
        oif,
    }
}

#[test]
fn host_gw_skips_self() {
    let nodes = [
        node("a", "172.31.0.10", "10.244.0.0/24"),
        node("b", "172.31.0.11", "10.244.1.0/24"),
    ];
    assert_eq!(
        desired_host_gw("a", &nodes),
        vec![r("10.244.1.0/24", "172.31.0.11", None)]
    );
}

#[test]
fn plan_adds_replaces_and_deletes() {
    let existing = [
        r("10.244.1.0/24", "172.31.0.11", Some(2)),
        r("10.244.2.0/24", "172.31.0.99", Some(2)),
        r("10.244.9.0/24", "172.31.0.19", Some(2)),
    ];
    let desired = [
        r("10.244.1.0/24", "172.31.0.11", None),
        r("10.244.2.0/24", "172.31.0.12", None),
        r("10.244.3.0/24", "172.31.0.13", None),
    ];
    let p = plan(&existing, &desired);
    assert_eq!(p.add, vec![r("10.244.3.0/24", "172.31.0.13", None)]);
    assert_eq!(p.replace, vec![r("10.244.2.0/24", "172.31.0.12", None)]);
    assert_eq!(p.delete, vec![r("10.244.9.0/24", "172.31.0.19", Some(2))]);
}

#[test]
fn plan_is_empty_when_in_step() {
    let existing = [r("10.244.1.0/24", "10.244.1.0", Some(7))];
    assert_eq!(plan(&existing, &existing), Plan::default());
}

#[test]
fn plan_replaces_host_gw_route_with_vxlan_route() {
    // Same gateway is not enough when the desired route names its link.
    let existing = [r("10.244.1.0/24", "10.244.1.0", Some(3))];
    let desired = [r("10.244.1.0/24", "10.244.1.0", Some(7))];
    assert_eq!(plan(&existing, &desired).replace, desired.to_vec());
    let existing = [r("10.244.1.0/24", "172.31.0.11", Some(3))];
    assert_eq!(plan(&existing, &desired).replace, desired.to_vec());
}

#[test]
fn plan_collapses_duplicates() {
    let existing = [
        r("10.244.1.0/24", "172.31.0.11", Some(2)),
        r("10.244.1.0/24", "172.31.0.12", Some(2)),
    ];
    let desired = [r("10.244.1.0/24", "172.31.0.11", None)];
    let p = plan(&existing, &desired);
    assert_eq!(p.replace, desired.to_vec());
    assert_eq!(p.delete, vec![existing[1]]);
}

#[test]
fn vtep_mac_is_local_unicast_and_derived_from_ip() {
    let mac = vtep_mac(ip("172.31.0.11"));
    assert_eq!(mac, [0x0e, 0xfe, 172, 31, 0, 11]);
    assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    assert_eq!(mac[0] & 0x01, 0, "unicast");
    assert_ne!(vtep_mac(ip("172.31.0.12")), mac);
}

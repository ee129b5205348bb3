use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
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
fn host_gw_routes_each_family_via_that_family_node_ip() {
    let nodes = [
        node("a", "172.31.0.10", "10.244.0.0/24"),
        node("a", "fd00:172:31::10", "fd00:10:244::/64"),
        node("b", "172.31.0.11", "10.244.1.0/24"),
        node("b", "fd00:172:31::11", "fd00:10:244:1::/64"),
        // A mismatched entry (IPv6 podCIDR, IPv4 node IP) cannot be routed: skipped.
        node("c", "172.31.0.12", "fd00:10:244:2::/64"),
    ];
    assert_eq!(
        desired_host_gw("a", &nodes),
        vec![
            r("10.244.1.0/24", "172.31.0.11", None),
            r("fd00:10:244:1::/64", "fd00:172:31::11", None)
        ]
    );
    let cidrs: Vec<_> = pod_cidrs(&nodes)
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        cidrs,
        [
            "10.244.0.0/24",
            "10.244.1.0/24",
            "fd00:10:244::/64",
            "fd00:10:244:1::/64",
            "fd00:10:244:2::/64"
        ]
    );
}

#[test]
fn route_messages_carry_the_family_of_their_addresses() {
    let m = route_message(&r("fd00:10:244:1::/64", "fd00:172:31::11", None), false).unwrap();
    assert_eq!(m.header.address_family, AddressFamily::Inet6);
    assert_eq!(m.header.destination_prefix_length, 64);
    let m = route_message(&r("10.244.1.0/24", "172.31.0.11", Some(3)), true).unwrap();
    assert_eq!(m.header.address_family, AddressFamily::Inet);
    // A gateway of the other family is no route.
    assert!(route_message(&r("10.244.1.0/24", "fd00::1", None), false).is_err());
    assert!(route_message(&r("fd00::/64", "10.0.0.1", None), false).is_err());
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
    let mac = vtep_mac("172.31.0.11".parse().unwrap());
    assert_eq!(mac, [0x0e, 0xfe, 172, 31, 0, 11]);
    assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
    assert_eq!(mac[0] & 0x01, 0, "unicast");
    assert_ne!(vtep_mac("172.31.0.12".parse().unwrap()), mac);
}

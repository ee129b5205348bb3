use serde_json::json;

use super::*;

fn allocator() -> Allocator {
    Allocator::new("10.96.0.0/12".parse().unwrap(), (30000, 32767))
}

fn v4(ip: &Value) -> Ipv4Addr {
    ip.as_str().unwrap().parse().unwrap()
}

#[test]
fn dynamic_ip_comes_from_the_upper_band_and_is_claimed() {
    let a = allocator();
    let mut svc = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
    let alloc = a.allocate(&mut svc, None).unwrap();
    let ip = v4(&svc["spec"]["clusterIP"]);
    assert!(a.primary().contains(&IpAddr::V4(ip)));
    assert!(
        u32::from(ip) - u32::from(Ipv4Addr::new(10, 96, 0, 0)) > 256,
        "{ip} is in the static band"
    );
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(alloc.claims.len(), 1);
    assert!(!alloc.claims[0].chosen);
}

#[test]
fn chosen_ip_outside_the_range_is_refused_with_the_real_message() {
    let a = allocator();
    let mut svc = json!({"spec": {"clusterIP": "10.0.0.2", "ports": [{"port": 53}]}});
    let errs = a.allocate(&mut svc, None).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "spec.clusterIPs: Invalid value: []string{\"10.0.0.2\"}: failed to allocate IP 10.0.0.2: provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12"
    );
}

#[test]
fn node_ports_are_allocated_kept_and_released() {
    let a = allocator();
    let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30002}, {"port": 443}]}});
    let alloc = a.allocate(&mut svc, None).unwrap();
    let second = svc["spec"]["ports"][1]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&second));
    assert_eq!(alloc.claims.iter().filter(|c| c.chosen).count(), 1);

    // Back to ClusterIP: the update drops node ports and releases them; the cluster IP stays.
    let old = svc.clone();
    let mut new = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30002}, {"port": 443, "nodePort": second}]}});
    prepare_service_update(&mut new, &old);
    assert!(new["spec"]["ports"][0].get("nodePort").is_none());
    assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
    let alloc = a.allocate(&mut new, Some(&old)).unwrap();
    assert!(alloc.claims.is_empty());
    let mut released = alloc.releases.clone();
    released.sort();
    assert_eq!(released, vec![port_key(30002), port_key(second as u16)]);
}

#[test]
fn out_of_range_node_port_is_refused() {
    let a = allocator();
    let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}});
    let errs = a.allocate(&mut svc, None).unwrap_err();
    assert_eq!(
        errs[0].to_string(),
        "spec.ports[0].nodePort: Invalid value: 40000: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
}

#[test]
fn update_without_allocated_values_keeps_them() {
    let a = allocator();
    let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
        "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}});
    let mut new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP"}]}});
    prepare_service_update(&mut new, &old);
    let alloc = a.allocate(&mut new, Some(&old)).unwrap();
    assert!(
        alloc.claims.is_empty() && alloc.releases.is_empty(),
        "{alloc:?}"
    );
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(new["spec"]["clusterIP"], "10.96.5.5");
}

#[test]
fn picks_avoid_what_the_store_holds() {
    let a = Allocator::new("10.0.0.0/29".parse().unwrap(), (30000, 30001));
    for i in 1..=6 {
        a.observe(&ip_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))), true);
    }
    assert_eq!(a.pick_ip(a.primary()), None);
    a.observe(&ip_key(&IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3))), false);
    assert_eq!(
        a.pick_ip(a.primary()),
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3)))
    );
    a.observe(&port_key(30000), true);
    assert_eq!(a.pick_port(&HashSet::new()), Some(30001));
}

#[test]
fn leaving_node_port_drops_the_external_traffic_policy_the_user_left_alone() {
    // `kubectl patch --type merge -p '{"spec":{"type":"ClusterIP"}}'` on a stored NodePort Service.
    let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5"],
        "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]},
        "status": {"loadBalancer": {}}});
    let mut new = old.clone();
    new["spec"]["type"] = json!("ClusterIP");
    prepare_service_update(&mut new, &old);
    assert!(new["spec"].get("externalTrafficPolicy").is_none(), "{new}");
    assert!(new["spec"]["ports"][0].get("nodePort").is_none(), "{new}");
    assert!(new["status"].get("loadBalancer").is_none(), "{new}");

    // A policy the user changes in the same update is theirs: kept (validation then refuses it).
    let mut changed = old.clone();
    changed["spec"]["type"] = json!("ClusterIP");
    changed["spec"]["externalTrafficPolicy"] = json!("Local");
    prepare_service_update(&mut changed, &old);
    assert_eq!(changed["spec"]["externalTrafficPolicy"], "Local");

    // With external IPs a ClusterIP Service stays externally accessible and keeps its policy.
    let mut with_ips = old.clone();
    with_ips["spec"]["type"] = json!("ClusterIP");
    with_ips["spec"]["externalIPs"] = json!(["172.31.255.10"]);
    prepare_service_update(&mut with_ips, &old);
    assert_eq!(with_ips["spec"]["externalTrafficPolicy"], "Cluster");
}

#[test]
fn leaving_load_balancer_drops_its_own_fields_and_a_new_node_port_keeps_all() {
    let old = json!({"spec": {"type": "LoadBalancer", "allocateLoadBalancerNodePorts": true,
        "loadBalancerClass": "example.com/lb", "externalTrafficPolicy": "Cluster",
        "ports": [{"port": 80, "nodePort": 30080}]}});
    let mut new = old.clone();
    new["spec"]["type"] = json!("NodePort");
    prepare_service_update(&mut new, &old);
    assert!(
        new["spec"].get("allocateLoadBalancerNodePorts").is_none(),
        "{new}"
    );
    assert!(new["spec"].get("loadBalancerClass").is_none(), "{new}");
    assert_eq!(new["spec"]["externalTrafficPolicy"], "Cluster");
    assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);

    // Switching to ClusterIP while naming a node port the old version did not hold: nothing is wiped.
    let mut explicit = old.clone();
    explicit["spec"]["type"] = json!("ClusterIP");
    explicit["spec"]["ports"] =
        json!([{"port": 80, "nodePort": 30080}, {"port": 81, "nodePort": 30081}]);
    prepare_service_update(&mut explicit, &old);
    assert_eq!(explicit["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(explicit["spec"]["ports"][1]["nodePort"], 30081);
}

fn dual(ranges: &str) -> Allocator {
    Allocator::new(ranges.parse().unwrap(), (30000, 32767))
}

#[test]
fn ipv6_ranges_exclude_only_the_network_address_and_are_capped() {
    let r = IpRange::new("fd00::/120".parse().unwrap());
    assert_eq!(r.first_ip(), "fd00::1".parse::<IpAddr>().unwrap());
    assert!(!r.contains(&"fd00::".parse().unwrap()));
    // No broadcast address in IPv6: the last address is usable.
    assert!(r.contains(&"fd00::ff".parse().unwrap()));
    assert!(!r.contains(&"fd00::100".parse().unwrap()));
    assert!(!r.contains(&"10.0.0.1".parse().unwrap()));
    // A /108 holds 2^20 addresses; upstream's allocator uses the first 65536.
    let big = IpRange::new("fd00::/108".parse().unwrap());
    assert!(big.contains(&"fd00::ffff".parse().unwrap()));
    assert!(!big.contains(&"fd00::1:0".parse().unwrap()));
    // Even a /64 (refused by the flag, but the type allows it) costs nothing.
    let huge = IpRange::new("fd00::/64".parse().unwrap());
    assert!(huge.contains(&"fd00::ffff".parse().unwrap()));
    let v4 = IpRange::new("10.0.0.0/29".parse().unwrap());
    assert!(!v4.contains(&"10.0.0.7".parse().unwrap()), "broadcast");
    assert!(v4.contains(&"10.0.0.6".parse().unwrap()));
}

#[test]
fn ipv6_picks_come_from_the_upper_band() {
    let a = dual("fd00:10:96::/112");
    let r = *a.primary();
    for _ in 0..50 {
        let ip = a.pick_ip(&r).unwrap();
        let IpAddr::V6(v6) = ip else {
            panic!("{ip} is not IPv6")
        };
        let off = u128::from(v6) - u128::from("fd00:10:96::".parse::<Ipv6Addr>().unwrap());
        assert!(off > 256, "{ip} is in the static band");
        assert!(r.contains(&ip));
    }
}

#[test]
fn dual_stack_service_gets_one_ip_per_family_in_ipfamilies_order() {
    let a = dual("10.96.0.0/16,fd00:10:96::/112");
    let mut svc = json!({"spec": {"type": "ClusterIP", "ipFamilyPolicy": "PreferDualStack",
        "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]}});
    let alloc = a.allocate(&mut svc, None).unwrap();
    let ips: Vec<IpAddr> = svc["spec"]["clusterIPs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ips.len(), 2);
    assert!(ips[0].is_ipv6() && ips[1].is_ipv4(), "{ips:?}");
    assert_eq!(svc["spec"]["clusterIP"], json!(ips[0].to_string()));
    assert_eq!(alloc.claims.len(), 2);
    // Deleting releases both.
    let mut keys = owned_keys(&svc);
    keys.sort();
    let mut want: Vec<String> = ips.iter().map(ip_key).collect();
    want.sort();
    assert_eq!(keys, want);
}

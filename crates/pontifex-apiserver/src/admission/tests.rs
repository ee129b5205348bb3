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
fn dynamic_node_ports_come_from_the_upper_band_first() {
    // 2768 ports: kube-apiserver keeps 30000-30085 (2768 / 32 = 86) for ports users pick.
    assert_eq!(node_port_lower_band(2768), 86);
    assert_eq!(node_port_lower_band(100), 16);
    assert_eq!(node_port_lower_band(10_000), 128);
    assert_eq!(node_port_lower_band(15), 0);
    let a = allocator();
    for _ in 0..200 {
        let p = a.pick_port(&HashSet::new()).unwrap();
        assert!(p >= 30086, "{p} is in the static band");
    }
    // Only when the upper band is full does the lower band serve.
    let small = Allocator::new("10.0.0.0/24".parse().unwrap(), (30000, 30019));
    for p in 30016..=30019 {
        small.observe(&port_key(p), true);
    }
    assert!(small.pick_port(&HashSet::new()).unwrap() < 30016);
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

/// What the API server does with a Service write, in its order: the update's preparation, scheme
/// defaults, IP family initialisation, validation, allocation (then the commit's bookkeeping).
fn write(a: &Allocator, spec: Value, old: Option<&Value>) -> Result<Value, Vec<String>> {
    let strings = |errs: Vec<FieldError>| errs.iter().map(ToString::to_string).collect::<Vec<_>>();
    let r = pontifex_api::registry::lookup("", "v1", "services").unwrap();
    let mut svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
    if let Some(old) = old {
        prepare_service_update(&mut svc, old);
    }
    r.strategy.default(&mut svc).unwrap();
    a.init_ip_families(&mut svc, old).map_err(strings)?;
    let errs = r.strategy.validate(&svc, old).unwrap();
    if !errs.is_empty() {
        return Err(strings(errs));
    }
    let alloc = a.allocate(&mut svc, old).map_err(strings)?;
    for c in &alloc.claims {
        a.observe(&c.key, true);
    }
    for k in &alloc.releases {
        a.observe(k, false);
    }
    Ok(svc)
}

fn families(svc: &Value) -> Value {
    svc["spec"]["ipFamilies"].clone()
}

fn ips(svc: &Value) -> Vec<IpAddr> {
    string_list(&svc["spec"]["clusterIPs"])
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
}

const V4: &str = "10.96.0.0/16";
const V6: &str = "fd00:10:96::/112";

fn ports() -> Value {
    json!([{"port": 80}])
}

#[test]
fn single_stack_clusters_default_to_their_own_family() {
    let a = dual(V4);
    let svc = write(&a, json!({"ports": ports()}), None).unwrap();
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(families(&svc), json!(["IPv4"]));
    assert!(ips(&svc)[0].is_ipv4());

    let a = dual(V6);
    let svc = write(&a, json!({"ports": ports()}), None).unwrap();
    assert_eq!(families(&svc), json!(["IPv6"]));
    let ip = ips(&svc)[0];
    assert!(a.primary().contains(&ip), "{ip}");
    assert_eq!(svc["spec"]["clusterIP"], json!(ip.to_string()));
    // PreferDualStack on a single-stack cluster: one family.
    let svc = write(
        &a,
        json!({"ipFamilyPolicy": "PreferDualStack", "ports": ports()}),
        None,
    )
    .unwrap();
    assert_eq!(families(&svc), json!(["IPv6"]));
    assert_eq!(ips(&svc).len(), 1);
}

#[test]
fn a_single_stack_cluster_refuses_what_it_has_no_range_for() {
    let a = dual(V4);
    assert_eq!(
        write(
            &a,
            json!({"ipFamilyPolicy": "RequireDualStack", "ports": ports()}),
            None
        )
        .unwrap_err(),
        vec![
            "spec.ipFamilyPolicy: Invalid value: \"RequireDualStack\": this cluster is not configured for dual-stack services"
        ]
    );
    assert_eq!(
        write(&a, json!({"ipFamilies": ["IPv6"], "ports": ports()}), None).unwrap_err(),
        vec!["spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster"]
    );
    assert_eq!(
        write(&a, json!({"clusterIP": "fd00::5", "ports": ports()}), None).unwrap_err(),
        vec![
            "spec.clusterIPs[0]: Invalid value: []string{\"fd00::5\"}: IPv6 is not configured on this cluster"
        ]
    );
}

#[test]
fn dual_stack_clusters_give_both_families_primary_first_unless_asked_otherwise() {
    for (ranges, first) in [
        (format!("{V4},{V6}"), "IPv4"),
        (format!("{V6},{V4}"), "IPv6"),
    ] {
        let a = dual(&ranges);
        let single = write(&a, json!({"ports": ports()}), None).unwrap();
        assert_eq!(families(&single), json!([first]), "{ranges}");
        for policy in ["PreferDualStack", "RequireDualStack"] {
            let svc = write(
                &a,
                json!({"ipFamilyPolicy": policy, "ports": ports()}),
                None,
            )
            .unwrap();
            let fams = families(&svc);
            assert_eq!(fams[0], first, "{ranges} {policy}");
            assert_eq!(fams.as_array().unwrap().len(), 2);
            let got = ips(&svc);
            assert_eq!(got.len(), 2);
            assert_eq!(got[0].is_ipv6(), first == "IPv6");
            assert_ne!(got[0].is_ipv6(), got[1].is_ipv6());
            assert_eq!(svc["spec"]["clusterIP"], json!(got[0].to_string()));
        }
        // ipFamilies picks the order.
        let svc = write(
            &a,
            json!({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv6"], "ports": ports()}),
            None,
        )
        .unwrap();
        assert_eq!(families(&svc), json!(["IPv6", "IPv4"]));
        assert!(ips(&svc)[0].is_ipv6());
    }
}

#[test]
fn chosen_cluster_ips_are_checked_per_family() {
    let a = dual(&format!("{V4},{V6}"));
    let svc = write(
        &a,
        json!({"clusterIP": "fd00:10:96::20", "clusterIPs": ["fd00:10:96::20", "10.96.0.20"],
               "ipFamilyPolicy": "RequireDualStack", "ports": ports()}),
        None,
    )
    .unwrap();
    assert_eq!(families(&svc), json!(["IPv6", "IPv4"]));
    assert_eq!(
        svc["spec"]["clusterIPs"],
        json!(["fd00:10:96::20", "10.96.0.20"])
    );
    // A chosen IPv6 address outside the IPv6 range names that range; the IPv4 one still to be
    // picked shows as an empty marker, as upstream reports it.
    assert_eq!(
        write(
            &a,
            json!({"clusterIP": "fd00:99::1", "ipFamilyPolicy": "PreferDualStack", "ports": ports()}),
            None
        )
        .unwrap_err(),
        vec![
            "spec.clusterIPs: Invalid value: []string{\"fd00:99::1\", \"\"}: failed to allocate IP fd00:99::1: provided IP is not in the valid range. The range of valid IPs is fd00:10:96::/112"
        ]
    );
    // Two addresses need a dual-stack policy.
    assert_eq!(
        write(
            &a,
            json!({"clusterIP": "10.96.0.21", "clusterIPs": ["10.96.0.21", "fd00:10:96::21"], "ports": ports()}),
            None
        )
        .unwrap_err(),
        vec![
            "spec.ipFamilyPolicy: Invalid value: \"SingleStack\": must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified"
        ]
    );
}

#[test]
fn headless_services_get_families_but_no_addresses() {
    // Without a selector: dual-stack even on a single-stack cluster.
    let a = dual(V4);
    let svc = write(&a, json!({"clusterIP": "None", "ports": ports()}), None).unwrap();
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "RequireDualStack");
    assert_eq!(families(&svc), json!(["IPv4", "IPv6"]));
    assert_eq!(svc["spec"]["clusterIPs"], json!(["None"]));
    // With a selector: as any other Service.
    let svc = write(
        &a,
        json!({"clusterIP": "None", "selector": {"app": "web"}, "ports": ports()}),
        None,
    )
    .unwrap();
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(families(&svc), json!(["IPv4"]));
    let a = dual(&format!("{V6},{V4}"));
    let svc = write(&a, json!({"clusterIP": "None", "ports": ports()}), None).unwrap();
    assert_eq!(families(&svc), json!(["IPv6", "IPv4"]));
    let svc = write(
        &a,
        json!({"clusterIP": "None", "selector": {"app": "web"}, "ipFamilyPolicy": "PreferDualStack", "ports": ports()}),
        None,
    )
    .unwrap();
    assert_eq!(families(&svc), json!(["IPv6", "IPv4"]));
    assert_eq!(svc["spec"]["clusterIPs"], json!(["None"]));
}

#[test]
fn upgrade_allocates_the_secondary_and_downgrade_releases_it() {
    let a = dual(&format!("{V4},{V6}"));
    let single = write(&a, json!({"ports": ports()}), None).unwrap();
    let primary = ips(&single)[0];

    // Upgrade: change the policy only.
    let mut spec = single["spec"].clone();
    spec["ipFamilyPolicy"] = json!("PreferDualStack");
    let upgraded = write(&a, spec, Some(&single)).unwrap();
    assert_eq!(families(&upgraded), json!(["IPv4", "IPv6"]));
    let both = ips(&upgraded);
    assert_eq!(both[0], primary);
    assert!(both[1].is_ipv6() && a.range(IpFamily::V6).unwrap().contains(&both[1]));
    assert!(a.used_ips.lock().unwrap().contains(&both[1]));

    // An unchanged PreferDualStack update changes nothing.
    let same = write(&a, upgraded["spec"].clone(), Some(&upgraded)).unwrap();
    assert_eq!(same["spec"], upgraded["spec"]);

    // Releasing the secondary address needs SingleStack.
    let mut spec = upgraded["spec"].clone();
    spec["clusterIPs"] = json!([primary.to_string()]);
    assert_eq!(
        write(&a, spec, Some(&upgraded)).unwrap_err(),
        vec![
            "spec.ipFamilyPolicy: Invalid value: \"PreferDualStack\": must be 'SingleStack' to release the secondary cluster IP"
        ]
    );

    // Downgrade: the policy alone says it; the lists are trimmed and the address released.
    let mut spec = upgraded["spec"].clone();
    spec["ipFamilyPolicy"] = json!("SingleStack");
    let mut old = upgraded.clone();
    let downgraded = write(&a, spec, Some(&old)).unwrap();
    assert_eq!(families(&downgraded), json!(["IPv4"]));
    assert_eq!(ips(&downgraded), vec![primary]);
    assert!(!a.used_ips.lock().unwrap().contains(&both[1]));

    // The primary family never changes.
    old = downgraded.clone();
    let mut spec = old["spec"].clone();
    spec["ipFamilies"] = json!(["IPv6", "IPv4"]);
    spec["ipFamilyPolicy"] = json!("RequireDualStack");
    let errs = write(&a, spec, Some(&old)).unwrap_err();
    assert!(
        errs.iter().any(|e| e.starts_with("spec.clusterIPs[0]:")
            && e.ends_with("expected an IPv6 value as indicated by `ipFamilies[0]`")),
        "{errs:?}"
    );
}

#[test]
fn external_name_holds_no_address_and_leaving_cluster_ip_releases_both() {
    let a = dual(&format!("{V4},{V6}"));
    let en = write(
        &a,
        json!({"type": "ExternalName", "externalName": "example.com"}),
        None,
    )
    .unwrap();
    assert!(en["spec"].get("ipFamilies").is_none());
    assert!(en["spec"].get("clusterIPs").is_none());

    let svc = write(
        &a,
        json!({"ipFamilyPolicy": "RequireDualStack", "ports": ports()}),
        None,
    )
    .unwrap();
    let held = ips(&svc);
    let mut spec = svc["spec"].clone();
    spec["type"] = json!("ExternalName");
    spec["externalName"] = json!("example.com");
    let en = write(&a, spec, Some(&svc)).unwrap();
    assert!(en["spec"].get("clusterIPs").is_none(), "{en}");
    let used = a.used_ips.lock().unwrap();
    assert!(held.iter().all(|ip| !used.contains(ip)), "{held:?}");
}

#[test]
fn a_restarted_allocator_avoids_both_families_from_the_store() {
    // A /125 has 7 usable IPv6 addresses (no broadcast): fill them through `observe`, as the
    // start-up repair does from the stored keys.
    let a = dual("10.0.0.0/29,fd00::/125");
    for i in 1..=7u16 {
        let ip: IpAddr = format!("fd00::{i:x}").parse().unwrap();
        a.observe(&ip_key(&ip), true);
    }
    let mut svc = json!({"spec": {"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}});
    assert_eq!(
        a.allocate(&mut svc, None).unwrap_err()[0].to_string(),
        "spec.clusterIPs: Invalid value: []string{}: failed to allocate a serviceIP: range is full"
    );
    a.observe(&ip_key(&"fd00::7".parse().unwrap()), false);
    let mut svc = json!({"spec": {"ipFamilies": ["IPv6"], "ports": [{"port": 80}]}});
    a.allocate(&mut svc, None).unwrap();
    assert_eq!(svc["spec"]["clusterIPs"], json!(["fd00::7"]));
}

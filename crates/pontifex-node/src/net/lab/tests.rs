use super::*;

#[test]
fn lab_links_are_recognised_by_exact_shape() {
    assert!(is_lab_link("pfx", "pfx0"));
    assert!(is_lab_link("pfx", "pfxv0"));
    assert!(is_lab_link("pfx", "pfxv12"));
    assert!(is_lab_link("pfx", "pfxn3"));
    // Another lab whose prefix extends ours, and unrelated links, are left alone.
    assert!(!is_lab_link("t1", "t12v0"));
    assert!(!is_lab_link("t1", "t100"), "the bridge of lab t10");
    assert!(!is_lab_link("pfx", "pfxv"));
    assert!(!is_lab_link("pfx", "pfxveth"));
    assert!(!is_lab_link("pfx", "eth0"));
    assert!(!is_lab_link("pfx", "cni0"));
}

#[test]
fn node_addresses_start_at_ten_and_stay_in_the_underlay() {
    let cfg = LabConfig::new("pfx");
    assert_eq!(node_ip(&cfg, 0).unwrap(), Ipv4Addr::new(172, 31, 0, 10));
    assert_eq!(node_ip(&cfg, 2).unwrap(), Ipv4Addr::new(172, 31, 0, 12));
    assert_eq!(node_ip(&cfg, 244).unwrap(), Ipv4Addr::new(172, 31, 0, 254));
    assert!(node_ip(&cfg, 245).is_err());
}

#[test]
fn names_fit_link_limits() {
    assert!(check_prefix("t1234567ab").is_ok());
    assert!(check_prefix("t1234567abc").is_err());
    assert!(check_prefix("a-b").is_err());
    assert!(check_prefix("").is_err());
    assert_eq!(node_netns("pfx", "node-1"), "pfx-node-node-1");
    assert_eq!(pod_netns("pfx", "abc"), "pfx-pod-abc");
    assert_eq!(bridge_name("pfx"), "pfx0");
}

#[test]
fn dual_stack_node_addresses_mirror_the_ipv4_ones() {
    let v4 = LabConfig::new("pfx");
    assert_eq!(node_ip6(&v4, 0).unwrap(), None);
    assert_eq!(v4.underlay6, None);
    let cfg = LabConfig::new("pfx").dual_stack();
    assert_eq!(cfg.host_ip6, Some("fd00:172:31::1".parse().unwrap()));
    assert_eq!(
        node_ip6(&cfg, 0).unwrap(),
        Some("fd00:172:31::10".parse().unwrap())
    );
    assert_eq!(
        node_ip6(&cfg, 1).unwrap(),
        Some("fd00:172:31::11".parse().unwrap())
    );
    assert_eq!(
        node_ip6(&cfg, 244).unwrap(),
        Some("fd00:172:31::254".parse().unwrap())
    );
    assert!(node_ip6(&cfg, 245).is_err());
    // A host without an IPv4 address on the lab takes no IPv6 one either.
    let mut quiet = LabConfig::new("pfx");
    quiet.host_ip = None;
    assert_eq!(quiet.dual_stack().host_ip6, None);
}

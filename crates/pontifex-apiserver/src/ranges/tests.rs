use super::*;

fn err(s: &str) -> String {
    parse_service_cluster_ip_range(s).unwrap_err().to_string()
}

#[test]
fn one_or_two_ranges_parse_primary_first() {
    let one = parse_service_cluster_ip_range("10.96.0.0/12").unwrap();
    assert!(!one.is_dual_stack());
    let two = parse_service_cluster_ip_range("fd00:10:96::/108,10.96.0.0/16").unwrap();
    assert_eq!(two.primary_family(), IpFamily::V6);
    assert_eq!(two.to_string(), "fd00:10:96::/108,10.96.0.0/16");
    assert_eq!(
        parse_service_cluster_ip_range("").unwrap().to_string(),
        "10.96.0.0/12"
    );
    // Go's ParseCIDR keeps the network.
    assert_eq!(
        parse_service_cluster_ip_range("10.96.3.4/12")
            .unwrap()
            .to_string(),
        "10.96.0.0/12"
    );
}

#[test]
fn refusals_carry_kube_apiservers_messages() {
    assert_eq!(
        err("10.0.0.0/8"),
        "specified --service-cluster-ip-range is too large; for 32-bit addresses, the mask must be >= 12"
    );
    assert_eq!(
        err("10.96.0.0/12,fd00::/64"),
        "specified --service-cluster-ip-range[1] is too large; for 128-bit addresses, the mask must be >= 108"
    );
    assert_eq!(
        err("fd00::/64"),
        "specified --service-cluster-ip-range is too large; for 128-bit addresses, the mask must be >= 108"
    );
    assert_eq!(
        err("10.96.0.0/12,10.100.0.0/16"),
        "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family"
    );
    assert_eq!(
        err("10.96.0.0/12,fd00::/108,10.100.0.0/16"),
        "--service-cluster-ip-range must not contain more than two entries"
    );
    assert_eq!(
        err("nope"),
        "service-cluster-ip-range[0] is not a valid cidr"
    );
    assert_eq!(
        err("10.96.0.0/12,nope"),
        "service-cluster-ip-range[1] is not an ip net"
    );
    assert_eq!(
        err("10.96.0.0/30"),
        "error determining service IP ranges for primary service cidr: the service cluster IP range must be at least 8 IP addresses"
    );
    // A /29 has 8 addresses: allowed.
    assert!(parse_service_cluster_ip_range("10.96.0.0/29").is_ok());
}

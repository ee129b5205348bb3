use super::*;

fn cidrs(s: &str) -> DualStackCidrs {
    parse_cluster_cidr(s).unwrap()
}

#[test]
fn cluster_cidr_takes_one_or_a_dual_stack_pair() {
    assert_eq!(cidrs("10.244.0.0/16").to_string(), "10.244.0.0/16");
    let dual = cidrs("fd00:10:244::/56,10.244.0.0/16");
    assert_eq!(dual.primary_family(), IpFamily::V6);
    assert_eq!(
        parse_cluster_cidr("10.244.0.0/16,10.245.0.0/16")
            .unwrap_err()
            .to_string(),
        "len of ClusterCIDRs==2 and they are not configured as dual stack (at least one from each IPFamily"
    );
    assert_eq!(
        parse_cluster_cidr("10.244.0.0/16,fd00::/56,10.245.0.0/16")
            .unwrap_err()
            .to_string(),
        "length of clusterCIDRs is:3 more than max allowed of 2"
    );
    assert!(matches!(
        parse_cluster_cidr("10.244.0.0/16,bogus"),
        Err(NodeIpamFlagError::Invalid(e)) if e == "bogus"
    ));
}

#[test]
fn mask_sizes_follow_kube_controller_managers_rules() {
    let v4 = cidrs("10.244.0.0/16");
    let v6 = cidrs("fd00:10:244::/56");
    let dual = cidrs("fd00:10:244::/56,10.244.0.0/16");
    // Defaults: 24 and 64, per CIDR, in the cluster CIDRs' order.
    assert_eq!(node_cidr_mask_sizes(&v4, None, None, None), Ok(vec![24]));
    assert_eq!(node_cidr_mask_sizes(&v6, None, None, None), Ok(vec![64]));
    assert_eq!(
        node_cidr_mask_sizes(&dual, None, None, None),
        Ok(vec![64, 24])
    );
    assert_eq!(
        node_cidr_mask_sizes(&dual, None, Some(26), Some(66)),
        Ok(vec![66, 26])
    );
    // The single-stack flag serves either family.
    assert_eq!(
        node_cidr_mask_sizes(&v4, Some(25), None, None),
        Ok(vec![25])
    );
    assert_eq!(
        node_cidr_mask_sizes(&v6, Some(60), None, None),
        Ok(vec![60])
    );
    let err = |c, s, a, b| node_cidr_mask_sizes(c, s, a, b).unwrap_err().to_string();
    assert_eq!(
        err(&dual, Some(24), None, None),
        "usage of --node-cidr-mask-size is not allowed with dual-stack clusters"
    );
    assert!(err(&v4, Some(24), Some(24), None).starts_with("usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 is not allowed if --node-cidr-mask-size is set."));
    assert_eq!(
        err(&v6, None, Some(24), None),
        "usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster"
    );
    assert_eq!(
        err(&v4, None, None, Some(64)),
        "usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster"
    );
    // The per-family flag of the cluster's own family is fine.
    assert_eq!(
        node_cidr_mask_sizes(&v4, None, Some(26), None),
        Ok(vec![26])
    );
    // An IPv6 set of more than 2^16 subnets, and masks that do not fit.
    assert_eq!(
        err(&cidrs("fd00::/40"), None, None, None),
        "New CIDR set failed; the node CIDR size is too big"
    );
    assert!(matches!(
        node_cidr_mask_sizes(&v4, Some(8), None, None),
        Err(NodeIpamFlagError::MaskOutOfRange { mask: 8, .. })
    ));
}

use super::*;

#[test]
fn one_cidr_is_single_stack() {
    let c: DualStackCidrs = "10.96.0.1/12".parse().unwrap();
    assert_eq!(c.primary().to_string(), "10.96.0.0/12");
    assert!(!c.is_dual_stack());
    assert_eq!(c.primary_family(), IpFamily::V4);
    assert!(c.ipv6().is_none());
    assert_eq!(c.to_string(), "10.96.0.0/12");
}

#[test]
fn a_pair_keeps_its_order() {
    let c: DualStackCidrs = "fd00:10:96::/108, 10.96.0.0/12".parse().unwrap();
    assert!(c.is_dual_stack());
    assert_eq!(c.primary_family(), IpFamily::V6);
    assert_eq!(
        c.families().collect::<Vec<_>>(),
        vec![IpFamily::V6, IpFamily::V4]
    );
    assert_eq!(c.ipv4().unwrap().to_string(), "10.96.0.0/12");
    assert_eq!(c.get(IpFamily::V6).unwrap().to_string(), "fd00:10:96::/108");
    assert_eq!(c.to_string(), "fd00:10:96::/108,10.96.0.0/12");
}

#[test]
fn bad_lists_are_refused() {
    assert_eq!(
        "10.0.0.0/8,10.1.0.0/16".parse::<DualStackCidrs>(),
        Err(CidrListError::SameFamily(
            "10.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap()
        ))
    );
    assert!(matches!(
        "10.0.0.0/8,fd00::/64,10.1.0.0/16".parse::<DualStackCidrs>(),
        Err(CidrListError::TooMany { count: 3 })
    ));
    assert!(matches!(
        "10.0.0.0/8,nope".parse::<DualStackCidrs>(),
        Err(CidrListError::Invalid { index: 1, .. })
    ));
    assert_eq!("".parse::<DualStackCidrs>(), Err(CidrListError::Empty));
}

#[test]
fn families_spell_as_the_api_does() {
    assert_eq!(IpFamily::parse("IPv6"), Some(IpFamily::V6));
    assert_eq!(IpFamily::parse("ipv6"), None);
    assert_eq!(IpFamily::V4.to_string(), "IPv4");
    assert_eq!(IpFamily::V4.other(), IpFamily::V6);
}

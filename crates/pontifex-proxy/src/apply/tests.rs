use super::*;

#[test]
fn netns_names_are_checked() {
    assert!(KernelApplier::new(Some("pfx-node-a")).is_ok());
    assert!(KernelApplier::new(None).is_ok());
    for bad in ["", "..", "a b", "a/b", "x;rm", "$(id)"] {
        assert!(
            matches!(
                KernelApplier::new(Some(bad)),
                Err(ApplyError::InvalidNetns(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn nft_listing_parsed() {
    let tables = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "ip", "name": "filter", "handle": 1}},
        {"table": {"family": "ip", "name": "pontifex", "handle": 2}}]}"#;
    assert!(nft_json_has_table(tables, "ip", "pontifex").unwrap());
    assert!(!nft_json_has_table(tables, "ip6", "pontifex").unwrap());
    assert!(!nft_json_has_table(tables, "ip", "kube-proxy").unwrap());
    assert!(nft_json_has_table("not json", "ip", "pontifex").is_err());

    let table = r#"{"nftables": [{"metainfo": {}},
        {"table": {"family": "ip", "name": "pontifex"}},
        {"chain": {"family": "ip", "table": "pontifex", "name": "services"}},
        {"chain": {"family": "ip", "table": "pontifex", "name": "nat-prerouting", "hook": "prerouting"}},
        {"set": {"family": "ip", "table": "pontifex", "name": "cluster-ips"}},
        {"map": {"family": "ip", "table": "pontifex", "name": "service-ips"}},
        {"rule": {"family": "ip", "table": "pontifex", "chain": "services", "expr": []}}]}"#;
    let o = nft_json_objects(table).unwrap();
    assert_eq!(
        o.chains.into_iter().collect::<Vec<_>>(),
        ["nat-prerouting", "services"]
    );
    assert_eq!(
        o.sets.into_iter().collect::<Vec<_>>(),
        ["cluster-ips", "service-ips"]
    );
}

#[test]
fn iptables_save_keeps_only_service_chains() {
    let save = "# Generated\n*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n\
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]\n:OTHER - [0:0]\n\
        -A KUBE-SERVICES -j KUBE-SVC-XPGD46QRK7WJZT7O\nCOMMIT\n";
    assert_eq!(
        iptables_save_service_chains(save)
            .into_iter()
            .collect::<Vec<_>>(),
        ["KUBE-SEP-SXIVWICOYRO3J4NJ", "KUBE-SVC-XPGD46QRK7WJZT7O"]
    );
}

#[test]
fn jump_rules_follow_kube_proxy() {
    let cfg = IptablesConfig::default();
    let rules = iptables_jump_rules(&cfg);
    // 2 + 1 + 2 + 1 + 3 + 2 + 1 + 2 (KUBE-FIREWALL with localhost node ports)
    assert_eq!(rules.len(), 14);
    let pre = rules
        .iter()
        .find(|r| r.table == "nat" && r.from == "PREROUTING")
        .unwrap();
    assert_eq!(pre.to, "KUBE-SERVICES");
    assert_eq!(
        pre.args,
        ["-m", "comment", "--comment", "kubernetes service portals"]
    );
    let fwd = rules
        .iter()
        .find(|r| r.table == "filter" && r.from == "FORWARD" && r.to == "KUBE-SERVICES")
        .unwrap();
    assert_eq!(&fwd.args[..4], ["-m", "conntrack", "--ctstate", "NEW"]);
    let v6 = IptablesConfig {
        family: IpFamily::V6,
        ..Default::default()
    };
    assert!(
        iptables_jump_rules(&v6)
            .iter()
            .all(|r| r.to != "KUBE-FIREWALL")
    );
}

#[test]
fn fake_records_and_fails_on_request() {
    let mut f = FakeApplier::default();
    f.state().fail_applies = 1;
    assert!(matches!(f.nft_apply("x"), Err(ApplyError::Injected)));
    assert!(f.nft_apply("y").is_ok());
    assert_eq!(
        f.state().calls,
        [FakeCall::Nft("x".into()), FakeCall::Nft("y".into())]
    );
}

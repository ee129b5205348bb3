use pontifex_proxy::iptables::LocalDetector;
use pontifex_proxy::model::{ChangeTracker, IpFamily, ProxySnapshot};
use pontifex_proxy::nftables::{self, NftConfig, NftLayout};

use crate::fixtures::{self, diff};

fn config() -> NftConfig {
    NftConfig {
        layout: NftLayout::Chains,
        table: "kube-proxy".into(),
        family: IpFamily::V4,
        node_ip: Some("192.168.0.2".parse().unwrap()),
        local_detector: LocalDetector::Cidr("10.0.0.0/8".parse().unwrap()),
        masquerade_all: false,
        masquerade_bit: 14,
        node_port_addresses: Some(vec![
            "192.168.0.2".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
        ]),
        service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
        // kube-proxy's nftables mode has no INVALID drop; its expected output has no such rule.
        invalid_drop: false,
    }
}

/// The same six services as iptables-01 (nftables-01's input says "identical").
fn overall_snapshot() -> ProxySnapshot {
    let input = fixtures::yaml("iptables-01-overall");
    let mut t = ChangeTracker::new("test-node");
    for s in input["services"].as_array().unwrap() {
        t.update_service(&fixtures::service(s)).unwrap();
    }
    for s in input["endpointSlices"].as_array().unwrap() {
        t.update_endpoint_slice(&fixtures::slice(s, None)).unwrap();
    }
    t.current()
}

/// kube-proxy's `sortNFTablesTransaction`, as the README describes it: blank lines and
/// comments dropped; non-rule lines sorted; rules grouped by chain (chains in name order),
/// order within a chain kept.
fn normalise(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let mut others: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("add rule "))
        .collect();
    others.sort_unstable();
    let mut rules: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with("add rule "))
        .collect();
    rules.sort_by_key(|l| l.split(' ').nth(4).unwrap_or_default().to_owned());
    let mut out: Vec<&str> = others;
    out.extend(rules);
    out.join("\n")
}

#[test]
fn nftables_01_overall() {
    let state = nftables::render(&config(), &overall_snapshot());
    let expected = normalise(&fixtures::read("nftables-01-overall", "expected.nft"));
    let actual = normalise(&state.dump());
    assert!(
        expected == actual,
        "nftables-01 differs:\n{}",
        diff(&expected, &actual)
    );
}

/// The Maps layout of the same input: our own file (no upstream counterpart), reviewed by
/// hand; `PONTIFEX_BLESS=1` rewrites it.
#[test]
fn nftables_01_overall_maps() {
    let cfg = NftConfig {
        layout: NftLayout::Maps,
        ..config()
    };
    let actual = nftables::render(&cfg, &overall_snapshot()).dump();
    let path = fixtures::dir("nftables-01-overall").join("expected-maps.nft");
    if std::env::var_os("PONTIFEX_BLESS").is_some() {
        std::fs::write(&path, &actual).unwrap();
    }
    let expected = fixtures::read("nftables-01-overall", "expected-maps.nft");
    assert!(
        normalise(&expected) == normalise(&actual),
        "nftables-01 (maps) differs:\n{}",
        diff(&normalise(&expected), &normalise(&actual))
    );
}

#[test]
fn chain_names_table() {
    let text = fixtures::read("", "chain-names-nftables.tsv");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("prefix"))
    {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(nftables::chain_name(cols[0], cols[1]), cols[2]);
        n += 1;
    }
    assert!(n >= 14);
}

#[test]
fn incremental_from_empty_state_equals_dump_objects() {
    // An incremental update from the base table (no services) to the six services adds
    // exactly the per-service objects, and applying nothing twice yields an empty transaction.
    let base = nftables::render(&config(), &ProxySnapshot::default());
    let full = nftables::render(&config(), &overall_snapshot());
    let inc = nftables::incremental_transaction(&base, &full).unwrap();
    assert!(inc.stale_chains.is_empty());
    assert!(
        inc.transaction
            .contains("add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80\n")
    );
    assert!(!inc.transaction.contains("add table"));
    let again = nftables::incremental_transaction(&full, &full).unwrap();
    assert_eq!(again.transaction, "");
    // And back: every service chain is flushed and reported stale, elements deleted.
    let back = nftables::incremental_transaction(&full, &base).unwrap();
    assert_eq!(
        back.stale_chains.len(),
        full.chains.len() - base.chains.len()
    );
    assert!(
        back.transaction
            .contains("delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }\n")
    );
    assert!(
        back.transaction.contains(
            "delete set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80\n"
        )
    );
}

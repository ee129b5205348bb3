use std::collections::BTreeSet;

use pontifex_proxy::iptables::{self, IptablesConfig, LocalDetector, SyncKind};
use pontifex_proxy::model::{ChangeTracker, IpFamily};
use serde_json::Value;

use crate::fixtures::{self, diff};

fn config(nfacct: bool) -> IptablesConfig {
    IptablesConfig {
        family: IpFamily::V4,
        node_ip: Some("192.168.0.2".parse().unwrap()),
        local_detector: LocalDetector::Cidr("10.0.0.0/8".parse().unwrap()),
        masquerade_all: false,
        masquerade_bit: 14,
        localhost_node_ports: true,
        node_port_addresses: None,
        conntrack_tcp_be_liberal: false,
        nfacct_invalid: nfacct,
        nfacct_localhost_node_ports: nfacct,
        random_fully: false,
    }
}

fn assert_golden(case: &str, file: &str, actual: &str) {
    let expected = fixtures::read(case, file);
    assert!(
        expected == actual,
        "{case}/{file} differs:\n{}\n--- actual:\n{actual}",
        diff(&expected, actual)
    );
}

#[test]
fn iptables_01_overall() {
    let input = fixtures::yaml("iptables-01-overall");
    let node = input["proxier"]["nodeName"].as_str().unwrap();
    let mut t = ChangeTracker::new(node);
    for s in input["services"].as_array().unwrap() {
        t.update_service(&fixtures::service(s)).unwrap();
    }
    for s in input["endpointSlices"].as_array().unwrap() {
        t.update_endpoint_slice(&fixtures::slice(s, None)).unwrap();
    }
    let up = t.sync();
    let r = iptables::render(
        &config(true),
        &up.snapshot,
        SyncKind::Full,
        &BTreeSet::new(),
    );
    assert_golden("iptables-01-overall", "expected.iptables-save", &r.text);
}

#[test]
fn iptables_02_sync_repeated() {
    let case = "iptables-02-sync-repeated";
    let input = fixtures::yaml(case);
    let mut t = ChangeTracker::new("test-node");
    let mut slices = std::collections::BTreeMap::new();
    let mut existing = BTreeSet::new();
    let mut last_nat_rules: Option<usize> = None;
    for step in input["steps"].as_array().unwrap() {
        for action in step["apply"].as_array().unwrap() {
            let (verb, obj) = action.as_object().unwrap().iter().next().unwrap();
            match verb.as_str() {
                "add service" => t.update_service(&fixtures::service(obj)).unwrap(),
                "delete service" => {
                    let (ns, name) = obj.as_str().unwrap().split_once('/').unwrap();
                    t.delete_service(ns, name);
                }
                "add endpointslice" | "update endpointslice" => {
                    let key = (
                        obj["namespace"].as_str().unwrap().to_owned(),
                        obj.get("name").cloned(),
                    );
                    let prev = slices.values().find(
                        |s: &&k8s_openapi::api::discovery::v1::EndpointSlice| {
                            key.1.as_ref().and_then(Value::as_str) == s.metadata.name.as_deref()
                        },
                    );
                    let s = fixtures::slice(obj, prev);
                    t.update_endpoint_slice(&s).unwrap();
                    slices.insert(s.metadata.name.clone().unwrap(), s);
                }
                "out-of-band" => {}
                other => panic!("unknown action {other}"),
            }
        }
        let up = t.sync();
        let kind = step["kind"].as_str().unwrap();
        let sync = if kind == "full" {
            SyncKind::Full
        } else {
            SyncKind::Partial(&up.changed_services)
        };
        let r = iptables::render(&config(true), &up.snapshot, sync, &existing);
        match step["expected"].as_str() {
            Some(file) => {
                assert_golden(case, file, &r.text);
                if let Some(delta) =
                    step["metrics"]["sync_proxy_rules_iptables_total_nat_delta"].as_i64()
                {
                    let before = last_nat_rules.unwrap() as i64;
                    assert_eq!(
                        r.nat_rules as i64 - before,
                        delta,
                        "step {} nat rule delta",
                        step["id"]
                    );
                }
                existing = r.active_nat_chains;
                last_nat_rules = Some(r.nat_rules);
            }
            // The restore failed: the kernel keeps the previous chains, the next sync is full.
            None => t.resync_failed(),
        }
    }
}

#[test]
fn iptables_03_traffic_policy() {
    let case = "iptables-03-traffic-policy";
    let input = fixtures::yaml(case);
    for c in input["cases"].as_array().unwrap() {
        let mut t = ChangeTracker::new("test-hostname");
        let svc = fixtures::service(&c["service"]);
        t.update_service(&svc).unwrap();
        t.update_endpoint_slice(&fixtures::slice_with_conditions(
            "ns1",
            "svc1",
            80,
            &c["endpoints"],
            "test-hostname",
        ))
        .unwrap();
        let up = t.sync();
        let r = iptables::render(
            &config(false),
            &up.snapshot,
            SyncKind::Full,
            &BTreeSet::new(),
        );
        assert_golden(case, c["expected"].as_str().unwrap(), &r.text);
    }
}

#[test]
fn chain_names_table() {
    let text = fixtures::read("", "chain-names-iptables.tsv");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("kind"))
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let expected = cols[2];
        let prefix = &expected[..expected.len() - 16];
        let hash = &expected[expected.len() - 16..];
        assert_eq!(iptables::chain_name(prefix, cols[1]), expected);
        assert_eq!(hash.len(), 16);
        n += 1;
    }
    assert!(n >= 29);
}

#[test]
fn probability_table() {
    let text = fixtures::read("", "probability.tsv");
    let mut n = 0;
    for line in text.lines().skip(1) {
        let mut cols = line.split('\t');
        let count: usize = cols.next().unwrap().trim().parse().unwrap();
        let expected = cols.next().unwrap().split_whitespace().next().unwrap();
        assert_eq!(iptables::probability(count), expected, "n={count}");
        n += 1;
    }
    assert!(n >= 10);
}

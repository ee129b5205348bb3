use super::*;
use crate::model::{Protocol, ServiceKey, ServicePort};

fn snap(eps: &[(&str, bool)], etp_local: bool) -> ProxySnapshot {
    let name = ServicePortName {
        service: ServiceKey::new("ns", "web"),
        port: "http".into(),
        protocol: Protocol::Tcp,
    };
    let mut s = ProxySnapshot::default();
    s.services.insert(
        name.clone(),
        ServicePort {
            name: name.clone(),
            cluster_ips: vec!["10.96.0.20".parse().unwrap()],
            port: 80,
            node_port: 30002,
            external_ips: vec![],
            load_balancer_ips: vec![],
            load_balancer_source_ranges: vec![],
            external_policy_local: etp_local,
            internal_policy_local: false,
            affinity_timeout: None,
            health_check_node_port: 0,
        },
    );
    s.endpoints.insert(
        name,
        eps.iter()
            .map(|(ip, local)| Endpoint {
                ip: ip.parse().unwrap(),
                port: 8080,
                is_local: *local,
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect(),
    );
    s
}

fn cfg() -> NftConfig {
    NftConfig {
        local_detector: LocalDetector::Cidr("10.244.0.0/16".parse().unwrap()),
        ..Default::default()
    }
}

#[test]
fn table_name_is_a_parameter_and_sanitised() {
    let st = render(
        &NftConfig {
            table: "pon;tifex".into(),
            ..cfg()
        },
        &ProxySnapshot::default(),
    );
    assert!(st.dump().starts_with("add table ip pon_tifex "));
}

#[test]
fn match_all_nodeports_exclude_localhost() {
    let st = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    assert!(st.chains["services"].rules.iter().any(|r| r
        == "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"));
    assert!(!st.sets.contains_key("nodeport-ips"));
}

#[test]
fn etp_local_with_local_endpoint_goes_to_local_chain() {
    let st = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.0.7", true)], true),
    );
    let ext = chain_name("external-", "ns/web/tcp/http");
    let local = chain_name("local-", "ns/web/tcp/http");
    assert_eq!(
        st.chains[&ext].rules.last().unwrap(),
        &format!("goto {local}")
    );
    assert!(
        st.chains[&local].rules[0].starts_with("numgen random mod 1 vmap { 0 : goto endpoint-")
    );
    // Without a local endpoint: external traffic dropped, no local chain.
    let st = render(&cfg(), &snap(&[("10.244.1.2", false)], true));
    assert!(!st.chains.contains_key(&local));
    assert_eq!(
        st.elements["no-endpoint-nodeports"]["tcp . 30002"]
            .value
            .as_deref(),
        Some("drop")
    );
}

#[test]
fn endpoint_change_is_small_incremental_update() {
    let a = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.1.3", false)], false),
    );
    let b = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    let inc = incremental_transaction(&a, &b).unwrap();
    let svc = chain_name("service-", "ns/web/tcp/http");
    let gone = chain_name("endpoint-", "ns/web/tcp/http__10.244.1.3/8080");
    assert_eq!(inc.stale_chains, vec![gone.clone()]);
    assert!(
        inc.transaction
            .contains(&format!("flush chain ip pontifex {svc}\n"))
    );
    assert!(
        inc.transaction
            .contains(&format!("flush chain ip pontifex {gone}\n"))
    );
    assert!(
        !inc.transaction.contains("add element"),
        "no element changed:\n{}",
        inc.transaction
    );
    assert_eq!(
        delete_chains_transaction(&b, &inc.stale_chains),
        format!("delete chain ip pontifex {gone}\n")
    );
    // Deferred deletion skips a chain that came back.
    assert_eq!(delete_chains_transaction(&a, &inc.stale_chains), "");
    // A changed table name cannot be done incrementally.
    let other = render(
        &NftConfig {
            table: "x".into(),
            ..cfg()
        },
        &snap(&[], false),
    );
    assert!(incremental_transaction(&a, &other).is_none());
}

#[test]
fn full_transaction_flushes_static_maps_and_deletes_leftovers() {
    let a = render(
        &cfg(),
        &snap(&[("10.244.1.2", false), ("10.244.1.3", false)], false),
    );
    let b = render(&cfg(), &snap(&[("10.244.1.2", false)], false));
    let t = full_transaction(&b, &a.objects());
    assert!(t.starts_with(
        "add table ip pontifex { comment \"rules for kube-proxy\" ; }\nflush table ip pontifex\n"
    ));
    assert!(t.contains("flush map ip pontifex service-ips\n"));
    assert!(t.ends_with(&format!(
        "delete chain ip pontifex {}\n",
        chain_name("endpoint-", "ns/web/tcp/http__10.244.1.3/8080")
    )));
}

#[test]
fn long_names_are_cut() {
    let long = "a".repeat(300);
    let n = chain_name("service-", &long);
    assert_eq!(n.len(), 240);
    assert!(n.ends_with("..."));
}

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use pontifex_proxy::apply::{FakeApplier, FakeCall};
use tokio_util::sync::CancellationToken;

use super::*;

fn pod(ports: serde_json::Value, host_network: bool) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p", "uid": "u1"},
        "spec": {"hostNetwork": host_network, "containers": [{"name": "c", "ports": ports}]}
    }))
    .unwrap()
}

const IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);

fn cidr() -> Ipv4Net {
    "10.244.1.0/24".parse().unwrap()
}

#[test]
fn host_ports_become_mappings_with_kubernetes_defaults() {
    let p = pod(
        serde_json::json!([
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "172.31.0.2"},
            {"containerPort": 81, "hostPort": 8081, "hostIP": "0.0.0.0", "protocol": "SCTP"},
            {"containerPort": 9090}
        ]),
        false,
    );
    assert_eq!(
        mappings(&p, IP),
        vec![
            Mapping {
                host_ip: None,
                host_port: 8080,
                proto: Proto::Tcp,
                pod_ip: IP,
                container_port: 80
            },
            Mapping {
                host_ip: Some(Ipv4Addr::new(172, 31, 0, 2)),
                host_port: 5353,
                proto: Proto::Udp,
                pod_ip: IP,
                container_port: 53
            },
            Mapping {
                host_ip: None,
                host_port: 8081,
                proto: Proto::Sctp,
                pod_ip: IP,
                container_port: 81
            },
        ]
    );
}

#[test]
fn invalid_entries_never_reach_the_rules() {
    let p = pod(
        serde_json::json!([
            {"containerPort": 80, "hostPort": 8080, "hostIP": "1.2.3.4 } ; flush ruleset"},
            {"containerPort": 80, "hostPort": 8081, "hostIP": "::1"},
            {"containerPort": 80, "hostPort": 0},
            {"containerPort": 80, "hostPort": 70000},
            {"containerPort": -1, "hostPort": 8082},
            {"containerPort": 80, "hostPort": 8083, "protocol": "tcp; flush ruleset"},
            {"containerPort": 80, "hostPort": 8084}
        ]),
        false,
    );
    let m = mappings(&p, IP);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!(m[0].host_port, 8084);
    let text = render(&BTreeMap::from([("u1".to_owned(), m)]), cidr());
    assert!(!text.contains("flush"), "{text}");
}

#[test]
fn host_network_pods_need_no_mapping() {
    let p = pod(
        serde_json::json!([{"containerPort": 8080, "hostPort": 8080}]),
        true,
    );
    assert!(mappings(&p, IP).is_empty());
}

#[test]
fn render_is_one_table_swap_with_dnat_mark_and_masquerade() {
    let p = pod(
        serde_json::json!([
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "172.31.0.2"}
        ]),
        false,
    );
    let text = render(
        &BTreeMap::from([("u1".to_owned(), mappings(&p, IP))]),
        cidr(),
    );
    let expected = "\
add table ip pontifex-hostport
delete table ip pontifex-hostport
table ip pontifex-hostport {
\tchain prerouting {
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tip daddr != 127.0.0.0/8 fib daddr type local jump hostports
\t}
\tchain output {
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr != 127.0.0.0/8 fib daddr type local jump hostports
\t}
\tchain postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x2000 == 0x2000 meta mark set meta mark ^ 0x2000 masquerade
\t}
\tchain hostports {
\t\tip daddr 172.31.0.2 udp dport 5353 ip saddr 10.244.1.0/24 meta mark set meta mark | 0x2000
\t\tip daddr 172.31.0.2 udp dport 5353 dnat to 10.244.1.5:53
\t\ttcp dport 8080 ip saddr 10.244.1.0/24 meta mark set meta mark | 0x2000
\t\ttcp dport 8080 dnat to 10.244.1.5:80
\t}
}
";
    assert_eq!(text, expected);
}

#[test]
fn render_is_deterministic_and_specific_addresses_come_first() {
    let wild = Mapping {
        host_ip: None,
        host_port: 80,
        proto: Proto::Tcp,
        pod_ip: Ipv4Addr::new(10, 244, 1, 2),
        container_port: 80,
    };
    let specific = Mapping {
        host_ip: Some(Ipv4Addr::new(172, 31, 0, 9)),
        pod_ip: Ipv4Addr::new(10, 244, 1, 3),
        ..wild.clone()
    };
    let a = BTreeMap::from([
        ("a".to_owned(), vec![wild.clone()]),
        ("b".to_owned(), vec![specific.clone()]),
    ]);
    let b = BTreeMap::from([
        ("b".to_owned(), vec![wild]),
        ("a".to_owned(), vec![specific]),
    ]);
    let (ta, tb) = (render(&a, cidr()), render(&b, cidr()));
    assert_eq!(ta, tb);
    let specific_at = ta.find("dnat to 10.244.1.3").unwrap();
    let wild_at = ta.find("dnat to 10.244.1.2").unwrap();
    assert!(specific_at < wild_at, "{ta}");
}

#[test]
fn an_empty_node_keeps_an_empty_table() {
    let text = render(&BTreeMap::new(), cidr());
    assert!(text.contains("chain hostports {\n\t}"), "{text}");
    assert!(!text.contains("dnat"));
}

fn nft_calls(f: &FakeApplier) -> Vec<String> {
    f.state()
        .calls
        .iter()
        .filter_map(|c| match c {
            FakeCall::Nft(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn sync_waits_for_the_first_list_then_follows_changes_once_each() {
    let hp = HostPorts::new();
    let fake = FakeApplier::default();
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (hp, fake, stop) = (hp.clone(), fake.clone(), stop.clone());
        async move { hp.sync(fake, cidr(), stop).await }
    });
    let p = pod(
        serde_json::json!([{"containerPort": 80, "hostPort": 8080}]),
        false,
    );
    hp.set("u1", mappings(&p, IP));
    settle().await;
    assert!(nft_calls(&fake).is_empty(), "nothing before the first list");
    hp.mark_ready();
    settle().await;
    let calls = nft_calls(&fake);
    assert_eq!(calls.len(), 1);
    assert!(calls[0].contains("dnat to 10.244.1.5:80"));
    // The same mappings again: no new transaction.
    hp.set("u1", mappings(&p, IP));
    settle().await;
    assert_eq!(nft_calls(&fake).len(), 1);
    // The pod goes: its rule goes.
    hp.set("u1", Vec::new());
    settle().await;
    let calls = nft_calls(&fake);
    assert_eq!(calls.len(), 2);
    assert!(!calls[1].contains("dnat"));
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_is_retried() {
    let hp = HostPorts::new();
    let fake = FakeApplier::default();
    fake.state().fail_applies = 1;
    let stop = CancellationToken::new();
    hp.mark_ready();
    let task = tokio::spawn({
        let (hp, fake, stop) = (hp.clone(), fake.clone(), stop.clone());
        async move { hp.sync(fake, cidr(), stop).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(nft_calls(&fake).len(), 1);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(nft_calls(&fake).len(), 2, "retried after the failure");
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(nft_calls(&fake).len(), 2, "not again once it worked");
    stop.cancel();
    task.await.unwrap();
}

/// The kernel accepts the text (`nft -c`: checked, never committed). Root only.
#[test]
fn nft_accepts_the_rendered_table() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    if !root
        || std::process::Command::new("nft")
            .arg("-v")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and nft");
        return;
    }
    let p = pod(
        serde_json::json!([
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "172.31.0.2"},
            {"containerPort": 81, "hostPort": 8081, "protocol": "SCTP"}
        ]),
        false,
    );
    let text = render(
        &BTreeMap::from([("u1".to_owned(), mappings(&p, IP))]),
        cidr(),
    );
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
}

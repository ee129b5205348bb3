//! Prints nft transactions for a small scripted scenario (manual check against a real `nft`).
use pontifex_proxy::model::{
    Endpoint, Protocol, ProxySnapshot, ServiceKey, ServicePort, ServicePortName,
};
use pontifex_proxy::nftables::{self, NftConfig, NftObjects};

fn snap(n_eps: u8, affinity: bool) -> ProxySnapshot {
    let name = ServicePortName {
        service: ServiceKey::new("ns1", "svc1"),
        port: "p80".into(),
        protocol: Protocol::Udp,
    };
    let mut s = ProxySnapshot::default();
    s.services.insert(
        name.clone(),
        ServicePort {
            name: name.clone(),
            cluster_ips: vec!["10.96.0.10".parse().unwrap()],
            port: 80,
            node_port: 30080,
            external_ips: vec![],
            load_balancer_ips: vec!["172.31.255.1".parse().unwrap()],
            load_balancer_source_ranges: vec!["172.31.0.0/24".parse().unwrap()],
            external_policy_local: false,
            internal_policy_local: false,
            affinity_timeout: affinity.then_some(60),
            health_check_node_port: 0,
        },
    );
    let eps = (1..=n_eps)
        .map(|i| Endpoint {
            ip: format!("10.244.0.{i}").parse().unwrap(),
            port: 8080,
            is_local: true,
            ready: true,
            serving: true,
            terminating: false,
        })
        .collect();
    s.endpoints.insert(name, eps);
    s
}

fn main() {
    let cfg = NftConfig {
        service_cidrs: vec!["10.96.0.0/12".parse().unwrap()],
        ..Default::default()
    };
    let a = nftables::render(&cfg, &snap(2, true));
    let b = nftables::render(&cfg, &snap(1, false));
    let which = std::env::args().nth(1).unwrap_or_default();
    match which.as_str() {
        "full-a" => print!("{}", nftables::full_transaction(&a, &NftObjects::default())),
        "full-b-over-a" => print!("{}", nftables::full_transaction(&b, &a.objects())),
        "inc-a-b" => {
            let inc = nftables::incremental_transaction(&a, &b).unwrap();
            print!("{}", inc.transaction);
            eprintln!("stale: {:?}", inc.stale_chains);
        }
        "del-a-b" => {
            let inc = nftables::incremental_transaction(&a, &b).unwrap();
            print!(
                "{}",
                nftables::delete_chains_transaction(&b, &inc.stale_chains)
            );
        }
        "dump-b" => print!("{}", b.dump()),
        _ => eprintln!("usage"),
    }
}

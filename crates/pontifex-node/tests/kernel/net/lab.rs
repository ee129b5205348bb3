use std::net::SocketAddr;

use ipnet::Ipv4Net;
use pontifex_node::net::lab::{self, LabConfig, LabNode};
use pontifex_node::net::routes::{self, NodeRoute};
use pontifex_node::net::{netns, sandbox};

use super::support::{
    Cleanup, ip_out, rt, tcp_echo, tcp_roundtrip, udp_echo, udp_roundtrip, unique_prefix,
};

/// A lab config that keeps the host out (no address in the root namespace), so labs run in parallel.
pub(crate) fn test_lab(prefix: &str) -> LabConfig {
    LabConfig {
        host_ip: None,
        ..LabConfig::new(prefix)
    }
}

struct TwoNodes {
    nodes: Vec<LabNode>,
    cidrs: [Ipv4Net; 2],
    pods: [(String, std::net::Ipv4Addr); 2],
}

impl TwoNodes {
    fn routes(&self) -> Vec<NodeRoute> {
        self.nodes
            .iter()
            .zip(self.cidrs)
            .map(|(n, c)| NodeRoute {
                name: n.name.clone(),
                node_ip: n.ip,
                pod_cidr: c,
            })
            .collect()
    }
}

async fn two_nodes_with_a_pod_each(cfg: &LabConfig, mtu: Option<u32>) -> TwoNodes {
    let nodes = lab::up(cfg, &["a", "b"]).await.unwrap();
    let cidrs: [Ipv4Net; 2] = [
        "10.244.0.0/24".parse().unwrap(),
        "10.244.1.0/24".parse().unwrap(),
    ];
    let mut pods = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        sandbox::ensure_bridge(Some(&n.netns), cidrs[i])
            .await
            .unwrap();
        let ns = lab::pod_netns(&cfg.prefix, &format!("p{i}"));
        let ip = std::net::Ipv4Addr::from(u32::from(cidrs[i].network()) + 2);
        sandbox::setup_pod(Some(&n.netns), &ns, cidrs[i], ip, mtu)
            .await
            .unwrap();
        pods.push((ns, ip));
    }
    let pods: [(String, std::net::Ipv4Addr); 2] = pods.try_into().unwrap();
    TwoNodes { nodes, cidrs, pods }
}

fn cross_node_traffic(t: &TwoNodes, port: u16) {
    let (from, _) = &t.pods[0];
    let (to, to_ip) = &t.pods[1];
    tcp_echo(to, *to_ip, port);
    let r = tcp_roundtrip(from, SocketAddr::from((*to_ip, port)), "across tcp");
    if r.is_err() {
        for ns in [from.as_str(), to.as_str()]
            .into_iter()
            .chain(t.nodes.iter().map(|n| n.netns.as_str()))
        {
            // Diagnostics only: what the kernel holds when the connection failed.
            let script = "ip -s -d link; bridge fdb show; ip neigh; ip route; ss -tuan";
            if let Ok(o) = std::process::Command::new("ip")
                .args(["netns", "exec", ns, "sh", "-c", script])
                .output()
            {
                eprintln!("== {ns}\n{}", String::from_utf8_lossy(&o.stdout));
            }
        }
    }
    assert_eq!(r.unwrap(), "across tcp");
    udp_echo(to, *to_ip, port + 1);
    assert_eq!(
        udp_roundtrip(from, SocketAddr::from((*to_ip, port + 1)), "across udp").unwrap(),
        "across udp"
    );
    // And back the other way.
    let (back_ns, back_ip) = &t.pods[0];
    tcp_echo(back_ns, *back_ip, port + 2);
    assert_eq!(
        tcp_roundtrip(to, SocketAddr::from((*back_ip, port + 2)), "back").unwrap(),
        "back"
    );
}

#[test]
fn cross_node_pods_with_host_gw_then_vxlan() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let cfg = test_lab(&prefix);
    let t = rt().block_on(two_nodes_with_a_pod_each(&cfg, Some(routes::VXLAN_MTU)));
    // Sealed: no default route in a node namespace.
    for n in &t.nodes {
        let r = ip_out(&["-n", &n.netns, "route"]);
        assert!(!r.contains("default"), "{r}");
    }
    // Without routes, a pod on the other node is unreachable.
    assert!(tcp_roundtrip(&t.pods[0].0, SocketAddr::from((t.pods[1].1, 9)), "x").is_err());

    let all = t.routes();
    rt().block_on(async {
        for n in &t.nodes {
            let rep = routes::sync_host_gw(Some(&n.netns), &n.name, &all)
                .await
                .unwrap();
            assert_eq!(rep.added.len(), 1);
            let again = routes::sync_host_gw(Some(&n.netns), &n.name, &all)
                .await
                .unwrap();
            assert_eq!(
                again,
                routes::SyncReport::default(),
                "second sync is a no-op"
            );
        }
    });
    let r = ip_out(&["-n", &t.nodes[0].netns, "route", "show", "proto", "88"]);
    assert!(
        r.contains(&format!("10.244.1.0/24 via {}", t.nodes[1].ip)),
        "{r}"
    );
    cross_node_traffic(&t, 7000);

    rt().block_on(async {
        for n in &t.nodes {
            let rep = routes::sync_vxlan(Some(&n.netns), &n.name, &all)
                .await
                .unwrap();
            assert_eq!(rep.replaced.len(), 1, "the host-gw route is replaced");
            let again = routes::sync_vxlan(Some(&n.netns), &n.name, &all)
                .await
                .unwrap();
            assert_eq!(again, routes::SyncReport::default());
        }
    });
    let r = ip_out(&["-n", &t.nodes[0].netns, "route", "show", "proto", "88"]);
    assert!(
        r.contains("10.244.1.0/24 via 10.244.1.0 dev pontifex.1 onlink"),
        "{r}"
    );
    let neigh = ip_out(&[
        "-n",
        &t.nodes[0].netns,
        "neigh",
        "show",
        "dev",
        "pontifex.1",
    ]);
    assert!(
        neigh.contains("10.244.1.0 lladdr 0e:fe:ac:1f:00:0b PERMANENT"),
        "{neigh}"
    );
    let fdb = ip_out(&["-n", &t.nodes[0].netns, "-d", "link", "show", "pontifex.1"]);
    assert!(
        fdb.contains("vxlan id 1") && fdb.contains("dstport 8472") && fdb.contains("nolearning"),
        "{fdb}"
    );
    let addr = ip_out(&[
        "-n",
        &t.nodes[0].netns,
        "-o",
        "addr",
        "show",
        "dev",
        "pontifex.1",
    ]);
    assert!(addr.contains("10.244.0.0/32"), "{addr}");
    let fdb = std::process::Command::new("bridge")
        .args(["-n", &t.nodes[0].netns, "fdb", "show", "dev", "pontifex.1"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
    assert!(
        fdb.contains("0e:fe:ac:1f:00:0b dst 172.31.0.11 self permanent"),
        "{fdb}"
    );
    cross_node_traffic(&t, 7100);

    // A node that leaves: its route, neighbour and FDB entry go.
    rt().block_on(async {
        let only_me = &all[..1];
        let rep = routes::sync_vxlan(Some(&t.nodes[0].netns), &t.nodes[0].name, only_me)
            .await
            .unwrap();
        assert_eq!(rep.deleted, vec![t.cidrs[1]]);
    });
    let neigh = ip_out(&[
        "-n",
        &t.nodes[0].netns,
        "neigh",
        "show",
        "dev",
        "pontifex.1",
    ]);
    assert!(!neigh.contains("10.244.1.0"), "{neigh}");
    let fdb = std::process::Command::new("bridge")
        .args(["-n", &t.nodes[0].netns, "fdb", "show", "dev", "pontifex.1"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&fdb.stdout).contains("0e:fe:ac:1f:00:0b"),
        "{fdb:?}"
    );
}

#[test]
fn destroy_leaves_nothing_and_is_idempotent() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let cfg = test_lab(&prefix);
    rt().block_on(async {
        let t = two_nodes_with_a_pod_each(&cfg, None).await;
        assert_eq!(t.nodes.len(), 2);
        assert_eq!(netns::list(&format!("{prefix}-")).unwrap().len(), 4);
        // `up` again over the existing lab (a crashed run) starts clean.
        let again = lab::up(&cfg, &["a"]).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            netns::list(&format!("{prefix}-")).unwrap(),
            vec![lab::node_netns(&prefix, "a")]
        );
        lab::destroy(&prefix).await.unwrap();
        lab::destroy(&prefix).await.unwrap();
    });
    assert!(netns::list(&format!("{prefix}-")).unwrap().is_empty());
    let links = ip_out(&["-o", "link"]);
    for l in links.lines() {
        let name = l.split(':').nth(1).unwrap_or("").trim();
        assert!(!name.starts_with(&prefix), "{name} left behind");
    }
    let names = ip_out(&["netns", "list"]);
    assert!(!names.contains(&format!("{prefix}-")), "{names}");
}

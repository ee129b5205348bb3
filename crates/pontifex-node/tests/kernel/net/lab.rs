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
                node_ip: n.ip.into(),
                pod_cidr: c.into(),
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
        sandbox::ensure_bridge(Some(&n.netns), &[cidrs[i].into()])
            .await
            .unwrap();
        let ns = lab::pod_netns(&cfg.prefix, &format!("p{i}"));
        let ip = std::net::Ipv4Addr::from(u32::from(cidrs[i].network()) + 2);
        sandbox::setup_pod(Some(&n.netns), &ns, &[(cidrs[i].into(), ip.into())], mtu)
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
        assert_eq!(rep.deleted, vec![ipnet::IpNet::from(t.cidrs[1])]);
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

#[test]
fn dual_stack_pods_reach_each_other_over_ipv6_with_host_gw_and_under_vxlan() {
    use std::net::{IpAddr, Ipv6Addr};
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let cfg = test_lab(&prefix).dual_stack();
    let v4: [ipnet::IpNet; 2] = [
        "10.244.0.0/24".parse().unwrap(),
        "10.244.1.0/24".parse().unwrap(),
    ];
    let v6: [ipnet::IpNet; 2] = [
        "fd00:10:244::/64".parse().unwrap(),
        "fd00:10:244:1::/64".parse().unwrap(),
    ];
    let (nodes, pods) = rt().block_on(async {
        let nodes = lab::up(&cfg, &["a", "b"]).await.unwrap();
        let mut pods = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            sandbox::ensure_bridge(Some(&n.netns), &[v4[i], v6[i]])
                .await
                .unwrap();
            let ns = lab::pod_netns(&cfg.prefix, &format!("p{i}"));
            let ip4 = IpAddr::from([10, 244, i as u8, 2]);
            let ip6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x244, i as u16, 0, 0, 0, 2));
            let net = sandbox::setup_pod(Some(&n.netns), &ns, &[(v4[i], ip4), (v6[i], ip6)], None)
                .await
                .unwrap();
            assert_eq!(net.addresses.len(), 2);
            assert_eq!(
                net.gateways[1],
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0x10, 0x244, i as u16, 0, 0, 0, 1))
            );
            let seen: Vec<IpAddr> = sandbox::inspect_pod(&ns)
                .await
                .unwrap()
                .iter()
                .map(|a| a.ip)
                .collect();
            assert_eq!(seen, vec![ip4, ip6], "IPv4 first, no link-local");
            pods.push((ns, ip6));
        }
        (nodes, pods)
    });
    assert_eq!(nodes[1].ip6, Some("fd00:172:31::11".parse().unwrap()));
    let routes: Vec<NodeRoute> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| {
            [
                NodeRoute {
                    name: n.name.clone(),
                    node_ip: n.ip.into(),
                    pod_cidr: v4[i],
                },
                NodeRoute {
                    name: n.name.clone(),
                    node_ip: n.ip6.unwrap().into(),
                    pod_cidr: v6[i],
                },
            ]
        })
        .collect();
    // The node forwards IPv6 and takes no router advertisements.
    let fwd = netns::run_in(&nodes[0].netns, || {
        (
            std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding").unwrap(),
            std::fs::read_to_string("/proc/sys/net/ipv6/conf/eth0/accept_ra").unwrap(),
        )
    })
    .unwrap();
    assert_eq!((fwd.0.trim(), fwd.1.trim()), ("1", "0"));
    // The pod address is usable at once (nodad: never tentative).
    let addr = ip_out(&["-n", &pods[0].0, "-6", "addr", "show", "dev", "eth0"]);
    let global = addr
        .lines()
        .find(|l| l.contains("fd00:10:244::2/64"))
        .unwrap_or_else(|| panic!("{addr}"));
    assert!(!global.contains("tentative"), "{addr}");
    assert!(tcp_roundtrip(&pods[0].0, SocketAddr::from((pods[1].1, 9)), "x").is_err());

    rt().block_on(async {
        for n in &nodes {
            let rep = routes::sync_host_gw(Some(&n.netns), &n.name, &routes)
                .await
                .unwrap();
            assert_eq!(rep.added.len(), 2, "one route per family");
        }
    });
    let r = ip_out(&["-n", &nodes[0].netns, "-6", "route", "show", "proto", "88"]);
    assert!(
        r.contains("fd00:10:244:1::/64 via fd00:172:31::11 dev eth0"),
        "{r}"
    );
    tcp_echo(&pods[1].0, pods[1].1, 7200);
    assert_eq!(
        tcp_roundtrip(&pods[0].0, SocketAddr::from((pods[1].1, 7200)), "v6 across").unwrap(),
        "v6 across"
    );

    // VXLAN carries IPv4 only: the IPv6 host-gw routes stay, and still carry traffic.
    rt().block_on(async {
        for n in &nodes {
            let rep = routes::sync_vxlan(Some(&n.netns), &n.name, &routes)
                .await
                .unwrap();
            assert_eq!(rep.replaced.len(), 1, "only the IPv4 route changes");
            assert!(rep.deleted.is_empty(), "{rep:?}");
        }
    });
    let r = ip_out(&["-n", &nodes[0].netns, "-6", "route", "show", "proto", "88"]);
    assert!(r.contains("fd00:10:244:1::/64 via fd00:172:31::11"), "{r}");
    tcp_echo(&pods[0].0, pods[0].1, 7201);
    assert_eq!(
        tcp_roundtrip(&pods[1].0, SocketAddr::from((pods[0].1, 7201)), "v6 back").unwrap(),
        "v6 back"
    );
}

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};
use pontifex_node::net::{ipam::Ipam, lab, netns, sandbox};

use super::support::{
    Cleanup, ip_out, rt, tcp_echo, tcp_roundtrip, udp_echo, udp_roundtrip, unique_prefix,
};

#[test]
fn two_pods_on_one_node_talk_tcp_and_udp() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let node = lab::node_netns(&prefix, "n1");
    let cidr: Ipv4Net = "10.244.1.0/24".parse().unwrap();
    let store = tempfile::tempdir().unwrap();
    let ipam = Ipam::open(store.path(), cidr).unwrap();
    let (pa, pb) = (lab::pod_netns(&prefix, "a"), lab::pod_netns(&prefix, "b"));
    let (ia, ib) = (ipam.allocate("a").unwrap(), ipam.allocate("b").unwrap());
    let (IpAddr::V4(ia), IpAddr::V4(ib)) = (ia, ib) else {
        panic!("IPv4 pod addresses expected")
    };
    let cidrs = [IpNet::V4(cidr)];

    rt().block_on(async {
        netns::create(&node).unwrap();
        sandbox::ensure_bridge(Some(&node), &cidrs).await.unwrap();
        sandbox::ensure_bridge(Some(&node), &cidrs).await.unwrap();
        let a = sandbox::setup_pod(Some(&node), &pa, &[(cidrs[0], ia.into())], None)
            .await
            .unwrap();
        // Retrying a set-up is harmless.
        let a2 = sandbox::setup_pod(Some(&node), &pa, &[(cidrs[0], ia.into())], None)
            .await
            .unwrap();
        assert_eq!(a, a2);
        sandbox::setup_pod(Some(&node), &pb, &[(cidrs[0], ib.into())], None)
            .await
            .unwrap();
        assert_eq!(a.gateways, vec![IpAddr::V4(Ipv4Addr::new(10, 244, 1, 1))]);
        assert_eq!(a.host_veth, sandbox::host_veth_name(&pa));
        assert!(a.host_veth.len() <= 15);
        let seen = sandbox::inspect_pod(&pb).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].ip, seen[0].prefix_len), (IpAddr::V4(ib), 24));
        assert!(
            sandbox::inspect_pod(&format!("{prefix}-pod-none"))
                .await
                .unwrap()
                .is_empty()
        );
    });

    let fwd = netns::run_in(&node, || {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap()
    })
    .unwrap();
    assert_eq!(fwd.trim(), "1");
    let routes = ip_out(&["-n", &pa, "route"]);
    assert!(
        routes.contains("default via 10.244.1.1 dev eth0"),
        "{routes}"
    );
    let br = ip_out(&["-n", &node, "-o", "addr", "show", "dev", "cni0"]);
    assert!(br.contains("10.244.1.1/24"), "{br}");

    tcp_echo(&pb, ib, 8080);
    assert_eq!(
        tcp_roundtrip(&pa, SocketAddr::from((ib, 8080)), "hello tcp").unwrap(),
        "hello tcp"
    );
    udp_echo(&pb, ib, 8081);
    assert_eq!(
        udp_roundtrip(&pa, SocketAddr::from((ib, 8081)), "hello udp").unwrap(),
        "hello udp"
    );
    // The pod reaches its gateway too (the node itself).
    tcp_echo(&node, Ipv4Addr::new(10, 244, 1, 1), 8082);
    assert_eq!(
        tcp_roundtrip(&pa, SocketAddr::from(([10, 244, 1, 1], 8082)), "gw").unwrap(),
        "gw"
    );

    rt().block_on(async {
        sandbox::teardown_pod(Some(&node), &pb).await.unwrap();
        sandbox::teardown_pod(Some(&node), &pb).await.unwrap();
    });
    assert!(!netns::exists(&pb).unwrap());
    let links = ip_out(&["-n", &node, "-o", "link"]);
    assert!(!links.contains(&sandbox::host_veth_name(&pb)), "{links}");
    assert!(links.contains(&sandbox::host_veth_name(&pa)), "{links}");
    assert!(tcp_roundtrip(&pa, SocketAddr::from((ib, 8080)), "gone").is_err());
}

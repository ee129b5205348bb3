use ipnet::{IpNet, Ipv4Net};
use pontifex_node::net::lab;
use pontifex_node::net::routes::{self, NodeRoute};

use super::lab::test_lab;
use super::support::{Cleanup, ip_out, rt, unique_prefix};

fn node(name: &str, ip: [u8; 4], cidr: &str) -> NodeRoute {
    NodeRoute {
        name: name.into(),
        node_ip: std::net::Ipv4Addr::from(ip).into(),
        pod_cidr: cidr.parse::<Ipv4Net>().unwrap().into(),
    }
}

#[test]
fn host_gw_sync_removes_stale_and_keeps_foreign_routes() {
    let prefix = unique_prefix();
    let _cleanup = Cleanup(prefix.clone());
    let cfg = test_lab(&prefix);
    let me = rt().block_on(lab::up(&cfg, &["me"])).unwrap().remove(0);
    let ns = me.netns.as_str();
    // A route that is not ours, to the same kind of destination.
    ip_out(&[
        "-n",
        ns,
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        "172.31.0.30",
    ]);

    let three = [
        node("me", [172, 31, 0, 10], "10.244.0.0/24"),
        node("b", [172, 31, 0, 11], "10.244.1.0/24"),
        node("c", [172, 31, 0, 12], "10.244.2.0/24"),
    ];
    rt().block_on(async {
        let rep = routes::sync_host_gw(Some(ns), "me", &three).await.unwrap();
        assert_eq!(rep.added.len(), 2);
        // c leaves, b moves to another address.
        let two = [
            three[0].clone(),
            node("b", [172, 31, 0, 21], "10.244.1.0/24"),
        ];
        let rep = routes::sync_host_gw(Some(ns), "me", &two).await.unwrap();
        assert_eq!(rep.deleted, vec!["10.244.2.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(
            rep.replaced,
            vec!["10.244.1.0/24".parse::<IpNet>().unwrap()]
        );
    });
    let ours = ip_out(&["-n", ns, "route", "show", "proto", "88"]);
    assert_eq!(
        ours.trim(),
        "10.244.1.0/24 via 172.31.0.21 dev eth0",
        "{ours}"
    );
    let all = ip_out(&["-n", ns, "route"]);
    assert!(all.contains("10.99.0.0/24 via 172.31.0.30"), "{all}");
    assert!(all.contains("172.31.0.0/24 dev eth0"), "{all}");

    // An empty node list removes all of ours and still nothing else.
    rt().block_on(routes::sync_host_gw(Some(ns), "me", &[]))
        .unwrap();
    assert_eq!(
        ip_out(&["-n", ns, "route", "show", "proto", "88"]).trim(),
        ""
    );
    assert!(ip_out(&["-n", ns, "route"]).contains("10.99.0.0/24"));
}

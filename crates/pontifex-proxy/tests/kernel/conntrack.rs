//! Stale UDP conntrack entries deleted over our own ctnetlink ([`pontifex_proxy::nfnetlink`]
//! through [`KernelApplier::conntrack_delete`]): real entries made by real DNATed traffic in the
//! lab's node namespace, deleted by flush, and observed with the `conntrack` CLI as an
//! independent witness — exactly the entries a flush names go, every other one stays.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use pontifex_proxy::apply::Applier as _;
use pontifex_proxy::model::{ConntrackFlush, ConntrackTarget, IpFamily};
use pontifex_proxy::nfnetlink::NfSocket;
use pontifex_proxy::nfnetlink::conntrack::IPPROTO_UDP;

use super::*;

/// One UDP entry as seen from outside: original destination, original source port, reply
/// source (the endpoint after DNAT).
type Entry = (IpAddr, u16, IpAddr);

/// `conntrack -L -p udp` in `ns`, parsed.
fn cli_entries(ns: &str) -> BTreeSet<Entry> {
    sh(&["ip", "netns", "exec", ns, "conntrack", "-L", "-p", "udp"])
        .lines()
        .filter_map(|l| {
            let vals = |key: &str| -> Vec<&str> {
                l.split_whitespace()
                    .filter_map(|t| t.strip_prefix(key))
                    .collect()
            };
            let (dst, sport, src) = (vals("dst="), vals("sport="), vals("src="));
            Some((
                dst.first()?.parse().ok()?,
                sport.first()?.parse().ok()?,
                src.get(1)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Our own dump of the same table.
fn our_entries(ns: &str) -> BTreeSet<Entry> {
    let mut sock = NfSocket::open(Some(ns)).unwrap();
    sock.conntrack_flows(false, IPPROTO_UDP)
        .unwrap()
        .iter()
        .map(|f| (f.orig.dst, f.orig.src_port, f.reply.src))
        .collect()
}

/// One UDP exchange per source port from the node namespace to `to`; which pod answered each.
fn exchanges(ns: &str, to: &str, ports: std::ops::Range<u16>) -> Vec<(u16, String)> {
    let to: SocketAddr = to.parse().unwrap();
    in_ns(ns, move || {
        ports
            .map(|p| {
                let u = UdpSocket::bind(("0.0.0.0", p)).unwrap();
                u.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                u.send_to(b"q", to).unwrap();
                let mut buf = [0u8; 16];
                let (n, _) = u
                    .recv_from(&mut buf)
                    .expect("an answer through the ClusterIP");
                (p, String::from_utf8_lossy(&buf[..n]).into_owned())
            })
            .collect()
    })
    .join()
    .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod_ip(name: &str) -> IpAddr {
    match name {
        "p1" => ip("10.244.0.2"),
        _ => ip("10.244.0.3"),
    }
}

#[test]
fn conntrack_delete_removes_exactly_the_matching_udp_entries() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let mut p = proxier(&lab, ProxyMode::Nftables, NftLayout::Maps);
    replace(
        &mut p,
        vec![
            udp_service("dns", "10.96.0.12", 53),
            udp_service("other", "10.96.0.13", 53),
        ],
        vec![
            udp_slice("dns", &["10.244.0.2", "10.244.0.3"]),
            udp_slice("other", &["10.244.0.2", "10.244.0.3"]),
        ],
    );
    let dns = exchanges(&lab.node, "10.96.0.12:53", 42000..42008);
    let other = exchanges(&lab.node, "10.96.0.13:53", 43000..43008);
    let mut expect: BTreeSet<Entry> = BTreeSet::new();
    for (svc, answers) in [("10.96.0.12", &dns), ("10.96.0.13", &other)] {
        for (port, who) in answers {
            expect.insert((ip(svc), *port, pod_ip(who)));
        }
    }
    let before = cli_entries(&lab.node);
    assert!(expect.is_subset(&before), "{expect:?}\n{before:?}");
    assert_eq!(our_entries(&lab.node), before, "our dump = conntrack -L");

    let mut applier = KernelApplier::new(Some(&lab.node)).unwrap();
    let mut delete = |target: ConntrackTarget, endpoint: Option<&str>| -> usize {
        let f = ConntrackFlush {
            target,
            endpoint: endpoint.map(|e| e.parse().unwrap()),
        };
        applier.conntrack_delete(IpFamily::V4, &[f]).unwrap()
    };
    let gone = |e: &Entry, dst: &str, ep: Option<&str>| {
        e.0 == ip(dst) && ep.is_none_or(|ep| e.2 == ip(ep))
    };
    let check = |removed: &dyn Fn(&Entry) -> bool, deleted: usize, before: &BTreeSet<Entry>| {
        let after = cli_entries(&lab.node);
        let want: BTreeSet<Entry> = before.iter().filter(|e| !removed(e)).copied().collect();
        assert_eq!(after, want, "exactly the named entries go");
        assert_eq!(
            deleted,
            before.len() - want.len(),
            "the count is the kernel's"
        );
        after
    };

    // 1. A removed endpoint of one service: only that service's flows DNATed to it.
    let n = delete(
        ConntrackTarget::Ip(ip("10.96.0.12"), 53),
        Some("10.244.0.2:8080"),
    );
    let now = check(&|e| gone(e, "10.96.0.12", Some("10.244.0.2")), n, &before);
    // 2. A node-port style flush (original destination port, any address) for one endpoint:
    //    both services' flows to p2 (both are port 53).
    let n = delete(ConntrackTarget::NodePort(53), Some("10.244.0.3:8080"));
    let now = check(&|e| e.2 == ip("10.244.0.3"), n, &now);
    // 3. The whole service address.
    let n = delete(ConntrackTarget::Ip(ip("10.96.0.12"), 53), None);
    let now = check(&|e| gone(e, "10.96.0.12", None), n, &now);
    // Another port of the same address names nothing.
    assert_eq!(delete(ConntrackTarget::Ip(ip("10.96.0.13"), 54), None), 0);
    assert_eq!(cli_entries(&lab.node), now);
    // The other service's flows to p1 are all still there.
    let left: BTreeSet<Entry> = other
        .iter()
        .filter(|(_, w)| w == "p1")
        .map(|(p, w)| (ip("10.96.0.13"), *p, pod_ip(w)))
        .collect();
    assert!(left.is_subset(&now), "{left:?} {now:?}");
}

#[test]
fn conntrack_delete_of_entries_already_gone_is_not_an_error() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let mut p = proxier(&lab, ProxyMode::Iptables, NftLayout::Maps);
    replace(
        &mut p,
        vec![udp_service("dns", "10.96.0.12", 53)],
        vec![udp_slice("dns", &["10.244.0.2"])],
    );
    exchanges(&lab.node, "10.96.0.12:53", 44000..44003);
    let mut sock = NfSocket::open(Some(&lab.node)).unwrap();
    let flows: Vec<_> = sock
        .conntrack_flows(false, IPPROTO_UDP)
        .unwrap()
        .into_iter()
        .filter(|f| f.orig.dst == ip("10.96.0.12"))
        .collect();
    assert_eq!(flows.len(), 3);
    assert_eq!(sock.conntrack_delete(&flows).unwrap(), 3);
    // ENOENT for each: nothing deleted, no error.
    assert_eq!(sock.conntrack_delete(&flows).unwrap(), 0);
    assert!(cli_entries(&lab.node).is_empty());
}

//! The INVALID drop and its counters ([`pontifex_proxy::counters`]) against the real kernel:
//! a client, a router running the proxier's rules and a server, each a namespace of the
//! test's own. TCP segments with an invalid flag combination (SYN|FIN), sent from the client
//! with a raw socket, are marked INVALID by the router's conntrack and dropped by the
//! proxier's forward rule; the nfacct object (iptables) or the table's named counter
//! (nftables) rises by exactly the number sent, and the metrics text shows it. With
//! `nf_conntrack_tcp_be_liberal=1` in the router there is no such rule.

use std::net::{Ipv4Addr, SocketAddrV4};

use pontifex_proxy::counters::{self, INVALID_DROPPED_COUNTER, LOCALHOST_NODEPORTS_COUNTER};
use pontifex_proxy::nfnetlink::NfSocket;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::netlink::Netns;
use super::*;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 2, 2);

/// client (10.77.1.2) — router (10.77.1.1 | 10.77.2.1, forwarding) — server (10.77.2.2).
struct Topo {
    client: Netns,
    router: Netns,
    server: Netns,
}

fn topo(tag: &str) -> Topo {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = |role: &str| format!("pfxct{tag}{role}-{}-{n}", std::process::id());
    let t = Topo {
        client: Netns(name("c")),
        router: Netns(name("r")),
        server: Netns(name("s")),
    };
    for ns in [&t.client.0, &t.router.0, &t.server.0] {
        sh(&["ip", "netns", "add", ns]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let r = t.router.0.as_str();
    for (end, ns, net) in [("c", &t.client.0, 1), ("s", &t.server.0, 2)] {
        let (here, there) = (format!("to{end}"), "eth0");
        sh(&[
            "ip", "-n", r, "link", "add", &here, "type", "veth", "peer", "name", there, "netns", ns,
        ]);
        sh(&[
            "ip",
            "-n",
            r,
            "addr",
            "add",
            &format!("10.77.{net}.1/24"),
            "dev",
            &here,
        ]);
        sh(&["ip", "-n", r, "link", "set", &here, "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("10.77.{net}.2/24"),
            "dev",
            there,
        ]);
        sh(&["ip", "-n", ns, "link", "set", there, "up"]);
        sh(&[
            "ip",
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &format!("10.77.{net}.1"),
        ]);
    }
    sh(&[
        "ip",
        "netns",
        "exec",
        r,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);
    t
}

fn set_liberal(ns: &str, on: bool) {
    let v = format!("net.netfilter.nf_conntrack_tcp_be_liberal={}", u8::from(on));
    sh(&["ip", "netns", "exec", ns, "sysctl", "-qw", &v]);
}

/// The one's-complement sum TCP's checksum uses.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for p in parts {
        for c in p.chunks(2) {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            sum += u32::from(w);
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP header (no options, no payload) with `flags` and a correct checksum, so the only thing
/// wrong with it is the flag combination.
fn tcp_segment(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    let c = checksum(&[&pseudo, &h]);
    h[16..18].copy_from_slice(&c.to_be_bytes());
    h
}

/// Sends `n` SYN|FIN segments from the client to the server, after one ordinary connection
/// attempt (refused by the server) that proves the path and resolves the neighbours.
fn send_invalid(t: &Topo, n: usize) {
    in_ns(&t.client.0, move || {
        let err =
            TcpStream::connect_timeout(&SocketAddr::from((SERVER, 9)), Duration::from_secs(2))
                .unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "path through the router"
        );
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).unwrap();
        let to = SockAddr::from(SocketAddrV4::new(SERVER, 0));
        for i in 0..n {
            let seg = tcp_segment(CLIENT, SERVER, 40000 + i as u16, 9, 0x03);
            s.send_to(&seg, &to).unwrap();
        }
    })
    .join()
    .unwrap();
    // Forwarding is synchronous in the sender's softirq, but give the counters a moment.
    std::thread::sleep(Duration::from_millis(200));
}

fn started(
    t: &Topo,
    mode: ProxyMode,
    layout: NftLayout,
) -> (Proxier<KernelApplier>, Arc<ProxyMetrics>) {
    let mut cfg = ProxierConfig::new(mode, "node-a");
    cfg.nftables.layout = layout;
    let metrics = Arc::new(ProxyMetrics::default());
    counters::setup(&mut cfg, Some(&t.router.0)).install(&metrics);
    let mut p = Proxier::new(
        cfg,
        KernelApplier::new(Some(&t.router.0)).unwrap(),
        metrics.clone(),
        Arc::new(ProxyHealth::new(Duration::from_secs(30))),
    );
    replace(&mut p, vec![], vec![]);
    (p, metrics)
}

const METRIC: &str = "kubeproxy_iptables_ct_state_invalid_dropped_packets_total";

fn invalid_dropped_and_counted(mode: ProxyMode, layout: NftLayout) {
    if !can_run() {
        return;
    }
    let t = topo(if mode == ProxyMode::Iptables {
        "i"
    } else {
        "n"
    });
    set_liberal(&t.router.0, false);
    let (p, metrics) = started(&t, mode, layout);
    let read = || -> u64 {
        let mut sock = NfSocket::open(Some(&t.router.0)).unwrap();
        let c = match mode {
            ProxyMode::Iptables => sock.nfacct_get(INVALID_DROPPED_COUNTER),
            ProxyMode::Nftables => sock.nft_counter(2, "pontifex", INVALID_DROPPED_COUNTER),
        };
        c.unwrap().expect("the counter exists").packets
    };
    if mode == ProxyMode::Iptables {
        assert!(p.config().iptables.nfacct_invalid);
        assert!(p.config().iptables.nfacct_localhost_node_ports);
        let mut sock = NfSocket::open(Some(&t.router.0)).unwrap();
        assert!(
            sock.nfacct_get(LOCALHOST_NODEPORTS_COUNTER)
                .unwrap()
                .is_some()
        );
    } else {
        assert!(p.config().nftables.invalid_drop);
    }
    let before = read();
    assert!(
        metrics.render().contains(&format!("\n{METRIC} {before}\n")),
        "{}",
        metrics.render()
    );
    send_invalid(&t, 5);
    assert_eq!(
        read() - before,
        5,
        "{mode:?}: each invalid segment dropped and counted once"
    );
    assert!(
        metrics
            .render()
            .contains(&format!("\n{METRIC} {}\n", before + 5))
    );
    // An independent witness: the tool's own view of the rule's or the object's count.
    let witness = match mode {
        ProxyMode::Iptables => Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.router.0,
                "iptables",
                "-w",
                "-t",
                "filter",
                "-vxnL",
                "KUBE-FORWARD",
            ])
            .output()
            .unwrap(),
        ProxyMode::Nftables => Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.router.0,
                "nft",
                "list",
                "counter",
                "ip",
                "pontifex",
                INVALID_DROPPED_COUNTER,
            ])
            .output()
            .unwrap(),
    };
    let text = String::from_utf8_lossy(&witness.stdout).into_owned();
    let seen = match mode {
        ProxyMode::Iptables => text
            .lines()
            .find(|l| l.contains("INVALID"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok()),
        ProxyMode::Nftables => text
            .split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok()),
    };
    assert_eq!(seen, Some(before + 5), "{text}");
    drop(p);
    // A restarted proxier (full sync over the existing table/objects) keeps the counts.
    let (_p2, metrics2) = started(&t, mode, layout);
    assert_eq!(read(), before + 5, "{mode:?}: a restart keeps the counts");
    assert!(
        metrics2
            .render()
            .contains(&format!("\n{METRIC} {}\n", before + 5))
    );
}

#[test]
fn iptables_invalid_packets_are_dropped_and_counted_in_nfacct() {
    invalid_dropped_and_counted(ProxyMode::Iptables, NftLayout::Maps);
}

#[test]
fn nftables_invalid_packets_are_dropped_and_counted() {
    invalid_dropped_and_counted(ProxyMode::Nftables, NftLayout::Maps);
}

#[test]
fn nftables_chains_invalid_packets_are_dropped_and_counted() {
    invalid_dropped_and_counted(ProxyMode::Nftables, NftLayout::Chains);
}

fn liberal_means_no_rule(mode: ProxyMode) {
    if !can_run() {
        return;
    }
    let t = topo(if mode == ProxyMode::Iptables {
        "li"
    } else {
        "ln"
    });
    set_liberal(&t.router.0, true);
    let (p, metrics) = started(&t, mode, NftLayout::Maps);
    let rules = match mode {
        ProxyMode::Iptables => {
            assert!(p.config().iptables.conntrack_tcp_be_liberal);
            let out = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &t.router.0,
                    "iptables-save",
                    "-t",
                    "filter",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        ProxyMode::Nftables => {
            assert!(!p.config().nftables.invalid_drop);
            listing(&t.router.0)
        }
    };
    assert!(
        rules.contains("KUBE-FORWARD") || rules.contains("filter-forward"),
        "{rules}"
    );
    assert!(
        !rules.contains("INVALID") && !rules.contains("ct state invalid"),
        "{rules}"
    );
    assert!(!metrics.render().contains(METRIC));
    // Conntrack still marks such segments INVALID; no rule drops or counts them.
    send_invalid(&t, 3);
    assert!(!metrics.render().contains(METRIC));
}

#[test]
fn iptables_with_tcp_be_liberal_has_no_invalid_drop() {
    liberal_means_no_rule(ProxyMode::Iptables);
}

#[test]
fn nftables_with_tcp_be_liberal_has_no_invalid_drop() {
    liberal_means_no_rule(ProxyMode::Nftables);
}

/// iptables mode's localhost NodePorts (`localhostNodePorts`, IPv4): each connection the node
/// makes to 127.0.0.1:NODEPORT passes the nat rule once and is counted in nfacct
/// `localhost_nps_accepted_pkts`, shown as kube-proxy's metric.
#[test]
fn iptables_localhost_node_port_connections_are_counted() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.node,
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.route_localnet=1",
    ]);
    let mut cfg = ProxierConfig::new(ProxyMode::Iptables, "node-a");
    cfg.iptables.local_detector = LocalDetector::Cidr("10.244.0.0/16".parse().unwrap());
    let metrics = Arc::new(ProxyMetrics::default());
    counters::setup(&mut cfg, Some(&lab.node)).install(&metrics);
    assert!(cfg.iptables.nfacct_localhost_node_ports);
    let mut p = Proxier::new(
        cfg,
        KernelApplier::new(Some(&lab.node)).unwrap(),
        metrics.clone(),
        Arc::new(ProxyHealth::new(Duration::from_secs(30))),
    );
    replace(
        &mut p,
        vec![service("web", 80, Some(30080))],
        vec![slice("web", &["10.244.0.2", "10.244.0.3"])],
    );
    let name = "kubeproxy_iptables_localhost_nodeports_accepted_packets_total";
    assert!(metrics.render().contains(&format!("\n{name} 0\n")));
    let got = ask_many(&lab.node, "127.0.0.1:30080", 3);
    assert!(got.iter().all(Result::is_ok), "{got:?}");
    let mut sock = NfSocket::open(Some(&lab.node)).unwrap();
    let c = sock
        .nfacct_get(LOCALHOST_NODEPORTS_COUNTER)
        .unwrap()
        .unwrap();
    assert_eq!(
        c.packets, 3,
        "one per connection (the nat table sees its first packet)"
    );
    assert!(metrics.render().contains(&format!("\n{name} 3\n")));
    // The node IP's NodePort is not counted there.
    let _ = ask_many(&lab.node, "10.244.0.1:30080", 1);
    assert_eq!(
        sock.nfacct_get(LOCALHOST_NODEPORTS_COUNTER)
            .unwrap()
            .unwrap()
            .packets,
        3
    );
}

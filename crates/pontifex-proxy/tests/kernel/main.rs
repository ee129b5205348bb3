//! Real-kernel tests of the proxier (root): each test builds its own throw-away topology — a
//! "node" network namespace with a bridge `cni0` (10.244.0.1/24) and two "pod" namespaces on
//! it (10.244.0.2 and .3, default route via the bridge) running TCP and UDP echo servers that
//! answer with their pod's name — programs Services through [`Proxier`] with the real `nft` /
//! `iptables-restore` inside the node namespace, and sends real packets, only between these
//! namespaces.
//!
//! Found while building it: a pod reaching another pod on the same bridge through a ClusterIP
//! needs `net.bridge.bridge-nf-call-iptables=1` in the node namespace (the reply is bridged,
//! not routed, so without it conntrack never un-DNATs it and the client sees a reply from the
//! pod IP). With that setting, a pod reaching itself through its Service (hairpin) also needs
//! `hairpin on` on its bridge port (CNI bridge's `hairpinMode: true`, kubelet's
//! `hairpin-veth`): br_netfilter DNATs at the bridge's prerouting and, the new destination being
//! on the same bridge, bridges the frame back out of the port it came in on — dropped without
//! hairpin mode (measured: every hairpin connection timed out). The endpoint chain's
//! masquerade then makes the reply come back through the node. `ip_forward=1` is needed for
//! anything routed. And the node needs a route covering the service CIDR (real nodes have a
//! default route; the sealed lab has none): without one, a pod's packet to a ClusterIP without
//! endpoints fails routing before the filter hook ("network unreachable" instead of the
//! REJECT's "connection refused"), and the node itself cannot reach any ClusterIP (the output
//! route lookup happens before nat OUTPUT). The test routes 10.96.0.0/12 to one end of
//! a veth pair inside the node (this kernel has no `dummy` module). Routing it to `cni0`
//! instead does NOT work: a pod's packet would be forwarded back out of the bridge it came
//! from, and the REJECT's ICMP error was never sent (measured: connect timed out, zero ICMP
//! packets in the node's output hook) — the lab must use a separate device.
//!
//! Tests skip (pass with a note) when not root or the tools are missing.
#![allow(unsafe_code)] // setns(2) on test threads, to run servers and clients inside pods.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use pontifex_proxy::apply::KernelApplier;
use pontifex_proxy::health::ProxyHealth;
use pontifex_proxy::iptables::LocalDetector;
use pontifex_proxy::metrics::ProxyMetrics;
use pontifex_proxy::model::ServiceKey;
use pontifex_proxy::nftables::NftLayout;
use pontifex_proxy::sync::{Proxier, ProxierConfig, ProxyEvent, ProxyMode, SyncReport};

mod conntrack;
mod counters;
mod ipv6;
mod netlink;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// Runs `args`, which must succeed; its standard output.
fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // `ip -V`; the others take --version.
    let tools = [
        ("ip", "-V"),
        ("nft", "--version"),
        ("iptables-restore", "--version"),
        ("conntrack", "--version"),
    ]
    .iter()
    .all(|(t, a)| {
        Command::new(t)
            .arg(a)
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        eprintln!("skipping: needs root, ip, nft, iptables-restore and conntrack");
    }
    root && tools
}

/// The lab: node namespace + two pods; deleted on drop.
struct Lab {
    node: String,
    pods: Vec<String>,
    stop: Arc<AtomicBool>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if std::env::var_os("PFX_KEEP_LAB").is_some() {
            eprintln!("keeping {} {:?}", self.node, self.pods);
            return;
        }
        for ns in self.pods.iter().chain([&self.node]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap();
        // SAFETY: a valid namespace fd; setns only changes this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}");
        f()
    })
}

impl Lab {
    fn new() -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("pfxk-{}-{n}", std::process::id());
        let lab = Lab {
            node: format!("{base}-node"),
            pods: vec![format!("{base}-p1"), format!("{base}-p2")],
            stop: Arc::default(),
        };
        for ns in lab.pods.iter().chain([&lab.node]) {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let node = lab.node.as_str();
        sh(&["ip", "-n", node, "link", "add", "cni0", "type", "bridge"]);
        sh(&[
            "ip",
            "-n",
            node,
            "addr",
            "add",
            "10.244.0.1/24",
            "dev",
            "cni0",
        ]);
        sh(&["ip", "-n", node, "link", "set", "cni0", "up"]);
        // The service CIDR needs a route in the node (see the crate doc).
        sh(&[
            "ip", "-n", node, "link", "add", "svc0", "type", "veth", "peer", "name", "svc1",
        ]);
        sh(&["ip", "-n", node, "link", "set", "svc0", "up"]);
        sh(&["ip", "-n", node, "link", "set", "svc1", "up"]);
        sh(&[
            "ip",
            "-n",
            node,
            "route",
            "add",
            "10.96.0.0/12",
            "dev",
            "svc0",
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            node,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.bridge.bridge-nf-call-iptables=1",
        ]);
        for (i, pod) in lab.pods.iter().enumerate() {
            let veth = format!("veth{i}");
            let ip = format!("10.244.0.{}/24", i + 2);
            sh(&[
                "ip", "-n", node, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", pod,
            ]);
            sh(&[
                "ip", "-n", node, "link", "set", &veth, "master", "cni0", "up",
            ]);
            // Hairpin (a pod reaching itself through its Service) needs it: see the crate doc.
            sh(&[
                "ip",
                "-n",
                node,
                "link",
                "set",
                &veth,
                "type",
                "bridge_slave",
                "hairpin",
                "on",
            ]);
            sh(&["ip", "-n", pod, "addr", "add", &ip, "dev", "eth0"]);
            sh(&["ip", "-n", pod, "link", "set", "eth0", "up"]);
            sh(&[
                "ip",
                "-n",
                pod,
                "route",
                "add",
                "default",
                "via",
                "10.244.0.1",
            ]);
            lab.serve(pod, format!("p{}", i + 1));
        }
        lab
    }

    /// TCP and UDP echo servers on port 8080 that answer with `name`.
    fn serve(&self, pod: &str, name: String) {
        self.serve_tcp(pod, "0.0.0.0:8080".into(), name.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = self.stop.clone();
        let (n2, tx2) = (name, ready_tx);
        in_ns(pod, move || {
            let u = UdpSocket::bind("0.0.0.0:8080").unwrap();
            u.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tx2.send(()).unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((_, from)) = u.recv_from(&mut buf) {
                    let _ = u.send_to(n2.as_bytes(), from);
                }
            }
        });
        ready_rx.recv().unwrap();
    }

    /// A TCP server in `pod` on `bind` that answers every connection with `name`; returns once
    /// it listens.
    fn serve_tcp(&self, pod: &str, bind: String, name: String) {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let stop = self.stop.clone();
        in_ns(pod, move || {
            let l = TcpListener::bind(bind).unwrap();
            l.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(name.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ready_rx.recv().unwrap();
    }
}

/// One TCP exchange: the answering pod's name, or the error kind.
fn tcp_ask(addr: SocketAddr) -> Result<String, std::io::ErrorKind> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.kind())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.kind())?;
    Ok(out)
}

/// `n` TCP exchanges from inside `ns`.
fn ask_many(ns: &str, addr: &str, n: usize) -> Vec<Result<String, std::io::ErrorKind>> {
    let addr: SocketAddr = addr.parse().unwrap();
    in_ns(ns, move || (0..n).map(|_| tcp_ask(addr)).collect())
        .join()
        .unwrap()
}

fn service(name: &str, port: u16, node_port: Option<u16>) -> Service {
    let mut spec = serde_json::json!({
        "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
        "type": if node_port.is_some() { "NodePort" } else { "ClusterIP" },
        "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}],
    });
    if let Some(np) = node_port {
        spec["ports"][0]["nodePort"] = np.into();
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": spec,
    }))
    .unwrap()
}

fn slice(svc: &str, ips: &[&str]) -> EndpointSlice {
    let eps: Vec<_> = ips
        .iter()
        .map(|ip| serde_json::json!({"addresses": [ip], "nodeName": "node-a", "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": format!("{svc}-abc"),
            "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }))
    .unwrap()
}

fn proxier(lab: &Lab, mode: ProxyMode, layout: NftLayout) -> Proxier<KernelApplier> {
    let mut cfg = ProxierConfig::new(mode, "node-a");
    cfg.nftables.layout = layout;
    let detector = LocalDetector::Cidr("10.244.0.0/16".parse().unwrap());
    cfg.nftables.local_detector = detector.clone();
    cfg.nftables.service_cidrs = vec!["10.96.0.0/12".parse().unwrap()];
    cfg.iptables.local_detector = detector;
    Proxier::new(
        cfg,
        KernelApplier::new(Some(&lab.node)).unwrap(),
        Arc::new(ProxyMetrics::default()),
        Arc::new(ProxyHealth::new(Duration::from_secs(30))),
    )
}

fn replace(
    p: &mut Proxier<KernelApplier>,
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
) -> SyncReport {
    p.handle(ProxyEvent::Replace { services, slices }, SystemTime::now());
    p.sync(Instant::now()).expect("sync")
}

fn answered_by(
    results: &[Result<String, std::io::ErrorKind>],
) -> std::collections::BTreeSet<String> {
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    results.iter().map(|r| r.clone().unwrap()).collect()
}

fn cluster_ip_scenario(mode: ProxyMode, layout: NftLayout) {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let pod1 = lab.pods[0].clone();
    let mut p = proxier(&lab, mode, layout);
    replace(
        &mut p,
        vec![service("web", 80, Some(30080)), {
            let mut s = service("empty", 81, None);
            s.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.11".into());
            s.spec.as_mut().unwrap().cluster_ips = Some(vec!["10.96.0.11".into()]);
            s
        }],
        vec![slice("web", &["10.244.0.2", "10.244.0.3"])],
    );

    // ClusterIP from a pod: both endpoints answer (one of them is the client itself: hairpin).
    let r = ask_many(&pod1, "10.96.0.10:80", 40);
    assert_eq!(answered_by(&r), ["p1".to_owned(), "p2".to_owned()].into());

    // No endpoints: refused at once, not a timeout.
    let t = Instant::now();
    let r = ask_many(&pod1, "10.96.0.11:81", 1);
    assert_eq!(r[0], Err(std::io::ErrorKind::ConnectionRefused), "{mode:?}");
    assert!(t.elapsed() < Duration::from_millis(500));

    // NodePort on the node's address, from the node itself.
    let r = ask_many(&lab.node, "10.244.0.1:30080", 40);
    assert_eq!(answered_by(&r), ["p1".to_owned(), "p2".to_owned()].into());

    // An endpoint goes: the next sync moves every new connection.
    p.handle(
        ProxyEvent::SlicesUpdated(vec![slice("web", &["10.244.0.3"])]),
        SystemTime::now(),
    );
    let report = p.sync(Instant::now()).unwrap();
    assert!(!report.full, "second sync is incremental/partial");
    let r = ask_many(&pod1, "10.96.0.10:80", 20);
    assert_eq!(answered_by(&r), ["p2".to_owned()].into());

    // Restart: a new proxier adopts the kernel's rules and replaces them atomically while a
    // client keeps connecting.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s2, ok2, bad2) = (stop.clone(), ok.clone(), bad.clone());
    let client = in_ns(&pod1, move || {
        let addr: SocketAddr = "10.96.0.10:80".parse().unwrap();
        while !s2.load(Ordering::Relaxed) {
            match tcp_ask(addr) {
                Ok(_) => ok2.fetch_add(1, Ordering::Relaxed),
                Err(_) => bad2.fetch_add(1, Ordering::Relaxed),
            };
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    drop(p);
    for round in 0..5 {
        let mut p2 = proxier(&lab, mode, layout);
        let ips: &[&str] = if round % 2 == 0 {
            &["10.244.0.2", "10.244.0.3"]
        } else {
            &["10.244.0.3"]
        };
        let r = replace(
            &mut p2,
            vec![service("web", 80, Some(30080))],
            vec![slice("web", ips)],
        );
        // The Maps layout adopts the table in steps (no transaction flushes it).
        let maps = mode == ProxyMode::Nftables && layout == NftLayout::Maps;
        assert_eq!(r.stepped, maps, "{mode:?} {layout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let (ok, bad) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    assert!(ok > 20, "{ok} requests only");
    assert_eq!(
        bad,
        0,
        "{bad} of {} failed across restarts ({mode:?})",
        ok + bad
    );

    // After the restarts the table holds exactly the last state: the removed Service's
    // ClusterIP no longer answers with an endpoint.
    let r = ask_many(&pod1, "10.96.0.11:81", 1);
    assert!(r[0].is_err());
    let _ = ServiceKey::new("default", "web");
}

#[test]
fn nftables_cluster_ip_reject_nodeport_update_restart() {
    cluster_ip_scenario(ProxyMode::Nftables, NftLayout::Maps);
}

#[test]
fn nftables_chains_cluster_ip_reject_nodeport_update_restart() {
    cluster_ip_scenario(ProxyMode::Nftables, NftLayout::Chains);
}

#[test]
fn iptables_cluster_ip_reject_nodeport_update_restart() {
    cluster_ip_scenario(ProxyMode::Iptables, NftLayout::Maps);
}

fn udp_service(name: &str, ip: &str, port: u16) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": "default", "name": name},
        "spec": {
            "clusterIP": ip, "clusterIPs": [ip], "type": "ClusterIP",
            "ports": [{"name": "dns", "port": port, "protocol": "UDP", "targetPort": 8080}],
        },
    }))
    .unwrap()
}

fn udp_slice(svc: &str, ips: &[&str]) -> EndpointSlice {
    let mut s = slice(svc, ips);
    s.ports = Some(vec![
        serde_json::from_value(serde_json::json!({"name": "dns", "port": 8080, "protocol": "UDP"}))
            .unwrap(),
    ]);
    s
}

/// The classic kube-proxy UDP blackhole: a UDP "stream" (one 5-tuple, one conntrack entry,
/// kept alive by its own packets) whose endpoint is removed stays pinned to it until the
/// proxier deletes the entry. With the deletion it moves to the remaining endpoint within a
/// second of the sync.
fn udp_stream_moves_scenario(mode: ProxyMode, layout: NftLayout) {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let mut p = proxier(&lab, mode, layout);
    replace(
        &mut p,
        vec![udp_service("dns", "10.96.0.12", 53)],
        vec![udp_slice("dns", &["10.244.0.2", "10.244.0.3"])],
    );
    // The client runs in the node namespace from one fixed source port, 20 packets a second.
    let answers: Arc<std::sync::Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (a2, s2) = (answers.clone(), stop.clone());
    let client = in_ns(&lab.node, move || {
        let u = UdpSocket::bind("0.0.0.0:40053").unwrap();
        u.connect("10.96.0.12:53").unwrap();
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 64];
        while !s2.load(Ordering::Relaxed) {
            let _ = u.send(b"q");
            if let Ok(n) = u.recv(&mut buf) {
                let who = String::from_utf8_lossy(&buf[..n]).into_owned();
                a2.lock().unwrap().push((Instant::now(), who));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let first = {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            if let Some((_, w)) = answers.lock().unwrap().first() {
                break w.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no UDP answer through the ClusterIP"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::sleep(Duration::from_millis(300));
    // One 5-tuple, one entry: every answer so far came from the same pod.
    assert!(
        answers.lock().unwrap().iter().all(|(_, w)| *w == first),
        "{mode:?}: the stream changed endpoint on its own"
    );
    let (gone_ip, other) = if first == "p1" {
        ("10.244.0.2", "p2")
    } else {
        ("10.244.0.3", "p1")
    };
    let keep = if gone_ip == "10.244.0.2" {
        "10.244.0.3"
    } else {
        "10.244.0.2"
    };
    p.handle(
        ProxyEvent::SlicesUpdated(vec![udp_slice("dns", &[keep])]),
        SystemTime::now(),
    );
    let synced = Instant::now();
    let report = p.sync(synced).unwrap();
    assert!(report.conntrack_flushes > 0, "{mode:?}: {report:?}");
    assert_eq!(report.conntrack_error, None, "{mode:?}");
    std::thread::sleep(Duration::from_millis(1200));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let answers = answers.lock().unwrap();
    let moved_at = answers
        .iter()
        .find(|(t, w)| *t > synced && w == other)
        .map(|(t, _)| t.duration_since(synced));
    let moved_at = moved_at.unwrap_or_else(|| {
        panic!("{mode:?}: the stream never moved to {other} (stale conntrack entry)")
    });
    assert!(
        moved_at < Duration::from_secs(1),
        "{mode:?}: moved after {moved_at:?}"
    );
    // And it stays moved: nothing after the move came from the removed pod.
    assert!(
        answers
            .iter()
            .filter(|(t, _)| t.duration_since(synced) > moved_at)
            .all(|(_, w)| w == other),
        "{mode:?}: answers from the removed endpoint after the move"
    );
}

#[test]
fn nftables_udp_stream_moves_when_its_endpoint_goes() {
    udp_stream_moves_scenario(ProxyMode::Nftables, NftLayout::Maps);
}

#[test]
fn nftables_chains_udp_stream_moves_when_its_endpoint_goes() {
    udp_stream_moves_scenario(ProxyMode::Nftables, NftLayout::Chains);
}

#[test]
fn iptables_udp_stream_moves_when_its_endpoint_goes() {
    udp_stream_moves_scenario(ProxyMode::Iptables, NftLayout::Maps);
}

/// `nft list table ip pontifex` in the node, normalised: set elements sorted (the kernel lists
/// a hash set in its own order), empty non-base chains dropped (chains an incremental sync
/// emptied wait a second before they are deleted; a full sync deletes them at once), blank
/// lines dropped. Chains stay in the kernel's (creation) order: the full sync adopts the table.
fn listing(node: &str) -> String {
    let text = sh(&[
        "ip", "netns", "exec", node, "nft", "list", "table", "ip", "pontifex",
    ]);
    // One line per statement: join element lists that nft wraps.
    let text = text.replace(",\n", ", ").replace(",\n", ", ");
    let mut lines: Vec<String> = Vec::new();
    for l in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(last) = lines.last_mut()
            && last.ends_with(',')
        {
            last.push(' ');
            last.push_str(l);
        } else {
            lines.push(l.to_owned());
        }
    }
    let mut out = Vec::new();
    for l in lines {
        if let Some(body) = l.strip_prefix("elements = { ") {
            let body = body.trim_end_matches(" }").trim_end_matches('}');
            let mut items: Vec<&str> = body.split(", ").map(str::trim).collect();
            items.sort_unstable();
            out.push(format!("elements = {{ {} }}", items.join(", ")));
        } else {
            out.push(l);
        }
    }
    // Drop `chain X {` immediately followed by `}`.
    let mut kept: Vec<String> = Vec::new();
    for l in out {
        if l == "}" && kept.last().is_some_and(|p| p.starts_with("chain ")) {
            kept.pop();
            continue;
        }
        kept.push(l);
    }
    // nft lists chains in the order they were made; the order says nothing about the table's
    // meaning, so the sets, maps and chains are compared sorted.
    let (mut head, mut blocks, mut current) = (Vec::new(), Vec::new(), Vec::<String>::new());
    let mut depth = 0;
    for l in kept {
        let opens = l.ends_with('{');
        let closes = l == "}";
        if depth == 1 && opens {
            current.push(l);
            depth += 1;
        } else if depth >= 2 {
            current.push(l);
            depth = depth + usize::from(opens) - usize::from(closes);
            if depth == 1 {
                blocks.push(current.join("\n"));
                current.clear();
            }
        } else {
            depth = depth + usize::from(opens) - usize::from(closes && depth > 0);
            head.push(l);
        }
    }
    blocks.sort();
    let tail = head.pop().unwrap_or_default();
    head.extend(blocks);
    head.push(tail);
    head.join("\n")
}

fn service_at(name: &str, ip: &str, port: u16, node_port: Option<u16>) -> Service {
    let mut s = service(name, port, node_port);
    let spec = s.spec.as_mut().unwrap();
    spec.cluster_ip = Some(ip.into());
    spec.cluster_ips = Some(vec![ip.into()]);
    s
}

/// A run of incremental syncs (endpoint counts up and down, so shared pick chains come and
/// go, a Service deleted, one added) leaves the kernel with the table a full sync of the last
/// state builds.
fn incremental_ends_as_full(layout: NftLayout) {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let mut p = proxier(&lab, ProxyMode::Nftables, layout);
    replace(
        &mut p,
        vec![
            service_at("a", "10.96.0.10", 80, Some(30080)),
            service_at("b", "10.96.0.12", 80, None),
            service_at("c", "10.96.0.13", 80, None),
        ],
        vec![
            slice("a", &["10.244.0.2", "10.244.0.3"]),
            slice("b", &["10.244.0.2", "10.244.0.3", "10.244.0.4"]),
            slice("c", &["10.244.0.5"]),
        ],
    );
    let steps: Vec<ProxyEvent> = vec![
        ProxyEvent::SlicesUpdated(vec![slice("a", &["10.244.0.3"])]),
        ProxyEvent::SlicesUpdated(vec![slice("b", &["10.244.0.4"])]),
        ProxyEvent::ServicesDeleted(vec![ServiceKey::new("default", "c")]),
        ProxyEvent::SlicesUpdated(vec![slice(
            "a",
            &["10.244.0.2", "10.244.0.3", "10.244.0.6"],
        )]),
        ProxyEvent::ServicesUpdated(vec![service_at("d", "10.96.0.14", 81, Some(30081))]),
        ProxyEvent::SlicesUpdated(vec![slice("d", &["10.244.0.2", "10.244.0.3"])]),
    ];
    for e in steps {
        p.handle(e, SystemTime::now());
        let r = p.sync(Instant::now()).expect("sync");
        assert!(!r.full, "{layout:?}: incremental");
    }
    let incremental = listing(&lab.node);
    assert!(
        incremental.contains("10.96.0.14"),
        "{layout:?}: the last Service is there:\n{incremental}"
    );
    drop(p);
    let last = || {
        (
            vec![
                service_at("a", "10.96.0.10", 80, Some(30080)),
                service_at("b", "10.96.0.12", 80, None),
                service_at("d", "10.96.0.14", 81, Some(30081)),
            ],
            vec![
                slice("a", &["10.244.0.2", "10.244.0.3", "10.244.0.6"]),
                slice("b", &["10.244.0.4"]),
                slice("d", &["10.244.0.2", "10.244.0.3"]),
            ],
        )
    };
    // A new proxier adopts the table (Maps: in steps, which here change nothing).
    let mut p2 = proxier(&lab, ProxyMode::Nftables, layout);
    let (services, slices) = last();
    let r = replace(&mut p2, services, slices);
    assert_eq!(r.stepped, layout == NftLayout::Maps);
    assert_eq!(listing(&lab.node), incremental, "{layout:?}: adopted");

    // Drift a full sync must undo: an element gone, a stray element, a stray rule, a stray
    // chain.
    let nft = |cmd: &str| sh(&["ip", "netns", "exec", &lab.node, "nft", cmd]);
    let drifted = match layout {
        NftLayout::Maps => {
            "delete element ip pontifex hairpin-endpoints { 10.244.0.4 . 10.244.0.4 }\n\
             add element ip pontifex cluster-ips { 10.96.0.99 }\n"
        }
        NftLayout::Chains => "add element ip pontifex cluster-ips { 10.96.0.99 }\n",
    };
    for line in drifted.lines() {
        nft(line);
    }
    nft("add rule ip pontifex services ip daddr 10.96.0.98 drop");
    nft("add chain ip pontifex stray-chain");
    assert_ne!(listing(&lab.node), incremental, "the drift shows");
    p2.force_full();
    let r = p2.sync(Instant::now()).expect("resync");
    assert!(r.full);
    assert_eq!(r.stepped, layout == NftLayout::Maps);
    assert_eq!(listing(&lab.node), incremental, "{layout:?}: drift undone");

    // And what the incremental syncs built is what a first sync builds from nothing.
    drop(p2);
    sh(&[
        "ip",
        "netns",
        "exec",
        &lab.node,
        "nft",
        "delete table ip pontifex",
    ]);
    let mut p3 = proxier(&lab, ProxyMode::Nftables, layout);
    let (services, slices) = last();
    let r = replace(&mut p3, services, slices);
    assert!(!r.stepped);
    assert_eq!(listing(&lab.node), incremental, "{layout:?}: from nothing");
}

#[test]
fn nftables_incremental_ends_as_full() {
    incremental_ends_as_full(NftLayout::Maps);
}

#[test]
fn nftables_chains_incremental_ends_as_full() {
    incremental_ends_as_full(NftLayout::Chains);
}

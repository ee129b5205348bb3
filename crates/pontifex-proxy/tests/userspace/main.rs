//! The userspace proxy with real sockets on loopback (127.0.0.0/8 only): distribution, affinity, UDP
//! flows, half-close, draining, retries, and 10k concurrent connections.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use pontifex_proxy::userspace::{
    self, Protocol, ProxyConfig, ProxyHandle, Snapshot, VirtualService, render_ipvsadm,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::sync::watch;

mod bulk;
mod concurrency;
mod schedulers;

/// A service address unique to this test process and test case.
fn service_addr(case: u16) -> SocketAddr {
    let port = 20_000 + (std::process::id() % 2_000) as u16 * 8 + case;
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 66, 0, 1)), port)
}

/// A TCP backend: greets each connection with `<name>\n`, then echoes until EOF, then closes.
async fn tcp_backend(name: &'static str) -> SocketAddr {
    // A deep accept queue, as the proxy's own, so that bursts are not dropped by the backend.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(4096).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    addr
}

/// A UDP backend: answers each datagram with `<name>:<payload>`.
async fn udp_backend(name: &'static str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                continue;
            };
            let mut reply = format!("{name}:").into_bytes();
            reply.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&reply, from).await;
        }
    });
    addr
}

/// Send one datagram to the service and return the reply, checking where it came from.
async fn ask(c: &UdpSocket, svc: SocketAddr, msg: &str) -> String {
    c.send_to(msg.as_bytes(), svc).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), c.recv_from(&mut buf))
        .await
        .expect("reply")
        .unwrap();
    assert_eq!(from, svc, "reply comes from the service address");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn tcp_service(listen: SocketAddr, scheduler: &str, eps: &[(SocketAddr, u32)]) -> VirtualService {
    VirtualService {
        listen,
        protocol: Protocol::Tcp,
        scheduler: scheduler.into(),
        affinity_timeout: None,
        endpoints: eps.to_vec(),
        source_ranges: Vec::new(),
    }
}

struct Lab {
    tx: watch::Sender<Arc<Snapshot>>,
    proxy: ProxyHandle,
    /// Every proxy may splice, so every lab keeps the pipe-counting tests away while it runs.
    _quiet: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
}

impl Lab {
    async fn new(services: Vec<VirtualService>, config: ProxyConfig) -> Lab {
        let quiet = PIPES_QUIET.read().await;
        Lab::build(services, config, Some(quiet)).await
    }

    /// A lab for a test that holds [`PIPES_QUIET`] for writing (it counts pipes).
    async fn new_alone(services: Vec<VirtualService>, config: ProxyConfig) -> Lab {
        Lab::build(services, config, None).await
    }

    async fn build(
        services: Vec<VirtualService>,
        config: ProxyConfig,
        quiet: Option<tokio::sync::RwLockReadGuard<'static, ()>>,
    ) -> Lab {
        let (tx, rx) = watch::channel(Arc::new(Snapshot { services }));
        let proxy = userspace::spawn(rx, config);
        proxy.synced().await;
        for s in proxy.stats().services {
            assert!(s.listening, "{} not bound", s.addr);
        }
        Lab {
            tx,
            proxy,
            _quiet: quiet,
        }
    }

    async fn publish(&self, services: Vec<VirtualService>) {
        self.tx.send_replace(Arc::new(Snapshot { services }));
        self.proxy.synced().await;
    }
}

/// Connect from `source` (an address of 127/8), shut down writing, and return the greeting.
async fn greeting_from(service: SocketAddr, source: Ipv4Addr) -> String {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source.into(), 0)).unwrap();
    let mut s = sock.connect(service).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.trim_end().to_owned()
}

async fn greeting(service: SocketAddr) -> String {
    greeting_from(service, Ipv4Addr::LOCALHOST).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rr_cycles_over_three_backends() {
    let eps = [
        (tcp_backend("a").await, 1),
        (tcp_backend("b").await, 1),
        (tcp_backend("c").await, 1),
    ];
    let svc = service_addr(0);
    let lab = Lab::new(vec![tcp_service(svc, "rr", &eps)], ProxyConfig::default()).await;
    let mut seq = Vec::new();
    for _ in 0..30 {
        seq.push(greeting(svc).await);
    }
    let expected: Vec<String> = ["a", "b", "c"]
        .iter()
        .cycle()
        .take(30)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seq, expected);
    let stats = lab.proxy.stats();
    let conns: Vec<u64> = stats.services[0]
        .endpoints
        .iter()
        .map(|e| e.conns)
        .collect();
    assert_eq!(conns, [10, 10, 10]);
    let text = render_ipvsadm(&stats, true, false);
    assert!(text.contains(&format!("TCP  {svc} rr\n")), "{text}");
    assert!(
        text.contains(&format!(
            "  -> {:<28} Masq    1      0          10",
            eps[0].0
        )),
        "closed connections linger in InActConn: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrr_follows_weights() {
    let eps = [
        (tcp_backend("a").await, 3),
        (tcp_backend("b").await, 2),
        (tcp_backend("c").await, 1),
    ];
    let svc = service_addr(1);
    let _lab = Lab::new(vec![tcp_service(svc, "wrr", &eps)], ProxyConfig::default()).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..12 {
        *counts.entry(greeting(svc).await).or_default() += 1;
    }
    assert_eq!(counts["a"], 6);
    assert_eq!(counts["b"], 4);
    assert_eq!(counts["c"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_affinity_sticks() {
    let eps = [(tcp_backend("a").await, 1), (tcp_backend("b").await, 1)];
    let svc = service_addr(2);
    let mut vs = tcp_service(svc, "rr", &eps);
    vs.affinity_timeout = Some(Duration::from_secs(10800));
    let lab = Lab::new(vec![vs], ProxyConfig::default()).await;
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let first = greeting_from(svc, one).await;
    let other = greeting_from(svc, two).await;
    assert_ne!(first, other, "rr gave the second client the other backend");
    for _ in 0..6 {
        assert_eq!(greeting_from(svc, one).await, first);
        assert_eq!(greeting_from(svc, two).await, other);
    }
    let text = render_ipvsadm(&lab.proxy.stats(), true, false);
    assert!(
        text.contains(&format!("TCP  {svc} rr persistent 10800\n")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flows_reply_from_the_service_address_and_move_when_endpoints_leave() {
    let a = udp_backend("a").await;
    let b = udp_backend("b").await;
    let svc = service_addr(3);
    let vs = |eps: Vec<(SocketAddr, u32)>| VirtualService {
        listen: svc,
        protocol: Protocol::Udp,
        scheduler: "rr".into(),
        affinity_timeout: None,
        endpoints: eps,
        source_ranges: Vec::new(),
    };
    let lab = Lab::new(vec![vs(vec![(a, 1), (b, 1)])], ProxyConfig::default()).await;
    let c1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let c2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let r1 = ask(&c1, svc, "x").await;
    let backend1 = r1.split(':').next().unwrap().to_owned();
    assert_eq!(r1, format!("{backend1}:x"));
    for _ in 0..5 {
        assert_eq!(
            ask(&c1, svc, "y").await,
            format!("{backend1}:y"),
            "same flow, same endpoint"
        );
    }
    let r2 = ask(&c2, svc, "z").await;
    assert!(
        !r2.starts_with(&backend1),
        "rr gave the second flow the other endpoint: {r2}"
    );
    let stats = lab.proxy.stats();
    let inact: u32 = stats.services[0]
        .endpoints
        .iter()
        .map(|e| e.inactive_conns)
        .sum();
    assert_eq!(inact, 2, "two flows in InActConn");
    assert_eq!(stats.services[0].in_pkts, 7);
    // The first flow's endpoint leaves: its next datagram goes to the remaining one.
    let stays = if backend1 == "a" { b } else { a };
    lab.publish(vec![vs(vec![(stays, 1)])]).await;
    let moved = ask(&c1, svc, "w").await;
    assert!(!moved.starts_with(&backend1), "flow moved: {moved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_keeps_the_other_direction() {
    let svc = service_addr(4);
    let _lab = Lab::new(
        vec![tcp_service(svc, "rr", &[(tcp_backend("a").await, 1)])],
        ProxyConfig::default(),
    )
    .await;
    let mut s = TcpStream::connect(svc).await.unwrap();
    s.write_all(b"hello ").await.unwrap();
    s.write_all(b"world").await.unwrap();
    s.shutdown().await.unwrap();
    // The backend only answers the rest (echo) and closes after it saw our FIN.
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("reply after half-close")
        .unwrap();
    assert_eq!(out, "a\nhello world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_endpoint_drains() {
    let a = tcp_backend("a").await;
    let b = tcp_backend("b").await;
    let svc = service_addr(5);
    let lab = Lab::new(
        vec![tcp_service(svc, "rr", &[(a, 1), (b, 1)])],
        ProxyConfig::default(),
    )
    .await;
    let s = TcpStream::connect(svc).await.unwrap();
    let mut s = BufReader::new(s);
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "a\n");
    lab.publish(vec![tcp_service(svc, "rr", &[(b, 1)])]).await;
    for _ in 0..5 {
        assert_eq!(
            greeting(svc).await,
            "b",
            "new connections avoid the removed endpoint"
        );
    }
    // The established connection to `a` still works both ways and ends cleanly.
    s.get_mut().write_all(b"still here").await.unwrap();
    s.get_mut().shutdown().await.unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "still here");
    let stats = lab.proxy.stats();
    assert_eq!(stats.services[0].endpoints.len(), 1);
    assert_eq!(stats.services[0].conns, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_is_retried_elsewhere() {
    // An address nobody listens on: bind, learn the port, close.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let a = tcp_backend("a").await;
    let b = tcp_backend("b").await;
    let svc = service_addr(6);
    let lab = Lab::new(
        vec![tcp_service(svc, "rr", &[(dead, 1), (a, 1), (b, 1)])],
        ProxyConfig::default(),
    )
    .await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..30 {
        *counts.entry(greeting(svc).await).or_default() += 1;
    }
    assert_eq!(
        counts.values().sum::<u32>(),
        30,
        "every connection was served"
    );
    assert!(counts["a"] >= 10 && counts["b"] >= 10, "{counts:?}");
    let stats = lab.proxy.stats();
    let dead_stats = stats.services[0]
        .endpoints
        .iter()
        .find(|e| e.addr == dead)
        .unwrap();
    assert_eq!(dead_stats.conns, 0);
    assert_eq!(
        dead_stats.inactive_conns, 0,
        "failed connects leave no trace in the counters"
    );
}

/// As `tcp_backend`, with a 64-byte buffer per connection (tokio's `copy` takes 8 KiB): the 10k
/// test's backends hold ten thousand of them.
async fn small_backend(name: &'static str) -> SocketAddr {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(4096).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Tests that count this process's pipes take this for writing (and use [`Lab::new_alone`]);
/// every other lab holds it for reading, so that its pipes do not show up in a count.
static PIPES_QUIET: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Resident memory of this process, in KiB.
fn rss_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_source_ranges_refuse_and_drop_other_clients() {
    let admitted = Ipv4Addr::new(127, 0, 0, 2);
    let outsider = Ipv4Addr::new(127, 0, 0, 3);
    let ranges = vec!["127.0.0.2/32".parse().unwrap()];
    let tcp = service_addr(20);
    let udp = service_addr(21);
    let mut vs_tcp = tcp_service(tcp, "rr", &[(tcp_backend("a").await, 1)]);
    vs_tcp.source_ranges.clone_from(&ranges);
    let vs_udp = VirtualService {
        listen: udp,
        protocol: Protocol::Udp,
        scheduler: "rr".into(),
        affinity_timeout: None,
        endpoints: vec![(udp_backend("u").await, 1)],
        source_ranges: ranges,
    };
    let _lab = Lab::new(vec![vs_tcp, vs_udp], ProxyConfig::default()).await;

    assert_eq!(greeting_from(tcp, admitted).await, "a");
    // The outsider's connection is accepted by the kernel, then reset before any byte.
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(outsider.into(), 0)).unwrap();
    let mut buf = Vec::new();
    // The reset may come before the connect's completion is seen, or after.
    let read = match sock.connect(tcp).await {
        Ok(mut s) => tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .expect("refused at once"),
        Err(e) => Err(e),
    };
    assert!(
        buf.is_empty(),
        "no greeting: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionReset),
        "a reset, not a clean close"
    );

    let inside = UdpSocket::bind(SocketAddr::new(admitted.into(), 0))
        .await
        .unwrap();
    assert_eq!(ask(&inside, udp, "x").await, "u:x");
    let outside = UdpSocket::bind(SocketAddr::new(outsider.into(), 0))
        .await
        .unwrap();
    outside.send_to(b"y", udp).await.unwrap();
    let mut reply = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), outside.recv_from(&mut reply))
            .await
            .is_err(),
        "the outsider's datagram is dropped"
    );
    // The admitted client still gets through after the drop.
    assert_eq!(ask(&inside, udp, "z").await, "u:z");
}

/// Listening TCP sockets of this process's network namespace on `addr` (IPv4).
fn listeners_on(addr: SocketAddr) -> usize {
    let SocketAddr::V4(a) = addr else {
        unreachable!()
    };
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(a.ip().octets()),
        a.port()
    );
    std::fs::read_to_string("/proc/self/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1] == want && f[3] == "0A"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_reuseport_listener_per_worker_all_closed_on_removal() {
    let svc = service_addr(22);
    let mut config = ProxyConfig::default();
    config.listeners = std::num::NonZeroUsize::new(3);
    let lab = Lab::new(
        vec![tcp_service(svc, "rr", &[(tcp_backend("a").await, 1)])],
        config,
    )
    .await;
    assert_eq!(listeners_on(svc), 3);
    // Whichever listener the kernel hands a connection to, it is served.
    for _ in 0..12 {
        assert_eq!(greeting(svc).await, "a");
    }
    assert_eq!(lab.proxy.stats().services[0].conns, 12);
    lab.publish(vec![]).await;
    // Aborted accept tasks drop their listeners.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(listeners_on(svc), 0, "every listener of the group closed");
    assert!(TcpStream::connect(svc).await.is_err());

    // The default is one listener per runtime worker.
    let svc = service_addr(23);
    let _lab = Lab::new(
        vec![tcp_service(svc, "rr", &[(tcp_backend("b").await, 1)])],
        ProxyConfig::default(),
    )
    .await;
    assert_eq!(listeners_on(svc), 2);
}

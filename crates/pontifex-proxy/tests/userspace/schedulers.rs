//! Each IPVS scheduler's distribution through real sockets (the rr and wrr cases are in `main.rs`).
//! Load-based schedulers are measured with connections held open, since they count live connections.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::*;

/// Open a connection from `source`, read the greeting and keep the connection open.
async fn hold_from(service: SocketAddr, source: Ipv4Addr) -> (String, BufReader<TcpStream>) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(source.into(), 0)).unwrap();
    let mut s = BufReader::new(sock.connect(service).await.unwrap());
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    (line.trim_end().to_owned(), s)
}

/// Hold `n` connections at once and count them per backend, in the order they were opened.
async fn held_counts(
    service: SocketAddr,
    n: usize,
) -> (
    Vec<String>,
    HashMap<String, usize>,
    Vec<BufReader<TcpStream>>,
) {
    let mut order = Vec::new();
    let mut counts = HashMap::new();
    let mut held = Vec::new();
    for _ in 0..n {
        let (name, s) = hold_from(service, Ipv4Addr::LOCALHOST).await;
        *counts.entry(name.clone()).or_default() += 1;
        order.push(name);
        held.push(s);
    }
    (order, counts, held)
}

async fn three(weights: [u32; 3]) -> Vec<(SocketAddr, u32)> {
    vec![
        (tcp_backend("a").await, weights[0]),
        (tcp_backend("b").await, weights[1]),
        (tcp_backend("c").await, weights[2]),
    ]
}

fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 2 + (i / 200) as u8, 1 + (i % 200) as u8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lc_balances_live_connections() {
    let svc = service_addr(8);
    let _lab = Lab::new(
        vec![tcp_service(svc, "lc", &three([1, 1, 1]).await)],
        ProxyConfig::default(),
    )
    .await;
    let (order, counts, held) = held_counts(svc, 30).await;
    assert_eq!(
        (counts["a"], counts["b"], counts["c"]),
        (10, 10, 10),
        "{counts:?}"
    );
    // Closing a's connections makes a the least loaded (closed ones weigh 1/256 of live ones while
    // they linger in InActConn): the next ones all go there.
    let mut keep = Vec::new();
    for (name, s) in order.iter().zip(held) {
        if name == "a" {
            let mut s = s.into_inner();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
        } else {
            keep.push(s);
        }
    }
    let (next, _, _more) = held_counts(svc, 8).await;
    assert!(next.iter().all(|n| n == "a"), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wlc_balances_live_connections_by_weight() {
    let svc = service_addr(9);
    let _lab = Lab::new(
        vec![tcp_service(svc, "wlc", &three([3, 2, 1]).await)],
        ProxyConfig::default(),
    )
    .await;
    let (_, counts, _held) = held_counts(svc, 60).await;
    assert_eq!(
        (counts["a"], counts["b"], counts["c"]),
        (30, 20, 10),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sed_and_nq_prefer_capacity() {
    for (case, kind) in [(10, "sed"), (11, "nq")] {
        let svc = service_addr(case);
        let _lab = Lab::new(
            vec![tcp_service(svc, kind, &three([4, 1, 1]).await)],
            ProxyConfig::default(),
        )
        .await;
        let (order, counts, _held) = held_counts(svc, 12).await;
        if kind == "nq" {
            // Never queue: an idle endpoint is used first, whatever its weight.
            let first: HashSet<&String> = order[..3].iter().collect();
            assert_eq!(first.len(), 3, "{kind}: {order:?}");
        } else {
            // (active + 1) / weight: a takes the first four before b or c is worth it.
            assert_eq!(order[..4], ["a", "a", "a", "a"], "{kind}: {order:?}");
        }
        // Either way the steady state follows the weights: a ≈ 4 × b ≈ 4 × c.
        assert!(
            counts["a"] >= 7 && counts["b"] <= 3 && counts["c"] <= 3,
            "{kind}: {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sh_pins_each_source_address() {
    let svc = service_addr(12);
    let _lab = Lab::new(
        vec![tcp_service(svc, "sh", &three([1, 1, 1]).await)],
        ProxyConfig::default(),
    )
    .await;
    let mut first = HashMap::new();
    for i in 0..60 {
        first.insert(i, greeting_from(svc, source(i)).await);
    }
    for i in 0..60 {
        assert_eq!(greeting_from(svc, source(i)).await, first[&i], "source {i}");
    }
    let used: HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 3, "60 sources spread over every backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dh_pins_each_destination() {
    let eps = three([1, 1, 1]).await;
    let svc = service_addr(13);
    let _lab = Lab::new(vec![tcp_service(svc, "dh", &eps)], ProxyConfig::default()).await;
    let names: HashSet<String> = {
        let mut v = HashSet::new();
        for i in 0..30 {
            v.insert(greeting_from(svc, source(i)).await);
        }
        v
    };
    assert_eq!(names.len(), 1, "one destination, one backend: {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mh_moves_only_the_departed_endpoints_clients() {
    let eps = three([1, 1, 1]).await;
    let svc = service_addr(14);
    let lab = Lab::new(vec![tcp_service(svc, "mh", &eps)], ProxyConfig::default()).await;
    let n = 90;
    let mut before = Vec::new();
    for i in 0..n {
        before.push(greeting_from(svc, source(i)).await);
    }
    let used: HashSet<&String> = before.iter().collect();
    assert_eq!(used.len(), 3, "{before:?}");
    // c leaves: its clients must move, the others should stay (Maglev's minimal disruption).
    lab.publish(vec![tcp_service(svc, "mh", &eps[..2])]).await;
    let mut moved_needlessly = 0;
    for (i, was) in before.iter().enumerate() {
        let now = greeting_from(svc, source(i)).await;
        assert_ne!(now, "c");
        if was != "c" && &now != was {
            moved_needlessly += 1;
        }
    }
    let stayers = before.iter().filter(|b| *b != "c").count();
    assert!(
        moved_needlessly * 10 <= stayers,
        "{moved_needlessly} of {stayers} clients of a and b moved"
    );
}

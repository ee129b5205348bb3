//! Bulk transfers (splice(2) and the copy loop), UDP idle timeout, and passive ejection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::*;

fn pattern(i: usize) -> u8 {
    // Period 251 (prime): a lost, repeated or reordered chunk of any power-of-two size shows.
    (i % 251) as u8
}

/// A backend that sends `size` pattern bytes to each client and closes, or, when the client sends
/// first, reads until EOF and answers `<bytes> <bad bytes>`. The first byte decides: `D` download,
/// `U` upload.
async fn bulk_backend(size: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut mode = [0u8; 1];
                s.read_exact(&mut mode).await.unwrap();
                if mode[0] == b'D' {
                    let chunk: Vec<u8> = (0..size).map(pattern).collect();
                    s.write_all(&chunk).await.unwrap();
                    s.shutdown().await.unwrap();
                } else {
                    let (mut n, mut bad) = (0usize, 0usize);
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let r = s.read(&mut buf).await.unwrap();
                        if r == 0 {
                            break;
                        }
                        bad += buf[..r]
                            .iter()
                            .enumerate()
                            .filter(|(j, b)| **b != pattern(n + j))
                            .count();
                        n += r;
                    }
                    s.write_all(format!("{n} {bad}").as_bytes()).await.unwrap();
                    s.shutdown().await.unwrap();
                }
            });
        }
    });
    addr
}

/// This process's pipe descriptors, each named by its pipe (`pipe:[1234]`).
fn pipes_open() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("pipe:"))
        .collect()
}

/// Descriptors of pipes that were not open `before`: what this test's proxy made, whatever
/// pipes of earlier tests close meanwhile (a count of all pipes would see those go).
fn new_pipe_fds(before: &[String], now: &[String]) -> usize {
    now.iter().filter(|p| !before.contains(p)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_both_ways_with_and_without_splice() {
    let _alone = PIPES_QUIET.write().await;
    const SIZE: usize = 32 << 20;
    let backend = bulk_backend(SIZE).await;
    for (case, splice) in [(15, true), (16, false)] {
        let svc = service_addr(case);
        let mut config = ProxyConfig::default();
        config.splice = splice;
        let lab = Lab::new_alone(vec![tcp_service(svc, "rr", &[(backend, 1)])], config).await;
        let before = pipes_open();

        // Download: read slowly at first so the transfer is surely under way when pipes are counted.
        let mut s = TcpStream::connect(svc).await.unwrap();
        s.write_all(b"D").await.unwrap();
        let mut got = vec![0u8; 1 << 20];
        s.read_exact(&mut got).await.unwrap();
        let during = pipes_open();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        got.extend_from_slice(&rest);
        assert_eq!(got.len(), SIZE, "splice={splice}");
        assert!(
            got.iter().enumerate().all(|(i, b)| *b == pattern(i)),
            "splice={splice}: corrupted download"
        );
        let new_pipes = new_pipe_fds(&before, &during);
        if splice {
            assert!(
                new_pipes > 0,
                "a pipe carries the bulk ({before:?} → {during:?})"
            );
        } else {
            assert_eq!(new_pipes, 0, "no pipe without splice");
        }

        // Upload then half-close: the answer still arrives over the other direction.
        let mut s = TcpStream::connect(svc).await.unwrap();
        s.write_all(b"U").await.unwrap();
        let data: Vec<u8> = (0..SIZE).map(pattern).collect();
        s.write_all(&data).await.unwrap();
        s.shutdown().await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert_eq!(answer, format!("{SIZE} 0"), "splice={splice}");

        let stats = lab.proxy.stats();
        let e = &stats.services[0].endpoints[0];
        assert_eq!(e.out_bytes as usize, SIZE + answer.len());
        assert_eq!(e.in_bytes as usize, SIZE + 2);
        lab.proxy.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_flow_expires_after_idle_timeout() {
    let a = udp_backend("a").await;
    let b = udp_backend("b").await;
    let svc = service_addr(17);
    let mut config = ProxyConfig::default();
    config.udp_idle_timeout = Duration::from_millis(300);
    let lab = Lab::new(
        vec![VirtualService {
            listen: svc,
            protocol: Protocol::Udp,
            scheduler: "rr".into(),
            affinity_timeout: None,
            endpoints: vec![(a, 1), (b, 1)],
            source_ranges: Vec::new(),
        }],
        config,
    )
    .await;
    let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = ask(&c, svc, "1").await;
    // Traffic within the timeout keeps the flow (and its endpoint).
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(ask(&c, svc, "1").await, first);
    }
    let flows = |lab: &Lab| -> u32 {
        lab.proxy.stats().services[0]
            .endpoints
            .iter()
            .map(|e| e.inactive_conns)
            .sum()
    };
    assert_eq!(flows(&lab), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(flows(&lab), 0, "the idle flow is gone");
    // A new flow is scheduled afresh: rr moves on to the other endpoint.
    let second = ask(&c, svc, "1").await;
    assert_ne!(second, first);
    assert_eq!(lab.proxy.stats().services[0].conns, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_backend_is_ejected() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let a = tcp_backend("a").await;
    let svc = service_addr(18);
    // One attempt per client, so that every pick of the dead endpoint fails a client: only ejection
    // keeps them from failing every other time.
    let mut config = ProxyConfig::default();
    config.max_attempts = 1;
    config.eject_after = 2;
    config.eject_for = Duration::from_secs(600);
    let _lab = Lab::new(vec![tcp_service(svc, "rr", &[(dead, 1), (a, 1)])], config).await;
    let mut failed = 0;
    for _ in 0..20 {
        let mut s = TcpStream::connect(svc).await.unwrap();
        s.shutdown().await.unwrap();
        let mut out = String::new();
        // A client the proxy could not place is closed without a byte.
        let _ = s.read_to_string(&mut out).await;
        if out.is_empty() {
            failed += 1;
        } else {
            assert_eq!(out, "a\n");
        }
    }
    assert_eq!(failed, 2, "two refusals eject the endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_hold_no_pipe_after_bulk() {
    let _alone = PIPES_QUIET.write().await;
    const CONNS: usize = 20;
    const SIZE: usize = 512 << 10;
    let svc = service_addr(19);
    let lab = Lab::new_alone(
        vec![tcp_service(svc, "rr", &[(tcp_backend("a").await, 1)])],
        ProxyConfig::default(),
    )
    .await;
    let before = pipes_open();
    let mut open = Vec::new();
    for _ in 0..CONNS {
        let mut s = TcpStream::connect(svc).await.unwrap();
        let mut greeting = [0u8; 2];
        s.read_exact(&mut greeting).await.unwrap();
        // Echo SIZE bytes both ways at once: each direction of the proxy fills its buffer and
        // switches to splice.
        let data: Vec<u8> = (0..SIZE).map(pattern).collect();
        let (mut r, mut w) = s.split();
        let mut back = vec![0u8; SIZE];
        let (wrote, read) = tokio::join!(w.write_all(&data), r.read_exact(&mut back));
        wrote.unwrap();
        read.unwrap();
        assert!(back == data, "echo intact");
        open.push(s);
    }
    let stats = lab.proxy.stats();
    assert!(stats.services[0].in_bytes as usize >= CONNS * SIZE);
    // A pipe per direction for the connection's life would be 2 × 2 × CONNS descriptors; borrowed
    // pipes go back to the pools (4 per runtime thread, 2 threads) once drained.
    let held = new_pipe_fds(&before, &pipes_open());
    assert!(
        held <= 2 * 4 * 2,
        "{held} pipe descriptors for {CONNS} idle connections"
    );
    drop(open);
}

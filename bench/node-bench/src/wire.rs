//! Plain TCP load between two network namespaces: request/response round trips and bulk sending.
//! Blocking sockets and one thread per connection: one connection is measured at a time, and the
//! figures should be the kernel path's, not an async runtime's.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::quantile;

pub(crate) fn rr_server(listen: SocketAddr) -> anyhow::Result<()> {
    let l = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            let mut b = [0u8; 1];
            while s.read_exact(&mut b).is_ok() {
                if s.write_all(&b).is_err() {
                    return;
                }
            }
        });
    }
    Ok(())
}

/// Figures of one round-trip run.
pub(crate) struct Rr {
    pub(crate) transactions: usize,
    pub(crate) seconds: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
}

impl Rr {
    /// `<trans/s> <mean µs> <p50 µs> <p99 µs>`, for the driver script to read.
    pub(crate) fn line(&self) -> String {
        format!(
            "{:.0} {:.1} {:.1} {:.1}",
            self.transactions as f64 / self.seconds,
            self.mean_us,
            self.p50_us,
            self.p99_us
        )
    }
}

fn connect(to: SocketAddr) -> anyhow::Result<TcpStream> {
    // The server may still be starting in its namespace.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(e).with_context(|| format!("connecting to {to}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub(crate) fn rr_client(to: SocketAddr, run: Duration) -> anyhow::Result<Rr> {
    let mut s = connect(to)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    // Warm-up: ARP, route caches, the first page faults.
    let mut b = [7u8; 1];
    for _ in 0..1000 {
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
    }
    let mut samples = Vec::with_capacity(200_000);
    let start = Instant::now();
    while start.elapsed() < run {
        let t = Instant::now();
        s.write_all(&b)?;
        s.read_exact(&mut b)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let seconds = start.elapsed().as_secs_f64();
    let mean_us = samples.iter().sum::<f64>() / samples.len().max(1) as f64;
    samples.sort_by(f64::total_cmp);
    Ok(Rr {
        transactions: samples.len(),
        seconds,
        p50_us: quantile(&samples, 0.5),
        p99_us: quantile(&samples, 0.99),
        mean_us,
    })
}

pub(crate) fn bulk_server(listen: SocketAddr) -> anyhow::Result<()> {
    let l = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    for conn in l.incoming() {
        let Ok(mut s) = conn else { continue };
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}

/// Gbit/s sent (and acknowledged by the kernel's send buffer draining) over `run`.
pub(crate) fn bulk_client(to: SocketAddr, run: Duration) -> anyhow::Result<f64> {
    let mut s = connect(to)?;
    let buf = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < run {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    // Closing waits for nothing; shutdown + a read of the FIN would, but the send buffer (a few MB)
    // is small against seconds of Gbit/s.
    let secs = start.elapsed().as_secs_f64();
    Ok(sent as f64 * 8.0 / secs / 1e9)
}

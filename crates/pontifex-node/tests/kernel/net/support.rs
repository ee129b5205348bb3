//! Helpers: unique prefixes, a clean-up guard, TCP/UDP echo inside namespaces.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pontifex_node::net::{lab, netns};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A lab prefix unique to this process and call (at most 10 characters).
pub(crate) fn unique_prefix() -> String {
    format!(
        "k{}{}",
        std::process::id() % 1_000_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Removes everything named with the prefix when dropped (also on panic).
pub(crate) struct Cleanup(pub(crate) String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        // A fresh thread: the test may be inside a runtime, which cannot be nested.
        let done = std::thread::spawn(move || rt().block_on(lab::destroy(&prefix))).join();
        if !matches!(done, Ok(Ok(()))) {
            eprintln!("clean-up of lab {} failed: {done:?}", self.0);
        }
    }
}

/// Serve one TCP echo (reads one message, writes it back) on `ip:port` inside `ns`.
pub(crate) fn tcp_echo(ns: &str, ip: impl Into<IpAddr>, port: u16) {
    let ip = ip.into();
    let listener = netns::run_in(ns, move || TcpListener::bind((ip, port)))
        .unwrap()
        .unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 256];
            if let Ok(n) = s.read(&mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        }
    });
}

/// Send `msg` over TCP from inside `ns` to `dst` and return the reply.
pub(crate) fn tcp_roundtrip(ns: &str, dst: SocketAddr, msg: &str) -> std::io::Result<String> {
    let msg = msg.to_owned();
    netns::run_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(msg.as_bytes())?;
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .unwrap()
}

/// Serve UDP echo on `ip:port` inside `ns` (until the namespace goes away).
pub(crate) fn udp_echo(ns: &str, ip: impl Into<IpAddr>, port: u16) {
    let ip = ip.into();
    let sock = netns::run_in(ns, move || UdpSocket::bind((ip, port)))
        .unwrap()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], from);
        }
    });
}

/// Send `msg` over UDP from inside `ns` to `dst` (a few tries) and return the reply.
pub(crate) fn udp_roundtrip(ns: &str, dst: SocketAddr, msg: &str) -> std::io::Result<String> {
    let msg = msg.to_owned();
    netns::run_in(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        let mut last = None;
        for _ in 0..5 {
            s.send_to(msg.as_bytes(), dst)?;
            let mut buf = [0u8; 256];
            match s.recv_from(&mut buf) {
                Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap())
    })
    .unwrap()
}

/// `ip -n NS ARGS...` output, for assertions only (the code under test uses netlink).
pub(crate) fn ip_out(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

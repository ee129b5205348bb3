//! As many concurrent connections as one process's descriptor limit allows, with the clients, the
//! proxy and the backends in three child processes (this test binary re-executed with
//! `PONTIFEX_US_CHILD` set, running [`child_entry`]), so that each has its own RLIMIT_NOFILE budget
//! and the proxy's process holds only proxy sockets, and its RSS is the proxy's alone.
//!
//! Children talk over their stdin and stdout, one line per message, the test's lines prefixed with
//! `@@ ` (the test harness prints its own lines too).

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::*;

const ROLE: &str = "PONTIFEX_US_CHILD";
const ARGS: &str = "PONTIFEX_US_ARGS";

/// Descriptors the proxy's process keeps for everything but connections: stdio, the runtime's
/// epoll and eventfd, listeners, up to `POOL_MAX` (4) pooled pipes per runtime thread, the test
/// harness's own. 60-odd are used; the rest is slack.
const RESERVE: usize = 100;

/// The entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let args = std::env::var(ARGS).unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        match role.as_str() {
            "backends" => backends_child().await,
            "proxy" => proxy_child(&args).await,
            "clients" => clients_child(&args).await,
            other => panic!("unknown child role {other}"),
        }
    });
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").unwrap();
    out.flush().unwrap();
}

/// Lines from the parent until it closes our stdin.
fn commands() -> tokio::io::Lines<tokio::io::BufReader<tokio::io::Stdin>> {
    tokio::io::BufReader::new(tokio::io::stdin()).lines()
}

async fn backends_child() {
    let addrs = [
        small_backend("a").await,
        small_backend("b").await,
        small_backend("c").await,
    ];
    let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    say(&list.join(" "));
    let mut cmds = commands();
    while let Ok(Some(_)) = cmds.next_line().await {}
}

fn fd_counts() -> (usize, usize) {
    let mut fds = 0;
    let mut pipes = 0;
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        fds += 1;
        if std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("pipe:")) {
            pipes += 1;
        }
    }
    (fds, pipes)
}

/// `svc ep ep ep`: serve `svc` with lc over the endpoints; answer `stats` with
/// `active <sum> <min per endpoint> rss <KiB> fds <n> pipes <n>`.
async fn proxy_child(args: &str) {
    let mut words = args
        .split_whitespace()
        .map(|w| w.parse::<SocketAddr>().unwrap());
    let svc = words.next().unwrap();
    let eps: Vec<(SocketAddr, u32)> = words.map(|a| (a, 1)).collect();
    let lab = Lab::new(vec![tcp_service(svc, "lc", &eps)], ProxyConfig::default()).await;
    say("ready");
    let mut cmds = commands();
    while let Ok(Some(cmd)) = cmds.next_line().await {
        assert_eq!(cmd, "stats");
        let stats = lab.proxy.stats();
        let active: Vec<u32> = stats.services[0]
            .endpoints
            .iter()
            .map(|e| e.active_conns)
            .collect();
        let (fds, pipes) = fd_counts();
        say(&format!(
            "active {} {} rss {} fds {fds} pipes {pipes}",
            active.iter().sum::<u32>(),
            active.iter().min().unwrap(),
            rss_kib(),
        ));
    }
}

/// `svc n`: open `n` connections, each reading its greeting; say `held <greeted>`; on `release`
/// send `bye` on each, half-close, check the echo, and say `done <ok> <failed>`.
async fn clients_child(args: &str) {
    let mut words = args.split_whitespace();
    let svc: SocketAddr = words.next().unwrap().parse().unwrap();
    let n: usize = words.next().unwrap().parse().unwrap();
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<bool>(n);
    let release = Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let held_tx = held_tx.clone();
        let release = release.clone();
        // Many source addresses, so that ephemeral ports never run short.
        let source = Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
        tasks.push(tokio::spawn(async move {
            let notified = release.notified();
            let sock = TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(source.into(), 0))?;
            let mut s = sock.connect(svc).await?;
            let mut greeting = [0u8; 2];
            s.read_exact(&mut greeting).await?;
            held_tx.send(greeting[1] == b'\n').await.ok();
            notified.await;
            s.write_all(b"bye").await?;
            s.shutdown().await?;
            let mut rest = [0u8; 8];
            let mut got = 0;
            while let n @ 1.. = s.read(&mut rest[got..]).await? {
                got += n;
            }
            Ok::<bool, std::io::Error>(&rest[..got] == b"bye")
        }));
    }
    drop(held_tx);
    let mut greeted = 0;
    for _ in 0..n {
        // A client that failed before its greeting never reports; the wait then ends at the timeout.
        match tokio::time::timeout(Duration::from_secs(60), held_rx.recv()).await {
            Ok(Some(ok)) => greeted += usize::from(ok),
            _ => break,
        }
    }
    say(&format!("held {greeted}"));
    let mut cmds = commands();
    assert_eq!(cmds.next_line().await.unwrap().as_deref(), Some("release"));
    release.notify_waiters();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        match t.await {
            Ok(Ok(true)) => ok += 1,
            other => {
                if failed < 3 {
                    eprintln!("client failed: {other:?}");
                }
                failed += 1;
            }
        }
    }
    say(&format!("done {ok} {failed}"));
}

/// A child process, killed when dropped (a failing test leaves none behind).
struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The child's `@@ ` lines, read by a thread of their own so that `hear` can time out.
    said: std::sync::mpsc::Receiver<String>,
}

/// Forward the `@@ ` lines of `out` until it closes.
fn listen_to(out: ChildStdout, said: std::sync::mpsc::Sender<String>) {
    for line in BufReader::new(out).lines() {
        let Ok(line) = line else { return };
        // The harness may have begun a line of its own (`test … ... `) before ours.
        if let Some(at) = line.find("@@ ")
            && said.send(line[at + 3..].trim_end().to_owned()).is_err()
        {
            return;
        }
    }
}

impl ChildProc {
    fn start(role: &str, args: &str) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "concurrency::child_entry",
                "--nocapture",
                "--quiet",
                "--test-threads=1",
            ])
            .env(ROLE, role)
            .env(ARGS, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let (tx, said) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || listen_to(out, tx));
        ChildProc { child, stdin, said }
    }

    /// The next line the child said (without `@@ `); panics if it exits or is silent too long.
    fn hear(&mut self) -> String {
        self.said
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("child {} said nothing: {e}", self.child.id()))
    }

    fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn ask(&mut self, line: &str) -> String {
        self.tell(line);
        self.hear()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `active <sum> <min> rss <KiB> fds <n> pipes <n>` as numbers.
fn proxy_stats(p: &mut ChildProc) -> [usize; 5] {
    let line = p.ask("stats");
    let nums: Vec<usize> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    nums.try_into()
        .unwrap_or_else(|_| panic!("bad stats line {line}"))
}

/// The soft NOFILE limit of process `pid`, raised first to `wanted` if the hard limit allows
/// (raising the hard limit needs CAP_SYS_RESOURCE, which this machine's test runs lack).
fn nofile_of(pid: u32, wanted: usize) -> usize {
    let _ = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={wanted}:{wanted}"),
        ])
        .stderr(Stdio::null())
        .status();
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|s| s.parse().ok())
        .expect("soft NOFILE limit")
}

#[test]
fn ten_thousand_concurrent_connections() {
    const WANTED: usize = 10_000;
    // Our pipes to the children would show in the bulk tests' pipe counts.
    let _alone = PIPES_QUIET.blocking_write();
    let mut backends = ChildProc::start("backends", "");
    let eps = backends.hear();
    let svc = service_addr(7);
    let mut proxy = ChildProc::start("proxy", &format!("{svc} {eps}"));
    assert_eq!(proxy.hear(), "ready");
    // Each connection costs the proxy two descriptors (client side, upstream side); everything
    // else must fit in RESERVE. With a limit of 20,000 that is 9,950 connections: 10,000 would
    // need all 20,000 for sockets, leaving none for the listener, the runtime or a pipe.
    let limit = nofile_of(proxy.pid(), 2 * WANTED + RESERVE);
    let n = WANTED.min((limit - RESERVE) / 2);
    if n < WANTED {
        eprintln!(
            "proxy RLIMIT_NOFILE {limit} (hard limit not raisable): {n} concurrent connections"
        );
    }
    let [_, _, rss_before, fds_before, pipes_before] = proxy_stats(&mut proxy);
    assert!(
        fds_before + 2 * 2 * 4 < RESERVE,
        "{fds_before} descriptors before any connection"
    );
    let started = Instant::now();
    let mut clients = ChildProc::start("clients", &format!("{svc} {n}"));
    assert_eq!(
        clients.hear(),
        format!("held {n}"),
        "every client reached a backend"
    );
    let [active, min_active, rss, fds, pipes] = proxy_stats(&mut proxy);
    assert_eq!(active, n, "all connections established at once");
    // lc spreads them (not exactly evenly: connections still opening weigh 1/256 of established).
    assert!(
        min_active >= n / 4,
        "least loaded endpoint has {min_active}"
    );
    assert!(
        fds <= fds_before + 2 * n,
        "{fds} descriptors for {n} connections: only their two sockets each"
    );
    assert_eq!(pipes, pipes_before, "idle connections hold no pipe");
    let per_conn = rss.saturating_sub(rss_before) * 1024 / n;
    eprintln!(
        "{n} connections held through the proxy in {:?}: proxy RSS {rss_before} → {rss} KiB, \
         {per_conn} bytes per connection, {fds} descriptors",
        started.elapsed()
    );
    // The proxy keeps a task and two registered sockets per idle connection, no buffer: well
    // under one 16 KiB copy buffer, which is what keeping one per connection would cost.
    assert!(per_conn < 4 * 1024, "{per_conn} bytes per connection");
    clients.tell("release");
    assert_eq!(
        clients.hear(),
        format!("done {n} 0"),
        "every connection echoed"
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

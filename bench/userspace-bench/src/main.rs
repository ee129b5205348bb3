//! Benchmark of the userspace L4 proxy against HAProxy (TCP mode, same backends, same balance
//! algorithm) and against direct connections, all on loopback (127.0.0.0/8).
//!
//! `userspace-bench run` starts three kinds of processes — a tiny HTTP backend (this program,
//! `backend`), the userspace proxy standalone (this program, `proxy`, the engine from
//! `pontifex_proxy::userspace` fed one static snapshot) and `/usr/sbin/haproxy` — then drives them
//! with `wrk` (keep-alive, and a new connection per request) and `curl` (one large download), and
//! reads the proxies' CPU time from `/proc/<pid>/stat`. It prints a markdown report.
//!
//! Not a test: figures depend on the machine, and nothing here asserts.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use pontifex_proxy::userspace::{self, Protocol, ProxyConfig, Snapshot, VirtualService};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "userspace proxy vs HAProxy vs direct, on loopback")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve HTTP/1.1 on each address: `/` answers 2 bytes, `/bulk` streams `--bulk-mib` MiB.
    Backend {
        #[arg(long, required = true)]
        listen: Vec<SocketAddr>,
        #[arg(long, default_value_t = 1024)]
        bulk_mib: u64,
    },
    /// Run the userspace proxy: one TCP virtual service per `--service LISTEN=SCHEDULER`.
    Proxy {
        #[arg(long, required = true)]
        service: Vec<String>,
        #[arg(long, required = true)]
        backend: Vec<SocketAddr>,
        /// Copy every byte through userspace (no splice).
        #[arg(long)]
        no_splice: bool,
    },
    /// Run everything and print the report.
    Run {
        /// Seconds per wrk run.
        #[arg(long, default_value_t = 8)]
        duration: u64,
        /// wrk connections.
        #[arg(long, default_value_t = 50)]
        connections: u32,
        /// Size of the bulk download, MiB.
        #[arg(long, default_value_t = 2048)]
        bulk_mib: u64,
        #[arg(long, default_value = "/usr/sbin/haproxy")]
        haproxy: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Backend { listen, bulk_mib } => runtime()?.block_on(backend(listen, bulk_mib)),
        Cmd::Proxy {
            service,
            backend,
            no_splice,
        } => runtime()?.block_on(proxy(service, backend, no_splice)),
        Cmd::Run {
            duration,
            connections,
            bulk_mib,
            haproxy,
        } => run(duration, connections, bulk_mib, &haproxy),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

// ---- backend ----

async fn backend(listen: Vec<SocketAddr>, bulk_mib: u64) -> Result<()> {
    let chunk: Arc<[u8]> = vec![b'x'; 1 << 20].into();
    let mut tasks = Vec::new();
    for addr in listen {
        let l = TcpListener::bind(addr).await?;
        let chunk = chunk.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                tokio::spawn(serve_http(s, chunk.clone(), bulk_mib));
            }
        }));
    }
    // The accept loops run until the process is killed.
    let _tasks = tasks;
    std::future::pending().await
}

/// Minimal HTTP/1.1: one request at a time, keep-alive unless the client says `Connection: close`.
async fn serve_http(mut s: TcpStream, chunk: Arc<[u8]>, bulk_mib: u64) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end);
        let close = head.contains("\r\nconnection: close");
        let conn = if close { "close" } else { "keep-alive" };
        if head.starts_with("get /bulk") {
            let len = bulk_mib << 20;
            let hdr =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: {conn}\r\n\r\n");
            if s.write_all(hdr.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..bulk_mib {
                if s.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        } else {
            let resp =
                format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: {conn}\r\n\r\nok");
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
        if close {
            let _ = s.shutdown().await;
            return;
        }
    }
}

// ---- proxy ----

async fn proxy(services: Vec<String>, backends: Vec<SocketAddr>, no_splice: bool) -> Result<()> {
    let mut vss = Vec::new();
    for s in services {
        let (listen, scheduler) = s.split_once('=').context("--service LISTEN=SCHEDULER")?;
        vss.push(VirtualService {
            listen: listen.parse()?,
            protocol: Protocol::Tcp,
            scheduler: scheduler.into(),
            affinity_timeout: None,
            endpoints: backends.iter().map(|b| (*b, 1)).collect(),
            source_ranges: Vec::new(),
        });
    }
    let mut config = ProxyConfig::default();
    config.splice = !no_splice;
    let (_tx, rx) = tokio::sync::watch::channel(Arc::new(Snapshot { services: vss }));
    let handle = userspace::spawn(rx, config);
    handle.synced().await;
    if handle.stats().services.iter().any(|s| !s.listening) {
        bail!("a service could not bind");
    }
    tokio::signal::ctrl_c().await?;
    handle.shutdown().await;
    Ok(())
}

// ---- orchestration ----

/// Kills its process when dropped, so that a failed run leaves nothing behind.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &'static str, cmd: &mut Command) -> Result<Proc> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc(child))
}

fn wait_listening(addr: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > deadline {
            bail!("{addr} never listened");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // USER_HZ is 100 on every Linux architecture that matters here.
    Ok(ticks as f64 / 100.0)
}

struct WrkResult {
    rps: f64,
    p99_ms: f64,
    requests: u64,
}

fn wrk(url: &str, secs: u64, conns: u32, close: bool) -> Result<WrkResult> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--latency",
        url,
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let grab = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps: f64 = grab("Requests/sec:")
        .with_context(|| format!("wrk output: {text}"))?
        .parse()?;
    let p99 = grab("99%").with_context(|| format!("wrk output: {text}"))?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("wrk {url} close={close}: {}", text.trim());
    }
    Ok(WrkResult {
        rps,
        p99_ms: duration_ms(p99)?,
        requests,
    })
}

fn duration_ms(s: &str) -> Result<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).context("unit")?);
    let v: f64 = num.parse()?;
    Ok(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => bail!("unit {unit}"),
    })
}

/// MiB/s of one download of `url`, by curl.
fn bulk(url: &str) -> Result<f64> {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{speed_download}", url])
        .output()
        .context("running curl")?;
    let bytes_per_s: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok(bytes_per_s / (1u64 << 20) as f64)
}

struct Target {
    name: &'static str,
    addr: &'static str,
    pid: Option<u32>,
}

const BACKENDS: [&str; 2] = ["127.0.0.2:8080", "127.0.0.3:8080"];

fn haproxy_config() -> String {
    // HAProxy's best TCP-mode setup: splice where the kernel allows, as many threads as CPUs (its
    // default), no logging.
    let servers: String = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, b)| format!("  server s{i} {b}\n"))
        .collect();
    format!(
        "global\n  maxconn 4096\n\ndefaults\n  mode tcp\n  option splice-auto\n  timeout connect 5s\n  \
         timeout client 60s\n  timeout server 60s\n\nlisten rr\n  bind 127.0.0.20:8080\n  balance roundrobin\n\
         {servers}\nlisten lc\n  bind 127.0.0.21:8080\n  balance leastconn\n{servers}"
    )
}

fn run(secs: u64, conns: u32, bulk_mib: u64, haproxy: &PathBuf) -> Result<()> {
    let me = std::env::current_exe()?;
    let _backend = spawn(
        "backend",
        Command::new(&me).args([
            "backend",
            "--listen",
            BACKENDS[0],
            "--listen",
            BACKENDS[1],
            "--bulk-mib",
            &bulk_mib.to_string(),
        ]),
    )?;
    let backend_args: Vec<String> = BACKENDS
        .iter()
        .flat_map(|b| ["--backend".to_string(), b.to_string()])
        .collect();
    let ours = spawn(
        "pontifex userspace proxy",
        Command::new(&me)
            .args([
                "proxy",
                "--service",
                "127.0.0.10:8080=rr",
                "--service",
                "127.0.0.11:8080=lc",
            ])
            .args(&backend_args),
    )?;
    let ours_copy = spawn(
        "pontifex userspace proxy without splice",
        Command::new(&me)
            .args(["proxy", "--no-splice", "--service", "127.0.0.12:8080=rr"])
            .args(&backend_args),
    )?;
    let dir = std::env::temp_dir().join(format!("userspace-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg = dir.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config())?;
    let hap = spawn(
        "haproxy",
        Command::new(haproxy).args(["-db", "-f"]).arg(&cfg),
    )?;
    for a in BACKENDS
        .iter()
        .chain(&["127.0.0.10:8080", "127.0.0.11:8080", "127.0.0.12:8080"])
        .chain(&["127.0.0.20:8080", "127.0.0.21:8080"])
    {
        wait_listening(a)?;
    }
    let targets = [
        Target {
            name: "direct (backend)",
            addr: BACKENDS[0],
            pid: None,
        },
        Target {
            name: "pontifex rr",
            addr: "127.0.0.10:8080",
            pid: Some(ours.0.id()),
        },
        Target {
            name: "haproxy roundrobin",
            addr: "127.0.0.20:8080",
            pid: Some(hap.0.id()),
        },
        Target {
            name: "pontifex lc",
            addr: "127.0.0.11:8080",
            pid: Some(ours.0.id()),
        },
        Target {
            name: "haproxy leastconn",
            addr: "127.0.0.21:8080",
            pid: Some(hap.0.id()),
        },
    ];
    let mut report = String::new();
    let out = &mut report;
    let _ = writeln_s(
        out,
        &format!(
            "wrk -t2 -c{conns} -d{secs}s --latency; 2 backends; CPU = proxy utime+stime / requests\n\n\
             | target | keep-alive req/s | p99 ms | CPU µs/req | close req/s | p99 ms | CPU µs/req |\n\
             |---|---:|---:|---:|---:|---:|---:|"
        ),
    );
    // Warm-up (page cache, haproxy's and our first allocations), not reported.
    for t in &targets {
        wrk(&format!("http://{}/", t.addr), 1, conns, false)?;
    }
    for t in &targets {
        let url = format!("http://{}/", t.addr);
        let mut cells = Vec::new();
        for close in [false, true] {
            let before = t.pid.map(cpu_seconds).transpose()?;
            let r = wrk(&url, secs, conns, close)?;
            let after = t.pid.map(cpu_seconds).transpose()?;
            let cpu = match (before, after) {
                (Some(b), Some(a)) if r.requests > 0 => {
                    format!("{:.1}", (a - b) * 1e6 / r.requests as f64)
                }
                _ => "–".into(),
            };
            cells.push(format!("{:.0} | {:.2} | {cpu}", r.rps, r.p99_ms));
            eprintln!("{} close={close}: {:.0} req/s", t.name, r.rps);
        }
        let _ = writeln_s(
            out,
            &format!("| {} | {} | {} |", t.name, cells[0], cells[1]),
        );
    }
    let _ = writeln_s(
        out,
        &format!(
            "\nBulk: one {bulk_mib} MiB download by curl (median of 3)\n\n\
             | target | MiB/s | % of direct | proxy CPU s |\n|---|---:|---:|---:|"
        ),
    );
    let bulk_targets = [
        ("direct (backend)", BACKENDS[0], None),
        ("pontifex rr (splice)", "127.0.0.10:8080", Some(ours.0.id())),
        (
            "pontifex rr (copy, --no-splice)",
            "127.0.0.12:8080",
            Some(ours_copy.0.id()),
        ),
        ("haproxy roundrobin", "127.0.0.20:8080", Some(hap.0.id())),
    ];
    let mut direct = None;
    for (name, addr, pid) in bulk_targets {
        let url = format!("http://{addr}/bulk");
        let before = pid.map(cpu_seconds).transpose()?;
        let mut speeds = [bulk(&url)?, bulk(&url)?, bulk(&url)?];
        let after = pid.map(cpu_seconds).transpose()?;
        speeds.sort_by(f64::total_cmp);
        let mib = speeds[1];
        let base = *direct.get_or_insert(mib);
        let cpu = match (before, after) {
            (Some(b), Some(a)) => format!("{:.2}", (a - b) / 3.0),
            _ => "–".into(),
        };
        eprintln!("{name}: {mib:.0} MiB/s");
        let _ = writeln_s(
            out,
            &format!("| {name} | {mib:.0} | {:.0}% | {cpu} |", mib * 100.0 / base),
        );
    }
    drop((ours, ours_copy, hap));
    let _ = std::fs::remove_dir_all(&dir);
    std::io::stdout().write_all(report.as_bytes())?;
    Ok(())
}

fn writeln_s(out: &mut String, line: &str) -> std::fmt::Result {
    use std::fmt::Write as _;
    writeln!(out, "{line}")
}

//! Data path: new TCP connections per second and their latency (connect, read the answer,
//! close) from a client namespace, routed through a "node" namespace, to a pod — direct to the
//! pod IP, and through a ClusterIP — with N Services installed, in each mode.
//!
//! Topology (all namespaces this bench creates, deleted on drop): client 10.250.0.2/30 ──veth──
//! node (10.250.0.1/30; bridge cni0 10.244.0.1/24; ip_forward) ──veth── pod 10.244.0.2/24,
//! running `proxy-bench serve`. The client counts as cluster traffic (detector 10.0.0.0/8), so
//! neither path is masqueraded: the difference is the service lookup and DNAT alone. The
//! measured Service sorts last among the N, so in iptables mode it is the last rule of
//! `KUBE-SERVICES` (the worst case; an average Service sits half-way).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pontifex_proxy::apply::iptables_jump_rules;
use pontifex_proxy::iptables::{self, SyncKind};
use pontifex_proxy::nftables::{NftConfig, NftLayout, NftTable};
use pontifex_proxy::sync::INITIAL_SYNC_PORTS_PER_TRANSACTION;

use crate::netns::{Netns, sh};
use crate::rules::{self, cluster_ip, endpoint, port_name};

/// `proxy-bench serve`: answers every connection with "ok" and closes (server closes first,
/// so TIME_WAIT stays on the server and the client never runs out of ports).
pub(crate) fn serve(addr: SocketAddr) -> Result<()> {
    let l = TcpListener::bind(addr)?;
    for mut s in l.incoming().flatten() {
        let _ = s.write_all(b"ok");
    }
    Ok(())
}

/// `proxy-bench client`: connect/read/close in a loop; prints `conns errors p50_us p99_us`.
pub(crate) fn client(addr: SocketAddr, seconds: f64) -> Result<()> {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut lat: Vec<u32> = Vec::new();
    let mut errors = 0u64;
    let mut buf = Vec::with_capacity(8);
    while Instant::now() < end {
        let t = Instant::now();
        let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).and_then(|mut s| {
            buf.clear();
            let n = s.read_to_end(&mut buf)?;
            // Close with RST: the pod keeps no TIME_WAIT. Otherwise a client port reused
            // first direct, then through the ClusterIP (the runs alternate) meets a TIME_WAIT
            // whose timestamps and sequence numbers came from another 4-tuple's clock: the
            // SYN is refused (PAWS) and retried a second later — a bench artefact.
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
            Ok(n)
        });
        match ok {
            Ok(2) => lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
            _ => errors += 1,
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)));
    println!(
        "{} {} {} {}",
        lat.len(),
        errors,
        pct(0.5).copied().unwrap_or(0),
        pct(0.99).copied().unwrap_or(0)
    );
    Ok(())
}

/// One client run's figures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) rate: f64,
    pub(crate) errors: u64,
    pub(crate) p50_us: u32,
    pub(crate) p99_us: u32,
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The three namespaces and the server; all removed on drop (server first).
struct Lab {
    _server: Server,
    client: Netns,
    _pod: Netns,
    node: Netns,
}

fn lab(prefix: &str) -> Result<Lab> {
    let node = Netns::new(format!("{prefix}-n"))?;
    let pod = Netns::new(format!("{prefix}-p"))?;
    let client = Netns::new(format!("{prefix}-c"))?;
    let n = node.name.as_str();
    sh(&["ip", "-n", n, "link", "add", "cni0", "type", "bridge"])?;
    sh(&["ip", "-n", n, "addr", "add", "10.244.0.1/24", "dev", "cni0"])?;
    sh(&["ip", "-n", n, "link", "set", "cni0", "up"])?;
    sh(&[
        "ip", "-n", n, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0", "netns",
        &pod.name,
    ])?;
    sh(&[
        "ip", "-n", n, "link", "set", "veth0", "master", "cni0", "up",
    ])?;
    sh(&[
        "ip",
        "-n",
        &pod.name,
        "addr",
        "add",
        "10.244.0.2/24",
        "dev",
        "eth0",
    ])?;
    sh(&["ip", "-n", &pod.name, "link", "set", "eth0", "up"])?;
    sh(&[
        "ip",
        "-n",
        &pod.name,
        "route",
        "add",
        "default",
        "via",
        "10.244.0.1",
    ])?;
    sh(&[
        "ip",
        "-n",
        n,
        "link",
        "add",
        "cl0",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &client.name,
    ])?;
    sh(&["ip", "-n", n, "addr", "add", "10.250.0.1/30", "dev", "cl0"])?;
    sh(&["ip", "-n", n, "link", "set", "cl0", "up"])?;
    sh(&[
        "ip",
        "-n",
        &client.name,
        "addr",
        "add",
        "10.250.0.2/30",
        "dev",
        "eth0",
    ])?;
    sh(&["ip", "-n", &client.name, "link", "set", "eth0", "up"])?;
    sh(&[
        "ip",
        "-n",
        &client.name,
        "route",
        "add",
        "default",
        "via",
        "10.250.0.1",
    ])?;
    node.run(&["sysctl", "-qw", "net.ipv4.ip_forward=1"], None)?;
    // Short TIME_WAIT tracking so tens of thousands of connections do not fill the table.
    let _ = node.run(
        &[
            "sysctl",
            "-qw",
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
        ],
        None,
    );
    let me = std::env::current_exe()?;
    let child = Command::new("ip")
        .args(["netns", "exec", &pod.name])
        .arg(&me)
        .args(["serve", "--addr", "0.0.0.0:8080"])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the server")?;
    let server = Server(child);
    std::thread::sleep(Duration::from_millis(300));
    Ok(Lab {
        _server: server,
        client,
        _pod: pod,
        node,
    })
}

fn run_client(lab: &Lab, addr: SocketAddr, seconds: f64) -> Result<Run> {
    let me = std::env::current_exe()?;
    let me = me.to_string_lossy();
    let (out, _) = lab.client.run(
        &[
            &me,
            "client",
            "--addr",
            &addr.to_string(),
            "--seconds",
            &seconds.to_string(),
        ],
        None,
    )?;
    let f: Vec<u64> = out
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    if f.len() != 4 {
        bail!("client printed {out:?}");
    }
    Ok(Run {
        rate: f[0] as f64 / seconds,
        errors: f[1],
        p50_us: f[2] as u32,
        p99_us: f[3] as u32,
    })
}

fn mean(runs: &[Run]) -> Run {
    let n = runs.len() as f64;
    Run {
        rate: runs.iter().map(|r| r.rate).sum::<f64>() / n,
        errors: runs.iter().map(|r| r.errors).sum(),
        p50_us: (runs.iter().map(|r| f64::from(r.p50_us)).sum::<f64>() / n) as u32,
        p99_us: (runs.iter().map(|r| f64::from(r.p99_us)).sum::<f64>() / n) as u32,
    }
}

/// One row: mode, Services, direct without rules, direct with rules, through the ClusterIP.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) mode: &'static str,
    pub(crate) services: usize,
    pub(crate) bare: Run,
    pub(crate) direct: Run,
    pub(crate) via_service: Run,
}

/// Measures one (mode, N): alternating direct / ClusterIP runs, `rounds` each.
pub(crate) fn measure(
    prefix: &str,
    mode: &'static str,
    n: usize,
    seconds: f64,
    rounds: usize,
) -> Result<Row> {
    let lab = lab(prefix)?;
    let pod: SocketAddr = "10.244.0.2:8080".parse()?;
    let bare = run_client(&lab, pod, seconds)?;
    let mut snap = rules::snapshot(n, 10);
    let target = port_name(n - 1);
    snap.endpoints.insert(
        target.clone(),
        vec![endpoint(IpAddr::V4(Ipv4Addr::new(10, 244, 0, 2)), 8080)],
    );
    match mode {
        "nftables" | "nftables-chains" => {
            // As the proxier's first sync.
            let layout = if mode == "nftables" {
                NftLayout::Maps
            } else {
                NftLayout::Chains
            };
            let cfg = NftConfig {
                layout,
                ..rules::nft_config()
            };
            let table = NftTable::new(&cfg, &snap);
            for tx in table.initial_transactions(INITIAL_SYNC_PORTS_PER_TRANSACTION) {
                lab.node.run(&["nft", "-f", "-"], Some(&tx))?;
            }
        }
        _ => {
            // iptables-legacy: the backend most kube-proxy clusters ran, and the only one
            // that loads 10k Services in reasonable time (the nf_tables backend of
            // iptables-restore takes > 12 min).
            let cfg = rules::ipt_config();
            let r = iptables::render(&cfg, &snap, SyncKind::Full, &BTreeSet::new());
            lab.node.run(
                &["iptables-legacy-restore", "-w", "--noflush"],
                Some(&r.text),
            )?;
            for j in iptables_jump_rules(&cfg) {
                let mut args = vec!["iptables-legacy", "-w", "-t", j.table, "-I", j.from];
                args.extend(&j.args);
                args.extend(["-j", j.to]);
                lab.node.run(&args, None)?;
            }
        }
    }
    let vip = SocketAddr::new(IpAddr::V4(cluster_ip(n - 1)), 80);
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        direct.push(run_client(&lab, pod, seconds)?);
        via.push(run_client(&lab, vip, seconds)?);
    }
    Ok(Row {
        mode,
        services: n,
        bare,
        direct: mean(&direct),
        via_service: mean(&via),
    })
}

/// A markdown table of rows.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| mode | Services | direct, no rules (conn/s) | direct, rules loaded | via ClusterIP | ClusterIP / direct | p50 direct → ClusterIP | p99 direct → ClusterIP | errors |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.1}% | {} → {} µs | {} → {} µs | {} |\n",
            r.mode,
            r.services,
            r.bare.rate,
            r.direct.rate,
            r.via_service.rate,
            100.0 * r.via_service.rate / r.direct.rate,
            r.direct.p50_us,
            r.via_service.p50_us,
            r.direct.p99_us,
            r.via_service.p99_us,
            r.bare.errors + r.direct.errors + r.via_service.errors,
        ));
    }
    s
}

//! Benchmarks of the pontifex API server over HTTPS, side by side with etcd, printed as Markdown.
//!
//! Scenarios (each on a fresh `pontifex apiserver` with its redb store in a temporary directory):
//! - **creates**: N concurrent clients POST ConfigMaps and Services (Services go through ClusterIP
//!   allocation), over one multiplexed HTTP/2 connection and over N HTTP/1.1 connections; then the
//!   same HTTP/1.1 load as etcd puts through etcd's JSON gateway. Both fsync before acknowledging.
//! - **list**: memory (VmRSS/VmHWM) before and after creating 10k Services on a fresh server, then
//!   p50/p99 of whole lists of them, JSON and Table.
//! - **watch**: delivery latency of ConfigMap creates to 100 watchers.
//! - **endpoints** (not in the default set: it writes 110,000 pods): endpoint
//!   programming latency (pod Ready write to EndpointSlice event) with 1,000 Services × 10 pods, and
//!   the time `pontifex controllers` takes to build every slice from scratch for 10,000 × 10.
//!
//! What it is not: a test (nothing here asserts a target; RESULTS.md says where each stands), nor a
//! comparison with kube-apiserver (not available here): etcd alone is the storage layer
//! kube-apiserver would write through, so the ratio is our whole write path against its store alone.

mod client;
mod creates;
mod endpoints;
mod list;
mod procs;
mod stats;
mod watch;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use crate::client::{Endpoint, Proto};
use crate::creates::{Kind, Load, Point};
use crate::procs::Server;
use crate::stats::{mib, ms};

#[derive(Parser)]
#[command(
    about = "Benchmark the pontifex API server (creates/s, list and watch latency, memory) against etcd"
)]
struct Args {
    /// The pontifex binary to start (a release build).
    #[arg(long, default_value = "target/release/pontifex")]
    pontifex: PathBuf,
    /// Use a server that is already running (its kubeconfig) instead of starting one per scenario.
    /// Memory is not measured then, and the creates accumulate on that one server.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The etcd binary for the side-by-side write path (skipped when absent).
    #[arg(long)]
    etcd: Option<PathBuf>,
    /// Seconds each creates point runs.
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Concurrent clients for the creates points.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,64")]
    clients: Vec<usize>,
    /// Services to list (and to measure memory for).
    #[arg(long, default_value_t = 10_000)]
    list_objects: usize,
    /// Timed lists of each flavour.
    #[arg(long, default_value_t = 20)]
    lists: usize,
    /// Concurrent watchers.
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    /// Writes observed by the watchers.
    #[arg(long, default_value_t = 200)]
    watch_events: usize,
    /// Milliseconds between two watched writes.
    #[arg(long, default_value_t = 10)]
    watch_interval_ms: u64,
    /// Services in the endpoint latency run (each with --ep-pods pods).
    #[arg(long, default_value_t = 1_000)]
    ep_services: usize,
    /// Pods per Service in the endpoints scenario.
    #[arg(long, default_value_t = 10)]
    ep_pods: usize,
    /// Readiness flips timed in the endpoint latency run.
    #[arg(long, default_value_t = 300)]
    ep_flips: usize,
    /// Services in the endpoint rebuild run.
    #[arg(long, default_value_t = 10_000)]
    ep_rebuild_services: usize,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "creates,list,watch")]
    only: Vec<String>,
    /// Where the servers keep their data (the disk that is fsynced to).
    #[arg(long)]
    tmp: Option<PathBuf>,
}

/// A fresh server per scenario, or the one the user pointed at.
struct Target<'a> {
    args: &'a Args,
    tmp: PathBuf,
}

impl Target<'_> {
    fn start(&self) -> anyhow::Result<(Endpoint, Option<Server>)> {
        match &self.args.kubeconfig {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Ok((Endpoint::from_kubeconfig(&text)?, None))
            }
            None => {
                let server = Server::pontifex(&self.args.pontifex, &self.tmp)?;
                Ok((server.endpoint.clone(), Some(server)))
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    let target = Target {
        args: &args,
        tmp: tmp.clone(),
    };
    let started = Instant::now();
    let wants = |s: &str| args.only.iter().any(|o| o == s);

    if wants("creates") {
        creates_section(&args, &target, &tmp).await?;
    }
    if wants("list") {
        let (ep, server) = target.start()?;
        let out = list::run(&ep, server.as_ref(), args.list_objects, args.lists).await?;
        list_section(&out);
    }
    if wants("watch") {
        let (ep, _server) = target.start()?;
        let out = watch::run(
            &ep,
            args.watchers,
            args.watch_events,
            Duration::from_millis(args.watch_interval_ms),
        )
        .await?;
        watch_section(&out);
    }
    if wants("endpoints") {
        let small = endpoints::run(
            &args.pontifex,
            &tmp,
            args.ep_services,
            args.ep_pods,
            args.ep_flips,
        )
        .await?;
        let big = endpoints::run(
            &args.pontifex,
            &tmp,
            args.ep_rebuild_services,
            args.ep_pods,
            0,
        )
        .await?;
        endpoints_section(&small, &big);
    }
    println!(
        "_Benchmark wall time: {:.1} s._",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn creates_section(
    args: &Args,
    target: &Target<'_>,
    tmp: &std::path::Path,
) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(args.seconds);
    let (ep, _server) = target.start()?;
    creates::namespace(&ep, "bench").await?;
    let etcd = match args.etcd.clone().or_else(|| procs::which("etcd")) {
        Some(bin) => Some(Server::etcd(&bin, tmp)?),
        None => None,
    };
    // Warm-up: TLS sessions, the allocator, the stores' first pages. Not reported.
    let warm = |kind, proto| Load {
        kind,
        proto,
        clients: 8,
        duration,
        limit: Some(500),
    };
    creates::run(&ep, warm(Kind::Service, Proto::H2), "bench", "warm").await?;
    if let Some(etcd) = &etcd {
        creates::run(
            &etcd.endpoint,
            warm(Kind::EtcdPut, Proto::H1),
            "bench",
            "warm",
        )
        .await?;
    }

    // The points for one N run back to back, etcd's among ours, so that whatever else the machine
    // does at that moment weighs on both sides of each ratio alike.
    let mut points: Vec<Point> = Vec::new();
    for &clients in &args.clients {
        let load = |kind, proto| Load {
            kind,
            proto,
            clients,
            duration,
            limit: None,
        };
        if let Some(etcd) = &etcd {
            let tag = format!("e-{clients}");
            let point = creates::run(
                &etcd.endpoint,
                load(Kind::EtcdPut, Proto::H1),
                "bench",
                &tag,
            );
            points.push(point.await?);
        }
        for kind in [Kind::ConfigMap, Kind::Service] {
            for proto in [Proto::H2, Proto::H1] {
                let tag = format!(
                    "{}-{}-{clients}",
                    if kind == Kind::Service { "s" } else { "c" },
                    if proto == Proto::H2 { "h2" } else { "h1" }
                );
                points.push(creates::run(&ep, load(kind, proto), "bench", &tag).await?);
            }
        }
    }
    drop(etcd);
    drop(_server);
    // Reported grouped by what was created, then protocol, then N.
    let order = |p: &Point| (p.kind as u8, p.proto == Proto::H1, p.clients);
    points.sort_by_key(order);
    if !points.iter().any(|p| p.kind == Kind::EtcdPut) {
        println!("_etcd not found: the side-by-side write path was skipped._\n");
    }

    println!("## Creates per second (HTTPS, fsync before ack)\n");
    println!(
        "{} s per point. h2 = N concurrent streams on ONE HTTP/2 connection; http/1.1 = N connections, \
         one request in flight on each. etcd: plain HTTP/1.1 to its JSON gateway (`POST /v3/kv/put`), \
         N connections. The points of one N ran back to back (etcd first), on one pontifex server that \
         keeps every object created before (up to ~{}k by the last point).\n",
        args.seconds,
        points
            .iter()
            .filter(|p| p.kind != Kind::EtcdPut)
            .map(|p| p.ok)
            .sum::<usize>()
            .div_ceil(1000)
    );
    println!(
        "| what | protocol | clients | creates | per second | p50 ms | p99 ms | vs etcd (same N) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let etcd_rate = |n: usize| {
        points
            .iter()
            .find(|p| p.kind == Kind::EtcdPut && p.clients == n)
            .map(Point::per_second)
    };
    for p in &points {
        let ratio = match (p.kind, etcd_rate(p.clients)) {
            (Kind::EtcdPut, _) | (_, None) => "-".to_owned(),
            (_, Some(e)) => format!("{:.2}×", p.per_second() / e),
        };
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            p.kind,
            p.proto,
            p.clients,
            p.ok,
            p.per_second(),
            ms(p.latency.percentile(50.0)),
            ms(p.latency.percentile(99.0)),
            ratio
        );
    }
    println!();
    Ok(())
}

fn list_section(out: &list::Outcome) {
    println!("## Memory for {} Services (fresh server)\n", out.objects);
    println!(
        "Filled with 32 concurrent creates on one h2 connection: {} Services in {:.2} s ({:.0}/s, p50 {} ms, p99 {} ms).\n",
        out.fill.ok,
        out.fill.elapsed.as_secs_f64(),
        out.fill.per_second(),
        ms(out.fill.latency.percentile(50.0)),
        ms(out.fill.latency.percentile(99.0))
    );
    match out.mem {
        Some((a, b, c)) => {
            println!("| moment | VmRSS MiB | VmHWM MiB |");
            println!("|---|---:|---:|");
            println!(
                "| fresh (namespace created) | {} | {} |",
                mib(a.rss),
                mib(a.hwm)
            );
            println!(
                "| after {} Services | {} | {} |",
                out.objects,
                mib(b.rss),
                mib(b.hwm)
            );
            println!(
                "| after the lists below | {} | {} |",
                mib(c.rss),
                mib(c.hwm)
            );
            let per10k = |d: u64| d as f64 / (1024.0 * 1024.0) * 10_000.0 / out.objects as f64;
            println!(
                "\n**Per 10k Services: VmRSS +{:.1} MiB, VmHWM +{:.1} MiB** (creates only; the lists add {:.1} MiB more to VmHWM).\n",
                per10k(b.rss.saturating_sub(a.rss)),
                per10k(b.hwm.saturating_sub(a.hwm)),
                c.hwm.saturating_sub(b.hwm) as f64 / (1024.0 * 1024.0)
            );
        }
        None => println!("_Memory not measured (not our process)._\n"),
    }
    println!(
        "## List latency, {} Services in one namespace (one h2 connection, sequential)\n",
        out.objects
    );
    println!("| flavour | lists | body bytes | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, s, bytes) in [
        ("JSON list", &out.json, out.json_bytes),
        (
            "Table, whole (`kubectl get --chunk-size=0`)",
            &out.table,
            out.table_bytes,
        ),
    ] {
        println!(
            "| {name} | {} | {bytes} | {} | {} | {} |",
            s.len(),
            ms(s.percentile(50.0)),
            ms(s.percentile(99.0)),
            ms(s.max())
        );
    }
    let s = &out.paged;
    println!(
        "| Table in pages of {} (one `kubectl get`, all pages) | {} | - | {} | {} | {} |",
        list::KUBECTL_CHUNK,
        s.len(),
        ms(s.percentile(50.0)),
        ms(s.percentile(99.0)),
        ms(s.max())
    );
    println!();
}

fn watch_section(out: &watch::Outcome) {
    println!("## Watch delivery latency\n");
    println!(
        "{} watchers (one HTTP/1.1 connection each) on the ConfigMaps of one namespace; one writer creates {} ConfigMaps one at a time every {} ms on its own h2 connection. Delivered {}/{}; {} deliveries reached a watcher before the writer had read its own 201.\n",
        out.watchers,
        out.events,
        out.interval.as_millis(),
        out.delivered,
        out.expected,
        out.before_ack
    );
    println!("| measured from | samples | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in [
        ("just before the write is sent", &out.from_write),
        (
            "the writer reading its 201 (0 if the event came first)",
            &out.from_ack,
        ),
        ("(the write itself: send to 201)", &out.write),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            s.len(),
            ms(s.percentile(50.0)),
            ms(s.percentile(99.0)),
            ms(s.max())
        );
    }
    println!();
}

fn endpoints_section(small: &endpoints::Outcome, big: &endpoints::Outcome) {
    println!("## Endpoint programming\n");
    println!(
        "{} Services x {} pods: pod Ready write (merge patch of /status) to the EndpointSlice event on a watch, {} flips one at a time.\n",
        small.services, small.pods_per_service, small.flips
    );
    println!("| samples | p50 ms | p99 ms | max ms |\n|---:|---:|---:|---:|");
    let l = &small.latency;
    println!(
        "| {} | {} | {} | {} |\n",
        l.len(),
        ms(l.percentile(50.0)),
        ms(l.percentile(99.0)),
        ms(l.max())
    );
    println!(
        "| Services x pods | writing them (no controllers) s | controllers start to every slice complete s |\n|---|---:|---:|"
    );
    for o in [small, big] {
        println!(
            "| {} x {} | {:.1} | {:.2} |",
            o.services,
            o.pods_per_service,
            o.populate.as_secs_f64(),
            o.rebuild.as_secs_f64()
        );
    }
    println!();
}

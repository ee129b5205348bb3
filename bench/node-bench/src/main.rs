//! Benchmarks of the pontifex node side, printed as Markdown. The shell drivers beside this crate
//! (`bench/pod-start.sh`, `bench/netperf.sh`) build the lab and call these subcommands:
//!
//! - **pod-start**: against a running cluster (`pontifex up --nodes 2`), create pods running the
//!   built-in server and time create → Ready as seen by a watch (wall clock on this machine), plus the
//!   steps in between (scheduled, pod IP set, Ready) and the pod's own `Ready.lastTransitionTime −
//!   creationTimestamp`. Two modes: all pods at once (`burst`) and one at a time (`serial`).
//! - **rr-server / rr-client**: TCP request/response round trips (1-byte request, 1-byte answer, one
//!   connection, Nagle off), netperf's TCP_RR; run inside lab namespaces with `ip netns exec`.
//! - **bulk-server / bulk-client**: a one-connection bulk TCP sender, used when iperf3 is absent.
//!
//! What it is not: a test. Nothing here asserts a target; RESULTS.md says where each figure stands.

mod podstart;
mod wire;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "node-bench", about = "pontifex node-side benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pod start latency, create → Ready, against the cluster of a kubeconfig.
    PodStart {
        /// The cluster's kubeconfig (`<data-dir>/kubeconfig` of `pontifex up`).
        #[arg(long)]
        kubeconfig: std::path::PathBuf,
        /// How many pods per mode.
        #[arg(long, default_value_t = 100)]
        pods: usize,
        /// `burst` (all at once), `serial` (one at a time) or `both`.
        #[arg(long, default_value = "both")]
        mode: String,
    },
    /// Answer 1-byte requests with 1 byte on every connection to `listen`.
    RrServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Round trips to an rr-server for `seconds`; prints one Markdown-ready line of figures.
    RrClient {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// Read and discard whatever connections to `listen` send.
    BulkServer {
        #[arg(long)]
        listen: std::net::SocketAddr,
    },
    /// Send as fast as possible to a bulk-server for `seconds`; prints Gbit/s.
    BulkClient {
        #[arg(long)]
        to: std::net::SocketAddr,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::PodStart {
            kubeconfig,
            pods,
            mode,
        } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(podstart::run(&kubeconfig, pods, &mode))
        }
        Command::RrServer { listen } => wire::rr_server(listen),
        Command::RrClient { to, seconds } => {
            let r = wire::rr_client(to, Duration::from_secs(seconds))?;
            println!("{}", r.line());
            Ok(())
        }
        Command::BulkServer { listen } => wire::bulk_server(listen),
        Command::BulkClient { to, seconds } => {
            let gbps = wire::bulk_client(to, Duration::from_secs(seconds))?;
            println!("{gbps:.2}");
            Ok(())
        }
    }
}

/// The `q`-quantile (0..=1) of sorted `xs` (nearest rank).
pub(crate) fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len());
    xs[rank - 1]
}

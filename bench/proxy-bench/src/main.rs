//! `proxy-bench`: benchmarks of the kernel service proxy (root; run by bench/proxy.sh).
//!
//! `proxy-bench rules` — full sync of N Services × E endpoints and one changed endpoint:
//! our nftables transaction vs kube-proxy's iptables layout (our byte-exact renderer) through
//! `iptables-restore`, render and apply timed apart. `proxy-bench datapath` — new-connection
//! rate and latency through a ClusterIP vs direct to the pod, with N Services installed.
//! `serve` and `client` are the two ends of the data-path test, run inside namespaces.
//!
//! Every namespace is created by this process, named `pxb<pid>-…`, and deleted on drop.
//! Not a timed test: figures go to bench/RESULTS.md by hand, with the machine.

mod datapath;
mod netns;
mod rules;

use std::net::SocketAddr;

use anyhow::Result;
use clap::{Parser, Subcommand};
use pontifex_proxy::nftables::NftLayout;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Rule programming: full sync and one-endpoint change.
    Rules {
        /// Service counts.
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,30000")]
        services: Vec<usize>,
        /// Endpoints per Service.
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// The Service count at which to measure a one-endpoint change.
        #[arg(long, default_value_t = 10000)]
        change_at: usize,
        /// Repetitions of each measurement (the best is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Skip `iptables-restore` (nf_tables backend) above this many Services (it takes
        /// minutes at 10k; iptables-legacy is still run).
        #[arg(long, default_value_t = 1000)]
        skip_nft_backend_above: usize,
        /// Measure the one-transaction nft full resync only up to this many Services (the
        /// kernel's cost of one batch grows with its square: minutes at 10k).
        #[arg(long, default_value_t = 3000)]
        single_batch_max: usize,
        /// Run the Chains (kube-proxy) nft layout only up to this many Services.
        #[arg(long, default_value_t = 10000)]
        chains_max: usize,
    },
    /// Writes full.nft and change.nft (one endpoint changed) for N Services to a directory.
    Dump {
        #[arg(long)]
        dir: String,
        #[arg(long, default_value_t = 10000)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        endpoints: usize,
        /// nft layout: maps or chains.
        #[arg(long, default_value = "maps", value_parser = |s: &str| NftLayout::parse(s).ok_or("maps or chains"))]
        layout: NftLayout,
    },
    /// Data path: connections per second via ClusterIP vs direct.
    Datapath {
        /// Service counts.
        #[arg(long, value_delimiter = ',', default_value = "10,1000,10000")]
        services: Vec<usize>,
        /// Seconds per client run.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Alternating direct/ClusterIP rounds.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
    },
    /// (internal) The pod's server.
    Serve {
        #[arg(long)]
        addr: SocketAddr,
    },
    /// (internal) The client.
    Client {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        seconds: f64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let prefix = format!("pxb{}", std::process::id());
    match cli.cmd {
        Cmd::Serve { addr } => datapath::serve(addr),
        Cmd::Dump {
            dir,
            services,
            endpoints,
            layout,
        } => rules::dump(&dir, services, endpoints, layout),
        Cmd::Client { addr, seconds } => datapath::client(addr, seconds),
        Cmd::Rules {
            services,
            endpoints,
            change_at,
            repeat,
            skip_nft_backend_above,
            single_batch_max,
            chains_max,
        } => {
            netns::remove_leftovers(&prefix);
            let mut all = Vec::new();
            for n in services {
                let mut best: Vec<rules::Sample> = Vec::new();
                for r in 0..repeat.max(1) {
                    let s = rules::full_and_change(
                        &format!("{prefix}-{n}-{r}"),
                        n,
                        endpoints,
                        n == change_at,
                        skip_nft_backend_above,
                        single_batch_max,
                        chains_max,
                    )?;
                    if best.is_empty() {
                        best = s;
                    } else {
                        for (b, x) in best.iter_mut().zip(s) {
                            if x.render + x.apply < b.render + b.apply {
                                *b = x;
                            }
                        }
                    }
                }
                eprintln!("{}", rules::table(&best));
                all.extend(best);
            }
            println!("{}", rules::table(&all));
            Ok(())
        }
        Cmd::Datapath {
            services,
            seconds,
            rounds,
        } => {
            netns::remove_leftovers(&prefix);
            let mut rows = Vec::new();
            for n in services {
                for (k, mode) in ["nftables", "nftables-chains", "iptables"]
                    .into_iter()
                    .enumerate()
                {
                    let row =
                        datapath::measure(&format!("{prefix}-d{n}-{k}"), mode, n, seconds, rounds)?;
                    eprintln!("{}", datapath::table(std::slice::from_ref(&row)));
                    rows.push(row);
                }
            }
            println!("{}", datapath::table(&rows));
            Ok(())
        }
    }
}

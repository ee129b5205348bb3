//! `up --nodes N`: the lab (an underlay bridge, a namespace per node, built by `pontifex-node`), one
//! `pontifex agent` process per node, and routes from this machine to every node's pod CIDR, so the
//! host reaches pods and NodePorts like a machine on the nodes' network would. Each agent runs the
//! service proxy (`--proxy-mode`) in its node's namespace; the host routes the LoadBalancer pool to the
//! first node.
//!
//! The agents are separate processes so that one can be killed and restarted like a real node's; their
//! pids are kept in `<data-dir>/lab/agents.pid` so `pontifex down` finds them after a crash of `up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use pontifex_node::net::lab::{self as netlab, LabConfig, LabNode};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::UpArgs;

pub(crate) struct Lab {
    prefix: String,
    data_dir: PathBuf,
    nodes: Vec<LabNode>,
    agents: Vec<Child>,
    routes: tokio::task::JoinHandle<()>,
}

/// The cluster DNS Service's address: the 10th of the Service range, kubeadm's convention.
fn cluster_dns(range: ipnet::Ipv4Net) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(range.network()).saturating_add(10))
}

fn pid_file(data_dir: &Path) -> PathBuf {
    data_dir.join("lab").join("agents.pid")
}

impl Lab {
    /// Build the lab and start its agents; `None` (with a message) when this process may not.
    pub(crate) async fn start(
        args: &UpArgs,
        client: kube::Client,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Option<Lab>> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!(
                "--nodes {}: lab nodes are network namespaces and need root; running the control plane only",
                args.nodes
            );
            return Ok(None);
        }
        let data_dir = std::fs::canonicalize(&args.server.data_dir)?;
        stop_agents(&data_dir);
        let cfg = LabConfig::new(args.lab_prefix.clone());
        let names: Vec<String> = (1..=args.nodes).map(|i| format!("node-{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        // `up` removes what a crashed run left behind before building.
        let nodes = netlab::up(&cfg, &refs)
            .await
            .context("building the lab network")?;
        // A node's own connections to ClusterIPs, LoadBalancer and external IPs need a route before
        // the nat hooks see them (the lab has no default route, a real node would); LoadBalancer
        // and external IPs are routed from the host to the first node, like a router in front of
        // the cluster would.
        for n in &nodes {
            netlab::route_in_node(n, args.server.service_cluster_ip_range)
                .await
                .context("routing the Service CIDR in a lab node")?;
            netlab::route_in_node(n, args.controllers.lb_pool)
                .await
                .context("routing the LoadBalancer pool in a lab node")?;
        }
        if let Some(first) = nodes.first() {
            netlab::route_from_host(&cfg, args.controllers.lb_pool, first.ip)
                .await
                .context("routing the LoadBalancer pool to the lab")?;
        }
        let exe = std::env::current_exe().context("finding the pontifex executable")?;
        let kubeconfig = data_dir.join("kubeconfig");
        std::fs::create_dir_all(data_dir.join("lab"))?;
        let mut agents = Vec::new();
        let mut pids = String::new();
        for n in &nodes {
            let log =
                std::fs::File::create(data_dir.join("lab").join(format!("agent-{}.log", n.name)))?;
            let child = tokio::process::Command::new(&exe)
                .arg("agent")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--node", &n.name, "--node-ip", &n.ip.to_string()])
                .args(["--netns", &n.netns, "--netns-prefix", &cfg.prefix])
                .args(["--backend", args.backend.as_str()])
                .args(["--proxy-mode", args.proxy_mode.as_str()])
                .arg("--cluster-cidr")
                .arg(args.controllers.cluster_cidr.to_string())
                .arg("--cluster-dns")
                .arg(cluster_dns(args.server.service_cluster_ip_range).to_string())
                .arg("--data-dir")
                .arg(data_dir.join("nodes").join(&n.name))
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting an agent")?;
            pids.push_str(&format!("{}\n", child.id().unwrap_or(0)));
            agents.push(child);
        }
        std::fs::write(pid_file(&data_dir), pids)?;
        // Routes from this machine to every node's pod CIDR: the host is no node, so it routes to all.
        let routes = tokio::spawn(pontifex_agent::keep_routes(
            client,
            None,
            String::new(),
            pontifex_agent::Backend::HostGw,
            shutdown,
        ));
        Ok(Some(Lab {
            prefix: cfg.prefix,
            data_dir,
            nodes,
            agents,
            routes,
        }))
    }

    /// `node-1 172.31.0.10, node-2 172.31.0.11`.
    pub(crate) fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Stop the agents and remove the lab (pods included).
    pub(crate) async fn stop(mut self) {
        for a in &mut self.agents {
            if let Some(pid) = a.id() {
                signal(pid, nix::sys::signal::Signal::SIGTERM);
            }
        }
        for a in &mut self.agents {
            if tokio::time::timeout(Duration::from_secs(5), a.wait())
                .await
                .is_err()
            {
                let _ = a.kill().await;
            }
        }
        let _ = std::fs::remove_file(pid_file(&self.data_dir));
        self.routes.abort();
        if let Err(e) = netlab::destroy(&self.prefix).await {
            tracing::warn!(error = %e, "removing the lab failed; `pontifex down` retries");
        }
    }
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid)
        && pid > 1
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// Kill the agents a previous `up` of `data_dir` started (after a crash of it, they outlive it).
pub(crate) fn stop_agents(data_dir: &Path) {
    let Ok(text) = std::fs::read_to_string(pid_file(data_dir)) else {
        return;
    };
    for pid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        // Only if it is still a pontifex agent: a pid may have been reused since.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == b"agent") {
            signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(pid_file(data_dir));
}

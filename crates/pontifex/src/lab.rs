//! `up --nodes N`: the lab (an underlay bridge, a namespace per node, built by `pontifex-node`), one
//! `pontifex agent` process per node, and routes from this machine to every node's pod CIDR, so the
//! host reaches pods and NodePorts like a machine on the nodes' network would. Each agent runs the
//! service proxy (`--proxy-mode`) in its node's namespace; the host routes the LoadBalancer pool to the
//! first node.
//!
//! Rootless (`up` without root, or `--rootless`): no lab network at all. One agent (`node-1`,
//! InternalIP 127.0.0.1) runs in this namespace with `--rootless`; pods are its processes, listening
//! on the loopback image of their pod IP (`pontifex_node::workload::rootless`), and its userspace
//! proxy serves ClusterIPs from a loopback Service range and NodePorts on 127.0.0.1.
//!
//! Dual-stack (`--service-cluster-ip-range` or `--cluster-cidr` with an IPv6 CIDR): the underlay
//! also carries ULA IPv6 (`fd00:172:31::/64`: this machine `::1` on the lab bridge, node `i`
//! `fd00:172:31::<10+i>`), each agent gets `--node-ip <v4>,<v6>` and both cluster CIDRs, each node
//! routes both Service ranges out of its `eth0`, and this machine routes every node's IPv6 podCIDR
//! as it does the IPv4 ones. IPv6 routes go only to the lab's own ULA prefixes (no default route).
//! Rootless mode refuses dual-stack ranges ([`refuse_dual_stack_rootless`]). Single-stack IPv4
//! labs are built exactly as before (no IPv6 address, route or sysctl at all).
//!
//! The agents are separate processes so that one can be killed and restarted like a real node's; their
//! pids are kept in `<data-dir>/lab/agents.pid` so `pontifex down` finds them after a crash of `up`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use pontifex_api::cidr::DualStackCidrs;
use pontifex_node::net::lab::{self as netlab, LabConfig, LabNode};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::UpArgs;

pub(crate) struct Lab {
    /// The lab network's prefix; `None` in rootless mode (no network was built).
    prefix: Option<String>,
    data_dir: PathBuf,
    nodes: Vec<LabNode>,
    agents: Vec<Child>,
    routes: tokio::task::JoinHandle<()>,
}

/// The cluster DNS Service's address: the 10th of the primary Service range, kubeadm's convention.
fn cluster_dns(ranges: DualStackCidrs) -> std::net::IpAddr {
    match ranges.primary() {
        ipnet::IpNet::V4(v4) => {
            std::net::Ipv4Addr::from(u32::from(v4.network()).saturating_add(10)).into()
        }
        ipnet::IpNet::V6(v6) => {
            std::net::Ipv6Addr::from(u128::from(v6.network()).saturating_add(10)).into()
        }
    }
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
        let dual = is_dual_stack(args);
        let cfg = if dual {
            LabConfig::new(args.lab_prefix.clone()).dual_stack()
        } else {
            LabConfig::new(args.lab_prefix.clone())
        };
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
            for range in args.server.service_cluster_ip_range.iter() {
                // An IPv6 range only where the node has IPv6 (a dual-stack lab).
                if range.addr().is_ipv6() && n.ip6.is_none() {
                    continue;
                }
                netlab::route_in_node(n, range)
                    .await
                    .context("routing the Service CIDR in a lab node")?;
            }
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
            let node_ips = match n.ip6 {
                Some(ip6) => format!("{},{ip6}", n.ip),
                None => n.ip.to_string(),
            };
            let child = tokio::process::Command::new(&exe)
                .arg("agent")
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--node", &n.name, "--node-ip", &node_ips])
                .args(["--netns", &n.netns, "--netns-prefix", &cfg.prefix])
                .args(["--backend", args.backend.as_str()])
                .args(["--proxy-mode", args.proxy_mode.as_str()])
                .args(["--nftables-layout", args.nftables_layout.as_str()])
                .arg("--cluster-cidr")
                .arg(cluster_cidr_flag(args, dual))
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
            prefix: Some(cfg.prefix),
            data_dir,
            nodes,
            agents,
            routes,
        }))
    }

    /// Rootless mode: one agent in this namespace, no lab network.
    pub(crate) async fn start_rootless(args: &UpArgs) -> anyhow::Result<Lab> {
        if args.nodes > 1 {
            eprintln!(
                "--nodes {}: rootless mode runs one node (every node would share this machine's loopback)",
                args.nodes
            );
        }
        let data_dir = std::fs::canonicalize(&args.server.data_dir)?;
        stop_agents(&data_dir);
        let exe = std::env::current_exe().context("finding the pontifex executable")?;
        std::fs::create_dir_all(data_dir.join("lab"))?;
        let node = LabNode {
            name: "node-1".into(),
            ip: std::net::Ipv4Addr::LOCALHOST,
            ip6: None,
            netns: String::new(),
        };
        let log = std::fs::File::create(
            data_dir
                .join("lab")
                .join(format!("agent-{}.log", node.name)),
        )?;
        let child = tokio::process::Command::new(&exe)
            .arg("agent")
            .arg("--rootless")
            .arg("--kubeconfig")
            .arg(data_dir.join("kubeconfig"))
            .args(["--node", &node.name, "--node-ip", &node.ip.to_string()])
            .args(["--proxy-mode", "userspace"])
            .arg("--cluster-cidr")
            .arg(args.controllers.cluster_cidr.primary().to_string())
            .arg("--cluster-dns")
            .arg(cluster_dns(args.server.service_cluster_ip_range).to_string())
            .arg("--data-dir")
            .arg(data_dir.join("nodes").join(&node.name))
            // kube-proxy's ports, on loopback only (this is the user's machine, not a lab node);
            // any free port when another program holds them.
            .arg("--metrics-bind-address")
            .arg(loopback_port(10249).to_string())
            .arg("--healthz-bind-address")
            .arg(loopback_port(10256).to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the agent")?;
        std::fs::write(
            pid_file(&data_dir),
            format!("{}\n", child.id().unwrap_or(0)),
        )?;
        Ok(Lab {
            prefix: None,
            data_dir,
            nodes: vec![node],
            agents: vec![child],
            routes: tokio::spawn(async {}),
        })
    }

    /// Whether this is rootless mode's single node.
    pub(crate) fn is_rootless(&self) -> bool {
        self.prefix.is_none()
    }

    /// `node-1 172.31.0.10, node-2 172.31.0.11` (dual-stack: `node-1 172.31.0.10 fd00:172:31::10, …`).
    pub(crate) fn describe(&self) -> String {
        self.nodes
            .iter()
            .map(|n| match n.ip6 {
                Some(ip6) => format!("{} {} {ip6}", n.name, n.ip),
                None => format!("{} {}", n.name, n.ip),
            })
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
        match &self.prefix {
            Some(prefix) => {
                if let Err(e) = netlab::destroy(prefix).await {
                    tracing::warn!(error = %e, "removing the lab failed; `pontifex down` retries");
                }
            }
            // Rootless pods have no namespace whose removal ends them: end them one by one.
            None => stop_pods(&self.data_dir),
        }
    }
}

/// The cluster CIDRs (`--cluster-cidr`), primary first.
fn cluster_cidrs(args: &UpArgs) -> Vec<ipnet::IpNet> {
    args.controllers.cluster_cidr.iter().collect()
}

/// Whether the lab is dual-stack: an IPv6 Service range or cluster CIDR.
pub(crate) fn is_dual_stack(args: &UpArgs) -> bool {
    args.server.service_cluster_ip_range.is_dual_stack()
        || cluster_cidrs(args).iter().any(|c| c.addr().is_ipv6())
}

/// The agents' `--cluster-cidr`: both CIDRs in a dual-stack lab, the IPv4 one otherwise.
fn cluster_cidr_flag(args: &UpArgs, dual: bool) -> String {
    cluster_cidrs(args)
        .iter()
        .filter(|c| dual || c.addr().is_ipv4())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Rootless mode is IPv4 only (pods are loopback images of IPv4 addresses): a dual-stack or IPv6
/// range is refused with a message rather than half served.
pub(crate) fn refuse_dual_stack_rootless(args: &UpArgs) -> anyhow::Result<()> {
    let v6 = args
        .server
        .service_cluster_ip_range
        .iter()
        .chain(cluster_cidrs(args))
        .any(|c| c.addr().is_ipv6());
    if v6 {
        anyhow::bail!(
            "rootless mode is IPv4 only: --service-cluster-ip-range {} and --cluster-cidr {} name \
             IPv6; dual-stack needs the lab (run `pontifex up` as root), or give IPv4 ranges only",
            args.server.service_cluster_ip_range,
            cluster_cidrs(args)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(())
}

/// Ends every container the agents of `data_dir` started (their records under
/// `nodes/<node>/pods/<pod>/<container>/state.json`): the container process, then its shim. A
/// recorded process that is gone, or whose pid was reused since, is left alone.
pub(crate) fn stop_pods(data_dir: &Path) {
    use pontifex_node::workload::state::{self, ContainerRecord};
    let dirs = |p: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect()
    };
    for node in dirs(data_dir.join("nodes")) {
        for pod in dirs(node.join("pods")) {
            for container in dirs(pod) {
                let Ok(Some(rec)) = state::read::<ContainerRecord>(&state::state_path(&container))
                else {
                    continue;
                };
                let Some(inst) = rec.running else { continue };
                for p in [inst.process, inst.shim] {
                    if p.alive() {
                        signal(p.pid, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
        }
    }
}

/// `127.0.0.1:<port>` when it is free, else `127.0.0.1:0` (the kernel picks one).
fn loopback_port(port: u16) -> std::net::SocketAddr {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr,
        Err(_) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

/// The Service range rootless mode uses when the configured one is not loopback.
pub(crate) const ROOTLESS_SERVICE_RANGE: &str = "127.96.0.0/12";

/// What `up` says in rootless mode.
pub(crate) const ROOTLESS_NOTICE: &str = "\
Rootless mode: pods are processes on this machine, listening on their pod IP's loopback image
(10.244.0.5 -> 127.244.0.5; container ports below net.ipv4.ip_unprivileged_port_start on port+10000),
ClusterIPs come from a loopback range (a Service port below it is served on port+10000 too) and
NodePorts listen on 127.0.0.1 (the userspace proxy).
Not available in this mode: NetworkPolicy enforcement, source IP preservation (the proxy connects
from loopback), VXLAN/host-gw and pod-to-pod by pod IP (pods reach each other through Services),
hostPort below the unprivileged port start, LoadBalancer and external IPs outside 127.0.0.0/8,
and pod isolation (pods share this machine's network, hostname and files).";

/// Rootless mode's address ranges: the Service range must be loopback (the proxy binds ClusterIPs
/// without any address set-up only there), so a range outside 127.0.0.0/8 — the default
/// 10.96.0.0/12 included — is replaced by 127.96.0.0/12; a loopback range is kept. Pod IPs stay in
/// the cluster CIDR (Kubernetes refuses loopback endpoint addresses) and their loopback images must
/// not meet the Service range or 127.0.0.1.
pub(crate) fn rootless_ranges(args: &mut UpArgs) -> anyhow::Result<()> {
    // Rootless mode serves one IPv4 range: a dual-stack or IPv6 setting is replaced like a
    // non-loopback one.
    let range = args.server.service_cluster_ip_range;
    let loopback_v4 = match range.primary() {
        ipnet::IpNet::V4(v4) if !range.is_dual_stack() && v4.network().is_loopback() => Some(v4),
        _ => None,
    };
    let services = match loopback_v4 {
        Some(v4) => v4,
        None => {
            let loopback: ipnet::Ipv4Net = ROOTLESS_SERVICE_RANGE.parse().expect("static CIDR");
            eprintln!(
                "rootless mode: --service-cluster-ip-range {range} is not loopback; using {loopback}"
            );
            args.server.service_cluster_ip_range = loopback.into();
            loopback
        }
    };
    let Some(pods) = args.controllers.cluster_cidr.ipv4() else {
        anyhow::bail!(
            "rootless mode needs an IPv4 --cluster-cidr (got {})",
            args.controllers.cluster_cidr
        );
    };
    let image = ipnet::Ipv4Net::new(
        pontifex_node::workload::rootless::loopback_of(pods.network()),
        pods.prefix_len().max(8),
    )?
    .trunc();
    if image.contains(&std::net::Ipv4Addr::LOCALHOST)
        || image.contains(&services.network())
        || services.contains(&image.network())
    {
        anyhow::bail!(
            "rootless mode: the pods' loopback images ({image}, from --cluster-cidr {pods}) overlap \
             the Service range {services} or 127.0.0.1; pick another --cluster-cidr"
        );
    }
    Ok(())
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

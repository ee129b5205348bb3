//! The pontifex binary: parses flags, builds the components and runs them. No logic of its own lives
//! here beyond reading manifest files for `up -f`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use ipnet::Ipv4Net;
use pontifex_apiserver::{ApiServer, Applied, Config};
use pontifex_store::{Store, StoreOptions};
use tokio_util::sync::CancellationToken;

mod lab;
mod podcmd;

#[derive(Parser)]
#[command(
    name = "pontifex",
    version,
    about = "Kubernetes service networking, whole and real"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a one-machine cluster: the API server (and, as they land, controllers and node agents).
    Up(UpArgs),
    /// Run the API server alone.
    Apiserver(ServerArgs),
    /// Run the controllers against a Kubernetes API (pontifex's or a real cluster's).
    Controllers(ControllersArgs),
    /// Run the node agent: register a Node and run the pods bound to it.
    Agent(AgentArgs),
    /// Remove the lab `up --nodes` made: its pods, node namespaces, links and routes.
    Down(DownArgs),
    /// Print the service proxy's rules for the cluster's Services, as a node's agent programs them.
    Rules(RulesArgs),
    /// List a node's userspace proxy like `ipvsadm -L -n`: virtual services, schedulers, endpoints
    /// and their connection counters.
    Ipvsadm(IpvsadmArgs),
    /// Run a command inside a pod's container (its network, UTS and mount namespaces, its environment).
    Exec(ExecArgs),
    /// Print a container's logs.
    Logs(LogsArgs),
    /// The per-container shim the agent runs (owns the container's output and exit status).
    #[command(hide = true)]
    ContainerShim,
    /// The built-in test server that stands in for agnhost (netexec, serve-hostname, pause).
    #[command(hide = true)]
    Agnhost {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The prefix of every namespace and link of the `up` lab.
const LAB_PREFIX: &str = "pfx";

#[derive(Args)]
struct AgentArgs {
    /// The kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The Node name to register (kubelet's --hostname-override).
    #[arg(long)]
    node: String,
    /// The node's InternalIP (kubelet's --node-ip): an IPv4 address, or for a dual-stack node an
    /// IPv4 and an IPv6 address, comma-separated (IPv4 first: the primary family).
    #[arg(long, value_parser = parse_node_ips)]
    node_ip: (std::net::Ipv4Addr, Option<std::net::Ipv6Addr>),
    /// Cross-node pod routing: host-gw or vxlan (flannel's backends).
    #[arg(long, default_value = "host-gw")]
    backend: pontifex_agent::Backend,
    /// Where IPAM allocations and container logs live.
    #[arg(long, default_value = "/var/lib/pontifex")]
    data_dir: PathBuf,
    /// The node's network namespace, when the node is a lab namespace rather than this machine.
    #[arg(long)]
    netns: Option<String>,
    /// Prefix of pod namespace names (`<prefix>-pod-<node>-<uid>`).
    #[arg(long, default_value = LAB_PREFIX)]
    netns_prefix: String,
    /// The cluster DNS address pods' resolv.conf names (kubelet's flag; the 10th address of the
    /// Service range). Empty: ClusterFirst pods get this machine's resolv.conf.
    #[arg(long, default_value = "10.96.0.10", value_delimiter = ',')]
    cluster_dns: Vec<IpAddr>,
    /// The cluster domain (kubelet's flag).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Rootless mode: no network namespaces, bridge or routes; pods are processes of this namespace
    /// on loopback addresses and the userspace proxy serves the Services (needs no privileges).
    #[arg(long)]
    rootless: bool,
    #[command(flatten)]
    proxy: ProxyFlags,
}

/// The service proxy's flags; names and defaults are kube-proxy's.
#[derive(Args)]
struct ProxyFlags {
    /// The dataplane: nftables, iptables or userspace.
    #[arg(long, default_value = "nftables", value_parser = parse_proxy_mode)]
    proxy_mode: pontifex_agent::ProxyMode,
    /// nftables mode's table layout: `maps` (shared maps, few chains) or `chains` (kube-proxy's
    /// per-service and per-endpoint chains).
    #[arg(long, default_value = "maps", value_parser = parse_nftables_layout)]
    nftables_layout: pontifex_agent::NftLayout,
    /// The pods' CIDR, or one per family comma-separated: traffic from inside it is pod traffic
    /// (local-traffic detection).
    #[arg(long, value_delimiter = ',')]
    cluster_cidr: Vec<ipnet::IpNet>,
    /// Where NodePorts are served: CIDRs, or `primary` (default: every local address for iptables,
    /// `primary` for nftables).
    #[arg(long, value_delimiter = ',')]
    nodeport_addresses: Vec<String>,
    /// SNAT all traffic sent to Services.
    #[arg(long)]
    masquerade_all: bool,
    /// Least time between two rule syncs (`1s`, `500ms`, `0`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    min_sync_period: std::time::Duration,
    /// A full rule sync at least this often.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    sync_period: std::time::Duration,
    /// Where the metrics server listens (`IP:port`, or an IP for port 10249), in the node namespace.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = |s: &str| parse_bind(s, 10249))]
    metrics_bind_address: std::net::SocketAddr,
    /// Where `/healthz` and `/livez` listen (`IP:port`, or an IP for port 10256), in the node namespace.
    #[arg(long, default_value = "0.0.0.0:10256", value_parser = |s: &str| parse_bind(s, 10256))]
    healthz_bind_address: std::net::SocketAddr,
}

impl ProxyFlags {
    fn config(&self) -> anyhow::Result<pontifex_agent::ProxyConfig> {
        Ok(pontifex_agent::ProxyConfig {
            mode: self.proxy_mode,
            nftables_layout: self.nftables_layout,
            cluster_cidrs: self.cluster_cidr.clone(),
            nodeport_addresses: pontifex_agent::NodePortAddresses::parse(&self.nodeport_addresses)
                .map_err(anyhow::Error::msg)?,
            masquerade_all: self.masquerade_all,
            min_sync_period: self.min_sync_period,
            sync_period: self.sync_period,
            metrics_bind_address: self.metrics_bind_address,
            healthz_bind_address: self.healthz_bind_address,
        })
    }
}

/// kubelet's `--node-ip`: one address, or two of different families. The primary must be IPv4
/// here (IPv6-primary nodes are not supported).
fn parse_node_ips(s: &str) -> Result<(std::net::Ipv4Addr, Option<std::net::Ipv6Addr>), String> {
    let ips: Vec<IpAddr> = s
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<IpAddr>()
                .map_err(|_| format!("{p:?} is not an IP address"))
        })
        .collect::<Result<_, _>>()?;
    match ips.as_slice() {
        [IpAddr::V4(v4)] => Ok((*v4, None)),
        [IpAddr::V4(v4), IpAddr::V6(v6)] => Ok((*v4, Some(*v6))),
        [IpAddr::V6(_), ..] => Err(format!(
            "--node-ip {s}: the primary (first) address must be IPv4; IPv6-primary nodes are not supported"
        )),
        _ => Err(format!(
            "--node-ip {s}: one IPv4 address, or an IPv4 and an IPv6 address"
        )),
    }
}

fn parse_proxy_mode(s: &str) -> Result<pontifex_agent::ProxyMode, String> {
    s.parse()
}

fn parse_nftables_layout(s: &str) -> Result<pontifex_agent::NftLayout, String> {
    pontifex_agent::NftLayout::parse(s)
        .ok_or_else(|| format!("unknown nftables layout {s:?} (maps or chains)"))
}

#[derive(Args)]
struct IpvsadmArgs {
    /// List the virtual services (the only command; accepted for ipvsadm's habits).
    #[arg(short = 'L', long = "list")]
    list: bool,
    /// Numeric addresses (always: nothing is resolved).
    #[arg(short = 'n', long)]
    numeric: bool,
    /// Traffic counters (Conns, InPkts, OutPkts, InBytes, OutBytes) instead of the connection view.
    #[arg(long)]
    stats: bool,
    /// The node whose proxy to list (default: the only one).
    #[arg(long)]
    node: Option<String>,
    /// The `up` data dir (its agents' files are under nodes/), or an agent's --data-dir.
    #[arg(long, default_value = ".pontifex")]
    data_dir: PathBuf,
}

/// kube-proxy's bind address flags: `IP:port`, or a bare IP with the default port.
fn parse_bind(s: &str, default_port: u16) -> Result<std::net::SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{s:?} is not an address like 0.0.0.0:10256"))
}

#[derive(Args)]
struct RulesArgs {
    /// The kubeconfig of the cluster (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Which dataplane's rules: nftables, iptables or userspace (its virtual services).
    #[arg(long, default_value = "nftables", value_parser = parse_proxy_mode)]
    mode: pontifex_agent::ProxyMode,
    /// nftables mode's table layout: maps or chains (printed as the first line).
    #[arg(long, default_value = "maps", value_parser = parse_nftables_layout)]
    nftables_layout: pontifex_agent::NftLayout,
    /// The node whose view to print (its endpoints are local, its InternalIP serves NodePorts).
    #[arg(long)]
    node: Option<String>,
    /// The pods' CIDR, or one per family comma-separated (local-traffic detection), as given to the
    /// agents. An IPv6 one also prints the IPv6 rules when no --node says which families exist.
    #[arg(long, default_value = "10.244.0.0/16", value_delimiter = ',')]
    cluster_cidr: Vec<ipnet::IpNet>,
}

// Where `exec` and `logs` find the pod.
#[derive(Args)]
struct PodTarget {
    /// The pod.
    pod: String,
    /// Its namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The container (default: the first).
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// The kubeconfig (default: <data-dir>/kubeconfig when it exists, then $KUBECONFIG).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The `up` data dir (its lab agents' files are under nodes/), or an agent's --data-dir.
    #[arg(long, default_value = ".pontifex")]
    data_dir: PathBuf,
}

#[derive(Args)]
struct ExecArgs {
    #[command(flatten)]
    target: PodTarget,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<std::ffi::OsString>,
}

#[derive(Args)]
struct LogsArgs {
    #[command(flatten)]
    target: PodTarget,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The previous instance's logs (after a restart).
    #[arg(short = 'p', long)]
    previous: bool,
}

#[derive(Args)]
struct DownArgs {
    /// The data directory of the `up` whose lab to remove.
    #[arg(long, default_value = ".pontifex")]
    data_dir: PathBuf,
    /// The lab's name prefix (hidden: tests run labs side by side).
    #[arg(long, default_value = LAB_PREFIX, hide = true)]
    lab_prefix: String,
}

/// Flags of the controllers; names are kube-controller-manager's.
#[derive(Args, Clone)]
struct ControllerFlags {
    /// The CIDR node pod CIDRs come from, or two (comma-separated), one per IP family, for a
    /// dual-stack cluster: nodes get one pod CIDR from each, the first's first.
    #[arg(long, default_value = "10.244.0.0/16", value_parser = pontifex_controllers::parse_cluster_cidr)]
    cluster_cidr: pontifex_api::cidr::DualStackCidrs,
    /// The prefix length of each node's pod CIDR on a single-stack cluster (not allowed on a
    /// dual-stack one; default 24 for IPv4, 64 for IPv6).
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    /// The prefix length of each node's IPv4 pod CIDR (default 24).
    #[arg(long)]
    node_cidr_mask_size_ipv4: Option<u8>,
    /// The prefix length of each node's IPv6 pod CIDR (default 64).
    #[arg(long)]
    node_cidr_mask_size_ipv6: Option<u8>,
    /// The most endpoints one EndpointSlice holds.
    #[arg(long, default_value_t = 100)]
    max_endpoints_per_slice: usize,
    /// Seconds a node may go without a heartbeat before it is marked NotReady.
    #[arg(long, default_value = "50s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// The pool LoadBalancer Services' external IPs come from.
    #[arg(long, default_value = "172.31.255.0/24")]
    lb_pool: Ipv4Net,
}

impl ControllerFlags {
    fn config(&self) -> anyhow::Result<pontifex_controllers::Config> {
        let config = pontifex_controllers::Config {
            cluster_cidr: self.cluster_cidr,
            node_cidr_mask_size: self.node_cidr_mask_size,
            node_cidr_mask_size_ipv4: self.node_cidr_mask_size_ipv4,
            node_cidr_mask_size_ipv6: self.node_cidr_mask_size_ipv6,
            max_endpoints_per_slice: self.max_endpoints_per_slice,
            node_monitor_grace_period: self.node_monitor_grace_period,
            lb_pool: self.lb_pool,
            ..pontifex_controllers::Config::default()
        };
        // Refuse bad mask flags at start, as kube-controller-manager does.
        config.node_cidr_mask_sizes()?;
        Ok(config)
    }
}

#[derive(Args)]
struct ControllersArgs {
    /// The kubeconfig of the cluster to control (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    flags: ControllerFlags,
    /// Take the leader Lease before acting, so several copies can run with one active.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// How long a leader Lease lasts without renewal before another candidate may take it.
    #[arg(long, default_value = "15s", value_parser = parse_duration, hide = true)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it gives up leadership (and exits).
    #[arg(long, default_value = "10s", value_parser = parse_duration, hide = true)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How long candidates wait between attempts to take or renew the Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration, hide = true)]
    leader_elect_retry_period: std::time::Duration,
}

/// `500ms`, `50s`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = s.trim().split_at(
        s.trim()
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.trim().len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 50s"))?;
    let secs = match unit {
        "ms" => return Ok(std::time::Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration like 50s")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// Flags shared by `up` and `apiserver`; names are kube-apiserver's.
#[derive(Args, Clone)]
struct ServerArgs {
    /// Where the cluster's state, credentials and kubeconfig live.
    #[arg(long, default_value = ".pontifex")]
    data_dir: PathBuf,
    /// The port to serve HTTPS on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    secure_port: u16,
    /// The address to listen on. Loopback by default; 0.0.0.0 to listen on every interface.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// The address published in the default/kubernetes endpoints (default: the bind address).
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The CIDR Service cluster IPs come from, or two (comma-separated), one per IP family, for a
    /// dual-stack cluster: the first is the primary family.
    #[arg(long, default_value = pontifex_apiserver::DEFAULT_SERVICE_CLUSTER_IP_RANGE,
          value_parser = pontifex_apiserver::parse_service_cluster_ip_range)]
    service_cluster_ip_range: pontifex_api::cidr::DualStackCidrs,
    /// The inclusive range of NodePorts, as `30000-32767`.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),
    /// The storage backend: `redb` (durable, in the data dir) or `memory` (nothing survives).
    #[arg(long, default_value = "redb")]
    storage_backend: String,
    /// etcd endpoints (not supported yet: a later release adds the etcd backend).
    #[arg(long)]
    etcd_servers: Option<String>,
    /// How many store revisions are kept for watches to resume from; a watch from an older
    /// resourceVersion gets 410 Gone and must re-list. Hidden: for tests and tuning.
    #[arg(long, default_value_t = StoreOptions::default().history_window, hide = true)]
    watch_history_revisions: usize,
    /// How often, in seconds, a watch that asked for bookmarks gets one (kube-apiserver: about a
    /// minute). Hidden: for tests.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    watch_bookmark_interval_seconds: u64,
}

#[derive(Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Manifests to apply once the cluster is up: files, or directories of .yaml/.yml/.json files.
    #[arg(short = 'f', long = "filename")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    controllers: ControllerFlags,
    /// Lab nodes to run, each a network namespace with its own agent (needs root; 0: control plane only).
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Cross-node pod routing in the lab: host-gw or vxlan.
    #[arg(long, default_value = "host-gw")]
    backend: pontifex_agent::Backend,
    /// The lab agents' service proxy: nftables, iptables or userspace.
    #[arg(long, default_value = "nftables", value_parser = parse_proxy_mode)]
    proxy_mode: pontifex_agent::ProxyMode,
    /// The lab agents' nftables layout: maps or chains.
    #[arg(long, default_value = "maps", value_parser = parse_nftables_layout)]
    nftables_layout: pontifex_agent::NftLayout,
    /// The lab's name prefix (hidden: tests run labs side by side).
    #[arg(long, default_value = LAB_PREFIX, hide = true)]
    lab_prefix: String,
    /// Rootless mode (the default without root): one agent in this namespace, pods as processes on
    /// loopback addresses, the userspace proxy serving Services on loopback and NodePorts on
    /// 127.0.0.1.
    #[arg(long)]
    rootless: bool,
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like 30000-32767"))?;
    let lo: u16 = lo.trim().parse().map_err(|e| format!("{lo:?}: {e}"))?;
    let hi: u16 = hi.trim().parse().map_err(|e| format!("{hi:?}: {e}"))?;
    if lo == 0 || lo > hi {
        return Err(format!("{s:?} is not a valid port range"));
    }
    Ok((lo, hi))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::ContainerShim = cli.command {
        // No runtime, no logging set-up: the shim is a plain process that must stay small.
        std::process::exit(pontifex_node::workload::shim::main());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up(args).await,
            Command::Apiserver(args) => apiserver(args).await,
            Command::Controllers(args) => controllers(args).await,
            Command::Agent(args) => agent(args).await,
            Command::Down(args) => down(args).await,
            Command::Rules(args) => rules(args).await,
            Command::Ipvsadm(args) => ipvsadm(args).await,
            Command::Exec(args) => {
                let target = find_container(&args.target).await?;
                std::process::exit(podcmd::exec(&target, &args.command)?);
            }
            Command::Logs(args) => {
                let target = find_container(&args.target).await?;
                podcmd::logs(&target, args.follow, args.previous).await
            }
            Command::ContainerShim => unreachable!("handled before the runtime starts"),
            Command::Agnhost { args } => {
                let code = pontifex_node::workload::agnhost::run_until_signal(args).await?;
                std::process::exit(code);
            }
        }
    })
}

fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    if args.etcd_servers.is_some() {
        bail!(
            "--etcd-servers: the etcd backend is not available in this build yet; use --storage-backend redb"
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let options = StoreOptions::default().with_history_window(args.watch_history_revisions);
    Ok(match args.storage_backend.as_str() {
        "redb" => Arc::new(
            pontifex_store::redb_backend::RedbStore::open(
                args.data_dir.join("store.redb"),
                options,
            )
            .with_context(|| format!("opening the store in {}", args.data_dir.display()))?,
        ),
        "memory" => Arc::new(pontifex_store::memory::MemoryStore::new(options)),
        other => bail!("--storage-backend {other:?}: expected redb or memory"),
    })
}

async fn start(args: &ServerArgs, shutdown: CancellationToken) -> anyhow::Result<ApiServer> {
    let store = open_store(args)?;
    let mut config = Config::new(args.data_dir.join("pki"));
    config.bind_address = args.bind_address;
    config.secure_port = args.secure_port;
    config.advertise_address = args.advertise_address;
    config.service_cluster_ip_range = args.service_cluster_ip_range;
    config.service_node_port_range = args.service_node_port_range;
    config.bookmark_interval = std::time::Duration::from_secs(args.watch_bookmark_interval_seconds);
    let server = ApiServer::bind(config, store, shutdown)
        .await
        .context("starting the API server")?;
    let kubeconfig = args.data_dir.join("kubeconfig");
    write_private(&kubeconfig, &server.kubeconfig())?;
    Ok(server)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    // Write beside and rename, so a reader never sees half a kubeconfig.
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Cancel `token` on Ctrl-C or SIGTERM.
fn stop_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

async fn apiserver(args: ServerArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let server = start(&args, shutdown).await?;
    tracing::info!(addr = %server.local_addr(), kubeconfig = %args.data_dir.join("kubeconfig").display(), "API server ready");
    server.serve().await?;
    Ok(())
}

async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    let rootless = args.rootless || !nix::unistd::Uid::effective().is_root();
    if rootless {
        lab::refuse_dual_stack_rootless(&args)?;
        lab::rootless_ranges(&mut args)?;
    }
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let server = start(&args.server, shutdown.clone()).await?;
    // The controllers run in-process but talk to the API server like any client, over HTTPS.
    let client = client_for(&args.server.data_dir.join("kubeconfig")).await?;
    let mut config = args.controllers.config()?;
    config.leader_elect = false;
    let controllers = tokio::spawn(pontifex_controllers::run(
        client.clone(),
        config,
        shutdown.clone(),
    ));
    let lab = if args.nodes > 0 && rootless {
        Some(lab::Lab::start_rootless(&args).await?)
    } else if args.nodes > 0 {
        lab::Lab::start(&args, client, shutdown.clone()).await?
    } else {
        None
    };
    let mut failures = 0;
    for manifest in read_manifests(&args.files)? {
        let (source, doc) = manifest;
        match server.apply(doc).await {
            Ok((what, outcome)) => {
                let verb = match outcome {
                    Applied::Created => "created",
                    Applied::Configured => "configured",
                    Applied::Unchanged => "unchanged",
                };
                println!("{what} {verb}");
            }
            Err(e) => {
                failures += 1;
                eprintln!("error applying {source}: {e}");
            }
        }
    }
    let kubeconfig = std::fs::canonicalize(args.server.data_dir.join("kubeconfig"))?;
    println!();
    println!(
        "pontifex is up: API server at https://{}",
        server.local_addr()
    );
    println!("Use it with kubectl:");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get svc -A");
    if let Some(lab) = &lab {
        println!(
            "Lab nodes (reachable from this machine): {}",
            lab.describe()
        );
        if lab.is_rootless() {
            println!("{}", lab::ROOTLESS_NOTICE);
        }
    }
    println!("Press Ctrl-C to stop; `pontifex up` with the same --data-dir resumes this cluster.");
    if failures > 0 {
        eprintln!("{failures} manifest(s) could not be applied (see above)");
    }
    server.serve().await?;
    if let Some(lab) = lab {
        lab.stop().await;
    }
    if let Ok(Err(e)) = controllers.await {
        tracing::warn!(error = %e, "the controllers stopped with an error");
    }
    Ok(())
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let client = match &args.kubeconfig {
        Some(path) => client_for(path).await?,
        None => kube::Client::try_default()
            .await
            .context("finding a kubeconfig")?,
    };
    let config = pontifex_agent::Config {
        node_name: args.node,
        node_ip: args.node_ip.0,
        node_ip6: args.node_ip.1,
        netns: args.netns,
        netns_prefix: args.netns_prefix,
        backend: args.backend,
        data_dir: args.data_dir,
        pontifex_bin: std::env::current_exe().context("finding the pontifex executable")?,
        proxy: Some(args.proxy.config()?),
        cluster_dns: args.cluster_dns,
        cluster_domain: args.cluster_domain,
        rootless: args.rootless,
    };
    pontifex_agent::run(client, config, shutdown).await?;
    Ok(())
}

/// `pontifex rules`: the rules a full sync would program for the cluster's Services right now.
async fn rules(args: RulesArgs) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let client = match &args.kubeconfig {
        Some(path) => client_for(path).await?,
        None => kube::Client::try_default()
            .await
            .context("finding a kubeconfig")?,
    };
    let lp = kube::api::ListParams::default();
    let services = kube::Api::<Service>::all(client.clone())
        .list(&lp)
        .await
        .context("listing Services")?;
    let slices = kube::Api::<EndpointSlice>::all(client.clone())
        .list(&lp)
        .await
        .context("listing EndpointSlices")?;
    let (node_name, node_ips) = match &args.node {
        Some(name) => {
            let node = kube::Api::<Node>::all(client)
                .get(name)
                .await
                .with_context(|| format!("reading Node {name}"))?;
            // Its first InternalIP of each family, IPv4 first.
            let ips: Vec<IpAddr> = node
                .status
                .and_then(|s| s.addresses)
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse::<IpAddr>().ok())
                .collect();
            let first = |v6: bool| ips.iter().find(|ip| ip.is_ipv6() == v6).copied();
            (
                name.clone(),
                first(false).into_iter().chain(first(true)).collect(),
            )
        }
        None => (String::new(), Vec::new()),
    };
    let proxy = pontifex_agent::ProxyConfig {
        mode: args.mode,
        nftables_layout: args.nftables_layout,
        cluster_cidrs: args.cluster_cidr,
        ..pontifex_agent::ProxyConfig::default()
    };
    print!(
        "{}",
        pontifex_agent::render_rules(
            &proxy,
            &node_name,
            &node_ips,
            &services.items,
            &slices.items
        )
    );
    Ok(())
}

/// The stats socket of the node's agent: `<data-dir>/nodes/<node>/`, or the data dir itself when it
/// is an agent's.
fn stats_socket(data_dir: &Path, node: Option<&str>) -> anyhow::Result<PathBuf> {
    let nodes = data_dir.join("nodes");
    if let Some(n) = node {
        return Ok(nodes.join(n).join(pontifex_agent::STATS_SOCKET));
    }
    let own = data_dir.join(pontifex_agent::STATS_SOCKET);
    if own.exists() {
        return Ok(own);
    }
    let mut found: Vec<String> = std::fs::read_dir(&nodes)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(pontifex_agent::STATS_SOCKET).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    match found.as_slice() {
        [one] => Ok(nodes.join(one).join(pontifex_agent::STATS_SOCKET)),
        [] => bail!(
            "no userspace proxy found under {} (is `pontifex up --proxy-mode userspace` running?)",
            data_dir.display()
        ),
        many => bail!(
            "several nodes run a userspace proxy; pick one with --node ({})",
            many.join(", ")
        ),
    }
}

/// `pontifex ipvsadm`: a running userspace proxy's virtual services and counters.
async fn ipvsadm(args: IpvsadmArgs) -> anyhow::Result<()> {
    let _ = args.list;
    let path = stats_socket(&args.data_dir, args.node.as_deref())?;
    let stats = pontifex_agent::read_stats(&path)
        .await
        .with_context(|| format!("reading the proxy's counters from {}", path.display()))?;
    print!(
        "{}",
        pontifex_proxy::userspace::render_ipvsadm(&stats, args.numeric, args.stats)
    );
    Ok(())
}

async fn down(args: DownArgs) -> anyhow::Result<()> {
    lab::stop_agents(&args.data_dir);
    // Rootless pods are plain processes (lab pods also end with their namespaces below).
    lab::stop_pods(&args.data_dir);
    pontifex_node::net::lab::destroy(&args.lab_prefix)
        .await
        .context("removing the lab")?;
    println!("lab {} removed", args.lab_prefix);
    Ok(())
}

/// The container `exec` and `logs` act on, found through --kubeconfig, else the data dir's
/// kubeconfig, else the default one.
async fn find_container(t: &PodTarget) -> anyhow::Result<podcmd::Target> {
    let local = t.data_dir.join("kubeconfig");
    let client = match &t.kubeconfig {
        Some(path) => client_for(path).await?,
        None if local.exists() => client_for(&local).await?,
        None => kube::Client::try_default()
            .await
            .context("finding a kubeconfig")?,
    };
    podcmd::find(
        client,
        &t.data_dir,
        &t.namespace,
        &t.pod,
        t.container.as_deref(),
    )
    .await
}

/// A kube client for the cluster a kubeconfig file names.
async fn client_for(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .with_context(|| format!("using {}", path.display()))?;
    Ok(kube::Client::try_from(config)?)
}

async fn controllers(args: ControllersArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone());
    let client = match &args.kubeconfig {
        Some(path) => client_for(path).await?,
        None => kube::Client::try_default()
            .await
            .context("finding a kubeconfig")?,
    };
    let mut config = args.flags.config()?;
    config.leader_elect = args.leader_elect;
    config.leader_elect_lease_duration = args.leader_elect_lease_duration;
    config.leader_elect_renew_deadline = args.leader_elect_renew_deadline;
    config.leader_elect_retry_period = args.leader_elect_retry_period;
    pontifex_controllers::run(client, config, shutdown).await?;
    Ok(())
}

/// Every YAML/JSON document in the given files and directories (directories: their `.yaml`, `.yml` and
/// `.json` files, sorted), with where it came from.
fn read_manifests(paths: &[PathBuf]) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|e| {
                    e.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(p.clone());
        }
    }
    let mut docs = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let parsed: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("parsing {}", f.display()))?;
        docs.extend(
            parsed
                .into_iter()
                .filter(|d| !d.is_null())
                .map(|d| (f.display().to_string(), d)),
        );
    }
    Ok(docs)
}

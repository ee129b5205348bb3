//! The pods bound to this node, kubelet-style: one worker task per pod that builds its sandbox
//! (namespace, veth, address), starts its containers, drives their probes, writes the pod status when
//! it changes, and on deletion stops the containers within the grace period, removes the pod object
//! and releases the sandbox.
//!
//! Tasks: one watch of the node's pods (field selector `spec.nodeName`), one of all Services (for the
//! Service environment variables), and a worker per pod fed the latest object through a
//! `tokio::sync::watch` (a worker only ever needs the newest version of its pod).
//!
//! Addresses: one per podCIDR of the node (an IPAM per family over one directory), IPv4 first:
//! `status.podIP` is the IPv4 one, `status.podIPs` lists both, and `status.hostIPs` the node's.
//! hostPort mappings and rootless pods are IPv4 only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodStatus, Secret, Service};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use pontifex_node::net::{ipam::Ipam, lab, netns, routes, sandbox};
use pontifex_node::workload::dns::{self, NodeDns};
use pontifex_node::workload::envvars::{self, ObjectLookup, PodAddresses};
use pontifex_node::workload::plan;
use pontifex_node::workload::probe::{self, ProbeEvent, ProbeKind, ProbeWorker};
use pontifex_node::workload::process::{BindMount, SpawnSpec};
use pontifex_node::workload::rootless;
use pontifex_node::workload::state::{self, ContainerRecord};
use pontifex_node::workload::status::{self, ContainerView, StatusInput};
use pontifex_node::workload::supervisor::{
    BackoffConfig, Container, ContainerConfig, ContainerState, Phase, RestartPolicy,
};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::hostport::{self, HostPorts};
use crate::{Backend, Config, Error};

/// How often a pod worker looks at its probes and status.
const TICK: Duration = Duration::from_millis(200);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: i64 = 30;

/// What every pod worker shares.
struct Node {
    client: kube::Client,
    config: Arc<Config>,
    /// The podCIDRs, IPv4 first, and an allocator for each.
    cidrs: Vec<(IpNet, Ipam)>,
    services: Store<Service>,
    hostports: HostPorts,
}

pub(crate) async fn run(
    client: kube::Client,
    config: Arc<Config>,
    cidrs: Vec<IpNet>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let Some(cidr) = cidrs.iter().find_map(|c| match c {
        IpNet::V4(v4) => Some(*v4),
        IpNet::V6(_) => None,
    }) else {
        return Err(Error::Net(pontifex_node::net::NetError::Invalid(format!(
            "the node has no IPv4 podCIDR ({cidrs:?}); IPv6-only nodes are not supported"
        ))));
    };
    // One directory for both families (host-local's layout), so IPv4 state stays where it was.
    let ipams = cidrs
        .iter()
        .map(|c| Ok((*c, Ipam::open(config.data_dir.join("ipam"), *c)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let (services, writer) = reflector::store::<Service>();
    let svc_stream = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(writer);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(svc_stream);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                e = s.next() => if e.is_none() { return },
            }
        }
    });
    let _ = services.wait_until_ready().await;
    let hostports = HostPorts::new();
    let applier = pontifex_proxy::apply::KernelApplier::new(config.netns.as_deref())?;
    let hp = hostports.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move { hp.sync(applier, cidr, stop).await });
    let node = Arc::new(Node {
        client: client.clone(),
        config: config.clone(),
        cidrs: ipams,
        services,
        hostports,
    });

    let pods: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.node_name);
    let mut stream = watcher(pods, watcher::Config::default().fields(&selector))
        .default_backoff()
        .boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut listing: HashSet<String> = HashSet::new();
    let mut first_list = true;
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            e = stream.next() => e,
        };
        let seen = |pod: Pod, workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>| {
            let Some(uid) = pod.metadata.uid.clone() else {
                return;
            };
            let pod = Arc::new(pod);
            match workers.get(&uid) {
                Some(tx) if !tx.is_closed() => {
                    tx.send_replace(Some(pod));
                }
                _ => {
                    let (tx, rx) = watch::channel(Some(pod));
                    workers.insert(uid, tx);
                    tokio::spawn(worker(node.clone(), rx, shutdown.clone()));
                }
            }
        };
        match event {
            None => break,
            Some(Err(e)) => tracing::debug!(error = %e, "pod watch failed; retrying"),
            Some(Ok(watcher::Event::Init)) => listing.clear(),
            Some(Ok(watcher::Event::InitApply(p))) => {
                listing.extend(p.metadata.uid.clone());
                seen(p, &mut workers);
            }
            Some(Ok(watcher::Event::InitDone)) => {
                // Pods gone while the watch was down.
                for (uid, tx) in &workers {
                    if !listing.contains(uid) {
                        tx.send_replace(None);
                    }
                }
                if std::mem::take(&mut first_list) {
                    collect_orphans(&node, &listing).await;
                    seed_hostports(&node, &workers);
                }
            }
            Some(Ok(watcher::Event::Apply(p))) => seen(p, &mut workers),
            Some(Ok(watcher::Event::Delete(p))) => {
                if let Some(tx) = p.metadata.uid.as_ref().and_then(|u| workers.get(u)) {
                    tx.send_replace(None);
                }
            }
        }
        workers.retain(|_, tx| !tx.is_closed());
    }
    Ok(())
}

/// At start, before the hostPort table is rewritten: the mappings of the pods that were running
/// before an agent restart (their address is in their status), so the rewrite keeps their rules
/// instead of dropping them until their workers have adopted them.
fn seed_hostports(node: &Node, workers: &HashMap<String, watch::Sender<Option<Arc<Pod>>>>) {
    for (uid, tx) in workers {
        if tx.is_closed() {
            continue;
        }
        let Some(pod) = tx.borrow().clone() else {
            continue;
        };
        let status = pod.status.as_ref();
        let terminal = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            && !terminal
        {
            node.hostports.set(uid, hostport::mappings(&pod, ip));
        }
    }
    node.hostports.mark_ready();
}

/// At start: the containers, sandboxes, files and addresses of pods that no longer exist (deleted
/// while the agent was down) are removed.
async fn collect_orphans(node: &Node, live: &HashSet<String>) {
    // Containers first, by their records (this also finds hostNetwork pods' containers, which have
    // no namespace of their own).
    let pods_dir = node.config.data_dir.join("pods");
    for entry in std::fs::read_dir(&pods_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(uid) = name.rsplit('_').next() else {
            continue;
        };
        if live.contains(uid) {
            continue;
        }
        tracing::info!(pod = %name, "stopping the containers of a pod that is gone");
        for c in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(Some(rec)) = state::read::<ContainerRecord>(&state::state_path(&c.path()))
                && let Some(running) = rec.running
                && running.process.alive()
            {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(running.process.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if let Err(e) = std::fs::remove_dir_all(entry.path()) {
            tracing::warn!(pod = %name, error = %e, "removing the files of a pod that is gone");
        }
    }
    let prefix = pod_netns_prefix(&node.config);
    if let Ok(existing) = netns::list(&prefix) {
        for ns in existing {
            let uid = &ns[prefix.len()..];
            if !live.contains(uid) {
                tracing::info!(netns = %ns, "removing the sandbox of a pod that is gone");
                // Whatever still runs inside would keep the namespace alive.
                let _ = lab::kill_processes_in(std::slice::from_ref(&ns));
                let _ = sandbox::teardown_pod(node.config.netns.as_deref(), &ns).await;
            }
        }
    }
    for (_, ipam) in &node.cidrs {
        match ipam.gc(live) {
            Ok(freed) if !freed.is_empty() => {
                tracing::info!(?freed, "released addresses of pods that are gone")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "IPAM garbage collection failed"),
        }
    }
}

/// This node's pod namespaces are `<prefix>-pod-<node>-<uid>`: lab nodes share one namespace list,
/// and each agent must only ever collect its own.
fn pod_netns_prefix(config: &Config) -> String {
    format!("{}-pod-{}-", config.netns_prefix, config.node_name)
}

/// A pod's network: where its processes run and its addresses.
struct Sandbox {
    /// The namespace its processes enter (`None`: the agent's own, for hostNetwork on a real node
    /// and for every pod in rootless mode).
    netns: Option<String>,
    ip: Ipv4Addr,
    /// The IPv6 address on a dual-stack node (for hostNetwork pods: the node's).
    ip6: Option<Ipv6Addr>,
    /// Ours to tear down (not hostNetwork).
    owned: bool,
    /// Rootless mode's sandbox without a network namespace: the pod's processes listen on its
    /// IP's loopback image, privileged ports shifted.
    rootless: Option<rootless::PortShift>,
}

impl Sandbox {
    /// The pod's IPs, primary first (`status.podIPs`).
    fn ips(&self) -> Vec<String> {
        let mut out = vec![self.ip.to_string()];
        out.extend(self.ip6.map(|ip| ip.to_string()));
        out
    }

    /// Where probes and the runtime reach the pod: its IP, or its loopback image when rootless.
    fn reach_ip(&self) -> Ipv4Addr {
        match self.rootless {
            Some(_) => rootless::loopback_of(self.ip),
            None => self.ip,
        }
    }
}

async fn setup_sandbox(node: &Node, pod: &Pod) -> Result<Sandbox, Error> {
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    if host_network {
        return Ok(Sandbox {
            netns: node.config.netns.clone(),
            ip: node.config.node_ip,
            ip6: node.config.node_ip6,
            owned: false,
            rootless: None,
        });
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut addrs: Vec<(IpNet, IpAddr)> = Vec::new();
    for (cidr, ipam) in &node.cidrs {
        addrs.push((*cidr, ipam.allocate(&uid)?));
    }
    let (mut ip, mut ip6) = (None, None);
    for (_, a) in &addrs {
        match a {
            IpAddr::V4(v4) => ip = ip.or(Some(*v4)),
            IpAddr::V6(v6) => ip6 = ip6.or(Some(*v6)),
        }
    }
    let ip = ip.expect("run() requires an IPv4 podCIDR");
    if node.config.rootless {
        // No namespace, veth or address: the loopback image of the IP is local already.
        return Ok(Sandbox {
            netns: None,
            ip,
            ip6: None,
            owned: true,
            rootless: Some(rootless::PortShift::of_this_machine()),
        });
    }
    let ns = format!("{}{uid}", pod_netns_prefix(&node.config));
    // A pod from before an agent restart: its namespace, veth and address are still there and its
    // containers still run in it; rebuilding would cut their connections, so it is adopted as it is.
    // Adopted only with exactly the addresses allocated (a node that became dual-stack since
    // rebuilds its pods' sandboxes, giving them their IPv6 address).
    if let Ok(found) = sandbox::inspect_pod(&ns).await
        && !found.is_empty()
        && found.iter().map(|a| a.ip).collect::<Vec<_>>()
            == addrs.iter().map(|(_, a)| *a).collect::<Vec<_>>()
    {
        tracing::info!(netns = %ns, %ip, ?ip6, "adopting the sandbox of a running pod");
        return Ok(Sandbox {
            netns: Some(ns),
            ip,
            ip6,
            owned: true,
            rootless: None,
        });
    }
    let mtu = (node.config.backend == Backend::Vxlan).then_some(routes::VXLAN_MTU);
    let network = sandbox::setup_pod(node.config.netns.as_deref(), &ns, &addrs, mtu).await?;
    Ok(Sandbox {
        netns: Some(network.netns),
        ip,
        ip6,
        owned: true,
        rootless: None,
    })
}

async fn teardown_sandbox(node: &Node, pod: &Pod, sandbox: &Sandbox) {
    if let Some(uid) = &pod.metadata.uid {
        node.hostports.set(uid, Vec::new());
    }
    if !sandbox.owned {
        return;
    }
    if let Some(ns) = &sandbox.netns
        && let Err(e) = sandbox::teardown_pod(node.config.netns.as_deref(), ns).await
    {
        tracing::warn!(netns = %ns, error = %e, "removing a pod sandbox failed");
    }
    if let Some(uid) = &pod.metadata.uid {
        for (_, ipam) in &node.cidrs {
            if let Err(e) = ipam.release(uid) {
                tracing::warn!(%uid, error = %e, "releasing a pod address failed");
            }
        }
    }
}

/// ConfigMaps and Secrets a pod's environment refers to, read once when its containers start.
#[derive(Default)]
struct Objects {
    config_maps: HashMap<(String, String), ConfigMap>,
    secrets: HashMap<(String, String), Secret>,
}

impl ObjectLookup for Objects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

async fn referenced_objects(client: &kube::Client, pod: &Pod) -> Objects {
    let ns = pod.namespace().unwrap_or_default();
    let (mut cms, mut secrets) = (HashSet::new(), HashSet::new());
    for c in pod.spec.iter().flat_map(|s| &s.containers) {
        for e in c.env.iter().flatten() {
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.config_map_key_ref.as_ref())
            {
                cms.insert(r.name.clone());
            }
            if let Some(r) = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                secrets.insert(r.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    let mut out = Objects::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for name in cms {
        if let Ok(Some(cm)) = cm_api.get_opt(&name).await {
            out.config_maps.insert((ns.clone(), name), cm);
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for name in secrets {
        if let Ok(Some(s)) = secret_api.get_opt(&name).await {
            out.secrets.insert((ns.clone(), name), s);
        }
    }
    out
}

/// One running container with its probe workers.
struct Running {
    spec: k8s_openapi::api::core::v1::Container,
    handle: Container,
    env: Vec<(String, String)>,
    /// The instance the probe workers belong to (new workers for a new instance).
    instance: Option<String>,
    startup: Option<ProbeWorker>,
    readiness: Option<ProbeWorker>,
    liveness: Option<ProbeWorker>,
}

impl Running {
    fn reset_probes(&mut self) {
        self.startup = self
            .spec
            .startup_probe
            .as_ref()
            .map(|p| ProbeWorker::new(ProbeKind::Startup, p));
        self.readiness = self
            .spec
            .readiness_probe
            .as_ref()
            .map(|p| ProbeWorker::new(ProbeKind::Readiness, p));
        self.liveness = self
            .spec
            .liveness_probe
            .as_ref()
            .map(|p| ProbeWorker::new(ProbeKind::Liveness, p));
    }

    fn view(&self) -> ContainerView {
        let state = self.handle.state().borrow().clone();
        let running = matches!(state.phase, Phase::Running { .. });
        let started = running && self.startup.as_ref().is_none_or(ProbeWorker::result);
        ContainerView {
            ready: probe::container_ready(running, self.startup.as_ref(), self.readiness.as_ref()),
            started,
            state,
        }
    }
}

async fn start_containers(
    node: &Node,
    pod: &Pod,
    sandbox: &Sandbox,
) -> Result<BTreeMap<String, Running>, Error> {
    let objects = referenced_objects(&node.client, pod).await;
    let services: Vec<Service> = node
        .services
        .state()
        .iter()
        .map(|s| (**s).clone())
        .collect();
    let ns = pod.namespace().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let service_env =
        envvars::service_env(&services, &ns, spec.enable_service_links.unwrap_or(true));
    let addrs = PodAddresses {
        pod_ips: sandbox.ips(),
        host_ips: node.config.node_ip_strings(),
    };
    let hostname = if spec.host_network == Some(true) {
        node.config.node_name.clone()
    } else {
        spec.hostname.clone().unwrap_or_else(|| pod.name_any())
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_dir(&node.config, pod);
    let mounts = pod_files(node, pod, sandbox, &dir);
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap_or(DEFAULT_GRACE)
            .max(0) as u64,
    );
    let mut out = BTreeMap::new();
    for c in &spec.containers {
        let env = match envvars::container_env(pod, c, &service_env, &objects, &addrs) {
            Ok(env) => envvars::with_runtime_defaults(env, &hostname),
            Err(e) => {
                tracing::warn!(pod = %pod.name_any(), container = %c.name, error = %e, "container environment");
                envvars::with_runtime_defaults(Vec::new(), &hostname)
            }
        };
        let mut env = env;
        if let Some(shift) = sandbox.rootless {
            env.extend(rootless::pod_env(sandbox.ip, shift));
        }
        let argv = plan::plan(c).argv(&node.config.pontifex_bin);
        let spawn = SpawnSpec {
            argv,
            env: env.clone(),
            working_dir: c.working_dir.as_ref().map(PathBuf::from),
            netns: sandbox.netns.as_deref().map(netns::path),
            // A UTS or mount namespace needs privileges a rootless agent lacks: the pod keeps the
            // host's hostname (`HOSTNAME` has the pod's) and files.
            hostname: sandbox.rootless.is_none().then(|| hostname.clone()),
            log_path: None,
            mounts: if sandbox.rootless.is_some() {
                Vec::new()
            } else {
                mounts.clone()
            },
        };
        let handle = Container::start(ContainerConfig {
            spawn,
            log_dir: dir.join(&c.name),
            shim: vec![
                node.config.pontifex_bin.clone().into(),
                "container-shim".into(),
            ],
            restart_policy: RestartPolicy::from_spec(spec.restart_policy.as_deref()),
            backoff: BackoffConfig::default(),
            id_prefix: format!("pontifex://{uid}/{}", c.name),
            restart_grace: grace,
        });
        let mut running = Running {
            spec: c.clone(),
            handle,
            env,
            instance: None,
            startup: None,
            readiness: None,
            liveness: None,
        };
        running.reset_probes();
        out.insert(c.name.clone(), running);
    }
    Ok(out)
}

/// Where a pod's files live: `<data dir>/pods/<namespace>_<name>_<uid>/` (the kubelet's
/// `/var/log/pods` naming), with a directory per container (logs, state) and the pod's resolv.conf and
/// hosts. `pontifex logs` and `pontifex exec` find pods by this name.
fn pod_dir(config: &Config, pod: &Pod) -> PathBuf {
    config.data_dir.join("pods").join(format!(
        "{}_{}_{}",
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

/// Writes the pod's resolv.conf (and, with a network of its own, its hosts file) and returns the
/// bind mounts that show them to its containers. On failure the containers see the node's files.
fn pod_files(node: &Node, pod: &Pod, sandbox: &Sandbox, dir: &std::path::Path) -> Vec<BindMount> {
    let node_dns = NodeDns {
        cluster_dns: node
            .config
            .cluster_dns
            .iter()
            .map(ToString::to_string)
            .collect(),
        cluster_domain: node.config.cluster_domain.clone(),
        host_resolv_conf: std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    let mut files = vec![(
        "resolv.conf",
        dns::resolv_conf(pod, &node_dns).render(),
        "/etc/resolv.conf",
    )];
    if !host_network {
        files.push((
            "hosts",
            dns::hosts_file(pod, &sandbox.ips(), &node.config.cluster_domain),
            "/etc/hosts",
        ));
    }
    let mut mounts = Vec::new();
    for (name, content, target) in files {
        let path = dir.join(name);
        let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, content));
        match written {
            Ok(()) if std::path::Path::new(target).exists() => mounts.push(BindMount {
                source: path,
                target: target.into(),
            }),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "writing a pod file failed")
            }
        }
    }
    mounts
}

/// A probe and container whose numeric ports below the unprivileged start are shifted as the
/// rootless runtime serves them (named ports follow, through the container's ports).
fn shift_probe(
    probe: &k8s_openapi::api::core::v1::Probe,
    container: &k8s_openapi::api::core::v1::Container,
    shift: rootless::PortShift,
) -> (
    k8s_openapi::api::core::v1::Probe,
    k8s_openapi::api::core::v1::Container,
) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let port = |p: i32| i32::from(shift.port(u16::try_from(p).unwrap_or(0))).max(p);
    let mut probe = probe.clone();
    let mut container = container.clone();
    for cp in container.ports.iter_mut().flatten() {
        cp.container_port = port(cp.container_port);
    }
    let shift_int = |v: &mut IntOrString| {
        if let IntOrString::Int(p) = v {
            *p = port(*p);
        }
    };
    if let Some(h) = probe.http_get.as_mut() {
        shift_int(&mut h.port);
    }
    if let Some(t) = probe.tcp_socket.as_mut() {
        shift_int(&mut t.port);
    }
    if let Some(g) = probe.grpc.as_mut() {
        g.port = port(g.port);
    }
    (probe, container)
}

/// Run the due probes of every container and act on what they find.
async fn probe_all(containers: &mut BTreeMap<String, Running>, sandbox: &Sandbox) {
    let now = tokio::time::Instant::now().into_std();
    for r in containers.values_mut() {
        let state = r.handle.state().borrow().clone();
        let Phase::Running { id, started, .. } = state.phase else {
            continue;
        };
        if r.instance.as_deref() != Some(id.as_str()) {
            r.instance = Some(id);
            r.reset_probes();
        }
        let startup_done = r.startup.as_ref().is_none_or(ProbeWorker::result);
        let mut restart = false;
        for (worker, probe) in [
            (&mut r.startup, r.spec.startup_probe.as_ref()),
            (&mut r.liveness, r.spec.liveness_probe.as_ref()),
            (&mut r.readiness, r.spec.readiness_probe.as_ref()),
        ] {
            let (Some(worker), Some(probe)) = (worker.as_mut(), probe) else {
                continue;
            };
            if !worker.due(now, started, startup_done) {
                continue;
            }
            // Rootless: the probe goes where the pod really listens (shifted privileged ports).
            let shifted = sandbox.rootless.map(|s| shift_probe(probe, &r.spec, s));
            let (probe, spec) = match &shifted {
                Some((p, c)) => (p, c),
                None => (probe, &r.spec),
            };
            let success = match probe::check_for(
                probe,
                spec,
                IpAddr::V4(sandbox.reach_ip()),
                sandbox.netns.as_deref().map(netns::path),
                &r.env,
            ) {
                Ok(check) => probe::run_check(&check, worker.timings().timeout).await,
                Err(e) => {
                    tracing::debug!(error = %e, "probe cannot run");
                    false
                }
            };
            if worker.record(tokio::time::Instant::now().into_std(), success) == ProbeEvent::Restart
            {
                restart = true;
            }
        }
        if restart {
            r.handle.restart().await;
        }
    }
}

async fn write_status(
    node: &Node,
    pod: &Pod,
    sandbox: Option<&Sandbox>,
    containers: &BTreeMap<String, Running>,
    last: &mut Option<PodStatus>,
) {
    let views = containers
        .iter()
        .map(|(name, r)| (name.clone(), r.view()))
        .collect();
    let st = status::pod_status(&StatusInput {
        pod,
        sandbox_ready: sandbox.is_some(),
        containers: views,
        pod_ips: sandbox.map(Sandbox::ips).unwrap_or_default(),
        host_ips: node.config.node_ip_strings(),
        now: jiff::Timestamp::now(),
    });
    if last.as_ref() == Some(&st) {
        return;
    }
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"status": st});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => *last = Some(st),
        Err(e) => tracing::debug!(pod = %pod.name_any(), error = %e, "writing pod status failed"),
    }
}

fn grace_of(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(DEFAULT_GRACE);
    Duration::from_secs(secs.max(0) as u64)
}

async fn worker(
    node: Arc<Node>,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    shutdown: CancellationToken,
) {
    let Some(first) = rx.borrow().clone() else {
        return;
    };
    let phase = first.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let name = format!(
        "{}/{}",
        first.namespace().unwrap_or_default(),
        first.name_any()
    );
    let mut last_status = None;
    // The sandbox, retried until it works or the pod goes.
    let sandbox = loop {
        let Some(pod) = rx.borrow().clone() else {
            return;
        };
        if pod.metadata.deletion_timestamp.is_some() {
            finish(&node, &pod, None).await;
            return;
        }
        match setup_sandbox(&node, &pod).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(pod = %name, error = %e, "creating the pod sandbox failed; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    };
    tracing::info!(pod = %name, ip = %sandbox.ip, ip6 = ?sandbox.ip6, "pod sandbox ready");
    if let Some(uid) = &first.metadata.uid {
        node.hostports
            .set(uid, hostport::mappings(&first, sandbox.ip));
    }
    let mut containers = match start_containers(&node, &first, &sandbox).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "starting containers failed");
            BTreeMap::new()
        }
    };
    let mut tick = tokio::time::interval(TICK);
    // A container's state change (started, exited, restarted) is reported at once rather than at
    // the next tick: a new pod is Ready as soon as its process runs.
    let mut states: Vec<_> = containers.values().map(|r| r.handle.state()).collect();
    loop {
        for s in &mut states {
            s.borrow_and_update();
        }
        let current = rx.borrow().clone();
        match current {
            None => {
                // Deleted outright (grace 0 or forced): stop at once.
                for (_, r) in std::mem::take(&mut containers) {
                    r.handle.stop(Duration::ZERO).await;
                }
                teardown_sandbox(&node, &first, &sandbox).await;
                let _ = std::fs::remove_dir_all(pod_dir(&node.config, &first));
                return;
            }
            Some(pod) if pod.metadata.deletion_timestamp.is_some() => {
                let grace = grace_of(&pod);
                tracing::info!(pod = %name, ?grace, "stopping the pod");
                let stops = std::mem::take(&mut containers)
                    .into_values()
                    .map(|r| r.handle.stop(grace));
                futures::future::join_all(stops).await;
                finish(&node, &pod, Some(&sandbox)).await;
                return;
            }
            Some(pod) => {
                probe_all(&mut containers, &sandbox).await;
                write_status(&node, &pod, Some(&sandbox), &containers, &mut last_status).await;
            }
        }
        tokio::select! {
            // The agent stops; the pod's processes keep running.
            () = shutdown.cancelled() => return,
            r = rx.changed() => if r.is_err() { return },
            () = any_changed(&mut states) => {}
            _ = tick.tick() => {}
        }
    }
}

/// Resolves when any of the containers' states changes (never, for none, or once all are gone).
async fn any_changed(states: &mut [watch::Receiver<ContainerState>]) {
    if states.is_empty() {
        return std::future::pending().await;
    }
    let changes = states.iter_mut().map(|s| Box::pin(s.changed()));
    match futures::future::select_all(changes).await {
        (Ok(()), _, _) => {}
        (Err(_), _, _) => std::future::pending().await,
    }
}

/// After the containers stopped: remove the pod object (the kubelet's final, grace-0 delete, guarded
/// by uid so a re-created pod of the same name is not touched), then release the sandbox.
async fn finish(node: &Node, pod: &Pod, sandbox: Option<&Sandbox>) {
    let api: Api<Pod> = Api::namespaced(node.client.clone(), &pod.namespace().unwrap_or_default());
    let dp = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    if let Err(e) = api.delete(&pod.name_any(), &dp).await {
        tracing::debug!(pod = %pod.name_any(), error = %e, "final pod delete failed");
    }
    if let Some(s) = sandbox {
        teardown_sandbox(node, pod, s).await;
    }
    // Its logs and state go with it (the kubelet keeps logs a while; nothing here reads them once
    // the pod object is gone).
    let _ = std::fs::remove_dir_all(pod_dir(&node.config, pod));
}

#[cfg(test)]
mod tests;

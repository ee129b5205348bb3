//! Rule programming: full sync of N Services × E endpoints and one changed endpoint, our
//! nftables transaction (`nft -f`) next to kube-proxy's iptables layout (our byte-exact
//! renderer) through `iptables-restore` (nf_tables backend) and `iptables-legacy-restore`.
//! Render (pure, in process) and apply (the kernel tool, spawn to exit) are timed separately.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::Result;
use k8s_openapi::api::core::v1::{Service, ServicePort as ApiPort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint as ApiEndpoint, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use pontifex_proxy::apply::KernelApplier;
use pontifex_proxy::iptables::{self, IptablesConfig, LocalDetector, SyncKind};
use pontifex_proxy::model::{
    ChangeTracker, Endpoint, IpFamily, Protocol, ProxySnapshot, ServiceKey, ServicePort,
    ServicePortName,
};
use pontifex_proxy::nfnetlink::NfSocket;
use pontifex_proxy::nftables::{self, NftConfig, NftLayout, NftObjects, NftTable};
use pontifex_proxy::sync::{INITIAL_SYNC_PORTS_PER_TRANSACTION, apply_resync};

use crate::netns::Netns;

/// The i-th cluster IP: 10.96.0.0/12 from .1 on (i < 1M).
pub(crate) fn cluster_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 1)) + i as u32)
}

/// The k-th fake endpoint address: 10.128.0.0/9 (never routed; only rules refer to it).
fn fake_endpoint(k: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 2)) + k as u32)
}

pub(crate) fn port_name(i: usize) -> ServicePortName {
    ServicePortName {
        service: ServiceKey::new("bench", format!("svc-{i:06}")),
        port: "http".into(),
        protocol: Protocol::Tcp,
    }
}

/// `n` ClusterIP Services with `e` endpoints each (ready, on other nodes).
pub(crate) fn snapshot(n: usize, e: usize) -> ProxySnapshot {
    let mut snap = ProxySnapshot::default();
    for i in 0..n {
        let name = port_name(i);
        snap.services.insert(
            name.clone(),
            ServicePort {
                name: name.clone(),
                cluster_ips: vec![IpAddr::V4(cluster_ip(i))],
                port: 80,
                node_port: 0,
                external_ips: vec![],
                load_balancer_ips: vec![],
                load_balancer_source_ranges: vec![],
                external_policy_local: false,
                internal_policy_local: false,
                affinity_timeout: None,
                health_check_node_port: 0,
            },
        );
        let mut eps: Vec<Endpoint> = (0..e)
            .map(|j| endpoint(IpAddr::V4(fake_endpoint(i * e + j)), 8080))
            .collect();
        eps.sort_by_key(|x| x.addr().to_string());
        snap.endpoints.insert(name, eps);
    }
    snap
}

/// The API objects behind [`snapshot`]: `n` Services and one EndpointSlice each.
fn objects(n: usize, e: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let svcs = (0..n)
        .map(|i| Service {
            metadata: ObjectMeta {
                namespace: Some("bench".into()),
                name: Some(format!("svc-{i:06}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".into()),
                cluster_ip: Some(cluster_ip(i).to_string()),
                cluster_ips: Some(vec![cluster_ip(i).to_string()]),
                ports: Some(vec![ApiPort {
                    name: Some("http".into()),
                    port: 80,
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        })
        .collect();
    let slices = (0..n)
        .map(|i| slice(i, (0..e).map(|j| fake_endpoint(i * e + j)).collect()))
        .collect();
    (svcs, slices)
}

fn slice(i: usize, ips: Vec<Ipv4Addr>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("bench".into()),
            name: Some(format!("svc-{i:06}-abcde")),
            labels: Some(
                [(
                    "kubernetes.io/service-name".to_owned(),
                    format!("svc-{i:06}"),
                )]
                .into(),
            ),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: ips
            .iter()
            .map(|ip| ApiEndpoint {
                addresses: vec![ip.to_string()],
                node_name: Some("other".into()),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// The one-endpoint change: Service 0's first endpoint gets another address.
fn changed_slice(e: usize) -> EndpointSlice {
    let mut ips: Vec<Ipv4Addr> = (0..e).map(fake_endpoint).collect();
    ips[0] = Ipv4Addr::new(10, 127, 255, 250);
    slice(0, ips)
}

/// A tracker that has synced `n` × `e` (as the proxier's after its first sync).
fn tracker(n: usize, e: usize) -> ChangeTracker {
    let (svcs, slices) = objects(n, e);
    let mut t = ChangeTracker::new("this-node");
    for s in &svcs {
        t.update_service(s).expect("valid Service");
    }
    for s in &slices {
        t.update_endpoint_slice(s).expect("valid slice");
    }
    let _ = t.sync();
    t
}

/// Writes the nft transactions of `n` × `e` to `dir`: `full.nft` (into an empty table) and
/// `change.nft` (one endpoint changed), for looking at `nft` itself (`-c`, time, strace).
pub(crate) fn dump(dir: &str, n: usize, e: usize, layout: NftLayout) -> Result<()> {
    let cfg = NftConfig {
        layout,
        ..nft_config()
    };
    let mut t = tracker(n, e);
    let mut table = NftTable::new(&cfg, t.last());
    std::fs::write(
        format!("{dir}/full.nft"),
        nftables::full_transaction(table.state(), &NftObjects::default()),
    )?;
    for (i, tx) in table
        .initial_transactions(INITIAL_SYNC_PORTS_PER_TRANSACTION)
        .iter()
        .enumerate()
    {
        std::fs::write(format!("{dir}/initial-{i:03}.nft"), tx)?;
    }
    t.update_endpoint_slice(&changed_slice(e))?;
    let up = t.sync();
    let inc = table.update(&up.snapshot, &up.changed_services);
    std::fs::write(format!("{dir}/change.nft"), inc.transaction)?;
    Ok(())
}

pub(crate) fn endpoint(ip: IpAddr, port: u16) -> Endpoint {
    Endpoint {
        ip,
        port,
        is_local: false,
        ready: true,
        serving: true,
        terminating: false,
    }
}

pub(crate) fn nft_config() -> NftConfig {
    NftConfig {
        local_detector: LocalDetector::Cidr("10.0.0.0/8".parse().expect("cidr")),
        service_cidrs: vec!["10.96.0.0/12".parse().expect("cidr")],
        ..NftConfig::default()
    }
}

pub(crate) fn ipt_config() -> IptablesConfig {
    IptablesConfig {
        family: IpFamily::V4,
        local_detector: LocalDetector::Cidr("10.0.0.0/8".parse().expect("cidr")),
        ..IptablesConfig::default()
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub(crate) what: String,
    pub(crate) render: Duration,
    pub(crate) apply: Duration,
    pub(crate) bytes: usize,
    pub(crate) lines: usize,
}

fn lines(s: &str) -> usize {
    s.lines().count()
}

/// iptables-restore flavours: (label, program).
pub(crate) const RESTORES: [(&str, &str); 2] = [
    ("iptables-restore (nft backend)", "iptables-restore"),
    ("iptables-legacy-restore", "iptables-legacy-restore"),
];

/// Full sync into an empty namespace, then (at `change_at` services) one endpoint changed.
/// The Chains layout runs only up to `chains_max` Services (its first sync is quadratic:
/// 9 minutes at 30k).
pub(crate) fn full_and_change(
    ns_prefix: &str,
    n: usize,
    e: usize,
    with_change: bool,
    skip_nft_backend_above: usize,
    single_batch_max: usize,
    chains_max: usize,
) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    let snap = snapshot(n, e);
    // The change: the first Service's first endpoint gets another address.
    let mut changed = snap.clone();
    let first = port_name(0);
    if let Some(eps) = changed.endpoints.get_mut(&first) {
        eps[0] = endpoint(IpAddr::V4(Ipv4Addr::new(10, 127, 255, 250)), 8080);
        eps.sort_by_key(|x| x.addr().to_string());
    }
    let restores: Vec<(&str, &str)> = RESTORES
        .iter()
        .copied()
        .filter(|(_, prog)| n <= skip_nft_backend_above || *prog != "iptables-restore")
        .collect();

    // nftables: the proxier's path (change tracker, then the table's own bookkeeping).
    for layout in [NftLayout::Maps, NftLayout::Chains] {
        if layout == NftLayout::Chains && n > chains_max {
            continue;
        }
        let l = layout.as_str();
        let ns = Netns::new(format!("{ns_prefix}-n{}", &l[..1]))?;
        let cfg = NftConfig {
            layout,
            ..nft_config()
        };
        let mut tracker = tracker(n, e);
        // First sync into no table: the proxier's path (Maps: one transaction; Chains: steps).
        let t = Instant::now();
        let mut table = NftTable::new(&cfg, tracker.last());
        let txs = table.initial_transactions(INITIAL_SYNC_PORTS_PER_TRANSACTION);
        let render = t.elapsed();
        let mut apply = Duration::ZERO;
        for tx in &txs {
            apply += ns.run(&["nft", "-f", "-"], Some(tx))?.1;
        }
        let how = if txs.len() == 1 {
            "one transaction".to_owned()
        } else {
            format!(
                "{} transactions of ≤ {INITIAL_SYNC_PORTS_PER_TRANSACTION} Services",
                txs.len()
            )
        };
        out.push(progress(&Sample {
            what: format!("nftables {l} first sync ({how}), {n} svc"),
            render,
            apply,
            bytes: txs.iter().map(String::len).sum(),
            lines: txs.iter().map(|t| lines(t)).sum(),
        }));
        drop(txs);
        // A full resync over the existing table: one atomic transaction (flush + re-add).
        if layout == NftLayout::Maps || n <= single_batch_max {
            let t = Instant::now();
            let tx = nftables::full_transaction(table.state(), &table.state().objects());
            let render = t.elapsed();
            let (_, apply) = ns.run(&["nft", "-f", "-"], Some(&tx))?;
            out.push(progress(&Sample {
                what: format!("nftables {l} full resync (one transaction), {n} svc"),
                render,
                apply,
                bytes: tx.len(),
                lines: lines(&tx),
            }));
        }
        if with_change {
            let t = Instant::now();
            tracker.update_endpoint_slice(&changed_slice(e))?;
            let up = tracker.sync();
            let inc = table.update(&up.snapshot, &up.changed_services);
            drop(up);
            let render = t.elapsed();
            let (_, apply) = ns.run(&["nft", "-f", "-"], Some(&inc.transaction))?;
            out.push(progress(&Sample {
                what: format!("nftables {l} one endpoint changed, {n} svc"),
                render,
                apply,
                bytes: inc.transaction.len(),
                lines: lines(&inc.transaction),
            }));
        }
    }

    // The proxier's own path for the Maps layout: the skeleton through `nft`, the elements
    // over netlink, and an element-only change over netlink.
    {
        let ns = Netns::new(format!("{ns_prefix}-nl"))?;
        let mut tracker = tracker(n, e);
        let t = Instant::now();
        let mut table = NftTable::new(&nft_config(), tracker.last());
        let (skeleton, ops) = table
            .initial_skeleton_and_elements()
            .ok_or_else(|| anyhow::anyhow!("an element netlink cannot encode"))?;
        let render = t.elapsed();
        let (_, nft_time) = ns.run(&["nft", "-f", "-"], Some(&skeleton))?;
        let t = Instant::now();
        let mut sock = NfSocket::open(Some(&ns.name))?;
        sock.apply(2, "pontifex", &ops)?;
        let apply = nft_time + t.elapsed();
        out.push(progress(&Sample {
            what: format!(
                "nftables maps first sync (nft skeleton + {} elements over netlink), {n} svc",
                ops.len()
            ),
            render,
            apply,
            bytes: skeleton.len() + ops.iter().map(|o| o.key.len()).sum::<usize>(),
            lines: lines(&skeleton) + ops.len(),
        }));
        drop(ops);
        // A full resync over that table, the proxier's path: the whole table rendered again,
        // the skeleton rewritten through `nft`, every map read back over netlink and only the
        // difference sent (none here). A periodic resync comes long after the last bulk
        // insert: let the kernel's background resize of the big hash maps finish first.
        std::thread::sleep(Duration::from_secs(2));
        {
            let t = Instant::now();
            let fresh = NftTable::new(&nft_config(), tracker.last());
            let plan = fresh
                .resync(&table.state().objects())
                .ok_or_else(|| anyhow::anyhow!("an element netlink cannot encode"))?;
            let render = t.elapsed();
            let t = Instant::now();
            let mut applier = KernelApplier::new(Some(&ns.name))?;
            let stats = apply_resync(&mut applier, IpFamily::V4, "pontifex", &plan)?;
            let apply = t.elapsed();
            out.push(progress(&Sample {
                what: format!(
                    "nftables maps full resync (nft skeleton + {} elements read back over netlink, {} sent), {n} svc",
                    stats.held, stats.sent
                ),
                render,
                apply,
                bytes: stats.bytes,
                lines: lines(&plan.skeleton) + stats.sent,
            }));
        }
        if with_change {
            let t = Instant::now();
            tracker.update_endpoint_slice(&changed_slice(e))?;
            let up = tracker.sync();
            let inc = table.update(&up.snapshot, &up.changed_services);
            drop(up);
            let ops = table
                .last_element_changes()
                .and_then(|c| {
                    table.element_ops(
                        c.iter()
                            .map(|c| (c.set.as_str(), c.key.as_str(), c.add.as_ref())),
                    )
                })
                .ok_or_else(|| anyhow::anyhow!("the change is not elements only"))?;
            let render = t.elapsed();
            let t = Instant::now();
            // What the proxier does: a socket per batch, in the node's namespace.
            let mut sock = NfSocket::open(Some(&ns.name))?;
            sock.apply(2, "pontifex", &ops)?;
            out.push(progress(&Sample {
                what: format!(
                    "nftables maps one endpoint changed ({} element ops over netlink), {n} svc",
                    ops.len()
                ),
                render,
                apply: t.elapsed(),
                bytes: inc.transaction.len(),
                lines: lines(&inc.transaction),
            }));
        }
    }

    // iptables, kube-proxy's layout.
    for (label, prog) in restores {
        let ns = Netns::new(format!("{ns_prefix}-ipt{}", prog.len()))?;
        let cfg = ipt_config();
        let t = Instant::now();
        let r = iptables::render(&cfg, &snap, SyncKind::Full, &BTreeSet::new());
        let render = t.elapsed();
        let (_, apply) = ns.run(&[prog, "-w", "--noflush"], Some(&r.text))?;
        out.push(progress(&Sample {
            what: format!("{label} full, {n} svc"),
            render,
            apply,
            bytes: r.text.len(),
            lines: lines(&r.text),
        }));
        if with_change {
            let t = Instant::now();
            let set: BTreeSet<ServiceKey> = [first.service.clone()].into();
            let p = iptables::render(
                &cfg,
                &changed,
                SyncKind::Partial(&set),
                &r.active_nat_chains,
            );
            let render = t.elapsed();
            let (_, apply) = ns.run(&[prog, "-w", "--noflush"], Some(&p.text))?;
            out.push(progress(&Sample {
                what: format!("{label} partial (one endpoint changed), {n} svc"),
                render,
                apply,
                bytes: p.text.len(),
                lines: lines(&p.text),
            }));
        }
    }
    Ok(out)
}

/// Prints a sample to stderr as soon as it is measured (a 30k-Service run takes minutes).
fn progress(s: &Sample) -> Sample {
    eprintln!(
        "{}: render {:.1} ms, apply {:.1} ms, {} bytes, {} lines",
        s.what,
        ms(s.render),
        ms(s.apply),
        s.bytes,
        s.lines
    );
    s.clone()
}

/// A markdown table of samples.
pub(crate) fn table(samples: &[Sample]) -> String {
    let mut s = String::from(
        "| sync | render | apply | total | bytes to the kernel tool | lines |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for x in samples {
        let _ = writeln!(
            s,
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {} | {} |",
            x.what,
            ms(x.render),
            ms(x.apply),
            ms(x.render + x.apply),
            x.bytes,
            x.lines
        );
    }
    s
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

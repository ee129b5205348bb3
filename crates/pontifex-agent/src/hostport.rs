//! `hostPort` (seed 004; the CNI `portmap` plugin's semantics): a container port with a `hostPort`
//! makes `<hostIP>:hostPort/protocol` on the node forward to `podIP:containerPort`. `hostIP` unset
//! (or `0.0.0.0`) means every local address of the node. Traffic from outside the node (prerouting),
//! from the node itself (output) and from the node's pods (prerouting on `cni0`) is translated.
//!
//! The rules live in a table of the agent's own, `ip pontifex-hostport`, in the node's namespace:
//!
//! - `prerouting` and `output` (nat, `dstnat`) jump to `hostports` for packets to a local address
//!   (`fib daddr type local`, portmap's `-m addrtype --dst-type LOCAL`), loopback excepted;
//! - `hostports`: per mapping, a mark rule for sources inside the node's pod CIDR, then the DNAT;
//! - `postrouting` (nat, `srcnat`): masquerades marked packets.
//!
//! The mark is portmap's default masquerade bit, `0x2000`. portmap marks only hairpin traffic (a
//! pod reaching its own hostPort) and relies on `br_netfilter` for the other pods of the bridge; the
//! lab has no `br_netfilter`, so without SNAT a reply from the target pod would go straight back over
//! the bridge with the pod's own address and the client would drop it. Marking every source inside
//! the pod CIDR covers both cases.
//!
//! The table is rebuilt whole in one `nft -f` transaction (`add table` / `delete table` / the new
//! table), so there is never a moment without rules, also across an agent restart: the old table
//! stays in the kernel until the new agent has its pods back and replaces it.
//!
//! Nothing from an object reaches the rule text unparsed: addresses are [`Ipv4Addr`], ports `u16`
//! in 1..=65535 and the protocol one of three keywords; anything else in a pod spec is skipped with a
//! warning. hostNetwork pods have no mapping (their ports are the node's already). IPv6 `hostIP`s are
//! skipped: the lab's pods are IPv4-only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Pod;
use pontifex_proxy::apply::{Applier, ApplyError};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The table's family and name.
pub(crate) const TABLE: &str = "pontifex-hostport";
/// portmap's default masquerade mark (`markMasqBit` 13).
const MASQ_MARK: u32 = 0x2000;

/// A transport protocol a hostPort can map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// Kubernetes' `protocol` field (default `TCP`).
    fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One `hostIP:hostPort/proto → podIP:containerPort` translation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Mapping {
    /// `None`: every local address.
    pub(crate) host_ip: Option<Ipv4Addr>,
    pub(crate) host_port: u16,
    pub(crate) proto: Proto,
    pub(crate) pod_ip: Ipv4Addr,
    pub(crate) container_port: u16,
}

fn port(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// The mappings a pod asks for, given its sandbox address. Invalid entries (a port out of range,
/// an unknown protocol, a `hostIP` that is not an IPv4 address) are skipped and logged.
pub(crate) fn mappings(pod: &Pod, pod_ip: Ipv4Addr) -> Vec<Mapping> {
    let Some(spec) = &pod.spec else {
        return Vec::new();
    };
    if spec.host_network == Some(true) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for c in spec.containers.iter() {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port else { continue };
            let host_ip = match p.host_ip.as_deref() {
                None | Some("") => Some(None),
                Some(s) => match s.parse::<Ipv4Addr>() {
                    Ok(a) if a.is_unspecified() => Some(None),
                    Ok(a) => Some(Some(a)),
                    Err(_) => None,
                },
            };
            match (
                host_ip,
                port(hp),
                port(p.container_port),
                Proto::parse(p.protocol.as_deref()),
            ) {
                (Some(host_ip), Some(host_port), Some(container_port), Some(proto)) => {
                    out.push(Mapping {
                        host_ip,
                        host_port,
                        proto,
                        pod_ip,
                        container_port,
                    })
                }
                _ => tracing::warn!(
                    container = %c.name,
                    host_port = hp,
                    host_ip = ?p.host_ip,
                    protocol = ?p.protocol,
                    "skipping a hostPort this node cannot map"
                ),
            }
        }
    }
    out
}

/// The whole `nft -f` transaction for these mappings (pods in any order: the output is sorted, so
/// the same state always renders the same text). `pod_cidr` is the node's pod range (sources inside
/// it are masqueraded).
pub(crate) fn render(pods: &BTreeMap<String, Vec<Mapping>>, pod_cidr: Ipv4Net) -> String {
    let mut all: Vec<&Mapping> = pods.values().flatten().collect();
    // Specific host addresses before the wildcard, so a pod bound to one address wins over one bound
    // to all of them (the first matching DNAT is the one taken).
    all.sort_by_key(|m| (m.host_ip.is_none(), *m));
    all.dedup();
    let mut t = String::new();
    // `add` then `delete` works whether the table exists or not; the new table follows in the same
    // transaction, so the kernel swaps old for new at once.
    let _ = writeln!(t, "add table ip {TABLE}");
    let _ = writeln!(t, "delete table ip {TABLE}");
    let _ = writeln!(t, "table ip {TABLE} {{");
    let _ = writeln!(t, "\tchain prerouting {{");
    let _ = writeln!(
        t,
        "\t\ttype nat hook prerouting priority dstnat; policy accept;"
    );
    let _ = writeln!(
        t,
        "\t\tip daddr != 127.0.0.0/8 fib daddr type local jump hostports"
    );
    let _ = writeln!(t, "\t}}");
    // nft 1.0.6 knows the name `dstnat` only in prerouting: -100 is its value.
    let _ = writeln!(t, "\tchain output {{");
    let _ = writeln!(t, "\t\ttype nat hook output priority -100; policy accept;");
    let _ = writeln!(
        t,
        "\t\tip daddr != 127.0.0.0/8 fib daddr type local jump hostports"
    );
    let _ = writeln!(t, "\t}}");
    let _ = writeln!(t, "\tchain postrouting {{");
    let _ = writeln!(
        t,
        "\t\ttype nat hook postrouting priority srcnat; policy accept;"
    );
    let _ = writeln!(
        t,
        "\t\tmeta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark ^ {MASQ_MARK:#x} masquerade"
    );
    let _ = writeln!(t, "\t}}");
    let _ = writeln!(t, "\tchain hostports {{");
    for m in all {
        let daddr = m
            .host_ip
            .map(|a| format!("ip daddr {a} "))
            .unwrap_or_default();
        let proto = m.proto.nft();
        let _ = writeln!(
            t,
            "\t\t{daddr}{proto} dport {} ip saddr {pod_cidr} meta mark set meta mark | {MASQ_MARK:#x}",
            m.host_port
        );
        let _ = writeln!(
            t,
            "\t\t{daddr}{proto} dport {} dnat to {}:{}",
            m.host_port, m.pod_ip, m.container_port
        );
    }
    let _ = writeln!(t, "\t}}");
    let _ = writeln!(t, "}}");
    t
}

/// The node's hostPort mappings by pod uid, shared by the pod workers; a sync task follows it.
#[derive(Clone)]
pub(crate) struct HostPorts {
    tx: watch::Sender<BTreeMap<String, Vec<Mapping>>>,
    /// Closed until the pods running before an agent restart are all known again: syncing earlier
    /// would drop their rules for a moment.
    ready: watch::Sender<bool>,
}

impl HostPorts {
    pub(crate) fn new() -> Self {
        HostPorts {
            tx: watch::channel(BTreeMap::new()).0,
            ready: watch::channel(false).0,
        }
    }

    /// Sets a pod's mappings (empty: it has none).
    pub(crate) fn set(&self, uid: &str, mappings: Vec<Mapping>) {
        self.tx.send_if_modified(|all| {
            let old = if mappings.is_empty() {
                all.remove(uid)
            } else {
                all.insert(uid.to_owned(), mappings.clone())
            };
            old.unwrap_or_default() != mappings
        });
    }

    /// Lets the sync task write the kernel (after the first pod list is in).
    pub(crate) fn mark_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Keeps the table in step with the mappings until `shutdown` (the table stays: the pods keep
    /// running without their agent).
    pub(crate) async fn sync<A: Applier + 'static>(
        &self,
        applier: A,
        pod_cidr: Ipv4Net,
        shutdown: CancellationToken,
    ) {
        let mut ready = self.ready.subscribe();
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = ready.wait_for(|r| *r) => if r.is_err() { return },
        }
        let mut rx = self.tx.subscribe();
        let applier = std::sync::Arc::new(std::sync::Mutex::new(applier));
        let mut last: Option<String> = None;
        let mut failed = false;
        loop {
            let text = render(&rx.borrow_and_update(), pod_cidr);
            if last.as_deref() != Some(text.as_str()) {
                let a = applier.clone();
                let t = text.clone();
                let result = tokio::task::spawn_blocking(move || {
                    a.lock().expect("applier lock").nft_apply(&t)
                })
                .await;
                match result {
                    Ok(Ok(())) => {
                        tracing::debug!("hostPort rules applied");
                        last = Some(text);
                        failed = false;
                    }
                    Ok(Err(e)) => {
                        log_failure(&e);
                        failed = true;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "hostPort sync task failed");
                        failed = true;
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = rx.changed() => if r.is_err() { return },
                // A failed apply is retried.
                () = tokio::time::sleep(std::time::Duration::from_secs(5)), if failed => {}
            }
        }
    }
}

fn log_failure(e: &ApplyError) {
    tracing::warn!(error = %e, "applying the hostPort rules failed; retrying");
}

#[cfg(test)]
mod tests;

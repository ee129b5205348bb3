//! The proxier's kernel counters: the INVALID-packet drop (both modes) and iptables mode's
//! localhost NodePort accept, set up when a proxier starts and read at every metrics scrape.
//!
//! At start ([`setup`], kube-proxy's `NewProxier`): `nf_conntrack_tcp_be_liberal` is read in the
//! node's namespace (sysctls under `/proc/sys/net` are per namespace) — when set, conntrack
//! already accepts the out-of-window TCP segments the INVALID drop works around, so neither
//! mode installs the drop. In iptables mode the two nfacct objects are created
//! ([`INVALID_DROPPED_COUNTER`], [`LOCALHOST_NODEPORTS_COUNTER`]); a rule only carries
//! `-m nfacct` when its object exists (kube-proxy: "the rule goes without it"). In nftables
//! mode the table carries its own named counter of the same name (see
//! [`crate::nftables::NftConfig::invalid_drop`]; kube-proxy's nftables mode has no INVALID
//! drop at all — ours has it so both modes behave and count alike).
//!
//! At scrape ([`NetlinkCounters`]): nfacct objects or the nf_tables counter are read over
//! netlink in the node's namespace, under kube-proxy's metric names ([`KernelCounter`]).
//!
//! Not here: the rules themselves (the renderers), resetting counters.

use crate::metrics::{CounterSource, KernelCounter, ProxyMetrics};
use crate::nfnetlink::{NetlinkError, NfSocket, in_netns, nfproto};
use crate::sync::{ProxierConfig, ProxyMode};
use std::sync::Arc;

/// kube-proxy's nfacct object for INVALID drops (also our nf_tables counter's name).
pub const INVALID_DROPPED_COUNTER: &str = "ct_state_invalid_dropped_pkts";
/// kube-proxy's nfacct object for localhost NodePort accepts.
pub const LOCALHOST_NODEPORTS_COUNTER: &str = "localhost_nps_accepted_pkts";
/// The sysctl that turns the INVALID drop off.
const TCP_BE_LIBERAL: &str = "/proc/sys/net/netfilter/nf_conntrack_tcp_be_liberal";

/// Whether `nf_conntrack_tcp_be_liberal` is set in `netns` (or here): an unreadable value
/// (no conntrack module yet, no namespace) counts as unset, as in kube-proxy.
pub fn tcp_be_liberal(netns: Option<&str>) -> bool {
    match in_netns(netns, || std::fs::read_to_string(TCP_BE_LIBERAL)) {
        Ok(Ok(v)) => parse_sysctl_flag(&v),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot read nf_conntrack_tcp_be_liberal");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read nf_conntrack_tcp_be_liberal");
            false
        }
    }
}

/// A sysctl's text is "set" when it is a non-zero integer.
pub(crate) fn parse_sysctl_flag(text: &str) -> bool {
    text.trim().parse::<i64>().is_ok_and(|v| v != 0)
}

/// Where one counter lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// An nfacct object of this name.
    Nfacct(&'static str),
    /// A named counter in table `family`/`table`.
    Nft {
        family: u8,
        table: String,
        name: &'static str,
    },
}

/// Reads the proxier's kernel counters over netlink, in the node's namespace, at every scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetlinkCounters {
    netns: Option<String>,
    places: Vec<(KernelCounter, Place)>,
}

impl NetlinkCounters {
    /// What a proxier configured by `cfg` (after [`setup`]) counts: nothing when no counting
    /// rule is rendered.
    pub fn for_proxier(cfg: &ProxierConfig, netns: Option<&str>) -> Self {
        let mut places = Vec::new();
        match cfg.mode {
            ProxyMode::Iptables => {
                let ipt = &cfg.iptables;
                if !ipt.conntrack_tcp_be_liberal && ipt.nfacct_invalid {
                    places.push((
                        KernelCounter::CtStateInvalidDropped,
                        Place::Nfacct(INVALID_DROPPED_COUNTER),
                    ));
                }
                if ipt.nfacct_localhost_node_ports {
                    places.push((
                        KernelCounter::LocalhostNodePortsAccepted,
                        Place::Nfacct(LOCALHOST_NODEPORTS_COUNTER),
                    ));
                }
            }
            ProxyMode::Nftables => {
                if cfg.nftables.invalid_drop {
                    places.push((
                        KernelCounter::CtStateInvalidDropped,
                        Place::Nft {
                            family: nfproto(cfg.nftables.family),
                            table: cfg.nftables.table.clone(),
                            name: INVALID_DROPPED_COUNTER,
                        },
                    ));
                }
            }
        }
        NetlinkCounters {
            netns: netns.map(str::to_owned),
            places,
        }
    }

    /// Whether there is anything to read.
    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Adds `other`'s counters (another family's proxier in the same namespace): an nfacct
    /// object both families count into is read once, each family's nf_tables counter is read
    /// and summed under the one metric.
    pub fn merge(&mut self, other: NetlinkCounters) {
        for p in other.places {
            if !self.places.contains(&p) {
                self.places.push(p);
            }
        }
    }

    /// Makes `metrics` read these counters at every scrape (nothing to read: nothing done).
    pub fn install(self, metrics: &ProxyMetrics) {
        if !self.is_empty() {
            metrics.set_counter_source(Arc::new(self));
        }
    }

    fn read_all(&self) -> Result<Vec<(KernelCounter, u64)>, NetlinkError> {
        let mut sock = NfSocket::open(self.netns.as_deref())?;
        let mut out = Vec::new();
        for (metric, place) in &self.places {
            let got = match place {
                Place::Nfacct(name) => sock.nfacct_get(name),
                Place::Nft {
                    family,
                    table,
                    name,
                } => sock.nft_counter(*family, table, name),
            };
            match got {
                Ok(Some(c)) => match out.iter_mut().find(|(m, _)| m == metric) {
                    Some((_, sum)) => *sum += c.packets,
                    None => out.push((*metric, c.packets)),
                },
                // The nft counter appears with the first sync; an nfacct object someone deleted.
                Ok(None) => tracing::debug!(?place, "kernel counter absent"),
                Err(e) => tracing::warn!(?place, error = %e, "cannot read kernel counter"),
            }
        }
        Ok(out)
    }
}

impl CounterSource for NetlinkCounters {
    fn read(&self) -> Vec<(KernelCounter, u64)> {
        if self.places.is_empty() {
            return Vec::new();
        }
        self.read_all().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read kernel counters");
            Vec::new()
        })
    }
}

/// Prepares a proxier's counters in `netns` (or here) before it starts: reads
/// `nf_conntrack_tcp_be_liberal` into the config (iptables: `conntrack_tcp_be_liberal`;
/// nftables: `invalid_drop` off), creates the nfacct objects in iptables mode and records which
/// exist (`nfacct_invalid`, `nfacct_localhost_node_ports`). Returns where the counters the
/// rules will use are read ([`NetlinkCounters::install`] them; a dual-stack node merges its
/// families' first). Failures are logged: the rules then go without the counters.
pub fn setup(cfg: &mut ProxierConfig, netns: Option<&str>) -> NetlinkCounters {
    let liberal = tcp_be_liberal(netns);
    if liberal {
        tracing::info!(
            "nf_conntrack_tcp_be_liberal set, not installing DROP rules for INVALID packets"
        );
    }
    match cfg.mode {
        ProxyMode::Iptables => {
            cfg.iptables.conntrack_tcp_be_liberal = liberal;
            let (mut invalid, mut localhost) = (false, false);
            match NfSocket::open(netns) {
                Ok(mut sock) => {
                    for (name, made) in [
                        (INVALID_DROPPED_COUNTER, &mut invalid),
                        (LOCALHOST_NODEPORTS_COUNTER, &mut localhost),
                    ] {
                        match sock.nfacct_ensure(name) {
                            Ok(_) => *made = true,
                            Err(e) => {
                                tracing::warn!(counter = name, error = %e, "cannot create nfacct object")
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no netlink socket for nfacct"),
            }
            cfg.iptables.nfacct_invalid = invalid;
            cfg.iptables.nfacct_localhost_node_ports = localhost;
        }
        ProxyMode::Nftables => cfg.nftables.invalid_drop = !liberal,
    }
    NetlinkCounters::for_proxier(cfg, netns)
}

#[cfg(test)]
mod tests;

//! kube-proxy's metrics under kube-proxy's names (so existing dashboards and the
//! clusterloader2 `NetworkProgrammingLatency` query work), in the Prometheus text exposition
//! format, written by hand: a few counters, gauges and histograms need no metrics crate.
//!
//! Recorded by [`crate::sync::Proxier`] for the kernel modes and, through the public
//! [`ProxyMetrics::record_queued`] / [`ProxyMetrics::record_sync`], by the agent's userspace
//! proxy; served by [`crate::health::serve_metrics`].
//! Counters the kernel keeps (nfacct objects, nf_tables named counters) are read at scrape
//! time through a [`CounterSource`] (kube-proxy reads nfacct in a custom collector);
//! [`crate::counters`] provides the netlink one.
//!
//! Not here: `ip_family` labels (one proxier, one family), the conntrack reconciler's metrics
//! (kube-proxy 1.33 reconciles the whole table; we delete what each sync names, counted in
//! `pontifex_proxy_conntrack_deleted_entries_total`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::discovery::v1::EndpointSlice;

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The `endpoints.kubernetes.io/last-change-trigger-time` of a slice: when the change it carries
/// began (the EndpointSlice controller sets it), the start of network programming latency.
pub fn trigger_time(slice: &EndpointSlice) -> Option<SystemTime> {
    let v = slice
        .metadata
        .annotations
        .as_ref()?
        .get(crate::sync::TRIGGER_TIME_ANNOTATION)?;
    let ts: jiff::Timestamp = v.parse().ok()?;
    Some(SystemTime::from(ts))
}

/// A packet counter the kernel keeps for the proxier, exposed under kube-proxy's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KernelCounter {
    /// Packets conntrack marked INVALID that the forward filter dropped:
    /// `kubeproxy_iptables_ct_state_invalid_dropped_packets_total`. The name says "iptables"
    /// as kube-proxy's does; our nftables mode exposes the same name for its own rule's counter.
    CtStateInvalidDropped,
    /// Packets accepted to a NodePort on 127.0.0.0/8 (iptables mode's `localhostNodePorts`):
    /// `kubeproxy_iptables_localhost_nodeports_accepted_packets_total`.
    LocalhostNodePortsAccepted,
}

impl KernelCounter {
    /// The metric's name.
    pub fn metric_name(self) -> &'static str {
        match self {
            KernelCounter::CtStateInvalidDropped => {
                "kubeproxy_iptables_ct_state_invalid_dropped_packets_total"
            }
            KernelCounter::LocalhostNodePortsAccepted => {
                "kubeproxy_iptables_localhost_nodeports_accepted_packets_total"
            }
        }
    }

    /// kube-proxy's help text.
    fn help(self) -> &'static str {
        match self {
            KernelCounter::CtStateInvalidDropped => {
                "packets dropped by iptables to work around conntrack problems"
            }
            KernelCounter::LocalhostNodePortsAccepted => {
                "Number of packets accepted on nodeports of loopback interface"
            }
        }
    }
}

/// Reads kernel counters at scrape time.
pub trait CounterSource: Send + Sync + std::fmt::Debug {
    /// The counters' packet counts now; a counter that cannot be read is left out (logged),
    /// as kube-proxy's collector does.
    fn read(&self) -> Vec<(KernelCounter, u64)>;
}

/// A cumulative histogram with fixed upper bounds.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: Vec<f64>) -> Self {
        let n = bounds.len();
        Histogram {
            bounds,
            counts: vec![0; n],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    fn write(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// kube-proxy's sync-duration buckets: 1 ms × 2^0..=14.
fn sync_buckets() -> Vec<f64> {
    (0..15).map(|i| 0.001 * f64::from(1u32 << i)).collect()
}

/// kube-proxy's network-programming buckets: 0.25, 0.5, 1..=59 by 1, 60..=115 by 5,
/// 120..=300 by 30 seconds.
fn programming_buckets() -> Vec<f64> {
    let mut b = vec![0.25, 0.5];
    b.extend((1..60).map(f64::from));
    b.extend((0..12).map(|i| f64::from(60 + 5 * i)));
    b.extend((0..7).map(|i| f64::from(120 + 30 * i)));
    b
}

#[derive(Debug)]
struct Inner {
    sync: Histogram,
    sync_full: Histogram,
    sync_partial: Histogram,
    programming: Histogram,
    last_timestamp: f64,
    last_queued_timestamp: f64,
    endpoint_changes_total: u64,
    service_changes_total: u64,
    endpoint_changes_pending: u64,
    service_changes_pending: u64,
    restore_failures: u64,
    partial_restore_failures: u64,
    nft_failures: u64,
    conntrack_deleted: u64,
    iptables_total: BTreeMap<&'static str, usize>,
    nft_objects: BTreeMap<&'static str, usize>,
}

/// The proxier's metrics; share it (`Arc`) between the proxier and the metrics server.
#[derive(Debug)]
pub struct ProxyMetrics {
    inner: Mutex<Inner>,
    /// Read at scrape time, outside `inner`'s lock (a netlink round trip).
    counters: Mutex<Option<Arc<dyn CounterSource>>>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        ProxyMetrics {
            inner: Mutex::new(Inner {
                sync: Histogram::new(sync_buckets()),
                sync_full: Histogram::new(sync_buckets()),
                sync_partial: Histogram::new(sync_buckets()),
                programming: Histogram::new(programming_buckets()),
                last_timestamp: 0.0,
                last_queued_timestamp: 0.0,
                endpoint_changes_total: 0,
                service_changes_total: 0,
                endpoint_changes_pending: 0,
                service_changes_pending: 0,
                restore_failures: 0,
                partial_restore_failures: 0,
                nft_failures: 0,
                conntrack_deleted: 0,
                iptables_total: BTreeMap::new(),
                nft_objects: BTreeMap::new(),
            }),
            counters: Mutex::new(None),
        }
    }
}

/// What a failed sync was, for the failure counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    IptablesFull,
    IptablesPartial,
    Nftables,
}

impl ProxyMetrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An event changed Services (`n` objects) or EndpointSlices, queued at `unix_seconds`.
    pub(crate) fn queued(&self, services: u64, slices: u64, unix_seconds: f64) {
        let mut m = self.lock();
        m.service_changes_total += services;
        m.endpoint_changes_total += slices;
        m.service_changes_pending += services;
        m.endpoint_changes_pending += slices;
        m.last_queued_timestamp = unix_seconds;
    }

    /// A sync reached the kernel.
    pub(crate) fn synced(&self, full: bool, took: Duration, unix_seconds: f64) {
        let mut m = self.lock();
        let s = took.as_secs_f64();
        m.sync.observe(s);
        if full {
            m.sync_full.observe(s);
        } else {
            m.sync_partial.observe(s);
        }
        m.last_timestamp = unix_seconds;
        m.service_changes_pending = 0;
        m.endpoint_changes_pending = 0;
    }

    /// One endpoint change took `latency` from its trigger time to the kernel.
    pub(crate) fn programmed(&self, latency: Duration) {
        self.lock().programming.observe(latency.as_secs_f64());
    }

    pub(crate) fn failed(&self, what: Failure) {
        let mut m = self.lock();
        match what {
            Failure::IptablesFull => m.restore_failures += 1,
            Failure::IptablesPartial => m.partial_restore_failures += 1,
            Failure::Nftables => m.nft_failures += 1,
        }
    }

    /// A sync's conntrack cleanup deleted `n` entries.
    pub(crate) fn conntrack_deleted(&self, n: usize) {
        self.lock().conntrack_deleted += n as u64;
    }

    /// Where the kernel counters ([`KernelCounter`]) are read at every scrape; replaces an
    /// earlier source.
    pub fn set_counter_source(&self, source: Arc<dyn CounterSource>) {
        *self.counters.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
    }

    pub(crate) fn iptables_rules(&self, filter: usize, nat: usize) {
        let mut m = self.lock();
        m.iptables_total.insert("filter", filter);
        m.iptables_total.insert("nat", nat);
    }

    pub(crate) fn nft_objects(&self, chains: usize, rules: usize, elements: usize) {
        let mut m = self.lock();
        m.nft_objects.insert("chains", chains);
        m.nft_objects.insert("rules", rules);
        m.nft_objects.insert("elements", elements);
    }

    /// For proxiers outside [`crate::sync`] (the userspace proxy): changes to `services`
    /// Services and `slices` EndpointSlices were queued at `at`.
    pub fn record_queued(&self, services: u64, slices: u64, at: SystemTime) {
        self.queued(services, slices, unix_seconds(at));
    }

    /// For proxiers outside [`crate::sync`]: everything queued so far is in effect at `at`, after
    /// a sync of `took`; `triggers` are the trigger times ([`trigger_time`]) of the EndpointSlice
    /// changes it carried (network programming latency). The userspace proxy applies every
    /// snapshot whole, so its syncs count as full ones.
    pub fn record_sync(
        &self,
        took: Duration,
        at: SystemTime,
        triggers: impl IntoIterator<Item = SystemTime>,
    ) {
        self.synced(true, took, unix_seconds(at));
        for t in triggers {
            if let Ok(d) = at.duration_since(t) {
                self.programmed(d);
            }
        }
    }

    /// Successful syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.lock().sync.count
    }

    /// The Prometheus text exposition (content type `text/plain; version=0.0.4`).
    pub fn render(&self) -> String {
        let source = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut kernel = source.map(|s| s.read()).unwrap_or_default();
        kernel.sort();
        let m = self.lock();
        let mut out = String::new();
        m.sync.write(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            &mut out,
        );
        m.sync_full.write(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            &mut out,
        );
        m.sync_partial.write(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            &mut out,
        );
        m.programming.write(
            "kubeproxy_network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            &mut out,
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: f64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_timestamp,
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued_timestamp,
        );
        counter(
            &mut out,
            "kubeproxy_sync_proxy_rules_endpoint_changes_total",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_changes_total,
        );
        counter(
            &mut out,
            "kubeproxy_sync_proxy_rules_service_changes_total",
            "Cumulative proxy rules Service changes",
            m.service_changes_total,
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
            "Pending proxy rules Endpoint changes",
            m.endpoint_changes_pending as f64,
        );
        gauge(
            &mut out,
            "kubeproxy_sync_proxy_rules_service_changes_pending",
            "Pending proxy rules Service changes",
            m.service_changes_pending as f64,
        );
        counter(
            &mut out,
            "kubeproxy_sync_proxy_rules_iptables_restore_failures_total",
            "Cumulative proxy iptables restore failures",
            m.restore_failures,
        );
        counter(
            &mut out,
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total",
            "Cumulative proxy iptables partial restore failures",
            m.partial_restore_failures,
        );
        counter(
            &mut out,
            "kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
            "Cumulative proxy nftables sync failures",
            m.nft_failures,
        );
        // Not a kube-proxy metric (its `kubeproxy_conntrack_reconciler_deleted_entries_total`
        // counts a reconciler we do not run): the UDP entries our syncs deleted.
        counter(
            &mut out,
            "pontifex_proxy_conntrack_deleted_entries_total",
            "Cumulative stale UDP conntrack entries deleted after syncs",
            m.conntrack_deleted,
        );
        for (c, v) in kernel {
            counter(&mut out, c.metric_name(), c.help(), v);
        }
        if !m.iptables_total.is_empty() {
            let name = "kubeproxy_sync_proxy_rules_iptables_total";
            let _ = writeln!(
                out,
                "# HELP {name} Total number of iptables rules owned by kube-proxy\n# TYPE {name} gauge"
            );
            for (t, n) in &m.iptables_total {
                let _ = writeln!(out, "{name}{{table=\"{t}\"}} {n}");
            }
        }
        if !m.nft_objects.is_empty() {
            // Not a kube-proxy metric: it has no nftables size gauge; ours counts the table.
            let name = "pontifex_proxy_nftables_objects";
            let _ = writeln!(
                out,
                "# HELP {name} Chains, rules and set/map elements in the proxy's nftables table\n# TYPE {name} gauge"
            );
            for (k, n) in &m.nft_objects {
                let _ = writeln!(out, "{name}{{kind=\"{k}\"}} {n}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

//! The proxier: Service and EndpointSlice events in, kernel rules out — kube-proxy's sync loop.
//!
//! [`Proxier`] is the synchronous core: [`Proxier::handle`] feeds the model,
//! [`Proxier::sync`] renders one snapshot and applies it through an [`Applier`] as one
//! transaction. [`run`] is the loop around it: level-triggered (any number of events → one
//! sync), at most one sync per `min_sync_period` (kube-proxy's default 1 s; 0 allowed), and a
//! periodic sync every `sync_period` (default 30 s) even without events.
//!
//! Sync kinds, as kube-proxy: the first sync, any sync after a failure, and one every
//! [`FULL_SYNC_PERIOD`] are full (the whole table in one transaction); the others send only
//! what changed — for nftables the element and chain delta of the changed Services' ports
//! ([`NftTable::update`]), for iptables a KEP-3453 partial restore. A first nft sync into a
//! table that does not exist yet is, in the Chains layout, sent as several transactions
//! ([`INITIAL_SYNC_PORTS_PER_TRANSACTION`] ports each), each leaving a consistent table (the
//! Maps layout sends it as one); every later full sync is one transaction. Chains an incremental nft sync left stale are deleted
//! by the next sync at least 1 s later (kernels before 6.2 could still count a just deleted
//! map element as a reference).
//!
//! Restart without a blackhole: nothing is synced before the first event (send
//! [`ProxyEvent::Replace`] once the informers have listed), and the first full sync reads back
//! what our table/chains hold and replaces it in one transaction — the rules of the previous
//! process keep working until that instant, and no flush-first window exists.
//!
//! Not here: watching the API (the agent sends events), both families at once (one proxier per
//! family; a dual-stack agent runs two, sharing the metrics and the health, which it reports under
//! [`Proxier::family`]), the userspace proxy.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, ApplyError, iptables_jump_rules};
use crate::health::{HealthCheckServers, ProxyHealth};
use crate::iptables::{self, IptablesConfig, SyncKind};
use crate::metrics::{Failure, ProxyMetrics};
use crate::model::{ChangeTracker, IpFamily, ProxySnapshot, ServiceKey};
use crate::nfnetlink::{ElementOp, element_diff};
use crate::nftables::{self, NftConfig, NftObjects, NftTable};
use std::collections::BTreeSet;
use std::sync::Arc;

/// A full sync at least this often even without failures (kube-proxy's
/// `proxyutil.FullSyncPeriod`, 1 h since v1.32).
pub const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);
/// Service ports per `nft -f` transaction when the table is built from nothing (see
/// [`NftTable::initial_transactions`]): small enough that the kernel's per-batch walk stays
/// short, large enough that `nft`'s per-run start-up and cache fetch do not dominate.
pub const INITIAL_SYNC_PORTS_PER_TRANSACTION: usize = 500;
/// How long a chain an incremental nft sync emptied waits before it is deleted.
const STALE_CHAIN_DELAY: Duration = Duration::from_secs(1);
/// The EndpointSlice annotation the controller stamps with the time of the change it reflects.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// Which kernel dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// nftables (`ip pontifex` table), the default.
    Nftables,
    /// iptables in kube-proxy's layout, applied with `iptables-restore --noflush`.
    Iptables,
}

impl ProxyMode {
    /// kube-proxy's name for the mode (`/proxyMode`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

/// The proxier's settings.
#[derive(Debug, Clone)]
pub struct ProxierConfig {
    /// The dataplane.
    pub mode: ProxyMode,
    /// This node's name (endpoints on it are local).
    pub node_name: String,
    /// nftables rendering settings (mode nftables).
    pub nftables: NftConfig,
    /// iptables rendering settings (mode iptables); its `family` is the proxier's family.
    pub iptables: IptablesConfig,
    /// `--min-sync-period`: least time between two syncs' starts.
    pub min_sync_period: Duration,
    /// `--sync-period`: a sync at least this often; the health timeout is twice this.
    pub sync_period: Duration,
}

impl ProxierConfig {
    /// kube-proxy's defaults: min sync period 1 s, sync period 30 s.
    pub fn new(mode: ProxyMode, node_name: impl Into<String>) -> Self {
        ProxierConfig {
            mode,
            node_name: node_name.into(),
            nftables: NftConfig::default(),
            iptables: IptablesConfig::default(),
            min_sync_period: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
        }
    }
}

/// What the agent feeds the proxier (straight from its informers' events).
#[derive(Debug, Clone)]
pub enum ProxyEvent {
    /// Services added or changed.
    ServicesUpdated(Vec<Service>),
    /// Services deleted.
    ServicesDeleted(Vec<ServiceKey>),
    /// EndpointSlices added or changed.
    SlicesUpdated(Vec<EndpointSlice>),
    /// EndpointSlices deleted: (namespace, name).
    SlicesDeleted(Vec<(String, String)>),
    /// A complete list (start-up or relist): replaces everything known. The first sync waits
    /// for the first event; send this once the informers have synced.
    Replace {
        /// Every Service.
        services: Vec<Service>,
        /// Every EndpointSlice.
        slices: Vec<EndpointSlice>,
    },
}

/// Why a sync did not reach the kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// Applying (or reading back) failed; the next sync is full.
    #[error("applying {mode} rules: {source}")]
    Apply {
        /// The mode.
        mode: &'static str,
        /// What the applier said.
        source: ApplyError,
    },
}

/// What one successful sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// A full sync (not partial / incremental).
    pub full: bool,
    /// Bytes sent to the kernel tool (`nft -f` / `iptables-restore` input).
    pub bytes: usize,
    /// How long it took.
    pub duration: Duration,
    /// Conntrack deletions asked for.
    pub conntrack_flushes: usize,
    /// Conntrack entries deleted.
    pub conntrack_deleted: usize,
    /// Conntrack deletion failed (rules are in place; logged, not retried).
    pub conntrack_error: Option<String>,
    /// A full nftables sync over an existing table went in steps ([`nftables::Resync`])
    /// rather than as one transaction.
    pub stepped: bool,
}

/// The kernel state the proxier believes in, per mode.
#[derive(Debug, Default)]
struct Known {
    /// Read back (or written) since start / the last failure.
    adopted: bool,
    /// nft: the table the kernel holds, with its per-port bookkeeping.
    nft: Option<NftTable>,
    /// nft: objects in the kernel's table not in `nft` (read back at adoption).
    nft_extra: NftObjects,
    /// nft: chains flushed by an incremental sync, and when.
    stale: Vec<(String, Instant)>,
    /// iptables: per-service nat chains in the kernel.
    ipt_chains: BTreeSet<String>,
}

/// kube-proxy's proxier for one IP family: model, rendering, applying, metrics, health.
#[derive(Debug)]
pub struct Proxier<A> {
    cfg: ProxierConfig,
    applier: A,
    tracker: ChangeTracker,
    metrics: Arc<ProxyMetrics>,
    health: Arc<ProxyHealth>,
    known: Known,
    full_needed: bool,
    last_full: Option<Instant>,
    /// Trigger times of EndpointSlice changes not yet applied.
    triggers: Vec<SystemTime>,
    /// Events seen (the loop's first sync waits for one).
    seen_event: bool,
}

impl<A: Applier> Proxier<A> {
    /// A proxier that has applied nothing yet.
    pub fn new(
        cfg: ProxierConfig,
        applier: A,
        metrics: Arc<ProxyMetrics>,
        health: Arc<ProxyHealth>,
    ) -> Self {
        Proxier {
            tracker: ChangeTracker::new(cfg.node_name.clone()),
            cfg,
            applier,
            metrics,
            health,
            known: Known::default(),
            full_needed: true,
            last_full: None,
            triggers: Vec::new(),
            seen_event: false,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProxierConfig {
        &self.cfg
    }

    /// The IP family this proxier programs (its mode's renderer's family).
    pub fn family(&self) -> crate::model::IpFamily {
        match self.cfg.mode {
            ProxyMode::Nftables => self.cfg.nftables.family,
            ProxyMode::Iptables => self.cfg.iptables.family,
        }
    }

    /// The applier (tests inspect fakes through it).
    pub fn applier(&self) -> &A {
        &self.applier
    }

    /// The snapshot of the last sync (if that sync failed, the next one is full and applies
    /// it again).
    pub fn applied(&self) -> &ProxySnapshot {
        self.tracker.last()
    }

    /// Takes an event into the model. Objects the model refuses (unsafe names, unknown
    /// protocols) are skipped and logged.
    pub fn handle(&mut self, ev: ProxyEvent, now: SystemTime) {
        self.seen_event = true;
        let (mut svcs, mut slices) = (0u64, 0u64);
        let t = &mut self.tracker;
        let slice_update =
            |t: &mut ChangeTracker, s: &EndpointSlice, triggers: &mut Vec<SystemTime>| {
                if let Err(e) = t.update_endpoint_slice(s) {
                    tracing::warn!(error = %e, "EndpointSlice skipped");
                }
                if let Some(at) = crate::metrics::trigger_time(s) {
                    triggers.push(at);
                }
            };
        match ev {
            ProxyEvent::ServicesUpdated(v) => {
                for s in &v {
                    if let Err(e) = t.update_service(s) {
                        tracing::warn!(error = %e, "Service (partly) skipped");
                    }
                }
                svcs = v.len() as u64;
            }
            ProxyEvent::ServicesDeleted(v) => {
                for k in &v {
                    t.delete_service(&k.namespace, &k.name);
                }
                svcs = v.len() as u64;
            }
            ProxyEvent::SlicesUpdated(v) => {
                for s in &v {
                    slice_update(t, s, &mut self.triggers);
                }
                slices = v.len() as u64;
            }
            ProxyEvent::SlicesDeleted(v) => {
                for (ns, name) in &v {
                    t.delete_endpoint_slice(ns, name);
                }
                slices = v.len() as u64;
            }
            ProxyEvent::Replace {
                services,
                slices: sl,
            } => {
                t.clear_objects();
                for s in &services {
                    if let Err(e) = t.update_service(s) {
                        tracing::warn!(error = %e, "Service (partly) skipped");
                    }
                }
                for s in &sl {
                    slice_update(t, s, &mut self.triggers);
                }
                svcs = services.len() as u64;
                slices = sl.len() as u64;
            }
        }
        let unix = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.queued(svcs, slices, unix);
        self.health.queued_update_for(self.family(), now);
    }

    /// Whether an event has been seen (no sync happens before).
    pub fn has_seen_event(&self) -> bool {
        self.seen_event
    }

    /// Forces the next sync to be full.
    pub fn force_full(&mut self) {
        self.full_needed = true;
    }

    /// Renders the current model and applies it; on failure the next sync is full.
    pub fn sync(&mut self, now: Instant) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let full = self.full_needed
            || self
                .last_full
                .is_none_or(|t| now.duration_since(t) >= FULL_SYNC_PERIOD);
        let update = self.tracker.sync();
        let result = match self.cfg.mode {
            ProxyMode::Nftables => {
                self.sync_nft(&update.snapshot, &update.changed_services, full, now)
            }
            ProxyMode::Iptables => self.sync_iptables(&update, full).map(|b| (b, false)),
        };
        let (bytes, stepped) = match result {
            Ok(b) => b,
            Err(e) => {
                self.tracker.resync_failed();
                self.full_needed = true;
                // What the kernel holds is unknown now: read it back before the next sync.
                self.known = Known::default();
                self.metrics.failed(match (self.cfg.mode, full) {
                    (ProxyMode::Nftables, _) => Failure::Nftables,
                    (ProxyMode::Iptables, true) => Failure::IptablesFull,
                    (ProxyMode::Iptables, false) => Failure::IptablesPartial,
                });
                return Err(SyncError::Apply {
                    mode: self.cfg.mode.as_str(),
                    source: e,
                });
            }
        };
        self.full_needed = false;
        if full {
            self.last_full = Some(now);
        }
        // Conntrack after the rules: new flows must already go to the new endpoints.
        let (mut conntrack_deleted, mut conntrack_error) = (0, None);
        if !update.conntrack.is_empty() {
            let family = match self.cfg.mode {
                ProxyMode::Nftables => self.cfg.nftables.family,
                ProxyMode::Iptables => self.cfg.iptables.family,
            };
            match self.applier.conntrack_delete(family, &update.conntrack) {
                Ok(n) => conntrack_deleted = n,
                Err(e) => {
                    tracing::warn!(error = %e, "conntrack cleanup failed");
                    conntrack_error = Some(e.to_string());
                }
            }
            self.metrics.conntrack_deleted(conntrack_deleted);
        }
        let took = started.elapsed();
        let wall = SystemTime::now();
        let unix = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.metrics.synced(full, took, unix);
        for t in self.triggers.drain(..) {
            if let Ok(d) = wall.duration_since(t) {
                self.metrics.programmed(d);
            }
        }
        self.health.updated_for(self.family(), wall);
        Ok(SyncReport {
            full,
            bytes,
            duration: took,
            conntrack_flushes: update.conntrack.len(),
            conntrack_deleted,
            conntrack_error,
            stepped,
        })
    }

    fn sync_nft(
        &mut self,
        snap: &ProxySnapshot,
        changed: &BTreeSet<ServiceKey>,
        full: bool,
        now: Instant,
    ) -> Result<(usize, bool), ApplyError> {
        let mut stepped = false;
        // Incremental: only the changed Services' ports are rendered again (the table is
        // updated in place; on failure `known` is dropped and the next sync is full).
        let incremental = match (&mut self.known.nft, full) {
            (Some(table), false) => Some(table.update(snap, changed)),
            _ => None,
        };
        let bytes = if let Some(inc) = incremental {
            let new = self.known.nft.as_ref().expect("updated above").state();
            // Chains emptied by an earlier sync, long enough ago: delete them first, in the
            // same transaction (their last references went away in that earlier one).
            let (ready, waiting): (Vec<_>, Vec<_>) = self
                .known
                .stale
                .drain(..)
                .partition(|(_, at)| now.duration_since(*at) >= STALE_CHAIN_DELAY);
            self.known.stale = waiting;
            let names: Vec<String> = ready.into_iter().map(|(n, _)| n).collect();
            let mut tx = nftables::delete_chains_transaction(new, &names);
            // Elements only (an endpoint came or went): straight to the kernel over netlink,
            // one transaction as `nft -f` would make, without an `nft` process and its cache.
            let table = self.known.nft.as_ref().expect("updated above");
            let ops = match table.last_element_changes() {
                Some(changes) if tx.is_empty() && !changes.is_empty() => table.element_ops(
                    changes
                        .iter()
                        .map(|c| (c.set.as_str(), c.key.as_str(), c.add.as_ref())),
                ),
                _ => None,
            };
            tx.push_str(&inc.transaction);
            match ops {
                Some(ops) => {
                    self.applier
                        .nft_elements(self.cfg.nftables.family, &new.table, &ops)?
                }
                None => self.applier.nft_apply(&tx)?,
            }
            let stale: BTreeSet<&String> = self.known.stale.iter().map(|(n, _)| n).collect();
            let fresh: Vec<(String, Instant)> = inc
                .stale_chains
                .iter()
                .filter(|c| !stale.contains(c))
                .map(|c| (c.clone(), now))
                .collect();
            self.known.stale.extend(fresh);
            // A chain the new state uses again is no longer stale.
            self.known
                .stale
                .retain(|(c, _)| !new.chains.contains_key(c));
            tx.len()
        } else {
            let table = NftTable::new(&self.cfg.nftables, snap);
            let new = table.state();
            let family = new.family;
            // `None`: no table in the kernel (first start on this node).
            let existing = if self.known.adopted {
                let mut o = self
                    .known
                    .nft
                    .as_ref()
                    .map(|t| t.state().objects())
                    .unwrap_or_default();
                o.chains.extend(self.known.nft_extra.chains.iter().cloned());
                o.sets.extend(self.known.nft_extra.sets.iter().cloned());
                Some(o)
            } else {
                self.applier.nft_objects(family, &new.table)?
            };
            let bytes = match existing {
                Some(mut existing) => {
                    existing
                        .chains
                        .extend(self.known.stale.drain(..).map(|(c, _)| c));
                    let resync = (self.cfg.nftables.layout == nftables::NftLayout::Maps)
                        .then(|| table.resync(&existing))
                        .flatten();
                    let family = self.cfg.nftables.family;
                    let attempt = resync.map(|plan| {
                        apply_resync(&mut self.applier, family, &new.table, &plan).map(|r| r.bytes)
                    });
                    match attempt {
                        Some(Ok(bytes)) => {
                            stepped = true;
                            bytes
                        }
                        fallback => {
                            if let Some(Err(e)) = fallback {
                                // Whatever step failed, one atomic transaction still makes
                                // the table right: it flushes everything first.
                                tracing::warn!(error = %e, "stepped nftables resync failed; replacing the table in one transaction");
                            }
                            let tx = nftables::full_transaction(new, &existing);
                            self.applier.nft_apply(&tx)?;
                            tx.len()
                        }
                    }
                }
                None => {
                    // Nothing to replace atomically. Maps layout: the skeleton through `nft`,
                    // the elements over netlink (`NftTable::initial_skeleton_and_elements`).
                    // Chains layout: in steps, each a consistent table, to stay clear of the
                    // kernel's quadratic cost of one huge batch (`initial_transactions`).
                    self.known.stale.clear();
                    let split = (self.cfg.nftables.layout == nftables::NftLayout::Maps)
                        .then(|| table.initial_skeleton_and_elements())
                        .flatten();
                    if let Some((skeleton, ops)) = split {
                        self.applier.nft_apply(&skeleton)?;
                        self.applier
                            .nft_elements(self.cfg.nftables.family, &new.table, &ops)?;
                        skeleton.len() + ops.iter().map(|o| o.key.len()).sum::<usize>()
                    } else {
                        let mut bytes = 0;
                        for tx in table.initial_transactions(INITIAL_SYNC_PORTS_PER_TRANSACTION) {
                            self.applier.nft_apply(&tx)?;
                            bytes += tx.len();
                        }
                        bytes
                    }
                }
            };
            self.known.adopted = true;
            self.known.nft_extra = NftObjects::default();
            self.known.nft = Some(table);
            bytes
        };
        let new = self.known.nft.as_ref().expect("set above").state();
        let rules: usize = new.chains.values().map(|c| c.rules.len()).sum();
        let elements: usize = new.elements.values().map(|e| e.len()).sum();
        self.metrics.nft_objects(new.chains.len(), rules, elements);
        Ok((bytes, stepped))
    }

    fn sync_iptables(
        &mut self,
        update: &crate::model::SyncUpdate,
        full: bool,
    ) -> Result<usize, ApplyError> {
        let family = self.cfg.iptables.family;
        if !self.known.adopted {
            self.known.ipt_chains = self.applier.iptables_nat_service_chains(family)?;
        }
        let kind = if full {
            SyncKind::Full
        } else {
            SyncKind::Partial(&update.changed_services)
        };
        let r = iptables::render(
            &self.cfg.iptables,
            &update.snapshot,
            kind,
            &self.known.ipt_chains,
        );
        self.applier.iptables_restore(family, &r.text)?;
        if full {
            // After the restore: the jumps need our chains to exist.
            self.applier
                .ensure_iptables_jumps(family, &iptables_jump_rules(&self.cfg.iptables))?;
        }
        self.known.adopted = true;
        self.known.ipt_chains = r.active_nat_chains;
        self.metrics.iptables_rules(r.filter_rules, r.nat_rules);
        Ok(r.text.len())
    }

    /// Health check ports of `externalTrafficPolicy: Local` Services and their local ready
    /// endpoint counts, from the last applied snapshot.
    pub fn health_check_ports(&self) -> BTreeMap<ServiceKey, (u16, usize)> {
        health_check_ports(self.tracker.last())
    }
}

/// Health check ports and local ready endpoint counts of a snapshot (kube-proxy counts
/// endpoints that are local and ready).
pub fn health_check_ports(snap: &ProxySnapshot) -> BTreeMap<ServiceKey, (u16, usize)> {
    let mut out: BTreeMap<ServiceKey, (u16, usize)> = BTreeMap::new();
    for (name, p) in &snap.services {
        if p.health_check_node_port == 0 {
            continue;
        }
        let local = snap
            .endpoints_of(name)
            .iter()
            .filter(|e| e.is_local && e.ready)
            .count();
        let e = out
            .entry(name.service.clone())
            .or_insert((p.health_check_node_port, 0));
        e.1 = e.1.max(local);
    }
    out
}

/// What [`apply_resync`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResyncStats {
    /// Bytes sent (both `nft` transactions and the element keys).
    pub bytes: usize,
    /// Elements the kernel held (read back).
    pub held: usize,
    /// Element operations sent.
    pub sent: usize,
}

/// A full sync over an existing table as a [`nftables::Resync`]: the skeleton, then the
/// difference between the elements the kernel holds and those wanted (one netlink batch),
/// then the stale objects' removal.
pub fn apply_resync<A: Applier>(
    applier: &mut A,
    family: IpFamily,
    table: &str,
    plan: &nftables::Resync,
) -> Result<ResyncStats, ApplyError> {
    applier.nft_apply(&plan.skeleton)?;
    // Biggest first, so parallel readers finish together.
    let mut sets: Vec<(&String, &Vec<ElementOp>)> = plan.elements.iter().collect();
    sets.sort_by_key(|(_, want)| std::cmp::Reverse(want.len()));
    let names: Vec<&str> = sets.iter().map(|(n, _)| n.as_str()).collect();
    let held_now = applier.nft_list_sets(family, table, &names)?;
    let mut ops = Vec::new();
    let mut held = 0;
    for ((_, want), have) in sets.iter().zip(&held_now) {
        held += have.len();
        ops.extend(element_diff(want, have));
    }
    applier.nft_elements(family, table, &ops)?;
    applier.nft_apply(&plan.cleanup)?;
    Ok(ResyncStats {
        bytes: plan.skeleton.len()
            + ops.iter().map(|o| o.key.len()).sum::<usize>()
            + plan.cleanup.len(),
        held,
        sent: ops.len(),
    })
}

/// What `pontifex rules` prints: the ruleset a full sync of `snap` programs, in the kernel
/// tool's own syntax (`nft` add commands, or `iptables-restore` input).
pub fn render_rules(
    mode: ProxyMode,
    nft: &NftConfig,
    ipt: &IptablesConfig,
    snap: &ProxySnapshot,
) -> String {
    match mode {
        ProxyMode::Nftables => nftables::render(nft, snap).dump(),
        ProxyMode::Iptables => iptables::render(ipt, snap, SyncKind::Full, &BTreeSet::new()).text,
    }
}

/// Runs the proxier until `cancel` fires or the event channel closes: level-triggered syncs
/// at most every `min_sync_period`, a periodic one every `sync_period`, retries after
/// failures, and the health check servers (if given) kept in step after each sync.
pub async fn run<A: Applier + 'static>(
    mut proxier: Proxier<A>,
    mut events: mpsc::UnboundedReceiver<ProxyEvent>,
    mut health_checks: Option<HealthCheckServers>,
    cancel: CancellationToken,
) -> Proxier<A> {
    let min = proxier.cfg.min_sync_period;
    let period = proxier.cfg.sync_period;
    let mut dirty = false;
    let mut last_start: Option<tokio::time::Instant> = None;
    // After a failure, retry no sooner than this (a zero min_sync_period must not spin).
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let now = tokio::time::Instant::now();
        let wake = match (proxier.seen_event, dirty, last_start) {
            (false, _, _) => None,
            (true, true, Some(t)) => Some((t + min).max(now).max(retry_at.unwrap_or(now))),
            (true, true, None) => Some(now),
            (true, false, Some(t)) => Some(t + period),
            (true, false, None) => Some(now),
        };
        let sleep = async {
            match wake {
                Some(w) => tokio::time::sleep_until(w).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                proxier.handle(ev, SystemTime::now());
                // Drain whatever else is queued: one sync covers it all.
                while let Ok(ev) = events.try_recv() {
                    proxier.handle(ev, SystemTime::now());
                }
                dirty = true;
            }
            _ = sleep => {
                last_start = Some(tokio::time::Instant::now());
                // Sync runs commands: keep it off the async workers.
                let (p, result) = tokio::task::spawn_blocking(move || {
                    let r = proxier.sync(Instant::now());
                    (proxier, r)
                })
                .await
                .expect("sync task panicked");
                proxier = p;
                match result {
                    Ok(r) => {
                        dirty = false;
                        retry_at = None;
                        tracing::debug!(full = r.full, bytes = r.bytes, took = ?r.duration, "proxy rules synced");
                        if let Some(hc) = health_checks.as_mut() {
                            for (svc, e) in hc.sync(&proxier.health_check_ports()) {
                                tracing::warn!(service = %svc, error = %e, "health check port not opened");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "proxy sync failed; next sync is full");
                        dirty = true;
                        retry_at = Some(tokio::time::Instant::now() + min.max(Duration::from_secs(1)));
                    }
                }
            }
        }
    }
    tracing::info!("proxier stopped");
    proxier
}

#[cfg(test)]
mod tests;

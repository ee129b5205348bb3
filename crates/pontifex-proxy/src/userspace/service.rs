//! One virtual service's shared state: its scheduler, endpoint health, connection counters and traffic.
//!
//! Connection tasks, the UDP flow table and `stats()` all reach it through an `Arc<Service>`; the one
//! mutex is held only for a scheduling decision or a counter update (no IO under it).
//!
//! Connection life, in IPVS's terms: picking an endpoint opens a connection in InActConn (SYN_SENT);
//! a successful connect moves it to ActiveConn (ESTABLISHED); the first FIN either way moves it back to
//! InActConn (FIN_WAIT); once closed it stays there for `tcp_time_wait` (or `tcp_close` after an
//! error) and then leaves the counters. A UDP flow is in InActConn for its whole life, as in IPVS.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pontifex_balance::{Balancer, Endpoint, Request, SchedulerKind, SchedulerOptions};

use super::model::{Protocol, ProxyConfig, VirtualService};
use super::stats::{EndpointStats, ServiceStats};

/// Byte and read counters (one per endpoint, one per service).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    conns: AtomicU64,
    in_pkts: AtomicU64,
    out_pkts: AtomicU64,
    in_bytes: AtomicU64,
    out_bytes: AtomicU64,
}

impl Traffic {
    pub(crate) fn add_in(&self, bytes: usize) {
        self.in_pkts.fetch_add(1, Ordering::Relaxed);
        self.in_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_out(&self, bytes: usize) {
        self.out_pkts.fetch_add(1, Ordering::Relaxed);
        self.out_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn load(&self) -> [u64; 5] {
        [
            &self.conns,
            &self.in_pkts,
            &self.out_pkts,
            &self.in_bytes,
            &self.out_bytes,
        ]
        .map(|c| c.load(Ordering::Relaxed))
    }
}

/// Passive health of one endpoint: consecutive connect failures and an ejection deadline.
#[derive(Debug, Default, Clone, Copy)]
struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug)]
struct State {
    balancer: Balancer,
    health: HashMap<SocketAddr, Health>,
    traffic: HashMap<SocketAddr, Arc<Traffic>>,
    /// Closed connections still counted in InActConn, by the time they leave it.
    linger: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    /// `VirtualService::source_ranges`: empty admits everyone.
    sources: Vec<ipnet::IpNet>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(Reverse((at, ep))) = self.linger.peek().copied() {
            if at > now {
                break;
            }
            self.linger.pop();
            if let Some(c) = self.balancer.counters_mut(ep) {
                c.inactive = c.inactive.saturating_sub(1);
            }
        }
    }

    fn counters(&mut self, ep: SocketAddr) -> Option<&mut pontifex_balance::ConnCounters> {
        self.balancer.counters_mut(ep)
    }
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) protocol: Protocol,
    pub(crate) listen: SocketAddr,
    config: Arc<ProxyConfig>,
    state: Mutex<State>,
    pub(crate) totals: Traffic,
    listening: AtomicBool,
    /// Whether `State::sources` restricts clients: read without the lock on every accept, so that
    /// services without source ranges (nearly all) pay nothing for them.
    filtered: AtomicBool,
}

/// Whether a client from `ip` may use a service admitting `sources` (empty: everyone). An
/// IPv4-mapped IPv6 client (a dual-stack socket) is matched as the IPv4 address it is.
pub(crate) fn admitted(sources: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    sources.is_empty() || sources.iter().any(|n| n.contains(&ip))
}

/// An unknown scheduler name is not worth refusing a Service over: warn and use IPVS's default.
fn scheduler_kind(vs: &VirtualService) -> SchedulerKind {
    vs.scheduler.parse().unwrap_or_else(|e| {
        tracing::warn!(service = %vs.listen, error = %e, "using rr");
        SchedulerKind::Rr
    })
}

/// The proxy retries a refused connection elsewhere, so hashing schedulers must be allowed to move a
/// client off an unavailable endpoint (IPVS's `sh-fallback`), or a retry could never succeed.
const OPTIONS: SchedulerOptions = SchedulerOptions {
    fallback: true,
    hash_port: false,
};

impl Service {
    pub(crate) fn new(vs: &VirtualService, config: Arc<ProxyConfig>) -> Self {
        let svc = Service {
            protocol: vs.protocol,
            listen: vs.listen,
            config,
            state: Mutex::new(State {
                balancer: Balancer::new(scheduler_kind(vs), OPTIONS),
                health: HashMap::new(),
                traffic: HashMap::new(),
                linger: BinaryHeap::new(),
                sources: Vec::new(),
            }),
            totals: Traffic::default(),
            listening: AtomicBool::new(false),
            filtered: AtomicBool::new(false),
        };
        svc.update(vs);
        svc
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock leaves counters, not invariants, half-updated: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Whether a new connection or flow from `client` is admitted (`loadBalancerSourceRanges`).
    /// Established ones are never cut when the ranges change: kube-proxy's firewall rules, too,
    /// see only the first packet of a connection.
    pub(crate) fn admits(&self, client: IpAddr) -> bool {
        !self.filtered.load(Ordering::Acquire) || admitted(&self.lock().sources, client)
    }

    /// Apply a new version of the virtual service (same protocol and address).
    pub(crate) fn update(&self, vs: &VirtualService) {
        let mut st = self.lock();
        st.sources.clone_from(&vs.source_ranges);
        self.filtered
            .store(!vs.source_ranges.is_empty(), Ordering::Release);
        st.balancer.set_kind(scheduler_kind(vs), OPTIONS);
        st.balancer.set_affinity(vs.affinity_timeout);
        let eps: Vec<Endpoint> = vs
            .endpoints
            .iter()
            .map(|&(addr, w)| Endpoint::new(addr, w))
            .collect();
        st.balancer.set_endpoints(&eps);
        st.health
            .retain(|a, _| vs.endpoints.iter().any(|(e, _)| e == a));
        let mut traffic = std::mem::take(&mut st.traffic);
        st.traffic = vs
            .endpoints
            .iter()
            .map(|&(a, _)| (a, traffic.remove(&a).unwrap_or_default()))
            .collect();
    }

    /// Whether new traffic may still go to `ep` (present with a non-zero weight).
    pub(crate) fn accepts(&self, ep: SocketAddr) -> bool {
        self.lock()
            .balancer
            .endpoints()
            .any(|e| e.addr == ep && e.weight > 0)
    }

    /// Choose an endpoint for a new connection or flow from `client`, skipping `tried` ones and, while
    /// any other is available, ejected ones. The choice enters InActConn (opening).
    pub(crate) fn pick(
        &self,
        client: SocketAddr,
        tried: &[SocketAddr],
        now: Instant,
    ) -> Option<(SocketAddr, Arc<Traffic>)> {
        let mut st = self.lock();
        st.expire(now);
        let req = Request {
            client,
            destination: self.listen,
        };
        // Split borrows: the health table is read while the balancer picks (no allocation per pick).
        let State {
            balancer, health, ..
        } = &mut *st;
        let ejected = |a: SocketAddr| {
            health
                .get(&a)
                .and_then(|h| h.ejected_until)
                .is_some_and(|t| t > now)
        };
        let mut ep = balancer.pick_avoiding(&req, now, |a| tried.contains(&a) || ejected(a));
        if ep.is_none() {
            // Every untried endpoint is ejected: trying one beats failing the client outright.
            ep = balancer.pick_avoiding(&req, now, |a| tried.contains(&a));
        }
        let ep = ep?;
        if let Some(c) = st.counters(ep) {
            c.inactive += 1;
        }
        let traffic = st.traffic.entry(ep).or_default().clone();
        Some((ep, traffic))
    }

    /// The upstream connection to `ep` is established (or the UDP flow to it is set up).
    pub(crate) fn connected(&self, ep: SocketAddr, traffic: &Traffic) {
        let mut st = self.lock();
        if self.protocol == Protocol::Tcp
            && let Some(c) = st.counters(ep)
        {
            c.inactive = c.inactive.saturating_sub(1);
            c.active += 1;
        }
        st.health.remove(&ep);
        traffic.conns.fetch_add(1, Ordering::Relaxed);
        self.totals.conns.fetch_add(1, Ordering::Relaxed);
    }

    /// Connecting to `ep` failed (refused, timed out, unreachable): count it towards ejection.
    pub(crate) fn connect_failed(&self, ep: SocketAddr, now: Instant) {
        let mut st = self.lock();
        if let Some(c) = st.counters(ep) {
            c.inactive = c.inactive.saturating_sub(1);
        }
        let (after, ban) = (self.config.eject_after, self.config.eject_for);
        if st.balancer.endpoints().any(|e| e.addr == ep) {
            let h = st.health.entry(ep).or_default();
            h.failures += 1;
            if h.failures >= after {
                h.failures = 0;
                h.ejected_until = Some(now + ban);
                tracing::info!(service = %self.listen, endpoint = %ep, "ejecting endpoint after connect failures");
            }
        }
    }

    /// The first FIN of an established TCP connection: ActiveConn → InActConn.
    pub(crate) fn half_closed(&self, ep: SocketAddr) {
        let mut st = self.lock();
        if let Some(c) = st.counters(ep) {
            c.active = c.active.saturating_sub(1);
            c.inactive += 1;
        }
    }

    /// An established TCP connection ended; `half_closed` says whether that was already counted.
    pub(crate) fn closed(&self, ep: SocketAddr, was_half_closed: bool, clean: bool, now: Instant) {
        let mut st = self.lock();
        if !was_half_closed && let Some(c) = st.counters(ep) {
            c.active = c.active.saturating_sub(1);
            c.inactive += 1;
        }
        let linger = if clean {
            self.config.tcp_time_wait
        } else {
            self.config.tcp_close
        };
        st.linger.push(Reverse((now + linger, ep)));
        st.expire(now);
    }

    /// A UDP flow to `ep` ended (idle, or its endpoint left).
    pub(crate) fn flow_closed(&self, ep: SocketAddr) {
        let mut st = self.lock();
        if let Some(c) = st.counters(ep) {
            c.inactive = c.inactive.saturating_sub(1);
        }
    }

    pub(crate) fn stats(&self, now: Instant) -> ServiceStats {
        let mut st = self.lock();
        st.expire(now);
        let endpoints = st
            .balancer
            .endpoints()
            .map(|e| {
                let c = st.balancer.counters(e.addr).unwrap_or_default();
                let [conns, in_pkts, out_pkts, in_bytes, out_bytes] =
                    st.traffic.get(&e.addr).map_or([0; 5], |t| t.load());
                EndpointStats {
                    addr: e.addr,
                    weight: e.weight,
                    active_conns: c.active,
                    inactive_conns: c.inactive,
                    conns,
                    in_pkts,
                    out_pkts,
                    in_bytes,
                    out_bytes,
                }
            })
            .collect();
        let [conns, in_pkts, out_pkts, in_bytes, out_bytes] = self.totals.load();
        ServiceStats {
            protocol: self.protocol,
            addr: self.listen,
            scheduler: st.balancer.kind().name().to_owned(),
            persistence: st.balancer.affinity_timeout(),
            listening: self.is_listening(),
            conns,
            in_pkts,
            out_pkts,
            in_bytes,
            out_bytes,
            endpoints,
        }
    }
}

#[cfg(test)]
mod tests;

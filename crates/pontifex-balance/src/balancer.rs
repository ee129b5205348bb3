//! One virtual service's scheduler state: endpoints, counters, the chosen algorithm and affinity.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::hash::{
    MH_SEED_OFFSET, MH_SEED_SKIP, MH_TABLE_BITS, MH_TABLE_SIZE, SH_TABLE_SIZE, dh_bucket, gcd,
    mh_hash, sh_bucket,
};
use crate::kind::SchedulerKind;

/// An endpoint (IPVS "real server") and its weight. Weight 0 drains it: no new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Where connections go.
    pub addr: SocketAddr,
    /// Relative capacity; kube-proxy's IPVS mode uses 1 for every ready endpoint.
    pub weight: u32,
}

impl Endpoint {
    /// An endpoint with a weight.
    pub fn new(addr: SocketAddr, weight: u32) -> Self {
        Endpoint { addr, weight }
    }
}

/// What a scheduling decision may look at: the client (source) and the address it asked for (the
/// virtual service's destination, which `dh` hashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    /// The client's address and port.
    pub client: SocketAddr,
    /// The destination the client connected to.
    pub destination: SocketAddr,
}

/// IPVS's per-service scheduler flags (`ipvsadm -b sh-fallback,sh-port`, `mh-fallback,mh-port`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedulerOptions {
    /// `sh`/`mh` (and here also `dh`): when the hashed endpoint is unavailable (weight 0, or avoided by
    /// the caller), probe further buckets for one that is; without it the pick fails, as in IPVS.
    pub fallback: bool,
    /// `sh`/`mh`: hash the client port as well as its address (per-connection rather than per-client).
    pub hash_port: bool,
}

/// Connection counters of one endpoint, as `ipvsadm -L` shows them. The caller keeps them current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnCounters {
    /// ActiveConn: established connections.
    pub active: u32,
    /// InActConn: every other connection IPVS still tracks (opening, closing, recently closed, UDP).
    pub inactive: u32,
}

impl ConnCounters {
    /// IPVS's `ip_vs_dest_conn_overhead`: an active connection costs 256 times an inactive one.
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }

    fn is_zero(&self) -> bool {
        self.active == 0 && self.inactive == 0
    }
}

#[derive(Debug, Clone)]
struct Dest {
    addr: SocketAddr,
    weight: u32,
    /// The last non-zero weight (IPVS's `last_weight`): Maglev builds its table from it, so draining an
    /// endpoint (weight 0) leaves every other endpoint's slots where they were.
    last_weight: u32,
    counters: ConnCounters,
}

/// IPVS's `ip_vs_wrr_mark`: position in the list (`None` = the list head) and the current weight level.
#[derive(Debug, Clone, Copy, Default)]
struct WrrMark {
    cl: Option<usize>,
    cw: u64,
    mw: u64,
    di: u64,
}

#[derive(Debug, Clone)]
struct AffinityTable {
    timeout: Duration,
    entries: HashMap<IpAddr, (SocketAddr, Instant)>,
    /// Sweep expired entries when the table reaches this size, so that memory stays proportional to
    /// the clients seen within one timeout even if nobody calls `expire_affinity`.
    sweep_at: usize,
}

const AFFINITY_MIN_SWEEP: usize = 1024;

/// The scheduler of one virtual service. See the crate documentation.
#[derive(Debug, Clone)]
pub struct Balancer {
    kind: SchedulerKind,
    options: SchedulerOptions,
    dests: Vec<Dest>,
    index: HashMap<SocketAddr, usize>,
    /// Counters of removed endpoints that still have connections (IPVS's destination trash): their
    /// connections finish, and re-adding the endpoint restores the counts.
    trash: HashMap<SocketAddr, ConnCounters>,
    rr_last: Option<usize>,
    wrr: WrrMark,
    /// `sh`, `dh`, `mh`: bucket → index into `dests`.
    table: Vec<Option<u32>>,
    affinity: Option<AffinityTable>,
}

impl Balancer {
    /// A balancer without endpoints (every pick fails until [`Balancer::set_endpoints`]).
    pub fn new(kind: SchedulerKind, options: SchedulerOptions) -> Self {
        Balancer {
            kind,
            options,
            dests: Vec::new(),
            index: HashMap::new(),
            trash: HashMap::new(),
            rr_last: None,
            wrr: WrrMark::default(),
            table: Vec::new(),
            affinity: None,
        }
    }

    /// The scheduler in use.
    pub fn kind(&self) -> SchedulerKind {
        self.kind
    }

    /// The scheduler flags in use.
    pub fn options(&self) -> SchedulerOptions {
        self.options
    }

    /// Switch scheduler (an annotation changed); counters and affinity are kept, positions reset.
    pub fn set_kind(&mut self, kind: SchedulerKind, options: SchedulerOptions) {
        if kind == self.kind && options == self.options {
            return;
        }
        self.kind = kind;
        self.options = options;
        self.rr_last = None;
        self.wrr = WrrMark::default();
        self.rebuild();
    }

    /// The endpoints in list order, with their current weights.
    pub fn endpoints(&self) -> impl ExactSizeIterator<Item = Endpoint> + '_ {
        self.dests.iter().map(|d| Endpoint::new(d.addr, d.weight))
    }

    /// Replace the endpoint list. Duplicated addresses keep their first occurrence. State is kept where
    /// it still means something: counters of surviving endpoints, the rr position (the last endpoint
    /// chosen, or the nearest survivor before it, as IPVS moves back when the current one is deleted),
    /// the wrr weight level (restarting from the list head, as IPVS does), and affinity entries.
    pub fn set_endpoints(&mut self, endpoints: &[Endpoint]) {
        let old = std::mem::take(&mut self.dests);
        let old_index = std::mem::take(&mut self.index);
        for ep in endpoints {
            if self.index.contains_key(&ep.addr) {
                continue;
            }
            let (last_weight, counters) = match old_index.get(&ep.addr) {
                Some(&i) => {
                    let prev = &old[i];
                    let lw = if ep.weight > 0 {
                        ep.weight
                    } else {
                        prev.last_weight
                    };
                    (lw, prev.counters)
                }
                None => (ep.weight, self.trash.remove(&ep.addr).unwrap_or_default()),
            };
            self.index.insert(ep.addr, self.dests.len());
            self.dests.push(Dest {
                addr: ep.addr,
                weight: ep.weight,
                last_weight,
                counters,
            });
        }
        for d in &old {
            if !self.index.contains_key(&d.addr) && !d.counters.is_zero() {
                self.trash.insert(d.addr, d.counters);
            }
        }
        self.trash.retain(|_, c| !c.is_zero());

        // rr: the last chosen endpoint if it survived, else the nearest survivor before it.
        self.rr_last = self.rr_last.and_then(|last| {
            old[..=last.min(old.len().saturating_sub(1))]
                .iter()
                .rev()
                .find_map(|d| self.index.get(&d.addr).copied())
        });
        self.rebuild();
    }

    /// Turn ClientIP affinity on (with its timeout) or off (`None`, which forgets every entry).
    pub fn set_affinity(&mut self, timeout: Option<Duration>) {
        match (timeout, &mut self.affinity) {
            (None, a) => *a = None,
            (Some(t), Some(a)) => a.timeout = t,
            (Some(t), a @ None) => {
                *a = Some(AffinityTable {
                    timeout: t,
                    entries: HashMap::new(),
                    sweep_at: AFFINITY_MIN_SWEEP,
                })
            }
        }
    }

    /// The affinity timeout, if affinity is on.
    pub fn affinity_timeout(&self) -> Option<Duration> {
        self.affinity.as_ref().map(|a| a.timeout)
    }

    /// The endpoint a client is currently stuck to, if its entry has not expired at `now` and the
    /// endpoint can still take new connections.
    pub fn affinity_of(&self, client: IpAddr, now: Instant) -> Option<SocketAddr> {
        let a = self.affinity.as_ref()?;
        let &(addr, last) = a.entries.get(&client)?;
        let fresh = now.saturating_duration_since(last) < a.timeout;
        let usable = self
            .index
            .get(&addr)
            .is_some_and(|&i| self.dests[i].weight > 0);
        (fresh && usable).then_some(addr)
    }

    /// Forget affinity entries that expired at `now`.
    pub fn expire_affinity(&mut self, now: Instant) {
        if let Some(a) = &mut self.affinity {
            let t = a.timeout;
            a.entries
                .retain(|_, (_, last)| now.saturating_duration_since(*last) < t);
        }
    }

    /// Number of affinity entries held (expired ones included until swept).
    pub fn affinity_len(&self) -> usize {
        self.affinity.as_ref().map_or(0, |a| a.entries.len())
    }

    /// Choose an endpoint for a new connection. `None`: no endpoint can take it.
    pub fn pick(&mut self, req: &Request, now: Instant) -> Option<SocketAddr> {
        self.pick_avoiding(req, now, |_| false)
    }

    /// As [`Balancer::pick`], treating endpoints for which `avoid` is true as unavailable (IPVS's
    /// OVERLOAD flag): used to retry a connection elsewhere and to skip ejected endpoints. An affinity
    /// entry pointing at an avoided endpoint is replaced by the new choice.
    pub fn pick_avoiding(
        &mut self,
        req: &Request,
        now: Instant,
        avoid: impl Fn(SocketAddr) -> bool,
    ) -> Option<SocketAddr> {
        let client = req.client.ip();
        if let Some(addr) = self.affinity_of(client, now).filter(|a| !avoid(*a))
            && let Some(a) = &mut self.affinity
        {
            // Sliding window: each new connection restarts the timeout, as kube-proxy's `recent` match
            // and IPVS's persistence templates do.
            a.entries.insert(client, (addr, now));
            return Some(addr);
        }
        let available: Vec<bool> = self
            .dests
            .iter()
            .map(|d| d.weight > 0 && !avoid(d.addr))
            .collect();
        let i = self.schedule(req, &available)?;
        let addr = self.dests[i].addr;
        if let Some(a) = &mut self.affinity {
            if a.entries.len() >= a.sweep_at {
                let t = a.timeout;
                a.entries
                    .retain(|_, (_, last)| now.saturating_duration_since(*last) < t);
                a.sweep_at = (a.entries.len() * 2).max(AFFINITY_MIN_SWEEP);
            }
            a.entries.insert(client, (addr, now));
        }
        Some(addr)
    }

    /// The counters of an endpoint (also of a removed one whose connections are still draining).
    pub fn counters(&self, addr: SocketAddr) -> Option<ConnCounters> {
        match self.index.get(&addr) {
            Some(&i) => Some(self.dests[i].counters),
            None => self.trash.get(&addr).copied(),
        }
    }

    /// Mutable counters of an endpoint (also of a removed one whose connections are still draining).
    pub fn counters_mut(&mut self, addr: SocketAddr) -> Option<&mut ConnCounters> {
        match self.index.get(&addr) {
            Some(&i) => Some(&mut self.dests[i].counters),
            None => self.trash.get_mut(&addr),
        }
    }

    fn rebuild(&mut self) {
        // wrr, as IPVS's ip_vs_wrr_dest_changed: restart from the head, keep the weight level if valid.
        let di = self
            .dests
            .iter()
            .filter(|d| d.weight > 0)
            .fold(0, |g, d| gcd(g, u64::from(d.weight)));
        let mw = self
            .dests
            .iter()
            .map(|d| u64::from(d.weight))
            .max()
            .unwrap_or(0);
        let cw = if di == 0 || self.wrr.cw > mw {
            0
        } else {
            self.wrr.cw.div_ceil(di) * di
        };
        self.wrr = WrrMark {
            cl: None,
            cw,
            mw,
            di,
        };

        self.table = match self.kind {
            SchedulerKind::Sh => self.sh_table(),
            SchedulerKind::Dh => self.dh_table(),
            SchedulerKind::Mh => self.mh_table(),
            _ => Vec::new(),
        };
    }

    /// IPVS's `ip_vs_sh_reassign`: walk the endpoints in order, each taking `weight` consecutive
    /// buckets (at least one, even at weight 0), around and around until all 256 are assigned.
    fn sh_table(&self) -> Vec<Option<u32>> {
        if self.dests.is_empty() {
            return vec![None; SH_TABLE_SIZE];
        }
        let mut table = Vec::with_capacity(SH_TABLE_SIZE);
        let (mut p, mut count) = (0usize, 0u32);
        for _ in 0..SH_TABLE_SIZE {
            table.push(Some(p as u32));
            count += 1;
            if count >= self.dests[p].weight {
                p = (p + 1) % self.dests.len();
                count = 0;
            }
        }
        table
    }

    /// IPVS's `ip_vs_dh_reassign`: endpoints dealt round robin to the 256 buckets, weights ignored.
    fn dh_table(&self) -> Vec<Option<u32>> {
        let n = self.dests.len();
        (0..SH_TABLE_SIZE)
            .map(|b| (n > 0).then(|| (b % n) as u32))
            .collect()
    }

    /// IPVS's Maglev population (`ip_vs_mh_permutate` + `ip_vs_mh_populate`): each endpoint has a
    /// permutation of the slots (offset, skip from two hashes of its address); endpoints take turns,
    /// `last_weight / gcd` (shifted to fit `MH_TABLE_BITS`) slots per turn, each claiming its next
    /// preferred free slot, until the table is full.
    fn mh_table(&self) -> Vec<Option<u32>> {
        let m = MH_TABLE_SIZE;
        let g = self
            .dests
            .iter()
            .fold(0, |g, d| gcd(g, u64::from(d.last_weight)));
        if g == 0 {
            return vec![None; m];
        }
        let max = self
            .dests
            .iter()
            .map(|d| u64::from(d.last_weight))
            .max()
            .unwrap_or(0);
        let bits = u64::BITS - (max / g).leading_zeros();
        let shift = bits.saturating_sub(MH_TABLE_BITS);
        struct Setup {
            perm: usize,
            skip: usize,
            turns: u64,
        }
        let mut setups: Vec<Setup> = self
            .dests
            .iter()
            .map(|d| {
                let (ip, port) = (d.addr.ip(), d.addr.port());
                let offset = (mh_hash(MH_SEED_OFFSET, ip, port, 0) % m as u64) as usize;
                let skip = (mh_hash(MH_SEED_SKIP, ip, port, 0) % (m as u64 - 1)) as usize + 1;
                let lw = u64::from(d.last_weight);
                let turns = match (lw / g) >> shift {
                    0 => u64::from(lw != 0),
                    t => t,
                };
                Setup {
                    perm: offset,
                    skip,
                    turns,
                }
            })
            .collect();
        let mut table = vec![None; m];
        let mut filled = 0usize;
        'fill: loop {
            for (i, s) in setups.iter_mut().enumerate() {
                for _ in 0..s.turns {
                    while table[s.perm].is_some() {
                        s.perm = (s.perm + s.skip) % m;
                    }
                    table[s.perm] = Some(i as u32);
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        table
    }

    fn schedule(&mut self, req: &Request, available: &[bool]) -> Option<usize> {
        let n = self.dests.len();
        if n == 0 {
            return None;
        }
        match self.kind {
            SchedulerKind::Rr => {
                let start = self.rr_last.map_or(0, |l| l + 1);
                let i = (0..n).map(|k| (start + k) % n).find(|&i| available[i])?;
                self.rr_last = Some(i);
                Some(i)
            }
            SchedulerKind::Wrr => self.wrr_schedule(available),
            SchedulerKind::Lc => self.least_by(available, |d| (d.counters.overhead(), 1)),
            SchedulerKind::Wlc => {
                self.least_by(available, |d| (d.counters.overhead(), u64::from(d.weight)))
            }
            SchedulerKind::Sed => self.least_by(available, |d| {
                (u64::from(d.counters.active) + 1, u64::from(d.weight))
            }),
            SchedulerKind::Nq => (0..n)
                .find(|&i| available[i] && self.dests[i].counters.active == 0)
                .or_else(|| {
                    self.least_by(available, |d| {
                        (u64::from(d.counters.active) + 1, u64::from(d.weight))
                    })
                }),
            SchedulerKind::Sh | SchedulerKind::Mh => {
                let port = if self.options.hash_port {
                    req.client.port()
                } else {
                    0
                };
                self.hashed(available, req.client.ip(), port)
            }
            SchedulerKind::Dh => self.hashed(available, req.destination.ip(), 0),
        }
    }

    /// The first available endpoint with the smallest `cost / weight` (compared by cross
    /// multiplication, as IPVS does, so ties go to the earlier endpoint).
    fn least_by(&self, available: &[bool], cost: impl Fn(&Dest) -> (u64, u64)) -> Option<usize> {
        let mut best: Option<(usize, u64, u64)> = None;
        for (i, d) in self.dests.iter().enumerate() {
            if !available[i] {
                continue;
            }
            let (c, w) = cost(d);
            match best {
                Some((_, bc, bw))
                    if u128::from(bc) * u128::from(w) <= u128::from(c) * u128::from(bw) => {}
                _ => best = Some((i, c, w)),
            }
        }
        best.map(|(i, _, _)| i)
    }

    /// IPVS's `ip_vs_wrr_schedule`: walk the list; each time the walk passes the head, lower the
    /// current weight by the gcd (back to the maximum below 1); take the first available endpoint whose
    /// weight reaches the current weight. Over one cycle of `Σw/gcd` picks each endpoint is chosen
    /// `w/gcd` times, interleaved (heavier ones first within each round).
    fn wrr_schedule(&mut self, available: &[bool]) -> Option<usize> {
        let n = self.dests.len();
        let WrrMark {
            mut cl,
            mut cw,
            mw,
            di,
        } = self.wrr;
        if mw == 0 || di == 0 {
            return None;
        }
        // One full cycle visits every (level, endpoint) pair once; beyond that nothing can match.
        let bound = (n as u64 + 1) * (mw / di + 1);
        for _ in 0..bound {
            let next = match cl {
                None => {
                    cw = if cw <= di { mw } else { cw - di };
                    0
                }
                Some(i) => i + 1,
            };
            if next >= n {
                cl = None;
                continue;
            }
            cl = Some(next);
            if available[next] && u64::from(self.dests[next].weight) >= cw {
                self.wrr = WrrMark { cl, cw, mw, di };
                return Some(next);
            }
        }
        None
    }

    fn hashed(&self, available: &[bool], ip: IpAddr, port: u16) -> Option<usize> {
        let size = self.table.len();
        if size == 0 {
            return None;
        }
        let bucket = |offset: usize| -> usize {
            match self.kind {
                SchedulerKind::Sh => sh_bucket(ip, port, offset),
                SchedulerKind::Dh => (dh_bucket(ip) + offset) % size,
                _ => (mh_hash(MH_SEED_OFFSET, ip, port, offset as u32) % size as u64) as usize,
            }
        };
        let first = bucket(0);
        let i = self.table[first]? as usize;
        if available[i] {
            return Some(i);
        }
        if !self.options.fallback {
            return None;
        }
        // IPVS's *_get_fallback: re-hash with increasing offsets from the first bucket.
        (0..size).find_map(|offset| {
            let b = bucket((offset + first) % size);
            self.table[b].map(|i| i as usize).filter(|&i| available[i])
        })
    }
}

#[cfg(test)]
mod tests;

//! Endpoint schedulers with IPVS's names and semantics, and ClientIP session affinity.
//!
//! A [`Balancer`] holds one virtual service's endpoints (address and weight), the state of one
//! scheduler ([`SchedulerKind`]: `rr`, `wrr`, `lc`, `wlc`, `sed`, `nq`, `sh`, `dh`, `mh`), the
//! per-endpoint connection counters the load-based schedulers read (IPVS's ActiveConn and InActConn,
//! kept up to date by the caller through [`Balancer::counters_mut`]), and an optional ClientIP
//! affinity table. Each choice follows the Linux kernel's `net/netfilter/ipvs/ip_vs_<name>.c`:
//!
//! - weight 0 means *quiescent* (draining): never chosen for a new connection, and an affinity entry
//!   that points at it is forgotten (kube-proxy runs IPVS with `expire_quiescent_template=1`);
//! - an endpoint update keeps what state it can: the rr position, the wrr current weight, the counters,
//!   and Maglev's "last weight" of a drained endpoint so that draining does not reshuffle the table.
//!
//! Pure: no sockets, no clock (callers pass `now`), no randomness. Shared by the userspace proxy and the
//! ingress proxy. What it does not do: IPVS's upper/lower connection thresholds (the OVERLOAD flag) —
//! callers get the same effect per pick with [`Balancer::pick_avoiding`] (used for connect retries and
//! passive ejection); the lblc/lblcr/fo/ovf/twos schedulers; kernel-identical hash values for `mh`
//! (IPVS seeds hsiphash; here a fixed 64-bit mixer is used, so tables differ, properties do not).

#![forbid(unsafe_code)]

mod balancer;
mod hash;
mod kind;

pub use balancer::{Balancer, ConnCounters, Endpoint, Request, SchedulerOptions};
pub use hash::{MH_TABLE_SIZE, SH_TABLE_SIZE};
pub use kind::{BalanceError, SchedulerKind};

//! The userspace L4 proxy (`--proxy-mode userspace`, and rootless mode): TCP and UDP forwarding from
//! service addresses to endpoints chosen by IPVS's schedulers (`pontifex-balance`), with the counters
//! `ipvsadm -L -n` shows.
//!
//! Input is a `watch::Receiver<Arc<Snapshot>>`; every snapshot is applied whole: new virtual services
//! are bound, vanished ones unbound, endpoints and schedulers updated in place. Established TCP
//! connections survive all of it — an endpoint that leaves gets no new connections while its existing
//! ones finish (draining). TCP connects are retried on another endpoint (`max_attempts`), endpoints that
//! keep refusing are ejected for a while, and each direction half-closes independently. UDP keeps a
//! flow per client address with IPVS's idle timeout.
//!
//! [`to_snapshot`] turns the service model (the same `ProxySnapshot` the kernel renderers read) into
//! the proxy's `Snapshot`; see `convert.rs` for the scheduler annotation and pod weights.
//!
//! Bulk TCP moves with splice(2) (zero-copy) on Linux; see `tcp.rs`.
//!
//! Not here: making service addresses local (the node agent adds them to a dummy device),
//! source-IP preservation (impossible for a userspace proxy), and IPVS's connection
//! thresholds. See `engine.rs` for the task layout.

mod convert;
mod engine;
mod model;
mod service;
mod stats;
mod tcp;
mod udp;

pub use convert::{
    ConvertOptions, SCHEDULER_ANNOTATION, WEIGHT_ANNOTATION, local_service_ips, pod_weights,
    scheduler_of, to_snapshot,
};
pub use engine::{Binder, DefaultBinder, ProxyHandle, spawn, spawn_with_binder};
pub use model::{Protocol, ProxyConfig, Snapshot, VirtualService};
pub use stats::{EndpointStats, ServiceStats, StatsSnapshot, render_ipvsadm};

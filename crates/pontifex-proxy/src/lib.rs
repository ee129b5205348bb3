//! The pontifex service proxy (kube-proxy's job): a service model built from Services and
//! EndpointSlices with change tracking, and the dataplanes that program it — nftables (default),
//! iptables in kube-proxy's exact layout, and a userspace L4 proxy. Rendering is pure; appliers are thin.
//!
//! This crate's pure part: [`model`] (service ports, endpoints, change tracking),
//! [`iptables`] (kube-proxy's `iptables-restore` input, byte for byte) and [`nftables`]
//! (kube-proxy's nftables layout as a state, with full and incremental `nft -f` transactions).
//! Its thin IO shell: [`apply`] (the `Applier` trait, real `nft`/`iptables-restore` runners and
//! netlink inside a network namespace, a fake), [`nfnetlink`] (nf_tables elements, ctnetlink,
//! nfacct and named counters over our own netlink), [`conntrack`] (which stale UDP entries to
//! delete), [`counters`] (the INVALID-drop and localhost NodePort counters),
//! [`sync`] (the proxier and its level-triggered loop), [`metrics`] and [`health`]
//! (kube-proxy's metrics, `/healthz`, `/livez` and health check node ports).
//! [`userspace`] is the L4 proxy with IPVS's schedulers (from `pontifex-balance`).
#![forbid(unsafe_code)]

pub mod apply;
pub mod conntrack;
pub mod counters;
mod hash;
pub mod health;
pub mod iptables;
pub mod metrics;
pub mod model;
pub mod nfnetlink;
pub mod nftables;
pub mod sync;
pub mod userspace;

//! The pontifex service proxy (kube-proxy's job): a service model built from Services and
//! EndpointSlices with change tracking, and the dataplanes that program it — nftables (default),
//! iptables in kube-proxy's exact layout, and a userspace L4 proxy. Rendering is pure; appliers are thin.
//!
//! The pure part: [`model`] (service ports, endpoints, change tracking), [`iptables`] (kube-proxy's
//! `iptables-restore` input, byte for byte) and [`nftables`] (kube-proxy's nftables layout as a
//! state, with full and incremental `nft -f` transactions) run no command and touch no kernel.
//! [`userspace`] is the L4 proxy with IPVS's schedulers (from `pontifex-balance`).
#![forbid(unsafe_code)]

mod hash;
pub mod iptables;
pub mod model;
pub mod nftables;
pub mod userspace;

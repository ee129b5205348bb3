//! The pontifex service proxy (kube-proxy's job): a service model built from Services and
//! EndpointSlices with change tracking, and the dataplanes that program it — nftables (default),
//! iptables in kube-proxy's exact layout, and a userspace L4 proxy. Rendering is pure; appliers are thin.

pub mod userspace;

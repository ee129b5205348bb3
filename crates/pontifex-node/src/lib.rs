//! The node runtime of a pontifex agent: pod network sandboxes (a network namespace per pod, a veth into
//! the node's bridge, addresses from a host-local IPAM), cross-node routes (host-gw and VXLAN), and the
//! workloads inside the pods (processes, the built-in test server, probes, pod status).
//!
//! It does not talk to the Kubernetes API: `pontifex-agent` feeds it from its informer cache and writes
//! the status it reports.

pub mod net;
pub mod workload;

//! Workloads inside pods: what a container runs ([`plan`]), the built-in test server ([`agnhost`]),
//! processes in a pod's network namespace ([`process`]) with kubelet-format logs ([`logs`]) and
//! restarts ([`supervisor`]), the environment a container starts with ([`envvars`]), probes ([`probe`])
//! and the pod status they add up to ([`status`]). Container processes run under a per-instance
//! [`shim`] that owns their output and exit status, and what the agent must remember of them across its
//! own restarts is in [`state`], so a restarted agent re-adopts running containers instead of
//! restarting them. Without privileges (rootless mode) pods share the host's network: [`rootless`]
//! says where their processes listen instead.
//!
//! Images are never pulled: a container either runs its `command`/`args` as a program of this machine,
//! or the built-in server that stands in for `agnhost` (and for any image started without a command).
//! Deciding is pure everywhere (plan, environment, backoff, probe results, pod status); only
//! [`process`], [`agnhost`] and the probe runners touch processes and sockets.
//!
//! This module does not create network namespaces (see `net`) and does not talk to the API server:
//! the agent feeds it pods, Services and a ConfigMap/Secret lookup, and writes the status it computes.

pub mod agnhost;
pub mod dns;
pub mod envvars;
mod httpc;
pub mod logs;
pub mod plan;
pub mod probe;
pub mod process;
pub mod rootless;
pub mod shim;
pub mod state;
pub mod status;
pub mod supervisor;

//! Rootless pod networking: where a pod's processes listen when the node has no network
//! namespaces to give them (`pontifex up` run by a normal user).
//!
//! **Addresses.** A pod keeps a normal pod IP from its node's podCIDR (`10.244.0.5`): that is what
//! the API shows and what EndpointSlices carry — Kubernetes refuses loopback addresses in
//! Endpoints and EndpointSlices (`ValidateEndpointIP`), so a pod IP may not be one. Its processes
//! listen on the pod IP's *loopback image*, the same address with the first octet replaced by 127
//! (`127.244.0.5`): the whole of 127.0.0.0/8 is local on `lo`, so binding it needs no set-up and no
//! privilege, and two pods never collide. The userspace proxy dials the loopback image of an
//! endpoint in the cluster CIDR.
//!
//! **Ports.** A normal user cannot bind below `net.ipv4.ip_unprivileged_port_start` (1024 by
//! default). A container port `p` below it is served on `p + PORT_SHIFT` (80 → 10080) on the pod's
//! loopback address; the EndpointSlices keep the real port, and the proxy shifts it the same way
//! when it dials. A pod that also listens on the shifted port itself would collide (documented).
//!
//! The runtime tells the pod's built-in test server (`pontifex agnhost`) through the environment
//! ([`BIND_ENV`], [`SHIFT_ENV`]); other programs see the same variables and may honour them.
//!
//! Not here: isolation of any kind (every pod shares the host's network, hostname and files).

use std::net::Ipv4Addr;

/// The shift added to privileged container ports.
pub const PORT_SHIFT: u16 = 10_000;

/// Environment variable: the address the pod's processes listen on (its loopback image).
pub const BIND_ENV: &str = "PONTIFEX_ROOTLESS_BIND";
/// Environment variable: `<unprivileged port start>:<shift>` (`1024:10000`).
pub const SHIFT_ENV: &str = "PONTIFEX_ROOTLESS_PORT_SHIFT";

/// How ports below the unprivileged start are moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortShift {
    /// `net.ipv4.ip_unprivileged_port_start`: ports below it are shifted.
    pub unprivileged_start: u16,
    /// What is added to them.
    pub shift: u16,
}

impl PortShift {
    /// This machine's setting (1024 when it cannot be read), with [`PORT_SHIFT`].
    pub fn of_this_machine() -> Self {
        let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
        PortShift {
            unprivileged_start: start,
            shift: PORT_SHIFT,
        }
    }

    /// Where container port `port` is really served.
    pub fn port(&self, port: u16) -> u16 {
        if port != 0 && port < self.unprivileged_start {
            port.saturating_add(self.shift)
        } else {
            port
        }
    }

    /// The [`SHIFT_ENV`] value.
    pub fn to_env(&self) -> String {
        format!("{}:{}", self.unprivileged_start, self.shift)
    }

    /// Parses a [`SHIFT_ENV`] value.
    pub fn from_env(value: &str) -> Option<Self> {
        let (start, shift) = value.split_once(':')?;
        Some(PortShift {
            unprivileged_start: start.trim().parse().ok()?,
            shift: shift.trim().parse().ok()?,
        })
    }
}

/// A pod IP's loopback image: `a.b.c.d` → `127.b.c.d`.
pub fn loopback_of(pod_ip: Ipv4Addr) -> Ipv4Addr {
    let [_, b, c, d] = pod_ip.octets();
    Ipv4Addr::new(127, b, c, d)
}

/// The environment the rootless runtime gives a pod with IP `pod_ip`.
pub fn pod_env(pod_ip: Ipv4Addr, shift: PortShift) -> Vec<(String, String)> {
    vec![
        (BIND_ENV.to_owned(), loopback_of(pod_ip).to_string()),
        (SHIFT_ENV.to_owned(), shift.to_env()),
    ]
}

/// What this process was told by the rootless runtime: its listen address and port shift, or
/// `None` when it is not a rootless pod.
pub fn from_process_env() -> Option<(Ipv4Addr, PortShift)> {
    let addr = std::env::var(BIND_ENV).ok()?.trim().parse().ok()?;
    let shift = std::env::var(SHIFT_ENV)
        .ok()
        .and_then(|v| PortShift::from_env(&v))
        .unwrap_or(PortShift {
            unprivileged_start: 1024,
            shift: PORT_SHIFT,
        });
    Some((addr, shift))
}

#[cfg(test)]
mod tests;

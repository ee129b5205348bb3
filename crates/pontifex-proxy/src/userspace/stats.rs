//! Counters of the userspace proxy and their `ipvsadm -L -n [--stats]` rendering.
//!
//! The layout is ipvsadm's own (`print_title`, `print_service_entry`, `print_largenum`): services
//! sorted by protocol, address and port, endpoints by address and port, the same column widths, so
//! the seeds' `ipvsadm -L -n` habits and scripts carry over. Counting differs where a userspace proxy
//! cannot see packets: InPkts/OutPkts count reads (TCP segments as delivered to the proxy, or UDP
//! datagrams), not wire packets.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::model::Protocol;

/// Counters of one endpoint of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EndpointStats {
    /// The endpoint.
    pub addr: SocketAddr,
    /// Its current weight.
    pub weight: u32,
    /// ActiveConn: established TCP connections.
    pub active_conns: u32,
    /// InActConn: TCP connections opening, half-closed or recently closed; UDP flows.
    pub inactive_conns: u32,
    /// Connections (TCP) or flows (UDP) ever forwarded to it.
    pub conns: u64,
    /// Reads from clients forwarded to it.
    pub in_pkts: u64,
    /// Reads from it forwarded to clients.
    pub out_pkts: u64,
    /// Bytes from clients to it.
    pub in_bytes: u64,
    /// Bytes from it to clients.
    pub out_bytes: u64,
}

/// Counters of one virtual service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceStats {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The service address.
    pub addr: SocketAddr,
    /// The scheduler's IPVS name.
    pub scheduler: String,
    /// ClientIP affinity timeout (`persistent <seconds>` in ipvsadm).
    pub persistence: Option<Duration>,
    /// Whether the proxy currently listens on the address (binding may have failed).
    pub listening: bool,
    /// Totals over the service's lifetime (all endpoints, including removed ones).
    pub conns: u64,
    /// Total reads from clients.
    pub in_pkts: u64,
    /// Total reads from endpoints.
    pub out_pkts: u64,
    /// Total bytes from clients.
    pub in_bytes: u64,
    /// Total bytes from endpoints.
    pub out_bytes: u64,
    /// Current endpoints, in snapshot order.
    pub endpoints: Vec<EndpointStats>,
}

/// The whole proxy's counters at one moment.
/// Serializable (JSON), so an agent can hand it to `pontifex ipvsadm` in another process.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatsSnapshot {
    /// Every virtual service.
    pub services: Vec<ServiceStats>,
}

/// `ipvsadm -L [-n] [--stats]` output. `numeric = false` would make ipvsadm resolve names; a pure
/// renderer cannot, so both forms print addresses (and the flag only exists to mirror the CLI).
pub fn render_ipvsadm(stats: &StatsSnapshot, numeric: bool, with_stats: bool) -> String {
    let _ = numeric;
    let mut out = String::new();
    out.push_str("IP Virtual Server version 1.2.1 (size=4096)\n");
    if with_stats {
        let _ = writeln!(
            out,
            "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
        );
        out.push_str("  -> RemoteAddress:Port\n");
    } else {
        out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
        out.push_str("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n");
    }
    let mut services: Vec<&ServiceStats> = stats.services.iter().collect();
    // ipvsadm's ipvs_cmp_services: protocol number (TCP 6 < UDP 17), then address, then port.
    services.sort_by(|a, b| {
        (a.protocol, a.addr.ip(), a.addr.port()).cmp(&(b.protocol, b.addr.ip(), b.addr.port()))
    });
    for s in services {
        let mut name = format!("{}  {}", s.protocol.as_str(), s.addr);
        if s.addr.is_ipv4() {
            // ipvsadm cuts IPv4 service names at 33 characters; they always fit, kept for fidelity.
            name.truncate(33);
        }
        if with_stats {
            let _ = write!(out, "{name:<33}");
            for n in [s.conns, s.in_pkts, s.out_pkts, s.in_bytes, s.out_bytes] {
                largenum(&mut out, n);
            }
        } else {
            let _ = write!(out, "{name} {}", s.scheduler);
            if let Some(t) = s.persistence {
                let _ = write!(out, " persistent {}", t.as_secs());
            }
        }
        out.push('\n');
        let mut eps: Vec<&EndpointStats> = s.endpoints.iter().collect();
        eps.sort_by_key(|e| (e.addr.ip(), e.addr.port()));
        for e in eps {
            let mut dname = e.addr.to_string();
            if e.addr.is_ipv4() {
                dname.truncate(28);
            }
            if with_stats {
                let _ = write!(out, "  -> {dname:<28}");
                for n in [e.conns, e.in_pkts, e.out_pkts, e.in_bytes, e.out_bytes] {
                    largenum(&mut out, n);
                }
                out.push('\n');
            } else {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    "Masq", e.weight, e.active_conns, e.inactive_conns
                );
            }
        }
    }
    out
}

/// ipvsadm's `print_largenum`: 9 columns, scaled to K/M/G/T past 100 million.
fn largenum(out: &mut String, n: u64) {
    let _ = match n {
        0..100_000_000 => write!(out, "{n:>9}"),
        100_000_000..1_000_000_000 => write!(out, "{:>8}K", n / 1_000),
        1_000_000_000..100_000_000_000 => write!(out, "{:>8}M", n / 1_000_000),
        100_000_000_000..100_000_000_000_000 => write!(out, "{:>8}G", n / 1_000_000_000),
        _ => write!(out, "{:>8}T", n / 1_000_000_000_000),
    };
}

#[cfg(test)]
mod tests;

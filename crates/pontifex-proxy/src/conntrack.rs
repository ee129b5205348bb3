//! Stale UDP conntrack entries: which entries of the kernel's table each [`ConntrackFlush`] the
//! model asks for names. kube-proxy deletes these after a sync because UDP has no connection
//! teardown: a flow pinned by conntrack to an endpoint that went away (or to a REJECT while a
//! Service had no endpoints) would stay blackholed until the entry times out.
//!
//! Matching, as kube-proxy's netlink filters do (`filterForIP`, `filterForPort`,
//! `filterForNAT`, `filterForPortNAT`): protocol UDP; the original destination — the service
//! address and port, or any address with the node port — and, for a removed endpoint, the reply
//! source (the endpoint the flow was DNATed to). Deviation: kube-proxy matches the service
//! address without its port and the endpoint's address without its port; the model knows both
//! ports, so entries of the same address's other ports are left alone.
//!
//! This module is pure; reading the table and deleting go over ctnetlink
//! ([`crate::nfnetlink::conntrack`], run by [`crate::apply::KernelApplier`]).

use std::net::IpAddr;

use crate::model::{ConntrackFlush, ConntrackTarget, IpFamily};
use crate::nfnetlink::conntrack::{Flow, IPPROTO_UDP};

/// An address with IPv4-mapped IPv6 folded to IPv4, so `::ffff:10.0.0.1` and `10.0.0.1` compare
/// equal (the kernel reports the family the packet had; the model parses what the API said).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `flush` names `flow`.
pub fn matches(flush: &ConntrackFlush, flow: &Flow) -> bool {
    if flow.orig.proto != IPPROTO_UDP {
        return false;
    }
    let dst = match &flush.target {
        ConntrackTarget::Ip(ip, port) => {
            canonical(flow.orig.dst) == canonical(*ip) && flow.orig.dst_port == *port
        }
        ConntrackTarget::NodePort(port) => flow.orig.dst_port == *port,
    };
    dst && flush.endpoint.is_none_or(|ep| {
        canonical(flow.reply.src) == canonical(ep.ip()) && flow.reply.src_port == ep.port()
    })
}

/// The entries of `flows` that any of `flushes` names, each once, in `flows`' order.
pub fn select<'a>(flushes: &[ConntrackFlush], flows: &'a [Flow]) -> Vec<&'a Flow> {
    flows
        .iter()
        .filter(|f| flushes.iter().any(|fl| matches(fl, f)))
        .collect()
}

/// Which families' tables `flushes` can touch, for a proxier of `family`: a service address
/// or an endpoint names its family; a bare node port belongs to the proxier's own family
/// (one proxier per family, each flushing its own node ports).
pub fn families(family: IpFamily, flushes: &[ConntrackFlush]) -> Vec<IpFamily> {
    let of = |f: &ConntrackFlush| match (&f.target, &f.endpoint) {
        (ConntrackTarget::Ip(ip, _), _) => IpFamily::of(ip),
        (ConntrackTarget::NodePort(_), Some(ep)) => IpFamily::of(&ep.ip()),
        (ConntrackTarget::NodePort(_), None) => family,
    };
    let mut out: Vec<IpFamily> = Vec::new();
    for f in flushes {
        let fam = of(f);
        if !out.contains(&fam) {
            out.push(fam);
        }
    }
    out
}

#[cfg(test)]
mod tests;

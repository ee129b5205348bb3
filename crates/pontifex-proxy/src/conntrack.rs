//! Stale UDP conntrack entries: the `conntrack -D` arguments for each [`ConntrackFlush`] the
//! model asks for, and how to read its answer. kube-proxy deletes these after a sync because
//! UDP has no connection teardown: a flow pinned by conntrack to an endpoint that went away
//! (or to a REJECT while a Service had no endpoints) would stay blackholed until the entry
//! times out.
//!
//! Matching, as kube-proxy's netlink filters do: the original destination (service address
//! and port, or any address with the node port) and, for a removed endpoint, the reply source
//! (the endpoint the flow was DNATed to). Running the command is the applier's job
//! ([`crate::apply::KernelApplier`]); this module is pure.

use std::net::IpAddr;

use crate::model::{ConntrackFlush, ConntrackTarget};

fn family_args(ip: &IpAddr, args: &mut Vec<String>) {
    // conntrack defaults to IPv4 and would not match IPv6 entries.
    if ip.is_ipv6() {
        args.extend(["-f".into(), "ipv6".into()]);
    }
}

/// The arguments of `conntrack` that delete the entries `f` names.
pub fn delete_args(f: &ConntrackFlush) -> Vec<String> {
    let mut args = vec!["-D".to_owned(), "-p".to_owned(), "udp".to_owned()];
    match &f.target {
        ConntrackTarget::Ip(ip, port) => {
            family_args(ip, &mut args);
            args.extend([
                "--orig-dst".into(),
                ip.to_string(),
                "--orig-port-dst".into(),
                port.to_string(),
            ]);
        }
        ConntrackTarget::NodePort(port) => {
            if let Some(ep) = &f.endpoint {
                family_args(&ep.ip(), &mut args);
            }
            args.extend(["--orig-port-dst".into(), port.to_string()]);
        }
    }
    if let Some(ep) = &f.endpoint {
        args.extend([
            "--reply-src".into(),
            ep.ip().to_string(),
            "--reply-port-src".into(),
            ep.port().to_string(),
        ]);
    }
    args
}

/// `conntrack -D` exits 1 when nothing matched; its stderr then says
/// "0 flow entries have been deleted", which is success for us.
pub fn nothing_deleted(stderr: &str) -> bool {
    stderr.contains(" 0 flow entries have been deleted")
}

#[cfg(test)]
mod tests;

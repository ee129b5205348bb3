//! Which pod CIDR each node gets: subnets of `--cluster-cidr` of `--node-cidr-mask-size`, lowest
//! free first. The used set is rebuilt from the nodes' own `spec.podCIDR(s)` every time, so a
//! restart changes nothing and a deleted node's subnet is free again.
//!
//! Not here: IPv6 or dual-stack, several cluster CIDRs, releasing a CIDR from a live node.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;

/// What the loop should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Set `spec.podCIDR` and `spec.podCIDRs` of `node`.
    Assign { node: String, cidr: Ipv4Net },
    /// Record CIDRNotAvailable on `node`: the cluster CIDR is full.
    Full { node: String },
}

/// The pod CIDR a node has (its first IPv4 one), if any.
pub(crate) fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidr
        .iter()
        .chain(spec.pod_cidrs.iter().flatten())
        .find_map(|c| c.parse::<Ipv4Net>().ok())
}

/// One action per node without a pod CIDR, in name order. `pending` holds assignments this process
/// made that the informer has not shown yet (node name → CIDR); `reported` the nodes already told
/// the range is full.
pub(crate) fn reconcile(
    cluster_cidr: Ipv4Net,
    mask: u8,
    nodes: &[Node],
    pending: &BTreeMap<String, Ipv4Net>,
    reported: &BTreeSet<String>,
) -> Vec<Action> {
    let mut used: BTreeSet<Ipv4Net> = nodes.iter().filter_map(pod_cidr).collect();
    let mut todo: Vec<String> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if pod_cidr(node).is_some() {
            continue;
        }
        match pending.get(&name) {
            Some(c) => {
                used.insert(*c);
            }
            None => todo.push(name),
        }
    }
    todo.sort();
    let mut free = cluster_cidr
        .subnets(mask)
        .into_iter()
        .flatten()
        .filter(|c| !used.iter().any(|u| u.contains(c) || c.contains(u)));
    let mut out = Vec::new();
    for node in todo {
        match free.next() {
            Some(cidr) => out.push(Action::Assign { node, cidr }),
            None if reported.contains(&node) => {}
            None => out.push(Action::Full { node }),
        }
    }
    out
}

#[cfg(test)]
mod tests;

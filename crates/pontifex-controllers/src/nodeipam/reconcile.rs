//! Which pod CIDRs each node gets: one subnet per cluster CIDR (one per IP family on a dual-stack
//! cluster, the primary's first), of that family's node mask size, lowest free first. The used set is
//! rebuilt from the nodes' own `spec.podCIDRs` every time, so a restart changes nothing and a deleted
//! node's subnets are free again.
//!
//! As kube-controller-manager's range allocator, a node that has pod CIDRs is never changed: a node
//! given one IPv4 CIDR before the cluster became dual-stack keeps exactly that one.
//!
//! Not here: several cluster CIDRs of one family, releasing a CIDR from a live node.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use pontifex_api::cidr::DualStackCidrs;

/// What the loop should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Set `spec.podCIDRs` of `node` to `cidrs` (one per cluster CIDR, in the same order) and
    /// `spec.podCIDR` to the first.
    Assign { node: String, cidrs: Vec<IpNet> },
    /// Record CIDRNotAvailable on `node`: a cluster CIDR is full.
    Full { node: String },
}

/// The pod CIDRs a node has (`spec.podCIDRs`, or the singular field of an old writer).
pub(crate) fn pod_cidrs(node: &Node) -> Vec<IpNet> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<IpNet> = spec
        .pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .filter_map(|c| c.parse::<IpNet>().ok())
        .map(|c| c.trunc())
        .collect();
    out.dedup();
    out
}

/// One action per node without a pod CIDR, in name order. `masks[i]` is the node mask size of
/// `cluster_cidrs`' i-th CIDR. `pending` holds assignments this process made that the informer has not
/// shown yet (node name → CIDRs); `reported` the nodes already told a range is full.
pub(crate) fn reconcile(
    cluster_cidrs: &DualStackCidrs,
    masks: &[u8],
    nodes: &[Node],
    pending: &BTreeMap<String, Vec<IpNet>>,
    reported: &BTreeSet<String>,
) -> Vec<Action> {
    let mut used: BTreeSet<IpNet> = nodes.iter().flat_map(pod_cidrs).collect();
    let mut todo: Vec<String> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        if !pod_cidrs(node).is_empty() {
            continue;
        }
        match pending.get(&name) {
            Some(c) => used.extend(c.iter().copied()),
            None => todo.push(name),
        }
    }
    todo.sort();
    let mut out = Vec::new();
    for node in todo {
        let picked: Option<Vec<IpNet>> = cluster_cidrs
            .iter()
            .zip(masks)
            .map(|(cluster, mask)| lowest_free(cluster, *mask, &used))
            .collect();
        match picked {
            Some(cidrs) => {
                used.extend(cidrs.iter().copied());
                out.push(Action::Assign { node, cidrs });
            }
            None if reported.contains(&node) => {}
            None => out.push(Action::Full { node }),
        }
    }
    out
}

/// The lowest subnet of `cluster` with prefix `mask` that meets no used CIDR.
fn lowest_free(cluster: IpNet, mask: u8, used: &BTreeSet<IpNet>) -> Option<IpNet> {
    cluster
        .subnets(mask)
        .ok()?
        .find(|c| !used.iter().any(|u| u.contains(c) || c.contains(u)))
}

#[cfg(test)]
mod tests;

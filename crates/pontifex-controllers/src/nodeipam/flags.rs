//! kube-controller-manager's node IPAM flags: `--cluster-cidr` (`validateCIDRs`), the node mask sizes
//! (`setNodeCIDRMaskSizes`) and the CIDR set's size limit, with upstream's error messages.

use ipnet::IpNet;
use pontifex_api::cidr::{DualStackCidrs, IpFamily};

/// `defaultNodeMaskCIDRIPv4`.
pub const DEFAULT_NODE_CIDR_MASK_SIZE_IPV4: u8 = 24;
/// `defaultNodeMaskCIDRIPv6`.
pub const DEFAULT_NODE_CIDR_MASK_SIZE_IPV6: u8 = 64;
/// `clusterSubnetMaxDiff`: an IPv6 CIDR set holds at most 2^16 node subnets.
const CLUSTER_SUBNET_MAX_DIFF: u8 = 16;

/// Why the node IPAM flags are refused; the messages are kube-controller-manager's where it has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeIpamFlagError {
    /// An entry of `--cluster-cidr` is not a CIDR.
    #[error("failed to parse cidr value:{0:?} with error:invalid CIDR address: {0}")]
    Invalid(String),
    /// Two or more CIDRs, not one per family.
    #[error(
        "len of ClusterCIDRs=={0} and they are not configured as dual stack (at least one from each IPFamily"
    )]
    NotDualStack(usize),
    /// More than two CIDRs.
    #[error("length of clusterCIDRs is:{0} more than max allowed of 2")]
    TooMany(usize),
    /// `--node-cidr-mask-size` on a dual-stack cluster.
    #[error("usage of --node-cidr-mask-size is not allowed with dual-stack clusters")]
    SingleMaskOnDualStack,
    /// `--node-cidr-mask-size` together with a per-family one.
    #[error(
        "usage of --node-cidr-mask-size-ipv4 and --node-cidr-mask-size-ipv6 is not allowed if --node-cidr-mask-size is set. For dual-stack clusters please unset it and use IPFamily specific flags"
    )]
    MixedMasks,
    /// `--node-cidr-mask-size-ipv4` on an IPv6-only cluster.
    #[error("usage of --node-cidr-mask-size-ipv4 is not allowed for a single-stack IPv6 cluster")]
    Ipv4MaskOnIpv6,
    /// `--node-cidr-mask-size-ipv6` on an IPv4-only cluster.
    #[error("usage of --node-cidr-mask-size-ipv6 is not allowed for a single-stack IPv4 cluster")]
    Ipv6MaskOnIpv4,
    /// An IPv6 node mask more than 16 bits longer than its cluster CIDR's (upstream's CIDR set limit).
    #[error("New CIDR set failed; the node CIDR size is too big")]
    SubnetTooBig,
    /// A node mask shorter than its cluster CIDR's or longer than the address (pontifex's own check:
    /// upstream has none and misbehaves).
    #[error("node CIDR mask size /{mask} does not fit in the cluster CIDR {cidr}")]
    MaskOutOfRange {
        /// The cluster CIDR.
        cidr: IpNet,
        /// The node mask size.
        mask: u8,
    },
}

/// Parse `--cluster-cidr`: one CIDR, or two of different IP families (comma-separated, primary first).
pub fn parse_cluster_cidr(value: &str) -> Result<DualStackCidrs, NodeIpamFlagError> {
    let entries: Vec<&str> = value.trim().split(',').collect();
    let mut nets = Vec::with_capacity(entries.len());
    for e in &entries {
        let net = e
            .parse::<IpNet>()
            .map_err(|_| NodeIpamFlagError::Invalid((*e).to_owned()))?;
        nets.push(net.trunc());
    }
    let has = |f: IpFamily| nets.iter().any(|n| IpFamily::of_net(n) == f);
    if nets.len() > 1 && !(has(IpFamily::V4) && has(IpFamily::V6)) {
        return Err(NodeIpamFlagError::NotDualStack(nets.len()));
    }
    if nets.len() > 2 {
        return Err(NodeIpamFlagError::TooMany(nets.len()));
    }
    DualStackCidrs::new(nets[0], nets.get(1).copied())
        .map_err(|_| NodeIpamFlagError::NotDualStack(nets.len()))
}

/// The node mask size of each cluster CIDR, in the same order, from `--node-cidr-mask-size` (`single`)
/// and `--node-cidr-mask-size-ipv4`/`-ipv6` (`None` = not set), as upstream chooses them.
pub(crate) fn node_cidr_mask_sizes(
    cluster: &DualStackCidrs,
    single: Option<u8>,
    ipv4: Option<u8>,
    ipv6: Option<u8>,
) -> Result<Vec<u8>, NodeIpamFlagError> {
    let (mut v4, mut v6) = (
        DEFAULT_NODE_CIDR_MASK_SIZE_IPV4,
        DEFAULT_NODE_CIDR_MASK_SIZE_IPV6,
    );
    if cluster.is_dual_stack() {
        if single.is_some() {
            return Err(NodeIpamFlagError::SingleMaskOnDualStack);
        }
        v4 = ipv4.unwrap_or(v4);
        v6 = ipv6.unwrap_or(v6);
    } else if let Some(mask) = single {
        if ipv4.is_some() || ipv6.is_some() {
            return Err(NodeIpamFlagError::MixedMasks);
        }
        (v4, v6) = (mask, mask);
    } else {
        let ipv6_only = cluster.primary_family() == IpFamily::V6;
        if let Some(m) = ipv4 {
            if ipv6_only {
                return Err(NodeIpamFlagError::Ipv4MaskOnIpv6);
            }
            v4 = m;
        }
        if let Some(m) = ipv6 {
            if !ipv6_only {
                return Err(NodeIpamFlagError::Ipv6MaskOnIpv4);
            }
            v6 = m;
        }
    }
    cluster
        .iter()
        .map(|cidr| {
            let mask = match cidr {
                IpNet::V4(_) => v4,
                IpNet::V6(_) => v6,
            };
            if mask < cidr.prefix_len() || mask > cidr.max_prefix_len() {
                return Err(NodeIpamFlagError::MaskOutOfRange { cidr, mask });
            }
            if matches!(cidr, IpNet::V6(_)) && mask - cidr.prefix_len() > CLUSTER_SUBNET_MAX_DIFF {
                return Err(NodeIpamFlagError::SubnetTooBig);
            }
            Ok(mask)
        })
        .collect()
}

#[cfg(test)]
mod tests;

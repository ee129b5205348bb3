//! Dual-stack CIDR lists: the value of flags such as kube-apiserver's `--service-cluster-ip-range` and
//! kube-controller-manager's `--cluster-cidr`, which take one CIDR or a comma-separated pair, one per IP
//! family, the first being the cluster's primary family.
//!
//! This module holds the shape (at most one CIDR per family, primary first) and the parsing of the list
//! itself. What each flag additionally demands (size limits, its own error wording) is checked by the
//! component that owns the flag, because kube-apiserver and kube-controller-manager word their errors
//! differently.

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// An IP family, as a Service's `spec.ipFamilies` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// `IPv4`.
    V4,
    /// `IPv6`.
    V6,
}

impl IpFamily {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Self {
        if ip.is_ipv6() {
            IpFamily::V6
        } else {
            IpFamily::V4
        }
    }

    /// The family of a network.
    pub fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => IpFamily::V4,
            IpNet::V6(_) => IpFamily::V6,
        }
    }

    /// The API's spelling: `IPv4` or `IPv6`.
    pub fn as_str(self) -> &'static str {
        match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        }
    }

    /// Parse the API's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "IPv4" => Some(IpFamily::V4),
            "IPv6" => Some(IpFamily::V6),
            _ => None,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            IpFamily::V4 => IpFamily::V6,
            IpFamily::V6 => IpFamily::V4,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One CIDR, or two of different IP families. The first (primary) decides the family of single-stack
/// objects that do not name one.
///
/// Invariant: `secondary`, when present, is of the other family than `primary`; both are truncated to
/// their network address (as Go's `net.ParseCIDR` returns them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DualStackCidrs {
    primary: IpNet,
    secondary: Option<IpNet>,
}

/// Why a CIDR list is not one or two CIDRs of different families.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrListError {
    /// The list is empty.
    #[error("no CIDR given")]
    Empty,
    /// The list has more than two entries.
    #[error("{count} CIDRs given; at most two (one per IP family) are allowed")]
    TooMany {
        /// How many entries the list had.
        count: usize,
    },
    /// An entry is not a CIDR.
    #[error("{entry:?} (entry {index}) is not a valid CIDR")]
    Invalid {
        /// The entry's position, from 0.
        index: usize,
        /// The entry as written.
        entry: String,
    },
    /// Both entries are of the same family.
    #[error("{0} and {1} are of the same IP family")]
    SameFamily(IpNet, IpNet),
}

impl DualStackCidrs {
    /// A single-stack list.
    pub fn single(net: IpNet) -> Self {
        DualStackCidrs {
            primary: net.trunc(),
            secondary: None,
        }
    }

    /// A list of one or two CIDRs; two must be of different families.
    pub fn new(primary: IpNet, secondary: Option<IpNet>) -> Result<Self, CidrListError> {
        if let Some(s) = secondary
            && IpFamily::of_net(&s) == IpFamily::of_net(&primary)
        {
            return Err(CidrListError::SameFamily(primary, s));
        }
        Ok(DualStackCidrs {
            primary: primary.trunc(),
            secondary: secondary.map(|s| s.trunc()),
        })
    }

    /// Split a comma-separated list into CIDRs, without checking families or count (flag-specific
    /// checks need the raw entries, with the positions of bad ones).
    pub fn split(list: &str) -> Result<Vec<IpNet>, CidrListError> {
        list.split(',')
            .enumerate()
            .map(|(index, entry)| {
                entry
                    .trim()
                    .parse::<IpNet>()
                    .map(|n| n.trunc())
                    .map_err(|_| CidrListError::Invalid {
                        index,
                        entry: entry.to_owned(),
                    })
            })
            .collect()
    }

    /// The primary CIDR.
    pub fn primary(&self) -> IpNet {
        self.primary
    }

    /// The secondary CIDR, on a dual-stack list.
    pub fn secondary(&self) -> Option<IpNet> {
        self.secondary
    }

    /// The primary family.
    pub fn primary_family(&self) -> IpFamily {
        IpFamily::of_net(&self.primary)
    }

    /// Whether there is one CIDR per family.
    pub fn is_dual_stack(&self) -> bool {
        self.secondary.is_some()
    }

    /// The CIDR of one family, if the list has it.
    pub fn get(&self, family: IpFamily) -> Option<IpNet> {
        self.iter().find(|n| IpFamily::of_net(n) == family)
    }

    /// The IPv4 CIDR, primary or secondary.
    pub fn ipv4(&self) -> Option<Ipv4Net> {
        self.iter().find_map(|n| match n {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
    }

    /// The IPv6 CIDR, primary or secondary.
    pub fn ipv6(&self) -> Option<Ipv6Net> {
        self.iter().find_map(|n| match n {
            IpNet::V6(v6) => Some(v6),
            IpNet::V4(_) => None,
        })
    }

    /// The CIDRs, primary first.
    pub fn iter(&self) -> impl Iterator<Item = IpNet> + '_ {
        std::iter::once(self.primary).chain(self.secondary)
    }

    /// The families, primary first.
    pub fn families(&self) -> impl Iterator<Item = IpFamily> + '_ {
        self.iter().map(|n| IpFamily::of_net(&n))
    }
}

impl From<Ipv4Net> for DualStackCidrs {
    fn from(net: Ipv4Net) -> Self {
        DualStackCidrs::single(IpNet::V4(net))
    }
}

impl From<Ipv6Net> for DualStackCidrs {
    fn from(net: Ipv6Net) -> Self {
        DualStackCidrs::single(IpNet::V6(net))
    }
}

impl From<IpNet> for DualStackCidrs {
    fn from(net: IpNet) -> Self {
        DualStackCidrs::single(net)
    }
}

/// The flag syntax: `10.96.0.0/12` or `10.96.0.0/12,fd00:10:96::/108`.
impl fmt::Display for DualStackCidrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.primary)?;
        if let Some(s) = self.secondary {
            write!(f, ",{s}")?;
        }
        Ok(())
    }
}

/// Parses the flag syntax with generic errors; components with flag-specific wording parse with
/// [`DualStackCidrs::split`] and their own checks.
impl std::str::FromStr for DualStackCidrs {
    type Err = CidrListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(CidrListError::Empty);
        }
        let nets = DualStackCidrs::split(s)?;
        match nets.as_slice() {
            [one] => Ok(DualStackCidrs::single(*one)),
            [a, b] => DualStackCidrs::new(*a, Some(*b)),
            _ => Err(CidrListError::TooMany { count: nets.len() }),
        }
    }
}

#[cfg(test)]
mod tests;

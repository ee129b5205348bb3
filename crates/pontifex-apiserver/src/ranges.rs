//! `--service-cluster-ip-range`: parsing and checking the flag as kube-apiserver does
//! (`getServiceIPAndRanges` at completion, then `validateClusterIPFlags`), with its error messages.
//!
//! Not here: the allocation itself (`admission`).

use ipnet::IpNet;
use pontifex_api::cidr::{DualStackCidrs, IpFamily};

/// kube-apiserver's default range when the flag is empty.
pub const DEFAULT_SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";

/// A range may have at most this many host bits (`maxCIDRBits`): it is kept as a bitmap in the store.
const MAX_CIDR_BITS: u8 = 20;

/// Why a `--service-cluster-ip-range` value is refused; the messages are kube-apiserver's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceRangeError {
    /// The first entry is not a CIDR.
    #[error("service-cluster-ip-range[0] is not a valid cidr")]
    PrimaryInvalid,
    /// The second entry is not a CIDR.
    #[error("service-cluster-ip-range[1] is not an ip net")]
    SecondaryInvalid,
    /// The primary range has fewer than 8 addresses.
    #[error(
        "error determining service IP ranges for primary service cidr: the service cluster IP range must be at least 8 IP addresses"
    )]
    PrimaryTooSmall,
    /// More than two entries.
    #[error("--service-cluster-ip-range must not contain more than two entries")]
    TooMany,
    /// A range has more than 2^20 addresses (`flag` is `--service-cluster-ip-range` for the primary,
    /// `--service-cluster-ip-range[1]` for the secondary).
    #[error(
        "specified {flag} is too large; for {bits}-bit addresses, the mask must be >= {min_mask}"
    )]
    TooLarge {
        /// The flag as upstream names it.
        flag: &'static str,
        /// 32 or 128.
        bits: u8,
        /// The smallest prefix length allowed.
        min_mask: u8,
    },
    /// Both entries are of one IP family.
    #[error(
        "--service-cluster-ip-range[0] and --service-cluster-ip-range[1] must be of different IP family"
    )]
    SameFamily,
}

/// Parse a `--service-cluster-ip-range` value: one CIDR, or two (comma-separated) of different IP
/// families, the first being the primary. Empty means the default range.
pub fn parse_service_cluster_ip_range(value: &str) -> Result<DualStackCidrs, ServiceRangeError> {
    let value = if value.trim().is_empty() {
        DEFAULT_SERVICE_CLUSTER_IP_RANGE
    } else {
        value
    };
    let entries: Vec<&str> = value.split(',').collect();
    // Completion: only the first two entries are parsed.
    let primary = parse_cidr(entries[0]).ok_or(ServiceRangeError::PrimaryInvalid)?;
    let host_bits = primary.max_prefix_len() - primary.prefix_len();
    if host_bits < 3 {
        return Err(ServiceRangeError::PrimaryTooSmall);
    }
    let secondary = match entries.get(1) {
        Some(e) => Some(parse_cidr(e).ok_or(ServiceRangeError::SecondaryInvalid)?),
        None => None,
    };
    // Validation.
    if entries.len() > 2 {
        return Err(ServiceRangeError::TooMany);
    }
    check_size(primary, "--service-cluster-ip-range")?;
    if let Some(secondary) = secondary {
        if IpFamily::of_net(&secondary) == IpFamily::of_net(&primary) {
            return Err(ServiceRangeError::SameFamily);
        }
        check_size(secondary, "--service-cluster-ip-range[1]")?;
    }
    DualStackCidrs::new(primary, secondary).map_err(|_| ServiceRangeError::SameFamily)
}

/// Go's `ParseCIDR` keeps the network of the CIDR; surrounding blanks are not accepted either.
fn parse_cidr(entry: &str) -> Option<IpNet> {
    entry.parse::<IpNet>().ok().map(|n| n.trunc())
}

fn check_size(net: IpNet, flag: &'static str) -> Result<(), ServiceRangeError> {
    let bits = net.max_prefix_len();
    if bits - net.prefix_len() > MAX_CIDR_BITS {
        return Err(ServiceRangeError::TooLarge {
            flag,
            bits,
            min_mask: bits - MAX_CIDR_BITS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;

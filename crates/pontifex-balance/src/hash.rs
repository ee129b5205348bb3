//! Hash functions and table sizes of the hashing schedulers (`sh`, `dh`, `mh`).
//!
//! `sh` and `dh` use the kernel's own bucket functions (multiplicative hashing of the address folded to
//! 32 bits), so a client lands in the same bucket number as under IPVS. `mh` uses a fixed 64-bit mixer
//! instead of the kernel's hsiphash: the table is as balanced and as stable, but not bit-identical.

use std::net::IpAddr;

/// Buckets of the `sh` and `dh` tables (IPVS's `CONFIG_IP_VS_SH_TAB_BITS=8` / `IP_VS_DH_TAB_BITS=8`).
pub const SH_TABLE_SIZE: usize = 256;

/// Slots of the Maglev lookup table: IPVS's default (`CONFIG_IP_VS_MH_TAB_INDEX=12` selects the fifth
/// of its primes 251, 509, 1021, 2039, **4093**, …). Must be prime so every skip visits every slot.
pub const MH_TABLE_SIZE: usize = 4093;

/// IPVS's `IP_VS_MH_TAB_BITS` (`CONFIG_IP_VS_MH_TAB_INDEX / 2`): weights are shifted down so that
/// `max_weight / gcd` fits in this many bits, keeping one endpoint from needing more slots than exist.
pub(crate) const MH_TABLE_BITS: u32 = 6;

/// The kernel's `GOLDEN_RATIO_32` used by `hash_32`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// An address folded to 32 bits in host order, as IPVS does (IPv6: XOR of the four words).
pub(crate) fn fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            (0..4).fold(0u32, |acc, i| {
                acc ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// `sh` bucket of (address, port) at probe `offset`: `(offset + hash_32(port + addr, 8)) & 255`.
pub(crate) fn sh_bucket(ip: IpAddr, port: u16, offset: usize) -> usize {
    let v = u32::from(port).wrapping_add(fold(ip));
    let h = (v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - 8)) as usize;
    (offset + h) & (SH_TABLE_SIZE - 1)
}

/// `dh` bucket of a destination address: `(addr * 2654435761) & 255`.
pub(crate) fn dh_bucket(ip: IpAddr) -> usize {
    (fold(ip).wrapping_mul(2_654_435_761) as usize) & (SH_TABLE_SIZE - 1)
}

/// Seeds of the two Maglev hashes (offset and skip), fixed so that every proxy replica builds the same
/// table for the same endpoint list — the point of consistent hashing across nodes.
pub(crate) const MH_SEED_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;
pub(crate) const MH_SEED_SKIP: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// splitmix64's finaliser: a bijective mixer with full avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded 64-bit hash of (address, port, offset) for Maglev.
pub(crate) fn mh_hash(seed: u64, ip: IpAddr, port: u16, offset: u32) -> u64 {
    let bits: u128 = match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        // Tag IPv6 so that ::a.b.c.d and a.b.c.d differ.
        IpAddr::V6(v6) => u128::from(v6) ^ (1u128 << 127),
    };
    let mut h = mix64(seed ^ (u64::from(port) << 32) ^ u64::from(offset));
    h = mix64(h ^ (bits as u64));
    mix64(h ^ ((bits >> 64) as u64))
}

/// Greatest common divisor (`gcd(0, x) = x`).
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

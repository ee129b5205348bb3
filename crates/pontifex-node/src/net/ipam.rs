//! Host-local IPAM, after CNI's `host-local` plugin: pod addresses from one of the node's podCIDRs (IPv4
//! or IPv6), one file per allocated address in a directory.
//!
//! Layout of the directory (host-local's own):
//! - `<ip>` (e.g. `10.244.1.7`): the allocation; its content is the owner id (the pod's sandbox id).
//! - `last_reserved_ip.<n>`: the last address handed out from range set `n` (host-local numbers its
//!   range sets in configuration order; here IPv4 is `0` and IPv6 `1`, so a dual-stack node keeps its
//!   IPv4 state exactly where a single-stack one has it). The next search starts after it and wraps
//!   around (round robin), so an address just freed is not handed out again at once (a late packet or a
//!   stale endpoint for the old pod does not reach the new one).
//!
//! A dual-stack node opens one [`Ipam`] per podCIDR on the same directory: each sees only the
//! allocation files of its own family, and an owner holds one address of each.
//!
//! Exclusivity: an allocation file appears with its content already written, by a hard link from a private
//! temporary file; `link(2)` fails with EEXIST if the name exists, which gives the same guarantee as
//! `O_CREAT|O_EXCL` (two allocators, in one process or two, never both win an address), and a crash can
//! never leave an allocation without its owner. Files are synced before an address is returned, so an
//! address held before a crash is still held after it.
//!
//! The range: every address of the podCIDR except the network address, the gateway (the first host,
//! `.1` / `::1`, which the bridge takes) and, for IPv4 only, the broadcast address (host-local's
//! `lastIP`: IPv6 has no broadcast, so the all-ones address is a pod's like any other).
//!
//! What it does not do: several ranges per family, or reserved sub-ranges.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::IpNet;

/// The file that remembers the last address handed out from a family's range (host-local's name:
/// range set 0 for IPv4, 1 for IPv6).
fn last_reserved_file(cidr: IpNet) -> &'static str {
    match cidr {
        IpNet::V4(_) => "last_reserved_ip.0",
        IpNet::V6(_) => "last_reserved_ip.1",
    }
}

/// An address as a number (IPv4 in the low 32 bits), for range arithmetic on both families.
fn num(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of family `like` numbered `n` (`n` must fit the family).
fn addr_like(like: IpNet, n: u128) -> IpAddr {
    match like {
        IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// An IPAM operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The podCIDR has no room for a gateway and a pod (a prefix longer than /30).
    #[error("podCIDR {0} is too small for a gateway and pods")]
    RangeTooSmall(IpNet),
    /// Every address of the range is allocated.
    #[error("no free address left in {0}")]
    Exhausted(IpNet),
    /// The owner id is empty or has a line break (it is stored as a file's content).
    #[error("invalid owner id {0:?}")]
    InvalidOwner(String),
    /// Reading or writing the allocation directory failed.
    #[error("IPAM store {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// One allocated address and its owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allocation {
    /// The pod address.
    pub ip: IpAddr,
    /// Who holds it (the id given to [`Ipam::allocate`]).
    pub owner: String,
}

/// The usable addresses of a podCIDR as numbers: `(first, last)` inclusive, skipping network, gateway
/// and (IPv4) broadcast.
pub(crate) fn usable_range(cidr: IpNet) -> Result<(u128, u128), IpamError> {
    let (max_len, last) = match cidr {
        IpNet::V4(n) => (30, u128::from(u32::from(n.broadcast())) - 1),
        IpNet::V6(n) => (126, u128::from(n.broadcast())),
    };
    if cidr.prefix_len() > max_len {
        return Err(IpamError::RangeTooSmall(cidr));
    }
    Ok((num(cidr.network()) + 2, last))
}

/// The gateway of a podCIDR: its first host address (the bridge's address, `.1` or `::1`).
pub fn gateway(cidr: IpNet) -> IpAddr {
    addr_like(cidr, num(cidr.network()) + 1)
}

/// The order in which addresses are tried: starting right after `last` (when it lies in the range) and
/// wrapping around, every usable address exactly once; from the first usable address otherwise.
pub(crate) fn candidates(
    cidr: IpNet,
    last: Option<IpAddr>,
) -> Result<impl Iterator<Item = IpAddr>, IpamError> {
    let (first, end) = usable_range(cidr)?;
    let size = end - first + 1;
    // A last address of the other family is "not in the range" (its number may be).
    let start = match last
        .filter(|l| l.is_ipv4() == cidr.addr().is_ipv4())
        .map(num)
    {
        Some(l) if (first..=end).contains(&l) => (l - first + 1) % size,
        _ => 0,
    };
    Ok((0..size).map(move |i| addr_like(cidr, first + (start + i) % size)))
}

/// Pick the next free address: the first candidate not in `taken`.
pub(crate) fn pick(
    cidr: IpNet,
    last: Option<IpAddr>,
    taken: &HashSet<IpAddr>,
) -> Result<IpAddr, IpamError> {
    candidates(cidr, last)?
        .find(|ip| !taken.contains(ip))
        .ok_or(IpamError::Exhausted(cidr))
}

/// The allocations whose owner is not live (what garbage collection frees).
pub(crate) fn orphans<'a>(allocs: &'a [Allocation], live: &HashSet<String>) -> Vec<&'a Allocation> {
    allocs.iter().filter(|a| !live.contains(&a.owner)).collect()
}

/// A host-local allocator over one directory and one podCIDR.
#[derive(Debug)]
pub struct Ipam {
    dir: PathBuf,
    cidr: IpNet,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Ipam {
    /// Open (creating it if needed) the allocation directory `dir` for `pod_cidr` (normalised to its
    /// network). Allocations already in the directory are kept.
    pub fn open(dir: impl Into<PathBuf>, pod_cidr: impl Into<IpNet>) -> Result<Self, IpamError> {
        let dir = dir.into();
        let cidr = pod_cidr.into().trunc();
        usable_range(cidr)?;
        fs::create_dir_all(&dir).map_err(|source| IpamError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir, cidr })
    }

    /// The podCIDR.
    pub fn cidr(&self) -> IpNet {
        self.cidr
    }

    /// The gateway address (`.1` / `::1`), which is never allocated.
    pub fn gateway(&self) -> IpAddr {
        gateway(self.cidr)
    }

    fn io(&self, path: &Path) -> impl FnOnce(io::Error) -> IpamError {
        let path = path.to_owned();
        move |source| IpamError::Io { path, source }
    }

    /// Allocate an address for `owner`. If `owner` already holds one, that address is returned again (a
    /// retried sandbox set-up must not leak a second address).
    pub fn allocate(&self, owner: &str) -> Result<IpAddr, IpamError> {
        if owner.is_empty() || owner.contains(['\n', '\r', '\0']) {
            return Err(IpamError::InvalidOwner(owner.to_owned()));
        }
        let current = self.list()?;
        if let Some(a) = current.iter().find(|a| a.owner == owner) {
            return Ok(a.ip);
        }
        let mut taken: HashSet<IpAddr> = current.iter().map(|a| a.ip).collect();
        // The owner file is written once, then linked under each candidate name until one is free.
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = fs::File::create(&tmp).map_err(self.io(&tmp))?;
            f.write_all(owner.as_bytes()).map_err(self.io(&tmp))?;
            f.sync_all().map_err(self.io(&tmp))?;
            let last = self.last_reserved();
            loop {
                let ip = pick(self.cidr, last, &taken)?;
                let target = self.dir.join(ip.to_string());
                match fs::hard_link(&tmp, &target) {
                    Ok(()) => {
                        self.sync_dir()?;
                        self.set_last_reserved(ip);
                        return Ok(ip);
                    }
                    // Another allocator took it between our listing and now: try the next one.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        taken.insert(ip);
                    }
                    Err(e) => return Err(self.io(&target)(e)),
                }
            }
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Release every address of this family held by `owner`; returns them (empty if it held none).
    pub fn release(&self, owner: &str) -> Result<Vec<IpAddr>, IpamError> {
        let mut freed = Vec::new();
        for a in self.list()? {
            if a.owner == owner {
                self.remove(a.ip)?;
                freed.push(a.ip);
            }
        }
        if !freed.is_empty() {
            self.sync_dir()?;
        }
        Ok(freed)
    }

    /// Every allocation of this IPAM's family (inside its podCIDR or not: the podCIDR may have
    /// changed since), sorted by address.
    pub fn list(&self) -> Result<Vec<Allocation>, IpamError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(self.io(&self.dir))? {
            let entry = entry.map_err(self.io(&self.dir))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<IpAddr>().ok())
                .filter(|ip| ip.is_ipv4() == self.cidr.addr().is_ipv4())
            else {
                continue;
            };
            let owner = match fs::read_to_string(entry.path()) {
                Ok(o) => o.lines().next().unwrap_or("").trim().to_owned(),
                // Released concurrently.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&entry.path())(e)),
            };
            out.push(Allocation { ip, owner });
        }
        out.sort();
        Ok(out)
    }

    /// Free every allocation whose owner is not in `live` (after a crash: sandboxes that no longer exist).
    /// Returns what was freed. Run it when no allocation for a live owner can be in flight (at start-up,
    /// after listing the sandboxes), or a just-allocated owner not yet in `live` would lose its address.
    pub fn gc(&self, live: &HashSet<String>) -> Result<Vec<Allocation>, IpamError> {
        let all = self.list()?;
        let dead: Vec<Allocation> = orphans(&all, live).into_iter().cloned().collect();
        for a in &dead {
            self.remove(a.ip)?;
        }
        if !dead.is_empty() {
            self.sync_dir()?;
        }
        Ok(dead)
    }

    fn remove(&self, ip: IpAddr) -> Result<(), IpamError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&path)(e)),
        }
    }

    fn last_reserved(&self) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(last_reserved_file(self.cidr)))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A hint only (a lost update just moves the round-robin start), so it is written without syncing.
    fn set_last_reserved(&self, ip: IpAddr) {
        let path = self.dir.join(last_reserved_file(self.cidr));
        let tmp = self.dir.join(format!(
            ".last-{}-{}",
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        if fs::write(&tmp, ip.to_string()).is_ok() && fs::rename(&tmp, &path).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    fn sync_dir(&self) -> Result<(), IpamError> {
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.io(&self.dir))
    }
}

#[cfg(test)]
mod tests;

//! Scheduler names as `ipvsadm -s` spells them, and their parsing.

use std::fmt;
use std::str::FromStr;

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BalanceError {
    /// A scheduler name (annotation, flag) is not one of IPVS's names that pontifex implements.
    #[error("unknown scheduler {name:?}: expected one of rr, wrr, lc, wlc, sed, nq, sh, dh, mh")]
    UnknownScheduler {
        /// The name as given.
        name: String,
    },
}

/// One of IPVS's schedulers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SchedulerKind {
    /// Round robin: the next available endpoint after the last one chosen (kube-proxy's IPVS default).
    #[default]
    Rr,
    /// Weighted round robin: IPVS's interleaved cycle by decreasing current weight (step = gcd).
    Wrr,
    /// Least connection: smallest `active * 256 + inactive`.
    Lc,
    /// Weighted least connection: smallest `(active * 256 + inactive) / weight`.
    Wlc,
    /// Shortest expected delay: smallest `(active + 1) / weight`.
    Sed,
    /// Never queue: the first idle endpoint (no active connection), else as `sed`.
    Nq,
    /// Source hashing: a 256-bucket table indexed by a hash of the client address.
    Sh,
    /// Destination hashing: a 256-bucket table indexed by a hash of the destination address.
    Dh,
    /// Maglev hashing: a prime-sized lookup table filled from per-endpoint permutations.
    Mh,
}

impl SchedulerKind {
    /// Every scheduler, in the order of the error message.
    pub const ALL: [SchedulerKind; 9] = [
        SchedulerKind::Rr,
        SchedulerKind::Wrr,
        SchedulerKind::Lc,
        SchedulerKind::Wlc,
        SchedulerKind::Sed,
        SchedulerKind::Nq,
        SchedulerKind::Sh,
        SchedulerKind::Dh,
        SchedulerKind::Mh,
    ];

    /// The IPVS name (`ipvsadm -s <name>`, the `Scheduler` column of `ipvsadm -L`).
    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Rr => "rr",
            SchedulerKind::Wrr => "wrr",
            SchedulerKind::Lc => "lc",
            SchedulerKind::Wlc => "wlc",
            SchedulerKind::Sed => "sed",
            SchedulerKind::Nq => "nq",
            SchedulerKind::Sh => "sh",
            SchedulerKind::Dh => "dh",
            SchedulerKind::Mh => "mh",
        }
    }
}

impl fmt::Display for SchedulerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedulerKind {
    type Err = BalanceError;

    /// Exact, lower-case names as IPVS takes them; surrounding blanks are tolerated because the value
    /// usually comes from an annotation typed by a person.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        SchedulerKind::ALL
            .into_iter()
            .find(|k| k.name() == trimmed)
            .ok_or_else(|| BalanceError::UnknownScheduler { name: s.to_owned() })
    }
}

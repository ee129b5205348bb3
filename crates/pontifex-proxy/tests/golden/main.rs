//! Golden tests against kube-proxy's own expected rulesets (data in this directory, transcribed
//! from upstream's unit tests; see README.md here).

mod equivalence;
mod fixtures;
mod iptables;
mod nftables;

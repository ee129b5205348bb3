//! Getting rendered rules into the kernel: the [`Applier`] trait (apply an `nft -f`
//! transaction, a batch of set elements over netlink, or an `iptables-restore --noflush`
//! input, read back what our own table or chains hold, ensure the jumps from the built-in
//! chains, delete conntrack entries), the real
//! [`KernelApplier`] that runs `nft`, `iptables-restore` and `iptables` inside a named network
//! namespace (`ip netns exec NAME …`) or the current one and speaks netlink there (set elements,
//! conntrack), and [`FakeApplier`] for tests.
//!
//! Every command gets its arguments as an argv (no shell), and its input on stdin; nothing
//! from an object reaches an argument except addresses and ports the model already parsed.
//! Read-backs look only at our own table (`nft -j list table ip pontifex`, JSON) or at our own
//! chain declarations in `iptables-save -t nat`.
//!
//! Not here: deciding what to apply (the renderers and [`crate::sync`]), the netlink wire format
//! ([`crate::nfnetlink`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::conntrack;
use crate::iptables::{IptablesConfig, is_service_chain};
use crate::model::{ConntrackFlush, IpFamily};
use crate::nfnetlink::conntrack::{Flow, IPPROTO_UDP};
use crate::nfnetlink::{ElementOp, NetlinkError, NfSocket, nfproto};
use crate::nftables::NftObjects;

/// Why talking to the kernel failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The program could not be started (not installed, no permission).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The program ran and exited unsuccessfully (for `nft`/`iptables-restore`: the kernel
    /// refused the transaction, nothing was applied).
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A read-back printed something we could not understand.
    #[error("cannot understand the output of {program}: {detail}")]
    Parse {
        /// The program.
        program: String,
        /// What was wrong.
        detail: String,
    },
    /// An element batch sent over netlink failed (nothing of it was applied).
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
    /// The network namespace name has characters `ip netns` does not accept.
    #[error("invalid network namespace name {0:?}")]
    InvalidNetns(String),
    /// A fake applier was told to fail.
    #[error("injected failure")]
    Injected,
}

/// A jump from a built-in chain to one of ours, which the restore input does not carry
/// (kube-proxy's `iptablesJumpChains`): ensured with `-C` and prepended with `-I` when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpRule {
    /// `filter` or `nat`.
    pub table: &'static str,
    /// The built-in chain (`PREROUTING`, `INPUT`, …).
    pub from: &'static str,
    /// Our chain.
    pub to: &'static str,
    /// Match arguments before `-j`, comment included.
    pub args: Vec<&'static str>,
}

/// kube-proxy's jump rules for this configuration, in its order.
pub fn iptables_jump_rules(cfg: &IptablesConfig) -> Vec<JumpRule> {
    const NEW: [&str; 4] = ["-m", "conntrack", "--ctstate", "NEW"];
    let mut out = Vec::new();
    let mut add = |table, from: &[&'static str], to, ctnew: bool, comment: Option<&'static str>| {
        for f in from {
            let mut args: Vec<&'static str> = Vec::new();
            if ctnew {
                args.extend(NEW);
            }
            if let Some(c) = comment {
                args.extend(["-m", "comment", "--comment", c]);
            }
            out.push(JumpRule {
                table,
                from: f,
                to,
                args,
            });
        }
    };
    add(
        "filter",
        &["INPUT", "FORWARD"],
        "KUBE-EXTERNAL-SERVICES",
        true,
        Some("kubernetes externally-visible service portals"),
    );
    add(
        "filter",
        &["INPUT"],
        "KUBE-NODEPORTS",
        false,
        Some("kubernetes health check service ports"),
    );
    add(
        "filter",
        &["FORWARD", "OUTPUT"],
        "KUBE-SERVICES",
        true,
        Some("kubernetes service portals"),
    );
    add(
        "filter",
        &["FORWARD"],
        "KUBE-FORWARD",
        false,
        Some("kubernetes forwarding rules"),
    );
    add(
        "filter",
        &["INPUT", "OUTPUT", "FORWARD"],
        "KUBE-PROXY-FIREWALL",
        true,
        Some("kubernetes load balancer firewall"),
    );
    add(
        "nat",
        &["OUTPUT", "PREROUTING"],
        "KUBE-SERVICES",
        false,
        Some("kubernetes service portals"),
    );
    add(
        "nat",
        &["POSTROUTING"],
        "KUBE-POSTROUTING",
        false,
        Some("kubernetes postrouting rules"),
    );
    if cfg.family == IpFamily::V4 && cfg.localhost_node_ports {
        add("filter", &["INPUT", "OUTPUT"], "KUBE-FIREWALL", false, None);
    }
    out
}

/// The kernel side of a proxier. Implementations must apply each transaction atomically (all
/// or nothing), as `nft -f` and `iptables-restore` do.
pub trait Applier: Send {
    /// Applies one `nft -f` transaction.
    fn nft_apply(&mut self, transaction: &str) -> Result<(), ApplyError>;
    /// The chains and sets of table `family table` (`ip pontifex`), `None` when the table
    /// does not exist.
    fn nft_objects(&mut self, family: &str, table: &str) -> Result<Option<NftObjects>, ApplyError>;
    /// Adds and deletes elements of existing sets and maps of table `family table`, as one
    /// transaction sent over netlink (no `nft` process, no parsing).
    fn nft_elements(
        &mut self,
        family: IpFamily,
        table: &str,
        ops: &[ElementOp],
    ) -> Result<(), ApplyError>;
    /// Every element of set or map `set` of table `family table`, read over netlink.
    fn nft_list_elements(
        &mut self,
        family: IpFamily,
        table: &str,
        set: &str,
    ) -> Result<Vec<ElementOp>, ApplyError>;
    /// The elements of each of `sets` (in that order); an applier may read them in parallel.
    fn nft_list_sets(
        &mut self,
        family: IpFamily,
        table: &str,
        sets: &[&str],
    ) -> Result<Vec<Vec<ElementOp>>, ApplyError> {
        sets.iter()
            .map(|set| self.nft_list_elements(family, table, set))
            .collect()
    }
    /// Applies one `iptables-restore --noflush` input (`ip6tables-restore` for IPv6).
    fn iptables_restore(&mut self, family: IpFamily, input: &str) -> Result<(), ApplyError>;
    /// The per-service chains (`KUBE-SVC-`, `-SVL-`, `-EXT-`, `-FW-`, `-SEP-`) in the nat
    /// table now.
    fn iptables_nat_service_chains(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<String>, ApplyError>;
    /// Makes sure each jump exists (prepends the missing ones). Our chains must exist.
    fn ensure_iptables_jumps(
        &mut self,
        family: IpFamily,
        rules: &[JumpRule],
    ) -> Result<(), ApplyError>;
    /// Deletes the UDP conntrack entries `flushes` name ([`conntrack::matches`]) for a proxier
    /// of `family`; returns how many were deleted (none matching is success).
    fn conntrack_delete(
        &mut self,
        family: IpFamily,
        flushes: &[ConntrackFlush],
    ) -> Result<usize, ApplyError>;
}

/// Runs the real tools, in a network namespace or the current one.
#[derive(Debug, Clone, Default)]
pub struct KernelApplier {
    netns: Option<String>,
}

/// `ip netns` names: a file name under /run/netns; we accept a conservative subset.
fn valid_netns(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != ".."
}

impl KernelApplier {
    /// An applier for network namespace `netns` (as `ip netns` names it), or the current
    /// namespace with `None`.
    pub fn new(netns: Option<&str>) -> Result<Self, ApplyError> {
        if let Some(n) = netns
            && !valid_netns(n)
        {
            return Err(ApplyError::InvalidNetns(n.to_owned()));
        }
        Ok(KernelApplier {
            netns: netns.map(str::to_owned),
        })
    }

    /// The namespace this applier works in.
    pub fn netns(&self) -> Option<&str> {
        self.netns.as_deref()
    }

    /// Runs `program args…` (inside the namespace), feeding `stdin`, returning stdout.
    pub(crate) fn run(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<RunOutput, ApplyError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawn_err = |source| ApplyError::Spawn {
            program: program.to_owned(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_err)?;
        if let Some(input) = stdin {
            // Dropping the handle at the end of this block closes the pipe: the tool reads
            // to EOF before it commits.
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(input.as_bytes()).map_err(spawn_err)?;
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        Ok(RunOutput {
            success: out.status.success(),
            status: out.status.to_string(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn run_ok(
        &self,
        program: &str,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Result<String, ApplyError> {
        let out = self.run(program, args, stdin)?;
        if out.success {
            Ok(out.stdout)
        } else {
            Err(ApplyError::Failed {
                program: program.to_owned(),
                status: out.status,
                stderr: out.stderr.trim().to_owned(),
            })
        }
    }
}

/// What a command did.
#[derive(Debug)]
pub(crate) struct RunOutput {
    pub(crate) success: bool,
    pub(crate) status: String,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

fn tools(family: IpFamily) -> (&'static str, &'static str, &'static str) {
    match family {
        IpFamily::V4 => ("iptables", "iptables-restore", "iptables-save"),
        IpFamily::V6 => ("ip6tables", "ip6tables-restore", "ip6tables-save"),
    }
}

/// Whether `nft -j list tables` output names table `family table`.
pub(crate) fn nft_json_has_table(json: &str, family: &str, table: &str) -> Result<bool, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v["nftables"].as_array().ok_or("no \"nftables\" array")?;
    Ok(items.iter().any(|i| {
        i["table"]["family"].as_str() == Some(family) && i["table"]["name"].as_str() == Some(table)
    }))
}

/// Chain, set/map and named counter names in `nft -j list table` output.
pub(crate) fn nft_json_objects(json: &str) -> Result<NftObjects, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v["nftables"].as_array().ok_or("no \"nftables\" array")?;
    let mut out = NftObjects::default();
    for i in items {
        if let Some(n) = i["chain"]["name"].as_str() {
            out.chains.insert(n.to_owned());
        }
        for kind in ["set", "map"] {
            if let Some(n) = i[kind]["name"].as_str() {
                out.sets.insert(n.to_owned());
            }
        }
        if let Some(n) = i["counter"]["name"].as_str() {
            out.counters.insert(n.to_owned());
        }
    }
    Ok(out)
}

/// Our per-service chains declared in `iptables-save -t nat` output (`:NAME - [0:0]`).
pub(crate) fn iptables_save_service_chains(save: &str) -> BTreeSet<String> {
    save.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| is_service_chain(c))
        .map(str::to_owned)
        .collect()
}

impl Applier for KernelApplier {
    fn nft_apply(&mut self, transaction: &str) -> Result<(), ApplyError> {
        if transaction.trim().is_empty() {
            return Ok(());
        }
        self.run_ok("nft", &["-f", "-"], Some(transaction))
            .map(drop)
    }

    fn nft_elements(
        &mut self,
        family: IpFamily,
        table: &str,
        ops: &[ElementOp],
    ) -> Result<(), ApplyError> {
        if ops.is_empty() {
            return Ok(());
        }
        // A socket per batch: opening one (a thread entering the namespace) costs ~0.1 ms,
        // and an applier stays cheap to clone.
        let mut sock = NfSocket::open(self.netns.as_deref())?;
        Ok(sock.apply(nfproto(family), table, ops)?)
    }

    fn nft_list_elements(
        &mut self,
        family: IpFamily,
        table: &str,
        set: &str,
    ) -> Result<Vec<ElementOp>, ApplyError> {
        let mut sock = NfSocket::open(self.netns.as_deref())?;
        Ok(sock.list_elements(nfproto(family), table, set)?)
    }

    fn nft_list_sets(
        &mut self,
        family: IpFamily,
        table: &str,
        sets: &[&str],
    ) -> Result<Vec<Vec<ElementOp>>, ApplyError> {
        // Reading a big hash set back costs the kernel more than the socket (every piece of
        // the dump walks the set from its start), so two sets are read at once, each on its
        // own socket: the caller lists the biggest first, and each reader takes the next.
        let next = std::sync::atomic::AtomicUsize::new(0);
        let slots: Vec<std::sync::Mutex<Option<Vec<ElementOp>>>> =
            sets.iter().map(|_| std::sync::Mutex::new(None)).collect();
        let netns = self.netns.as_deref();
        let read = || -> Result<(), ApplyError> {
            let mut sock = NfSocket::open(netns)?;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(set) = sets.get(i) else {
                    return Ok(());
                };
                let els = sock.list_elements(nfproto(family), table, set)?;
                *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(els);
            }
        };
        std::thread::scope(|s| {
            let other = s.spawn(read);
            let mine = read();
            let theirs = other.join().unwrap_or_else(|_| {
                Err(ApplyError::Spawn {
                    program: "netlink reader".into(),
                    source: std::io::Error::other("the reading thread panicked"),
                })
            });
            mine.and(theirs)
        })?;
        Ok(slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or_default()
            })
            .collect())
    }

    fn nft_objects(&mut self, family: &str, table: &str) -> Result<Option<NftObjects>, ApplyError> {
        let parse = |detail: String| ApplyError::Parse {
            program: "nft".into(),
            detail,
        };
        let tables = self.run_ok("nft", &["-j", "list", "tables", family], None)?;
        if !nft_json_has_table(&tables, family, table).map_err(parse)? {
            return Ok(None);
        }
        // -t (terse): set contents are not listed; we only need names.
        let json = self.run_ok("nft", &["-j", "-t", "list", "table", family, table], None)?;
        nft_json_objects(&json).map(Some).map_err(parse)
    }

    fn iptables_restore(&mut self, family: IpFamily, input: &str) -> Result<(), ApplyError> {
        let (_, restore, _) = tools(family);
        self.run_ok(restore, &["-w", "--noflush"], Some(input))
            .map(drop)
    }

    fn iptables_nat_service_chains(
        &mut self,
        family: IpFamily,
    ) -> Result<BTreeSet<String>, ApplyError> {
        let (_, _, save) = tools(family);
        let out = self.run_ok(save, &["-t", "nat"], None)?;
        Ok(iptables_save_service_chains(&out))
    }

    fn ensure_iptables_jumps(
        &mut self,
        family: IpFamily,
        rules: &[JumpRule],
    ) -> Result<(), ApplyError> {
        let (bin, _, _) = tools(family);
        for r in rules {
            let mut args = vec!["-w", "-t", r.table, "-C", r.from];
            args.extend(&r.args);
            args.extend(["-j", r.to]);
            if self.run(bin, &args, None)?.success {
                continue;
            }
            args[3] = "-I";
            self.run_ok(bin, &args, None)?;
        }
        Ok(())
    }

    fn conntrack_delete(
        &mut self,
        family: IpFamily,
        flushes: &[ConntrackFlush],
    ) -> Result<usize, ApplyError> {
        if flushes.is_empty() {
            return Ok(0);
        }
        // One dump per family touched, matched here, then deletes by tuple and id: kube-proxy's
        // approach (one netlink round trip per filter would walk the whole table each time).
        let mut sock = NfSocket::open(self.netns.as_deref())?;
        let mut deleted = 0;
        for fam in conntrack::families(family, flushes) {
            let flows = sock.conntrack_flows(fam == IpFamily::V6, IPPROTO_UDP)?;
            let stale: Vec<Flow> = conntrack::select(flushes, &flows)
                .into_iter()
                .copied()
                .collect();
            deleted += sock.conntrack_delete(&stale)?;
        }
        Ok(deleted)
    }
}

/// One call a [`FakeApplier`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    /// `nft -f` with this transaction.
    Nft(String),
    /// A table listing.
    NftList,
    /// Element operations over netlink.
    NftElements(Vec<ElementOp>),
    /// A set's elements read back over netlink.
    NftListElements(String),
    /// `iptables-restore` with this input.
    IptablesRestore(String),
    /// An `iptables-save -t nat` read-back.
    IptablesSave,
    /// Jump rules ensured (how many).
    Jumps(usize),
    /// Conntrack deletions.
    Conntrack(Vec<ConntrackFlush>),
}

/// What a [`FakeApplier`] holds; tests read and set it through [`FakeApplier::state`].
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every call, in order.
    pub calls: Vec<FakeCall>,
    /// What `nft_objects` returns.
    pub nft_table: Option<NftObjects>,
    /// The elements the kernel holds per set: what `nft_elements` batches made of them (an
    /// `nft -f` transaction is not parsed, so its elements do not show here).
    pub nft_elements: BTreeMap<String, Vec<ElementOp>>,
    /// What `iptables_nat_service_chains` returns.
    pub iptables_chains: BTreeSet<String>,
    /// This many next apply calls (nft, netlink elements or iptables-restore) fail.
    pub fail_applies: usize,
    /// What each `conntrack_delete` reports as deleted.
    pub conntrack_deleted: usize,
}

/// An in-memory applier: records calls, fails on request. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct FakeApplier {
    state: Arc<Mutex<FakeState>>,
}

impl FakeApplier {
    /// The shared state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn apply(&self, call: FakeCall) -> Result<(), ApplyError> {
        let mut s = self.state();
        s.calls.push(call);
        if s.fail_applies > 0 {
            s.fail_applies -= 1;
            return Err(ApplyError::Injected);
        }
        Ok(())
    }
}

impl Applier for FakeApplier {
    fn nft_apply(&mut self, transaction: &str) -> Result<(), ApplyError> {
        self.apply(FakeCall::Nft(transaction.to_owned()))
    }

    fn nft_elements(&mut self, _: IpFamily, _: &str, ops: &[ElementOp]) -> Result<(), ApplyError> {
        self.apply(FakeCall::NftElements(ops.to_vec()))?;
        // One batch, applied in order, as the kernel does.
        let mut s = self.state();
        for op in ops {
            let held = s.nft_elements.entry(op.set.clone()).or_default();
            held.retain(|e| e.key != op.key);
            if op.add {
                held.push(op.clone());
            }
        }
        Ok(())
    }

    fn nft_list_elements(
        &mut self,
        _: IpFamily,
        _: &str,
        set: &str,
    ) -> Result<Vec<ElementOp>, ApplyError> {
        let mut s = self.state();
        s.calls.push(FakeCall::NftListElements(set.to_owned()));
        Ok(s.nft_elements.get(set).cloned().unwrap_or_default())
    }

    fn nft_objects(&mut self, _: &str, _: &str) -> Result<Option<NftObjects>, ApplyError> {
        let mut s = self.state();
        s.calls.push(FakeCall::NftList);
        Ok(s.nft_table.clone())
    }

    fn iptables_restore(&mut self, _: IpFamily, input: &str) -> Result<(), ApplyError> {
        self.apply(FakeCall::IptablesRestore(input.to_owned()))
    }

    fn iptables_nat_service_chains(&mut self, _: IpFamily) -> Result<BTreeSet<String>, ApplyError> {
        let mut s = self.state();
        s.calls.push(FakeCall::IptablesSave);
        Ok(s.iptables_chains.clone())
    }

    fn ensure_iptables_jumps(&mut self, _: IpFamily, rules: &[JumpRule]) -> Result<(), ApplyError> {
        self.state().calls.push(FakeCall::Jumps(rules.len()));
        Ok(())
    }

    fn conntrack_delete(
        &mut self,
        _: IpFamily,
        flushes: &[ConntrackFlush],
    ) -> Result<usize, ApplyError> {
        let mut s = self.state();
        s.calls.push(FakeCall::Conntrack(flushes.to_vec()));
        Ok(s.conntrack_deleted)
    }
}

#[cfg(test)]
mod tests;

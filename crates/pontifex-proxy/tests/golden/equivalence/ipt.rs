//! An evaluator of the `iptables-restore` input our iptables renderer emits (only the matches
//! and targets it uses), plus the jump rules from the built-in chains the applier prepends
//! (`iptables_jump_rules`). `-m statistic` and `-m recent --rcheck` are random or unknown, so
//! such a rule both matches and does not. Anything unknown panics.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddrV4;

use pontifex_proxy::apply::JumpRule;

use super::{Ctx, Flow, Hook, St, Tok, Verdict, net_contains, tokens};

/// `table → chain → rules` (each rule its argument words).
#[derive(Debug, Default)]
pub(crate) struct IptTables {
    tables: HashMap<String, HashMap<String, Vec<Vec<String>>>>,
}

fn words(line: &str) -> Vec<String> {
    tokens(line)
        .into_iter()
        .map(|t| match t {
            Tok::Word(w) | Tok::Str(w) => w,
            Tok::Group(_) => panic!("no braces in iptables input: {line}"),
        })
        .collect()
}

impl IptTables {
    /// Parses a restore input, then prepends the built-in chains' jumps as `iptables -I` does
    /// (so the last rule listed ends up first).
    pub(crate) fn parse(text: &str, jumps: &[JumpRule]) -> IptTables {
        let mut t = IptTables::default();
        let mut table = String::new();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix('*') {
                table = name.to_owned();
            } else if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split(' ').next().unwrap().to_owned();
                // Declaring flushes (restore --noflush semantics for a declared chain).
                t.tables
                    .entry(table.clone())
                    .or_default()
                    .insert(chain, Vec::new());
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let mut w = words(rule);
                let chain = w.remove(0);
                t.tables
                    .get_mut(&table)
                    .and_then(|c| c.get_mut(&chain))
                    .unwrap_or_else(|| panic!("rule in undeclared chain: {line}"))
                    .push(w);
            } else if let Some(chain) = line.strip_prefix("-X ") {
                t.tables.get_mut(&table).unwrap().remove(chain);
            } else if line != "COMMIT" && !line.is_empty() {
                panic!("unknown restore line: {line}");
            }
        }
        for j in jumps {
            let mut rule: Vec<String> = j.args.iter().map(|s| (*s).to_owned()).collect();
            rule.extend(["-j".to_owned(), j.to.to_owned()]);
            t.tables
                .entry(j.table.to_owned())
                .or_default()
                .entry(j.from.to_owned())
                .or_default()
                .insert(0, rule);
        }
        t
    }

    /// Runs the built-in chains of `hook` (nat before filter, as their priorities order them).
    pub(crate) fn hook(&self, cx: &Ctx, hook: Hook, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        let chains: &[(&str, &str)] = match hook {
            Hook::Prerouting => &[("nat", "PREROUTING")],
            Hook::Input => &[("filter", "INPUT")],
            Hook::Forward => &[("filter", "FORWARD")],
            Hook::Output => &[("nat", "OUTPUT"), ("filter", "OUTPUT")],
            Hook::Postrouting => &[("nat", "POSTROUTING")],
        };
        let mut live: BTreeSet<St> = [st].into();
        let mut done = BTreeSet::new();
        for (table, chain) in chains {
            let mut next = BTreeSet::new();
            for s in live {
                for (s2, v) in self.chain(cx, table, chain, s) {
                    match v {
                        None | Some(Verdict::Accept) => {
                            next.insert(s2);
                        }
                        Some(Verdict::Dnat(to)) => {
                            next.insert(St {
                                daddr: *to.ip(),
                                dport: to.port(),
                                dnat: Some(to),
                                ..s2
                            });
                        }
                        Some(v) => {
                            done.insert((s2, Some(v)));
                        }
                    }
                }
            }
            live = next;
        }
        done.extend(live.into_iter().map(|s| (s, None)));
        done
    }

    fn chain(&self, cx: &Ctx, table: &str, name: &str, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        let empty = Vec::new();
        let rules = match self.tables.get(table).and_then(|t| t.get(name)) {
            Some(r) => r,
            // Built-in chains with no jumps in this configuration.
            None if name.chars().all(|c| c.is_ascii_uppercase()) => &empty,
            None => panic!("jump to missing chain {table}/{name}"),
        };
        let mut live: BTreeSet<St> = [st].into();
        let mut out = BTreeSet::new();
        for r in rules {
            let mut next = BTreeSet::new();
            for s in live {
                for (s2, f) in self.rule(cx, table, r, s) {
                    match f {
                        Flow::Next => {
                            next.insert(s2);
                        }
                        Flow::Return => {
                            out.insert((s2, None));
                        }
                        Flow::Verdict(v) => {
                            out.insert((s2, Some(v)));
                        }
                    }
                }
            }
            live = next;
        }
        out.extend(live.into_iter().map(|s| (s, None)));
        out
    }

    fn rule(&self, cx: &Ctx, table: &str, r: &[String], mut st: St) -> Vec<(St, Flow)> {
        let mut matched = true;
        let mut unknown = false;
        let mut neg = false;
        let mut k = 0;
        let arg = |k: usize| r.get(k).map(String::as_str).unwrap_or("");
        let target_at = r.iter().position(|w| w == "-j");
        let matches_end = target_at.unwrap_or(r.len());
        while k < matches_end {
            let (m, used) = match arg(k) {
                "!" => {
                    neg = true;
                    k += 1;
                    continue;
                }
                "-m" => (None, 2),
                "--comment" | "--name" | "--seconds" | "--nfacct-name" | "--mode" => (None, 2),
                "--reap" | "--set" => (None, 1),
                "--rcheck" => {
                    unknown = true;
                    (None, 1)
                }
                "--probability" => {
                    unknown = true;
                    (None, 2)
                }
                "-p" => (Some(arg(k + 1) == cx.proto), 2),
                "-d" => (Some(net_contains(arg(k + 1), st.daddr)), 2),
                "-s" => (Some(net_contains(arg(k + 1), cx.src)), 2),
                "--dport" => (Some(arg(k + 1).parse::<u16>() == Ok(st.dport)), 2),
                "--dst-type" => {
                    assert_eq!(arg(k + 1), "LOCAL");
                    (Some(cx.is_local(st.daddr)), 2)
                }
                "--src-type" => {
                    assert_eq!(arg(k + 1), "LOCAL");
                    (Some(cx.is_local(cx.src)), 2)
                }
                "--ctstate" => {
                    let states: Vec<&str> = arg(k + 1).split(',').collect();
                    let m = states.iter().any(|s| match *s {
                        "NEW" => true,
                        "DNAT" => st.dnat.is_some(),
                        "INVALID" | "RELATED" | "ESTABLISHED" => false,
                        s => panic!("ctstate {s}"),
                    });
                    (Some(m), 2)
                }
                "--mark" => {
                    let (v, mask) = arg(k + 1).split_once('/').expect("mark/mask");
                    (Some(st.mark & hex(mask) == hex(v)), 2)
                }
                other => panic!("unknown iptables match {other:?} in {r:?}"),
            };
            if let Some(m) = m {
                matched &= m != neg;
            }
            neg = false;
            k += used;
        }
        let no_match = vec![(st, Flow::Next)];
        if !matched {
            return no_match;
        }
        let mut out = if unknown { no_match } else { Vec::new() };
        let Some(t) = target_at else {
            // A rule without a target only counts packets.
            out.push((st, Flow::Next));
            return out;
        };
        let target = arg(t + 1);
        let opt = |name: &str| {
            r.iter()
                .position(|w| w == name)
                .map(|p| arg(p + 1).to_owned())
        };
        match target {
            "ACCEPT" => out.push((st, Flow::Verdict(Verdict::Accept))),
            "DROP" => out.push((st, Flow::Verdict(Verdict::Drop))),
            "REJECT" => out.push((st, Flow::Verdict(Verdict::Reject))),
            "RETURN" => out.push((st, Flow::Return)),
            "MASQUERADE" => out.push((st, Flow::Verdict(Verdict::Masquerade))),
            "DNAT" => {
                let to: SocketAddrV4 = opt("--to-destination").unwrap().parse().unwrap();
                out.push((st, Flow::Verdict(Verdict::Dnat(to))));
            }
            "MARK" => {
                if let Some(m) = opt("--or-mark") {
                    st.mark |= hex(&m);
                } else if let Some(m) = opt("--xor-mark") {
                    st.mark ^= hex(&m);
                } else {
                    panic!("MARK {r:?}");
                }
                out.push((st, Flow::Next));
            }
            chain => {
                for (s, v) in self.chain(cx, table, chain, st) {
                    out.push((
                        s,
                        match v {
                            Some(v) => Flow::Verdict(v),
                            None => Flow::Next,
                        },
                    ));
                }
            }
        }
        out
    }
}

fn hex(s: &str) -> u32 {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

//! An evaluator of the `nft -f` text our nftables renderer emits (only the constructs it uses),
//! for one IPv4 packet: which base chains run on each hook (priority order), what each rule
//! matches, where verdict maps send it. Dynamic (affinity) sets are unknown, so a lookup in
//! one both matches and does not; `numgen random` takes every arm. Anything the evaluator
//! does not understand panics: a renderer change must come with an evaluator change.

use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use super::{Ctx, Flow, Hook, St, Tok, Verdict, net_contains, tokens};

/// The parsed table.
#[derive(Debug, Default)]
pub(crate) struct NftTable {
    chains: HashMap<String, Vec<Vec<Tok>>>,
    /// Base chains: (hook, priority, name).
    base: Vec<(String, i32, String)>,
    /// Set/map elements: key text → value text ("" for sets).
    elements: HashMap<String, HashMap<String, String>>,
    dynamic_sets: BTreeSet<String>,
}

fn words(t: &[Tok]) -> Vec<String> {
    t.iter()
        .map(|t| match t {
            Tok::Word(w) => w.clone(),
            Tok::Str(s) => format!("\"{s}\""),
            Tok::Group(g) => format!("{{ {} }}", words(g).join(" ")),
        })
        .collect()
}

impl NftTable {
    /// Parses the output of `full_transaction` for the table `ip <table>`.
    pub(crate) fn parse(text: &str) -> NftTable {
        let mut t = NftTable::default();
        for line in text.lines() {
            let toks = tokens(line);
            let w = words(&toks);
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            match (w.first().copied(), w.get(1).copied()) {
                (Some("add"), Some("table" | "counter"))
                | (Some("flush"), _)
                | (Some("delete"), _) => {}
                (Some("add"), Some("set" | "map")) => {
                    let name = w[4].to_owned();
                    let Tok::Group(body) = &toks[5] else {
                        panic!("set body: {line}")
                    };
                    if words(body).iter().any(|x| x.contains("dynamic")) {
                        t.dynamic_sets.insert(name.clone());
                    }
                    t.elements.entry(name).or_default();
                }
                (Some("add"), Some("chain")) => {
                    let name = w[4].to_owned();
                    t.chains.entry(name.clone()).or_default();
                    if let Some(Tok::Group(body)) = toks.get(5) {
                        let b = words(body);
                        if let Some(h) = b.iter().position(|x| x == "hook") {
                            let prio: i32 = b[h + 3].parse().unwrap();
                            t.base.push((b[h + 1].clone(), prio, name));
                        }
                    }
                }
                (Some("add"), Some("rule")) => {
                    t.chains
                        .get_mut(w[4])
                        .unwrap_or_else(|| panic!("rule before chain: {line}"))
                        .push(toks[5..].to_vec());
                }
                (Some("add"), Some("element")) => {
                    let Tok::Group(body) = &toks[5] else {
                        panic!("element body: {line}")
                    };
                    let b = words(body);
                    let key_end = b
                        .iter()
                        .position(|x| x == "comment" || x == ":")
                        .unwrap_or(b.len());
                    let key = b[..key_end].join(" ");
                    let value = b
                        .iter()
                        .position(|x| x == ":")
                        .map(|i| b[i + 1..].join(" "))
                        .unwrap_or_default();
                    t.elements
                        .get_mut(w[4])
                        .unwrap_or_else(|| panic!("element before set: {line}"))
                        .insert(key, value);
                }
                _ => panic!("unknown nft line: {line}"),
            }
        }
        t.base.sort_by_key(|(_, p, _)| *p);
        t
    }

    /// Runs the base chains of `hook` in priority order; `None` when the packet survives.
    pub(crate) fn hook(&self, cx: &Ctx, hook: Hook, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        let name = match hook {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        };
        let mut live: BTreeSet<St> = [st].into();
        let mut done = BTreeSet::new();
        for (_, _, chain) in self.base.iter().filter(|(h, _, _)| h == name) {
            let mut next = BTreeSet::new();
            for s in live {
                for (s2, v) in self.chain(cx, chain, s) {
                    match v {
                        // accept (or a nat verdict) ends this base chain only.
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

    fn chain(&self, cx: &Ctx, name: &str, st: St) -> BTreeSet<(St, Option<Verdict>)> {
        let rules = self
            .chains
            .get(name)
            .unwrap_or_else(|| panic!("no chain {name}"));
        let mut live: BTreeSet<St> = [st].into();
        let mut out = BTreeSet::new();
        for r in rules {
            let mut next = BTreeSet::new();
            for s in live {
                for (s2, f) in self.rule(cx, r, 0, s) {
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

    fn call(&self, cx: &Ctx, goto: bool, chain: &str, st: St) -> Vec<(St, Flow)> {
        self.chain(cx, chain, st)
            .into_iter()
            .map(|(s, v)| match v {
                Some(v) => (s, Flow::Verdict(v)),
                None if goto => (s, Flow::Return),
                None => (s, Flow::Next),
            })
            .collect()
    }

    /// A verdict given as words (`goto X`, `jump X`, `drop`).
    fn verdict(&self, cx: &Ctx, v: &[&str], st: St) -> Vec<(St, Flow)> {
        match v {
            ["goto", c] => self.call(cx, true, c, st),
            ["jump", c] => self.call(cx, false, c, st),
            ["drop"] => vec![(st, Flow::Verdict(Verdict::Drop))],
            ["reject"] => vec![(st, Flow::Verdict(Verdict::Reject))],
            ["accept"] => vec![(st, Flow::Verdict(Verdict::Accept))],
            ["return"] => vec![(st, Flow::Return)],
            _ => panic!("unknown verdict {v:?}"),
        }
    }

    fn addr_match(&self, value: &Tok, a: Ipv4Addr) -> Option<bool> {
        match value {
            Tok::Word(w) if w.starts_with('@') => {
                let set = &w[1..];
                if self.dynamic_sets.contains(set) {
                    return None;
                }
                Some(self.elements[set].contains_key(&a.to_string()))
            }
            Tok::Word(w) => Some(net_contains(w, a)),
            Tok::Group(g) => Some(
                words(g)
                    .iter()
                    .map(|x| x.trim_end_matches(','))
                    .filter(|x| !x.is_empty())
                    .any(|x| net_contains(x, a)),
            ),
            Tok::Str(_) => panic!("address expected"),
        }
    }

    /// Evaluates rule `r` from token `i` on: matches narrow, statements act, a verdict ends.
    fn rule(&self, cx: &Ctx, r: &[Tok], i: usize, mut st: St) -> Vec<(St, Flow)> {
        let w = |k: usize| -> &str {
            match r.get(k) {
                Some(Tok::Word(w)) => w,
                _ => "",
            }
        };
        let fail = |st: St| vec![(st, Flow::Next)];
        if i >= r.len() {
            return vec![(st, Flow::Next)];
        }
        match w(i) {
            "comment" => self.rule(cx, r, i + 2, st),
            "ct" if w(i + 1) == "state" && w(i + 2) == "new" => self.rule(cx, r, i + 3, st),
            // The packets modelled open new connections: never INVALID (as in ipt.rs).
            "ct" if w(i + 1) == "state" && w(i + 2) == "invalid" => fail(st),
            "fib" if w(i + 2) == "type" && w(i + 3) == "local" => {
                let a = if w(i + 1) == "daddr" {
                    st.daddr
                } else {
                    cx.src
                };
                if cx.is_local(a) {
                    self.rule(cx, r, i + 4, st)
                } else {
                    fail(st)
                }
            }
            "ct" if w(i + 1) == "status" && w(i + 2) == "dnat" => {
                if st.dnat.is_some() {
                    self.rule(cx, r, i + 3, st)
                } else {
                    fail(st)
                }
            }
            "ip" | "meta" if w(i + 2) == "." || w(i + 3) == "." => {
                // A concatenation looked up in a set (`@set`) or a verdict map (`vmap @map`).
                let end = (i..r.len())
                    .find(|&k| w(k) == "vmap" || w(k).starts_with('@'))
                    .expect("vmap or set");
                let key: Vec<String> = w_range(r, i, end)
                    .split(" . ")
                    .map(|f| self.field(cx, f, &st))
                    .collect();
                if let Some(set) = w(end).strip_prefix('@') {
                    return if self.elements[set].contains_key(&key.join(" . ")) {
                        self.rule(cx, r, end + 1, st)
                    } else {
                        fail(st)
                    };
                }
                let vmap = end;
                let map = w(vmap + 1).strip_prefix('@').expect("named map");
                match self.elements[map].get(&key.join(" . ")) {
                    Some(v) => {
                        let v: Vec<&str> = v.split(' ').collect();
                        self.verdict(cx, &v, st)
                    }
                    None => fail(st),
                }
            }
            "ip" => {
                let a = match w(i + 1) {
                    "daddr" => st.daddr,
                    "saddr" => cx.src,
                    f => panic!("ip {f}"),
                };
                let (neg, vi) = if w(i + 2) == "!=" {
                    (true, i + 3)
                } else {
                    (false, i + 2)
                };
                match self.addr_match(&r[vi], a) {
                    Some(m) if m != neg => self.rule(cx, r, vi + 1, st),
                    Some(_) => fail(st),
                    None => {
                        let mut out = self.rule(cx, r, vi + 1, st);
                        out.extend(fail(st));
                        out
                    }
                }
            }
            "meta" if w(i + 1) == "l4proto" => {
                if w(i + 2) == cx.proto {
                    self.rule(cx, r, i + 3, st)
                } else {
                    fail(st)
                }
            }
            p @ ("tcp" | "udp" | "sctp") if w(i + 1) == "dport" => {
                if p == cx.proto && w(i + 2).parse::<u16>() == Ok(st.dport) {
                    self.rule(cx, r, i + 3, st)
                } else {
                    fail(st)
                }
            }
            "mark" if w(i + 1) == "and" => {
                let m = hex(w(i + 2));
                let v = hex(w(i + 4));
                assert_eq!(w(i + 3), "==");
                if st.mark & m == v {
                    self.rule(cx, r, i + 5, st)
                } else {
                    fail(st)
                }
            }
            "mark" if w(i + 1) == "set" && w(i + 2) == "mark" => {
                let m = hex(w(i + 4));
                match w(i + 3) {
                    "or" => st.mark |= m,
                    "xor" => st.mark ^= m,
                    op => panic!("mark set mark {op}"),
                }
                self.rule(cx, r, i + 5, st)
            }
            "update" => self.rule(cx, r, i + 3, st),
            "numgen" => {
                assert_eq!(w_range(r, i, i + 3), "numgen random mod");
                assert_eq!(w(i + 4), "vmap");
                let Some(Tok::Group(arms)) = r.get(i + 5) else {
                    panic!("numgen arms")
                };
                let n: usize = w(i + 3).parse().unwrap();
                let arms = words(arms).join(" ");
                let arms: Vec<&str> = arms.split(" , ").collect();
                assert_eq!(arms.len(), n, "numgen mod {n} with {} arms", arms.len());
                let mut out = Vec::new();
                for (k, arm) in arms.iter().enumerate() {
                    let (idx, v) = arm.split_once(" : ").expect("arm");
                    assert_eq!(idx, k.to_string());
                    let v: Vec<&str> = v.split(' ').collect();
                    out.extend(self.verdict(cx, &v, st));
                }
                out
            }
            "masquerade" => vec![(st, Flow::Verdict(Verdict::Masquerade))],
            "dnat" if w(i + 1) == "ip" => {
                // `dnat ip to <fields> . numgen random mod N map @m`: every index's endpoint.
                assert_eq!(w(i + 2), "to");
                let m = (i..r.len()).find(|&k| w(k) == "map").expect("dnat map");
                let expr = w_range(r, i + 3, m);
                let (fields, n) = expr
                    .rsplit_once(" . numgen random mod ")
                    .expect("numgen index");
                let n: usize = n.parse().unwrap();
                let key: Vec<String> = fields
                    .split(" . ")
                    .map(|f| self.field(cx, f, &st))
                    .collect();
                let map = &self.elements[w(m + 1).strip_prefix('@').expect("named map")];
                let mut out = Vec::new();
                for k in 0..n {
                    // A missing key ends the rule (the kernel's lookup breaks).
                    match map.get(&format!("{} . {k}", key.join(" . "))) {
                        Some(v) => {
                            let (ip, port) = v.split_once(" . ").expect("addr . port");
                            let to = SocketAddrV4::new(ip.parse().unwrap(), port.parse().unwrap());
                            out.push((st, Flow::Verdict(Verdict::Dnat(to))));
                        }
                        None => out.extend(fail(st)),
                    }
                }
                out
            }
            "dnat" => {
                assert_eq!(w(i + 1), "to");
                let to: SocketAddrV4 = w(i + 2).parse().expect("dnat to ip:port");
                vec![(st, Flow::Verdict(Verdict::Dnat(to)))]
            }
            "goto" | "jump" => self.verdict(cx, &[w(i), w(i + 1)], st),
            "drop" | "reject" | "accept" | "return" => self.verdict(cx, &[w(i)], st),
            other => panic!("unknown nft rule construct {other:?} in {:?}", words(r)),
        }
    }
}

impl NftTable {
    /// The value of one field of a concatenation for this packet.
    fn field(&self, cx: &Ctx, f: &str, st: &St) -> String {
        match f.split_once(' ') {
            Some(("ip", "daddr")) => st.daddr.to_string(),
            Some(("ip", "saddr")) => cx.src.to_string(),
            Some(("meta", "l4proto")) => cx.proto.to_owned(),
            Some(("th", "dport")) => st.dport.to_string(),
            Some((p, "dport")) if p == cx.proto => st.dport.to_string(),
            _ => panic!("unknown concatenation field {f:?}"),
        }
    }
}

fn w_range(r: &[Tok], a: usize, b: usize) -> String {
    words(&r[a..b]).join(" ")
}

fn hex(s: &str) -> u32 {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).unwrap(),
        None => s.parse().unwrap(),
    }
}

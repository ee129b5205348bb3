//! nf_tables element batches over netlink ([`pontifex_proxy::nfnetlink`]) against the real
//! kernel, in a namespace of the test's own: what `nft` lists afterwards is what `nft` would
//! have added itself (data maps with concatenated keys, verdict maps, comments), a batch is all
//! or nothing, deletes work, and a large batch goes through.

use std::net::Ipv4Addr;

use pontifex_proxy::nfnetlink::{
    ElementOp, Field, NetlinkError, NfSocket, Value, Verdict, concat, element_diff,
};

use super::*;

/// A namespace deleted on drop (shared with the conntrack and counter tests).
pub(crate) struct Netns(pub(crate) String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

const TABLE: &str = r#"
table ip pfx {
  map eps-tcp { typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport; }
  map svc { type ipv4_addr . inet_proto . inet_service : verdict; }
  set pairs { type ipv4_addr . ipv4_addr; }
  chain pick-2 { }
}
"#;

fn nft(ns: &str, args: &[&str]) -> String {
    sh(&[&["ip", "netns", "exec", ns, "nft"], args].concat())
}

fn endpoint(svc: u32, i: u32) -> ElementOp {
    ElementOp {
        add: true,
        set: "eps-tcp".into(),
        key: concat(&[
            Field::V4(Ipv4Addr::from(0x0a60_0000 + svc)),
            Field::Port(80),
            Field::U32(i),
        ]),
        value: Some(Value::Data(concat(&[
            Field::V4(Ipv4Addr::from(0x0af4_0000 + svc * 16 + i)),
            Field::Port(8080),
        ]))),
        comment: None,
    }
}

/// A namespace of the test's own with [`TABLE`] loaded, and a socket in it.
fn loaded_namespace(tag: &str) -> (Netns, NfSocket) {
    let ns = Netns(format!("pfxnl{tag}-{}", std::process::id()));
    sh(&["ip", "netns", "add", &ns.0]);
    let mut load = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    load.stdin
        .take()
        .unwrap()
        .write_all(TABLE.as_bytes())
        .unwrap();
    assert!(load.wait().unwrap().success(), "the table loads");
    let sock = NfSocket::open(Some(&ns.0)).expect("socket in the namespace");
    (ns, sock)
}

#[test]
fn netlink_element_batches_match_what_nft_writes() {
    if !can_run() {
        return;
    }
    let (ns, mut sock) = loaded_namespace("");

    let mut ops = vec![
        endpoint(10, 0),
        endpoint(10, 1),
        ElementOp {
            add: true,
            set: "svc".into(),
            key: concat(&[
                Field::V4(Ipv4Addr::new(10, 96, 0, 10)),
                Field::Proto(6),
                Field::Port(80),
            ]),
            value: Some(Value::Verdict(Verdict::Goto("pick-2".into()))),
            comment: Some("default/web:http".into()),
        },
        ElementOp {
            add: true,
            set: "pairs".into(),
            key: concat(&[
                Field::V4(Ipv4Addr::new(10, 244, 0, 2)),
                Field::V4(Ipv4Addr::new(10, 244, 0, 2)),
            ]),
            value: None,
            comment: None,
        },
    ];
    sock.apply(2, "pfx", &ops).expect("batch applied");
    let listed = nft(&ns.0, &["list", "table", "ip", "pfx"]);
    for want in [
        "10.96.0.10 . 80 . 0 : 10.244.0.160 . 8080",
        "10.96.0.10 . 80 . 1 : 10.244.0.161 . 8080",
        "10.96.0.10 . tcp . 80 comment \"default/web:http\" : goto pick-2",
        "10.244.0.2 . 10.244.0.2",
    ] {
        assert!(listed.contains(want), "missing {want:?} in\n{listed}");
    }

    // All or nothing: a batch with one bad message leaves the table as it was.
    ops = vec![
        endpoint(11, 0),
        ElementOp {
            set: "no-such-map".into(),
            ..endpoint(11, 1)
        },
    ];
    let err = sock.apply(2, "pfx", &ops).expect_err("missing map refused");
    assert!(
        matches!(&err, NetlinkError::Refused { what, .. } if what.contains("no-such-map")),
        "{err}"
    );
    assert!(!nft(&ns.0, &["list", "map", "ip", "pfx", "eps-tcp"]).contains("10.96.0.11"));

    // Deletes, and a batch of 100k elements (a 10k-Service table's endpoints) in one go.
    let del = ElementOp {
        add: false,
        value: None,
        ..endpoint(10, 1)
    };
    sock.apply(2, "pfx", &[del]).expect("delete");
    assert!(!nft(&ns.0, &["list", "map", "ip", "pfx", "eps-tcp"]).contains("10.244.0.161"));
    let big: Vec<ElementOp> = (100..10_100)
        .flat_map(|s| (0..10).map(move |i| endpoint(s, i)))
        .collect();
    let t = Instant::now();
    sock.apply(2, "pfx", &big).expect("100k elements");
    eprintln!("100k elements over netlink: {:?}", t.elapsed());
    let count = nft(&ns.0, &["-j", "list", "map", "ip", "pfx", "eps-tcp"])
        .matches("\"concat\"")
        .count();
    // Every element lists a concatenated key and a concatenated value.
    assert_eq!(count, 2 * (100_000 + 1), "elements listed");
}

/// Sorted by set and key, for comparing element lists.
fn sorted(mut ops: Vec<ElementOp>) -> Vec<ElementOp> {
    ops.sort_by(|a, b| (&a.set, &a.key).cmp(&(&b.set, &b.key)));
    ops
}

fn list_all(sock: &mut NfSocket) -> Vec<ElementOp> {
    let mut out = Vec::new();
    for set in ["eps-tcp", "svc", "pairs"] {
        out.extend(sock.list_elements(2, "pfx", set).expect("dump"));
    }
    sorted(out)
}

#[test]
fn netlink_reads_elements_back_and_a_diff_makes_the_kernel_what_is_wanted() {
    if !can_run() {
        return;
    }
    let (ns, mut sock) = loaded_namespace("d");
    let service = |last: u8, chain: &str| ElementOp {
        add: true,
        set: "svc".into(),
        key: concat(&[
            Field::V4(Ipv4Addr::new(10, 96, 0, last)),
            Field::Proto(17),
            Field::Port(53),
        ]),
        value: Some(Value::Verdict(Verdict::Jump(chain.into()))),
        comment: Some(format!("kube-system/dns-{last}")),
    };
    let pair = ElementOp {
        add: true,
        set: "pairs".into(),
        key: concat(&[
            Field::V4(Ipv4Addr::new(10, 244, 0, 3)),
            Field::V4(Ipv4Addr::new(10, 244, 0, 3)),
        ]),
        value: None,
        comment: None,
    };
    let first: Vec<ElementOp> = (0..3)
        .map(|i| endpoint(1, i))
        .chain([service(10, "pick-2"), service(11, "pick-2"), pair.clone()])
        .collect();
    sock.apply(2, "pfx", &first).expect("first batch");
    // What the kernel holds reads back as exactly what was sent: keys, data and verdict
    // values, comments.
    assert_eq!(list_all(&mut sock), sorted(first.clone()));

    // The wanted state: one endpoint gone, one moved, one new; a Service's verdict changed,
    // one Service gone; the pair unchanged.
    let mut moved = endpoint(1, 1);
    moved.value = endpoint(7, 7).value;
    let want = vec![
        endpoint(1, 0),
        moved,
        endpoint(2, 0),
        service(10, "pick-2"),
        ElementOp {
            value: Some(Value::Verdict(Verdict::Goto("pick-2".into()))),
            ..service(11, "pick-2")
        },
        pair,
    ];
    let mut ops = Vec::new();
    for set in ["eps-tcp", "svc", "pairs"] {
        let w: Vec<ElementOp> = want.iter().filter(|o| o.set == set).cloned().collect();
        let have = sock.list_elements(2, "pfx", set).expect("dump");
        ops.extend(element_diff(&w, &have));
    }
    // Deletes: endpoint 1/1 (moved), 1/2 (gone), Service 11 (changed); adds: 1/1, 2/0, 11.
    assert_eq!(ops.iter().filter(|o| !o.add).count(), 3, "{ops:?}");
    assert_eq!(ops.iter().filter(|o| o.add).count(), 3, "{ops:?}");
    sock.apply(2, "pfx", &ops)
        .expect("diff applied in one batch");
    assert_eq!(list_all(&mut sock), sorted(want.clone()));
    let mut again = Vec::new();
    for set in ["eps-tcp", "svc", "pairs"] {
        let w: Vec<ElementOp> = want.iter().filter(|o| o.set == set).cloned().collect();
        again.extend(element_diff(
            &w,
            &sock.list_elements(2, "pfx", set).expect("dump"),
        ));
    }
    assert!(again.is_empty(), "nothing left to do: {again:?}");

    // A 100k-element map reads back whole (dumps span many messages), and fast.
    let big: Vec<ElementOp> = (100..10_100)
        .flat_map(|s| (0..10).map(move |i| endpoint(s, i)))
        .collect();
    sock.apply(2, "pfx", &big).expect("100k elements");
    let t = Instant::now();
    let listed = sock.list_elements(2, "pfx", "eps-tcp").expect("dump");
    eprintln!("100k elements read back over netlink: {:?}", t.elapsed());
    assert_eq!(listed.len(), big.len() + 3);
    let mut want_big = big;
    want_big.extend(want.into_iter().filter(|o| o.set == "eps-tcp"));
    let d = element_diff(&want_big, &listed);
    assert!(
        d.is_empty(),
        "{} ops, first {:?}",
        d.len(),
        &d[..d.len().min(4)]
    );
    drop(ns);
}

use super::*;
use crate::nfnetlink::NLA_F_NESTED;

#[test]
fn fields_take_one_register_slot_each() {
    let key = concat(&[
        Field::V4(Ipv4Addr::new(10, 96, 0, 10)),
        Field::Port(80),
        Field::Proto(6),
        Field::U32(2),
    ]);
    let mut want = vec![10, 96, 0, 10, 0, 80, 0, 0, 6, 0, 0, 0];
    want.extend_from_slice(&2u32.to_ne_bytes());
    assert_eq!(key, want);
    assert_eq!(concat(&[Field::V6(Ipv6Addr::LOCALHOST)]).len(), 16);
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

/// Walks a batch's messages: (type, flags, seq, length).
fn messages(b: &[u8]) -> Vec<(u16, u16, u32, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let len = u32_at(b, at) as usize;
        assert_eq!(len % 4, 0, "messages are 4-byte aligned");
        out.push((u16_at(b, at + 4), u16_at(b, at + 6), u32_at(b, at + 8), len));
        at += len;
    }
    assert_eq!(at, b.len(), "lengths add up to the batch");
    out
}

fn op(set: &str, add: bool, n: u32) -> ElementOp {
    ElementOp {
        add,
        set: set.into(),
        key: concat(&[Field::U32(n)]),
        value: add.then(|| Value::Verdict(Verdict::Goto("pick-3".into()))),
        comment: add.then(|| "default/web:http".into()),
    }
}

#[test]
fn a_batch_is_begin_grouped_element_messages_end() {
    let mut ops: Vec<ElementOp> = (0..300).map(|n| op("a", true, n)).collect();
    ops.push(op("a", false, 1));
    ops.push(op("b", true, 1));
    let (bytes, acked) = encode_batch(2, "pontifex", &ops, 7).unwrap();
    let m = messages(&bytes);
    // begin, 3 × add to a (128 + 128 + 44), delete from a, add to b, end
    assert_eq!(m.len(), 7, "{m:?}");
    assert_eq!(m[0].0, NFNL_MSG_BATCH_BEGIN);
    assert_eq!(m[6].0, NFNL_MSG_BATCH_END);
    let kinds: Vec<u16> = m[1..6].iter().map(|x| x.0).collect();
    let new = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM;
    let del = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELSETELEM;
    assert_eq!(kinds, [new, new, new, del, new]);
    assert!(m[1..6].iter().all(|x| x.1 & NLM_F_ACK != 0));
    assert_eq!(m[1].1 & NLM_F_CREATE, NLM_F_CREATE);
    assert_eq!(acked, [8, 9, 10, 11, 12]);
    assert_eq!(
        m.iter().map(|x| x.2).collect::<Vec<_>>(),
        [7, 8, 9, 10, 11, 12, 13]
    );
    assert_eq!(describe(&ops, 3), "deleting elements from a");
    assert_eq!(describe(&ops, 4), "adding elements to b");
}

#[test]
fn an_element_nests_key_verdict_and_comment() {
    let (bytes, _) = encode_batch(2, "t", &[op("s", true, 5)], 1).unwrap();
    let m = messages(&bytes);
    let at = m[0].3; // the element message follows the begin message
    let body = &bytes[at + 20..at + m[1].3]; // after nlmsghdr (16) + nfgenmsg (4)
    // table "t", set "s", then the nested element list
    assert_eq!(
        (u16_at(body, 0), u16_at(body, 2)),
        (6, NFTA_SET_ELEM_LIST_TABLE)
    );
    assert_eq!(&body[4..6], b"t\0");
    assert_eq!(
        (u16_at(body, 8), u16_at(body, 10)),
        (6, NFTA_SET_ELEM_LIST_SET)
    );
    let list = &body[16..];
    assert_eq!(u16_at(list, 2), NFTA_SET_ELEM_LIST_ELEMENTS | NLA_F_NESTED);
    assert_eq!(
        u16_at(list, 0) as usize,
        list.len(),
        "the list spans the rest"
    );
    let text = String::from_utf8_lossy(list);
    assert!(text.contains("pick-3\0"), "{text}");
    assert!(text.contains("default/web:http\0"), "{text}");
    // The verdict code is NFT_GOTO, big-endian, right before the chain name attribute.
    let goto = (NFT_GOTO).to_be_bytes();
    assert!(list.windows(4).any(|w| w == goto));
}

#[test]
fn oversized_comments_are_refused_not_truncated() {
    let mut o = op("s", true, 1);
    o.comment = Some("x".repeat(300));
    assert!(matches!(
        encode_batch(2, "t", &[o], 1),
        Err(NetlinkError::TooLarge)
    ));
}

#[test]
fn codecs_read_type_and_typeof_clauses() {
    let vmap = ElementCodec::new("ipv4_addr . inet_proto . inet_service : verdict").unwrap();
    let op = vmap
        .op(
            true,
            "service-ips",
            "10.96.0.10 . tcp . 80",
            Some("goto pick-3"),
            Some("c"),
        )
        .unwrap();
    assert_eq!(
        op.key,
        concat(&[
            Field::V4(Ipv4Addr::new(10, 96, 0, 10)),
            Field::Proto(6),
            Field::Port(80)
        ])
    );
    assert_eq!(
        op.value,
        Some(Value::Verdict(Verdict::Goto("pick-3".into())))
    );
    assert_eq!(op.comment.as_deref(), Some("c"));

    let data = ElementCodec::new(
        "typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport",
    )
    .unwrap();
    let op = data
        .op(
            true,
            "m",
            "10.96.0.10 . 80 . 2",
            Some("10.244.1.5 . 8080"),
            None,
        )
        .unwrap();
    assert_eq!(op.key.len(), 12);
    assert_eq!(
        op.value,
        Some(Value::Data(concat(&[
            Field::V4(Ipv4Addr::new(10, 244, 1, 5)),
            Field::Port(8080)
        ])))
    );
    // A delete carries neither value nor comment.
    let del = data
        .op(false, "m", "10.96.0.10 . 80 . 2", None, Some("x"))
        .unwrap();
    assert_eq!((del.value, del.comment), (None, None));

    let v6 = ElementCodec::new("ipv6_addr . ipv6_addr").unwrap();
    assert_eq!(
        v6.op(true, "s", "fd00::1 . fd00::2", None, None)
            .unwrap()
            .key
            .len(),
        32
    );
    assert_eq!(
        ElementCodec::new("inet_proto . inet_service : verdict")
            .unwrap()
            .op(true, "np", "udp . 30053", Some("drop"), None)
            .unwrap()
            .key,
        concat(&[Field::Proto(17), Field::Port(30053)])
    );
}

#[test]
fn codecs_refuse_what_they_cannot_encode() {
    assert!(ElementCodec::new("ifname . inet_service").is_err());
    let c = ElementCodec::new("ipv4_addr . inet_service : verdict").unwrap();
    for (key, value) in [
        ("10.0.0.1", Some("drop")),         // too few fields
        ("10.0.0.1 . 70000", Some("drop")), // port out of range
        ("10.0.0.300 . 80", Some("drop")),  // not an address
        ("10.0.0.1 . 80", Some("goto")),    // no chain
        ("10.0.0.1 . 80", None),            // a map element without a value
    ] {
        assert!(
            c.op(true, "s", key, value, None).is_err(),
            "{key} {value:?}"
        );
    }
}

#[test]
fn a_diff_deletes_what_goes_or_changes_and_adds_what_comes_or_changes() {
    let el = |n: u32, v: u32| ElementOp {
        value: Some(Value::Data(concat(&[Field::U32(v)]))),
        ..op("m", true, n)
    };
    let have = vec![el(1, 1), el(2, 2), el(3, 3)];
    let want = vec![
        el(1, 1),
        el(3, 30),
        ElementOp {
            comment: Some("only the comment differs".into()),
            ..el(2, 2)
        },
        el(4, 4),
    ];
    let ops = element_diff(&want, &have);
    let summary: Vec<(bool, Vec<u8>)> = ops.iter().map(|o| (o.add, o.key.clone())).collect();
    let key = |n: u32| concat(&[Field::U32(n)]);
    assert_eq!(
        summary,
        vec![(false, key(3)), (true, key(3)), (true, key(4))],
        "deletes first, then adds; a comment alone is no change"
    );
    assert_eq!(ops[1].value, el(3, 30).value);
    assert!(element_diff(&have, &have).is_empty());
    let gone = element_diff(&[], &have);
    assert!(gone.iter().all(|o| !o.add) && gone.len() == 3);
}

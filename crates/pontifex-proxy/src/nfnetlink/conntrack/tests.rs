use super::*;
use crate::nfnetlink::messages;

fn tuple(src: &str, dst: &str, sport: u16, dport: u16) -> Tuple {
    Tuple {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        proto: IPPROTO_UDP,
        src_port: sport,
        dst_port: dport,
        zone: None,
    }
}

fn bytes(m: Msg) -> Vec<u8> {
    let mut out = Vec::new();
    m.finish(&mut out);
    out
}

/// A dump answer as the kernel writes one (`IPCTNL_MSG_CT_NEW`), with an attribute we do not
/// read (`CTA_STATUS`) in between.
fn kernel_entry(f: &Flow) -> Vec<u8> {
    let mut m = Msg::new(
        NFNL_SUBSYS_CTNETLINK << 8,
        0,
        9,
        family_byte(f.orig.src.is_ipv6()),
        0,
    );
    put_tuple(&mut m, CTA_TUPLE_ORIG, &f.orig).unwrap();
    put_tuple(&mut m, CTA_TUPLE_REPLY, &f.reply).unwrap();
    m.attr(3, &0x1a0u32.to_be_bytes()).unwrap();
    if let Some(z) = f.zone {
        m.attr(CTA_ZONE, &z.to_be_bytes()).unwrap();
    }
    if let Some(id) = f.id {
        m.attr(CTA_ID, &id.to_be_bytes()).unwrap();
    }
    bytes(m)
}

fn dnat_flow() -> Flow {
    Flow {
        orig: tuple("10.244.0.2", "10.96.0.10", 40000, 53),
        reply: tuple("10.244.0.5", "10.244.0.2", 5353, 40000),
        zone: None,
        id: Some(0xdead_beef),
    }
}

#[test]
fn dump_request_header() {
    let b = bytes(dump_request(true, 7));
    assert_eq!(b.len(), 20);
    assert_eq!(
        u16::from_ne_bytes([b[4], b[5]]),
        0x0101,
        "CTNETLINK << 8 | CT_GET"
    );
    assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 0x0301, "REQUEST | DUMP");
    assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 7);
    assert_eq!(b[16], AF_INET6);
    assert_eq!(bytes(dump_request(false, 7))[16], AF_INET);
}

#[test]
fn entries_decode_both_tuples_zone_and_id() {
    let mut f = dnat_flow();
    let raw = kernel_entry(&f);
    let msgs = messages(&raw);
    assert_eq!(msgs.len(), 1);
    assert_eq!(decode_flow(msgs[0].payload).unwrap(), f);
    f.zone = Some(3);
    f.orig.zone = Some(3);
    f.id = None;
    let raw = kernel_entry(&f);
    assert_eq!(decode_flow(messages(&raw)[0].payload).unwrap(), f);
}

#[test]
fn ipv6_entries_decode() {
    let f = Flow {
        orig: tuple("fd00:244::2", "fd00::10", 40000, 53),
        reply: tuple("fd00:244::5", "fd00:244::2", 53, 40000),
        zone: None,
        id: Some(1),
    };
    let raw = kernel_entry(&f);
    assert_eq!(decode_flow(messages(&raw)[0].payload).unwrap(), f);
}

#[test]
fn incomplete_entries_are_malformed() {
    let mut m = Msg::new(NFNL_SUBSYS_CTNETLINK << 8, 0, 9, AF_INET, 0);
    put_tuple(&mut m, CTA_TUPLE_ORIG, &dnat_flow().orig).unwrap();
    let raw = bytes(m);
    assert!(matches!(
        decode_flow(messages(&raw)[0].payload),
        Err(NetlinkError::Malformed(_))
    ));
    // A tuple without addresses.
    let mut m = Msg::new(NFNL_SUBSYS_CTNETLINK << 8, 0, 9, AF_INET, 0);
    for kind in [CTA_TUPLE_ORIG, CTA_TUPLE_REPLY] {
        let t = m.begin(kind);
        let p = m.begin(CTA_TUPLE_PROTO);
        m.attr(CTA_PROTO_NUM, &[17]).unwrap();
        m.end(p).unwrap();
        m.end(t).unwrap();
    }
    let raw = bytes(m);
    assert!(decode_flow(messages(&raw)[0].payload).is_err());
    assert!(decode_flow(&[2, 0]).is_err());
}

#[test]
fn delete_names_the_original_tuple_and_id() {
    let f = dnat_flow();
    let raw = bytes(delete_request(&f, 42).unwrap());
    assert_eq!(
        u16::from_ne_bytes([raw[4], raw[5]]),
        0x0102,
        "CTNETLINK << 8 | CT_DELETE"
    );
    assert_eq!(
        u16::from_ne_bytes([raw[6], raw[7]]),
        0x0005,
        "REQUEST | ACK"
    );
    let msgs = messages(&raw);
    assert_eq!(msgs[0].seq, 42);
    let body = &msgs[0].payload[4..];
    let top = attrs(body);
    let kinds: Vec<u16> = top.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        kinds,
        vec![CTA_TUPLE_ORIG, CTA_ID],
        "no reply tuple, no zone"
    );
    // The nested flag is set on the tuple (attrs() masks it off).
    assert_eq!(
        u16::from_ne_bytes([body[2], body[3]]),
        CTA_TUPLE_ORIG | 0x8000
    );
    assert_eq!(top[1].1, &0xdead_beefu32.to_be_bytes());
    let tuple = attrs(top[0].1);
    let ip = attrs(tuple[0].1);
    assert_eq!(
        ip,
        vec![
            (CTA_IP_V4_SRC, &[10, 244, 0, 2][..]),
            (CTA_IP_V4_DST, &[10, 96, 0, 10][..])
        ]
    );
    let proto = attrs(tuple[1].1);
    assert_eq!(
        proto,
        vec![
            (CTA_PROTO_NUM, &[17][..]),
            (CTA_PROTO_SRC_PORT, &40000u16.to_be_bytes()[..]),
            (CTA_PROTO_DST_PORT, &53u16.to_be_bytes()[..]),
        ]
    );
    // The delete's tuple decodes back to the flow's original tuple.
    assert_eq!(decode_tuple(top[0].1).unwrap(), f.orig);
}

#[test]
fn delete_carries_zone_and_refuses_mixed_families() {
    let mut f = dnat_flow();
    f.zone = Some(5);
    f.id = None;
    let raw = bytes(delete_request(&f, 1).unwrap());
    let top = attrs(&messages(&raw)[0].payload[4..])
        .into_iter()
        .map(|(k, v)| (k, v.to_vec()))
        .collect::<Vec<_>>();
    assert_eq!(top[1], (CTA_ZONE, 5u16.to_be_bytes().to_vec()));
    let mut bad = dnat_flow();
    bad.orig.dst = "fd00::10".parse().unwrap();
    assert!(delete_request(&bad, 1).is_err());
}

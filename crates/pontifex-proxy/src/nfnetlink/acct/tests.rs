use super::*;
use crate::nfnetlink::messages;

fn bytes(m: Msg) -> Vec<u8> {
    let mut out = Vec::new();
    m.finish(&mut out);
    out
}

#[test]
fn acct_requests() {
    let raw = bytes(acct_new_request("ct_state_invalid_dropped_pkts", 3).unwrap());
    assert_eq!(
        u16::from_ne_bytes([raw[4], raw[5]]),
        0x0700,
        "ACCT << 8 | NEW"
    );
    assert_eq!(
        u16::from_ne_bytes([raw[6], raw[7]]),
        0x0401,
        "REQUEST | CREATE, no REPLACE"
    );
    let m = &messages(&raw)[0];
    assert_eq!(m.seq, 3);
    assert_eq!(
        attrs(&m.payload[4..]),
        vec![(NFACCT_NAME, &b"ct_state_invalid_dropped_pkts\0"[..])]
    );
    let raw = bytes(acct_get_request("localhost_nps_accepted_pkts", 4).unwrap());
    assert_eq!(
        u16::from_ne_bytes([raw[4], raw[5]]),
        0x0701,
        "ACCT << 8 | GET"
    );
    assert_eq!(
        u16::from_ne_bytes([raw[6], raw[7]]),
        0x0001,
        "REQUEST, not a dump"
    );
}

#[test]
fn acct_names_fit_the_kernel() {
    assert!(acct_new_request("", 1).is_err());
    assert!(acct_new_request(&"x".repeat(31), 1).is_ok());
    assert!(acct_new_request(&"x".repeat(32), 1).is_err());
    assert!(acct_get_request("a\0b", 1).is_err());
}

#[test]
fn acct_answer_decodes() {
    let mut m = Msg::new(0x0700, 0, 3, 0, 0);
    m.str_attr(NFACCT_NAME, "ct_state_invalid_dropped_pkts")
        .unwrap();
    m.attr(NFACCT_PKTS, &5u64.to_be_bytes()).unwrap();
    m.attr(NFACCT_BYTES, &300u64.to_be_bytes()).unwrap();
    m.attr(4, &1u32.to_be_bytes()).unwrap(); // NFACCT_USE
    let raw = bytes(m);
    assert_eq!(
        decode_acct(messages(&raw)[0].payload).unwrap(),
        Counter {
            packets: 5,
            bytes: 300
        }
    );
    let mut m = Msg::new(0x0700, 0, 3, 0, 0);
    m.str_attr(NFACCT_NAME, "x").unwrap();
    let raw = bytes(m);
    assert!(decode_acct(messages(&raw)[0].payload).is_err());
}

#[test]
fn nft_counter_request_and_answer() {
    let raw =
        bytes(nft_counter_request(2, "pontifex", "ct_state_invalid_dropped_pkts", 8).unwrap());
    assert_eq!(
        u16::from_ne_bytes([raw[4], raw[5]]),
        0x0a13,
        "NFTABLES << 8 | GETOBJ"
    );
    let m = &messages(&raw)[0];
    assert_eq!(m.payload[0], 2, "NFPROTO_IPV4");
    assert_eq!(
        attrs(&m.payload[4..]),
        vec![
            (NFTA_OBJ_TABLE, &b"pontifex\0"[..]),
            (NFTA_OBJ_NAME, &b"ct_state_invalid_dropped_pkts\0"[..]),
            (NFTA_OBJ_TYPE, &1u32.to_be_bytes()[..]),
        ]
    );
    // The kernel's answer: table, name, type, data { bytes, packets, pad }, use, handle.
    let mut a = Msg::new(0x0a12, 0, 8, 2, 0);
    a.str_attr(NFTA_OBJ_TABLE, "pontifex").unwrap();
    a.str_attr(NFTA_OBJ_NAME, "ct_state_invalid_dropped_pkts")
        .unwrap();
    a.attr(NFTA_OBJ_TYPE, &1u32.to_be_bytes()).unwrap();
    let d = a.begin(NFTA_OBJ_DATA);
    a.attr(NFTA_COUNTER_BYTES, &520u64.to_be_bytes()).unwrap();
    a.attr(NFTA_COUNTER_PACKETS, &13u64.to_be_bytes()).unwrap();
    a.end(d).unwrap();
    a.attr(5, &1u32.to_be_bytes()).unwrap();
    let raw = bytes(a);
    assert_eq!(
        decode_nft_counter(messages(&raw)[0].payload).unwrap(),
        Counter {
            packets: 13,
            bytes: 520
        }
    );
    let mut a = Msg::new(0x0a12, 0, 8, 2, 0);
    a.str_attr(NFTA_OBJ_NAME, "x").unwrap();
    let raw = bytes(a);
    assert!(decode_nft_counter(messages(&raw)[0].payload).is_err());
}

#[test]
fn enoent_is_absent_other_errors_are_errors() {
    let c = found(Err(NetlinkError::Socket(nix::Error::ENOENT)), decode_acct).unwrap();
    assert_eq!(c, None);
    assert!(found(Err(NetlinkError::Socket(nix::Error::EPERM)), decode_acct).is_err());
    assert!(found(Ok(vec![]), decode_acct).is_err());
}

use bytes::Bytes;

use super::*;

fn kv(key: &str, value: &str, create: Revision, modr: Revision) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Bytes::copy_from_slice(value.as_bytes()),
        create_revision: create,
        mod_revision: modr,
    }
}

#[test]
fn current_record_round_trips() {
    let v = kv("/registry/pods/default/a", "{\"x\":1}", 3, 9);
    let rec = encode_current(&v);
    assert_eq!(decode_current(&v.key, &rec), Ok(v));
}

#[test]
fn events_round_trip_with_and_without_prev() {
    let events = vec![
        Event {
            kind: EventKind::Put,
            kv: kv("a", "new", 7, 7),
            prev: None,
        },
        Event {
            kind: EventKind::Put,
            kv: kv("b", "two", 2, 7),
            prev: Some(kv("b", "one", 2, 5)),
        },
        Event {
            kind: EventKind::Delete,
            kv: kv("c", "gone", 1, 7),
            prev: Some(kv("c", "gone", 1, 4)),
        },
        Event {
            kind: EventKind::Put,
            kv: kv("", "", 7, 7),
            prev: None,
        },
    ];
    let rec = encode_events(&events);
    assert_eq!(decode_events(7, &rec), Ok(events));
}

#[test]
fn truncated_and_garbage_records_are_rejected() {
    let events = vec![Event {
        kind: EventKind::Put,
        kv: kv("key", "value", 1, 1),
        prev: Some(kv("key", "old", 1, 0)),
    }];
    let rec = encode_events(&events);
    for cut in 0..rec.len() {
        assert!(
            decode_events(1, &rec[..cut]).is_err(),
            "prefix of {cut} bytes accepted"
        );
    }
    let mut trailing = rec.clone();
    trailing.push(0);
    assert!(decode_events(1, &trailing).is_err());
    let mut bad_version = rec;
    bad_version[0] = 9;
    assert!(decode_events(1, &bad_version).is_err());
    assert!(decode_current("k", &[1, 2, 3]).is_err());
    assert!(decode_events(1, &[VERSION, 0xff, 0xff, 0xff, 0xff]).is_err());
}

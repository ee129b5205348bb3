use jiff::{SignedDuration, Timestamp};

use super::{Aggregator, Key, Repeat};

fn key(message: &str) -> Key {
    Key {
        object: "Service/default/web/uid-1".into(),
        type_: "Normal".into(),
        reason: "Sync".into(),
        message: message.into(),
    }
}

#[test]
fn repeats_within_ten_minutes_bump_the_count() {
    let t0 = Timestamp::from_second(1_700_000_000).unwrap();
    let mut a = Aggregator::default();
    assert_eq!(a.observe(&key("m"), t0), None);
    a.recorded(key("m"), "default", "web.1", t0);
    let r = a.observe(&key("m"), t0 + SignedDuration::from_secs(60));
    assert_eq!(
        r,
        Some(Repeat {
            namespace: "default".into(),
            name: "web.1".into(),
            count: 2
        })
    );
    // The window counts from the last repeat.
    let r = a.observe(&key("m"), t0 + SignedDuration::from_secs(650));
    assert_eq!(r.map(|r| r.count), Some(3));
    // A different message is a different Event.
    assert_eq!(a.observe(&key("other"), t0), None);
}

#[test]
fn after_ten_minutes_of_silence_a_new_event_is_written() {
    let t0 = Timestamp::from_second(1_700_000_000).unwrap();
    let mut a = Aggregator::default();
    a.recorded(key("m"), "default", "web.1", t0);
    assert_eq!(
        a.observe(&key("m"), t0 + SignedDuration::from_secs(601)),
        None
    );
    a.recorded(key("m"), "default", "web.2", t0);
    a.forget(&key("m"));
    assert_eq!(a.observe(&key("m"), t0), None);
}

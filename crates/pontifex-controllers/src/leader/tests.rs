use std::time::Duration;

use jiff::Timestamp;

use super::{Decision, Record, decide, lost};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

const LEASE: Duration = Duration::from_secs(15);

fn held_by(holder: &str, renewed: i64) -> Record {
    Record {
        holder: Some(holder.into()),
        lease_duration_seconds: 15,
        acquire_time: Some(t(0)),
        renew_time: Some(t(renewed)),
        transitions: 2,
    }
}

#[test]
fn no_lease_is_created_held_by_us() {
    assert_eq!(
        decide(t(5), None, "me", LEASE),
        Decision::Create(Record {
            holder: Some("me".into()),
            lease_duration_seconds: 15,
            acquire_time: Some(t(5)),
            renew_time: Some(t(5)),
            transitions: 0,
        })
    );
}

#[test]
fn our_lease_is_renewed_keeping_acquire_time_and_transitions() {
    let Decision::Update(r) = decide(t(10), Some(&held_by("me", 8)), "me", LEASE) else {
        panic!("renewal expected");
    };
    assert_eq!(r.renew_time, Some(t(10)));
    assert_eq!(r.acquire_time, Some(t(0)));
    assert_eq!(r.transitions, 2);
}

#[test]
fn a_live_lease_of_another_is_waited_for_until_it_expires() {
    let other = held_by("other", 10);
    assert_eq!(decide(t(11), Some(&other), "me", LEASE), Decision::Wait);
    assert_eq!(decide(t(24), Some(&other), "me", LEASE), Decision::Wait);
    let Decision::Update(r) = decide(t(25), Some(&other), "me", LEASE) else {
        panic!("take-over expected at expiry");
    };
    assert_eq!(r.holder.as_deref(), Some("me"));
    assert_eq!(r.acquire_time, Some(t(25)));
    assert_eq!(r.renew_time, Some(t(25)));
    assert_eq!(r.transitions, 3);
}

#[test]
fn expiry_uses_the_holders_lease_duration() {
    let mut other = held_by("other", 10);
    other.lease_duration_seconds = 60;
    assert_eq!(decide(t(30), Some(&other), "me", LEASE), Decision::Wait);
}

#[test]
fn released_lease_is_taken_at_once() {
    let mut released = held_by("", 10);
    released.holder = None;
    assert!(
        matches!(decide(t(11), Some(&released), "me", LEASE), Decision::Update(r) if r.transitions == 3)
    );
}

#[test]
fn leadership_is_lost_past_the_renew_deadline() {
    let deadline = Duration::from_secs(10);
    assert!(!lost(t(10), t(0), deadline));
    assert!(lost(t(11), t(0), deadline));
}

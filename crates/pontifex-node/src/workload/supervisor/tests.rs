use std::time::{Duration, Instant};

use super::*;

const S: Duration = Duration::from_secs(1);

#[test]
fn restart_policy_decides_by_exit_code() {
    assert!(should_restart(RestartPolicy::Always, 0));
    assert!(should_restart(RestartPolicy::Always, 1));
    assert!(!should_restart(RestartPolicy::OnFailure, 0));
    assert!(should_restart(RestartPolicy::OnFailure, 137));
    assert!(!should_restart(RestartPolicy::Never, 1));
    assert_eq!(RestartPolicy::from_spec(None), RestartPolicy::Always);
    assert_eq!(
        RestartPolicy::from_spec(Some("Never")),
        RestartPolicy::Never
    );
}

#[test]
fn backoff_is_immediate_then_doubles_to_the_cap() {
    let mut b = Backoff::new(BackoffConfig::default());
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..8 {
        // The container crashes right away each time.
        let d = b.delay(now);
        delays.push(d.as_secs());
        now += d;
        b.record_restart(now);
    }
    assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
}

#[test]
fn backoff_resets_after_running_twice_the_cap() {
    let mut b = Backoff::new(BackoffConfig::default());
    let t0 = Instant::now();
    b.record_restart(t0);
    b.record_restart(t0 + S);
    assert_eq!(b.delay(t0 + 2 * S), 20 * S);
    // Ran for 10 minutes exactly: still in back-off; a moment longer: reset.
    assert_eq!(b.delay(t0 + S + 600 * S), 20 * S);
    assert_eq!(b.delay(t0 + S + 601 * S), Duration::ZERO);
    b.record_restart(t0 + 602 * S);
    assert_eq!(b.delay(t0 + 603 * S), 10 * S);
}

#[test]
fn backoff_config_is_honoured() {
    let mut b = Backoff::new(BackoffConfig {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(120),
    });
    let t = Instant::now();
    b.record_restart(t);
    assert_eq!(b.delay(t), Duration::from_millis(50));
    b.record_restart(t);
    assert_eq!(b.delay(t), Duration::from_millis(100));
    b.record_restart(t);
    assert_eq!(b.delay(t), Duration::from_millis(120));
}

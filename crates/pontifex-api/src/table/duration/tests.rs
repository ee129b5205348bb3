use jiff::SignedDuration;
use proptest::prelude::*;

use super::human_duration;

const S: i64 = 1;
const M: i64 = 60;
const H: i64 = 3600;
const D: i64 = 24 * H;
const Y: i64 = 365 * D;
const MS: i64 = 1_000_000; // nanoseconds

fn secs(s: i64) -> SignedDuration {
    SignedDuration::from_secs(s)
}

/// `s` seconds minus one millisecond.
fn just_under(s: i64) -> SignedDuration {
    SignedDuration::from_nanos(s * 1_000_000_000 - MS)
}

#[test]
fn upstream_examples() {
    // apimachinery's duration_test.go TestHumanDuration.
    let cases = [
        (secs(S), "1s"),
        (secs(70 * S), "70s"),
        (secs(190 * S), "3m10s"),
        (secs(70 * M), "70m"),
        (secs(47 * H), "47h"),
        (secs(49 * H), "2d1h"),
        (secs((8 * 24 + 2) * H), "8d"),
        (secs(367 * D), "367d"),
        (secs(2 * Y + 25 * H), "2y1d"),
        (secs(8 * Y + 2 * H), "8y"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(d), want, "{d:?}");
    }
}

#[test]
fn upstream_boundaries() {
    // apimachinery's duration_test.go TestHumanDurationBoundaries.
    let cases = [
        (secs(-2), "<invalid>"),
        (SignedDuration::from_nanos(-2_000_000_000 + 1), "0s"),
        (secs(0), "0s"),
        (just_under(1), "0s"),
        (just_under(2 * M), "119s"),
        (secs(2 * M), "2m"),
        (secs(2 * M + 1), "2m1s"),
        (just_under(10 * M), "9m59s"),
        (secs(10 * M), "10m"),
        (secs(10 * M + 1), "10m"),
        (just_under(3 * H), "179m"),
        (secs(3 * H), "3h"),
        (secs(3 * H + M), "3h1m"),
        (just_under(8 * H), "7h59m"),
        (secs(8 * H), "8h"),
        (secs(8 * H + 59 * M), "8h"),
        (just_under(2 * D), "47h"),
        (secs(2 * D), "2d"),
        (secs(2 * D + H), "2d1h"),
        (just_under(8 * D), "7d23h"),
        (secs(8 * D), "8d"),
        (secs(8 * D + 23 * H), "8d"),
        (just_under(2 * Y), "729d"),
        (secs(2 * Y), "2y"),
        (secs(2 * Y + 23 * H + 59 * M), "2y"),
        (just_under(2 * Y + D), "2y"),
        (secs(2 * Y + D), "2y1d"),
        (secs(3 * Y), "3y"),
        (secs(7 * Y), "7y"),
        (just_under(8 * Y), "7y364d"),
        (secs(8 * Y), "8y"),
        (secs(8 * Y + 364 * D), "8y"),
        (secs(9 * Y), "9y"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(d), want, "{d:?}");
    }
}

#[test]
fn hand_checked_ages() {
    let cases = [
        (secs(59), "59s"),
        (secs(5 * M), "5m"),
        (secs(5 * M + 30), "5m30s"),
        (secs(17 * M), "17m"),
        (secs(3 * H + 5 * M), "3h5m"),
        (secs(2 * D + 3 * H), "2d3h"),
        (secs(5 * D), "5d"),
        (secs(3 * Y + 45 * D), "3y45d"),
        (secs(20 * Y), "20y"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(d), want, "{d:?}");
    }
}

/// Reads a rendered duration back: its value in seconds and the size of its last unit.
fn read_back(s: &str) -> (i64, i64) {
    let mut total = 0;
    let mut unit = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        unit = match c {
            's' => S,
            'm' => M,
            'h' => H,
            'd' => D,
            'y' => Y,
            other => panic!("unexpected unit {other} in {s}"),
        };
        total += num.parse::<i64>().unwrap() * unit;
        num.clear();
    }
    assert!(num.is_empty(), "trailing digits in {s}");
    (total, unit)
}

proptest! {
    /// Whatever the duration, the text never overstates it and understates it by less than its last
    /// unit, and it has at most two components, largest first.
    #[test]
    fn rendering_is_a_truncation(nanos in 0i64..(40 * Y * 1_000_000_000)) {
        let d = SignedDuration::from_nanos(nanos);
        let text = human_duration(d);
        let (value, unit) = read_back(&text);
        let whole = d.as_secs();
        prop_assert!(value <= whole, "{text} overstates {whole}s");
        prop_assert!(whole < value + unit, "{text} understates {whole}s by a unit or more");
        let units: Vec<char> = text.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        prop_assert!(units.len() <= 2, "{text}");
        if units.len() == 2 {
            let order = "ydhms";
            prop_assert!(order.find(units[0]) < order.find(units[1]), "{text}");
        }
    }

    /// Ages never go down as time passes (a property kubectl users rely on when watching).
    #[test]
    fn monotonic(a in 0i64..(10 * Y), b in 0i64..(10 * Y)) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let (vlo, _) = read_back(&human_duration(secs(lo)));
        let (vhi, _) = read_back(&human_duration(secs(hi)));
        prop_assert!(vlo <= vhi);
    }

    #[test]
    fn future_beyond_skew_is_invalid(s in 2i64..1_000_000) {
        prop_assert_eq!(human_duration(secs(-s)), "<invalid>");
    }
}

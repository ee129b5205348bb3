use std::time::Duration;

use super::{Samples, ms};

fn ms_samples(v: &[u64]) -> Samples {
    Samples::new(v.iter().map(|&m| Duration::from_millis(m)).collect())
}

#[test]
fn nearest_rank_percentiles() {
    // 1..=100 ms: p50 is the 50th sample, p99 the 99th, p100 the largest.
    let s = ms_samples(&(1..=100).rev().collect::<Vec<_>>());
    assert_eq!(s.percentile(50.0), Some(Duration::from_millis(50)));
    assert_eq!(s.percentile(99.0), Some(Duration::from_millis(99)));
    assert_eq!(s.percentile(100.0), Some(Duration::from_millis(100)));
    assert_eq!(s.percentile(0.0), Some(Duration::from_millis(1)));
    assert_eq!(s.max(), Some(Duration::from_millis(100)));
}

#[test]
fn p99_of_few_samples_is_the_largest() {
    // With 20 samples, the 99th percentile rounds up to the 20th: the worst list is reported.
    let s = ms_samples(&[5; 19].iter().copied().chain([70]).collect::<Vec<_>>());
    assert_eq!(s.percentile(99.0), Some(Duration::from_millis(70)));
    assert_eq!(s.percentile(50.0), Some(Duration::from_millis(5)));
}

#[test]
fn empty_has_no_percentiles() {
    let s = Samples::new(Vec::new());
    assert_eq!(s.percentile(50.0), None);
    assert_eq!(ms(s.percentile(50.0)), "-");
    assert_eq!(ms(Some(Duration::from_micros(1500))), "1.50");
}

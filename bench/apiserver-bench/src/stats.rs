//! Latency summaries: nearest-rank percentiles over every sample (no histogram buckets, so a p99 is
//! a latency that was really observed).

use std::time::Duration;

/// Sorted latency samples.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(Vec<Duration>);

impl Samples {
    pub(crate) fn new(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Samples(v)
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The nearest-rank `p`-th percentile (`p` in 0..=100): the smallest sample with at least p% of
    /// the samples at or below it. `None` without samples.
    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        Some(self.0[rank.clamp(1, self.0.len()) - 1])
    }

    pub(crate) fn max(&self) -> Option<Duration> {
        self.0.last().copied()
    }
}

/// Milliseconds with two decimals, or "-" for no value.
pub(crate) fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}", d.as_secs_f64() * 1e3),
    )
}

/// Mebibytes with one decimal.
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests;

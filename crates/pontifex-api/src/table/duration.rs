//! `HumanDuration`: the `5m30s` / `2d3h` / `3y45d` ages that `kubectl get` shows, as apimachinery's
//! `util/duration.HumanDuration` renders them (about two significant figures).
//!
//! Only the rendering lives here; the caller computes the duration from its own "now".

use jiff::SignedDuration;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
const YEAR: i64 = 365 * DAY;

/// Renders a duration the way the API server's printers render ages.
///
/// Up to 2 seconds in the future still reads `0s` (clock skew between machines is tolerated); anything
/// further in the future is `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    // Whole seconds, truncated toward zero like Go's int(d.Seconds()).
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 2 * MINUTE {
        return format!("{seconds}s");
    }
    let minutes = seconds / MINUTE;
    if minutes < 10 {
        return with_rest(minutes, "m", seconds % MINUTE, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = seconds / HOUR;
    if hours < 8 {
        return with_rest(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return with_rest(hours / 24, "d", hours % 24, "h");
    }
    let days = seconds / DAY;
    if seconds < 2 * YEAR {
        return format!("{days}d");
    }
    if seconds < 8 * YEAR {
        return with_rest(seconds / YEAR, "y", days % 365, "d");
    }
    format!("{}y", seconds / YEAR)
}

/// `3h` when the smaller unit is zero, `3h5m` otherwise.
fn with_rest(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 {
        format!("{big}{big_unit}")
    } else {
        format!("{big}{big_unit}{small}{small_unit}")
    }
}

#[cfg(test)]
mod tests;

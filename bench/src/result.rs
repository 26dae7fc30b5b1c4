//! The result of one load-generator run, as printed by `selecho-load --json`.

/// Measurements of one load-generator run over its measured window.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "runner", derive(serde::Serialize, serde::Deserialize))]
pub struct LoadResult {
    /// `"pingpong"` or `"stream"`.
    pub mode: String,
    /// Connections requested.
    pub conns: usize,
    /// Connections that were established.
    pub connected: usize,
    /// Message size (pingpong) or write chunk size (stream), in bytes.
    pub size: usize,
    /// Length of the measured window, in seconds.
    pub secs: f64,
    /// Messages completed in the window (stream: echoed bytes / size).
    pub messages: u64,
    /// `messages / secs`.
    pub msgs_per_sec: f64,
    /// Bytes sent in the window, as Mbit/s.
    pub tx_mbit_s: f64,
    /// Echoed bytes received and verified in the window, as Mbit/s.
    pub rx_mbit_s: f64,
    /// Median round-trip latency in µs (pingpong only).
    pub p50_us: Option<f64>,
    /// 99th percentile round-trip latency in µs (pingpong only).
    pub p99_us: Option<f64>,
    /// 99.9th percentile round-trip latency in µs (pingpong only).
    pub p999_us: Option<f64>,
    /// Error counts over the whole run, warm-up included.
    pub errors: ErrorCounts,
    /// Server CPU time (user + system) in the window, if `--pid` was given.
    pub server_cpu_s: Option<f64>,
    /// Server CPU time per message in µs, if `--pid` was given.
    pub server_cpu_us_per_msg: Option<f64>,
    /// The load generator's own CPU time over the window.
    pub client_cpu_s: Option<f64>,
}

/// Error counts of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "runner", derive(serde::Serialize, serde::Deserialize))]
pub struct ErrorCounts {
    /// Echoed bytes that differed from what was sent (or excess bytes).
    pub mismatches: u64,
    /// Connections that could not be established after retries.
    pub connect_failures: u64,
    /// Connections reset, closed by the peer or failed with an I/O error.
    pub resets: u64,
}

impl ErrorCounts {
    /// Sum of all error counts.
    pub fn total(&self) -> u64 {
        self.mismatches + self.connect_failures + self.resets
    }

    /// Adds `other` to `self`.
    pub fn add(&mut self, other: &ErrorCounts) {
        self.mismatches += other.mismatches;
        self.connect_failures += other.connect_failures;
        self.resets += other.resets;
    }
}

/// Median of `values` (mean of the two middle ones for an even count);
/// `None` when empty. NaNs are ignored.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        return Some(v[mid]);
    }
    Some((v[mid - 1] + v[mid]) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }
}

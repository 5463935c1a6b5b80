//! Latency summaries: exact percentiles over every sample (runs are bounded, so every sample
//! fits in memory).

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// Summarises samples given in nanoseconds.
    pub fn of(mut samples_ns: Vec<u64>) -> Self {
        if samples_ns.is_empty() {
            return Self::default();
        }
        samples_ns.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let sum: u128 = samples_ns.iter().map(|&ns| u128::from(ns)).sum();
        Self {
            count: samples_ns.len(),
            p50_ms: ms(percentile(&samples_ns, 0.50)),
            p99_ms: ms(percentile(&samples_ns, 0.99)),
            p999_ms: ms(percentile(&samples_ns, 0.999)),
            max_ms: ms(samples_ns[samples_ns.len() - 1]),
            mean_ms: sum as f64 / samples_ns.len() as f64 / 1e6,
        }
    }
}

/// The nearest-rank percentile of sorted samples: the smallest sample with at least `q` of all
/// samples at or below it.
fn percentile(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let summary = Summary::of((1..=1000).map(|ms| ms * 1_000_000).collect());
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.p50_ms, 500.0);
        assert_eq!(summary.p99_ms, 990.0);
        assert_eq!(summary.p999_ms, 999.0);
        assert_eq!(summary.max_ms, 1000.0);
        assert_eq!(summary.mean_ms, 500.5);
        assert_eq!(Summary::of(vec![7_000_000]).p999_ms, 7.0);
        assert_eq!(Summary::of(Vec::new()), Summary::default());
    }
}

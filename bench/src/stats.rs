//! Latency samples: percentiles and the curves the plots draw.

use serde::Serialize;
use std::time::Duration;

/// The nearest-rank percentile of sorted samples (`q` in 0..=1); zero when there are none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The percentiles a latency curve is drawn through.
pub const CURVE_QUANTILES: [f64; 13] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 1.0,
];

/// What a set of latency samples comes to.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// (quantile, milliseconds) at each of [`CURVE_QUANTILES`].
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Latency {
            count: samples.len(),
            mean_ms: if samples.is_empty() {
                0.0
            } else {
                ms(total) / samples.len() as f64
            },
            p50_ms: ms(percentile(&samples, 0.5)),
            p99_ms: ms(percentile(&samples, 0.99)),
            max_ms: ms(percentile(&samples, 1.0)),
            curve: CURVE_QUANTILES
                .iter()
                .map(|&q| (q, ms(percentile(&samples, q))))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p99_ms, 99.0);
        assert_eq!(latency.max_ms, 100.0);
        assert!((latency.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(latency.curve.first(), Some(&(0.01, 1.0)));
        assert_eq!(latency.curve.last(), Some(&(1.0, 100.0)));
        // Quantiles never decrease along the curve.
        assert!(latency.curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn few_samples() {
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let one = [Duration::from_millis(7)];
        assert_eq!(percentile(&one, 0.0), one[0]);
        assert_eq!(percentile(&one, 0.99), one[0]);
        let two = [Duration::from_millis(1), Duration::from_millis(2)];
        assert_eq!(percentile(&two, 0.5), two[0]);
        assert_eq!(percentile(&two, 0.51), two[1]);
    }
}

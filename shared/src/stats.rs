//! Percentiles and distribution summaries.
//!
//! Percentile definition (the one numpy and `vllm bench serve` use, "linear"/type 7):
//! sort the n values ascending; the p-th percentile sits at rank r = p/100 · (n − 1)
//! (0-based); when r falls between two ranks the value is interpolated linearly
//! between them. p50 of [1, 2, 3, 4] is 2.5; p95 of 1..=20 is 19.05.

use serde::{Deserialize, Serialize};

/// The p-th percentile (0 ≤ p ≤ 100) of values already sorted ascending; None when empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p.clamp(0.0, 100.0) / 100.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Sorts in place (NaN-free input expected; NaNs sort last) and returns the percentile.
pub fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    percentile_sorted(values, p)
}

/// Summary of one latency-like quantity over a set of requests (ms).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct Dist {
    pub count: u64,
    pub mean: Option<f64>,
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Dist {
    /// Exact summary of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Dist {
        values.sort_by(|a, b| a.total_cmp(b));
        let n = values.len();
        let mean = if n == 0 { None } else { Some(values.iter().sum::<f64>() / n as f64) };
        Dist {
            count: n as u64,
            mean,
            p50: percentile_sorted(values, 50.0),
            p90: percentile_sorted(values, 90.0),
            p95: percentile_sorted(values, 95.0),
            p99: percentile_sorted(values, 99.0),
            max: values.last().copied(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_match_hand_computation() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0];
        assert_eq!(percentile(&mut v, 50.0), Some(2.5));
        assert_eq!(percentile(&mut v, 0.0), Some(1.0));
        assert_eq!(percentile(&mut v, 100.0), Some(4.0));
        // rank = 0.95 * 3 = 2.85 → 3 + 0.85 * (4 - 3)
        assert!((percentile(&mut v, 95.0).unwrap() - 3.85).abs() < 1e-12);
        let mut twenty: Vec<f64> = (1..=20).map(f64::from).collect();
        // rank = 0.95 * 19 = 18.05 → 19 + 0.05 * (20 - 19); the notes' script returned 18 here.
        assert!((percentile(&mut twenty, 95.0).unwrap() - 19.05).abs() < 1e-9);
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [7.0], 99.0), Some(7.0));
    }

    #[test]
    fn dist_summarises_exactly() {
        let mut v: Vec<f64> = vec![100.0, 200.0, 300.0, 400.0, 1000.0];
        let d = Dist::of(&mut v);
        assert_eq!(d.count, 5);
        assert_eq!(d.mean, Some(400.0));
        assert_eq!(d.p50, Some(300.0));
        // rank 0.9*4 = 3.6 → 400 + 0.6*600 = 760
        assert!((d.p90.unwrap() - 760.0).abs() < 1e-9);
        // rank 0.95*4 = 3.8 → 400 + 0.8*600 = 880
        assert!((d.p95.unwrap() - 880.0).abs() < 1e-9);
        assert_eq!(d.max, Some(1000.0));
        assert_eq!(Dist::of(&mut []), Dist::default());
    }
}

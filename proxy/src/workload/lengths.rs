//! Lengths drawn from a distribution (uniform, normal, log-normal with a mean and standard
//! deviation), clamped to [min, max], seeded so a run can be repeated.

use caplab_shared::spec::{DistKind, LengthDist};
use rand::SeedableRng;
use rand_distr::{Distribution, LogNormal, Normal, Uniform};

/// `n` lengths from `dist`.
pub fn draw(dist: &LengthDist, n: usize, seed: u64) -> Vec<u32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (lo, hi) = (f64::from(dist.min), f64::from(dist.max));
    let clamp = |x: f64| x.round().clamp(lo, hi) as u32;
    match dist.kind {
        DistKind::Uniform => {
            let u = Uniform::new_inclusive(dist.min, dist.max);
            (0..n).map(|_| u.sample(&mut rng)).collect()
        }
        DistKind::Normal => match Normal::new(dist.mean, dist.stdev) {
            Ok(d) => (0..n).map(|_| clamp(d.sample(&mut rng))).collect(),
            Err(_) => vec![clamp(dist.mean); n],
        },
        DistKind::Lognormal => {
            // The lengths' mean m and stdev s as the underlying normal's μ and σ.
            let m = dist.mean.max(1.0);
            let sigma2 = (1.0 + (dist.stdev / m).powi(2)).ln();
            match LogNormal::new(m.ln() - sigma2 / 2.0, sigma2.sqrt()) {
                Ok(d) => (0..n).map(|_| clamp(d.sample(&mut rng))).collect(),
                Err(_) => vec![clamp(m); n],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist(kind: DistKind, mean: f64, stdev: f64, min: u32, max: u32) -> LengthDist {
        LengthDist { kind, mean, stdev, min, max }
    }

    #[test]
    fn draws_have_the_asked_shape_and_stay_in_bounds() {
        for d in [dist(DistKind::Uniform, 0.0, 0.0, 100, 300), dist(DistKind::Normal, 500.0, 100.0, 50, 900), dist(DistKind::Lognormal, 500.0, 300.0, 16, 4000)] {
            let xs = draw(&d, 20_000, 7);
            assert!(xs.iter().all(|&x| x >= d.min && x <= d.max), "{d:?}");
            let mean = xs.iter().map(|&x| f64::from(x)).sum::<f64>() / xs.len() as f64;
            let want = if d.kind == DistKind::Uniform { 200.0 } else { d.mean };
            assert!((mean - want).abs() < want * 0.03, "{:?}: mean {mean}", d.kind);
            if d.kind != DistKind::Uniform {
                let sd = (xs.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / xs.len() as f64).sqrt();
                assert!((sd - d.stdev).abs() < d.stdev * 0.08, "{:?}: stdev {sd}", d.kind);
            }
        }
        assert_eq!(draw(&dist(DistKind::Normal, 500.0, 100.0, 50, 900), 5, 1), draw(&dist(DistKind::Normal, 500.0, 100.0, 50, 900), 5, 1), "seeded");
    }
}

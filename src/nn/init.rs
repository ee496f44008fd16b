//! Seeded initialisers (host-side; parameters are uploaded once).

use rand::{Rng, SeedableRng, rngs::StdRng};

/// A seeded generator for parameter initialisation.
pub struct Init {
    rng: StdRng,
}

impl Init {
    /// From a seed.
    pub fn new(seed: u64) -> Init {
        Init {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// `n` standard normal values (Box–Muller).
    pub fn normal(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
                let u2: f64 = self.rng.random();
                ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 * std
            })
            .collect()
    }

    /// `n` values uniform in [-bound, bound).
    pub fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(-bound..bound.max(f32::MIN_POSITIVE)))
            .collect()
    }

    /// A fresh seed derived from this generator (for components that seed their own state).
    pub fn seed(&mut self) -> u64 {
        self.rng.random()
    }
}

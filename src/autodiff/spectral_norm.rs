//! Tape ops of the `spectral_norm` kernel family (kernels and launchers in `crate::ops::spectral_norm`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::ops::spectral_norm::*;

impl Tape {
    /// `W̄ = σ(W_init) · W / σ(W)` after `iters` power iterations (1 per training step) that update
    /// `sn.u` in place; `iters = 0` estimates σ from the current `u` without changing it. The backward
    /// treats this call's `u` and `v` as constants.
    pub fn spectral_normalize(&self, w: Var, sn: &SpectralNorm, iters: u32) -> Result<Var> {
        let wv = self.value(w);
        let NormalizedWeight {
            weight: y,
            sigma,
            u,
            v,
        } = normalize_weight(&wv, sn, iters, self.requires_grad(w))?;
        let sigma_init = sn.sigma_init.clone();
        Ok(self.record(y, &[w], move |g| {
            Ok(vec![Some(spectral_normalize_backward(
                g,
                &wv,
                &u,
                &v,
                &sigma_init,
                &sigma,
            )?)])
        }))
    }
}

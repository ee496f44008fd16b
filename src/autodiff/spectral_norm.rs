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
        let (sigma, v, u) = if iters == 0 {
            estimate_sigma(&wv, &sn.u)?
        } else {
            let (sigma, v) = power_iteration(&wv, &sn.u, iters)?;
            // later calls update sn.u in place, so the backward keeps its own copy of this call's u
            let u = if self.requires_grad(w) {
                sn.u.deep_clone()?
            } else {
                sn.u.clone()
            };
            (sigma, v, u)
        };
        let y = scale_by_sigma_ratio(&wv, &sn.sigma_init, &sigma)?;
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

//! Tape ops of the `layer_norm` kernel family (kernels and launchers in `crate::ops::layer_norm`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::ops::layer_norm::*;

impl Tape {
    /// LayerNorm (`γ, β`: `[D]`) or self-modulated LayerNorm (`γ, β`: `[B, D]`, `x`: `[B, T, D]`) of `x`
    /// over its last axis: `y = γ ⊙ (x − μ)/√(σ² + eps) + β`. Gradients flow to `x`, `γ` and `β`.
    pub fn layer_norm(&self, x: Var, gamma: Var, beta: Var, eps: f32) -> Result<Var> {
        let (xv, gv) = (self.value(x), self.value(gamma));
        let (y, mean, rstd) = layer_norm_forward(&xv, &gv, &self.value(beta), eps)?;
        Ok(self.record(y, &[x, gamma, beta], move |dy| {
            let (dx, dgamma, dbeta) = layer_norm_backward(&xv, &gv, &mean, &rstd, dy)?;
            Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
        }))
    }
}

//! f64 references for the layer_norm family: LayerNorm and self-modulated LayerNorm over the last axis.

/// Output and saved statistics of [`layer_norm_ref`].
pub struct LayerNormRef {
    pub y: Vec<f64>,
    pub mean: Vec<f64>,
    pub rstd: Vec<f64>,
}

/// `y = γ_g ⊙ (x − μ)/√(σ² + eps) + β_g` per row of length `d` (biased variance); row `r` uses the
/// affine row `g = r / rows_per_group` of `gamma`, `beta` (`[groups, d]`; one group = LayerNorm).
pub fn layer_norm_ref(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    d: usize,
    rows_per_group: usize,
    eps: f64,
) -> LayerNormRef {
    let rows = x.len() / d;
    let mut out = LayerNormRef {
        y: vec![0.0; x.len()],
        mean: vec![0.0; rows],
        rstd: vec![0.0; rows],
    };
    for r in 0..rows {
        let xr = &x[r * d..(r + 1) * d];
        let mean = xr.iter().sum::<f64>() / d as f64;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let g = r / rows_per_group;
        for j in 0..d {
            out.y[r * d + j] = gamma[g * d + j] * (xr[j] - mean) * rstd + beta[g * d + j];
        }
        out.mean[r] = mean;
        out.rstd[r] = rstd;
    }
    out
}

/// Gradients of `Σ dy ⊙ y` for [`layer_norm_ref`]: `(dx, dγ, dβ)`, shaped like `x` and `γ`. With
/// `x̂ = (x − μ)·rstd` and `ĝ = dy ⊙ γ_g` per row: `dx = rstd·(ĝ − mean_D ĝ − x̂ ⊙ mean_D(ĝ ⊙ x̂))`;
/// `dγ_g = Σ dy ⊙ x̂` and `dβ_g = Σ dy` over the rows of group `g`.
pub fn layer_norm_backward_ref(
    x: &[f64],
    gamma: &[f64],
    dy: &[f64],
    d: usize,
    rows_per_group: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / d;
    let (mut dx, mut dgamma, mut dbeta) = (
        vec![0.0; x.len()],
        vec![0.0; gamma.len()],
        vec![0.0; gamma.len()],
    );
    for r in 0..rows {
        let (xr, dyr) = (&x[r * d..(r + 1) * d], &dy[r * d..(r + 1) * d]);
        let g = r / rows_per_group;
        let gr = &gamma[g * d..(g + 1) * d];
        let mean = xr.iter().sum::<f64>() / d as f64;
        let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|v| (v - mean) * rstd).collect();
        let ghat: Vec<f64> = dyr.iter().zip(gr).map(|(a, b)| a * b).collect();
        let mean_g = ghat.iter().sum::<f64>() / d as f64;
        let mean_gx = ghat.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for j in 0..d {
            dx[r * d + j] = rstd * (ghat[j] - mean_g - xhat[j] * mean_gx);
            dgamma[g * d + j] += dyr[j] * xhat[j];
            dbeta[g * d + j] += dyr[j];
        }
    }
    (dx, dgamma, dbeta)
}

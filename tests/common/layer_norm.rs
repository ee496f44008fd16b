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

//! f64 references for the spectral_norm family (ViTGAN's improved spectral normalisation).
//! Weights are row-major `[out, in]`.

fn normalized(x: Vec<f64>) -> Vec<f64> {
    let n = x.iter().map(|v| v * v).sum::<f64>().sqrt();
    x.into_iter().map(|v| v / n).collect()
}

/// `Wᵀu` for `W: [out, in]`.
pub fn transposed_matvec(w: &[f64], out: usize, inp: usize, u: &[f64]) -> Vec<f64> {
    let mut v = vec![0.0; inp];
    for i in 0..out {
        for j in 0..inp {
            v[j] += w[i * inp + j] * u[i];
        }
    }
    v
}

/// `W v` for `W: [out, in]`.
pub fn matvec(w: &[f64], out: usize, inp: usize, v: &[f64]) -> Vec<f64> {
    (0..out)
        .map(|i| (0..inp).map(|j| w[i * inp + j] * v[j]).sum())
        .collect()
}

/// `iters` power iterations `v = normalize(Wᵀu)`, `u = normalize(W v)`; returns `(u, v, σ = uᵀ W v)`.
pub fn power_iteration_ref(
    w: &[f64],
    out: usize,
    inp: usize,
    u0: &[f64],
    iters: usize,
) -> (Vec<f64>, Vec<f64>, f64) {
    let mut u = u0.to_vec();
    let mut v = vec![0.0; inp];
    for _ in 0..iters {
        v = normalized(transposed_matvec(w, out, inp, &u));
        u = normalized(matvec(w, out, inp, &v));
    }
    let wv = matvec(w, out, inp, &v);
    let sigma = u.iter().zip(&wv).map(|(a, b)| a * b).sum();
    (u, v, sigma)
}

/// Largest singular value of `W: [out, in]`: the top eigenvalue of the smaller Gram matrix `M`
/// (`W Wᵀ` or `Wᵀ W`), found by squaring `M` twelve times (power 4096) and taking the Rayleigh
/// quotient of its dominant column.
pub fn top_singular_value(w: &[f64], out: usize, inp: usize) -> f64 {
    let (n, gram): (usize, Vec<f64>) = if out <= inp {
        let mut m = vec![0.0; out * out];
        for a in 0..out {
            for b in 0..out {
                m[a * out + b] = (0..inp).map(|j| w[a * inp + j] * w[b * inp + j]).sum();
            }
        }
        (out, m)
    } else {
        let mut m = vec![0.0; inp * inp];
        for i in 0..out {
            let row = &w[i * inp..(i + 1) * inp];
            for a in 0..inp {
                for b in 0..inp {
                    m[a * inp + b] += row[a] * row[b];
                }
            }
        }
        (inp, m)
    };
    let mut p = gram.clone();
    for _ in 0..12 {
        let mut q = vec![0.0; n * n];
        for a in 0..n {
            for k in 0..n {
                let pak = p[a * n + k];
                if pak == 0.0 {
                    continue;
                }
                for b in 0..n {
                    q[a * n + b] += pak * p[k * n + b];
                }
            }
        }
        let scale = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        p = q.into_iter().map(|v| v / scale).collect();
    }
    let col = (0..n)
        .max_by(|&a, &b| {
            let na: f64 = (0..n).map(|r| p[r * n + a].powi(2)).sum();
            let nb: f64 = (0..n).map(|r| p[r * n + b].powi(2)).sum();
            na.total_cmp(&nb)
        })
        .unwrap();
    let x: Vec<f64> = (0..n).map(|r| p[r * n + col]).collect();
    let mx: Vec<f64> = (0..n)
        .map(|a| (0..n).map(|b| gram[a * n + b] * x[b]).sum())
        .collect();
    let lambda =
        x.iter().zip(&mx).map(|(a, b)| a * b).sum::<f64>() / x.iter().map(|v| v * v).sum::<f64>();
    lambda.sqrt()
}

/// `W̄ = σ0 · W / (uᵀ W v)` with `u`, `v` held constant.
pub fn spectral_normalize_ref(
    w: &[f64],
    out: usize,
    inp: usize,
    u: &[f64],
    v: &[f64],
    sigma0: f64,
) -> Vec<f64> {
    let wv = matvec(w, out, inp, v);
    let sigma: f64 = u.iter().zip(&wv).map(|(a, b)| a * b).sum();
    w.iter().map(|x| sigma0 * x / sigma).collect()
}

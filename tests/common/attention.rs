//! f64 references for the attention family. Layout: q, k, v, out are [heads, L, Dh] row-major
//! (heads = B·H); lse is [heads, L]. c = 1/√Dh.
//!   dot: s_ij = c q_i·k_j        L2: s_ij = −c ‖q_i − k_j‖²
//!   P = softmax_j(s), out_i = Σ_j P_ij v_j, lse_i = log Σ_j exp(s_ij).

use vitgan::ops::attention::AttentionKind;

/// Sizes of one problem.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub heads: usize,
    pub seq_len: usize,
    pub head_dim: usize,
}

impl Dims {
    pub fn new(heads: usize, seq_len: usize, head_dim: usize) -> Dims {
        Dims {
            heads,
            seq_len,
            head_dim,
        }
    }
    /// Elements of q (= k = v = out).
    pub fn numel(&self) -> usize {
        self.heads * self.seq_len * self.head_dim
    }
    fn scale(&self) -> f64 {
        1.0 / (self.head_dim as f64).sqrt()
    }
}

/// s_ij for one query row and one key row, computed directly from the definition.
fn score(q: &[f64], k: &[f64], c: f64, kind: AttentionKind) -> f64 {
    match kind {
        AttentionKind::Dot => c * q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>(),
        AttentionKind::L2 => -c * q.iter().zip(k).map(|(a, b)| (a - b) * (a - b)).sum::<f64>(),
    }
}

/// The attention probabilities of one head, [L, L].
fn probs(q: &[f64], k: &[f64], d: Dims, kind: AttentionKind) -> (Vec<f64>, Vec<f64>) {
    let (l, dh, c) = (d.seq_len, d.head_dim, d.scale());
    let mut p = vec![0.0; l * l];
    let mut lse = vec![0.0; l];
    for i in 0..l {
        let row: Vec<f64> = (0..l)
            .map(|j| score(&q[i * dh..(i + 1) * dh], &k[j * dh..(j + 1) * dh], c, kind))
            .collect();
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|x| (x - m).exp()).sum();
        for j in 0..l {
            p[i * l + j] = (row[j] - m).exp() / s;
        }
        lse[i] = m + s.ln();
    }
    (p, lse)
}

/// (out, lse).
pub fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    d: Dims,
    kind: AttentionKind,
) -> (Vec<f64>, Vec<f64>) {
    let (l, dh) = (d.seq_len, d.head_dim);
    let per = l * dh;
    let mut out = vec![0.0; d.numel()];
    let mut lse = vec![0.0; d.heads * l];
    for h in 0..d.heads {
        let r = h * per..(h + 1) * per;
        let (p, hl) = probs(&q[r.clone()], &k[r.clone()], d, kind);
        lse[h * l..(h + 1) * l].copy_from_slice(&hl);
        let vh = &v[r.clone()];
        let oh = &mut out[r];
        for i in 0..l {
            for j in 0..l {
                let pij = p[i * l + j];
                for e in 0..dh {
                    oh[i * dh + e] += pij * vh[j * dh + e];
                }
            }
        }
    }
    (out, lse)
}

/// Analytic (dq, dk, dv) given dout, straight from the definition:
/// dv_j = Σ_i P_ij dout_i, dS_ij = P_ij (dout_i·v_j − Σ_j' P_ij' dout_i·v_j'),
/// dq_i = Σ_j dS_ij ∂s_ij/∂q_i, dk_j = Σ_i dS_ij ∂s_ij/∂k_j with
/// dot: ∂s/∂q_i = c k_j, ∂s/∂k_j = c q_i;  L2: ∂s/∂q_i = −2c (q_i − k_j), ∂s/∂k_j = 2c (q_i − k_j).
pub fn attention_backward_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
    d: Dims,
    kind: AttentionKind,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (l, dh, c) = (d.seq_len, d.head_dim, d.scale());
    let per = l * dh;
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; d.numel()],
        vec![0.0; d.numel()],
        vec![0.0; d.numel()],
    );
    for h in 0..d.heads {
        let o = h * per;
        let (qh, kh, vh, gh) = (
            &q[o..o + per],
            &k[o..o + per],
            &v[o..o + per],
            &dout[o..o + per],
        );
        let (p, _) = probs(qh, kh, d, kind);
        for i in 0..l {
            let dp: Vec<f64> = (0..l)
                .map(|j| (0..dh).map(|e| gh[i * dh + e] * vh[j * dh + e]).sum())
                .collect();
            let mean: f64 = (0..l).map(|j| p[i * l + j] * dp[j]).sum();
            for j in 0..l {
                let pij = p[i * l + j];
                let ds = pij * (dp[j] - mean);
                for e in 0..dh {
                    dv[o + j * dh + e] += pij * gh[i * dh + e];
                    let (qe, ke) = (qh[i * dh + e], kh[j * dh + e]);
                    let (sq, sk) = match kind {
                        AttentionKind::Dot => (c * ke, c * qe),
                        AttentionKind::L2 => (-2.0 * c * (qe - ke), 2.0 * c * (qe - ke)),
                    };
                    dq[o + i * dh + e] += ds * sq;
                    dk[o + j * dh + e] += ds * sk;
                }
            }
        }
    }
    (dq, dk, dv)
}

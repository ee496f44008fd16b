//! What a run looks like from the inside, for `metrics.jsonl`: D's logits on real and generated
//! images and how well they rank, both networks' gradient norms, and per-block statistics of D's
//! attention (how much a token attends to itself, how spread its attention is).

use super::Trainer;
use crate::autodiff::Tape;
use crate::error::Result;
use crate::ops::attention::AttentionKind;
use crate::ops::{elementwise, reduce};
use crate::tensor::Tensor;

/// `Σ_p ‖g_p‖²` over a list of gradients, as a `[1]` tensor on the GPU (read it when logging).
pub fn squared_norm(grads: &[(String, Tensor)]) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    for (_, g) in grads {
        let sq = reduce::sum_all(&elementwise::unary(g, elementwise::Unary::Square)?)?;
        total = Some(match total {
            Some(t) => elementwise::add(&t, &sq)?,
            None => sq,
        });
    }
    Ok(total)
}

/// Summary of D's logits on a real and a generated batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogitStats {
    /// Mean logit on real images.
    pub real: f64,
    /// Mean logit on generated images.
    pub fake: f64,
    /// Fraction of (real, generated) pairs where the real image gets the higher logit (½ = chance;
    /// ties count ½): the AUC of D as a classifier.
    pub ranking: f64,
}

impl LogitStats {
    /// From the two batches' logits.
    pub fn new(real: &[f32], fake: &[f32]) -> LogitStats {
        let mean = |v: &[f32]| v.iter().map(|x| *x as f64).sum::<f64>() / v.len().max(1) as f64;
        let mut wins = 0.0;
        for r in real {
            for f in fake {
                wins += if r > f {
                    1.0
                } else if r == f {
                    0.5
                } else {
                    0.0
                };
            }
        }
        LogitStats {
            real: mean(real),
            fake: mean(fake),
            ranking: wins / (real.len() * fake.len()).max(1) as f64,
        }
    }
}

/// One block's attention, averaged over images, heads and query tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionStats {
    /// Mean weight a token puts on itself, `mean_i A_ii`.
    pub self_share: f64,
    /// The class token's weight on itself, `A_00` (it reads the patches through `1 − A_00`).
    pub class_self_share: f64,
    /// Mean entropy `−Σ_j A_ij ln A_ij` of a row, divided by `ln L` (0 = one-hot, 1 = uniform).
    pub entropy: f64,
}

/// Statistics of the softmax rows of scores `[B, H, L, L]` (row-major on the host).
pub fn attention_stats(scores: &[f32], len: usize) -> AttentionStats {
    let (mut self_share, mut class_self, mut entropy) = (0f64, 0f64, 0f64);
    let rows = scores.len() / len;
    let mut p = vec![0f64; len];
    for (r, row) in scores.chunks_exact(len).enumerate() {
        let i = r % len;
        let max = row.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
        let mut z = 0f64;
        for (pj, s) in p.iter_mut().zip(row) {
            *pj = (*s as f64 - max).exp();
            z += *pj;
        }
        let mut h = 0f64;
        for pj in &mut p {
            *pj /= z;
            if *pj > 0.0 {
                h -= *pj * pj.ln();
            }
        }
        self_share += p[i];
        if i == 0 {
            class_self += p[0];
        }
        entropy += h;
    }
    let heads_and_images = (rows / len).max(1) as f64;
    AttentionStats {
        self_share: self_share / rows.max(1) as f64,
        class_self_share: class_self / heads_and_images,
        entropy: entropy / rows.max(1) as f64 / (len as f64).ln().max(1e-12),
    }
}

/// Pre-softmax attention scores `[B, H, L, L]` on the host from `q`, `k` `[B, H, L, Dh]`:
/// `c q_i·k_j` (dot) or `−c ‖q_i − k_j‖²` (L2), `c = 1/√Dh`, as the fused kernels define them.
pub fn scores(q: &[f32], k: &[f32], len: usize, dh: usize, kind: AttentionKind) -> Vec<f32> {
    let c = 1.0 / (dh as f64).sqrt();
    let mut out = Vec::with_capacity(q.len() / dh * len);
    for (qb, kb) in q.chunks_exact(len * dh).zip(k.chunks_exact(len * dh)) {
        for qi in qb.chunks_exact(dh) {
            for kj in kb.chunks_exact(dh) {
                let s: f64 = match kind {
                    AttentionKind::Dot => {
                        qi.iter()
                            .zip(kj)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * c
                    }
                    AttentionKind::L2 => {
                        -c * qi
                            .iter()
                            .zip(kj)
                            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                            .sum::<f64>()
                    }
                };
                out.push(s as f32);
            }
        }
    }
    out
}

impl Trainer {
    /// Per block of D, the attention statistics on `images` (`[n, H, W, C]`; no augmentation, no
    /// power iteration).
    pub fn d_attention_stats(&self, images: &Tensor) -> Result<Vec<AttentionStats>> {
        let tape = Tape::new(&self.gpu);
        tape.set_power_iterations(0);
        tape.no_grad(|| {
            let x = tape.constant(images.clone());
            let net = &self.model.discriminator;
            let dh = net.width / net.heads;
            let len = self.model.d_tokens() + 1;
            let mut out = Vec::new();
            for (q, k) in self.discriminator.attention_inputs(&tape, x)? {
                let (q, k) = (tape.value(q).to_vec()?, tape.value(k).to_vec()?);
                let s = scores(&q, &k, len, dh, self.model.d_attention);
                out.push(attention_stats(&s, len));
            }
            Ok(out)
        })
    }
}

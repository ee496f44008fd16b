//! Tape ops of the `attention` kernel family (kernels and launchers in `crate::ops::attention`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::gpu::overrides;
use crate::ops::attention::*;
use crate::ops::elementwise;
use crate::ops::matmul::Activation;
use crate::tensor::Tensor;

impl Tape {
    /// Multi-head attention of `[B, H, L, Dh]` queries, keys and values: the fused kernels
    /// ([`Tape::attention_fused`]), or the composition of primitive ops ([`attention_unfused`])
    /// where `VITGAN_ATTENTION_KERNEL=composed` asks for it: see [`composes_attention`].
    pub fn attention(&self, q: Var, k: Var, v: Var, kind: AttentionKind) -> Result<Var> {
        if composes_attention(&self.value(q)) {
            return attention_unfused(self, q, k, v, kind);
        }
        self.attention_fused(q, k, v, kind)
    }

    /// Fused multi-head attention (see [`attention_forward`]), whatever the adapter.
    pub fn attention_fused(&self, q: Var, k: Var, v: Var, kind: AttentionKind) -> Result<Var> {
        let (qv, kv, vv) = (self.value(q), self.value(k), self.value(v));
        let (out, lse) = attention_forward(&qv, &kv, &vv, kind)?;
        let saved_out = out.clone();
        let needs = [q, k, v].map(|x| self.requires_grad(x));
        Ok(self.record(out, &[q, k, v], move |g| {
            // the kernels produce all three together; inputs that need none get none
            let (dq, dk, dv) = attention_backward(&qv, &kv, &vv, &saved_out, &lse, g, kind)?;
            Ok([dq, dk, dv]
                .into_iter()
                .zip(needs)
                .map(|(grad, need)| need.then_some(grad))
                .collect())
        }))
    }

    /// L2 attention with tied projections, `k = q`: `out_i = Σ_j softmax_j(−‖q_i − q_j‖²/√Dh) v_j`.
    /// The gradient reaching `q` is the sum of its query and key roles, `dq + dk`.
    /// Composed from primitive ops where [`composes_attention`] says so, else
    /// [`Tape::l2_attention_tied_fused`].
    pub fn l2_attention_tied(&self, q: Var, v: Var) -> Result<Var> {
        if composes_attention(&self.value(q)) {
            return attention_unfused(self, q, q, v, AttentionKind::L2);
        }
        self.l2_attention_tied_fused(q, v)
    }

    /// Tied L2 attention on the fused kernels, whatever the adapter.
    pub fn l2_attention_tied_fused(&self, q: Var, v: Var) -> Result<Var> {
        let (qv, vv) = (self.value(q), self.value(v));
        let (out, lse) = attention_forward(&qv, &qv, &vv, AttentionKind::L2)?;
        let saved_out = out.clone();
        let (need_q, need_v) = (self.requires_grad(q), self.requires_grad(v));
        Ok(self.record(out, &[q, v], move |g| {
            let (dq, dk, dv) =
                attention_backward(&qv, &qv, &vv, &saved_out, &lse, g, AttentionKind::L2)?;
            let dq = if need_q {
                Some(elementwise::add(&dq, &dk)?)
            } else {
                None
            };
            Ok(vec![dq, need_v.then_some(dv)])
        }))
    }

    /// Multi-head attention of a packed projection `qkv` `[B, L, parts · H · Dh]` (tied L2: parts
    /// `q, v` with `k = q`; dot product: `q, k, v`; see [`AttentionKind::packed_parts`]) →
    /// `[B, L, H · Dh]`, the heads side by side. Where the lanes kernels run
    /// ([`Packed::runs_packed`]) they read the heads in place and write the output merged
    /// ([`attention_packed_forward`]): no copies, the same bits. Elsewhere (and with
    /// `VITGAN_ATTENTION_KERNEL=composed`) the heads are split by copies ([`Tape::split_heads`]),
    /// attended by [`Tape::attention`] / [`Tape::l2_attention_tied`] and merged again.
    pub fn attention_packed(&self, qkv: Var, heads: usize, kind: AttentionKind) -> Result<Var> {
        let value = self.value(qkv);
        let p = Packed::of(&value, heads, kind)?;
        if composition_requested() || !p.runs_packed(value.gpu()) {
            let (q, k, v) = self.split_heads(qkv, heads, kind)?;
            let o = match kind {
                AttentionKind::L2 => self.l2_attention_tied(q, v)?,
                AttentionKind::Dot => self.attention(q, k, v, AttentionKind::Dot)?,
            };
            let o = self.permute(o, &[0, 2, 1, 3])?; // [B, L, H, Dh]
            return self.reshape(o, &[p.batch, p.seq_len, p.heads * p.head_dim]);
        }
        let (out, lse) = attention_packed_forward(&value, &p)?;
        let saved_out = out.clone();
        Ok(self.record(out, &[qkv], move |g| {
            Ok(vec![Some(attention_packed_backward(
                &value, &saved_out, &lse, g, &p,
            )?)])
        }))
    }

    /// The heads of a packed projection `qkv` `[B, L, parts · H · Dh]` as `(q, k, v)`, each
    /// `[B, H, L, Dh]` (copies; `k` is `q` for tied L2).
    pub fn split_heads(
        &self,
        qkv: Var,
        heads: usize,
        kind: AttentionKind,
    ) -> Result<(Var, Var, Var)> {
        let p = Packed::of(&self.value(qkv), heads, kind)?;
        let (bsz, len, h, dh) = (p.batch, p.seq_len, p.heads, p.head_dim);
        let parts = kind.packed_parts();
        let x = self.reshape(qkv, &[bsz, len, parts, h, dh])?;
        let x = self.permute(x, &[2, 0, 3, 1, 4])?; // [parts, B, H, L, Dh]
        let part = |i: usize| -> Result<Var> {
            let t = self.slice(x, 0, i, 1)?;
            self.reshape(t, &[bsz, h, len, dh])
        };
        Ok(match kind {
            AttentionKind::L2 => {
                let q = part(0)?;
                (q, q, part(1)?)
            }
            AttentionKind::Dot => (part(0)?, part(1)?, part(2)?),
        })
    }
}

/// Whether attention runs as the composition of primitive ops rather than the fused kernels: only
/// when `VITGAN_ATTENTION_KERNEL=composed` asks for it (and the `[B, H, L, L]` scores of `q`,
/// `[B, H, L, Dh]`, fit one binding). Measured on lavapipe (2 cores) at the `tiny` preset's shape,
/// B64 H4 L17 Dh16, where the CPU adapters run the tiled kernels (the subgroup kernels exist for
/// head width 64 only): tiled 20.8–31.7 ms forward and 68–103 ms forward + backward over every tile
/// shape tried, composed 13.2–13.8 ms and 39–48 ms (`cargo bench --bench model -- attention`); a
/// whole `tiny` training run is 1.42× faster composed. It is not the default because two 1,000-step
/// Fashion-MNIST runs with it ended with worse samples than the fused path's (README, *Recipe*),
/// which is not understood yet: the function is the same (tested against the f64 reference), the
/// rounding is not.
pub fn composes_attention(q: &Tensor) -> bool {
    if !composition_requested() {
        return false;
    }
    let [b, h, l, _] = q.shape()[..] else {
        return false;
    };
    q.gpu().fits_one_buffer((b * h * l * l * 4) as u64)
}

/// Whether `VITGAN_ATTENTION_KERNEL=composed` asks for attention composed from primitive ops.
fn composition_requested() -> bool {
    overrides::value("VITGAN_ATTENTION_KERNEL").as_deref() == Some("composed")
}

/// The same attention composed from primitive tape ops, materialising the `[B, H, L, L]` scores with a
/// matmul (L2 as `c(2 q·kᵀ − ‖q‖² − ‖k‖²)`): the reference path for tests and benchmarks.
pub fn attention_unfused(tape: &Tape, q: Var, k: Var, v: Var, kind: AttentionKind) -> Result<Var> {
    let dims = check_qkv(
        "attention_unfused",
        &tape.value(q),
        &tape.value(k),
        &tape.value(v),
    )?;
    let shape = tape.shape(q);
    let c = 1.0 / (dims.head_dim as f32).sqrt();
    let qk = tape.matmul_fused(q, k, None, false, true, Activation::None)?;
    let scores = match kind {
        AttentionKind::Dot => tape.scale(qk, c)?,
        AttentionKind::L2 => {
            let q_sq = tape.mul(q, q)?;
            let q_sq = tape.sum_axis(q_sq, 3, true)?; // [B, H, L, 1]
            let k_sq = tape.mul(k, k)?;
            let k_sq = tape.sum_axis(k_sq, 3, true)?;
            let k_sq = tape.reshape(k_sq, &[shape[0], shape[1], 1, shape[2]])?;
            let s = tape.scale(qk, 2.0 * c)?;
            let q_term = tape.scale(q_sq, c)?;
            let s = tape.sub(s, q_term)?;
            let k_term = tape.scale(k_sq, c)?;
            tape.sub(s, k_term)?
        }
    };
    let probs = tape.softmax(scores)?;
    tape.matmul(probs, v)
}

//! Tape ops of the `inr` kernel families (kernels and launchers in `crate::ops::inr` and
//! `crate::ops::inr_sine`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::ops::elementwise::Unary;
use crate::ops::inr::*;
use crate::ops::inr_sine::{inr_sine_backward, inr_sine_forward, inr_sine_supported};
use crate::ops::matmul::Activation;

impl Tape {
    /// `s2 ⊙ sin(d1 ⊙ x + b1)` on the tape: `x` [N, T, H], `d1` and `s2` [N, H] broadcast over the
    /// T pixels, `b1` [H] (one kernel each way; see [`inr_sine_forward`]).
    pub fn inr_sine(&self, x: Var, d1: Var, b1: Var, s2: Var) -> Result<Var> {
        let [xv, d1v, b1v, s2v] = [x, d1, b1, s2].map(|v| self.value(v));
        let out = inr_sine_forward(&xv, &d1v, &b1v, &s2v)?;
        Ok(self.record(out, &[x, d1, b1, s2], move |g| {
            let gr = inr_sine_backward(&xv, &d1v, &b1v, &s2v, g)?;
            Ok(vec![Some(gr.dx), Some(gr.dd1), Some(gr.db1), Some(gr.ds2)])
        }))
    }

    /// The fused INR patch decoder on the tape: `e` [T, F], `s1` [N, F], `s2` [N, Hd], `w1` [Hd, F],
    /// `b1` [Hd], `w2` [C, Hd], `b2` [C] → [N, T, C] (see [`inr_forward`]); the output layer is
    /// demodulated when `demodulate_output`.
    #[allow(clippy::too_many_arguments)]
    pub fn inr_decode(
        &self,
        e: Var,
        s1: Var,
        s2: Var,
        w1: Var,
        b1: Var,
        w2: Var,
        b2: Var,
        demodulate_output: bool,
    ) -> Result<Var> {
        let [ev, s1v, s2v, w1v, b1v, w2v, b2v] = [e, s1, s2, w1, b1, w2, b2].map(|v| self.value(v));
        let out = inr_forward(
            &ev,
            &s1v,
            &s2v,
            &InrWeights {
                w1: &w1v,
                b1: &b1v,
                w2: &w2v,
                b2: &b2v,
                demodulate_output,
            },
        )?;
        Ok(self.record(out, &[e, s1, s2, w1, b1, w2, b2], move |g| {
            let weights = InrWeights {
                w1: &w1v,
                b1: &b1v,
                w2: &w2v,
                b2: &b2v,
                demodulate_output,
            };
            let gr = inr_backward(&ev, &s1v, &s2v, &weights, g)?;
            Ok(vec![
                Some(gr.de),
                Some(gr.ds1),
                Some(gr.ds2),
                Some(gr.dw1),
                Some(gr.db1),
                Some(gr.dw2),
                Some(gr.db2),
            ])
        }))
    }
}

/// The same decoder composed from primitive tape ops (the reference path for the fused kernel).
/// Modulating a weight's input channels is the same as scaling the input activations, and
/// `Σ_i (W_{o,i} s_i)² = (s² · (W²)ᵀ)_o`, so no per-patch weight is materialised:
/// `x = (E ⊙ s1) · W1ᵀ`, `h = sin(x ⊙ d1 + b1)`, `out = ((h ⊙ s2) · W2ᵀ) ⊙ d2 + b2` (`d2 = 1` unless
/// `demodulate_output`).
#[allow(clippy::too_many_arguments)]
pub fn inr_decode_unfused(
    tape: &Tape,
    e: Var,
    s1: Var,
    s2: Var,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
    demodulate_output: bool,
) -> Result<Var> {
    let (ev, s1v, s2v) = (tape.value(e), tape.value(s1), tape.value(s2));
    let weights = [w1, b1, w2, b2].map(|v| tape.value(v));
    let d = dims(
        "inr_decode_unfused",
        &ev,
        &s1v,
        &s2v,
        &InrWeights {
            w1: &weights[0],
            b1: &weights[1],
            w2: &weights[2],
            b2: &weights[3],
            demodulate_output,
        },
    )?;
    let (n, t, f, hd, c) = (d.patches, d.pixels, d.features, d.hidden, d.channels);
    // d = 1/√(s² · (W²)ᵀ + ε), per patch and output row
    let demodulation = |s: Var, w: Var| -> Result<Var> {
        let s_sq = tape.unary(s, Unary::Square)?;
        let w_sq = tape.unary(w, Unary::Square)?;
        let ss = tape.matmul_fused(s_sq, w_sq, None, false, true, Activation::None)?;
        let ss = tape.affine(ss, 1.0, DEMOD_EPS)?;
        let norm = tape.unary(ss, Unary::Sqrt)?;
        tape.unary(norm, Unary::Recip)
    };
    // layer 1
    // (rank-2 matmuls: a weight shared across a batch would get a per-batch gradient in the backward)
    let e3 = tape.reshape(e, &[1, t, f])?;
    let s1_3 = tape.reshape(s1, &[n, 1, f])?;
    let u = tape.mul(e3, s1_3)?; // [N, T, F]
    let u = tape.reshape(u, &[n * t, f])?;
    let x = tape.matmul_fused(u, w1, None, false, true, Activation::None)?; // [N·T, Hd]
    let x = tape.reshape(x, &[n, t, hd])?;
    let d1 = demodulation(s1, w1)?; // [N, Hd]
    // h = sin(x ⊙ d1 + b1), then modulated by s2 for layer 2: one kernel where it applies
    // (`VITGAN_INR_SINE=off` composes it from elementwise ops, for comparisons)
    let fused = std::env::var("VITGAN_INR_SINE").map_or(true, |v| v.trim() != "off");
    let hs = if fused && inr_sine_supported(t, hd) {
        tape.inr_sine(x, d1, b1, s2)?
    } else {
        let d1 = tape.reshape(d1, &[n, 1, hd])?;
        let z = tape.add(tape.mul(x, d1)?, b1)?;
        let h = tape.unary(z, Unary::Sin)?;
        tape.mul(h, tape.reshape(s2, &[n, 1, hd])?)?
    };
    // layer 2
    let hs = tape.reshape(hs, &[n * t, hd])?;
    let y = tape.matmul_fused(hs, w2, None, false, true, Activation::None)?; // [N·T, C]
    let y = tape.reshape(y, &[n, t, c])?;
    let out = if demodulate_output {
        let d2 = demodulation(s2, w2)?; // [N, C]
        tape.mul(y, tape.reshape(d2, &[n, 1, c])?)?
    } else {
        y
    };
    tape.add(out, b2)
}

//! Tape ops of the `inr` kernel family (kernels and launchers in `crate::ops::inr`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::ops::elementwise::Unary;
use crate::ops::inr::*;
use crate::ops::matmul::Activation;

impl Tape {
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
    let d1 = tape.reshape(d1, &[n, 1, hd])?;
    let z = tape.mul(x, d1)?;
    let z = tape.add(z, b1)?;
    let h = tape.unary(z, Unary::Sin)?;
    // layer 2
    let s2_3 = tape.reshape(s2, &[n, 1, hd])?;
    let hs = tape.mul(h, s2_3)?;
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

//! DiffAugment-style differentiable augmentation on the tape: colour (brightness, saturation, contrast)
//! composed from elementwise/reduction ops, then translation + scaling + cutout in one gather kernel.
//! Gradients flow back through all of it to the generator.

use crate::autodiff::{Tape, Var};
use crate::error::Result;
pub use crate::ops::augment::AugmentOps;
use crate::ops::augment::{augment_params, geometric_backward, geometric_forward};
use crate::ops::layout;

/// Augment NHWC images `x` with parameters drawn from `seed`, each op of `ops` applied with probability `prob`.
///
/// With per-sample β (brightness), s (saturation), c (contrast):
///   x₁ = x + β;  x₂ = (x₁ − mean_c x₁)·s + mean_c x₁;  x₃ = (x₂ − mean x₂)·c + mean x₂
/// then the geometric part (see `shaders/augment.wgsl`).
pub fn diff_augment(tape: &Tape, x: Var, seed: u32, prob: f32, ops: AugmentOps) -> Result<Var> {
    let shape = tape.shape(x);
    let params = augment_params(tape.gpu(), &shape, seed, prob, ops)?;
    let b = shape[0];
    let column = |k: usize| -> Result<Var> {
        Ok(tape.constant(layout::slice(&params, 1, k, 1)?.reshape(&[b, 1, 1, 1])?))
    };
    let (brightness, saturation, contrast) = (column(0)?, column(1)?, column(2)?);
    let x1 = tape.add(x, brightness)?;
    let channel_mean = tape.mean_axis(x1, 3, true)?;
    let x2 = tape.add(
        tape.mul(tape.sub(x1, channel_mean)?, saturation)?,
        channel_mean,
    )?;
    let flat = tape.reshape(x2, &[b, shape[1..].iter().product()])?;
    let image_mean = tape.reshape(tape.mean_axis(flat, 1, true)?, &[b, 1, 1, 1])?;
    let x3 = tape.add(tape.mul(tape.sub(x2, image_mean)?, contrast)?, image_mean)?;
    let y = geometric_forward(&params, &tape.value(x3))?;
    Ok(tape.record(y, &[x3], move |g| {
        Ok(vec![Some(geometric_backward(&params, g)?)])
    }))
}

//! Differentiable augmentation kernels (`shaders/augment.wgsl`): random per-sample parameters from a
//! counter-based hash, and the geometric part (translation, scaling, cutout) with its exact transpose.
//! The colour part (brightness, saturation, contrast) is composed from tape ops in `train::augment`.

use super::{grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("augment");

/// Floats per sample in the parameter tensor (layout in the WGSL header).
pub const PARAMS_PER_SAMPLE: usize = 12;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    seed: u32,
    prob: f32,
    ops: u32,
    _pad: u32,
}

/// Which augmentation ops [`augment_params`] may apply (bit flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentOps(pub u32);

impl AugmentOps {
    pub const BRIGHTNESS: AugmentOps = AugmentOps(1);
    pub const SATURATION: AugmentOps = AugmentOps(2);
    pub const CONTRAST: AugmentOps = AugmentOps(4);
    pub const TRANSLATION: AugmentOps = AugmentOps(8);
    pub const SCALE: AugmentOps = AugmentOps(16);
    pub const CUTOUT: AugmentOps = AugmentOps(32);
    /// DiffAugment's full set.
    pub const ALL: AugmentOps = AugmentOps(63);
    /// Geometric shifts only (translation and scaling), as bCR's transform.
    pub const SHIFT: AugmentOps = AugmentOps(8 | 16);
}

fn nhwc(op: &'static str, shape: &[usize]) -> Result<[usize; 4]> {
    match shape {
        &[b, h, w, c] => Ok([b, h, w, c]),
        _ => Err(Error::shape(
            op,
            format!("expects NHWC images [B, H, W, C], got {shape:?}"),
        )),
    }
}

/// Random augmentation parameters `[B, 12]` for images `[B, H, W, C]`: each op in `ops` is applied with
/// probability `prob`, the others are left neutral.
pub fn augment_params(
    gpu: &crate::Gpu,
    image_shape: &[usize],
    seed: u32,
    prob: f32,
    ops: AugmentOps,
) -> Result<Tensor> {
    let [b, h, w, c] = nhwc("augment_params", image_shape)?;
    let out = Tensor::empty(gpu, &[b, PARAMS_PER_SAMPLE])?;
    let params = Params {
        batch: b as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        seed,
        prob,
        ops: ops.0,
        _pad: 0,
    };
    gpu.dispatch(
        &SHADER,
        "augment_params",
        &[],
        bytemuck::bytes_of(&params),
        &[(out.buffer(), Access::ReadWrite)],
        [(b as u32).div_ceil(64), 1, 1],
    )?;
    Ok(out)
}

fn geometric(entry: &'static str, aug: &Tensor, src: &Tensor) -> Result<Tensor> {
    let [b, h, w, c] = nhwc(entry, src.shape())?;
    if aug.shape() != [b, PARAMS_PER_SAMPLE] {
        return Err(Error::shape(
            entry,
            format!("parameters {:?} for images {:?}", aug.shape(), src.shape()),
        ));
    }
    let out = Tensor::empty(src.gpu(), src.shape())?;
    let params = Params {
        batch: b as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        seed: 0,
        prob: 0.0,
        ops: 0,
        _pad: 0,
    };
    src.gpu().dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        &[
            (aug.buffer(), Access::Read),
            (src.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        grid_1d(src.numel(), 256),
    )?;
    Ok(out)
}

/// Translation + scaling (bilinear) + cutout of NHWC images with per-sample parameters `aug`.
pub fn geometric_forward(aug: &Tensor, img: &Tensor) -> Result<Tensor> {
    geometric("geometric_forward", aug, img)
}

/// The transpose of [`geometric_forward`] (gradient w.r.t. the input image).
pub fn geometric_backward(aug: &Tensor, dout: &Tensor) -> Result<Tensor> {
    geometric("geometric_backward", aug, dout)
}

//! Bilinear resizing of NHWC images (`shaders/resize.wgsl`), forward only, as PyTorch's
//! `interpolate(mode="bilinear", align_corners=False)`: per axis, with `scale = in/out`, output
//! coordinate `o` reads source position `s = max((o + ½)·scale − ½, 0)` and blends pixels
//! `⌊s⌋` and `min(⌊s⌋ + 1, in − 1)` with weights `1 − t`, `t`, `t = s − ⌊s⌋`.

use super::conv::check_index_range;
use super::patches::image_dims;
use super::{grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("resize");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    height: u32,
    width: u32,
    channels: u32,
    out_h: u32,
    out_w: u32,
    n: u32,
    scale_y: f32,
    scale_x: f32,
}

/// `[B, H, W, C]` → `[B, out_h, out_w, C]`, bilinear with half-pixel centres.
pub fn resize_bilinear(img: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    const OP: &str = "resize_bilinear";
    let [b, h, w, c] = image_dims(OP, img)?;
    if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
        return Err(Error::shape(
            OP,
            format!("cannot resize {h}×{w} to {out_h}×{out_w}: sizes must be at least 1"),
        ));
    }
    let shape = [b, out_h, out_w, c];
    check_index_range(OP, shape.iter().product())?;
    let out = Tensor::empty(img.gpu(), &shape)?;
    let params = Params {
        height: h as u32,
        width: w as u32,
        channels: c as u32,
        out_h: out_h as u32,
        out_w: out_w as u32,
        n: out.numel() as u32,
        scale_y: h as f32 / out_h as f32,
        scale_x: w as f32 / out_w as f32,
    };
    img.gpu().dispatch(
        &SHADER,
        "resize_bilinear",
        &[],
        bytemuck::bytes_of(&params),
        &[
            (img.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        grid_1d(out.numel(), 256),
    )?;
    Ok(out)
}

//! 2-D convolution of NHWC images (`shaders/conv.wgsl`) as im2col + our matmul: the receptive fields
//! are gathered into a column matrix `[B·OH·OW, kh·kw·C]`, multiplied by the weights
//! `[kh·kw·C, C_out]` with bias and activation fused into the matmul's epilogue:
//!
//! `out[b, oy, ox, co] = act(bias[co] + Σ_{ky, kx, c} img[b, oy·sy − py + ky, ox·sx − px + kx, c] ·
//! W[(ky·kw + kx)·C + c, co])`, zero outside the image.
//!
//! A 1×1 convolution at stride 1 without padding needs no gather: it is the matmul of the image seen
//! as `[B·H·W, C]`. Forward only (the Inception network of the metrics needs no gradient).

use super::matmul::{Activation, MatmulOptions, matmul_fused};
use super::patches::image_dims;
use super::{fits_loop_budget, grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("conv");

/// A sliding window over an image: kernel, stride and zero padding per axis (y, x). Shared by
/// convolution and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
}

impl Window2d {
    /// A `k × k` window at stride `s` with padding `p` on both axes.
    pub fn square(k: usize, s: usize, p: usize) -> Window2d {
        Window2d {
            kernel: [k, k],
            stride: [s, s],
            pad: [p, p],
        }
    }

    /// Output height and width for an `h × w` input: `(h + 2·py − kh)/sy + 1` (floor), likewise for
    /// `w`; an error when the window does not fit or a size is zero.
    pub fn output_size(&self, op: &'static str, h: usize, w: usize) -> Result<[usize; 2]> {
        let mut out = [0; 2];
        for (axis, size) in [h, w].into_iter().enumerate() {
            let (k, s, p) = (self.kernel[axis], self.stride[axis], self.pad[axis]);
            if k == 0 || s == 0 || size + 2 * p < k {
                return Err(Error::shape(
                    op,
                    format!(
                        "a {}×{} window at stride {:?} with padding {:?} does not fit a {h}×{w} image",
                        self.kernel[0], self.kernel[1], self.stride, self.pad
                    ),
                ));
            }
            out[axis] = (size + 2 * p - k) / s + 1;
        }
        Ok(out)
    }

    /// Whether the window is the identity gather (1×1, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }
}

/// Uniforms shared by `conv.wgsl` and `pool.wgsl` (same layout in both).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct WindowParams {
    height: u32,
    width: u32,
    channels: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_y: u32,
    stride_x: u32,
    pad_y: u32,
    pad_x: u32,
    out_h: u32,
    out_w: u32,
    n: u32,
}

impl WindowParams {
    pub(crate) fn new(img: [usize; 4], win: &Window2d, out: [usize; 2], n: usize) -> Self {
        WindowParams {
            height: img[1] as u32,
            width: img[2] as u32,
            channels: img[3] as u32,
            kernel_h: win.kernel[0] as u32,
            kernel_w: win.kernel[1] as u32,
            stride_y: win.stride[0] as u32,
            stride_x: win.stride[1] as u32,
            pad_y: win.pad[0] as u32,
            pad_x: win.pad[1] as u32,
            out_h: out[0] as u32,
            out_w: out[1] as u32,
            n: n as u32,
        }
    }
}

/// Refuses tensors whose element count does not fit the kernels' `u32` indices.
pub(crate) fn check_index_range(op: &'static str, elements: usize) -> Result<()> {
    if elements > u32::MAX as usize {
        return Err(Error::shape(
            op,
            format!(
                "{elements} output elements exceed the kernels' 32-bit indices; use a smaller batch"
            ),
        ));
    }
    Ok(())
}

/// `[B, H, W, C]` → `[B·OH·OW, kh·kw·C]`: every window of `win`, flattened in (ky, kx, channel)
/// order, zero outside the image.
pub fn im2col(img: &Tensor, win: &Window2d) -> Result<Tensor> {
    const OP: &str = "im2col";
    let dims = image_dims(OP, img)?;
    let [b, h, w, c] = dims;
    let out = win.output_size(OP, h, w)?;
    let shape = [b * out[0] * out[1], win.kernel[0] * win.kernel[1] * c];
    check_index_range(OP, shape[0] * shape[1])?;
    let cols = Tensor::empty(img.gpu(), &shape)?;
    // channels in multiples of 4: one invocation per window tap copies the pixel's C/4 vec4s
    // (C/4 ≤ the loop budget checked below); else one invocation per element
    let lanes = if c % 4 == 0 && fits_loop_budget(c / 4) {
        4
    } else {
        1
    };
    let vec_dims = [b, h, w, c / lanes];
    let items = if lanes == 4 {
        shape[0] * win.kernel[0] * win.kernel[1]
    } else {
        cols.numel()
    };
    img.gpu().dispatch(
        &SHADER,
        if lanes == 4 { "im2col_vec4" } else { "im2col" },
        &[],
        bytemuck::bytes_of(&WindowParams::new(vec_dims, win, out, items)),
        &[
            (img.buffer(), Access::Read),
            (cols.buffer(), Access::ReadWrite),
        ],
        grid_1d(items, 256),
    )?;
    Ok(cols)
}

/// `act(conv(img, weight) + bias)`: `img` `[B, H, W, C]`, `weight` `[kh·kw·C, C_out]` (rows in
/// (ky, kx, channel) order), `bias` `[C_out]` → `[B, OH, OW, C_out]`.
pub fn conv2d(
    img: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    win: &Window2d,
    act: Activation,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let [b, h, w, c] = image_dims(OP, img)?;
    let rows = win.kernel[0] * win.kernel[1] * c;
    let c_out = match *weight.shape() {
        [r, co] if r == rows => co,
        _ => {
            return Err(Error::shape(
                OP,
                format!(
                    "the weight must be [kh·kw·C, C_out] = [{rows}, C_out] for a {}×{} kernel over \
                     {c} channels, got {:?}",
                    win.kernel[0],
                    win.kernel[1],
                    weight.shape()
                ),
            ));
        }
    };
    let [oh, ow] = win.output_size(OP, h, w)?;
    check_index_range(OP, b * oh * ow * c_out.max(rows))?;
    let cols = if win.is_pointwise() {
        img.reshape(&[b * h * w, c])?
    } else {
        im2col(img, win)?
    };
    let (out, _) = matmul_fused(
        &cols,
        weight,
        MatmulOptions {
            bias,
            act,
            ..Default::default()
        },
    )?;
    out.reshape(&[b, oh, ow, c_out])
}

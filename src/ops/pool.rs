//! Max and average pooling of NHWC images (`shaders/pool.wgsl`), forward only:
//! `max_pool[b, oy, ox, c] = max_{(y, x) ∈ window ∩ image} img[b, y, x, c]` and
//! `avg_pool[b, oy, ox, c] = Σ_{(y, x) ∈ window ∩ image} img[b, y, x, c] / |window ∩ image|`, the
//! window of output `(oy, ox)` starting at `(oy·sy − py, ox·sx − px)`: PyTorch's `max_pool2d` and
//! `avg_pool2d(count_include_pad=False)` (padding never enters a maximum or a count).

use super::conv::{Window2d, WindowParams, check_index_range};
use super::patches::image_dims;
use super::{fits_loop_budget, grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("pool");

/// How the window's values combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// The mean over the window's pixels inside the image.
    Average,
}

/// `[B, H, W, C]` → `[B, OH, OW, C]` pooled over the windows of `win`.
pub fn pool2d(img: &Tensor, win: &Window2d, pool: Pool) -> Result<Tensor> {
    let op = match pool {
        Pool::Max => "max_pool",
        Pool::Average => "avg_pool",
    };
    let dims = image_dims(op, img)?;
    let [b, h, w, c] = dims;
    let out = win.output_size(op, h, w)?;
    if win.pad[0] >= win.kernel[0] || win.pad[1] >= win.kernel[1] {
        // a window wholly in the padding would have no pixel to pool
        return Err(Error::shape(
            op,
            format!(
                "padding {:?} must be smaller than the window {:?}",
                win.pad, win.kernel
            ),
        ));
    }
    // each output loops over its window (one CPU-loop-budget check, no split needed for pooling)
    let taps = win.kernel[0] * win.kernel[1];
    if !fits_loop_budget(1 + win.kernel[0] + taps) {
        return Err(Error::shape(
            op,
            format!("a {:?} window is too large for one invocation", win.kernel),
        ));
    }
    let shape = [b, out[0], out[1], c];
    check_index_range(op, shape.iter().product())?;
    let pooled = Tensor::empty(img.gpu(), &shape)?;
    // channels in multiples of 4: one invocation per output pixel loops over its C/4 vec4s
    let lanes = if c % 4 == 0 && fits_loop_budget(taps * c / 4) {
        4
    } else {
        1
    };
    let items = if lanes == 4 {
        b * out[0] * out[1]
    } else {
        pooled.numel()
    };
    img.gpu().dispatch(
        &SHADER,
        if lanes == 4 { "pool_vec4" } else { "pool" },
        &[("AVERAGE", f64::from(pool == Pool::Average))],
        bytemuck::bytes_of(&WindowParams::new([b, h, w, c / lanes], win, out, items)),
        &[
            (img.buffer(), Access::Read),
            (pooled.buffer(), Access::ReadWrite),
        ],
        grid_1d(items, 256),
    )?;
    Ok(pooled)
}

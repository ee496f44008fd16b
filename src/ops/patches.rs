//! Overlapping image patches (`shaders/patches.wgsl`): the discriminator's patch extraction, its
//! backward, and the generator's patches → image.
//!
//! Images are NHWC `[B, H, W, C]`. With patch size `P` and overlap `o` (ViTGAN: `o = P/2`), the grid has
//! `L = (H/P)·(W/P)` patches with stride `P`, numbered row-major; patch `l = gy·(W/P) + gx` is the
//! `K × K` window (`K = P + 2o`) starting at pixel `(gy·P − o, gx·P − o)`, zero outside the image,
//! flattened in (row, col, channel) order: output `[B, L, K²·C]`.
//! The backward is the transposed gather (overlapping windows add up), computed per image element.
//! With `o = 0` the backward is the exact inverse, which is what [`patches_to_image`] is.

use super::{grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("patches");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    height: u32,
    width: u32,
    channels: u32,
    patch: u32,
    overlap: u32,
    grid_w: u32,
    grid_h: u32,
    n: u32,
    _pad: [u32; 3],
}

/// Checked geometry of one patch grid.
struct Grid {
    img: [usize; 4],
    patch: usize,
    overlap: usize,
}

impl Grid {
    fn new(op: &'static str, img: [usize; 4], patch: usize, overlap: usize) -> Result<Grid> {
        let [_, h, w, _] = img;
        if patch == 0 {
            return Err(Error::shape(op, "the patch size must be at least 1"));
        }
        if h % patch != 0 || w % patch != 0 {
            return Err(Error::shape(
                op,
                format!(
                    "image height {h} and width {w} must both be divisible by the patch size {patch}"
                ),
            ));
        }
        Ok(Grid {
            img,
            patch,
            overlap,
        })
    }

    fn window(&self) -> usize {
        self.patch + 2 * self.overlap
    }

    fn cells(&self) -> usize {
        (self.img[1] / self.patch) * (self.img[2] / self.patch)
    }

    fn patches_shape(&self) -> [usize; 3] {
        let k = self.window();
        [self.img[0], self.cells(), k * k * self.img[3]]
    }

    fn params(&self, n: usize) -> Params {
        let [b, h, w, c] = self.img;
        Params {
            batch: b as u32,
            height: h as u32,
            width: w as u32,
            channels: c as u32,
            patch: self.patch as u32,
            overlap: self.overlap as u32,
            grid_w: (w / self.patch) as u32,
            grid_h: (h / self.patch) as u32,
            n: n as u32,
            _pad: [0; 3],
        }
    }
}

pub(crate) fn image_dims(op: &'static str, img: &Tensor) -> Result<[usize; 4]> {
    match *img.shape() {
        [b, h, w, c] => Ok([b, h, w, c]),
        _ => Err(Error::shape(
            op,
            format!("the image must be NHWC [B, H, W, C], got {:?}", img.shape()),
        )),
    }
}

fn launch(entry: &'static str, grid: &Grid, input: &Tensor, output: &Tensor) -> Result<()> {
    input.gpu().dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&grid.params(output.numel())),
        &[
            (input.buffer(), Access::Read),
            (output.buffer(), Access::ReadWrite),
        ],
        grid_1d(output.numel(), 256),
    )
}

/// `[B, H, W, C]` → `[B, L, (P+2o)²·C]`: the `L = (H/P)(W/P)` windows of size `P + 2o` at stride `P`,
/// zero-padded outside the image, each flattened in (row, col, channel) order.
pub fn extract_patches(img: &Tensor, patch: usize, overlap: usize) -> Result<Tensor> {
    let op = "extract_patches";
    let grid = Grid::new(op, image_dims(op, img)?, patch, overlap)?;
    let out = Tensor::empty(img.gpu(), &grid.patches_shape())?;
    launch("extract_patches", &grid, img, &out)?;
    Ok(out)
}

/// The transpose of [`extract_patches`]: `[B, L, (P+2o)²·C]` → `[B, H, W, C]`, each image element
/// receiving the sum of every patch value copied from it.
pub fn extract_patches_backward(
    dpatches: &Tensor,
    img_shape: [usize; 4],
    patch: usize,
    overlap: usize,
) -> Result<Tensor> {
    let op = "extract_patches_backward";
    let grid = Grid::new(op, img_shape, patch, overlap)?;
    if dpatches.shape() != grid.patches_shape() {
        return Err(Error::shape(
            op,
            format!(
                "patches {:?} do not match the image {img_shape:?} with patch {patch}, overlap \
                 {overlap} (expected {:?})",
                dpatches.shape(),
                grid.patches_shape()
            ),
        ));
    }
    let out = Tensor::empty(dpatches.gpu(), &img_shape)?;
    launch("extract_patches_backward", &grid, dpatches, &out)?;
    Ok(out)
}

/// The generator's inverse patching: `[B, L, P·P·C]` → `[B, h, w, C]` with
/// `img[b, y, x, ch] = patches[b, (y/P)·(w/P) + x/P, ((y mod P)·P + x mod P)·C + ch]`.
pub fn patches_to_image(patches: &Tensor, h: usize, w: usize, patch: usize) -> Result<Tensor> {
    let op = "patches_to_image";
    let (b, l, per_patch) = match *patches.shape() {
        [b, l, n] => (b, l, n),
        _ => {
            return Err(Error::shape(
                op,
                format!("patches must be [B, L, P·P·C], got {:?}", patches.shape()),
            ));
        }
    };
    if patch == 0 || per_patch % (patch * patch) != 0 {
        return Err(Error::shape(
            op,
            format!(
                "patches {:?}: the last axis {per_patch} is not P·P·C for patch size {patch}",
                patches.shape()
            ),
        ));
    }
    let img = [b, h, w, per_patch / (patch * patch)];
    let grid = Grid::new(op, img, patch, 0)?;
    if grid.cells() != l {
        return Err(Error::shape(
            op,
            format!(
                "patches {:?} hold {l} patches but a {h}×{w} image with patch size {patch} has {}",
                patches.shape(),
                grid.cells()
            ),
        ));
    }
    extract_patches_backward(patches, img, patch, 0)
}

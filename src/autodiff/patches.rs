//! Tape ops of the `patches` kernel family (kernels and launchers in `crate::ops::patches`).

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::ops::patches::*;

impl Tape {
    /// Overlapping patches `[B, H, W, C]` → `[B, L, (P+2o)²·C]` (see [`extract_patches`]).
    pub fn extract_patches(&self, img: Var, patch: usize, overlap: usize) -> Result<Var> {
        let value = self.value(img);
        let y = extract_patches(&value, patch, overlap)?;
        let shape = image_dims("extract_patches", &value)?;
        Ok(self.record(y, &[img], move |g| {
            Ok(vec![Some(extract_patches_backward(
                g, shape, patch, overlap,
            )?)])
        }))
    }

    /// Patches `[B, L, P·P·C]` → image `[B, h, w, C]` (see [`patches_to_image`]).
    pub fn patches_to_image(&self, patches: Var, h: usize, w: usize, patch: usize) -> Result<Var> {
        let y = patches_to_image(&self.value(patches), h, w, patch)?;
        Ok(self.record(y, &[patches], move |g| {
            Ok(vec![Some(extract_patches(g, patch, 0)?)])
        }))
    }
}

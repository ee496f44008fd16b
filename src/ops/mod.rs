//! Kernel launchers, one module per WGSL family: shape checks, uniform structs, dispatch.
//! Functions here work on plain [`Tensor`]s; the autodiff tape wraps them.

pub mod adam;
pub mod attention;
pub mod augment;
pub mod elementwise;
pub mod inr;
pub mod layer_norm;
pub mod layout;
pub mod matmul;
pub mod patches;
pub mod reduce;
pub mod softmax;
pub mod spectral_norm;

/// Maximum tensor rank the strided kernels handle.
pub const MAX_RANK: usize = 8;

/// Workgroup grid for `n` items at `per_group` items per workgroup, split over x and y so that
/// neither exceeds 65,535 (kernels reconstruct the index as `(wid.y · nwg.x + wid.x) · per_group + lid`).
pub fn grid_1d(n: usize, per_group: usize) -> [u32; 3] {
    let groups = n.div_ceil(per_group).max(1);
    let x = groups.min(65_535);
    [x as u32, groups.div_ceil(x) as u32, 1]
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Pack up to 8 values into the `array<vec4<u32>, 2>` layout the kernels read.
pub fn pack8(v: &[usize]) -> [u32; MAX_RANK] {
    let mut out = [0u32; MAX_RANK];
    for (o, x) in out.iter_mut().zip(v) {
        *o = *x as u32;
    }
    out
}

macro_rules! shader {
    ($name:literal) => {
        crate::gpu::Shader {
            name: $name,
            source: include_str!(concat!("../../shaders/", $name, ".wgsl")),
        }
    };
}
pub(crate) use shader;

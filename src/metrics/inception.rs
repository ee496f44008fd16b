//! The FID InceptionV3 on the engine: exactly pytorch-fid's network (`pytorch_fid.inception`,
//! `use_fid_inception=True`), the TensorFlow 2015-12-05 Inception that FID was defined with.
//!
//! - Input: NHWC images in [-1, 1], quantised to 8 bits as a saved PNG would be
//!   (`u = round((x + 1)/2 · 255)`, then `u/255`), grey replicated to RGB, resized to 299 × 299
//!   bilinearly (`align_corners=False`) and scaled to [-1, 1] (`2x − 1`; resizing and this affine
//!   map commute, so the kernel resizes `2u/255 − 1` directly).
//! - Every `BasicConv2d` is conv (no bias) → BatchNorm (eps 10⁻³, running statistics) → ReLU; the
//!   BatchNorm is folded into the convolution when the weights load:
//!   `W' = W · γ/√(σ² + ε)`, `b' = β − μ · γ/√(σ² + ε)`.
//! - Blocks as in pytorch-fid: the stem with two 3×3/2 max pools; `Mixed_5b–d` (FIDInceptionA),
//!   `Mixed_6a` (InceptionB), `Mixed_6b–e` (FIDInceptionC), `Mixed_7a` (InceptionD), `Mixed_7b`
//!   (FIDInceptionE_1) and `Mixed_7c` (FIDInceptionE_2, whose pool branch is a 3×3 max pool). Every
//!   average pool of the FID blocks excludes the padding (`count_include_pad=False`).
//! - Outputs: the 2048-d pool3 features (global average of `Mixed_7c`) for FID/KID, and the
//!   1008-way logits `fc(pool3)` for the Inception Score.
//!
//! Weights are read by state-dict name (`Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.
//! running_var`, `fc.bias`, …) from a safetensors file converted from pytorch-fid's
//! `pt_inception-2015-12-05-6726825d.pth` by `scripts/convert_inception_weights.py`, or computed by
//! [`FormulaWeights`] (a closed form that numpy computes identically, for parity tests without the
//! 92 MB file).

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::metrics::ImageSet;
use crate::ops::conv::{Window2d, conv2d};
use crate::ops::layout::concat;
use crate::ops::matmul::{Activation, MatmulOptions, matmul_fused};
use crate::ops::pool::{Pool, pool2d};
use crate::ops::reduce::mean_axis;
use crate::ops::resize::resize_bilinear;
use crate::tensor::Tensor;
use std::path::Path;

/// Input resolution of the network.
pub const INPUT_SIZE: usize = 299;
/// Width of the pool3 features.
pub const FEATURE_DIM: usize = 2048;
/// Classes of the logits (the 2015 TF Inception's 1008, of which 1000 are ImageNet's).
pub const CLASSES: usize = 1008;
/// BatchNorm epsilon of every `BasicConv2d`.
const BN_EPS: f64 = 1e-3;
/// Where pytorch-fid's weights are published.
pub const WEIGHTS_URL: &str = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth";

/// A provider of PyTorch tensors by state-dict name (values in PyTorch's C order).
pub trait WeightSource {
    /// The tensor `name`, which must have `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>>;
}

/// Weights from a safetensors file holding pytorch-fid's state dict as F32 tensors.
pub struct SafetensorsWeights {
    path: String,
    file: Checkpoint,
}

impl SafetensorsWeights {
    /// Opens `path`; a missing file, a `.pth` file or a file that is not safetensors gets an error
    /// saying where the weights come from and how to convert them.
    pub fn open(path: &Path) -> Result<Self> {
        let how = format!(
            "download pytorch-fid's weights ({WEIGHTS_URL}) and convert them once with \
             `python3 scripts/convert_inception_weights.py pt_inception-2015-12-05-6726825d.pth \
             inception-2015-12-05.safetensors` (needs PyTorch), then pass the .safetensors file"
        );
        if !path.exists() {
            return Err(Error::Other(format!(
                "the Inception weights file {} does not exist; {how}",
                path.display()
            )));
        }
        let head = std::fs::read(path)
            .map(|b| b.into_iter().take(4).collect::<Vec<u8>>())
            .unwrap_or_default();
        if head.starts_with(b"PK") || head.first() == Some(&0x80) {
            return Err(Error::Other(format!(
                "{} is a PyTorch pickle (.pth), not safetensors; {how}",
                path.display()
            )));
        }
        let file = Checkpoint::load(path).map_err(|e| {
            Error::Other(format!(
                "{} is not a readable safetensors file ({e}); {how}",
                path.display()
            ))
        })?;
        Ok(SafetensorsWeights {
            path: path.display().to_string(),
            file,
        })
    }
}

impl WeightSource for SafetensorsWeights {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        match self.file.tensor(name) {
            Some((s, v)) if s == shape => Ok(v.to_vec()),
            Some((s, _)) => Err(Error::Other(format!(
                "{}: tensor `{name}` has shape {s:?}, pytorch-fid's InceptionV3 needs {shape:?}; \
                 this is not the FID Inception (pt_inception-2015-12-05)",
                self.path
            ))),
            None => Err(Error::Other(format!(
                "{}: tensor `{name}` is missing; this is not the FID Inception \
                 (pt_inception-2015-12-05) state dict",
                self.path
            ))),
        }
    }
}

/// Closed-form weights for parity tests: every value is a function of (tensor name, flat index)
/// in exact integer arithmetic, so Rust and numpy (`scripts/inception_fixture.py`) produce the
/// same f32 values bit for bit.
///
/// `h = fnv1a32(name)`, `x = (i·0x9E3779B1 + h) mod 2³²`, then the murmur3 finaliser
/// (`x ^= x >> 16; x *= 0x85EBCA6B; x ^= x >> 13; x *= 0xC2B2AE35; x ^= x >> 16`, mod 2³²) and
/// `u = x / 2³²` ∈ [0, 1). Values by the name's suffix, chosen so that activations stay O(1) through
/// all layers (He-scaled convolutions, BatchNorm close to the identity with a small positive shift
/// that keeps ReLUs alive):
/// - `conv.weight` `[C_out, C_in, kh, kw]`: `(u − ½) · √(24 / fan_in)` (uniform, variance 2/fan_in)
/// - `bn.weight`: `0.8 + 0.4u`; `bn.bias`: `0.2u − 0.05`; `bn.running_mean`: `0.1(u − ½)`;
///   `bn.running_var`: `0.5 + u`
/// - `fc.weight` `[1008, 2048]`: `(u − ½) · √(12 / 2048)`; `fc.bias`: `0.1(u − ½)`
pub struct FormulaWeights;

/// FNV-1a (32-bit) of a string.
fn fnv1a32(s: &str) -> u32 {
    s.bytes().fold(0x811C_9DC5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// The uniform value `u ∈ [0, 1)` of element `index` of tensor `name` (see [`FormulaWeights`]).
pub fn formula_unit(name: &str, index: usize) -> f64 {
    let mut x = (index as u32)
        .wrapping_mul(0x9E37_79B1)
        .wrapping_add(fnv1a32(name));
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^= x >> 16;
    x as f64 / 4_294_967_296.0
}

impl WeightSource for FormulaWeights {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let n: usize = shape.iter().product();
        let fan_in: usize = shape.iter().skip(1).product();
        let value: Box<dyn Fn(f64) -> f64> = if name.ends_with("conv.weight") {
            let s = (24.0 / fan_in as f64).sqrt();
            Box::new(move |u| (u - 0.5) * s)
        } else if name.ends_with("bn.weight") {
            Box::new(|u| 0.8 + 0.4 * u)
        } else if name.ends_with("bn.bias") {
            Box::new(|u| 0.2 * u - 0.05)
        } else if name.ends_with("bn.running_mean") {
            Box::new(|u| 0.1 * (u - 0.5))
        } else if name.ends_with("bn.running_var") {
            Box::new(|u| 0.5 + u)
        } else if name == "fc.weight" {
            let s = (12.0 / fan_in as f64).sqrt();
            Box::new(move |u| (u - 0.5) * s)
        } else if name == "fc.bias" {
            Box::new(|u| 0.1 * (u - 0.5))
        } else {
            return Err(Error::Other(format!(
                "no formula for Inception tensor `{name}`"
            )));
        };
        Ok((0..n)
            .map(|i| value(formula_unit(name, i)) as f32)
            .collect())
    }
}

/// A [`WeightSource`] that passes tensors through while hashing their names and values (FNV-1a).
struct Fingerprinting<'a> {
    inner: &'a dyn WeightSource,
    hash: std::cell::Cell<u64>,
}

impl WeightSource for Fingerprinting<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let values = self.inner.tensor(name, shape)?;
        let step = |h: u64, x: u64| (h ^ x).wrapping_mul(0x0000_0100_0000_01B3);
        let h = name.bytes().fold(self.hash.get(), |h, b| step(h, b as u64));
        self.hash
            .set(values.iter().fold(h, |h, v| step(h, v.to_bits() as u64)));
        Ok(values)
    }
}

/// `BasicConv2d` with its BatchNorm folded in: `relu(conv(x)·W' + b')`.
struct BasicConv {
    /// `[kh·kw·C_in, C_out]`, rows in (ky, kx, c) order.
    weight: Tensor,
    bias: Tensor,
    window: Window2d,
}

impl BasicConv {
    fn load(
        gpu: &Gpu,
        src: &dyn WeightSource,
        name: &str,
        (c_in, c_out): (usize, usize),
        window: Window2d,
    ) -> Result<BasicConv> {
        let [kh, kw] = window.kernel;
        let w = src.tensor(&format!("{name}.conv.weight"), &[c_out, c_in, kh, kw])?;
        let bn = |part: &str| src.tensor(&format!("{name}.bn.{part}"), &[c_out]);
        let (gamma, beta, mean, var) = (
            bn("weight")?,
            bn("bias")?,
            bn("running_mean")?,
            bn("running_var")?,
        );
        let rows = kh * kw * c_in;
        let mut folded = vec![0f32; rows * c_out];
        let mut bias = vec![0f32; c_out];
        for co in 0..c_out {
            let scale = gamma[co] as f64 / (var[co] as f64 + BN_EPS).sqrt();
            bias[co] = (beta[co] as f64 - mean[co] as f64 * scale) as f32;
            for ci in 0..c_in {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let v = w[((co * c_in + ci) * kh + ky) * kw + kx] as f64 * scale;
                        folded[((ky * kw + kx) * c_in + ci) * c_out + co] = v as f32;
                    }
                }
            }
        }
        Ok(BasicConv {
            weight: Tensor::from_slice(gpu, &folded, &[rows, c_out])?,
            bias: Tensor::from_slice(gpu, &bias, &[c_out])?,
            window,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv2d(
            x,
            &self.weight,
            Some(&self.bias),
            &self.window,
            Activation::Relu,
        )
    }
}

/// Window shorthands.
fn k(size: usize) -> Window2d {
    Window2d::square(size, 1, size / 2)
}
fn k_valid(size: usize, stride: usize) -> Window2d {
    Window2d::square(size, stride, 0)
}
/// 1×n (pad 0, n/2) and n×1 (pad n/2, 0).
fn row(n: usize) -> Window2d {
    Window2d {
        kernel: [1, n],
        stride: [1, 1],
        pad: [0, n / 2],
    }
}
fn col(n: usize) -> Window2d {
    Window2d {
        kernel: [n, 1],
        stride: [1, 1],
        pad: [n / 2, 0],
    }
}

/// The 3×3 pool with stride 1 and padding 1 of the pool branches.
fn pool_branch(x: &Tensor, pool: Pool) -> Result<Tensor> {
    pool2d(x, &Window2d::square(3, 1, 1), pool)
}

/// Runs a chain of convolutions.
fn chain(x: &Tensor, convs: &[BasicConv]) -> Result<Tensor> {
    let mut h = x.clone();
    for c in convs {
        h = c.forward(&h)?;
    }
    Ok(h)
}

/// One `Mixed_*` block.
enum Mixed {
    /// FIDInceptionA: 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1.
    A {
        b1: BasicConv,
        b5: [BasicConv; 2],
        b3: [BasicConv; 3],
        pool: BasicConv,
    },
    /// InceptionB (grid reduction): 3×3/2 | 1×1→3×3→3×3/2 | maxpool 3×3/2.
    B {
        b3: BasicConv,
        b3dbl: [BasicConv; 3],
    },
    /// FIDInceptionC: 1×1 | 1×1→1×7→7×1 | 1×1→7×1→1×7→7×1→1×7 | avgpool→1×1.
    C {
        b1: BasicConv,
        b7: [BasicConv; 3],
        b7dbl: [BasicConv; 5],
        pool: BasicConv,
    },
    /// InceptionD (grid reduction): 1×1→3×3/2 | 1×1→1×7→7×1→3×3/2 | maxpool 3×3/2.
    D {
        b3: [BasicConv; 2],
        b7: [BasicConv; 4],
    },
    /// FIDInceptionE_1 (avg pool) / E_2 (max pool): 1×1 | 1×1→(1×3 ‖ 3×1) |
    /// 1×1→3×3→(1×3 ‖ 3×1) | pool→1×1.
    E {
        b1: BasicConv,
        b3: BasicConv,
        b3_split: [BasicConv; 2],
        b3dbl: [BasicConv; 2],
        b3dbl_split: [BasicConv; 2],
        pool: BasicConv,
        pool_kind: Pool,
    },
}

impl Mixed {
    fn a(gpu: &Gpu, s: &dyn WeightSource, name: &str, c_in: usize, pool: usize) -> Result<Mixed> {
        let l = |n: &str, io, w| BasicConv::load(gpu, s, &format!("{name}.{n}"), io, w);
        Ok(Mixed::A {
            b1: l("branch1x1", (c_in, 64), k(1))?,
            b5: [
                l("branch5x5_1", (c_in, 48), k(1))?,
                l("branch5x5_2", (48, 64), k(5))?,
            ],
            b3: [
                l("branch3x3dbl_1", (c_in, 64), k(1))?,
                l("branch3x3dbl_2", (64, 96), k(3))?,
                l("branch3x3dbl_3", (96, 96), k(3))?,
            ],
            pool: l("branch_pool", (c_in, pool), k(1))?,
        })
    }

    fn b(gpu: &Gpu, s: &dyn WeightSource, name: &str, c_in: usize) -> Result<Mixed> {
        let l = |n: &str, io, w| BasicConv::load(gpu, s, &format!("{name}.{n}"), io, w);
        Ok(Mixed::B {
            b3: l("branch3x3", (c_in, 384), k_valid(3, 2))?,
            b3dbl: [
                l("branch3x3dbl_1", (c_in, 64), k(1))?,
                l("branch3x3dbl_2", (64, 96), k(3))?,
                l("branch3x3dbl_3", (96, 96), k_valid(3, 2))?,
            ],
        })
    }

    fn c(gpu: &Gpu, s: &dyn WeightSource, name: &str, c7: usize) -> Result<Mixed> {
        let l = |n: &str, io, w| BasicConv::load(gpu, s, &format!("{name}.{n}"), io, w);
        Ok(Mixed::C {
            b1: l("branch1x1", (768, 192), k(1))?,
            b7: [
                l("branch7x7_1", (768, c7), k(1))?,
                l("branch7x7_2", (c7, c7), row(7))?,
                l("branch7x7_3", (c7, 192), col(7))?,
            ],
            b7dbl: [
                l("branch7x7dbl_1", (768, c7), k(1))?,
                l("branch7x7dbl_2", (c7, c7), col(7))?,
                l("branch7x7dbl_3", (c7, c7), row(7))?,
                l("branch7x7dbl_4", (c7, c7), col(7))?,
                l("branch7x7dbl_5", (c7, 192), row(7))?,
            ],
            pool: l("branch_pool", (768, 192), k(1))?,
        })
    }

    fn d(gpu: &Gpu, s: &dyn WeightSource, name: &str) -> Result<Mixed> {
        let l = |n: &str, io, w| BasicConv::load(gpu, s, &format!("{name}.{n}"), io, w);
        Ok(Mixed::D {
            b3: [
                l("branch3x3_1", (768, 192), k(1))?,
                l("branch3x3_2", (192, 320), k_valid(3, 2))?,
            ],
            b7: [
                l("branch7x7x3_1", (768, 192), k(1))?,
                l("branch7x7x3_2", (192, 192), row(7))?,
                l("branch7x7x3_3", (192, 192), col(7))?,
                l("branch7x7x3_4", (192, 192), k_valid(3, 2))?,
            ],
        })
    }

    fn e(gpu: &Gpu, s: &dyn WeightSource, name: &str, c_in: usize, pool: Pool) -> Result<Mixed> {
        let l = |n: &str, io, w| BasicConv::load(gpu, s, &format!("{name}.{n}"), io, w);
        Ok(Mixed::E {
            b1: l("branch1x1", (c_in, 320), k(1))?,
            b3: l("branch3x3_1", (c_in, 384), k(1))?,
            b3_split: [
                l("branch3x3_2a", (384, 384), row(3))?,
                l("branch3x3_2b", (384, 384), col(3))?,
            ],
            b3dbl: [
                l("branch3x3dbl_1", (c_in, 448), k(1))?,
                l("branch3x3dbl_2", (448, 384), k(3))?,
            ],
            b3dbl_split: [
                l("branch3x3dbl_3a", (384, 384), row(3))?,
                l("branch3x3dbl_3b", (384, 384), col(3))?,
            ],
            pool: l("branch_pool", (c_in, 192), k(1))?,
            pool_kind: pool,
        })
    }

    /// The block's output: its branches concatenated along channels (PyTorch's order).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let reduce = |x: &Tensor| pool2d(x, &k_valid(3, 2), Pool::Max);
        let parts = match self {
            Mixed::A { b1, b5, b3, pool } => vec![
                b1.forward(x)?,
                chain(x, b5)?,
                chain(x, b3)?,
                pool.forward(&pool_branch(x, Pool::Average)?)?,
            ],
            Mixed::B { b3, b3dbl } => vec![b3.forward(x)?, chain(x, b3dbl)?, reduce(x)?],
            Mixed::C {
                b1,
                b7,
                b7dbl,
                pool,
            } => vec![
                b1.forward(x)?,
                chain(x, b7)?,
                chain(x, b7dbl)?,
                pool.forward(&pool_branch(x, Pool::Average)?)?,
            ],
            Mixed::D { b3, b7 } => vec![chain(x, b3)?, chain(x, b7)?, reduce(x)?],
            Mixed::E {
                b1,
                b3,
                b3_split,
                b3dbl,
                b3dbl_split,
                pool,
                pool_kind,
            } => {
                let h3 = b3.forward(x)?;
                let h3dbl = chain(x, b3dbl)?;
                vec![
                    b1.forward(x)?,
                    b3_split[0].forward(&h3)?,
                    b3_split[1].forward(&h3)?,
                    b3dbl_split[0].forward(&h3dbl)?,
                    b3dbl_split[1].forward(&h3dbl)?,
                    pool.forward(&pool_branch(x, *pool_kind)?)?,
                ]
            }
        };
        concat(&parts.iter().collect::<Vec<_>>(), 3)
    }
}

/// The outputs of one forward pass (NHWC tensors on the GPU).
pub struct InceptionOutputs {
    /// pytorch-fid's block outputs: after the first max pool `[B, 73, 73, 64]`, after the second
    /// `[B, 35, 35, 192]`, after `Mixed_6e` `[B, 17, 17, 768]`.
    pub blocks: [Tensor; 3],
    /// pool3 `[B, 2048]`.
    pub features: Tensor,
    /// `fc(pool3)` `[B, 1008]`.
    pub logits: Tensor,
}

/// Host copies of the network's outputs for a set of images.
pub struct InceptionFeatures {
    pub n: usize,
    /// `[n, 2048]` pool3 features.
    pub features: Vec<f32>,
    /// `[n, 1008]` logits.
    pub logits: Vec<f32>,
}

/// The FID InceptionV3 with folded weights on the GPU.
pub struct InceptionV3 {
    gpu: Gpu,
    /// FNV-1a over the names and values of every loaded tensor: identifies the weights in cache keys.
    fingerprint: u64,
    stem: [BasicConv; 5],
    mixed: Vec<Mixed>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl InceptionV3 {
    /// Loads the network from `src` (every tensor of pytorch-fid's state dict but
    /// `num_batches_tracked`).
    pub fn new(gpu: &Gpu, weights: &dyn WeightSource) -> Result<InceptionV3> {
        let hashing = Fingerprinting {
            inner: weights,
            hash: std::cell::Cell::new(0xCBF2_9CE4_8422_2325),
        };
        let src: &dyn WeightSource = &hashing;
        let l = |n: &str, io, w| BasicConv::load(gpu, src, n, io, w);
        let stem = [
            l("Conv2d_1a_3x3", (3, 32), k_valid(3, 2))?,
            l("Conv2d_2a_3x3", (32, 32), k_valid(3, 1))?,
            l("Conv2d_2b_3x3", (32, 64), k(3))?,
            l("Conv2d_3b_1x1", (64, 80), k(1))?,
            l("Conv2d_4a_3x3", (80, 192), k_valid(3, 1))?,
        ];
        let mixed = vec![
            Mixed::a(gpu, src, "Mixed_5b", 192, 32)?,
            Mixed::a(gpu, src, "Mixed_5c", 256, 64)?,
            Mixed::a(gpu, src, "Mixed_5d", 288, 64)?,
            Mixed::b(gpu, src, "Mixed_6a", 288)?,
            Mixed::c(gpu, src, "Mixed_6b", 128)?,
            Mixed::c(gpu, src, "Mixed_6c", 160)?,
            Mixed::c(gpu, src, "Mixed_6d", 160)?,
            Mixed::c(gpu, src, "Mixed_6e", 192)?,
            Mixed::d(gpu, src, "Mixed_7a")?,
            Mixed::e(gpu, src, "Mixed_7b", 1280, Pool::Average)?,
            Mixed::e(gpu, src, "Mixed_7c", 2048, Pool::Max)?,
        ];
        // fc: y = x·Wᵀ + b with W [1008, 2048]
        let fc = src.tensor("fc.weight", &[CLASSES, FEATURE_DIM])?;
        let fc_bias = src.tensor("fc.bias", &[CLASSES])?;
        let fingerprint = fc
            .iter()
            .chain(&fc_bias)
            .fold(0xCBF2_9CE4_8422_2325u64, |h, v| {
                (h ^ v.to_bits() as u64).wrapping_mul(0x0000_0100_0000_01B3)
            });
        Ok(InceptionV3 {
            gpu: gpu.clone(),
            fingerprint,
            stem,
            mixed,
            fc_weight: Tensor::from_slice(gpu, &fc, &[CLASSES, FEATURE_DIM])?,
            fc_bias: Tensor::from_slice(gpu, &fc_bias, &[CLASSES])?,
        })
    }

    /// A hash of every weight (names and values), identifying which weights computed a cached result.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Loads pytorch-fid's weights from a converted safetensors file.
    pub fn load(gpu: &Gpu, weights: &Path) -> Result<InceptionV3> {
        InceptionV3::new(gpu, &SafetensorsWeights::open(weights)?)
    }

    /// The network on `x`, NHWC `[B, 299, 299, 3]` in [-1, 1] (already resized).
    pub fn forward(&self, x: &Tensor) -> Result<InceptionOutputs> {
        let max3 = |x: &Tensor| pool2d(x, &k_valid(3, 2), Pool::Max);
        let h = chain(x, &self.stem[..3])?;
        let block0 = max3(&h)?;
        let block1 = max3(&chain(&block0, &self.stem[3..])?)?;
        let mut h = block1.clone();
        for m in &self.mixed[..8] {
            h = m.forward(&h)?;
        }
        let block2 = h.clone();
        for m in &self.mixed[8..] {
            h = m.forward(&h)?;
        }
        let [b, hh, ww, c] = *h.shape() else {
            unreachable!("Mixed blocks return NHWC tensors")
        };
        let features = mean_axis(&h.reshape(&[b, hh * ww, c])?, 1, false)?;
        let (logits, _) = matmul_fused(
            &features,
            &self.fc_weight,
            MatmulOptions {
                trans_b: true,
                bias: Some(&self.fc_bias),
                ..Default::default()
            },
        )?;
        Ok(InceptionOutputs {
            blocks: [block0, block1, block2],
            features,
            logits,
        })
    }

    /// Images per forward pass: as many as keep the largest intermediate (the 3×3 convolution over
    /// 147 × 147 × 32 gathers 6.2 M values per image) within 256 MiB and the adapter's buffer limit.
    pub fn batch_size(&self) -> usize {
        let per_image = (147 * 147 * 9 * 32 * 4) as u64;
        let mut batch = ((256u64 << 20) / per_image).max(1) as usize;
        while batch > 1 && !self.gpu.fits_one_buffer(per_image * batch as u64) {
            batch -= 1;
        }
        batch
    }

    /// The network's input for NHWC images in [-1, 1] of any size and 1 or 3 channels: quantised to
    /// 8 bits, grey replicated to RGB, resized to 299 × 299 on the GPU.
    pub fn prepare(&self, set: &ImageSet, start: usize, count: usize) -> Result<Tensor> {
        if set.channels != 1 && set.channels != 3 {
            return Err(Error::shape(
                "inception",
                format!(
                    "InceptionV3 reads 1- or 3-channel images, got {}",
                    set.channels
                ),
            ));
        }
        let per = set.size * set.size;
        let mut rgb = Vec::with_capacity(count * per * 3);
        for i in start..start + count {
            for px in set.image(i).chunks_exact(set.channels) {
                for ch in 0..3 {
                    let v = px[if set.channels == 1 { 0 } else { ch }];
                    rgb.push(quantise(v));
                }
            }
        }
        let x = Tensor::from_slice(&self.gpu, &rgb, &[count, set.size, set.size, 3])?;
        resize_bilinear(&x, INPUT_SIZE, INPUT_SIZE)
    }

    /// pool3 features and logits of every image of `set`, in batches of [`Self::batch_size`]
    /// (fewer when the input images are large); `progress(done, total)` is called after each batch
    /// and returns whether to go on ([`Error::Stopped`] when it returns `false`).
    pub fn run(
        &self,
        set: &ImageSet,
        mut progress: impl FnMut(usize, usize) -> bool,
    ) -> Result<InceptionFeatures> {
        let input_bytes = (set.size * set.size * 3 * 4) as u64;
        let mut batch = self.batch_size();
        while batch > 1 && !self.gpu.fits_one_buffer(input_bytes * batch as u64) {
            batch -= 1;
        }
        let mut features = Vec::with_capacity(set.n * FEATURE_DIM);
        let mut logits = Vec::with_capacity(set.n * CLASSES);
        for start in (0..set.n).step_by(batch) {
            let count = batch.min(set.n - start);
            let out = self.forward(&self.prepare(set, start, count)?)?;
            features.extend(out.features.to_vec()?);
            logits.extend(out.logits.to_vec()?);
            if !progress(start + count, set.n) {
                return Err(Error::Stopped("the InceptionV3 pass".into()));
            }
        }
        Ok(InceptionFeatures {
            n: set.n,
            features,
            logits,
        })
    }
}

/// `x ∈ [-1, 1]` → the value a PNG round trip gives it, back in [-1, 1]:
/// `2·round((x + 1)/2 · 255)/255 − 1` (clamped; NaN reads as −1).
pub fn quantise(x: f32) -> f32 {
    let u = ((x as f64 + 1.0) * 0.5 * 255.0).round().clamp(0.0, 255.0);
    let u = if u.is_nan() { 0.0 } else { u };
    (2.0 * u / 255.0 - 1.0) as f32
}

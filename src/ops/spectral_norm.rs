//! Improved spectral normalisation (ViTGAN ISN, `shaders/spectral_norm.wgsl`).
//!
//! A weight `W: [out, in]` (row-major, used as `y = x Wᵀ`) is replaced by `W̄ = σ0 · W / σ(W)`, where
//! `σ(W)` is its largest singular value estimated by power iteration with a persistent `u ∈ R^out`,
//! and `σ0 = σ(W_init)` is a constant fixed at initialisation. One iteration:
//! `v = normalize(Wᵀu)`, `u = normalize(W v)`, `σ = uᵀ W v` (`= ‖W v‖`).
//! Backward, with `u, v` constant: `dW = σ0/σ · (G − ⟨G, W⟩/σ · u vᵀ)`.
//! Everything stays on the GPU: `u` is updated in place and `σ` is a one-element tensor.

use super::{fits_loop_budget, grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Shader, overrides};
use crate::tensor::Tensor;
use rand::{Rng, SeedableRng, rngs::StdRng};

pub static SHADER: Shader = shader!("spectral_norm");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    n: u32,
    _pad: u32,
}

/// Columns per workgroup of `transposed_matvec` (`TV_COLS` in the WGSL).
const TV_COLS: usize = 64;

/// The persistent state of one spectrally normalised weight.
#[derive(Clone, Debug)]
pub struct SpectralNorm {
    /// Power-iteration vector, `[out]` (updated in place by every iteration).
    pub u: Tensor,
    /// `σ(W_init)`, `[1]`.
    pub sigma_init: Tensor,
}

impl SpectralNorm {
    /// Start from a random `u` (seeded), run `iters` power iterations on `w` and record `σ(w)` as
    /// `σ(W_init)`. Use many iterations here (a few hundred) so that `σ0` is accurate.
    pub fn init(w: &Tensor, iters: u32, seed: u64) -> Result<SpectralNorm> {
        let (out, _) = weight_dims("SpectralNorm::init", w)?;
        let mut rng = StdRng::seed_from_u64(seed);
        let start: Vec<f32> = (0..out).map(|_| rng.random_range(-1.0..1.0)).collect();
        let u = Tensor::from_slice(w.gpu(), &start, &[out])?;
        let (sigma_init, _) = power_iteration(w, &u, iters)?;
        Ok(SpectralNorm { u, sigma_init })
    }
}

fn weight_dims(op: &'static str, w: &Tensor) -> Result<(usize, usize)> {
    match *w.shape() {
        [out, inp] if out > 0 && inp > 0 => Ok((out, inp)),
        _ => Err(Error::shape(
            op,
            format!(
                "the weight must be a non-empty matrix [out, in], got {:?}",
                w.shape()
            ),
        )),
    }
}

fn params(rows: usize, cols: usize, n: usize) -> Params {
    Params {
        rows: rows as u32,
        cols: cols as u32,
        n: n as u32,
        _pad: 0,
    }
}

/// Whether the products run their `_lanes` kernels (one invocation per output, a serial loop of
/// `loop_len` terms, no barriers) rather than the workgroup reductions: on CPU adapters, while the
/// loop fits the CPU loop budget (on lavapipe they made the `tiny` step ~10 % faster; README,
/// Performance); elsewhere the workgroup reductions, which spread a long row over a workgroup.
/// `VITGAN_SPECTRAL_NORM_KERNEL=lanes|workgroup` forces either (lanes still within the budget).
fn lanes(gpu: &Gpu, loop_len: usize) -> bool {
    let wanted = match overrides::value("VITGAN_SPECTRAL_NORM_KERNEL").as_deref() {
        Some("lanes") => true,
        Some("workgroup") => false,
        _ => gpu.is_cpu(),
    };
    wanted && fits_loop_budget(loop_len)
}

/// Largest `[out]` or `[in]` of a weight the one-dispatch kernels take (`FUSED_MAX_VEC` in the WGSL:
/// both vectors live in workgroup memory).
const FUSED_MAX_VEC: usize = 1024;
/// Invocations of the one-dispatch kernels' single workgroup (`FUSED_WG`).
const FUSED_WG: usize = 256;
/// Largest weight (elements) the one-dispatch kernels take: one workgroup runs on one CPU thread
/// and reads W three times, so a large weight is faster spread over the separate kernels'
/// workgroups (`tiny`'s weights are at most 8,192; `cifar32`'s 768 × 384 was not faster fused).
const FUSED_MAX_ELEMENTS: usize = 16_384;

/// Loop iterations of one invocation of `normalize_weight_fused` (the larger of the two fused
/// kernels): loading `u`, the two products, the two norms and their tree sums, the scaling.
fn fused_trips(rows: usize, cols: usize) -> usize {
    let per = |n: usize| n.div_ceil(FUSED_WG);
    let tree = FUSED_WG.trailing_zeros() as usize;
    per(rows)
        + per(cols) * rows
        + 2 * per(cols)
        + per(rows) * cols
        + 2 * per(rows)
        + per(rows * cols)
        + 2 * tree
}

/// Whether a weight `[rows, cols]` runs its forward and backward as one dispatch each
/// (`normalize_weight_fused`, `normalize_weight_backward_fused`): the default on CPU adapters for a
/// weight whose vectors fit workgroup memory and whose loops fit the CPU loop budget, since they
/// compute the `_lanes` path's sums in its order (the same bits) from 1 dispatch instead of 5 and 3
/// (weights up to `FUSED_MAX_ELEMENTS`);
/// `VITGAN_SPECTRAL_NORM_KERNEL=fused` asks for them on any adapter (within those limits),
/// `lanes|workgroup` for the separate kernels.
fn fused(gpu: &Gpu, rows: usize, cols: usize) -> bool {
    let wanted = match overrides::value("VITGAN_SPECTRAL_NORM_KERNEL").as_deref() {
        Some("fused") => true,
        Some(_) => false,
        None => gpu.is_cpu(),
    };
    wanted
        && rows <= FUSED_MAX_VEC
        && cols <= FUSED_MAX_VEC
        && rows * cols <= FUSED_MAX_ELEMENTS
        && fits_loop_budget(fused_trips(rows, cols))
}

/// `out = x / ‖x‖` and `norm[0] = ‖x‖` (one workgroup).
fn normalize(x: &Tensor, out: &Tensor, norm: &Tensor) -> Result<()> {
    x.gpu().dispatch(
        &SHADER,
        "normalize",
        &[],
        bytemuck::bytes_of(&params(0, 0, x.numel())),
        &[
            (x.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
            (norm.buffer(), Access::ReadWrite),
        ],
        [1, 1, 1],
    )
}

/// Run `iters` power iterations on `w: [out, in]` with `u: [out]`, updating `u` in place:
/// `v = normalize(Wᵀu)`, `u = normalize(W v)`. Returns `(σ, v)` of the last iteration, `σ = uᵀ W v`
/// (`[1]`) and `v` (`[in]`). No host round trip.
pub fn power_iteration(w: &Tensor, u: &Tensor, iters: u32) -> Result<(Tensor, Tensor)> {
    if iters == 0 {
        return Err(Error::Other(
            "power_iteration: needs at least one iteration to estimate σ (use estimate_sigma to leave u alone)".into(),
        ));
    }
    let (sigma, v) = iterate(w, u, u, iters)?;
    Ok((sigma, v))
}

/// σ(W) from the current `u` without changing it: `v = normalize(Wᵀu)`, `u' = normalize(W v)`,
/// `σ = u'ᵀ W v`. Returns `(σ, v, u')` — for forwards that must not advance the power iteration
/// (G's step, evaluation).
pub fn estimate_sigma(w: &Tensor, u: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let u_new = Tensor::empty(w.gpu(), u.shape())?;
    let (sigma, v) = iterate(w, u, &u_new, 1)?;
    Ok((sigma, v, u_new))
}

/// What [`normalize_weight`] returns: `W̄` and the `σ`, `u`, `v` of its iteration, which the
/// backward ([`spectral_normalize_backward`]) holds constant.
pub struct NormalizedWeight {
    /// `W̄ = σ0 · W / σ`, shaped like `W`.
    pub weight: Tensor,
    /// `σ = uᵀ W v`, `[1]`.
    pub sigma: Tensor,
    /// `[out]`.
    pub u: Tensor,
    /// `[in]`.
    pub v: Tensor,
}

/// `W̄ = σ0 · W / σ(W)` for a forward pass: after `iters` power iterations that advance `sn.u` (1
/// per training step), or, with `iters = 0`, with σ estimated from the current `sn.u` without
/// changing it (G's step, evaluation). The returned `u` is its own tensor when `keep_u` (the
/// backward needs this call's `u`, and later calls change `sn.u` in place); without it, it may be
/// `sn.u` itself. One dispatch where [`fused`] holds and `iters ≤ 1`, else the separate kernels.
pub fn normalize_weight(
    w: &Tensor,
    sn: &SpectralNorm,
    iters: u32,
    keep_u: bool,
) -> Result<NormalizedWeight> {
    let (out, inp) = weight_dims("normalize_weight", w)?;
    if sn.u.shape() != [out] {
        return Err(Error::shape(
            "normalize_weight",
            format!(
                "u {:?} must be [out] = [{out}] for the weight {:?}",
                sn.u.shape(),
                w.shape()
            ),
        ));
    }
    check_scalar("normalize_weight", "sigma_init", &sn.sigma_init)?;
    let gpu = w.gpu();
    if iters <= 1 && fused(gpu, out, inp) {
        let u = Tensor::empty(gpu, &[out])?;
        let v = Tensor::empty(gpu, &[inp])?;
        let sigma = Tensor::empty(gpu, &[1])?;
        let weight = Tensor::empty(gpu, w.shape())?;
        gpu.dispatch(
            &SHADER,
            "normalize_weight_fused",
            &[("ADVANCE", if iters == 1 { 1.0 } else { 0.0 })],
            bytemuck::bytes_of(&params(out, inp, w.numel())),
            &[
                (w.buffer(), Access::Read),
                (sn.sigma_init.buffer(), Access::Read),
                (sn.u.buffer(), Access::ReadWrite),
                (u.buffer(), Access::ReadWrite),
                (v.buffer(), Access::ReadWrite),
                (sigma.buffer(), Access::ReadWrite),
                (weight.buffer(), Access::ReadWrite),
            ],
            [1, 1, 1],
        )?;
        return Ok(NormalizedWeight {
            weight,
            sigma,
            u,
            v,
        });
    }
    let (sigma, v, u) = if iters == 0 {
        estimate_sigma(w, &sn.u)?
    } else {
        let (sigma, v) = power_iteration(w, &sn.u, iters)?;
        let u = if keep_u {
            sn.u.deep_clone()?
        } else {
            sn.u.clone()
        };
        (sigma, v, u)
    };
    let weight = scale_by_sigma_ratio(w, &sn.sigma_init, &sigma)?;
    Ok(NormalizedWeight {
        weight,
        sigma,
        u,
        v,
    })
}

/// `iters` iterations starting from `u_in`, writing the normalised `u` to `u_out` (may be `u_in`).
fn iterate(w: &Tensor, u_in: &Tensor, u_out: &Tensor, iters: u32) -> Result<(Tensor, Tensor)> {
    let op = "power_iteration";
    let (out, inp) = weight_dims(op, w)?;
    for u in [u_in, u_out] {
        if u.shape() != [out] {
            return Err(Error::shape(
                op,
                format!(
                    "u {:?} must be [out] = [{out}] for the weight {:?}",
                    u.shape(),
                    w.shape()
                ),
            ));
        }
    }
    let gpu = w.gpu();
    let v_raw = Tensor::empty(gpu, &[inp])?;
    let v = Tensor::empty(gpu, &[inp])?;
    let u_raw = Tensor::empty(gpu, &[out])?;
    let sigma = Tensor::empty(gpu, &[1])?;
    let p = params(out, inp, 0);
    let mut u = u_in;
    for _ in 0..iters {
        let (entry, grid) = match lanes(gpu, out) {
            true => ("transposed_matvec_lanes", grid_1d(inp, 64)),
            false => ("transposed_matvec", grid_1d(inp, TV_COLS)),
        };
        gpu.dispatch(
            &SHADER,
            entry,
            &[],
            bytemuck::bytes_of(&p),
            &[
                (w.buffer(), Access::Read),
                (u.buffer(), Access::Read),
                (v_raw.buffer(), Access::ReadWrite),
            ],
            grid,
        )?;
        // ‖Wᵀu‖ lands in `sigma` and is overwritten by σ below.
        normalize(&v_raw, &v, &sigma)?;
        let (entry, grid) = match lanes(gpu, inp) {
            true => ("matvec_lanes", grid_1d(out, 64)),
            false => ("matvec", grid_1d(out, 1)),
        };
        gpu.dispatch(
            &SHADER,
            entry,
            &[],
            bytemuck::bytes_of(&p),
            &[
                (w.buffer(), Access::Read),
                (v.buffer(), Access::Read),
                (u_raw.buffer(), Access::ReadWrite),
            ],
            grid,
        )?;
        normalize(&u_raw, u_out, &sigma)?;
        u = u_out;
    }
    Ok((sigma, v))
}

fn check_scalar(op: &'static str, name: &str, t: &Tensor) -> Result<()> {
    if t.numel() != 1 {
        return Err(Error::shape(
            op,
            format!("{name} must have one element, got {:?}", t.shape()),
        ));
    }
    Ok(())
}

/// `W̄ = σ0 · W / σ` with `σ0 = sigma_init[0]` and `σ = sigma[0]` read on the GPU.
pub fn scale_by_sigma_ratio(w: &Tensor, sigma_init: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    let op = "scale_by_sigma_ratio";
    check_scalar(op, "sigma_init", sigma_init)?;
    check_scalar(op, "sigma", sigma)?;
    let out = Tensor::empty(w.gpu(), w.shape())?;
    w.gpu().dispatch(
        &SHADER,
        "scale_by_sigma_ratio",
        &[],
        bytemuck::bytes_of(&params(0, 0, w.numel())),
        &[
            (w.buffer(), Access::Read),
            (sigma_init.buffer(), Access::Read),
            (sigma.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        grid_1d(w.numel(), 256),
    )?;
    Ok(out)
}

/// Gradient of `W̄ = σ0 · W / (uᵀ W v)` with `u, v` constant, given `G = dL/dW̄`:
/// `dW = σ0/σ · (G − ⟨G, W⟩/σ · u vᵀ)`. One dispatch where [`fused`] holds, else three.
pub fn spectral_normalize_backward(
    g: &Tensor,
    w: &Tensor,
    u: &Tensor,
    v: &Tensor,
    sigma_init: &Tensor,
    sigma: &Tensor,
) -> Result<Tensor> {
    let op = "spectral_normalize_backward";
    let (out, inp) = weight_dims(op, w)?;
    if g.shape() != w.shape() || u.shape() != [out] || v.shape() != [inp] {
        return Err(Error::shape(
            op,
            format!(
                "need G like W {:?}, u [{out}], v [{inp}]; got G {:?}, u {:?}, v {:?}",
                w.shape(),
                g.shape(),
                u.shape(),
                v.shape()
            ),
        ));
    }
    check_scalar(op, "sigma_init", sigma_init)?;
    check_scalar(op, "sigma", sigma)?;
    let gpu = w.gpu();
    if fused(gpu, out, inp) {
        let dw = Tensor::empty(gpu, w.shape())?;
        gpu.dispatch(
            &SHADER,
            "normalize_weight_backward_fused",
            &[],
            bytemuck::bytes_of(&params(out, inp, w.numel())),
            &[
                (g.buffer(), Access::Read),
                (w.buffer(), Access::Read),
                (u.buffer(), Access::Read),
                (v.buffer(), Access::Read),
                (sigma_init.buffer(), Access::Read),
                (sigma.buffer(), Access::Read),
                (dw.buffer(), Access::ReadWrite),
            ],
            [1, 1, 1],
        )?;
        return Ok(dw);
    }
    let row_dots = Tensor::empty(gpu, &[out])?;
    let (entry, grid) = match lanes(gpu, inp) {
        true => ("row_dots_lanes", grid_1d(out, 64)),
        false => ("row_dots", grid_1d(out, 1)),
    };
    gpu.dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&params(out, inp, 0)),
        &[
            (g.buffer(), Access::Read),
            (w.buffer(), Access::Read),
            (row_dots.buffer(), Access::ReadWrite),
        ],
        grid,
    )?;
    let dot = Tensor::empty(gpu, &[1])?;
    gpu.dispatch(
        &SHADER,
        "sum_vector",
        &[],
        bytemuck::bytes_of(&params(0, 0, out)),
        &[
            (row_dots.buffer(), Access::Read),
            (dot.buffer(), Access::ReadWrite),
        ],
        [1, 1, 1],
    )?;
    let dw = Tensor::empty(gpu, w.shape())?;
    gpu.dispatch(
        &SHADER,
        "spectral_normalize_backward",
        &[],
        bytemuck::bytes_of(&params(out, inp, w.numel())),
        &[
            (g.buffer(), Access::Read),
            (u.buffer(), Access::Read),
            (v.buffer(), Access::Read),
            (sigma_init.buffer(), Access::Read),
            (sigma.buffer(), Access::Read),
            (dot.buffer(), Access::Read),
            (dw.buffer(), Access::ReadWrite),
        ],
        grid_1d(w.numel(), 256),
    )?;
    Ok(dw)
}

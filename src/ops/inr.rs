//! Implicit neural representation (INR) patch decoder of the ViTGAN generator (`shaders/inr.wgsl`):
//! a two-layer StyleGAN2-modulated sine MLP over Fourier features, forward and backward fused.
//!
//! Layouts: `E` [T, F] (the Fourier features of the T = P² pixels of a patch, shared by all patches),
//! `s1` [N, F] and `s2` [N, Hd] (per-patch styles), `W1` [Hd, F], `b1` [Hd], `W2` [C, Hd], `b2` [C];
//! output [N, T, C]. For patch n and pixel p:
//!
//! ```text
//! a_{o,i} = W1_{o,i}·s1_{n,i}   d1_o = 1/√(Σ_i a_{o,i}² + 1e-8)   h_{p,o} = sin(d1_o·Σ_i a_{o,i}·E_{p,i} + b1_o)
//! v_{c,j} = W2_{c,j}·s2_{n,j}   d2_c = 1/√(Σ_j v_{c,j}² + 1e-8)   out_{n,p,c} = d2_c·Σ_j v_{c,j}·h_{p,j} + b2_c
//! ```
//!
//! With [`InrWeights::demodulate_output`] off, `d2_c = 1`: the output layer is modulated but not
//! demodulated, as StyleGAN2's toRGB layer.
//!
//! The modulated weights never reach global memory. The forward runs one workgroup per patch. The
//! backward recomputes `h` and runs one workgroup per group of patches: it writes `ds1`, `ds2` directly
//! and sums the shared-weight gradients of its patches into one partial record per group, which a
//! second kernel adds up (no atomics). The backward formulas are in the WGSL header.
//!
//! The shared operands (`E`, `W1`, `b1`, `W2`, `b2`) are packed into one buffer per call (a few small
//! copies) so that the backward stays within 8 storage bindings.

use super::{CPU_LOOP_BUDGET, fits_loop_budget, grid_1d, shader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;

pub static SHADER: Shader = shader!("inr");

/// Most output channels the kernels handle (their workgroup arrays are sized for it).
pub const MAX_CHANNELS: usize = 8;

/// Demodulation epsilon: `d = 1/√(Σ w'² + DEMOD_EPS)`.
pub const DEMOD_EPS: f32 = 1e-8;

/// Bytes of partial gradient records the backward may use (more patches per group beyond that).
const PARTIALS_BUDGET_BYTES: usize = 32 << 20;
/// Workgroups (= partial records) of the backward on a GPU: enough to fill one.
const BACKWARD_GROUPS_GPU: usize = 1024;
/// Workgroups of the backward on a CPU adapter, where each runs on one thread.
const BACKWARD_GROUPS_CPU: usize = 64;

/// The shared weights of the decoder.
#[derive(Clone, Copy)]
pub struct InrWeights<'a> {
    /// [Hd, F]
    pub w1: &'a Tensor,
    /// [Hd]
    pub b1: &'a Tensor,
    /// [C, Hd]
    pub w2: &'a Tensor,
    /// [C]
    pub b2: &'a Tensor,
    /// Demodulate the output layer (`d2` as in the module docs; `false`: `d2 = 1`).
    pub demodulate_output: bool,
}

/// Gradients of every input of the decoder, each in its input's shape.
pub struct InrGrads {
    pub de: Tensor,
    pub ds1: Tensor,
    pub ds2: Tensor,
    pub dw1: Tensor,
    pub db1: Tensor,
    pub dw2: Tensor,
    pub db2: Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    patches: u32,
    pixels: u32,
    features: u32,
    hidden: u32,
    channels: u32,
    patches_per_group: u32,
    off_w1: u32,
    off_b1: u32,
    off_w2: u32,
    off_b2: u32,
    record: u32,
    groups: u32,
    // inr_backward: this dispatch handles patches [first_in_group, first_in_group + per_dispatch) of
    // each group's run (the CPU loop budget; partial records accumulate over dispatches)
    first_in_group: u32,
    per_dispatch: u32,
    demodulate_out: u32,
    _pad: u32,
}

/// Sizes of one decoder call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub(crate) patches: usize,
    pub(crate) pixels: usize,
    pub(crate) features: usize,
    pub(crate) hidden: usize,
    pub(crate) channels: usize,
    pub(crate) demodulate_output: bool,
}

impl Dims {
    /// Offsets of W1, b1, W2, b2 in the packed shared operands [E | W1 | b1 | W2 | b2], and its length.
    fn layout(&self) -> [usize; 5] {
        let off_w1 = self.pixels * self.features;
        let off_b1 = off_w1 + self.hidden * self.features;
        let off_w2 = off_b1 + self.hidden;
        let off_b2 = off_w2 + self.channels * self.hidden;
        [off_w1, off_b1, off_w2, off_b2, off_b2 + self.channels]
    }

    fn params(&self, patches_per_group: usize, groups: usize) -> Params {
        let [off_w1, off_b1, off_w2, off_b2, record] = self.layout();
        Params {
            patches: self.patches as u32,
            pixels: self.pixels as u32,
            features: self.features as u32,
            hidden: self.hidden as u32,
            channels: self.channels as u32,
            patches_per_group: patches_per_group as u32,
            off_w1: off_w1 as u32,
            off_b1: off_b1 as u32,
            off_w2: off_w2 as u32,
            off_b2: off_b2 as u32,
            record: record as u32,
            groups: groups as u32,
            first_in_group: 0,
            per_dispatch: patches_per_group as u32,
            demodulate_out: self.demodulate_output as u32,
            _pad: 0,
        }
    }

    /// An upper bound of the loop iterations `inr_backward` runs per patch in one invocation, counted
    /// from the loops of the WGSL as written (none assumed unrolled): the output demodulation and
    /// `Σ_q dout` (hidden + pixels), then per chunk of 64 hidden units and block of 16 pixels the
    /// recomputed pre-activations (16 features per chunk, ~38 iterations each), the channels and the
    /// feature chunks of dW1/dE (≤ 74 each), and the closing dW2 corrections.
    fn backward_trips_per_patch(&self) -> usize {
        let (wg, tb, kc) = (64, 16, 16);
        let hidden_chunks = self.hidden.div_ceil(wg);
        let pixel_blocks = self.pixels.div_ceil(tb);
        let feature_chunks = self.features.div_ceil(wg);
        let preactivation = self.features.div_ceil(kc) * 38;
        let per_block = 2 + preactivation + 4 + self.channels + feature_chunks * 74;
        self.hidden
            + self.pixels
            + 2
            + 8
            + feature_chunks
            + hidden_chunks * (2 + wg + pixel_blocks * per_block)
            + self.hidden.div_ceil(wg) * (1 + self.channels)
    }
}

fn shapes_text(e: &Tensor, s1: &Tensor, s2: &Tensor, w: &InrWeights) -> String {
    format!(
        "E {:?}, s1 {:?}, s2 {:?}, W1 {:?}, b1 {:?}, W2 {:?}, b2 {:?}",
        e.shape(),
        s1.shape(),
        s2.shape(),
        w.w1.shape(),
        w.b1.shape(),
        w.w2.shape(),
        w.b2.shape()
    )
}

/// Check the operand shapes against each other and read off the sizes.
pub(crate) fn dims(
    op: &'static str,
    e: &Tensor,
    s1: &Tensor,
    s2: &Tensor,
    w: &InrWeights,
) -> Result<Dims> {
    let bad = |why: &str| {
        Error::shape(
            op,
            format!(
                "{why}; expected E [T, F], s1 [N, F], s2 [N, Hd], W1 [Hd, F], b1 [Hd], W2 [C, Hd], \
                 b2 [C], got {}",
                shapes_text(e, s1, s2, w)
            ),
        )
    };
    let (
        &[pixels, features],
        &[patches, f1],
        &[n2, hidden],
        &[h1, f2],
        &[hb],
        &[channels, h2],
        &[cb],
    ) = (
        e.shape(),
        s1.shape(),
        s2.shape(),
        w.w1.shape(),
        w.b1.shape(),
        w.w2.shape(),
        w.b2.shape(),
    )
    else {
        return Err(bad("wrong ranks"));
    };
    if f1 != features || f2 != features {
        return Err(bad("the feature sizes F differ"));
    }
    if n2 != patches {
        return Err(bad("s1 and s2 have different patch counts N"));
    }
    if h1 != hidden || hb != hidden || h2 != hidden {
        return Err(bad("the hidden sizes Hd differ"));
    }
    if cb != channels {
        return Err(bad("the channel counts C differ"));
    }
    if [pixels, features, patches, hidden, channels].contains(&0) {
        return Err(bad("every size must be at least 1"));
    }
    if channels > MAX_CHANNELS {
        return Err(bad(&format!(
            "at most {MAX_CHANNELS} output channels are supported"
        )));
    }
    let d = Dims {
        patches,
        pixels,
        features,
        hidden,
        channels,
        demodulate_output: w.demodulate_output,
    };
    let largest = (patches * pixels * channels)
        .max(patches * features.max(hidden))
        .max(d.layout()[4]);
    if largest > u32::MAX as usize {
        return Err(bad("the sizes overflow 32-bit indexing"));
    }
    Ok(d)
}

/// Copy the shared operands into one buffer [E | W1 | b1 | W2 | b2].
fn pack_shared(d: &Dims, e: &Tensor, w: &InrWeights) -> Result<Tensor> {
    let gpu = e.gpu();
    let [off_w1, off_b1, off_w2, off_b2, len] = d.layout();
    let packed = Tensor::empty(gpu, &[len])?;
    for (t, off) in [
        (e, 0),
        (w.w1, off_w1),
        (w.b1, off_b1),
        (w.w2, off_w2),
        (w.b2, off_b2),
    ] {
        gpu.copy(
            t.buffer(),
            0,
            packed.buffer(),
            (off * 4) as u64,
            (t.numel() * 4) as u64,
        );
    }
    Ok(packed)
}

/// Decoder output [N, T, C] (formula in the module docs).
pub fn inr_forward(e: &Tensor, s1: &Tensor, s2: &Tensor, w: &InrWeights) -> Result<Tensor> {
    let d = dims("inr_forward", e, s1, s2, w)?;
    let gpu = e.gpu();
    let packed = pack_shared(&d, e, w)?;
    let out = Tensor::empty(gpu, &[d.patches, d.pixels, d.channels])?;
    gpu.dispatch(
        &SHADER,
        "inr_forward",
        &[],
        bytemuck::bytes_of(&d.params(1, d.patches)),
        &[
            (s1.buffer(), Access::Read),
            (s2.buffer(), Access::Read),
            (packed.buffer(), Access::Read),
            (out.buffer(), Access::ReadWrite),
        ],
        grid_1d(d.patches, 1),
    )?;
    Ok(out)
}

/// Gradients of `Σ dout ⊙ inr_forward(e, s1, s2, w)` with respect to every input (formulas in the
/// WGSL header).
pub fn inr_backward(
    e: &Tensor,
    s1: &Tensor,
    s2: &Tensor,
    w: &InrWeights,
    dout: &Tensor,
) -> Result<InrGrads> {
    let groups = if e.gpu().is_cpu() {
        BACKWARD_GROUPS_CPU
    } else {
        BACKWARD_GROUPS_GPU
    };
    inr_backward_in_groups(e, s1, s2, w, dout, groups)
}

/// [`inr_backward`] with at most `max_groups` workgroups, i.e. partial records of the shared-weight
/// gradients (each workgroup handles a run of consecutive patches; the records also stay within a
/// 32 MiB budget). More groups mean more parallelism but more records to add up; tests use small
/// values to exercise groups of several patches.
pub fn inr_backward_in_groups(
    e: &Tensor,
    s1: &Tensor,
    s2: &Tensor,
    w: &InrWeights,
    dout: &Tensor,
    max_groups: usize,
) -> Result<InrGrads> {
    const OP: &str = "inr_backward";
    let d = dims(OP, e, s1, s2, w)?;
    if dout.shape() != [d.patches, d.pixels, d.channels] {
        return Err(Error::shape(
            OP,
            format!(
                "dout has shape {:?}, expected [N, T, C] = {:?} for {}",
                dout.shape(),
                [d.patches, d.pixels, d.channels],
                shapes_text(e, s1, s2, w)
            ),
        ));
    }
    let gpu = e.gpu();
    let record = d.layout()[4];
    let by_memory = (PARTIALS_BUDGET_BYTES / (record * 4)).max(1);
    let wanted = max_groups.min(by_memory).clamp(1, d.patches);
    let per_group = d.patches.div_ceil(wanted);
    let groups = d.patches.div_ceil(per_group);

    // the CPU loop budget: each group's run of patches in as many dispatches as it takes
    let per_patch = d.backward_trips_per_patch();
    if !fits_loop_budget(per_patch) {
        return Err(Error::shape(
            OP,
            format!(
                "one patch of {} would run about {per_patch} loop iterations in one invocation, over \
                 the engine's budget of {CPU_LOOP_BUDGET} (fewer pixels per patch or hidden units)",
                shapes_text(e, s1, s2, w)
            ),
        ));
    }
    let per_dispatch = (CPU_LOOP_BUDGET / per_patch).clamp(1, per_group);

    let packed = pack_shared(&d, e, w)?;
    let ds1 = Tensor::empty(gpu, s1.shape())?;
    let ds2 = Tensor::empty(gpu, s2.shape())?;
    let partials = Tensor::zeros(gpu, &[groups, record])?;
    let params = d.params(per_group, groups);
    for first in (0..per_group).step_by(per_dispatch) {
        let part = Params {
            first_in_group: first as u32,
            per_dispatch: per_dispatch as u32,
            ..params
        };
        gpu.dispatch(
            &SHADER,
            "inr_backward",
            &[],
            bytemuck::bytes_of(&part),
            &[
                (s1.buffer(), Access::Read),
                (s2.buffer(), Access::Read),
                (packed.buffer(), Access::Read),
                (dout.buffer(), Access::Read),
                (ds1.buffer(), Access::ReadWrite),
                (ds2.buffer(), Access::ReadWrite),
                (partials.buffer(), Access::ReadWrite),
            ],
            grid_1d(groups, 1),
        )?;
    }
    let sums = Tensor::empty(gpu, &[record])?;
    gpu.dispatch(
        &SHADER,
        "inr_sum_partials",
        &[],
        bytemuck::bytes_of(&params),
        &[
            (partials.buffer(), Access::Read),
            (sums.buffer(), Access::ReadWrite),
        ],
        grid_1d(record, 256),
    )?;
    // unpack [dE | dW1 | db1 | dW2 | db2]
    let [off_w1, off_b1, off_w2, off_b2, _] = d.layout();
    let unpack = |shape: &[usize], off: usize| -> Result<Tensor> {
        let t = Tensor::empty(gpu, shape)?;
        gpu.copy(
            sums.buffer(),
            (off * 4) as u64,
            t.buffer(),
            0,
            (t.numel() * 4) as u64,
        );
        Ok(t)
    };
    Ok(InrGrads {
        de: unpack(e.shape(), 0)?,
        ds1,
        ds2,
        dw1: unpack(w.w1.shape(), off_w1)?,
        db1: unpack(w.b1.shape(), off_b1)?,
        dw2: unpack(w.w2.shape(), off_w2)?,
        db2: unpack(w.b2.shape(), off_b2)?,
    })
}

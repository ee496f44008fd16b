//! Batched matmul with fused bias + activation epilogue (`shaders/matmul.wgsl`).
//!
//! `C[b] = act(op(A[b]) · op(B[b]) + bias)`, op = identity or transpose per operand; A is stored
//! `[.., M, K]` (or `[.., K, M]` with `trans_a`), B `[.., K, N]` (or `[.., N, K]` with `trans_b`), C and
//! the bias row-major `[.., M, N]` and `[N]`. The backward is matmuls of the same kernel with other
//! transpose flags (`dA = dC·op(B)ᵀ`, `dB = op(A)ᵀ·dC`).
//!
//! Kernel choice ([`TileConfig::for_problem`]): GPUs use workgroup-memory tiles; CPU adapters
//! (lavapipe) use register-blocked kernels without workgroup memory, and for products of at least
//! [`SUBGROUP_KERNEL_MIN_FLOPS`] one that shares A across a subgroup (faster, but slower to compile).

use super::elementwise::Unary;
use super::layout::to_operand_texture;
use super::{CPU_LOOP_BUDGET, fits_loop_budget, operand_textures_wanted, shader, texture_reader};
use crate::error::{Error, Result};
use crate::gpu::{Access, Gpu, Shader, TextureAccess, overrides};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::collections::HashMap;

/// The source as written (default tile constants); launches use per-adapter variants of it.
pub static SHADER: Shader = shader!("matmul");

/// Activation applied in the epilogue.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Activation {
    /// identity
    #[default]
    None,
    /// GELU (tanh form)
    Gelu,
    /// leaky ReLU with the given negative slope
    LeakyRelu(f32),
    /// sin
    Sin,
    /// ReLU
    Relu,
}

impl Activation {
    fn code(self) -> (u32, f32) {
        match self {
            Activation::None => (0, 0.0),
            Activation::Gelu => (1, 0.0),
            Activation::LeakyRelu(a) => (2, a),
            Activation::Sin => (3, 0.0),
            Activation::Relu => (4, 0.0),
        }
    }
    /// The same map as an elementwise op (for the backward), `None` for identity.
    pub fn as_unary(self) -> Option<Unary> {
        match self {
            Activation::None => None,
            Activation::Gelu => Some(Unary::Gelu),
            Activation::LeakyRelu(a) => Some(Unary::LeakyRelu(a)),
            Activation::Sin => Some(Unary::Sin),
            Activation::Relu => Some(Unary::Relu),
        }
    }
}

/// Which kernel of `shaders/matmul.wgsl` a launch uses (all compute the same product and epilogue).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// `matmul`: BM × BN tiles staged through workgroup memory (GPUs).
    Tiled,
    /// `matmul_registers`: 16 × 8 outputs per invocation, operands loaded straight from storage,
    /// no workgroup memory (CPU adapters: small products, or no subgroups).
    Registers,
    /// `matmul_subgroup`: 32 × 8 outputs per lane; the lanes of a subgroup share their rows, each loads
    /// one 4 × 4 block of A per k-quad and passes it around with `subgroupBroadcast` (CPU adapters with
    /// subgroups of ≥ 8 lanes, large products).
    Subgroup,
}

/// Kernel and workgroup geometry: `WG_X × WG_Y` invocations, each computing `TM × TN` outputs, K step `TK`.
/// Only the tiled kernel takes its TM/TN/TK from here; the CPU kernels' blocks are fixed by their code
/// (the values here describe them, so that [`TileConfig::bm`] / [`TileConfig::bn`] are right for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TileConfig {
    pub kernel: MatmulKernel,
    pub wg_x: u32,
    pub wg_y: u32,
    pub tm: u32,
    pub tn: u32,
    pub tk: u32,
}

/// Smallest product (2·M·N·K·batch flops) that CPU adapters run with the subgroup kernel. Measured on
/// lavapipe (texture operands, vec4 stores): below it the registers kernel wins (64×384×384, 19 MFLOP:
/// 0.54 vs 0.76 ms), above it the subgroup kernel does, ragged batched products included
/// (128×384×384: 0.92 vs 0.72 ms; 96 × 65×64×65: 8.9 vs 5.9 ms; 1024×384×1152: 19.3 vs 11.9 ms).
/// Its pipelines also take longer to compile (a few hundred ms each), paid once per variant.
pub const SUBGROUP_KERNEL_MIN_FLOPS: f64 = 3e7;

impl TileConfig {
    /// For GPUs: 16×16 invocations × 4×4 outputs = 64×64 tiles through workgroup memory.
    pub const GPU: TileConfig = TileConfig {
        kernel: MatmulKernel::Tiled,
        wg_x: 16,
        wg_y: 16,
        tm: 4,
        tn: 4,
        tk: 16,
    };
    /// For CPU adapters (lavapipe/llvmpipe), the fastest measured there: one subgroup of 8 lanes per
    /// workgroup, 32 × 8 outputs per lane (a 32 × 64 block of C), K in steps of 4. On lavapipe a
    /// workgroup runs on one CPU thread with its invocations as SIMD lanes, and every storage load costs
    /// a scalar loop over the lanes (uniform addresses included), so the kernels maximise the reuse of
    /// each loaded value.
    pub const CPU: TileConfig = TileConfig {
        kernel: MatmulKernel::Subgroup,
        wg_x: 8,
        wg_y: 1,
        tm: 32,
        tn: 8,
        tk: 4,
    };
    /// For CPU adapters without subgroups of ≥ 8 lanes, and for small products: 8 × 4 invocations
    /// × 16 × 8 outputs = 64 × 64 blocks, K in steps of 4, no workgroup memory.
    pub const CPU_REGISTERS: TileConfig = TileConfig {
        kernel: MatmulKernel::Registers,
        wg_x: 8,
        wg_y: 4,
        tm: 16,
        tn: 8,
        tk: 4,
    };

    /// The default for an adapter (for large products). Environment overrides:
    /// `VITGAN_MATMUL_KERNEL=tiled|registers|subgroup` forces a kernel (subgroup falls back to registers
    /// where the adapter lacks subgroups of ≥ 8 lanes); `VITGAN_MATMUL_TILE=wgx,wgy,tm,tn,tk` forces the
    /// tiled kernel with that geometry (handy for sweeps).
    pub fn for_gpu(gpu: &Gpu) -> TileConfig {
        Self::for_problem(gpu, f64::INFINITY)
    }

    /// The configuration a product of `flops` (2·M·N·K·batch) runs with on `gpu`.
    pub fn for_problem(gpu: &Gpu, flops: f64) -> TileConfig {
        let tile_env = overrides::value("VITGAN_MATMUL_TILE").and_then(|s| Self::parse_tiled(&s));
        let kernel_env = overrides::value("VITGAN_MATMUL_KERNEL");
        let subgroups = supports_subgroup_kernel(gpu);
        if !cpu_kernels_fit(gpu) {
            return tile_env.unwrap_or(TileConfig::GPU);
        }
        match kernel_env.as_deref() {
            Some("tiled") => return tile_env.unwrap_or(TileConfig::GPU),
            Some("registers") => return TileConfig::CPU_REGISTERS,
            Some("subgroup") if subgroups => return TileConfig::CPU,
            Some("subgroup") => return TileConfig::CPU_REGISTERS,
            _ => {}
        }
        if let Some(t) = tile_env {
            return t;
        }
        if !gpu.is_cpu() {
            TileConfig::GPU
        } else if subgroups && flops >= SUBGROUP_KERNEL_MIN_FLOPS {
            TileConfig::CPU
        } else {
            TileConfig::CPU_REGISTERS
        }
    }

    /// `wgx,wgy,tm,tn,tk` as a tiled configuration (`None` unless five positive numbers with at most
    /// 256 invocations).
    fn parse_tiled(s: &str) -> Option<TileConfig> {
        let v: Vec<u32> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
        match v[..] {
            [wg_x, wg_y, tm, tn, tk]
                if v.iter().all(|&x| x > 0) && wg_x * wg_y <= 256 && tm * tn <= 256 =>
            {
                Some(TileConfig {
                    kernel: MatmulKernel::Tiled,
                    wg_x,
                    wg_y,
                    tm,
                    tn,
                    tk,
                })
            }
            _ => None,
        }
    }

    /// For the registers kernel: the workgroup shape (8 × 4, 4 × 2, 8 × 1 or 2 × 4 invocations of
    /// 16 × 8 outputs) that pads an `m × n` product least, so a batch of small ragged products (an
    /// unfused attention's 65 × 65 scores: 64 × 64 blocks compute 128 × 128) wastes less work. Other
    /// kernels are returned unchanged.
    pub fn fitted_to(self, m: usize, n: usize) -> TileConfig {
        if self.kernel != MatmulKernel::Registers {
            return self;
        }
        let padded = |t: &TileConfig| {
            m.div_ceil(t.bm() as usize)
                * t.bm() as usize
                * n.div_ceil(t.bn() as usize)
                * t.bn() as usize
        };
        // the first of equally padded shapes wins: the largest workgroup
        [(8, 4), (4, 2), (8, 1), (2, 4)]
            .into_iter()
            .map(|(wg_x, wg_y)| TileConfig { wg_x, wg_y, ..self })
            .min_by_key(padded)
            .unwrap_or(self)
    }

    /// Rows of C per workgroup.
    pub fn bm(&self) -> u32 {
        self.wg_y * self.tm
    }
    /// Columns of C per workgroup.
    pub fn bn(&self) -> u32 {
        self.wg_x * self.tn
    }
    /// An upper bound of the loop iterations one invocation runs for an inner dimension `k`, counted
    /// from the loops of `shaders/matmul.wgsl` as written (none assumed unrolled): the register and
    /// subgroup kernels step K by 4 (plus ≤ 64 iterations of block stores); the tiled kernel stages
    /// TK·BM and TK·BN values per K step over the workgroup and runs TM + TN + TM + TM·TN iterations
    /// for each of its TK products.
    pub fn k_loop_trips(&self, k: usize) -> usize {
        match self.kernel {
            MatmulKernel::Registers | MatmulKernel::Subgroup => k.div_ceil(4) + 64,
            MatmulKernel::Tiled => {
                let (tm, tn, tk) = (self.tm as usize, self.tn as usize, self.tk as usize);
                let wg = (self.wg_x * self.wg_y) as usize;
                let stage =
                    (tk * self.bm() as usize).div_ceil(wg) + (tk * self.bn() as usize).div_ceil(wg);
                k.div_ceil(tk) * (1 + stage + tk * (2 * tm + tn + tm * tn)) + 2 * tm * tn
            }
        }
    }

    /// Entry point in `shaders/matmul.wgsl`.
    fn entry(&self) -> &'static str {
        match self.kernel {
            MatmulKernel::Tiled => "matmul",
            MatmulKernel::Registers => "matmul_registers",
            MatmulKernel::Subgroup => "matmul_subgroup",
        }
    }
}

/// Storage buffers per shader stage the CPU kernels bind (A, B, bias, C, pre-activations, and the
/// vec4 views of A, B, C and the pre-activations).
const CPU_KERNEL_STORAGE_BUFFERS: u32 = 9;

/// Whether `gpu` allows the CPU kernels' bindings (WebGPU's default limit is 8; native adapters report
/// more). Where it does not, every product runs on the tiled kernel.
fn cpu_kernels_fit(gpu: &Gpu) -> bool {
    gpu.limits().max_storage_buffers_per_shader_stage >= CPU_KERNEL_STORAGE_BUFFERS
}

/// Whether `gpu` can run the subgroup kernel: subgroup operations, and subgroups of at least 8 lanes
/// (lanes 0..8 each hold one 4-row block of A).
pub fn supports_subgroup_kernel(gpu: &Gpu) -> bool {
    gpu.features().contains(wgpu::Features::SUBGROUP) && gpu.info().subgroup_min_size >= 8
}

thread_local! {
    static VARIANTS: RefCell<HashMap<(TileConfig, bool), &'static Shader>> = RefCell::default();
}

/// Marker lines around the subgroup kernel, which is left out of the source for the other kernels
/// (a module using subgroup operations does not compile on adapters without them).
const SUBGROUP_BEGIN: &str = "// BEGIN SUBGROUP KERNEL";
const SUBGROUP_END: &str = "// END SUBGROUP KERNEL";

/// The matmul shader with its tile constants rewritten to `t` and, with `textures`, the CPU kernels
/// reading A and B from the operand textures (bindings 10, 11) instead of the vec4 buffer views
/// (generated once per combination).
pub fn shader_variant(t: TileConfig, textures: bool) -> &'static Shader {
    VARIANTS.with(|v| {
        *v.borrow_mut().entry((t, textures)).or_insert_with(|| {
            let mut src = String::with_capacity(SHADER.source.len());
            let mut in_subgroup_section = false;
            for line in SHADER.source.lines() {
                if line.trim() == SUBGROUP_BEGIN {
                    in_subgroup_section = true;
                } else if line.trim() == SUBGROUP_END {
                    in_subgroup_section = false;
                }
                if in_subgroup_section && t.kernel != MatmulKernel::Subgroup {
                    continue;
                }
                let reader = textures
                    .then(|| texture_reader(line, &[("a4_at", "a_tex"), ("b4_at", "b_tex")]))
                    .flatten();
                let replaced = match line.split(':').next().unwrap_or("") {
                    _ if reader.is_some() => reader.unwrap_or_default(),
                    "const WG_X" => format!("const WG_X: u32 = {}u;", t.wg_x),
                    "const WG_Y" => format!("const WG_Y: u32 = {}u;", t.wg_y),
                    "const TM" => format!("const TM: u32 = {}u;", t.tm),
                    "const TN" => format!("const TN: u32 = {}u;", t.tn),
                    "const TK" => format!("const TK: u32 = {}u;", t.tk),
                    _ => line.to_string(),
                };
                src.push_str(&replaced);
                src.push('\n');
            }
            let name = format!(
                "matmul_{:?}_{}x{}_{}x{}_{}{}",
                t.kernel,
                t.wg_x,
                t.wg_y,
                t.tm,
                t.tn,
                t.tk,
                if textures { "_textures" } else { "" }
            )
            .to_lowercase();
            Box::leak(Box::new(Shader {
                name: Box::leak(name.into_boxed_str()),
                source: Box::leak(src.into_boxed_str()),
            }))
        })
    })
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    alpha: f32,
    _pad: u32,
}

/// Options of a fused matmul.
#[derive(Clone, Copy, Default)]
pub struct MatmulOptions<'a> {
    /// A is stored as [.., K, M].
    pub trans_a: bool,
    /// B is stored as [.., N, K].
    pub trans_b: bool,
    /// Bias of length N added to every row.
    pub bias: Option<&'a Tensor>,
    /// Epilogue activation.
    pub act: Activation,
    /// Also return the pre-activation values.
    pub save_preact: bool,
}

/// Split a shape into (batch, rows, cols).
fn as_batched(op: &'static str, name: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            op,
            format!("{name} must have at least 2 axes, got {shape:?}"),
        ));
    }
    let r = shape.len();
    Ok((shape[..r - 2].iter().product(), shape[r - 2], shape[r - 1]))
}

/// `act(op(A)·op(B) + bias)`; returns (output, pre-activation if requested).
pub fn matmul_fused(a: &Tensor, b: &Tensor, o: MatmulOptions) -> Result<(Tensor, Option<Tensor>)> {
    const OP: &str = "matmul";
    let (ba, ar, ac) = as_batched(OP, "A", a.shape())?;
    let (bb, br, bc) = as_batched(OP, "B", b.shape())?;
    let (m, ka) = if o.trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if o.trans_b { (bc, br) } else { (br, bc) };
    if ka != kb {
        return Err(Error::shape(
            OP,
            format!(
                "inner dimensions differ: A {:?}{} vs B {:?}{}",
                a.shape(),
                if o.trans_a { "ᵀ" } else { "" },
                b.shape(),
                if o.trans_b { "ᵀ" } else { "" }
            ),
        ));
    }
    let batch = ba.max(bb);
    if (ba != batch && ba != 1) || (bb != batch && bb != 1) {
        return Err(Error::shape(
            OP,
            format!("batch sizes differ: A {:?} vs B {:?}", a.shape(), b.shape()),
        ));
    }
    let lead = if ba == batch {
        &a.shape()[..a.rank() - 2]
    } else {
        &b.shape()[..b.rank() - 2]
    };
    let mut out_shape = lead.to_vec();
    out_shape.extend([m, n]);
    if let Some(bias) = o.bias
        && bias.numel() != n
    {
        return Err(Error::shape(
            OP,
            format!("bias has shape {:?}, expected {n} values", bias.shape()),
        ));
    }
    let gpu = a.gpu();
    if let Some(slices) = k_slices(a, b, o, m, n, ka) {
        return matmul_k_slices(a, b, m, n, ka, slices);
    }
    let c = Tensor::empty(gpu, &out_shape)?;
    let pre = if o.save_preact {
        Some(Tensor::empty(gpu, &out_shape)?)
    } else {
        None
    };
    if c.numel() == 0 {
        return Ok((c, pre));
    }
    if ka == 0 {
        gpu.clear(c.buffer(), (c.numel() * 4) as u64);
        return Ok((c, pre));
    }
    let dummy_bias;
    let bias = match o.bias {
        Some(t) => t,
        None => {
            dummy_bias = Tensor::empty(gpu, &[1])?;
            &dummy_bias
        }
    };
    let dummy_pre;
    let pre_buf = match &pre {
        Some(t) => t,
        None => {
            dummy_pre = Tensor::empty(gpu, &[1])?;
            &dummy_pre
        }
    };
    let (act, alpha) = o.act.code();
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: ka as u32,
        batch: batch as u32,
        a_batch_stride: if ba == 1 { 0 } else { (m * ka) as u32 },
        b_batch_stride: if bb == 1 { 0 } else { (ka * n) as u32 },
        alpha,
        _pad: 0,
    };
    let flops = 2.0 * (m * n * ka * batch) as f64;
    check_forced_kernel(gpu)?;
    let t = TileConfig::for_problem(gpu, flops).fitted_to(m, n);
    // CPU adapters: an inner dimension past the loop budget is summed in pieces
    if gpu.is_cpu() && !fits_loop_budget(t.k_loop_trips(ka)) {
        return matmul_split_k(a, b, o, ka, t);
    }
    // more than 65,535 row blocks: blocks of rows, concatenated
    if m.div_ceil(t.bm() as usize) > MAX_GRID && !o.trans_a {
        return matmul_split_rows(
            a,
            b,
            o,
            m,
            m.div_ceil(m.div_ceil(t.bm() as usize).div_ceil(MAX_GRID)),
        );
    }
    let groups = [
        (n as u32).div_ceil(t.bn()),
        (m as u32).div_ceil(t.bm()),
        batch as u32,
    ];
    let mut constants = vec![
        ("TRANS_A", o.trans_a as u32 as f64),
        ("TRANS_B", o.trans_b as u32 as f64),
        ("HAS_BIAS", o.bias.is_some() as u32 as f64),
        ("SAVE_PREACT", o.save_preact as u32 as f64),
        ("ACT", act as f64),
    ];
    let mut buffers = vec![
        (a.buffer(), Access::Read),
        (b.buffer(), Access::Read),
        (bias.buffer(), Access::Read),
        (c.buffer(), Access::ReadWrite),
        (pre_buf.buffer(), Access::ReadWrite),
    ];
    let mut textures = None;
    if t.kernel != MatmulKernel::Tiled {
        // vec4 reads need the stored operand's contiguous dimension to be a multiple of 4
        let vec4_a = if o.trans_a { m % 4 == 0 } else { ka % 4 == 0 };
        let vec4_b = if o.trans_b { ka % 4 == 0 } else { n % 4 == 0 };
        constants.push(("VEC4_A", vec4_a as u32 as f64));
        constants.push(("VEC4_B", vec4_b as u32 as f64));
        constants.push(("VEC4_C", n.is_multiple_of(4) as u32 as f64));
        buffers.push((a.buffer(), Access::Read));
        buffers.push((b.buffer(), Access::Read));
        // vec4 views of C and the pre-activations (bindings 8, 9)
        buffers.push((c.buffer(), Access::ReadWrite));
        buffers.push((pre_buf.buffer(), Access::ReadWrite));
        if vec4_a && vec4_b && operand_textures_wanted(gpu, "VITGAN_MATMUL_OPERANDS") {
            textures = operand_textures(a, b)?;
        }
    }
    let shader = shader_variant(t, textures.is_some());
    let params = bytemuck::bytes_of(&params);
    match &textures {
        Some((ta, tb)) => gpu.dispatch_with_textures(
            shader,
            t.entry(),
            &constants,
            params,
            &buffers,
            &[
                (10, ta, TextureAccess::ReadOnly),
                (11, tb, TextureAccess::ReadOnly),
            ],
            groups,
        )?,
        None => gpu.dispatch(shader, t.entry(), &constants, params, &buffers, groups)?,
    }
    Ok((c, pre))
}

/// An error when `VITGAN_MATMUL_KERNEL` names an unknown kernel or one this adapter cannot run, or
/// `VITGAN_MATMUL_TILE` a geometry past the kernel's limits (a forced choice never silently runs
/// another kernel).
fn check_forced_kernel(gpu: &Gpu) -> Result<()> {
    if let Some(t) = overrides::value("VITGAN_MATMUL_TILE")
        && TileConfig::parse_tiled(&t).is_none()
    {
        return Err(Error::Config {
            field: "VITGAN_MATMUL_TILE".into(),
            detail: format!(
                "`{t}`: expected wg_x,wg_y,tm,tn,tk, positive, with wg_x·wg_y ≤ 256 and tm·tn ≤ 256; \
                 unset it to choose automatically"
            ),
        });
    }
    let Some(v) = overrides::value("VITGAN_MATMUL_KERNEL") else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(Error::Config {
            field: "VITGAN_MATMUL_KERNEL".into(),
            detail: format!("`{v}`: {why}; unset it to choose automatically"),
        })
    };
    match v.as_str() {
        "tiled" => Ok(()),
        "registers" | "subgroup" if !cpu_kernels_fit(gpu) => refuse(format!(
            "{} allows fewer than {CPU_KERNEL_STORAGE_BUFFERS} storage buffers per shader stage",
            gpu.describe()
        )),
        "subgroup" if !supports_subgroup_kernel(gpu) => refuse(format!(
            "{} has no subgroups of at least 8 lanes",
            gpu.describe()
        )),
        "registers" | "subgroup" => Ok(()),
        _ => refuse("expected tiled, registers or subgroup".into()),
    }
}

/// Shortest inner dimension [`k_slices`] cuts.
pub const K_SLICES_MIN_K: usize = 2048;

/// Inner-dimension length a slice of [`k_slices`] keeps at least.
const K_SLICE_MIN_LEN: usize = 256;

/// How many K-slices to compute `Aᵀ·B` in, or `None` to run it as one product: on CPU adapters, a
/// plain product whose operands both lead with the inner dimension (stored `[K, M]` and `[K, N]`:
/// a weight gradient `Xᵀ·dY`), `K ≥` [`K_SLICES_MIN_K`], and so few output tiles that it would be
/// one or two workgroups — one llvmpipe thread runs the whole K loop while the other waits (the
/// INR's `[3, 32]` output-weight gradient over 8,192 pixels took 11.7 ms in one workgroup). The
/// slices are free views: 16, 8 or 4 of them, each ≥ 256 long, dividing K (see
/// `matmul_k_slices`). `VITGAN_MATMUL_K_SLICES=off` turns this off, `on` allows it on any adapter.
pub fn k_slices(
    a: &Tensor,
    b: &Tensor,
    o: MatmulOptions,
    m: usize,
    n: usize,
    k: usize,
) -> Option<usize> {
    let allowed = match overrides::value("VITGAN_MATMUL_K_SLICES").as_deref() {
        Some("off") => false,
        Some("on") => true,
        _ => a.gpu().is_cpu(),
    };
    let plain = o.trans_a
        && !o.trans_b
        && o.bias.is_none()
        && o.act == Activation::None
        && !o.save_preact
        && a.rank() == 2
        && b.rank() == 2;
    if !allowed || !plain || k < K_SLICES_MIN_K {
        return None;
    }
    let t = TileConfig::for_problem(a.gpu(), 2.0 * (m * n * k) as f64).fitted_to(m, n);
    let tiles = m.div_ceil(t.bm() as usize) * n.div_ceil(t.bn() as usize);
    if tiles > 2 {
        return None;
    }
    [16, 8, 4]
        .into_iter()
        .find(|&s| k.is_multiple_of(s) && k / s >= K_SLICE_MIN_LEN)
}

/// `Aᵀ·B` for `A: [K, M]`, `B: [K, N]` as `slices` products of K-slices, one batch (a workgroup per
/// slice at least), then summed over the slices: `C = Σ_s A_sᵀ·B_s`. An `M` or `N` that is not a
/// multiple of 4 is zero-padded to one first (a copy of `K × M` floats), so that the kernel reads
/// both operands as vec4s — scalar reads made the INR's `[3, 32]` gradient 5× slower than `[32, 32]`
/// — and the padded rows and columns are cut off the sum.
fn matmul_k_slices(
    a: &Tensor,
    b: &Tensor,
    m: usize,
    n: usize,
    k: usize,
    slices: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    use super::{layout, reduce};
    let pad = |x: &Tensor, cols: usize| -> Result<Tensor> {
        if cols.is_multiple_of(4) {
            Ok(x.clone())
        } else {
            layout::pad_slice(x, &[k, cols.next_multiple_of(4)], 1, 0)
        }
    };
    let (mp, np) = (m.next_multiple_of(4), n.next_multiple_of(4));
    let a3 = pad(a, m)?.reshape(&[slices, k / slices, mp])?;
    let b3 = pad(b, n)?.reshape(&[slices, k / slices, np])?;
    let partial = matmul_fused(
        &a3,
        &b3,
        MatmulOptions {
            trans_a: true,
            ..MatmulOptions::default()
        },
    )?
    .0;
    let mut c = reduce::sum_axis(&partial, 0, false)?;
    if mp != m {
        c = layout::slice(&c, 0, 0, m)?;
    }
    if np != n {
        c = layout::slice(&c, 1, 0, n)?;
    }
    Ok((c, None))
}

/// Workgroups a dispatch may have along one dimension (WebGPU's and every adapter's minimum limit).
const MAX_GRID: usize = 65_535;

/// [`matmul_fused`] for an inner dimension `k` whose loop would exceed the CPU loop budget in one
/// invocation: the products of K-slices of A and B (each within the budget) are added, then the
/// bias and activation are applied elementwise. The slices are copies (≈ one read of A and B, small
/// beside the product).
fn matmul_split_k(
    a: &Tensor,
    b: &Tensor,
    o: MatmulOptions,
    k: usize,
    t: TileConfig,
) -> Result<(Tensor, Option<Tensor>)> {
    use super::{elementwise, layout};
    let mut pieces = 2;
    let piece = loop {
        let len = k.div_ceil(pieces).next_multiple_of(16);
        if t.k_loop_trips(len) <= CPU_LOOP_BUDGET {
            break len;
        }
        pieces += 1;
    };
    let k_axis_a = if o.trans_a {
        a.rank() - 2
    } else {
        a.rank() - 1
    };
    let k_axis_b = if o.trans_b {
        b.rank() - 1
    } else {
        b.rank() - 2
    };
    let plain = MatmulOptions {
        trans_a: o.trans_a,
        trans_b: o.trans_b,
        ..MatmulOptions::default()
    };
    let mut sum: Option<Tensor> = None;
    for start in (0..k).step_by(piece) {
        let len = piece.min(k - start);
        let a_part = layout::slice(a, k_axis_a, start, len)?;
        let b_part = layout::slice(b, k_axis_b, start, len)?;
        let (c, _) = matmul_fused(&a_part, &b_part, plain)?;
        sum = Some(match sum {
            None => c,
            Some(acc) => elementwise::add(&acc, &c)?,
        });
    }
    let mut y = sum.expect("k > 0 gives at least one piece");
    if let Some(bias) = o.bias {
        y = elementwise::add(&y, &bias.reshape(&[bias.numel()])?)?;
    }
    let pre = o.save_preact.then(|| y.clone());
    let out = match o.act.as_unary() {
        Some(op) => elementwise::unary(&y, op)?,
        None => y,
    };
    Ok((out, pre))
}

/// [`matmul_fused`] in blocks of `rows` rows of A (stored [.., M, K]) when the row blocks of one
/// dispatch would exceed [`MAX_GRID`]: each block's product, concatenated.
fn matmul_split_rows(
    a: &Tensor,
    b: &Tensor,
    o: MatmulOptions,
    m: usize,
    rows: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    use super::layout;
    let axis = a.rank() - 2;
    let (mut outs, mut pres) = (Vec::new(), Vec::new());
    for start in (0..m).step_by(rows) {
        let part = layout::slice(a, axis, start, rows.min(m - start))?;
        let (c, pre) = matmul_fused(&part, b, o)?;
        outs.push(c);
        pres.extend(pre);
    }
    let axis = outs[0].rank() - 2;
    let out = layout::concat(&outs.iter().collect::<Vec<_>>(), axis)?;
    let pre = if o.save_preact {
        Some(layout::concat(&pres.iter().collect::<Vec<_>>(), axis)?)
    } else {
        None
    };
    Ok((out, pre))
}

/// Copy A and B into operand textures (slots 0 and 1) for the texture variant; `None` when an operand
/// is too large for the adapter's textures.
fn operand_textures(
    a: &Tensor,
    b: &Tensor,
) -> Result<Option<(wgpu::TextureView, wgpu::TextureView)>> {
    let Some(ta) = to_operand_texture(a, 0)? else {
        return Ok(None);
    };
    let Some(tb) = to_operand_texture(b, 1)? else {
        return Ok(None);
    };
    Ok(Some((ta, tb)))
}

/// `A·B` (batched; a rank-2 operand is shared by the whole batch).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(matmul_fused(a, b, MatmulOptions::default())?.0)
}

/// `op(A)·op(B)` with transposes.
pub fn matmul_t(a: &Tensor, b: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
    Ok(matmul_fused(
        a,
        b,
        MatmulOptions {
            trans_a,
            trans_b,
            ..Default::default()
        },
    )?
    .0)
}

/// Gradients of `C = op(A)·op(B)` given `dC` (pre-activation gradient), as (dA, dB) in A's and B's
/// stored layouts. An operand broadcast over the batch gets its gradient summed over the batch.
pub fn matmul_backward(
    a: &Tensor,
    b: &Tensor,
    dc: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<(Tensor, Tensor)> {
    Ok((
        matmul_grad_a(a, b, dc, trans_a, trans_b)?,
        matmul_grad_b(a, b, dc, trans_a, trans_b)?,
    ))
}

/// dA of `C = op(A)·op(B)`: `dC·op(B)ᵀ`, or its transpose `op(B)·dCᵀ` when A is stored transposed.
pub fn matmul_grad_a(
    a: &Tensor,
    b: &Tensor,
    dc: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let da = if trans_a {
        matmul_t(b, dc, trans_b, true)?
    } else {
        matmul_t(dc, b, false, !trans_b)?
    };
    reduce_broadcast_batch(da, a.shape())
}

/// dB of `C = op(A)·op(B)`: `op(A)ᵀ·dC`, or its transpose `dCᵀ·op(A)` when B is stored transposed.
pub fn matmul_grad_b(
    a: &Tensor,
    b: &Tensor,
    dc: &Tensor,
    trans_a: bool,
    trans_b: bool,
) -> Result<Tensor> {
    let db = if trans_b {
        matmul_t(dc, a, true, trans_a)?
    } else {
        matmul_t(a, dc, !trans_a, false)?
    };
    reduce_broadcast_batch(db, b.shape())
}

fn reduce_broadcast_batch(g: Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g);
    }
    let r = g.rank();
    let batch: usize = g.shape()[..r - 2].iter().product();
    let flat = g.reshape(&[batch, g.shape()[r - 2] * g.shape()[r - 1]])?;
    super::reduce::sum_axis(&flat, 0, false)?.reshape(shape)
}

//! Elementwise kernels (`shaders/elementwise.wgsl`): unary maps and their backward, broadcasting binary
//! ops, fill. On CPU adapters the vec4 kernels read operands of at least
//! [`super::OPERAND_TEXTURE_MIN_ELEMENTS`] from operand textures (`VITGAN_ELEMENTWISE_OPERANDS=buffers|textures` forces either).

use super::{
    MAX_RANK, coalesce_dims, dispatch_reading_textures, grid_1d, operand_textures_for, pack8,
    shader, with_texture_readers,
};
use crate::error::{Error, Result};
use crate::gpu::{Access, Shader};
use crate::tensor::Tensor;
use std::sync::OnceLock;

pub static SHADER: Shader = shader!("elementwise");

/// The shader with the vec4 kernels' operand readers loading from the textures at bindings 8 (the
/// first operand) and 9 (the second).
pub fn shader_with_textures() -> &'static Shader {
    static WITH_TEXTURES: OnceLock<Shader> = OnceLock::new();
    WITH_TEXTURES.get_or_init(|| {
        with_texture_readers(
            "elementwise_textures",
            SHADER.source,
            &[
                ("ux4_at", "tex_a"),
                ("bx4_at", "tex_a"),
                ("bdy4_at", "tex_b"),
                ("ba4_at", "tex_a"),
                ("bb4_at", "tex_b"),
            ],
        )
    })
}

/// Launch a vec4 kernel of this family with `inputs` as its texture operands (slots 0, 1 at bindings
/// 8, 9) where [`operand_textures_for`] says so.
fn dispatch_vec4(
    entry: &'static str,
    code: u32,
    params: &[u8],
    buffers: &[(&wgpu::Buffer, Access)],
    inputs: &[&Tensor],
    n: usize,
    groups: [u32; 3],
) -> Result<()> {
    let gpu = inputs[0].gpu();
    let operands: Vec<(&Tensor, u8, u32)> = inputs
        .iter()
        .zip([(0u8, 8u32), (1, 9)])
        .map(|(t, (slot, binding))| (*t, slot, binding))
        .collect();
    dispatch_reading_textures(
        gpu,
        &SHADER,
        shader_with_textures,
        entry,
        &[("OP", code as f64)],
        params,
        buffers,
        &operands,
        operand_textures_for(gpu, n, "VITGAN_ELEMENTWISE_OPERANDS"),
        groups,
    )
}

/// Unary maps `y = f(x)`; the formulas are in the WGSL header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// −x
    Neg,
    /// eˣ
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// x/2 · (1 + tanh(√(2/π)(x + 0.044715x³)))
    Gelu,
    /// x if x > 0 else slope·x
    LeakyRelu(f32),
    /// sin x
    Sin,
    /// ln(1 + eˣ)
    Softplus,
    /// 1/(1 + e⁻ˣ)
    Sigmoid,
    /// tanh x
    Tanh,
    /// max(x, 0)
    Relu,
    /// x²
    Square,
    /// scale·x + shift
    Affine(f32, f32),
    /// 1/x
    Recip,
    /// cos x
    Cos,
}

impl Unary {
    /// (OP code, alpha, beta) as the kernel expects them.
    pub fn code(self) -> (u32, f32, f32) {
        match self {
            Unary::Neg => (0, 0.0, 0.0),
            Unary::Exp => (1, 0.0, 0.0),
            Unary::Log => (2, 0.0, 0.0),
            Unary::Sqrt => (3, 0.0, 0.0),
            Unary::Gelu => (4, 0.0, 0.0),
            Unary::LeakyRelu(a) => (5, a, 0.0),
            Unary::Sin => (6, 0.0, 0.0),
            Unary::Softplus => (7, 0.0, 0.0),
            Unary::Sigmoid => (8, 0.0, 0.0),
            Unary::Tanh => (9, 0.0, 0.0),
            Unary::Relu => (10, 0.0, 0.0),
            Unary::Square => (11, 0.0, 0.0),
            Unary::Affine(s, b) => (12, s, b),
            Unary::Recip => (13, 0.0, 0.0),
            Unary::Cos => (14, 0.0, 0.0),
        }
    }
}

/// Binary ops with broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a − b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Max,
    /// min(a, b)
    Min,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryParams {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BinaryParams {
    n: u32,
    rank: u32,
    _pad: [u32; 2],
    dims: [u32; MAX_RANK],
    a_strides: [u32; MAX_RANK],
    b_strides: [u32; MAX_RANK],
}

/// Vec4s per invocation of the `*_chunks4` kernels (must match `CHUNK4` in elementwise.wgsl and
/// adam.wgsl).
pub(crate) const CHUNK4: usize = 8;

/// Whether `n` elements go through a `*_chunks4` kernel: on CPU adapters, when `n` is a multiple of 4.
pub(crate) fn chunks4(gpu: &crate::gpu::Gpu, n: usize) -> bool {
    gpu.is_cpu() && n.is_multiple_of(4) && n > 0
}

fn launch_unary(entry: &'static str, op: Unary, inputs: &[&Tensor], out: &Tensor) -> Result<()> {
    let (code, alpha, beta) = op.code();
    let n = out.numel();
    let vec4 = chunks4(out.gpu(), n);
    let params = UnaryParams {
        n: if vec4 { n / 4 } else { n } as u32,
        alpha,
        beta,
        _pad: 0,
    };
    let (entry, groups) = match (vec4, entry) {
        (false, _) => (entry, grid_1d(n, 256)),
        (true, "unary") => ("unary_chunks4", grid_1d((n / 4).div_ceil(CHUNK4), 64)),
        (true, _) => (
            "unary_backward_chunks4",
            grid_1d((n / 4).div_ceil(CHUNK4), 64),
        ),
    };
    let mut bufs: Vec<(&wgpu::Buffer, Access)> =
        inputs.iter().map(|t| (t.buffer(), Access::Read)).collect();
    bufs.push((out.buffer(), Access::ReadWrite));
    if vec4 {
        return dispatch_vec4(
            entry,
            code,
            bytemuck::bytes_of(&params),
            &bufs,
            inputs,
            n,
            groups,
        );
    }
    out.gpu().dispatch(
        &SHADER,
        entry,
        &[("OP", code as f64)],
        bytemuck::bytes_of(&params),
        &bufs,
        groups,
    )
}

/// `y = f(x)`.
pub fn unary(x: &Tensor, op: Unary) -> Result<Tensor> {
    let y = Tensor::empty(x.gpu(), x.shape())?;
    launch_unary("unary", op, &[x], &y)?;
    Ok(y)
}

/// `dx = dy · f'(x)`.
pub fn unary_backward(x: &Tensor, dy: &Tensor, op: Unary) -> Result<Tensor> {
    if x.shape() != dy.shape() {
        return Err(Error::shape(
            "unary_backward",
            format!("x {:?} vs dy {:?}", x.shape(), dy.shape()),
        ));
    }
    let dx = Tensor::empty(x.gpu(), x.shape())?;
    launch_unary("unary_backward", op, &[x, dy], &dx)?;
    Ok(dx)
}

/// Fill `t` with `value`.
pub fn fill(t: &Tensor, value: f32) -> Result<()> {
    let params = UnaryParams {
        n: t.numel() as u32,
        alpha: value,
        beta: 0.0,
        _pad: 0,
    };
    t.gpu().dispatch(
        &SHADER,
        "fill",
        &[],
        bytemuck::bytes_of(&params),
        &[(t.buffer(), Access::ReadWrite)],
        grid_1d(t.numel(), 256),
    )
}

/// NumPy-style broadcast of two shapes (aligned at the right).
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!("cannot broadcast {a:?} with {b:?}"),
            ));
        };
    }
    Ok(out)
}

/// Strides of `shape` read as `out_shape` (0 on broadcast axes).
pub fn broadcast_strides(shape: &[usize], out_shape: &[usize]) -> Vec<usize> {
    let own = super::contiguous_strides(shape);
    let off = out_shape.len() - shape.len();
    (0..out_shape.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                own[i - off]
            }
        })
        .collect()
}

/// `out = a ∘ b` with broadcasting.
pub fn binary(a: &Tensor, b: &Tensor, op: Binary) -> Result<Tensor> {
    let shape = broadcast_shape("binary op", a.shape(), b.shape())?;
    if shape.len() > MAX_RANK {
        return Err(Error::shape(
            "binary op",
            format!("rank {} exceeds {MAX_RANK}", shape.len()),
        ));
    }
    let out = Tensor::empty(a.gpu(), &shape)?;
    let (dims, strides) = coalesce_dims(
        &shape,
        &[
            &broadcast_strides(a.shape(), &shape),
            &broadcast_strides(b.shape(), &shape),
        ],
    );
    // on CPU adapters: equal shapes (one contiguous run on both sides) in vec4 chunks, other
    // broadcasts whose innermost dimension allows it in vec4 runs, other runs of at least
    // MIN_RUN elements in scalar runs (shorter ones gain nothing over decoding every element)
    let n = out.numel();
    let cpu = a.gpu().is_cpu() && n > 0;
    let vec4 = dims.len() == 1 && strides[0][0] == 1 && strides[1][0] == 1 && chunks4(a.gpu(), n);
    let runs4 = !vec4 && chunks4(a.gpu(), n) && vec4_runs(&dims, &strides);
    let (entry, groups, count) = if vec4 {
        let n4 = n / 4;
        ("binary_chunks4", grid_1d(n4.div_ceil(CHUNK4), 64), n4)
    } else if runs4 {
        let inner = dims[dims.len() - 1];
        let runs = n / inner;
        let invocations = runs * (inner / 4).div_ceil(CHUNK4);
        ("binary_runs4", grid_1d(invocations, 64), runs)
    } else if cpu && dims.last().is_some_and(|&inner| inner >= MIN_RUN) {
        let inner = dims[dims.len() - 1];
        let runs = n / inner;
        let invocations = runs * inner.div_ceil(RUN_CHUNK);
        ("binary_runs", grid_1d(invocations, 64), runs)
    } else {
        ("binary", grid_1d(n, 256), n)
    };
    let params = BinaryParams {
        n: count as u32,
        rank: dims.len() as u32,
        _pad: [0; 2],
        dims: pack8(&dims),
        a_strides: pack8(&strides[0]),
        b_strides: pack8(&strides[1]),
    };
    let code = op as u32;
    let buffers = [
        (a.buffer(), Access::Read),
        (b.buffer(), Access::Read),
        (out.buffer(), Access::ReadWrite),
    ];
    if vec4 || runs4 {
        dispatch_vec4(
            entry,
            code,
            bytemuck::bytes_of(&params),
            &buffers,
            &[a, b],
            n,
            groups,
        )?;
    } else {
        a.gpu().dispatch(
            &SHADER,
            entry,
            &[("OP", code as f64)],
            bytemuck::bytes_of(&params),
            &buffers,
            groups,
        )?;
    }
    Ok(out)
}

/// Elements per invocation of `binary_runs` (must match `RUN_CHUNK` in the WGSL).
const RUN_CHUNK: usize = 32;
/// Shortest innermost run `binary_runs` takes.
const MIN_RUN: usize = 8;

/// Whether `binary_runs4` can run coalesced `dims` with per-side `strides`: the innermost dimension is
/// a multiple of 4 and each side steps through it with stride 1 (then its other strides must be
/// multiples of 4, so runs start on a vec4) or 0.
fn vec4_runs(dims: &[usize], strides: &[Vec<usize>]) -> bool {
    let Some(&inner) = dims.last() else {
        return false;
    };
    inner.is_multiple_of(4)
        && strides.iter().all(|s| match s.last() {
            Some(1) => s[..s.len() - 1].iter().all(|x| x.is_multiple_of(4)),
            Some(0) => true,
            _ => false,
        })
}

/// a + b
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, Binary::Add)
}
/// a · b
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(a, b, Binary::Mul)
}
/// s · x
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    unary(x, Unary::Affine(s, 0.0))
}

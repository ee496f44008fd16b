//! f64 reference of the INR patch decoder (`shaders/inr.wgsl`): a two-layer StyleGAN2-modulated sine
//! MLP over Fourier features, evaluated per patch n and pixel p:
//!
//! ```text
//! a_{o,i} = W1_{o,i}·s1_{n,i}   d1_o = 1/√(Σ_i a_{o,i}² + ε)   h_{p,o} = sin(d1_o·Σ_i a_{o,i}·E_{p,i} + b1_o)
//! v_{c,j} = W2_{c,j}·s2_{n,j}   d2_c = 1/√(Σ_j v_{c,j}² + ε)   out_{n,p,c} = d2_c·Σ_j v_{c,j}·h_{p,j} + b2_c
//! ```
//!
//! The backward here differentiates the modulated weights `a`, `v` explicitly (a different route from the
//! kernel's), and is itself checked against central finite differences.

use super::{dot, numeric_grad, random, rng};

/// Demodulation epsilon.
pub const EPS: f64 = 1e-8;

/// Sizes: `n` patches, `t` pixels per patch (P²), `f` Fourier features, `hd` hidden units, `c` channels.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub n: usize,
    pub t: usize,
    pub f: usize,
    pub hd: usize,
    pub c: usize,
}

impl Dims {
    pub fn new(n: usize, t: usize, f: usize, hd: usize, c: usize) -> Dims {
        Dims { n, t, f, hd, c }
    }
    /// Shapes of (E, s1, s2, W1, b1, W2, b2), in that order.
    pub fn input_shapes(&self) -> [Vec<usize>; 7] {
        let Dims { n, t, f, hd, c } = *self;
        [
            vec![t, f],
            vec![n, f],
            vec![n, hd],
            vec![hd, f],
            vec![hd],
            vec![c, hd],
            vec![c],
        ]
    }
    /// Shape of the output [N, T, C].
    pub fn output_shape(&self) -> Vec<usize> {
        vec![self.n, self.t, self.c]
    }
}

/// Names of the inputs, in the order of [`Inputs::fields`].
pub const NAMES: [&str; 7] = ["E", "s1", "s2", "W1", "b1", "W2", "b2"];

/// The decoder's inputs (or, from [`backward`], their gradients), row-major.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub e: Vec<f64>,
    pub s1: Vec<f64>,
    pub s2: Vec<f64>,
    pub w1: Vec<f64>,
    pub b1: Vec<f64>,
    pub w2: Vec<f64>,
    pub b2: Vec<f64>,
    /// Demodulate the output layer (`false`: `d2 = 1`); not an input with a gradient.
    pub demodulate_output: bool,
}

impl Inputs {
    /// Random inputs of realistic magnitude (E like sin features, styles around ±1), exactly f32-representable.
    pub fn random(d: Dims, seed: u64) -> Inputs {
        let mut r = rng(seed);
        let mut gen_vals = |len: usize, lo: f32, hi: f32| -> Vec<f64> {
            random(&mut r, len, lo, hi)
                .into_iter()
                .map(f64::from)
                .collect()
        };
        Inputs {
            e: gen_vals(d.t * d.f, -1.0, 1.0),
            s1: gen_vals(d.n * d.f, -1.5, 1.5),
            s2: gen_vals(d.n * d.hd, -1.5, 1.5),
            w1: gen_vals(d.hd * d.f, -1.0, 1.0),
            b1: gen_vals(d.hd, -0.5, 0.5),
            w2: gen_vals(d.c * d.hd, -1.0, 1.0),
            b2: gen_vals(d.c, -0.5, 0.5),
            demodulate_output: true,
        }
    }

    /// (E, s1, s2, W1, b1, W2, b2).
    pub fn fields(&self) -> [&Vec<f64>; 7] {
        [
            &self.e, &self.s1, &self.s2, &self.w1, &self.b1, &self.w2, &self.b2,
        ]
    }

    pub fn fields_mut(&mut self) -> [&mut Vec<f64>; 7] {
        [
            &mut self.e,
            &mut self.s1,
            &mut self.s2,
            &mut self.w1,
            &mut self.b1,
            &mut self.w2,
            &mut self.b2,
        ]
    }

    /// The values as f32 (for uploading).
    pub fn field_f32(&self, k: usize) -> Vec<f32> {
        self.fields()[k].iter().map(|&v| v as f32).collect()
    }
}

/// Modulated, demodulated weights of one patch: returns (`m`, `d`) with `m_{o,i} = w_{o,i}·s_i` and
/// `d_o = 1/√(Σ_i m_{o,i}² + ε)` for a `rows × cols` weight.
fn modulate(w: &[f64], s: &[f64], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
    let mut m = vec![0.0; rows * cols];
    let mut d = vec![0.0; rows];
    for o in 0..rows {
        let mut ss = 0.0;
        for i in 0..cols {
            let v = w[o * cols + i] * s[i];
            m[o * cols + i] = v;
            ss += v * v;
        }
        d[o] = 1.0 / (ss + EPS).sqrt();
    }
    (m, d)
}

/// Output [N, T, C].
pub fn forward(d: Dims, x: &Inputs) -> Vec<f64> {
    let Dims { n, t, f, hd, c } = d;
    let mut out = vec![0.0; n * t * c];
    for pn in 0..n {
        let (a, d1) = modulate(&x.w1, &x.s1[pn * f..(pn + 1) * f], hd, f);
        let (v, mut d2) = modulate(&x.w2, &x.s2[pn * hd..(pn + 1) * hd], c, hd);
        if !x.demodulate_output {
            d2.fill(1.0);
        }
        for p in 0..t {
            let h: Vec<f64> = (0..hd)
                .map(|o| {
                    let z: f64 = (0..f).map(|i| a[o * f + i] * x.e[p * f + i]).sum();
                    (d1[o] * z + x.b1[o]).sin()
                })
                .collect();
            for ch in 0..c {
                let y: f64 = (0..hd).map(|j| v[ch * hd + j] * h[j]).sum();
                out[(pn * t + p) * c + ch] = d2[ch] * y + x.b2[ch];
            }
        }
    }
    out
}

/// Analytic gradients of `Σ dout ⊙ forward(x)` with respect to every input.
pub fn backward(d: Dims, x: &Inputs, dout: &[f64]) -> Inputs {
    let Dims { n, t, f, hd, c } = d;
    let mut g = Inputs {
        e: vec![0.0; t * f],
        s1: vec![0.0; n * f],
        s2: vec![0.0; n * hd],
        w1: vec![0.0; hd * f],
        b1: vec![0.0; hd],
        w2: vec![0.0; c * hd],
        b2: vec![0.0; c],
        demodulate_output: x.demodulate_output,
    };
    for pn in 0..n {
        let s1 = &x.s1[pn * f..(pn + 1) * f];
        let s2 = &x.s2[pn * hd..(pn + 1) * hd];
        let (a, d1) = modulate(&x.w1, s1, hd, f);
        let (v, mut d2) = modulate(&x.w2, s2, c, hd);
        if !x.demodulate_output {
            d2.fill(1.0);
        }
        // forward values of this patch
        let mut u = vec![0.0; t * hd]; // Σ_i a E (before demodulation)
        let mut h = vec![0.0; t * hd];
        let mut y = vec![0.0; t * c]; // Σ_j v h (before demodulation)
        for p in 0..t {
            for o in 0..hd {
                let z: f64 = (0..f).map(|i| a[o * f + i] * x.e[p * f + i]).sum();
                u[p * hd + o] = z;
                h[p * hd + o] = (d1[o] * z + x.b1[o]).sin();
            }
            for ch in 0..c {
                y[p * c + ch] = (0..hd).map(|j| v[ch * hd + j] * h[p * hd + j]).sum();
            }
        }
        // layer 2: out = d2·y + b2
        let mut dv = vec![0.0; c * hd];
        let mut dh = vec![0.0; t * hd];
        for ch in 0..c {
            let mut dd2 = 0.0;
            for p in 0..t {
                let go = dout[(pn * t + p) * c + ch];
                g.b2[ch] += go;
                dd2 += go * y[p * c + ch];
                let dy = go * d2[ch];
                for j in 0..hd {
                    dv[ch * hd + j] += dy * h[p * hd + j];
                    dh[p * hd + j] += dy * v[ch * hd + j];
                }
            }
            // ∂d2/∂v_{c,j} = −d2³·v_{c,j} (d2 is the constant 1 without demodulation)
            for j in (0..hd).filter(|_| x.demodulate_output) {
                dv[ch * hd + j] -= dd2 * d2[ch].powi(3) * v[ch * hd + j];
            }
        }
        for ch in 0..c {
            for j in 0..hd {
                g.w2[ch * hd + j] += dv[ch * hd + j] * s2[j];
                g.s2[pn * hd + j] += dv[ch * hd + j] * x.w2[ch * hd + j];
            }
        }
        // layer 1: h = sin(d1·u + b1)
        let mut da = vec![0.0; hd * f];
        for o in 0..hd {
            let mut dd1 = 0.0;
            for p in 0..t {
                let dz = dh[p * hd + o] * (d1[o] * u[p * hd + o] + x.b1[o]).cos();
                g.b1[o] += dz;
                dd1 += dz * u[p * hd + o];
                let du = dz * d1[o];
                for i in 0..f {
                    da[o * f + i] += du * x.e[p * f + i];
                    g.e[p * f + i] += du * a[o * f + i];
                }
            }
            for i in 0..f {
                da[o * f + i] -= dd1 * d1[o].powi(3) * a[o * f + i];
            }
        }
        for o in 0..hd {
            for i in 0..f {
                g.w1[o * f + i] += da[o * f + i] * s1[i];
                g.s1[pn * f + i] += da[o * f + i] * x.w1[o * f + i];
            }
        }
    }
    g
}

/// Central finite differences of `Σ dout ⊙ forward(x)` with respect to every input.
pub fn numeric_backward(d: Dims, x: &Inputs, dout: &[f64], eps: f64) -> Inputs {
    let mut g = x.clone();
    for k in 0..7 {
        let base = x.fields()[k].clone();
        let grad = numeric_grad(&base, eps, |vals| {
            let mut xp = x.clone();
            *xp.fields_mut()[k] = vals.to_vec();
            dot(dout, &forward(d, &xp))
        });
        *g.fields_mut()[k] = grad;
    }
    g
}

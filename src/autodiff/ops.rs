//! Differentiable ops on the tape. Each runs its forward kernel and records a backward closure built
//! from the kernels' backward launchers.

use super::{Tape, Var};
use crate::error::Result;
use crate::ops::elementwise::{self, Binary, Unary};
use crate::ops::layout;
use crate::ops::matmul::{self, Activation, MatmulOptions};
use crate::ops::reduce;
use crate::ops::softmax;
use crate::tensor::Tensor;

impl Tape {
    /// `f(x)` elementwise.
    pub fn unary(&self, x: Var, op: Unary) -> Result<Var> {
        let xv = self.value(x);
        let y = elementwise::unary(&xv, op)?;
        Ok(self.record(y, &[x], move |g| {
            Ok(vec![Some(elementwise::unary_backward(&xv, g, op)?)])
        }))
    }

    /// `a ∘ b` with broadcasting; gradients are summed back over broadcast axes.
    pub fn binary(&self, a: Var, b: Var, op: Binary) -> Result<Var> {
        let (av, bv) = (self.value(a), self.value(b));
        let y = elementwise::binary(&av, &bv, op)?;
        let yv = y.clone();
        let (need_a, need_b) = (self.requires_grad(a), self.requires_grad(b));
        Ok(self.record(y, &[a, b], move |g| {
            use elementwise::binary as bin;
            let (ga, gb) = match op {
                Binary::Add => (need_a.then(|| g.clone()), need_b.then(|| g.clone())),
                Binary::Sub => (
                    need_a.then(|| g.clone()),
                    need_b
                        .then(|| elementwise::unary(g, Unary::Neg))
                        .transpose()?,
                ),
                Binary::Mul => (
                    need_a.then(|| bin(g, &bv, Binary::Mul)).transpose()?,
                    need_b.then(|| bin(g, &av, Binary::Mul)).transpose()?,
                ),
                Binary::Div => {
                    // d/da = g/b ; d/db = −g·a/b² = −(g·y)/b
                    let ga = need_a.then(|| bin(g, &bv, Binary::Div)).transpose()?;
                    let gb = if need_b {
                        let gy = bin(g, &yv, Binary::Mul)?;
                        Some(elementwise::unary(
                            &bin(&gy, &bv, Binary::Div)?,
                            Unary::Neg,
                        )?)
                    } else {
                        None
                    };
                    (ga, gb)
                }
                Binary::Max | Binary::Min => {
                    return Err(crate::Error::Other(
                        "max/min have no gradient on the tape".into(),
                    ));
                }
            };
            Ok(vec![
                ga.map(|t| reduce::sum_to_shape(&t, av.shape()))
                    .transpose()?,
                gb.map(|t| reduce::sum_to_shape(&t, bv.shape()))
                    .transpose()?,
            ])
        }))
    }

    /// a + b
    pub fn add(&self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Add)
    }
    /// a − b
    pub fn sub(&self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Sub)
    }
    /// a · b
    pub fn mul(&self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Mul)
    }
    /// a / b
    pub fn div(&self, a: Var, b: Var) -> Result<Var> {
        self.binary(a, b, Binary::Div)
    }
    /// s · x + t
    pub fn affine(&self, x: Var, s: f32, t: f32) -> Result<Var> {
        self.unary(x, Unary::Affine(s, t))
    }
    /// s · x
    pub fn scale(&self, x: Var, s: f32) -> Result<Var> {
        self.affine(x, s, 0.0)
    }

    /// `act(op(A)·op(B) + bias)` in one kernel; the backward reuses the kernel with other transposes.
    pub fn matmul_fused(
        &self,
        a: Var,
        b: Var,
        bias: Option<Var>,
        trans_a: bool,
        trans_b: bool,
        act: Activation,
    ) -> Result<Var> {
        let (av, bv) = (self.value(a), self.value(b));
        let bias_v = bias.map(|v| self.value(v));
        let save = act != Activation::None
            && self.no_grad_depth.get() == 0
            && [Some(a), Some(b), bias]
                .iter()
                .flatten()
                .any(|&v| self.requires_grad(v));
        let (y, pre) = matmul::matmul_fused(
            &av,
            &bv,
            MatmulOptions {
                trans_a,
                trans_b,
                bias: bias_v.as_ref(),
                act,
                save_preact: save,
            },
        )?;
        let mut inputs = vec![a, b];
        inputs.extend(bias);
        let has_bias = bias.is_some();
        let (need_a, need_b) = (self.requires_grad(a), self.requires_grad(b));
        Ok(self.record(y, &inputs, move |g| {
            let gz = match (act.as_unary(), &pre) {
                (Some(u), Some(z)) => elementwise::unary_backward(z, g, u)?,
                _ => g.clone(),
            };
            // only the gradients something needs (frozen weights and input images need none)
            let ga = if need_a {
                Some(matmul::matmul_grad_a(&av, &bv, &gz, trans_a, trans_b)?)
            } else {
                None
            };
            let gb = if need_b {
                Some(matmul::matmul_grad_b(&av, &bv, &gz, trans_a, trans_b)?)
            } else {
                None
            };
            let mut out = vec![ga, gb];
            if has_bias {
                let n = *gz.shape().last().unwrap();
                let rows = gz.numel() / n.max(1);
                out.push(Some(reduce::sum_axis(&gz.reshape(&[rows, n])?, 0, false)?));
            }
            Ok(out)
        }))
    }

    /// `A·B`.
    pub fn matmul(&self, a: Var, b: Var) -> Result<Var> {
        self.matmul_fused(a, b, None, false, false, Activation::None)
    }

    /// Σ over `axis`.
    pub fn sum_axis(&self, x: Var, axis: usize, keep_dim: bool) -> Result<Var> {
        self.reduce_axis(x, axis, keep_dim, false)
    }

    /// Mean over `axis`.
    pub fn mean_axis(&self, x: Var, axis: usize, keep_dim: bool) -> Result<Var> {
        self.reduce_axis(x, axis, keep_dim, true)
    }

    fn reduce_axis(&self, x: Var, axis: usize, keep_dim: bool, mean: bool) -> Result<Var> {
        let xv = self.value(x);
        let y = if mean {
            reduce::mean_axis(&xv, axis, keep_dim)?
        } else {
            reduce::sum_axis(&xv, axis, keep_dim)?
        };
        let shape = xv.shape().to_vec();
        let n = shape[axis];
        Ok(self.record(y, &[x], move |g| {
            let mut kept = shape.clone();
            kept[axis] = 1;
            let g = g.reshape(&kept)?;
            let g = if mean {
                elementwise::scale(&g, 1.0 / n as f32)?
            } else {
                g
            };
            Ok(vec![Some(layout::broadcast_to(&g, &shape)?)])
        }))
    }

    /// Σ of all elements → [1].
    pub fn sum(&self, x: Var) -> Result<Var> {
        self.reduce_all(x, false)
    }

    /// Mean of all elements → [1].
    pub fn mean(&self, x: Var) -> Result<Var> {
        self.reduce_all(x, true)
    }

    fn reduce_all(&self, x: Var, mean: bool) -> Result<Var> {
        let xv = self.value(x);
        let y = if mean {
            reduce::mean_all(&xv)?
        } else {
            reduce::sum_all(&xv)?
        };
        let shape = xv.shape().to_vec();
        let n = xv.numel();
        Ok(self.record(y, &[x], move |g| {
            let g = if mean {
                elementwise::scale(g, 1.0 / n as f32)?
            } else {
                g.clone()
            };
            Ok(vec![Some(layout::broadcast_to(&g, &shape)?)])
        }))
    }

    /// Softmax over the last axis.
    pub fn softmax(&self, x: Var) -> Result<Var> {
        let y = softmax::softmax(&self.value(x))?;
        let yv = y.clone();
        Ok(self.record(y, &[x], move |g| {
            Ok(vec![Some(softmax::softmax_backward(&yv, g)?)])
        }))
    }

    /// A view with another shape (no copy).
    pub fn reshape(&self, x: Var, shape: &[usize]) -> Result<Var> {
        let xv = self.value(x);
        let y = xv.reshape(shape)?;
        let orig = xv.shape().to_vec();
        Ok(self.record(y, &[x], move |g| Ok(vec![Some(g.reshape(&orig)?)])))
    }

    /// Permute axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, x: Var, perm: &[usize]) -> Result<Var> {
        let y = layout::permute(&self.value(x), perm)?;
        let inv = layout::inverse_permutation(perm);
        Ok(self.record(y, &[x], move |g| Ok(vec![Some(layout::permute(g, &inv)?)])))
    }

    /// Swap two axes.
    pub fn transpose(&self, x: Var, a: usize, b: usize) -> Result<Var> {
        let mut perm: Vec<usize> = (0..self.shape(x).len()).collect();
        if a >= perm.len() || b >= perm.len() {
            return Err(crate::Error::shape(
                "transpose",
                format!("axes {a}, {b} out of range for {:?}", self.shape(x)),
            ));
        }
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// `x[.., start..start+len, ..]` along `axis`.
    pub fn slice(&self, x: Var, axis: usize, start: usize, len: usize) -> Result<Var> {
        let xv = self.value(x);
        let y = layout::slice(&xv, axis, start, len)?;
        let full = xv.shape().to_vec();
        Ok(self.record(y, &[x], move |g| {
            Ok(vec![Some(layout::pad_slice(g, &full, axis, start)?)])
        }))
    }

    /// Concatenate along `axis`.
    pub fn concat(&self, xs: &[Var], axis: usize) -> Result<Var> {
        let vals: Vec<Tensor> = xs.iter().map(|&v| self.value(v)).collect();
        let y = layout::concat(&vals.iter().collect::<Vec<_>>(), axis)?;
        let lens: Vec<usize> = vals.iter().map(|t| t.shape()[axis]).collect();
        Ok(self.record(y, xs, move |g| {
            let mut start = 0;
            let mut out = Vec::with_capacity(lens.len());
            for &len in &lens {
                out.push(Some(layout::slice(g, axis, start, len)?));
                start += len;
            }
            Ok(out)
        }))
    }

    /// Materialise a broadcast.
    pub fn broadcast_to(&self, x: Var, shape: &[usize]) -> Result<Var> {
        let xv = self.value(x);
        let y = layout::broadcast_to(&xv, shape)?;
        let orig = xv.shape().to_vec();
        Ok(self.record(y, &[x], move |g| {
            Ok(vec![Some(reduce::sum_to_shape(g, &orig)?)])
        }))
    }
}

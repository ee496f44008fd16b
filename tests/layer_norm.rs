//! LayerNorm / self-modulated LayerNorm: GPU vs f64 reference, backward vs finite differences, and the
//! fused kernel vs the same math composed from primitive tape ops.

mod common;
use common::layer_norm::layer_norm_ref;
use common::*;
use vitgan::Tape;
use vitgan::ops::elementwise::Unary;
use vitgan::ops::layer_norm::{layer_norm_backward, layer_norm_forward};

const EPS: f32 = 1e-5;

/// One test problem: `x` of shape `x_shape`, `γ, β` of shape `affine_shape` ([D] or [B, D]).
struct Case {
    x_shape: Vec<usize>,
    affine_shape: Vec<usize>,
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl Case {
    fn new(x_shape: &[usize], affine_shape: &[usize], seed: u64) -> Case {
        let mut r = rng(seed);
        let d = *x_shape.last().unwrap();
        let n: usize = x_shape.iter().product();
        // rows with their own offset and scale, so the statistics matter
        let mut x = random(&mut r, n, -1.0, 1.0);
        let offsets = random(&mut r, n / d, -3.0, 3.0);
        let scales = random(&mut r, n / d, 0.2, 2.0);
        for (i, v) in x.iter_mut().enumerate() {
            *v = *v * scales[i / d] + offsets[i / d];
        }
        let na: usize = affine_shape.iter().product();
        Case {
            x_shape: x_shape.to_vec(),
            affine_shape: affine_shape.to_vec(),
            x,
            gamma: random(&mut r, na, 0.5, 1.5),
            beta: random(&mut r, na, -0.5, 0.5),
        }
    }

    fn d(&self) -> usize {
        *self.x_shape.last().unwrap()
    }

    fn rows_per_group(&self) -> usize {
        let groups = self.gamma.len() / self.d();
        self.x.len() / self.d() / groups
    }

    fn reference(&self, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
        layer_norm_ref(x, gamma, beta, self.d(), self.rows_per_group(), EPS as f64).y
    }

    fn name(&self) -> String {
        format!("x {:?}, affine {:?}", self.x_shape, self.affine_shape)
    }
}

fn check_forward(case: &Case) {
    let (x, g, b) = (
        upload(&case.x, &case.x_shape),
        upload(&case.gamma, &case.affine_shape),
        upload(&case.beta, &case.affine_shape),
    );
    let (y, mean, rstd) = layer_norm_forward(&x, &g, &b, EPS).unwrap();
    let want = layer_norm_ref(
        &to_f64(&case.x),
        &to_f64(&case.gamma),
        &to_f64(&case.beta),
        case.d(),
        case.rows_per_group(),
        EPS as f64,
    );
    let name = case.name();
    assert_eq!(y.shape(), case.x_shape.as_slice());
    assert_eq!(mean.shape(), &case.x_shape[..case.x_shape.len() - 1]);
    assert_close(
        &y.to_vec().unwrap(),
        &want.y,
        2e-5,
        1e-4,
        &format!("y, {name}"),
    );
    assert_close(
        &mean.to_vec().unwrap(),
        &want.mean,
        1e-5,
        1e-5,
        &format!("mean, {name}"),
    );
    assert_close(
        &rstd.to_vec().unwrap(),
        &want.rstd,
        1e-5,
        1e-4,
        &format!("rstd, {name}"),
    );
}

#[test]
fn layer_norm_forward_matches_reference() {
    let mut seed = 10;
    for d in [1, 3, 383, 384, 1536] {
        seed += 1;
        check_forward(&Case::new(&[7, d], &[d], seed));
        check_forward(&Case::new(&[2, 5, d], &[d], seed + 100));
    }
    // many rows: on CPU adapters a width divisible by 4 takes the one-invocation-per-row kernel, others
    // the workgroup kernel
    check_forward(&Case::new(&[2, 65, 383], &[383], 17));
    check_forward(&Case::new(&[130, 1], &[1], 18));
    check_forward(&Case::new(&[130, 8], &[8], 19));
}

#[test]
fn self_modulated_layer_norm_forward_matches_reference() {
    let mut seed = 20;
    for d in [1, 3, 383, 384, 1536] {
        seed += 1;
        check_forward(&Case::new(&[3, 5, d], &[3, d], seed));
    }
    // [B, D] input: one token per sample
    check_forward(&Case::new(&[4, 9], &[4, 9], 29));
    check_forward(&Case::new(&[3, 65, 384], &[3, 384], 28));
    // row kernel on an x large enough for γ, β to come from operand textures on CPU adapters, with
    // γ, β of 1152 vec4s (two texel rows)
    check_forward(&Case::new(&[3, 65, 1536], &[3, 1536], 27));
}

/// GPU backward vs central differences of the f64 reference with loss = Σ w ⊙ y.
fn check_backward(case: &Case, seed: u64) {
    let mut r = rng(seed);
    let dy = random(&mut r, case.x.len(), -1.0, 1.0);
    let (x, g, b) = (
        upload(&case.x, &case.x_shape),
        upload(&case.gamma, &case.affine_shape),
        upload(&case.beta, &case.affine_shape),
    );
    let (_, mean, rstd) = layer_norm_forward(&x, &g, &b, EPS).unwrap();
    let (dx, dgamma, dbeta) =
        layer_norm_backward(&x, &g, &mean, &rstd, &upload(&dy, &case.x_shape)).unwrap();
    assert_eq!(dgamma.shape(), case.affine_shape.as_slice());
    assert_eq!(dbeta.shape(), case.affine_shape.as_slice());

    let (x64, g64, b64, w) = (
        to_f64(&case.x),
        to_f64(&case.gamma),
        to_f64(&case.beta),
        to_f64(&dy),
    );
    let h = 1e-6;
    let want_dx = numeric_grad(&x64, h, |x| dot(&w, &case.reference(x, &g64, &b64)));
    let want_dgamma = numeric_grad(&g64, h, |g| dot(&w, &case.reference(&x64, g, &b64)));
    let want_dbeta = numeric_grad(&b64, h, |b| dot(&w, &case.reference(&x64, &g64, b)));
    let name = case.name();
    // dx scales with rstd; dγ, dβ with the number of rows summed
    let rows = (case.rows_per_group() as f64).sqrt();
    assert_close(
        &dx.to_vec().unwrap(),
        &want_dx,
        5e-4,
        2e-3,
        &format!("dx, {name}"),
    );
    assert_close(
        &dgamma.to_vec().unwrap(),
        &want_dgamma,
        1e-4 * rows,
        1e-3,
        &format!("dgamma, {name}"),
    );
    assert_close(
        &dbeta.to_vec().unwrap(),
        &want_dbeta,
        1e-4 * rows,
        1e-3,
        &format!("dbeta, {name}"),
    );
}

#[test]
fn layer_norm_backward_matches_finite_differences() {
    for (i, d) in [1, 3, 383, 384].into_iter().enumerate() {
        check_backward(&Case::new(&[2, 3, d], &[d], 30 + i as u64), 40 + i as u64);
    }
    // more rows than one workgroup of the affine-gradient kernel sums (several chunks per group)
    check_backward(&Case::new(&[601, 5], &[5], 35), 45);
    // ≥ 64 rows of a width divisible by 4: the vec4 row kernels on CPU adapters
    check_backward(&Case::new(&[70, 8], &[8], 36), 46);
    // a width divisible by 4 over several chunks of 256 rows: the vec4-column dγ/dβ kernel's partials
    check_backward(&Case::new(&[601, 8], &[8], 37), 47);
}

#[test]
fn self_modulated_layer_norm_backward_matches_finite_differences() {
    for (i, d) in [1, 3, 383, 384].into_iter().enumerate() {
        check_backward(
            &Case::new(&[3, 2, d], &[3, d], 50 + i as u64),
            60 + i as u64,
        );
    }
    check_backward(&Case::new(&[2, 300, 3], &[2, 3], 55), 65);
    // ≥ 64 rows of a width divisible by 4: the vec4 row kernel with per-sample γ
    check_backward(&Case::new(&[2, 40, 8], &[2, 8], 56), 66);
    check_backward(&Case::new(&[2, 40, 4], &[2, 4], 56), 66);
}

/// The fused tape op vs LayerNorm composed from mean_axis / sub / mul / sqrt / div / add on the tape:
/// values and all three gradients.
fn check_fused_vs_composed(case: &Case, seed: u64) {
    let tape = Tape::new(&gpu());
    let x = tape.leaf(upload(&case.x, &case.x_shape), true);
    let g = tape.leaf(upload(&case.gamma, &case.affine_shape), true);
    let b = tape.leaf(upload(&case.beta, &case.affine_shape), true);
    let rank = case.x_shape.len();
    let d = case.d();
    let dy = upload(
        &random(&mut rng(seed), case.x.len(), -1.0, 1.0),
        &case.x_shape,
    );

    let fused = tape.layer_norm(x, g, b, EPS).unwrap();
    tape.backward_with(fused, dy.clone()).unwrap();
    let fused_grads: Vec<Vec<f32>> = [x, g, b]
        .iter()
        .map(|&v| tape.grad(v).unwrap().to_vec().unwrap())
        .collect();

    let composed = {
        let mean = tape.mean_axis(x, rank - 1, true).unwrap();
        let centred = tape.sub(x, mean).unwrap();
        let var = tape
            .mean_axis(tape.mul(centred, centred).unwrap(), rank - 1, true)
            .unwrap();
        let std = tape
            .unary(tape.affine(var, 1.0, EPS).unwrap(), Unary::Sqrt)
            .unwrap();
        let xhat = tape.div(centred, std).unwrap();
        // [B, D] affine rows broadcast over the T tokens of each sample
        let (g2, b2) = if case.affine_shape.len() == 2 && rank == 3 {
            let s = [case.affine_shape[0], 1, d];
            (tape.reshape(g, &s).unwrap(), tape.reshape(b, &s).unwrap())
        } else {
            (g, b)
        };
        tape.add(tape.mul(xhat, g2).unwrap(), b2).unwrap()
    };
    tape.backward_with(composed, dy).unwrap();
    let name = case.name();
    assert_close(
        &tape.value(fused).to_vec().unwrap(),
        &to_f64(&tape.value(composed).to_vec().unwrap()),
        5e-5,
        1e-4,
        &format!("fused vs composed y, {name}"),
    );
    for (i, (&v, what)) in [x, g, b].iter().zip(["dx", "dgamma", "dbeta"]).enumerate() {
        let composed_grad = to_f64(&tape.grad(v).unwrap().to_vec().unwrap());
        assert_close(
            &fused_grads[i],
            &composed_grad,
            5e-4,
            2e-3,
            &format!("fused vs composed {what}, {name}"),
        );
    }
}

#[test]
fn fused_layer_norm_matches_composed_tape_ops() {
    check_fused_vs_composed(&Case::new(&[37, 384], &[384], 70), 71);
    check_fused_vs_composed(&Case::new(&[2, 65, 383], &[383], 72), 73);
    check_fused_vs_composed(&Case::new(&[4, 64, 384], &[4, 384], 74), 75);
    check_fused_vs_composed(&Case::new(&[3, 7, 5], &[3, 5], 76), 77);
}

#[test]
fn shape_mismatches_are_errors() {
    let x = upload(&[0.0; 24], &[2, 3, 4]);
    let bad = upload(&[1.0; 5], &[5]);
    let err = layer_norm_forward(&x, &bad, &bad, EPS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[5]") && err.contains("[2, 3, 4]"), "{err}");
    // SLN affine rows must match the batch
    let g3 = upload(&[1.0; 12], &[3, 4]);
    assert!(layer_norm_forward(&x, &g3, &g3, EPS).is_err());
    // beta must match gamma
    let g = upload(&[1.0; 4], &[4]);
    let b2 = upload(&[1.0; 8], &[2, 4]);
    assert!(layer_norm_forward(&x, &g, &b2, EPS).is_err());
    let (_, mean, rstd) = layer_norm_forward(&x, &g, &g, EPS).unwrap();
    let dy_bad = upload(&[0.0; 12], &[3, 4]);
    assert!(layer_norm_backward(&x, &g, &mean, &rstd, &dy_bad).is_err());
}

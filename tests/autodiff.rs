//! Tape behaviour: gradients of composed ops vs finite differences, reuse, branching, no-grad, detach,
//! and the pool's high-water mark staying flat over many steps.
mod common;
use common::*;
use vitgan::ops::elementwise::Unary;
use vitgan::ops::matmul::Activation;
use vitgan::{ParamStore, Tape, Tensor};

/// loss = mean( gelu(x·W + b) ⊙ x·W ) + Σ softmax(x)·c  — uses x twice, W twice (branching + reuse).
fn composite_ref(x: &[f64], w: &[f64], b: &[f64], c: &[f64], m: usize, k: usize, n: usize) -> f64 {
    let xw = matmul_ref(x, w, 1, 1, m, k, n, false, false);
    let mut s = 0.0;
    for i in 0..m * n {
        s += gelu_ref(xw[i] + b[i % n]) * xw[i];
    }
    let sm = softmax_ref(x, k);
    s / (m * n) as f64 + dot(&sm, c)
}

#[test]
fn composite_gradients_match_finite_differences() {
    let (m, k, n) = (4, 6, 5);
    let mut r = rng(1);
    let x = random(&mut r, m * k, -1.0, 1.0);
    let w = random(&mut r, k * n, -1.0, 1.0);
    let b = random(&mut r, n, -0.5, 0.5);
    let c = random(&mut r, m * k, -1.0, 1.0);
    let g = gpu();
    let mut params = ParamStore::new();
    let pw = params
        .add("layer.weight", Tensor::from_slice(&g, &w, &[k, n]).unwrap())
        .unwrap();
    let pb = params
        .add("layer.bias", Tensor::from_slice(&g, &b, &[n]).unwrap())
        .unwrap();
    let tape = Tape::new(&g);
    let xv = tape.leaf(Tensor::from_slice(&g, &x, &[m, k]).unwrap(), true);
    let wv = tape.param(&pw);
    let bv = tape.param(&pb);
    let cv = tape.constant(Tensor::from_slice(&g, &c, &[m, k]).unwrap());
    let h = tape
        .matmul_fused(xv, wv, Some(bv), false, false, Activation::Gelu)
        .unwrap();
    let xw = tape.matmul(xv, wv).unwrap();
    let prod = tape.mul(h, xw).unwrap();
    let first = tape.mean(prod).unwrap();
    let sm = tape.softmax(xv).unwrap();
    let second = tape.sum(tape.mul(sm, cv).unwrap()).unwrap();
    let loss = tape.add(first, second).unwrap();
    tape.backward(loss).unwrap();

    let (xf, wf, bf, cf) = (to_f64(&x), to_f64(&w), to_f64(&b), to_f64(&c));
    let got_loss = tape.value(loss).to_vec().unwrap()[0] as f64;
    assert!((got_loss - composite_ref(&xf, &wf, &bf, &cf, m, k, n)).abs() < 1e-5);
    let nx = numeric_grad(&xf, 1e-5, |v| composite_ref(v, &wf, &bf, &cf, m, k, n));
    let nw = numeric_grad(&wf, 1e-5, |v| composite_ref(&xf, v, &bf, &cf, m, k, n));
    let nb = numeric_grad(&bf, 1e-5, |v| composite_ref(&xf, &wf, v, &cf, m, k, n));
    assert_close(
        &tape.grad(xv).unwrap().to_vec().unwrap(),
        &nx,
        1e-5,
        1e-3,
        "dx (used by matmul twice and softmax)",
    );
    assert_close(
        &tape.grad(wv).unwrap().to_vec().unwrap(),
        &nw,
        1e-5,
        1e-3,
        "dW (used twice)",
    );
    assert_close(
        &tape.grad(bv).unwrap().to_vec().unwrap(),
        &nb,
        1e-5,
        1e-3,
        "db",
    );
    assert!(tape.grad(cv).is_none(), "constants get no gradient");
    let names: Vec<String> = tape
        .param_grads()
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, vec!["layer.weight", "layer.bias"]);
}

#[test]
fn layout_ops_route_gradients() {
    // loss = Σ w ⊙ concat(slice(xᵀ), reshape(x)) — checks permute, slice, concat and reshape backward.
    let g = gpu();
    let mut r = rng(2);
    let x = random(&mut r, 3 * 4, -1.0, 1.0);
    let tape = Tape::new(&g);
    let xv = tape.leaf(Tensor::from_slice(&g, &x, &[3, 4]).unwrap(), true);
    let xt = tape.transpose(xv, 0, 1).unwrap(); // [4, 3]
    let part = tape.slice(xt, 0, 1, 2).unwrap(); // rows 1..3 of xᵀ: [2, 3]
    let flat = tape.reshape(xv, &[4, 3]).unwrap();
    let cat = tape.concat(&[part, flat], 0).unwrap(); // [6, 3]
    let w = random(&mut r, 18, -1.0, 1.0);
    let wv = tape.constant(Tensor::from_slice(&g, &w, &[6, 3]).unwrap());
    let loss = tape.sum(tape.mul(cat, wv).unwrap()).unwrap();
    tape.backward(loss).unwrap();
    let mut want = vec![0.0f64; 12];
    for i in 0..2 {
        for j in 0..3 {
            // part[i][j] = xᵀ[1 + i][j] = x[j][1 + i]
            want[j * 4 + 1 + i] += w[i * 3 + j] as f64;
        }
    }
    for i in 0..12 {
        want[i] += w[6 + i] as f64;
    }
    assert_close(
        &tape.grad(xv).unwrap().to_vec().unwrap(),
        &want,
        1e-6,
        1e-6,
        "layout gradients",
    );
}

#[test]
fn no_grad_and_detach_stop_gradients() {
    let g = gpu();
    let tape = Tape::new(&g);
    let x = tape.leaf(
        Tensor::from_slice(&g, &[1.0, 2.0, 3.0], &[3]).unwrap(),
        true,
    );
    let y = tape.no_grad(|| tape.unary(x, Unary::Square).unwrap());
    assert!(!tape.requires_grad(y));
    let d = tape.detach(x);
    let z = tape.mul(x, d).unwrap(); // dz/dx = d (the detached copy contributes nothing)
    let loss = tape.sum(tape.add(z, y).unwrap()).unwrap();
    tape.backward(loss).unwrap();
    assert_eq!(tape.grad(x).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
    assert!(tape.grad(d).is_none());
}

#[test]
fn backward_needs_a_scalar() {
    let g = gpu();
    let tape = Tape::new(&g);
    let x = tape.leaf(Tensor::zeros(&g, &[2]).unwrap(), true);
    assert!(tape.backward(x).is_err());
}

#[test]
fn pool_high_water_mark_is_flat_over_50_steps() {
    let g = gpu();
    let mut r = rng(3);
    let mut params = ParamStore::new();
    let w = params
        .add(
            "w",
            Tensor::from_slice(&g, &random(&mut r, 64 * 32, -0.1, 0.1), &[64, 32]).unwrap(),
        )
        .unwrap();
    let x = Tensor::from_slice(&g, &random(&mut r, 16 * 64, -1.0, 1.0), &[16, 64]).unwrap();
    let tape = Tape::new(&g);
    let mut marks = Vec::new();
    for _ in 0..50 {
        let xv = tape.constant(x.clone());
        let wv = tape.param(&w);
        let h = tape
            .matmul_fused(xv, wv, None, false, false, Activation::Gelu)
            .unwrap();
        let s = tape.softmax(h).unwrap();
        let loss = tape.mean(tape.unary(s, Unary::Square).unwrap()).unwrap();
        tape.backward(loss).unwrap();
        let gw = tape.grad(wv).unwrap();
        // a plain SGD step in place, so the parameter changes each step
        let upd = vitgan::ops::elementwise::binary(
            &w.value,
            &vitgan::ops::elementwise::scale(&gw, 0.1).unwrap(),
            vitgan::ops::elementwise::Binary::Sub,
        )
        .unwrap();
        w.value.copy_from(&upd).unwrap();
        drop((gw, upd));
        tape.clear();
        g.flush().unwrap();
        marks.push(g.pool_stats());
    }
    g.sync().unwrap();
    let after_warmup = marks[2];
    let last = marks[49];
    assert_eq!(
        last.allocated_bytes, after_warmup.allocated_bytes,
        "the pool grew after warm-up: {marks:?}"
    );
    assert_eq!(last.high_water_bytes, after_warmup.high_water_bytes);
    assert_eq!(
        last.in_use_bytes, marks[10].in_use_bytes,
        "buffers leak step over step"
    );
}

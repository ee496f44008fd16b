mod common;
use common::*;
use vitgan::ops::matmul::{Activation, MatmulOptions, matmul_backward, matmul_fused};

#[allow(clippy::too_many_arguments)]
fn check(
    batch_a: usize,
    batch_b: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    seed: u64,
) {
    let mut r = rng(seed);
    let a = random(&mut r, batch_a * m * k, -1.0, 1.0);
    let b = random(&mut r, batch_b * k * n, -1.0, 1.0);
    let ashape = if ta {
        vec![batch_a, k, m]
    } else {
        vec![batch_a, m, k]
    };
    let bshape = if tb {
        vec![batch_b, n, k]
    } else {
        vec![batch_b, k, n]
    };
    let ga = upload(&a, &ashape);
    let gb = upload(&b, &bshape);
    let ga = if batch_a == 1 {
        ga.reshape(&ashape[1..]).unwrap()
    } else {
        ga
    };
    let gb = if batch_b == 1 {
        gb.reshape(&bshape[1..]).unwrap()
    } else {
        gb
    };
    let (c, _) = matmul_fused(
        &ga,
        &gb,
        MatmulOptions {
            trans_a: ta,
            trans_b: tb,
            ..Default::default()
        },
    )
    .unwrap();
    let want = matmul_ref(&to_f64(&a), &to_f64(&b), batch_a, batch_b, m, k, n, ta, tb);
    let tol = 1e-5 * (k as f64).sqrt() * 4.0;
    assert_close(
        &c.to_vec().unwrap(),
        &want,
        tol,
        1e-4,
        &format!("matmul b{batch_a}/{batch_b} {m}x{k}x{n} ta={ta} tb={tb}"),
    );
}

#[test]
fn matmul_matches_reference_on_odd_shapes() {
    let mut seed = 0;
    for &(m, k, n) in &[
        (1, 1, 1),
        (7, 13, 5),
        (64, 64, 64),
        (65, 31, 129),
        (3, 200, 2),
        (127, 17, 67),
    ] {
        for ta in [false, true] {
            for tb in [false, true] {
                seed += 1;
                check(1, 1, m, k, n, ta, tb, seed);
            }
        }
    }
}

#[test]
fn matmul_batched_and_broadcast() {
    check(3, 3, 17, 9, 23, false, false, 100);
    check(4, 1, 33, 40, 19, false, true, 101);
    check(1, 5, 12, 7, 30, true, false, 102);
    // N a multiple of 4 (vec4 stores on CPU adapters) with a batch offset into C
    check(2, 2, 9, 12, 36, false, true, 103);
}

#[test]
fn matmul_large_prime_shape() {
    // large, prime-sized dimensions (sampled check keeps the f64 reference cheap)
    check(1, 1, 257, 383, 131, false, false, 7);
}

#[test]
fn matmul_8191x383x1537_sampled_rows() {
    let (m, k, n) = (8191, 383, 1537);
    let mut r = rng(11);
    let a = random(&mut r, m * k, -1.0, 1.0);
    let b = random(&mut r, k * n, -1.0, 1.0);
    let c = vitgan::ops::matmul::matmul(&upload(&a, &[m, k]), &upload(&b, &[k, n]))
        .unwrap()
        .to_vec()
        .unwrap();
    for &row in &[0usize, 1, 63, 64, 4095, 8190] {
        let want = matmul_ref(
            &to_f64(&a[row * k..(row + 1) * k]),
            &to_f64(&b),
            1,
            1,
            1,
            k,
            n,
            false,
            false,
        );
        assert_close(
            &c[row * n..(row + 1) * n],
            &want,
            1e-4,
            1e-4,
            &format!("row {row}"),
        );
    }
}

#[test]
fn fused_bias_and_activation_epilogue() {
    // N = 29: element stores; N = 28: on CPU adapters the kernels store whole rows of 4 as vec4s
    // (M = 19 leaves a partial block of rows either way)
    for (seed, (m, k, n)) in [(19, 23, 29), (19, 23, 28)].into_iter().enumerate() {
        check_epilogue(m, k, n, 12 + seed as u64);
    }
}

fn check_epilogue(m: usize, k: usize, n: usize, seed: u64) {
    let mut r = rng(seed);
    let a = random(&mut r, m * k, -1.0, 1.0);
    let b = random(&mut r, k * n, -1.0, 1.0);
    let bias = random(&mut r, n, -1.0, 1.0);
    let z = matmul_ref(&to_f64(&a), &to_f64(&b), 1, 1, m, k, n, false, false);
    let z: Vec<f64> = z
        .iter()
        .enumerate()
        .map(|(i, v)| v + bias[i % n] as f64)
        .collect();
    let gbias = upload(&bias, &[n]);
    for (act, f) in [
        (Activation::None, (|x| x) as fn(f64) -> f64),
        (Activation::Gelu, gelu_ref),
        (Activation::LeakyRelu(0.2), |x: f64| {
            if x > 0.0 { x } else { 0.2 * x }
        }),
        (Activation::Sin, f64::sin),
        (Activation::Relu, |x: f64| x.max(0.0)),
    ] {
        let (y, pre) = matmul_fused(
            &upload(&a, &[m, k]),
            &upload(&b, &[k, n]),
            MatmulOptions {
                bias: Some(&gbias),
                act,
                save_preact: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_close(
            &pre.unwrap().to_vec().unwrap(),
            &z,
            1e-5,
            1e-5,
            &format!("{act:?} pre-activation, {m}x{k}x{n}"),
        );
        let want: Vec<f64> = z.iter().map(|&v| f(v)).collect();
        assert_close(
            &y.to_vec().unwrap(),
            &want,
            1e-5,
            1e-5,
            &format!("{act:?} output, {m}x{k}x{n}"),
        );
    }
}

#[test]
fn matmul_backward_matches_finite_differences() {
    let (m, k, n) = (5, 7, 3);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let mut r = rng(20 + ta as u64 * 2 + tb as u64);
        let a = random(&mut r, 2 * m * k, -1.0, 1.0);
        let b = random(&mut r, k * n, -1.0, 1.0);
        let w = random(&mut r, 2 * m * n, -1.0, 1.0);
        let ash = if ta { [2, k, m] } else { [2, m, k] };
        let bsh = if tb { [n, k] } else { [k, n] };
        let (da, db) = matmul_backward(
            &upload(&a, &ash),
            &upload(&b, &bsh),
            &upload(&w, &[2, m, n]),
            ta,
            tb,
        )
        .unwrap();
        assert_eq!(da.shape(), ash);
        assert_eq!(db.shape(), bsh);
        let (af, bf, wf) = (to_f64(&a), to_f64(&b), to_f64(&w));
        let na = numeric_grad(&af, 1e-5, |x| {
            dot(&wf, &matmul_ref(x, &bf, 2, 1, m, k, n, ta, tb))
        });
        let nb = numeric_grad(&bf, 1e-5, |x| {
            dot(&wf, &matmul_ref(&af, x, 2, 1, m, k, n, ta, tb))
        });
        assert_close(
            &da.to_vec().unwrap(),
            &na,
            1e-4,
            1e-3,
            &format!("dA ta={ta} tb={tb}"),
        );
        assert_close(
            &db.to_vec().unwrap(),
            &nb,
            1e-4,
            1e-3,
            &format!("dB (broadcast over batch) ta={ta} tb={tb}"),
        );
    }
}

#[test]
fn mismatched_inner_dimension_is_an_error() {
    let msg = vitgan::ops::matmul::matmul(&upload(&[0.0; 6], &[2, 3]), &upload(&[0.0; 8], &[4, 2]))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 2]"), "{msg}");
}

/// Several products recorded before one submit, with operands of growing and shrinking size: the
/// operand textures of the CPU kernels are reused (and replaced by taller ones) between launches.
#[test]
fn many_products_recorded_before_a_submit() {
    let mut r = rng(4242);
    let mut pending = Vec::new();
    for &(m, k, n) in &[
        (4usize, 4usize, 4usize),
        (64, 128, 32),
        (512, 96, 64),
        (8, 4, 12),
    ] {
        let a = random(&mut r, m * k, -1.0, 1.0);
        let b = random(&mut r, k * n, -1.0, 1.0);
        let c = vitgan::ops::matmul::matmul(&upload(&a, &[m, k]), &upload(&b, &[k, n])).unwrap();
        pending.push((
            c,
            matmul_ref(&to_f64(&a), &to_f64(&b), 1, 1, m, k, n, false, false),
        ));
    }
    // A · A (both operands the same tensor)
    let a = random(&mut r, 16 * 16, -1.0, 1.0);
    let at = upload(&a, &[16, 16]);
    let c = vitgan::ops::matmul::matmul(&at, &at).unwrap();
    pending.push((
        c,
        matmul_ref(&to_f64(&a), &to_f64(&a), 1, 1, 16, 16, 16, false, false),
    ));
    for (i, (c, want)) in pending.iter().enumerate() {
        assert_close(
            &c.to_vec().unwrap(),
            want,
            1e-4,
            1e-4,
            &format!("product {i}"),
        );
    }
}

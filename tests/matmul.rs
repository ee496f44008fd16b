mod common;
use common::*;
use vitgan::ops::matmul::{Activation, MatmulOptions, matmul_backward, matmul_fused};

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
}

#[test]
fn matmul_large_prime_shape() {
    // large, prime-sized dimensions (sampled check keeps the f64 reference cheap)
    check(1, 1, 257, 383, 131, false, false, 7);
}

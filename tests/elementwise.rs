mod common;
use common::*;
use vitgan::ops::elementwise::{Binary, Unary, binary, unary, unary_backward};

fn unary_ref(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Neg => -x,
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Gelu => gelu_ref(x),
        Unary::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a as f64 * x
            }
        }
        Unary::Sin => x.sin(),
        Unary::Softplus => softplus_ref(x),
        Unary::Sigmoid => sigmoid_ref(x),
        Unary::Tanh => x.tanh(),
        Unary::Relu => x.max(0.0),
        Unary::Square => x * x,
        Unary::Affine(s, b) => s as f64 * x + b as f64,
        Unary::Recip => 1.0 / x,
        Unary::Cos => x.cos(),
    }
}

const OPS: [Unary; 15] = [
    Unary::Neg,
    Unary::Exp,
    Unary::Log,
    Unary::Sqrt,
    Unary::Gelu,
    Unary::LeakyRelu(0.2),
    Unary::Sin,
    Unary::Softplus,
    Unary::Sigmoid,
    Unary::Tanh,
    Unary::Relu,
    Unary::Square,
    Unary::Affine(1.5, -0.25),
    Unary::Recip,
    Unary::Cos,
];

/// Inputs inside each op's domain, away from kinks (finite differences need smoothness).
fn inputs(op: Unary, n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    match op {
        Unary::Log | Unary::Sqrt | Unary::Recip => random(&mut r, n, 0.3, 3.0),
        Unary::LeakyRelu(_) | Unary::Relu => random(&mut r, n, -3.0, 3.0)
            .into_iter()
            .map(|x| if x.abs() < 0.05 { x + 0.1 } else { x })
            .collect(),
        _ => random(&mut r, n, -4.0, 4.0),
    }
}

#[test]
fn unary_forward_matches_reference() {
    for (i, &op) in OPS.iter().enumerate() {
        // multiples of 4 take the vec4-chunk kernels on CPU adapters (36: a partial last chunk)
        for &n in &[1usize, 255, 257, 70_001, 36, 70_004] {
            let x = inputs(op, n, i as u64 * 31 + n as u64);
            let y = unary(&upload(&x, &[n]), op).unwrap().to_vec().unwrap();
            let want: Vec<f64> = x.iter().map(|&v| unary_ref(op, v as f64)).collect();
            assert_close(&y, &want, 2e-6, 2e-5, &format!("{op:?} n={n}"));
        }
    }
}

#[test]
fn unary_backward_matches_finite_differences() {
    for (i, &op) in OPS.iter().enumerate() {
        // 37: per element; 36 (a multiple of 4): vec4 chunks on CPU adapters
        for n in [37, 36] {
            let x = inputs(op, n, 1000 + i as u64);
            let mut r = rng(77 + i as u64);
            let w = random(&mut r, n, -1.0, 1.0);
            let dx = unary_backward(&upload(&x, &[n]), &upload(&w, &[n]), op)
                .unwrap()
                .to_vec()
                .unwrap();
            let wf = to_f64(&w);
            let num = numeric_grad(&to_f64(&x), 1e-5, |xs| {
                dot(
                    &wf,
                    &xs.iter().map(|&v| unary_ref(op, v)).collect::<Vec<_>>(),
                )
            });
            assert_close(&dx, &num, 1e-4, 1e-3, &format!("{op:?} backward n={n}"));
        }
    }
}

fn binary_ref(op: Binary, a: f64, b: f64) -> f64 {
    match op {
        Binary::Add => a + b,
        Binary::Sub => a - b,
        Binary::Mul => a * b,
        Binary::Div => a / b,
        Binary::Max => a.max(b),
        Binary::Min => a.min(b),
    }
}

/// Broadcasting reference: index each operand with its (right-aligned) shape.
fn broadcast_ref(
    op: Binary,
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    out: &[usize],
) -> Vec<f64> {
    let n: usize = out.iter().product();
    let idx = |coord: &[usize], sh: &[usize]| -> usize {
        let off = out.len() - sh.len();
        let mut i = 0;
        for d in 0..sh.len() {
            let c = if sh[d] == 1 { 0 } else { coord[d + off] };
            i = i * sh[d] + c;
        }
        i
    };
    (0..n)
        .map(|lin| {
            let mut coord = vec![0; out.len()];
            let mut rem = lin;
            for d in (0..out.len()).rev() {
                coord[d] = rem % out[d];
                rem /= out[d];
            }
            binary_ref(op, a[idx(&coord, ash)] as f64, b[idx(&coord, bsh)] as f64)
        })
        .collect()
}

#[test]
fn binary_broadcasting_matches_reference() {
    let cases: &[(&[usize], &[usize], &[usize])] = &[
        (&[13], &[13], &[13]),
        // equal shapes with a multiple of 4 elements: vec4 chunks on CPU adapters
        (&[6, 10], &[6, 10], &[6, 10]),
        (&[1028], &[1028], &[1028]),
        (&[5, 7], &[7], &[5, 7]),
        (&[5, 1], &[1, 7], &[5, 7]),
        (&[3, 1, 11], &[4, 1], &[3, 4, 11]),
        (
            &[2, 3, 1, 5, 1, 2, 1, 3],
            &[3, 5, 1, 2, 7, 1],
            &[2, 3, 3, 5, 1, 2, 7, 3],
        ),
        (&[1], &[9, 257], &[9, 257]),
        // innermost dimension a multiple of 4: vec4 runs on CPU adapters (a bias over rows, a
        // per-row scale over pixels, a per-sample scalar, both sides broadcast, runs longer than one
        // invocation's chunk of 8 vec4s, and a scalar splatted over the innermost axis)
        (&[7, 12], &[12], &[7, 12]),
        (&[5, 3, 8], &[5, 1, 8], &[5, 3, 8]),
        (&[3, 1, 8], &[1, 4, 8], &[3, 4, 8]),
        (&[3, 44], &[3, 1], &[3, 44]),
        (&[2, 3, 1], &[2, 1, 36], &[2, 3, 36]),
        (&[1], &[4], &[4]),
        // innermost runs of ≥ 8 that are not vec4 runs: scalar runs on CPU adapters (a row of 65 minus
        // its column vector, as in unfused L2 attention; a transposed-like innermost stride)
        (&[6, 65], &[6, 1], &[6, 65]),
        (&[3, 1, 9], &[2, 9], &[3, 2, 9]),
    ];
    let ops = [
        Binary::Add,
        Binary::Sub,
        Binary::Mul,
        Binary::Div,
        Binary::Max,
        Binary::Min,
    ];
    for (ci, (ash, bsh, out)) in cases.iter().enumerate() {
        for (oi, &op) in ops.iter().enumerate() {
            let mut r = rng((ci * 10 + oi) as u64);
            let a = random(&mut r, ash.iter().product(), -2.0, 2.0);
            let b: Vec<f32> = random(&mut r, bsh.iter().product(), 0.5, 2.0)
                .into_iter()
                .enumerate()
                .map(|(i, v)| if i % 2 == 0 { v } else { -v })
                .collect();
            let y = binary(&upload(&a, ash), &upload(&b, bsh), op).unwrap();
            assert_eq!(y.shape(), *out);
            let want = broadcast_ref(op, &a, ash, &b, bsh, out);
            assert_close(
                &y.to_vec().unwrap(),
                &want,
                1e-6,
                1e-5,
                &format!("{op:?} {ash:?} {bsh:?}"),
            );
        }
    }
}

#[test]
fn incompatible_broadcast_is_an_error_naming_both_shapes() {
    let a = upload(&[0.0; 6], &[2, 3]);
    let b = upload(&[0.0; 4], &[4]);
    let msg = binary(&a, &b, Binary::Add).err().unwrap().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4]"), "{msg}");
}

/// Softplus where ln(1 + eˣ) is tiny (x ≪ 0: the non-saturating loss of a confident D) keeps its
/// relative precision: 1 + eˣ rounds to 1 in f32 from x ≈ −16 on.
#[test]
fn softplus_is_relatively_accurate_for_very_negative_inputs() {
    let x = random(&mut rng(31), 1001, -40.0, -5.0);
    let y = unary(&upload(&x, &[x.len()]), Unary::Softplus)
        .unwrap()
        .to_vec()
        .unwrap();
    let want: Vec<f64> = x.iter().map(|&v| softplus_ref(v as f64)).collect();
    assert_close(&y, &want, 0.0, 1e-5, "softplus on [-40, -5]");
}

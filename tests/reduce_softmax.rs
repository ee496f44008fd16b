mod common;
use common::*;
use vitgan::ops::{reduce, softmax};
// Shapes cover both launch strategies on every adapter: few outputs (a workgroup per output) and
// many outputs (one invocation per output), over short and long axes.

fn sum_axis_ref(x: &[f32], shape: &[usize], axis: usize) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let n = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = vec![0.0; outer * inner];
    for o in 0..outer {
        for k in 0..n {
            for i in 0..inner {
                out[o * inner + i] += x[(o * n + k) * inner + i] as f64;
            }
        }
    }
    out
}

#[test]
fn sum_and_mean_over_each_axis() {
    for (si, shape) in [
        vec![1usize],
        vec![7, 13],
        vec![3, 129, 5],
        vec![2, 1, 1031],
        vec![65, 384],
        vec![70, 2000],
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(si as u64);
        let x = random(&mut r, shape.iter().product(), -1.0, 1.0);
        let t = upload(&x, shape);
        for axis in 0..shape.len() {
            let want = sum_axis_ref(&x, shape, axis);
            let got = reduce::sum_axis(&t, axis, false).unwrap();
            let mut expect_shape = shape.clone();
            expect_shape.remove(axis);
            assert_eq!(got.shape(), expect_shape.as_slice());
            assert_close(
                &got.to_vec().unwrap(),
                &want,
                1e-5,
                1e-5,
                &format!("sum {shape:?} axis {axis}"),
            );
            let mean: Vec<f64> = want.iter().map(|v| v / shape[axis] as f64).collect();
            let got = reduce::mean_axis(&t, axis, true).unwrap();
            assert_close(
                &got.to_vec().unwrap(),
                &mean,
                1e-6,
                1e-5,
                &format!("mean {shape:?} axis {axis}"),
            );
        }
    }
}

#[test]
fn sum_all_small_and_large() {
    for (i, &n) in [1usize, 1000, 65_536, 100_003].iter().enumerate() {
        let mut r = rng(50 + i as u64);
        let x = random(&mut r, n, -1.0, 1.0);
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let got = reduce::sum_all(&upload(&x, &[n]))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(&got, &[want], 1e-3, 1e-5, &format!("sum_all n={n}"));
        let got = reduce::mean_all(&upload(&x, &[n]))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(
            &got,
            &[want / n as f64],
            1e-6,
            1e-4,
            &format!("mean_all n={n}"),
        );
    }
}

#[test]
fn sum_to_shape_reverses_broadcasting() {
    let mut r = rng(9);
    let x = random(&mut r, 4 * 3 * 5, -1.0, 1.0);
    let got = reduce::sum_to_shape(&upload(&x, &[4, 3, 5]), &[3, 1]).unwrap();
    assert_eq!(got.shape(), &[3, 1]);
    let mut want = vec![0.0; 3];
    for a in 0..4 {
        for b in 0..3 {
            for c in 0..5 {
                want[b] += x[(a * 3 + b) * 5 + c] as f64;
            }
        }
    }
    assert_close(&got.to_vec().unwrap(), &want, 1e-5, 1e-5, "sum_to_shape");
}

#[test]
fn softmax_forward_matches_reference() {
    for (i, &(rows, n)) in [
        (1usize, 1usize),
        (3, 7),
        (130, 65),
        (17, 256),
        (2, 1031),
        (64, 1),
        (200, 1031),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(100 + i as u64);
        let x = random(&mut r, rows * n, -8.0, 8.0);
        let y = softmax::softmax(&upload(&x, &[rows, n]))
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(
            &y,
            &softmax_ref(&to_f64(&x), n),
            1e-6,
            1e-5,
            &format!("softmax {rows}x{n}"),
        );
    }
}

#[test]
fn softmax_backward_matches_finite_differences() {
    for (i, &(rows, n)) in [(1usize, 1usize), (3, 7), (2, 65), (70, 9)]
        .iter()
        .enumerate()
    {
        let mut r = rng(200 + i as u64);
        let x = random(&mut r, rows * n, -3.0, 3.0);
        let w = random(&mut r, rows * n, -1.0, 1.0);
        let y = softmax::softmax(&upload(&x, &[rows, n])).unwrap();
        let dx = softmax::softmax_backward(&y, &upload(&w, &[rows, n]))
            .unwrap()
            .to_vec()
            .unwrap();
        let wf = to_f64(&w);
        let num = numeric_grad(&to_f64(&x), 1e-5, |xs| dot(&wf, &softmax_ref(xs, n)));
        assert_close(
            &dx,
            &num,
            1e-5,
            1e-3,
            &format!("softmax backward {rows}x{n}"),
        );
    }
}

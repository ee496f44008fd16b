//! Sizes past lavapipe's loop cap (65,535 loop iterations per invocation, after which llvmpipe
//! silently ends every loop): each kernel family that loops per invocation, at a size whose loop would
//! exceed the cap in one invocation without the split of `vitgan::ops::split_loop`, against the f64
//! reference. On a real GPU these are plain large-size tests.
mod common;
use common::*;
use vitgan::ops::{layout, reduce};

/// A contiguous run of 300,000 floats (75,000 vec4s in one run without the split).
#[test]
fn long_contiguous_copy() {
    let n = 300_000;
    let x = random(&mut rng(1), n, -1.0, 1.0);
    let t = upload(&x, &[n]);
    let y = layout::slice(&t, 0, 0, n).unwrap();
    assert_close(
        &y.to_vec().unwrap(),
        &to_f64(&x),
        0.0,
        0.0,
        "copy of 300,000",
    );
    // an offset slice of the same run
    let y = layout::slice(&t, 0, 4, n - 8).unwrap();
    assert_close(
        &y.to_vec().unwrap(),
        &to_f64(&x[4..n - 4]),
        0.0,
        0.0,
        "slice 4..",
    );
}

/// The per-head slices of attention at cifar32 batch 8 in D: `[3, 4B, H, L+1, Dh]`-like q/k/v
/// slices along axis 0 (a run of 4B·D·(L+1) = 4·8·384·65 floats: 199,680 vec4s), their concat and
/// padding.
#[test]
fn per_head_slice_concat_and_pad() {
    let shape = [3usize, 32, 65, 384];
    let n: usize = shape.iter().product();
    let x = random(&mut rng(2), n, -1.0, 1.0);
    let t = upload(&x, &shape);
    let per = n / 3;
    let mut parts = Vec::new();
    for i in 0..3 {
        let s = layout::slice(&t, 0, i, 1).unwrap();
        assert_close(
            &s.to_vec().unwrap(),
            &to_f64(&x[i * per..(i + 1) * per]),
            0.0,
            0.0,
            &format!("slice {i} of {shape:?}"),
        );
        parts.push(s);
    }
    let refs: Vec<&vitgan::Tensor> = parts.iter().collect();
    let c = layout::concat(&refs, 0).unwrap();
    assert_close(&c.to_vec().unwrap(), &to_f64(&x), 0.0, 0.0, "concat");
    let padded = layout::pad_slice(&parts[1], &shape, 0, 1).unwrap();
    let mut want = vec![0.0f64; n];
    want[per..2 * per].copy_from_slice(&to_f64(&x[per..2 * per]));
    assert_close(&padded.to_vec().unwrap(), &want, 0.0, 0.0, "pad_slice");
}

fn sum_axis0_ref(x: &[f32], rows: usize, cols: usize) -> Vec<f64> {
    let mut out = vec![0.0; cols];
    for r in 0..rows {
        for c in 0..cols {
            out[c] += x[r * cols + c] as f64;
        }
    }
    out
}

/// Sums over 70,000 and 131,072 rows (one invocation per output on CPU adapters) and over one
/// 5,000,001-long axis (the workgroup kernel: 78,126 iterations per invocation unsplit).
#[test]
fn long_sums() {
    for (rows, cols) in [(70_000usize, 64usize), (131_072, 3), (5_000_001, 1)] {
        let x = random(&mut rng(rows as u64), rows * cols, -1.0, 1.0);
        let t = upload(&x, &[rows, cols]);
        let want = sum_axis0_ref(&x, rows, cols);
        let got = reduce::sum_axis(&t, 0, false).unwrap().to_vec().unwrap();
        // f32 accumulation over ~1e5 terms of ±1: errors ~1e-3 absolute
        assert_close(&got, &want, 2e-2, 1e-4, &format!("sum of [{rows}, {cols}]"));
        let mean = reduce::mean_axis(&t, 0, true).unwrap();
        assert_eq!(mean.shape(), &[1, cols]);
        let want_mean: Vec<f64> = want.iter().map(|s| s / rows as f64).collect();
        assert_close(&mean.to_vec().unwrap(), &want_mean, 1e-6, 1e-4, "mean");
    }
    let n = 5_000_001;
    let x = random(&mut rng(9), n, 0.0, 1.0);
    let all = reduce::sum_all(&upload(&x, &[n]))
        .unwrap()
        .to_vec()
        .unwrap();
    let want: f64 = x.iter().map(|&v| v as f64).sum();
    assert_close(&all, &[want], 0.0, 1e-5, "sum_all of 5,000,001");
}

/// `act(op(A)·op(B) + bias)` in f64 for 2-D operands.
#[allow(clippy::too_many_arguments)]
fn matmul_epilogue_ref(
    a: &[f32],
    b: &[f32],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    bias: &[f32],
    relu: bool,
) -> Vec<f64> {
    let c = matmul_ref(&to_f64(a), &to_f64(b), 1, 1, m, k, n, ta, tb);
    c.iter()
        .enumerate()
        .map(|(i, &v)| {
            let v = v + bias.get(i % n).map_or(0.0, |&x| x as f64);
            if relu { v.max(0.0) } else { v }
        })
        .collect()
}

/// Inner dimensions past the cap (K/4 = 67,500 steps of the CPU kernels in one invocation unsplit),
/// plain, transposed as in a weight gradient (K = rows of a batch), and with the bias + activation
/// epilogue; the tiled kernel at K = 5,000; and a product of more than 65,535 row blocks. The only
/// test of this file that runs matmuls (it sets VITGAN_MATMUL_KERNEL for one case).
#[test]
fn long_matmuls() {
    use vitgan::ops::matmul::{Activation, MatmulOptions, matmul_fused};
    let run = |m: usize, k: usize, n: usize, ta: bool, tb: bool, epilogue: bool, seed: u64| {
        let mut r = rng(seed);
        let a = random(&mut r, m * k, -1.0, 1.0);
        let b = random(&mut r, k * n, -1.0, 1.0);
        let bias = if epilogue {
            random(&mut r, n, -1.0, 1.0)
        } else {
            Vec::new()
        };
        let (a_shape, b_shape) = (
            if ta { [k, m] } else { [m, k] },
            if tb { [n, k] } else { [k, n] },
        );
        let at = upload(&a, &a_shape);
        let bt = upload(&b, &b_shape);
        let bias_t = upload(if epilogue { &bias } else { &[0.0] }, &[bias.len().max(1)]);
        let o = MatmulOptions {
            trans_a: ta,
            trans_b: tb,
            bias: epilogue.then_some(&bias_t),
            act: if epilogue {
                Activation::Relu
            } else {
                Activation::None
            },
            save_preact: epilogue,
        };
        let (c, pre) = matmul_fused(&at, &bt, o).unwrap();
        let what = format!("{m}×{k}×{n} ta {ta} tb {tb} epilogue {epilogue}");
        let want = matmul_epilogue_ref(&a, &b, m, k, n, ta, tb, &bias, epilogue);
        // sums of K products of ±1 values: |C| ~ √K
        let atol = 1e-5 * k as f64;
        assert_close(&c.to_vec().unwrap(), &want, atol, 1e-4, &what);
        if let Some(pre) = pre {
            let want = matmul_epilogue_ref(&a, &b, m, k, n, ta, tb, &bias, false);
            assert_close(
                &pre.to_vec().unwrap(),
                &want,
                atol,
                1e-4,
                &format!("{what} pre-activation"),
            );
        }
    };
    run(5, 270_000, 7, false, false, false, 1);
    run(8, 270_000, 12, false, false, true, 2);
    // a weight gradient Aᵀ·B with K = rows
    run(6, 270_000, 8, true, false, false, 3);
    run(4, 266_001, 9, false, true, true, 4);
    // 4,300,000 rows: over 65,535 row blocks for every CPU kernel shape
    run(4_300_000, 4, 4, false, false, true, 5);
    // the tiled (GPU) kernel on the CPU adapter
    unsafe { std::env::set_var("VITGAN_MATMUL_KERNEL", "tiled") };
    let result = std::panic::catch_unwind(|| run(9, 5_000, 13, false, false, true, 6));
    unsafe { std::env::remove_var("VITGAN_MATMUL_KERNEL") };
    result.unwrap();
}

/// Softmax over rows of 30,000 (the one-invocation-per-row kernel would loop 90,000 times): the
/// launcher falls back to the workgroup kernels.
#[test]
fn long_softmax_rows() {
    use vitgan::ops::softmax;
    let (rows, n) = (64usize, 30_000usize);
    let x = random(&mut rng(11), rows * n, -3.0, 3.0);
    let dy = random(&mut rng(12), rows * n, -1.0, 1.0);
    let y = softmax::softmax(&upload(&x, &[rows, n])).unwrap();
    let want = softmax_ref(&to_f64(&x), n);
    let yv = y.to_vec().unwrap();
    assert_close(&yv, &want, 1e-9, 1e-4, "softmax rows of 30,000");
    let dx = softmax::softmax_backward(&y, &upload(&dy, &[rows, n])).unwrap();
    let mut want_dx = vec![0.0; rows * n];
    for r in 0..rows {
        let (yr, dyr) = (&want[r * n..(r + 1) * n], &dy[r * n..(r + 1) * n]);
        let s: f64 = yr.iter().zip(dyr).map(|(a, &b)| a * b as f64).sum();
        for j in 0..n {
            want_dx[r * n + j] = yr[j] * (dyr[j] as f64 - s);
        }
    }
    assert_close(
        &dx.to_vec().unwrap(),
        &want_dx,
        1e-9,
        1e-3,
        "softmax backward",
    );
}

/// LayerNorm over rows of 131,076 (65,538 iterations of the vec4 row kernel): the launcher falls back
/// to the workgroup kernels.
#[test]
fn long_layer_norm_rows() {
    let rows = 64usize;
    let d = 131_076;
    let x = random(&mut rng(13), rows * d, -2.0, 2.0);
    let g = random(&mut rng(14), d, 0.5, 1.5);
    let b = random(&mut rng(15), d, -0.5, 0.5);
    let (y, _, _) = vitgan::ops::layer_norm::layer_norm_forward(
        &upload(&x, &[rows, d]),
        &upload(&g, &[d]),
        &upload(&b, &[d]),
        1e-5,
    )
    .unwrap();
    let want =
        common::layer_norm::layer_norm_ref(&to_f64(&x), &to_f64(&g), &to_f64(&b), d, rows, 1e-5);
    assert_close(
        &y.to_vec().unwrap(),
        &want.y,
        1e-4,
        1e-4,
        "layer norm rows of 131,076",
    );
}

/// Attention kernels loop over every key in one invocation: on a CPU adapter a sequence past the loop
/// budget is refused with an error (a value, not a wrong result); within it the result is right, and
/// the one-row-per-lane kernels (8 keys per trip) run 4,000 keys right.
#[test]
fn long_attention_is_an_error_on_cpu_adapters() {
    use vitgan::ops::attention::{AttentionKernel, AttentionKind, attention_forward_with};
    let (l, dh) = (4_000usize, 16usize);
    let x = random(&mut rng(21), l * dh, -1.0, 1.0);
    let q = upload(&x, &[1, 1, l, dh]);
    let r = attention_forward_with(&q, &q, &q, AttentionKind::Dot, AttentionKernel::Tiled);
    if gpu().is_cpu() {
        let Err(e) = r else {
            panic!("a sequence of 4,000 keys at head width 16 must be refused");
        };
        assert!(e.to_string().contains("loop iterations"), "{e}");
    } else {
        r.unwrap();
    }
    // the one-row-per-lane kernels step 8 keys per trip (500 trips here): they run it, right
    if !AttentionKernel::Lanes.supports(&gpu(), dh) {
        return;
    }
    let (out, lse) =
        attention_forward_with(&q, &q, &q, AttentionKind::L2, AttentionKernel::Lanes).unwrap();
    let d = common::attention::Dims::new(1, l, dh);
    let x64 = to_f64(&x);
    let (want_out, want_lse) =
        common::attention::attention_ref(&x64, &x64, &x64, d, AttentionKind::L2);
    assert_close(
        &out.to_vec().unwrap(),
        &want_out,
        2e-5,
        1e-4,
        "L2 attention over 4,000 keys: out",
    );
    assert_close(
        &lse.to_vec().unwrap(),
        &want_lse,
        1e-4,
        1e-5,
        "L2 attention over 4,000 keys: lse",
    );
    // past their bound (⌈L/8⌉ trips within half the cap: L > 262,144) they refuse too, by name
    let long = 270_000usize;
    let q = upload(&vec![0.0; long * dh], &[1, 1, long, dh]);
    let Err(e) = attention_forward_with(&q, &q, &q, AttentionKind::L2, AttentionKernel::Lanes)
    else {
        panic!("a sequence of {long} keys must be refused by the lanes kernels");
    };
    assert!(e.to_string().contains("loop iterations"), "{e}");
}
/// The packed attention (the lanes kernels reading the heads in place in the projection) keeps the
/// lanes kernels' bound: 4,000 keys give the lanes kernels' bits, 270,000 are refused by name.
#[test]
fn long_packed_attention_is_right_within_the_budget_and_refused_past_it() {
    use vitgan::ops::attention::{
        AttentionKernel, AttentionKind, Packed, attention_forward_with, attention_packed_forward,
    };
    let dh = 16usize;
    if !AttentionKernel::Lanes.supports(&gpu(), dh) {
        return;
    }
    let l = 4_000usize;
    let x = random(&mut rng(22), l * dh, -1.0, 1.0);
    let q = upload(&x, &[1, 1, l, dh]);
    let (want, _) =
        attention_forward_with(&q, &q, &q, AttentionKind::L2, AttentionKernel::Lanes).unwrap();
    // one head, parts [q, v] with v = q
    let qkv: Vec<f32> = x
        .chunks(dh)
        .flat_map(|r| r.iter().chain(r).copied())
        .collect();
    let qkv = upload(&qkv, &[1, l, 2 * dh]);
    let p = Packed::of(&qkv, 1, AttentionKind::L2).unwrap();
    let (out, _) = attention_packed_forward(&qkv, &p).unwrap();
    assert!(
        out.to_vec().unwrap() == want.to_vec().unwrap(),
        "packed L2 attention over {l} keys differs from the lanes kernels"
    );
    let long = 270_000usize;
    let qkv = upload(&vec![0.0; long * 2 * dh], &[1, long, 2 * dh]);
    let p = Packed::of(&qkv, 1, AttentionKind::L2).unwrap();
    let Err(e) = attention_packed_forward(&qkv, &p) else {
        panic!("a packed sequence of {long} keys must be refused");
    };
    assert!(e.to_string().contains("loop iterations"), "{e}");
}

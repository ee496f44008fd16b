//! Fused attention (dot-product and L2) against the f64 reference, finite differences, the unfused
//! composition of primitive tape ops, and the Lipschitz property that motivates L2 attention.

mod common;
use common::attention::{Dims, attention_backward_ref, attention_ref};
use common::*;
use vitgan::Tape;
use vitgan::autodiff::attention::attention_unfused;
use vitgan::ops::attention::{
    AttentionKernel, AttentionKind, SUBGROUP_HEAD_DIM, attention_backward, attention_backward_with,
    attention_forward, attention_forward_with,
};

const KINDS: [AttentionKind; 2] = [AttentionKind::Dot, AttentionKind::L2];

fn shape(b: usize, h: usize, d: Dims) -> Vec<usize> {
    vec![b, h, d.seq_len, d.head_dim]
}

/// Random q, k, v in [-1, 1).
fn inputs(d: Dims, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = rng(seed);
    let n = d.numel();
    (
        random(&mut r, n, -1.0, 1.0),
        random(&mut r, n, -1.0, 1.0),
        random(&mut r, n, -1.0, 1.0),
    )
}

fn check_forward(b: usize, h: usize, l: usize, dh: usize, kind: AttentionKind, seed: u64) {
    let d = Dims::new(b * h, l, dh);
    let (q, k, v) = inputs(d, seed);
    let s = shape(b, h, d);
    let (out, lse) =
        attention_forward(&upload(&q, &s), &upload(&k, &s), &upload(&v, &s), kind).unwrap();
    assert_eq!(out.shape(), &s[..]);
    assert_eq!(lse.shape(), &s[..3]);
    let (want_out, want_lse) = attention_ref(&to_f64(&q), &to_f64(&k), &to_f64(&v), d, kind);
    let what = format!("{kind:?} attention B{b} H{h} L{l} Dh{dh}");
    assert_close(
        &out.to_vec().unwrap(),
        &want_out,
        2e-5,
        1e-4,
        &format!("{what}: out"),
    );
    assert_close(
        &lse.to_vec().unwrap(),
        &want_lse,
        1e-4,
        1e-5,
        &format!("{what}: lse"),
    );
}

#[test]
fn forward_matches_reference() {
    let mut seed = 100;
    for kind in KINDS {
        for &l in &[1, 7, 65, 130] {
            for &dh in &[8, 16, 17, 64] {
                seed += 1;
                // B·H odd: 3 or 5 heads in all
                let (b, h) = if seed % 2 == 0 { (1, 3) } else { (5, 1) };
                check_forward(b, h, l, dh, kind, seed);
            }
        }
    }
}

#[test]
fn forward_handles_long_sequences_and_wide_heads() {
    // (Dh = 128 with one kind: every (Dh, kind) costs seconds of pipeline compilation on lavapipe)
    check_forward(1, 1, 257, 128, AttentionKind::L2, 2);
    check_forward(3, 1, 256, 3, AttentionKind::Dot, 3);
}

/// At the model's head width CPU adapters with subgroups run the subgroup kernels and GPUs the tiled
/// ones: both must agree (with each other and, through the other tests, with the reference).
#[test]
fn tiled_and_subgroup_kernels_agree() {
    let g = gpu();
    if !AttentionKernel::Subgroup.supports(&g, SUBGROUP_HEAD_DIM) {
        println!("skipped: {} has no subgroup kernels", g.describe());
        return;
    }
    let (b, h, l, dh) = (2, 1, 37, SUBGROUP_HEAD_DIM);
    let d = Dims::new(b * h, l, dh);
    let s = shape(b, h, d);
    for (seed, kind) in (700..).zip(KINDS) {
        let (q, k, v) = inputs(d, seed);
        let (gq, gk, gv) = (upload(&q, &s), upload(&k, &s), upload(&v, &s));
        let run = |kernel| attention_forward_with(&gq, &gk, &gv, kind, kernel).unwrap();
        let (tiled_out, tiled_lse) = run(AttentionKernel::Tiled);
        let (sub_out, sub_lse) = run(AttentionKernel::Subgroup);
        let what = format!("{kind:?} tiled vs subgroup L{l}");
        let want = to_f64(&tiled_out.to_vec().unwrap());
        assert_close(
            &sub_out.to_vec().unwrap(),
            &want,
            2e-5,
            1e-4,
            &format!("{what}: out"),
        );
        let want = to_f64(&tiled_lse.to_vec().unwrap());
        assert_close(
            &sub_lse.to_vec().unwrap(),
            &want,
            1e-4,
            1e-5,
            &format!("{what}: lse"),
        );
    }
    // a kernel asked for where it cannot run is an error, not a wrong answer
    let odd = upload(&[0.0; 2 * 17], &[1, 1, 2, 17]);
    assert!(attention_forward_with(&odd, &odd, &odd, KINDS[0], AttentionKernel::Subgroup).is_err());
    let (out, lse) = attention_forward(&odd, &odd, &odd, KINDS[0]).unwrap();
    let bwd = attention_backward_with(
        &odd,
        &odd,
        &odd,
        &out,
        &lse,
        &odd,
        KINDS[0],
        AttentionKernel::Subgroup,
    );
    assert!(bwd.is_err());
}

/// Adapters without subgroups get the source without the subgroup section; it must stand on its own.
#[test]
fn source_without_subgroup_kernels_validates() {
    let shader = vitgan::ops::attention::shader_without_subgroups();
    let code_mentions_subgroups = shader
        .source
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .any(|code| code.contains("subgroup"));
    assert!(
        !code_mentions_subgroups,
        "subgroup operations left in the source"
    );
    let module = naga::front::wgsl::parse_str(shader.source)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(shader.source)));
    let caps = naga::valid::Capabilities::all()
        - naga::valid::Capabilities::SUBGROUP
        - naga::valid::Capabilities::SUBGROUP_BARRIER;
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}", e.emit_to_string(shader.source)));
    let entries: Vec<&str> = module
        .entry_points
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for name in [
        "attention_forward",
        "attention_backward_dq",
        "attention_backward_dkdv",
    ] {
        assert!(entries.contains(&name), "{name} missing: {entries:?}");
    }
}

/// GPU backward with `dout` random against `reference` gradients, for q, k, v.
#[allow(clippy::too_many_arguments)]
fn check_backward_against(
    b: usize,
    h: usize,
    d: Dims,
    kind: AttentionKind,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dout: &[f32],
    want: (Vec<f64>, Vec<f64>, Vec<f64>),
    atol: f64,
    what: &str,
) {
    let s = shape(b, h, d);
    let (gq, gk, gv) = (upload(q, &s), upload(k, &s), upload(v, &s));
    let (out, lse) = attention_forward(&gq, &gk, &gv, kind).unwrap();
    let (dq, dk, dv) =
        attention_backward(&gq, &gk, &gv, &out, &lse, &upload(dout, &s), kind).unwrap();
    assert_close(
        &dq.to_vec().unwrap(),
        &want.0,
        atol,
        1e-3,
        &format!("{what}: dq"),
    );
    assert_close(
        &dk.to_vec().unwrap(),
        &want.1,
        atol,
        1e-3,
        &format!("{what}: dk"),
    );
    assert_close(
        &dv.to_vec().unwrap(),
        &want.2,
        atol,
        1e-3,
        &format!("{what}: dv"),
    );
}

#[test]
fn backward_matches_finite_differences() {
    let mut seed = 200;
    for kind in KINDS {
        for &(b, h, l, dh) in &[
            (1, 1, 1, 3),
            (1, 3, 5, 3),
            (3, 1, 19, 8),
            (1, 1, 40, 17),
            (1, 3, 13, 16),
        ] {
            seed += 1;
            let d = Dims::new(b * h, l, dh);
            let (q, k, v) = inputs(d, seed);
            let w = random(&mut rng(seed + 1000), d.numel(), -1.0, 1.0);
            let (q64, k64, v64, w64) = (to_f64(&q), to_f64(&k), to_f64(&v), to_f64(&w));
            let loss =
                |q: &[f64], k: &[f64], v: &[f64]| dot(&w64, &attention_ref(q, k, v, d, kind).0);
            let eps = 1e-5;
            let num = (
                numeric_grad(&q64, eps, |x| loss(x, &k64, &v64)),
                numeric_grad(&k64, eps, |x| loss(&q64, x, &v64)),
                numeric_grad(&v64, eps, |x| loss(&q64, &k64, x)),
            );
            let what = format!("{kind:?} backward B{b} H{h} L{l} Dh{dh}");
            // the analytic reference agrees with finite differences ...
            let analytic = attention_backward_ref(&q64, &k64, &v64, &w64, d, kind);
            for (name, a, n) in [
                ("dq", &analytic.0, &num.0),
                ("dk", &analytic.1, &num.1),
                ("dv", &analytic.2, &num.2),
            ] {
                let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
                assert_close(&a32, n, 1e-6, 1e-5, &format!("{what}: reference {name}"));
            }
            // ... and so does the GPU
            check_backward_against(b, h, d, kind, &q, &k, &v, &w, num, 2e-5, &what);
        }
    }
}

#[test]
fn backward_matches_analytic_reference_at_model_sizes() {
    // each (Dh, kind) compiles its own pipelines, which takes seconds on lavapipe, so the model's
    // Dh = 64 for both kinds, `tiny`'s Dh = 16 (the one-row-per-lane kernels on CPU adapters) for
    // both kinds and the widest head once (odd Dh is covered by the other tests)
    let cases = [
        (AttentionKind::Dot, (2, 3, 17, 16)),
        (AttentionKind::L2, (1, 5, 130, 16)),
        (AttentionKind::Dot, (1, 3, 65, 64)),
        (AttentionKind::L2, (3, 1, 130, 64)),
        (AttentionKind::L2, (1, 1, 33, 128)),
    ];
    for (seed, &(kind, (b, h, l, dh))) in (300..).zip(&cases) {
        let d = Dims::new(b * h, l, dh);
        let (q, k, v) = inputs(d, seed);
        let w = random(&mut rng(seed + 1000), d.numel(), -1.0, 1.0);
        let want =
            attention_backward_ref(&to_f64(&q), &to_f64(&k), &to_f64(&v), &to_f64(&w), d, kind);
        let what = format!("{kind:?} backward B{b} H{h} L{l} Dh{dh}");
        check_backward_against(b, h, d, kind, &q, &k, &v, &w, want, 5e-5, &what);
    }
}

/// Value and q/k/v gradients (for output gradient `w`) of attention on a fresh tape, fused or unfused.
fn tape_attention(
    s: &[usize],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    w: &[f32],
    kind: AttentionKind,
    fused: bool,
) -> [Vec<f32>; 4] {
    let tape = Tape::new(&gpu());
    let (vq, vk, vv) = (
        tape.leaf(upload(q, s), true),
        tape.leaf(upload(k, s), true),
        tape.leaf(upload(v, s), true),
    );
    let out = if fused {
        tape.attention_fused(vq, vk, vv, kind).unwrap()
    } else {
        attention_unfused(&tape, vq, vk, vv, kind).unwrap()
    };
    tape.backward_with(out, upload(w, s)).unwrap();
    let grad = |x| tape.grad(x).unwrap().to_vec().unwrap();
    [
        tape.value(out).to_vec().unwrap(),
        grad(vq),
        grad(vk),
        grad(vv),
    ]
}

#[test]
fn fused_matches_unfused_composition() {
    let mut seed = 400;
    for kind in KINDS {
        for &(b, h, l, dh) in &[(2, 3, 65, 17), (1, 1, 130, 8)] {
            seed += 1;
            let d = Dims::new(b * h, l, dh);
            let s = shape(b, h, d);
            let (q, k, v) = inputs(d, seed);
            let w = random(&mut rng(seed + 1000), d.numel(), -1.0, 1.0);
            let fused = tape_attention(&s, &q, &k, &v, &w, kind, true);
            let unfused = tape_attention(&s, &q, &k, &v, &w, kind, false);
            for (i, name) in ["out", "dq", "dk", "dv"].iter().enumerate() {
                assert_close(
                    &fused[i],
                    &to_f64(&unfused[i]),
                    5e-5,
                    1e-3,
                    &format!("{kind:?} fused vs unfused B{b} H{h} L{l} Dh{dh}: {name}"),
                );
            }
            // the comparison can fail: the unfused path is not the fused one in disguise
            let other = tape_attention(&s, &q, &k, &v, &w, KINDS[1 - kind as usize], false);
            assert!(
                fused[0]
                    .iter()
                    .zip(&other[0])
                    .any(|(a, b)| (a - b).abs() > 1e-3),
                "{kind:?}: dot and L2 attention gave the same output"
            );
        }
    }
}

/// Tied L2 attention `f(q, v) = attention(q, q, v)` in f64.
fn tied_ref(q: &[f64], v: &[f64], d: Dims) -> Vec<f64> {
    attention_ref(q, q, v, d, AttentionKind::L2).0
}

#[test]
fn tied_l2_gradient_sums_query_and_key_roles() {
    // Dh = 64 is the discriminator's head width (the subgroup kernels on CPU adapters that have them)
    for &(b, h, l, dh, seed) in &[
        (1, 3, 6, 5, 500u64),
        (2, 1, 23, 8, 501),
        (1, 2, 9, 64, 502),
        (3, 2, 17, 16, 503),
    ] {
        let d = Dims::new(b * h, l, dh);
        let s = shape(b, h, d);
        let (q, _, v) = inputs(d, seed);
        let w = random(&mut rng(seed + 1000), d.numel(), -1.0, 1.0);
        let (q64, v64, w64) = (to_f64(&q), to_f64(&v), to_f64(&w));
        let num_dq = numeric_grad(&q64, 1e-5, |x| dot(&w64, &tied_ref(x, &v64, d)));
        let num_dv = numeric_grad(&v64, 1e-5, |x| dot(&w64, &tied_ref(&q64, x, d)));

        let tape = Tape::new(&gpu());
        let (vq, vv) = (
            tape.leaf(upload(&q, &s), true),
            tape.leaf(upload(&v, &s), true),
        );
        let out = tape.l2_attention_tied_fused(vq, vv).unwrap();
        tape.backward_with(out, upload(&w, &s)).unwrap();
        let what = format!("tied L2 B{b} H{h} L{l} Dh{dh}");
        assert_close(
            &tape.value(out).to_vec().unwrap(),
            &tied_ref(&q64, &v64, d),
            2e-5,
            1e-4,
            &format!("{what}: out"),
        );
        let dq = tape.grad(vq).unwrap().to_vec().unwrap();
        assert_close(&dq, &num_dq, 2e-5, 1e-3, &format!("{what}: dq"));
        assert_close(
            &tape.grad(vv).unwrap().to_vec().unwrap(),
            &num_dv,
            2e-5,
            1e-3,
            &format!("{what}: dv"),
        );
        // the key role matters: the query-role gradient alone is measurably different
        let (dq_only, _, _) = attention_backward_ref(&q64, &q64, &v64, &w64, d, AttentionKind::L2);
        let gap = dq_only
            .iter()
            .zip(&num_dq)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            gap > 1e-2,
            "{what}: key-role gradient is negligible ({gap})"
        );

        // and the tied op agrees with the unfused composition using q twice
        let tape = Tape::new(&gpu());
        let (uq, uv) = (
            tape.leaf(upload(&q, &s), true),
            tape.leaf(upload(&v, &s), true),
        );
        let uout = attention_unfused(&tape, uq, uq, uv, AttentionKind::L2).unwrap();
        tape.backward_with(uout, upload(&w, &s)).unwrap();
        let udq = tape.grad(uq).unwrap().to_vec().unwrap();
        assert_close(
            &dq,
            &to_f64(&udq),
            5e-5,
            1e-3,
            &format!("{what}: dq vs unfused"),
        );
    }
}

/// `X·W` for X [n, a] and W [a, b].
fn project(x: &[f64], w: &[f64], n: usize, a: usize, b: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * b];
    for i in 0..n {
        for j in 0..b {
            y[i * b + j] = (0..a).map(|t| x[i * a + t] * w[t * b + j]).sum();
        }
    }
    y
}

fn norm(x: &[f64]) -> f64 {
    x.iter().map(|a| a * a).sum::<f64>().sqrt()
}

/// Kim et al. (2021): dot-product self-attention is not Lipschitz, tied L2 self-attention is. Tokens
/// X [L, D] (one of them at the origin, their construction), q = X·Wq, k = X·Wk (dot) or k = q (L2),
/// v = X·Wv. The local Lipschitz ratio ‖f(cX + δ) − f(cX)‖ / ‖δ‖, maximised over random small δ, grows
/// like c² for dot-product attention as the inputs are scaled by c ∈ {1, 4, 16}, and stays bounded for
/// L2. Checked with the f64 reference and with the GPU kernels (f32, larger δ).
#[test]
fn l2_attention_is_lipschitz_and_dot_product_is_not() {
    let (l, dm, dh) = (8, 8, 8);
    let d = Dims::new(1, l, dh);
    let mut r = rng(600);
    let wscale = 1.0 / (dm as f32).sqrt();
    let w = |r: &mut _| to_f64(&random(r, dm * dh, -wscale * 1.7, wscale * 1.7));
    let (wq, wk, wv) = (w(&mut r), w(&mut r), w(&mut r));
    let mut x0 = to_f64(&random(&mut r, l * dm, -1.0, 1.0));
    x0[..dm].fill(0.0); // token 0 at the origin
    let deltas: Vec<Vec<f64>> = (0..8)
        .map(|_| to_f64(&random(&mut r, l * dm, -1.0, 1.0)))
        .collect();

    // f64 reference and GPU versions of f(X)
    let qkv = |x: &[f64], kind: AttentionKind| {
        let q = project(x, &wq, l, dm, dh);
        let k = match kind {
            AttentionKind::Dot => project(x, &wk, l, dm, dh),
            AttentionKind::L2 => q.clone(),
        };
        (q, k, project(x, &wv, l, dm, dh))
    };
    let f_ref = |x: &[f64], kind| {
        let (q, k, v) = qkv(x, kind);
        attention_ref(&q, &k, &v, d, kind).0
    };
    let s = [1, 1, l, dh];
    let f_gpu = |x: &[f64], kind| {
        let (q, k, v) = qkv(x, kind);
        let up = |t: &[f64]| upload(&t.iter().map(|&a| a as f32).collect::<Vec<_>>(), &s);
        let (out, _) = attention_forward(&up(&q), &up(&k), &up(&v), kind).unwrap();
        to_f64(&out.to_vec().unwrap())
    };
    let ratio = |f: &dyn Fn(&[f64], AttentionKind) -> Vec<f64>, kind, c: f64, step: f64| {
        let x: Vec<f64> = x0.iter().map(|a| a * c).collect();
        let fx = f(&x, kind);
        deltas
            .iter()
            .map(|dir| {
                let dx: Vec<f64> = dir.iter().map(|a| a * step).collect();
                let xp: Vec<f64> = x.iter().zip(&dx).map(|(a, b)| a + b).collect();
                let diff: Vec<f64> = f(&xp, kind).iter().zip(&fx).map(|(a, b)| a - b).collect();
                norm(&diff) / norm(&dx)
            })
            .fold(0.0, f64::max)
    };

    for (name, f, step) in [
        (
            "reference",
            &f_ref as &dyn Fn(&[f64], AttentionKind) -> Vec<f64>,
            1e-7,
        ),
        ("GPU", &f_gpu, 1e-3),
    ] {
        let dot: Vec<f64> = [1.0, 4.0, 16.0]
            .iter()
            .map(|&c| ratio(f, AttentionKind::Dot, c, step))
            .collect();
        let l2: Vec<f64> = [1.0, 4.0, 16.0]
            .iter()
            .map(|&c| ratio(f, AttentionKind::L2, c, step))
            .collect();
        println!("{name}: dot ratios {dot:?}, L2 ratios {l2:?}");
        assert!(
            dot[2] > 20.0 * dot[0] && dot[1] > 2.0 * dot[0],
            "{name}: dot-product attention's ratio should grow with the input scale: {dot:?}"
        );
        assert!(
            l2.iter().all(|&x| x < 3.0),
            "{name}: L2 attention's ratio should stay bounded: {l2:?}"
        );
    }
}

#[test]
fn shape_errors_are_values() {
    let a = upload(&[0.0; 24], &[1, 2, 3, 4]);
    let b = upload(&[0.0; 24], &[1, 2, 4, 3]);
    let flat = upload(&[0.0; 24], &[2, 3, 4]);
    assert!(attention_forward(&a, &b, &a, AttentionKind::Dot).is_err());
    assert!(attention_forward(&a, &a, &b, AttentionKind::L2).is_err());
    assert!(attention_forward(&flat, &flat, &flat, AttentionKind::Dot).is_err());
    let wide = upload(&vec![0.0; 129], &[1, 1, 1, 129]);
    assert!(attention_forward(&wide, &wide, &wide, AttentionKind::Dot).is_err());
    let (out, lse) = attention_forward(&a, &a, &a, AttentionKind::Dot).unwrap();
    let bad_lse = upload(&[0.0; 6], &[1, 6]);
    assert!(attention_backward(&a, &a, &a, &out, &bad_lse, &a, AttentionKind::Dot).is_err());
    assert!(attention_backward(&a, &a, &a, &out, &lse, &b, AttentionKind::Dot).is_err());
    assert!(attention_backward(&a, &a, &a, &out, &lse, &a, AttentionKind::Dot).is_ok());
}

/// CPU seconds used by this process so far, all threads (lavapipe runs the kernels on our threads, so
/// this is the kernels' cost independent of other load on the machine).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after_name.split_whitespace().collect();
    // fields 14 and 15 of stat (utime, stime) are 12 and 13 after the name, in clock ticks
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Rough comparison of fused and unfused attention, wall clock and process CPU time (not a
/// benchmark; run with `cargo test --release --test attention -- --ignored --nocapture`). Sizes from
/// `ATTN_TIMING=B,H,L,Dh`; by default B=128, L=65 and B=32, L=256 (at B=128, L=256 the unfused scores
/// [128, 6, 256, 256] exceed lavapipe's 128 MiB binding limit).
#[test]
#[ignore]
fn timing_fused_vs_unfused() {
    let g = gpu();
    println!("adapter: {}", g.describe());
    let sizes: Vec<[usize; 4]> = match std::env::var("ATTN_TIMING") {
        Ok(s) => {
            let v: Vec<usize> = s.split(',').map(|x| x.trim().parse().unwrap()).collect();
            vec![[v[0], v[1], v[2], v[3]]]
        }
        Err(_) => vec![[128, 6, 65, 64], [32, 6, 256, 64]],
    };
    let kinds: Vec<AttentionKind> = match std::env::var("ATTN_TIMING_KIND").as_deref() {
        Ok("dot") => vec![AttentionKind::Dot],
        Ok("l2") => vec![AttentionKind::L2],
        _ => KINDS.to_vec(),
    };
    let unfused_too = std::env::var("ATTN_TIMING_FUSED_ONLY").is_err();
    for [b, h, l, dh] in sizes {
        let d = Dims::new(b * h, l, dh);
        let s = shape(b, h, d);
        let (q, k, v) = inputs(d, 7);
        let (gq, gk, gv, gw) = (
            upload(&q, &s),
            upload(&k, &s),
            upload(&v, &s),
            upload(&v, &s),
        );
        for &kind in &kinds {
            let time = |fused: bool, backward: bool| {
                if !fused && !unfused_too {
                    return (f64::NAN, f64::NAN);
                }
                let run = || {
                    let tape = Tape::new(&g);
                    let (vq, vk, vv) = (
                        tape.leaf(gq.clone(), true),
                        tape.leaf(gk.clone(), true),
                        tape.leaf(gv.clone(), true),
                    );
                    let out = if fused {
                        tape.attention_fused(vq, vk, vv, kind).unwrap()
                    } else {
                        attention_unfused(&tape, vq, vk, vv, kind).unwrap()
                    };
                    if backward {
                        tape.backward_with(out, gw.clone()).unwrap();
                    }
                    g.sync().unwrap();
                };
                run(); // warm-up: pipeline compilation
                let reps = 3;
                let (t0, c0) = (std::time::Instant::now(), process_cpu_seconds());
                for _ in 0..reps {
                    run();
                }
                let cpu = (process_cpu_seconds() - c0) * 1e3 / reps as f64;
                (t0.elapsed().as_secs_f64() * 1e3 / reps as f64, cpu)
            };
            for backward in [false, true] {
                let (fw, fc) = time(true, backward);
                let (uw, uc) = time(false, backward);
                println!(
                    "{kind:?} B{b} H{h} L{l} Dh{dh} {}: fused {fw:.0} ms wall / {fc:.0} ms CPU, \
                     unfused {uw:.0} ms wall / {uc:.0} ms CPU (fused {:.2}x faster by CPU time)",
                    if backward {
                        "forward+backward"
                    } else {
                        "forward"
                    },
                    uc / fc
                );
            }
        }
    }
}

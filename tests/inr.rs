//! The fused INR patch decoder (`shaders/inr.wgsl`) against the f64 reference in tests/common/inr.rs,
//! finite differences, and the same math composed from primitive tape ops.

mod common;
use common::inr::{Dims, Inputs, NAMES};
use common::*;
use vitgan::autodiff::inr::inr_decode_unfused;
use vitgan::ops::inr::{
    InrGrads, InrWeights, MAX_CHANNELS, inr_backward, inr_backward_in_groups, inr_forward,
};
use vitgan::{Tape, Tensor, Var};

/// The seven inputs on the GPU, in the order (E, s1, s2, W1, b1, W2, b2).
fn upload_inputs(d: Dims, x: &Inputs) -> Vec<Tensor> {
    d.input_shapes()
        .iter()
        .enumerate()
        .map(|(k, shape)| upload(&x.field_f32(k), shape))
        .collect()
}

fn weights(t: &[Tensor], demodulate_output: bool) -> InrWeights<'_> {
    InrWeights {
        w1: &t[3],
        b1: &t[4],
        w2: &t[5],
        b2: &t[6],
        demodulate_output,
    }
}

/// Every input's gradient `got` (in the order of [`NAMES`]) against `want`.
#[track_caller]
fn assert_grads_close(got: &[Vec<f32>], want: &Inputs, rel: f64, what: &str) {
    for (k, g) in got.iter().enumerate() {
        assert_scaled_close(g, want.fields()[k], rel, &format!("d{} {what}", NAMES[k]));
    }
}

fn grads_in_order(g: &InrGrads) -> [&Tensor; 7] {
    [&g.de, &g.ds1, &g.ds2, &g.dw1, &g.db1, &g.dw2, &g.db2]
}

/// `got ≈ want` within `rel` of the larger of 1 and the largest reference magnitude (gradients summed
/// over many patches grow with N·T; this keeps the bound meaningful for every entry).
#[track_caller]
fn assert_scaled_close(got: &[f32], want: &[f64], rel: f64, what: &str) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_close(got, want, rel * scale, rel, what);
}

fn random_dout(d: Dims, seed: u64) -> Vec<f64> {
    let mut r = rng(seed);
    to_f64(&random(&mut r, d.n * d.t * d.c, -1.0, 1.0))
}

fn check_forward(d: Dims, seed: u64) {
    let x = Inputs::random(d, seed);
    let t = upload_inputs(d, &x);
    let out = inr_forward(&t[0], &t[1], &t[2], &weights(&t, x.demodulate_output)).unwrap();
    assert_eq!(out.shape(), d.output_shape().as_slice());
    let want = common::inr::forward(d, &x);
    assert_close(
        &out.to_vec().unwrap(),
        &want,
        2e-5 * ((d.f + d.hd) as f64).sqrt(),
        1e-4,
        &format!("inr forward {d:?}"),
    );
}

#[test]
fn forward_matches_reference_on_odd_shapes() {
    let mut seed = 100;
    for n in [1, 5, 37] {
        for t in [1, 9, 16] {
            for f in [3, 17, 64] {
                for hd in [3, 17, 64] {
                    for c in [1, 3] {
                        seed += 1;
                        check_forward(Dims::new(n, t, f, hd, c), seed);
                    }
                }
            }
        }
    }
}

#[test]
fn forward_matches_reference_across_chunks() {
    // more than one 64-wide feature chunk and hidden chunk, pixel blocks of 16 with a partial last one,
    // and the channel limit
    check_forward(Dims::new(7, 25, 130, 70, 3), 1);
    check_forward(Dims::new(3, 64, 65, 129, 4), 2);
    check_forward(Dims::new(4, 33, 20, 11, MAX_CHANNELS), 3);
}

#[test]
fn reference_backward_matches_finite_differences() {
    for (d, seed) in [(Dims::new(2, 5, 4, 3, 2), 7), (Dims::new(3, 1, 6, 5, 1), 8)] {
        let x = Inputs::random(d, seed);
        let dout = random_dout(d, seed + 1);
        let analytic = common::inr::backward(d, &x, &dout);
        let numeric = common::inr::numeric_backward(d, &x, &dout, 1e-6);
        for (k, name) in NAMES.iter().enumerate() {
            let got: Vec<f32> = analytic.fields()[k].iter().map(|&v| v as f32).collect();
            assert_scaled_close(
                &got,
                numeric.fields()[k],
                1e-6,
                &format!("reference d{name} {d:?}"),
            );
        }
    }
}

fn gpu_backward(d: Dims, x: &Inputs, dout: &[f64], max_groups: Option<usize>) -> Vec<Vec<f32>> {
    let t = upload_inputs(d, x);
    let dout32: Vec<f32> = dout.iter().map(|&v| v as f32).collect();
    let g = upload(&dout32, &d.output_shape());
    let grads = match max_groups {
        Some(m) => inr_backward_in_groups(
            &t[0],
            &t[1],
            &t[2],
            &weights(&t, x.demodulate_output),
            &g,
            m,
        ),
        None => inr_backward(&t[0], &t[1], &t[2], &weights(&t, x.demodulate_output), &g),
    }
    .unwrap();
    grads_in_order(&grads)
        .iter()
        .zip(d.input_shapes())
        .map(|(t, shape)| {
            assert_eq!(t.shape(), shape.as_slice());
            t.to_vec().unwrap()
        })
        .collect()
}

#[test]
fn backward_matches_finite_differences() {
    for (d, seed) in [
        (Dims::new(3, 9, 5, 7, 3), 11),
        (Dims::new(2, 1, 3, 3, 1), 12),
        (Dims::new(4, 17, 4, 5, 2), 13),
    ] {
        let x = Inputs::random(d, seed);
        let dout = random_dout(d, seed + 1);
        let numeric = common::inr::numeric_backward(d, &x, &dout, 1e-5);
        for groups in [None, Some(2)] {
            let got = gpu_backward(d, &x, &dout, groups);
            assert_grads_close(&got, &numeric, 2e-4, &format!("{d:?} groups {groups:?}"));
        }
    }
}

#[test]
fn backward_matches_reference_on_odd_shapes() {
    let mut seed = 300;
    let mut cases = Vec::new();
    for (n, t) in [(1, 16), (5, 9), (37, 1), (37, 16)] {
        for (f, hd) in [(3, 17), (17, 64), (64, 3), (17, 17)] {
            for c in [1, 3] {
                cases.push((Dims::new(n, t, f, hd, c), None));
            }
        }
    }
    // several hidden/feature chunks and pixel blocks; runs of patches per workgroup of 1, 2, 13 and 37
    cases.push((Dims::new(7, 25, 130, 70, 3), None));
    cases.push((Dims::new(7, 25, 130, 70, 3), Some(4)));
    cases.push((Dims::new(3, 64, 65, 129, 4), Some(1)));
    cases.push((Dims::new(37, 9, 17, 64, 3), Some(3)));
    cases.push((Dims::new(37, 9, 17, 64, MAX_CHANNELS), Some(1)));
    for (d, groups) in cases {
        seed += 1;
        let x = Inputs::random(d, seed);
        let dout = random_dout(d, seed + 1000);
        let want = common::inr::backward(d, &x, &dout);
        let got = gpu_backward(d, &x, &dout, groups);
        for k in 0..7 {
            assert_scaled_close(
                &got[k],
                want.fields()[k],
                1e-4,
                &format!("d{} {d:?} groups {groups:?}", NAMES[k]),
            );
        }
    }
}

/// Run the decoder (fused or unfused) on a tape and backpropagate `dout`; returns the output and the
/// gradients of the seven inputs.
fn tape_run(d: Dims, x: &Inputs, dout: &[f32], fused: bool) -> (Vec<f32>, Vec<Vec<f32>>) {
    let tape = Tape::new(&gpu());
    let v: Vec<Var> = upload_inputs(d, x)
        .into_iter()
        .map(|t| tape.leaf(t, true))
        .collect();
    let out = if fused {
        tape.inr_decode(
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5],
            v[6],
            x.demodulate_output,
        )
    } else {
        inr_decode_unfused(
            &tape,
            v[0],
            v[1],
            v[2],
            v[3],
            v[4],
            v[5],
            v[6],
            x.demodulate_output,
        )
    }
    .unwrap();
    tape.backward_with(out, upload(dout, &d.output_shape()))
        .unwrap();
    let y = tape.value(out).to_vec().unwrap();
    let grads = v
        .iter()
        .map(|&var| tape.grad(var).unwrap().to_vec().unwrap())
        .collect();
    (y, grads)
}

#[test]
fn fused_matches_unfused_on_the_tape() {
    for (d, seed) in [
        (Dims::new(37, 16, 64, 64, 3), 21),
        (Dims::new(5, 9, 17, 3, 1), 22),
        (Dims::new(6, 25, 70, 67, 3), 23),
    ] {
        let x = Inputs::random(d, seed);
        let mut r = rng(seed + 1);
        let dout = random(&mut r, d.n * d.t * d.c, -1.0, 1.0);
        let (y_fused, g_fused) = tape_run(d, &x, &dout, true);
        let (y_unfused, g_unfused) = tape_run(d, &x, &dout, false);
        assert_close(
            &y_fused,
            &to_f64(&y_unfused),
            1e-4,
            1e-4,
            &format!("output {d:?}"),
        );
        for k in 0..7 {
            assert_scaled_close(
                &g_fused[k],
                &to_f64(&g_unfused[k]),
                2e-4,
                &format!("tape d{} {d:?}", NAMES[k]),
            );
        }
    }
}

#[test]
fn shape_errors_are_values() {
    let d = Dims::new(2, 4, 5, 6, 3);
    let x = Inputs::random(d, 1);
    let t = upload_inputs(d, &x);
    let w = weights(&t, true);
    let err = |r: vitgan::Result<Tensor>| match r {
        Err(vitgan::Error::Shape { op, .. }) => op,
        Err(e) => panic!("expected a shape error, got {e}"),
        Ok(_) => panic!("expected a shape error, got a result"),
    };
    // s1 with the wrong feature count
    let bad_s1 = upload(&[0.0; 2 * 4], &[2, 4]);
    assert_eq!(err(inr_forward(&t[0], &bad_s1, &t[2], &w)), "inr_forward");
    // s2 with another patch count
    let bad_s2 = upload(&[0.0; 3 * 6], &[3, 6]);
    assert_eq!(err(inr_forward(&t[0], &t[1], &bad_s2, &w)), "inr_forward");
    // b1 of the wrong rank
    let b1_2d = t[4].reshape(&[1, 6]).unwrap();
    let w_bad = InrWeights { b1: &b1_2d, ..w };
    assert_eq!(err(inr_forward(&t[0], &t[1], &t[2], &w_bad)), "inr_forward");
    // too many channels
    let c = MAX_CHANNELS + 1;
    let w2_big = upload(&vec![0.0; c * 6], &[c, 6]);
    let b2_big = upload(&vec![0.0; c], &[c]);
    let w_big = InrWeights {
        w2: &w2_big,
        b2: &b2_big,
        ..w
    };
    assert_eq!(err(inr_forward(&t[0], &t[1], &t[2], &w_big)), "inr_forward");
    // dout of the wrong shape
    let bad_dout = upload(&[0.0; 2 * 4 * 2], &[2, 4, 2]);
    match inr_backward(&t[0], &t[1], &t[2], &w, &bad_dout) {
        Err(vitgan::Error::Shape { op, .. }) => assert_eq!(op, "inr_backward"),
        _ => panic!("expected a shape error for dout"),
    }
}

/// Process CPU time in seconds (user + system, from /proc; 0 where unavailable). On a CPU adapter the
/// kernels run on this process's threads, so this is the cost of a phase even on a busy machine.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the parenthesised command name; utime and stime are fields 14 and 15 (clock ticks)
    let rest = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<f64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    fields
        .get(11)
        .zip(fields.get(12))
        .map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// Runs `f`, waits for the GPU, and returns "wall ms / CPU ms".
fn timed(f: impl FnOnce()) -> String {
    gpu().sync().unwrap();
    let (t0, c0) = (std::time::Instant::now(), process_cpu_seconds());
    f();
    gpu().sync().unwrap();
    let wall = t0.elapsed().as_secs_f64() * 1e3;
    let cpu = (process_cpu_seconds() - c0) * 1e3;
    format!("{wall:.0} ms wall / {cpu:.0} ms CPU")
}

/// Fused vs unfused forward and backward at the ViTGAN-CIFAR decoder size (N = 128·64 patches of 4×4
/// pixels, F = Hd = 128, C = 3), next to a plain matmul with the FLOPs of one layer. Prints times; no
/// asserts. Run with `--ignored --nocapture`; `INR_N` changes N, `INR_ONLY=fused|unfused` runs one path.
#[test]
#[ignore]
fn wall_time_fused_vs_unfused() {
    let n = std::env::var("INR_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8192);
    let d = Dims::new(n, 16, 128, 128, 3);
    let only = std::env::var("INR_ONLY").ok();
    let x = Inputs::random(d, 5);
    let mut r = rng(6);
    let dout = random(&mut r, d.n * d.t * d.c, -1.0, 1.0);
    let g = gpu();
    println!("adapter: {}", g.describe());
    if only.is_none() {
        let a = Tensor::zeros(&g, &[d.n * d.t, d.f]).unwrap();
        let b = Tensor::zeros(&g, &[d.hd, d.f]).unwrap();
        for _ in 0..2 {
            let t = timed(|| {
                vitgan::ops::matmul::matmul_t(&a, &b, false, true).unwrap();
            });
            println!(
                "matmul [N·T, F]·[Hd, F]ᵀ ({:.1} GFLOP): {t}",
                2e-9 * (d.n * d.t * d.f * d.hd) as f64
            );
        }
    }
    for fused in [true, false, true, false] {
        let name = if fused { "fused" } else { "unfused" };
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let tape = Tape::new(&g);
        let v: Vec<Var> = upload_inputs(d, &x)
            .into_iter()
            .map(|t| tape.leaf(t, true))
            .collect();
        let seed = upload(&dout, &d.output_shape());
        let mut out = None;
        let forward = timed(|| {
            out = Some(
                if fused {
                    tape.inr_decode(v[0], v[1], v[2], v[3], v[4], v[5], v[6], true)
                } else {
                    inr_decode_unfused(&tape, v[0], v[1], v[2], v[3], v[4], v[5], v[6], true)
                }
                .unwrap(),
            );
        });
        let backward = timed(|| tape.backward_with(out.unwrap(), seed).unwrap());
        println!("{name:>7} {d:?}: forward {forward}, backward {backward}");
    }
}

/// One workgroup over 100 patches of 64 pixels (celeba64-like): ~2,200 loop iterations per patch,
/// far past lavapipe's 65,535 per invocation without the split of each group's run over dispatches.
#[test]
fn backward_past_the_loop_cap() {
    let d = Dims::new(100, 64, 64, 128, 3);
    let x = Inputs::random(d, 77);
    let dout = random_dout(d, 78);
    let want = common::inr::backward(d, &x, &dout);
    let got = gpu_backward(d, &x, &dout, Some(1));
    assert_grads_close(&got, &want, 1e-4, &format!("{d:?} in one group"));
}

/// The output layer modulated but not demodulated (StyleGAN2's toRGB): forward and backward of the
/// fused kernel against the reference, the reference against finite differences, and the fused
/// tape op against the composed one.
#[test]
fn output_layer_modulated_only() {
    for (d, seed) in [
        (Dims::new(7, 16, 32, 32, 3), 41),
        (Dims::new(5, 9, 17, 70, 1), 42),
    ] {
        let mut x = Inputs::random(d, seed);
        x.demodulate_output = false;
        let t = upload_inputs(d, &x);
        let out = inr_forward(&t[0], &t[1], &t[2], &weights(&t, false))
            .unwrap()
            .to_vec()
            .unwrap();
        let want = common::inr::forward(d, &x);
        assert_scaled_close(&out, &want, 1e-4, &format!("forward {d:?}"));
        // it is a different function from the demodulated one
        let mut demod = x.clone();
        demod.demodulate_output = true;
        let other = common::inr::forward(d, &demod);
        assert!(want.iter().zip(&other).any(|(a, b)| (a - b).abs() > 1e-2));

        let dout = random_dout(d, seed + 7);
        let reference = common::inr::backward(d, &x, &dout);
        let numeric = common::inr::numeric_backward(d, &x, &dout, 1e-6);
        for (name, (r, nu)) in NAMES
            .iter()
            .zip(reference.fields().into_iter().zip(numeric.fields()))
        {
            let scale = nu.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (a, b) in r.iter().zip(nu) {
                assert!(
                    (a - b).abs() < 1e-6 * scale,
                    "d{name} reference vs FD {a} {b}"
                );
            }
        }
        assert_grads_close(
            &gpu_backward(d, &x, &dout, None),
            &reference,
            2e-4,
            &format!("backward {d:?}"),
        );
        let dout32: Vec<f32> = dout.iter().map(|v| *v as f32).collect();
        let (y_fused, g_fused) = tape_run(d, &x, &dout32, true);
        let (y_unfused, g_unfused) = tape_run(d, &x, &dout32, false);
        assert_close(&y_fused, &to_f64(&y_unfused), 1e-4, 1e-4, "tape output");
        for k in 0..7 {
            assert_scaled_close(
                &g_fused[k],
                &to_f64(&g_unfused[k]),
                2e-4,
                &format!("tape d{}", NAMES[k]),
            );
        }
    }
}

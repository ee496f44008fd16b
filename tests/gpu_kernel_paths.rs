//! The kernels meant for real GPUs (shared-memory tiled matmul, tiled attention) checked on whatever
//! adapter runs the suite: on lavapipe the defaults are the CPU kernels, so these paths are forced here.
//! Also the CPU kernels of matmul and attention with both operand sources, storage buffers and
//! textures (on CPU adapters operands are read from textures by default; on GPUs these kernels run only
//! when forced), and the LayerNorm row kernels with γ, β from buffers and from textures.
//! This file is its own test binary (process), so setting the environment does not leak into others.
mod common;
use common::*;
use vitgan::ops::attention::{AttentionKernel, AttentionKind, attention_forward};
use vitgan::ops::layer_norm::{layer_norm_backward, layer_norm_forward};
use vitgan::ops::matmul::{MatmulOptions, matmul_fused};

/// The tests below set environment variables that kernel launches read: one at a time.
static ENV_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn tiled_matmul_and_attention_match_references() {
    // SAFETY: the tests of this binary take ENV_LOCK, so no other test changes the environment meanwhile.
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    unsafe {
        std::env::set_var("VITGAN_MATMUL_KERNEL", "tiled");
        std::env::set_var("VITGAN_ATTENTION_KERNEL", "tiled");
    }
    let transposes = [(false, false), (true, false), (false, true), (true, true)];
    check_matmuls(
        "tiled",
        &[(1, 1, 1), (65, 31, 129), (127, 64, 67)],
        &transposes,
        0,
    );
    // attention: compare the tiled kernel against a direct f64 softmax(scores)·V
    check_attention("tiled");
}

/// `matmul_fused` (whatever kernel the environment selects) vs the f64 reference on each shape
/// (M, K, N) and each (transpose A, transpose B).
fn check_matmuls(
    label: &str,
    shapes: &[(usize, usize, usize)],
    transposes: &[(bool, bool)],
    seed: u64,
) {
    let mut seed = seed;
    for &(m, k, n) in shapes {
        for &(ta, tb) in transposes {
            seed += 1;
            let mut r = rng(seed);
            let a = random(&mut r, m * k, -1.0, 1.0);
            let b = random(&mut r, k * n, -1.0, 1.0);
            let ash = if ta { [k, m] } else { [m, k] };
            let bsh = if tb { [n, k] } else { [k, n] };
            let opts = MatmulOptions {
                trans_a: ta,
                trans_b: tb,
                ..Default::default()
            };
            let (c, _) = matmul_fused(&upload(&a, &ash), &upload(&b, &bsh), opts).unwrap();
            let want = matmul_ref(&to_f64(&a), &to_f64(&b), 1, 1, m, k, n, ta, tb);
            assert_close(
                &c.to_vec().unwrap(),
                &want,
                1e-4,
                1e-4,
                &format!("{label} matmul {m}x{k}x{n} {ta} {tb}"),
            );
        }
    }
}

/// `attention_forward` (whatever kernel the environment selects) vs a direct f64 softmax(scores)·V,
/// tied k = q, at L = 65, Dh = 64.
fn check_attention(label: &str) {
    let (bh, l, dh) = (3usize, 65usize, 64usize);
    let mut r = rng(99);
    let q = random(&mut r, bh * l * dh, -1.0, 1.0);
    let v = random(&mut r, bh * l * dh, -1.0, 1.0);
    let shape = [1, bh, l, dh];
    let (qt, vt) = (upload(&q, &shape), upload(&v, &shape));
    for kind in [AttentionKind::Dot, AttentionKind::L2] {
        let (out, _) = attention_forward(&qt, &qt, &vt, kind).unwrap();
        let mut want = vec![0.0f64; bh * l * dh];
        let c = 1.0 / (dh as f64).sqrt();
        for h in 0..bh {
            let base = h * l * dh;
            for i in 0..l {
                let scores: Vec<f64> = (0..l)
                    .map(|j| {
                        let (qi, kj) = (
                            &q[base + i * dh..base + (i + 1) * dh],
                            &q[base + j * dh..base + (j + 1) * dh],
                        );
                        match kind {
                            AttentionKind::Dot => {
                                c * qi
                                    .iter()
                                    .zip(kj)
                                    .map(|(a, b)| *a as f64 * *b as f64)
                                    .sum::<f64>()
                            }
                            AttentionKind::L2 => {
                                -c * qi
                                    .iter()
                                    .zip(kj)
                                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                                    .sum::<f64>()
                            }
                        }
                    })
                    .collect();
                let p = softmax_ref(&scores, l);
                for d in 0..dh {
                    want[base + i * dh + d] =
                        (0..l).map(|j| p[j] * v[base + j * dh + d] as f64).sum();
                }
            }
        }
        assert_close(
            &out.to_vec().unwrap(),
            &want,
            1e-5,
            1e-4,
            &format!("{label} {kind:?} attention"),
        );
    }
}

#[test]
fn subgroup_attention_on_buffer_and_texture_operands_matches_reference() {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let gpu = upload(&[0.0], &[1]).gpu().clone();
    if !AttentionKernel::Subgroup.supports(&gpu, 64) {
        eprintln!("skipped: the subgroup attention kernels need subgroups of >= 8 lanes");
        return;
    }
    for operands in ["buffers", "textures"] {
        // SAFETY: ENV_LOCK keeps the other tests of this binary from touching the environment.
        unsafe {
            std::env::set_var("VITGAN_ATTENTION_KERNEL", "subgroup");
            std::env::set_var("VITGAN_ATTENTION_OPERANDS", operands);
        }
        check_attention(&format!("subgroup ({operands})"));
    }
    unsafe {
        std::env::remove_var("VITGAN_ATTENTION_KERNEL");
        std::env::remove_var("VITGAN_ATTENTION_OPERANDS");
    }
}

#[test]
fn cpu_matmul_kernels_on_buffer_and_texture_operands_match_references() {
    // SAFETY: the tests of this binary hold ENV_LOCK while they set and read these variables (read
    // per launch), so no other test changes them meanwhile.
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for (i, (kernel, operands)) in [
        ("registers", "buffers"),
        ("subgroup", "buffers"),
        ("registers", "textures"),
        ("subgroup", "textures"),
    ]
    .into_iter()
    .enumerate()
    {
        unsafe {
            std::env::set_var("VITGAN_MATMUL_KERNEL", kernel);
            std::env::set_var("VITGAN_MATMUL_OPERANDS", operands);
        }
        check_matmuls(
            &format!("{kernel} on {operands}"),
            &[(68, 36, 132), (8, 4, 4)],
            &[(false, false), (true, true)],
            500 + 10 * i as u64,
        );
    }
    unsafe {
        std::env::remove_var("VITGAN_MATMUL_OPERANDS");
        std::env::remove_var("VITGAN_MATMUL_KERNEL");
    }
}

#[test]
fn layer_norm_row_kernels_on_buffer_and_texture_operands_agree_with_reference() {
    // SAFETY: ENV_LOCK keeps the other tests of this binary from touching the environment.
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = rng(900);
    // LayerNorm ([D] affine) and SLN ([B, D] affine); ≥ 64 rows of a width divisible by 4 take the
    // vec4 row kernels on CPU adapters (on GPUs the workgroup kernels run both times: the operand
    // source only applies to the row kernels)
    for (x_shape, affine_shape) in [
        (vec![70usize, 12], vec![12usize]),
        (vec![2, 40, 8], vec![2, 8]),
    ] {
        let d = *x_shape.last().unwrap();
        let n: usize = x_shape.iter().product();
        let na: usize = affine_shape.iter().product();
        let (x, g, b, dy) = (
            random(&mut r, n, -2.0, 2.0),
            random(&mut r, na, 0.5, 1.5),
            random(&mut r, na, -0.5, 0.5),
            random(&mut r, n, -1.0, 1.0),
        );
        let want = common::layer_norm::layer_norm_ref(
            &to_f64(&x),
            &to_f64(&g),
            &to_f64(&b),
            d,
            n / d / (na / d),
            1e-5,
        );
        let mut grads = Vec::new();
        for operands in ["buffers", "textures"] {
            unsafe { std::env::set_var("VITGAN_LAYER_NORM_OPERANDS", operands) };
            let (xt, gt, bt) = (
                upload(&x, &x_shape),
                upload(&g, &affine_shape),
                upload(&b, &affine_shape),
            );
            let (y, mean, rstd) = layer_norm_forward(&xt, &gt, &bt, 1e-5).unwrap();
            let label = format!("x {x_shape:?}, affine {affine_shape:?}, {operands}");
            assert_close(
                &y.to_vec().unwrap(),
                &want.y,
                2e-5,
                1e-4,
                &format!("y, {label}"),
            );
            let (dx, _, _) =
                layer_norm_backward(&xt, &gt, &mean, &rstd, &upload(&dy, &x_shape)).unwrap();
            grads.push(dx.to_vec().unwrap());
        }
        // the same arithmetic reading γ from either source
        assert_close(
            &grads[0],
            &to_f64(&grads[1]),
            1e-6,
            1e-6,
            &format!("dx on buffers vs textures, x {x_shape:?}"),
        );
    }
    unsafe { std::env::remove_var("VITGAN_LAYER_NORM_OPERANDS") };
}

#[test]
fn generator_runs_the_same_with_the_fused_and_the_composed_inr_decoder() {
    use vitgan::model::{Generator, ModelConfig};
    use vitgan::nn::{Init, InrPath};
    use vitgan::{ParamStore, Tape, Tensor};
    // SAFETY: ENV_LOCK keeps the other tests of this binary from touching the environment.
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let g = gpu();
    let cfg = ModelConfig::tiny();
    let mut params = ParamStore::new();
    let generator = Generator::new(&g, &mut params, &mut Init::new(7), &cfg).unwrap();
    let z = Tensor::from_slice(
        &g,
        &random(&mut rng(8), 3 * cfg.latent_dim, -1.0, 1.0),
        &[3, cfg.latent_dim],
    )
    .unwrap();
    let mut runs = Vec::new();
    for path in ["fused", "composed"] {
        unsafe { std::env::set_var("VITGAN_INR", path) };
        assert_eq!(
            InrPath::for_problem(&g, 1 << 20),
            if path == "fused" {
                InrPath::Fused
            } else {
                InrPath::Composed
            }
        );
        let tape = Tape::new(&g);
        let img = generator.forward(&tape, tape.constant(z.clone())).unwrap();
        let pixels = tape.value(img).to_vec().unwrap();
        let loss = tape.sum(img).unwrap();
        tape.backward(loss).unwrap();
        let grads = tape.param_grads().unwrap();
        let grad = |name: &str| {
            let (_, t) = grads.iter().find(|(n, _)| n == name).unwrap();
            t.to_vec().unwrap()
        };
        runs.push((
            pixels,
            grad("generator.decoder.w1"),
            grad("generator.decoder.style1.weight"),
        ));
    }
    unsafe { std::env::remove_var("VITGAN_INR") };
    let (fused, composed) = (&runs[0], &runs[1]);
    assert_close(&composed.0, &to_f64(&fused.0), 1e-4, 1e-3, "images");
    assert_close(&composed.1, &to_f64(&fused.1), 1e-3, 1e-3, "dL/dw1");
    assert_close(&composed.2, &to_f64(&fused.2), 1e-3, 1e-3, "dL/dstyle1");
    // a composed intermediate over the adapter's binding limit always takes the fused kernel
    let too_big = g.limits().max_storage_buffer_binding_size as usize + 4;
    unsafe { std::env::set_var("VITGAN_INR", "composed") };
    assert_eq!(InrPath::for_problem(&g, too_big), InrPath::Fused);
    unsafe { std::env::remove_var("VITGAN_INR") };
}

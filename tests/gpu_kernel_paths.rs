//! The kernels meant for real GPUs (shared-memory tiled matmul, tiled attention) checked on whatever
//! adapter runs the suite: on lavapipe the defaults are the CPU kernels, so these paths are forced here.
//! Also the CPU kernels of matmul and attention with both operand sources, storage buffers and
//! textures (on CPU adapters operands are read from textures by default; on GPUs these kernels run only
//! when forced), the LayerNorm row and column kernels with γ, β, x, dy from buffers and from
//! textures, and the memory-bound CPU kernels (elementwise, sums, strided copies, Adam) with their
//! operands from buffers and from textures.
//!
//! Every forced path is checked twice: its results against the f64 references (forward and backward),
//! and the kernel that actually ran, read from the GPU's profile (`VITGAN_PROFILE=1` records every
//! dispatch as `shader::entry`), so a forced kernel that silently falls back to another cannot pass
//! for the one asked for. Where a kernel cannot run (subgroup kernels without subgroups or at another
//! head width) forcing it is an error.
//!
//! This file is its own test binary (process); within it, [`with_env`] is the only way a test touches
//! the environment.
mod common;
use common::attention::{Dims, attention_backward_ref, attention_ref};
use common::layer_norm::{layer_norm_backward_ref, layer_norm_ref};
use common::spectral_norm::power_iteration_ref;
use common::*;
use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::{Mutex, MutexGuard};
use vitgan::ops::attention::{
    AttentionKernel, AttentionKind, LANES_HEAD_DIM, SUBGROUP_HEAD_DIM, attention_backward,
    attention_forward,
};
use vitgan::ops::layer_norm::{layer_norm_backward, layer_norm_forward};
use vitgan::ops::matmul::{
    K_SLICES_MIN_K, MatmulKernel, MatmulOptions, TileConfig, k_slices, matmul_fused,
    supports_subgroup_kernel,
};
use vitgan::{Gpu, GpuOptions, Tensor};

// ---- environment ---------------------------------------------------------------------------------

/// Held while a test's environment is in place: kernel launches read these variables.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// The variables that choose kernels and paths (the crate's table of them). [`with_env`] removes
/// those it is not given, so each call runs under a fully stated choice whatever the surrounding
/// environment holds.
fn path_vars() -> impl Iterator<Item = &'static str> {
    vitgan::gpu::overrides::OVERRIDES
        .iter()
        .map(|(name, _)| *name)
}

/// Restores the saved variables when dropped (also while unwinding from a panic), then releases
/// [`ENV_LOCK`] (fields drop after `drop` has run).
struct EnvGuard {
    saved: Vec<(&'static str, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn set(&mut self, name: &'static str, value: Option<&str>) {
        self.saved.push((name, std::env::var_os(name)));
        // SAFETY: ENV_LOCK is held, and every test of this binary touches the environment only
        // through `with_env`, so nothing else reads or writes it meanwhile.
        unsafe {
            match value {
                Some(v) => std::env::set_var(name, v),
                None => std::env::remove_var(name),
            }
        }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        // in reverse, so a variable saved twice ends at its first saved (original) value
        for (name, value) in self.saved.drain(..).rev() {
            // SAFETY: ENV_LOCK is still held (see `set`).
            unsafe {
                match value {
                    Some(v) => std::env::set_var(name, v),
                    None => std::env::remove_var(name),
                }
            }
        }
    }
}

/// Run `f` with `vars` set and the other [`path_vars`] removed, holding [`ENV_LOCK`]; the previous
/// values come back afterwards, even if `f` panics. GPU work that launches kernels belongs inside
/// (launches read the variables); calls must not nest (the lock is not re-entrant).
fn with_env<T>(vars: &[(&'static str, &str)], f: impl FnOnce() -> T) -> T {
    let mut guard = EnvGuard {
        saved: Vec::new(),
        _lock: ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner()),
    };
    for name in path_vars() {
        if !vars.iter().any(|(n, _)| *n == name) {
            guard.set(name, None);
        }
    }
    for &(name, value) in vars {
        guard.set(name, Some(value));
    }
    f()
}

#[test]
fn with_env_restores_the_environment_even_on_panic() {
    // touched by this test only (other tests may reset path_vars() in between, which would hide a leak):
    // one with a value to get back, one unset to be removed again
    const SET: &str = "VITGAN_TEST_ENV_PROBE_SET";
    const UNSET: &str = "VITGAN_TEST_ENV_PROBE_UNSET";
    let snapshot = || -> Vec<Option<OsString>> {
        let _lock = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        path_vars()
            .chain([SET, UNSET])
            .map(std::env::var_os)
            .collect()
    };
    // SAFETY: inside with_env (ENV_LOCK held)
    with_env(&[], || unsafe { std::env::set_var(SET, "before") });
    let before = snapshot();
    assert_eq!(before[path_vars().count()..], [Some("before".into()), None]);
    let result = std::panic::catch_unwind(|| {
        with_env(
            &[
                (SET, "inside"),
                (UNSET, "inside"),
                ("VITGAN_MATMUL_KERNEL", "tiled"),
                (SET, "twice"),
            ],
            || {
                assert_eq!(std::env::var(SET).as_deref(), Ok("twice"));
                assert_eq!(std::env::var(UNSET).as_deref(), Ok("inside"));
                assert_eq!(
                    std::env::var("VITGAN_MATMUL_KERNEL").as_deref(),
                    Ok("tiled")
                );
                assert!(std::env::var_os("VITGAN_ATTENTION_KERNEL").is_none());
                panic!("on purpose");
            },
        )
    });
    assert!(result.is_err());
    assert_eq!(
        snapshot(),
        before,
        "the environment after a panicking with_env"
    );
    // SAFETY: inside with_env (ENV_LOCK held)
    with_env(&[], || unsafe { std::env::remove_var(SET) });
}

// ---- which kernels ran ---------------------------------------------------------------------------

/// A GPU (the default adapter, or `backend`) that records every dispatch (`VITGAN_PROFILE=1`).
fn profiled_gpu(backend: Option<&str>) -> vitgan::Result<Gpu> {
    with_env(&[("VITGAN_PROFILE", "1")], || {
        Gpu::new(GpuOptions {
            backend: backend.map(str::to_string),
            adapter: None,
        })
    })
}

/// Run `f` and return what it returned with the kernels (`shader::entry`) it dispatched on `g`, a
/// [`profiled_gpu`].
fn dispatched<T>(g: &Gpu, f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let count = || -> HashMap<String, u64> {
        g.profile_report()
            .into_iter()
            .map(|(k, n, _)| (k, n))
            .collect()
    };
    let before = count();
    let out = f();
    let mut ran: Vec<String> = count()
        .into_iter()
        .filter(|(k, n)| before.get(k) != Some(n))
        .map(|(k, _)| k)
        .collect();
    ran.sort();
    (out, ran)
}

fn upload_to(g: &Gpu, data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(g, data, shape).unwrap()
}

// ---- matmul --------------------------------------------------------------------------------------

/// Entry point of each matmul kernel in `shaders/matmul.wgsl`.
fn matmul_entry(kernel: MatmulKernel) -> &'static str {
    match kernel {
        MatmulKernel::Tiled => "matmul",
        MatmulKernel::Registers => "matmul_registers",
        MatmulKernel::Subgroup => "matmul_subgroup",
    }
}

/// The kernel `VITGAN_MATMUL_KERNEL=forced` must run on `g`, as documented on
/// `TileConfig::for_problem`: subgroup falls back to registers without subgroups of ≥ 8 lanes, and
/// adapters without room for the CPU kernels' 9 storage buffers run everything tiled.
fn forced_matmul_kernel(g: &Gpu, forced: &str) -> MatmulKernel {
    if g.limits().max_storage_buffers_per_shader_stage < 9 {
        return MatmulKernel::Tiled;
    }
    match forced {
        "tiled" => MatmulKernel::Tiled,
        "registers" => MatmulKernel::Registers,
        "subgroup" if supports_subgroup_kernel(g) => MatmulKernel::Subgroup,
        "subgroup" => MatmulKernel::Registers,
        _ => unreachable!("{forced}"),
    }
}

/// `matmul_fused` under `VITGAN_MATMUL_KERNEL=forced` (and `VITGAN_MATMUL_OPERANDS=operands` if
/// given) vs the f64 reference on each shape (M, K, N) and each (transpose A, transpose B); each
/// product must have run exactly one matmul dispatch, of the expected kernel, reading its operands
/// from textures exactly when a CPU kernel was asked to and both operands allow vec4 reads.
fn check_matmuls(
    g: &Gpu,
    forced: &str,
    operands: Option<&str>,
    shapes: &[(usize, usize, usize)],
    transposes: &[(bool, bool)],
    seed: u64,
) {
    let mut vars = vec![("VITGAN_MATMUL_KERNEL", forced)];
    vars.extend(operands.map(|o| ("VITGAN_MATMUL_OPERANDS", o)));
    let want_kernel = forced_matmul_kernel(g, forced);
    let mut seed = seed;
    with_env(&vars, || {
        for &(m, k, n) in shapes {
            for &(ta, tb) in transposes {
                seed += 1;
                let label = format!("{forced} matmul on {operands:?}, {m}x{k}x{n} {ta} {tb}");
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
                let (a_t, b_t) = (upload_to(g, &a, &ash), upload_to(g, &b, &bsh));
                let ((c, _), ran) = dispatched(g, || matmul_fused(&a_t, &b_t, opts).unwrap());
                let want = matmul_ref(&to_f64(&a), &to_f64(&b), 1, 1, m, k, n, ta, tb);
                assert_close(&c.to_vec().unwrap(), &want, 1e-4, 1e-4, &label);

                let matmuls: Vec<&String> =
                    ran.iter().filter(|k| k.starts_with("matmul_")).collect();
                let entry = format!("::{}", matmul_entry(want_kernel));
                let vec4 = (if ta { m } else { k }) % 4 == 0 && (if tb { k } else { n }) % 4 == 0;
                let textures = want_kernel != MatmulKernel::Tiled
                    && vec4
                    && operands.map_or(g.is_cpu(), |o| o == "textures");
                assert!(
                    matmuls.len() == 1
                        && matmuls[0].ends_with(&entry)
                        && matmuls[0].contains("_textures::") == textures,
                    "{label}: wanted {entry} ({}), ran {ran:?}",
                    if textures { "textures" } else { "buffers" }
                );
                // the crate's own account of its choice agrees with what ran
                let flops = 2.0 * (m * n * k) as f64;
                assert_eq!(
                    TileConfig::for_problem(g, flops).kernel,
                    want_kernel,
                    "{label}"
                );
            }
        }
    });
}

#[test]
fn forced_matmul_kernels_run_the_kernel_asked_for_and_match_references() {
    let g = profiled_gpu(None).unwrap();
    let transposes = [(false, false), (true, false), (false, true), (true, true)];
    check_matmuls(
        &g,
        "tiled",
        None,
        &[(1, 1, 1), (65, 31, 129), (127, 64, 67)],
        &transposes,
        0,
    );
    // 9×5×7 cannot be read as vec4s, so it takes the buffers whatever the operand source says
    for (i, (kernel, operands, shapes)) in [
        ("registers", "buffers", &[(68, 36, 132), (8, 4, 4)][..]),
        ("subgroup", "buffers", &[(68, 36, 132), (8, 4, 4)]),
        (
            "registers",
            "textures",
            &[(68, 36, 132), (8, 4, 4), (9, 5, 7)],
        ),
        ("subgroup", "textures", &[(68, 36, 132), (8, 4, 4)]),
    ]
    .into_iter()
    .enumerate()
    {
        check_matmuls(
            &g,
            kernel,
            Some(operands),
            shapes,
            &[(false, false), (true, true)],
            500 + 10 * i as u64,
        );
    }
}

/// Narrow weight gradients `Aᵀ·B` (`A: [K, M]`, `B: [K, N]`) with a long K, computed whole and as
/// K-slices summed (`VITGAN_MATMUL_K_SLICES`), against the f64 reference: M or N not multiples of 4
/// (padded on the sliced path), K past the slicing threshold and past one invocation's loop budget
/// (66,560: 16,704 K-steps against `CPU_LOOP_BUDGET`'s 16,384, so the whole product is summed in
/// pieces and the sliced one has 16 slices of 4,160), and shapes the slicing must leave alone (a K
/// under the threshold or not divisible, a wide output, a transposed B).
#[test]
fn narrow_weight_gradients_match_the_reference_whole_and_in_k_slices() {
    let g = profiled_gpu(None).unwrap();
    let ta = MatmulOptions {
        trans_a: true,
        ..Default::default()
    };
    // (m, k, n, sliced when allowed)
    let cases = [
        (3, 8192, 32, true),
        (32, 8192, 32, true),
        (5, 4096, 7, true),
        (1, K_SLICES_MIN_K, 4, true),
        (64, 66_560, 3, true),
        (3, K_SLICES_MIN_K - 4, 32, false),
        (3, 4099, 32, false),
        (128, 4096, 128, false),
    ];
    for (i, &(m, k, n, sliced)) in cases.iter().enumerate() {
        let mut r = rng(900 + i as u64);
        let a = random(&mut r, k * m, -1.0, 1.0);
        let b = random(&mut r, k * n, -1.0, 1.0);
        let want = matmul_ref(&to_f64(&a), &to_f64(&b), 1, 1, m, k, n, true, false);
        let (a_t, b_t) = (upload_to(&g, &a, &[k, m]), upload_to(&g, &b, &[k, n]));
        for mode in ["off", "on"] {
            let label = format!("{m}x{k}x{n} Aᵀ·B, K-slices {mode}");
            let ((c, ran), slices) = with_env(&[("VITGAN_MATMUL_K_SLICES", mode)], || {
                (
                    dispatched(&g, || matmul_fused(&a_t, &b_t, ta).unwrap()),
                    k_slices(&a_t, &b_t, ta, m, n, k),
                )
            });
            let (c, _) = c;
            assert_eq!(c.shape(), [m, n], "{label}");
            assert_close(&c.to_vec().unwrap(), &want, 2e-4, 1e-4, &label);
            let expect_sliced = sliced && mode == "on";
            assert_eq!(slices.is_some(), expect_sliced, "{label}");
            let summed = ran.iter().any(|k| k.starts_with("reduce"));
            assert_eq!(summed, expect_sliced, "{label}: ran {ran:?}");
            assert_eq!(
                ran.iter().filter(|k| k.starts_with("matmul_")).count(),
                1,
                "{label}: ran {ran:?}"
            );
        }
    }
    // a transposed B or an epilogue keeps the product whole
    with_env(&[("VITGAN_MATMUL_K_SLICES", "on")], || {
        let (a_t, b_t) = (
            upload_to(&g, &vec![0.5; 8192 * 3], &[8192, 3]),
            upload_to(&g, &vec![0.5; 8192 * 32], &[32, 8192]),
        );
        let tb = MatmulOptions {
            trans_a: true,
            trans_b: true,
            ..Default::default()
        };
        assert_eq!(k_slices(&a_t, &b_t, tb, 3, 32, 8192), None);
    });
}

// ---- attention -----------------------------------------------------------------------------------

/// Fused attention under `VITGAN_ATTENTION_KERNEL=forced` and `VITGAN_ATTENTION_OPERANDS=operands`
/// vs the f64 references, for both score kinds with untied q, k, v and with the tied k = q (one
/// tensor, as the discriminator's L2 attention); heads B·H = 3: the forward (out, lse) always, the
/// backward (dq, dk, dv for a random dout) for the kinds in `backward`. The kernels (forward, dq,
/// dk/dv) must be `want`'s, reading their inputs from textures exactly when `want` is not the tiled
/// kernel and `operands` is `textures`.
fn check_attention(
    g: &Gpu,
    (forced, operands): (&str, &str),
    want: AttentionKernel,
    (l, dh): (usize, usize),
    backward: &[AttentionKind],
) {
    let d = Dims::new(3, l, dh);
    let shape = [1, 3, l, dh];
    // an empty `forced`: VITGAN_ATTENTION_KERNEL unset (the automatic choice)
    let mut vars = vec![("VITGAN_ATTENTION_OPERANDS", operands)];
    if !forced.is_empty() {
        vars.push(("VITGAN_ATTENTION_KERNEL", forced));
    }
    let textures = want != AttentionKernel::Tiled && operands == "textures";
    let shader = if textures {
        "attention_textures"
    } else if supports_subgroup_kernel(g) {
        "attention"
    } else {
        "attention_without_subgroups"
    };
    let suffix = match want {
        AttentionKernel::Tiled => "",
        AttentionKernel::Subgroup => "_subgroup",
        AttentionKernel::Lanes => "_lanes",
    };
    let mut r = rng(99 + l as u64 + dh as u64);
    with_env(&vars, || {
        assert_eq!(
            AttentionKernel::for_problem(g, dh),
            want,
            "{forced} at Dh {dh}"
        );
        for kind in [AttentionKind::Dot, AttentionKind::L2] {
            for tied in [false, true] {
                let label = format!(
                    "{forced} attention on {operands}, {kind:?}, {}, L {l} Dh {dh}",
                    if tied { "tied k = q" } else { "untied" }
                );
                let q = random(&mut r, d.numel(), -1.0, 1.0);
                let k = if tied {
                    q.clone()
                } else {
                    random(&mut r, d.numel(), -1.0, 1.0)
                };
                let v = random(&mut r, d.numel(), -1.0, 1.0);
                let dout = random(&mut r, d.numel(), -1.0, 1.0);
                let qt = upload_to(g, &q, &shape);
                let kt = if tied {
                    qt.clone()
                } else {
                    upload_to(g, &k, &shape)
                };
                let (vt, doutt) = (upload_to(g, &v, &shape), upload_to(g, &dout, &shape));
                let ((out, lse), ran_fwd) =
                    dispatched(g, || attention_forward(&qt, &kt, &vt, kind).unwrap());
                let mut checks = vec![(ran_fwd, &["attention_forward"][..])];
                let grads = backward.contains(&kind).then(|| {
                    let (grads, ran_bwd) = dispatched(g, || {
                        attention_backward(&qt, &kt, &vt, &out, &lse, &doutt, kind).unwrap()
                    });
                    checks.push((
                        ran_bwd,
                        &["attention_backward_dq", "attention_backward_dkdv"],
                    ));
                    grads
                });
                for (ran, entries) in checks {
                    let attention: Vec<&String> =
                        ran.iter().filter(|k| k.starts_with("attention")).collect();
                    let mut wanted: Vec<String> = entries
                        .iter()
                        .map(|e| format!("{shader}::{e}{suffix}"))
                        .collect();
                    wanted.sort();
                    assert_eq!(attention, wanted.iter().collect::<Vec<_>>(), "{label}");
                }

                let (q64, k64, v64) = (to_f64(&q), to_f64(&k), to_f64(&v));
                let (want_out, want_lse) = attention_ref(&q64, &k64, &v64, d, kind);
                let out = out.to_vec().unwrap();
                assert_close(&out, &want_out, 2e-5, 1e-4, &format!("{label}: out"));
                let lse = lse.to_vec().unwrap();
                assert_close(&lse, &want_lse, 1e-4, 1e-5, &format!("{label}: lse"));
                let Some((dq, dk, dv)) = grads else { continue };
                let (want_dq, want_dk, want_dv) =
                    attention_backward_ref(&q64, &k64, &v64, &to_f64(&dout), d, kind);
                for (name, got, want) in [
                    ("dq", dq, want_dq),
                    ("dk", dk, want_dk),
                    ("dv", dv, want_dv),
                ] {
                    let got = got.to_vec().unwrap();
                    assert_close(&got, &want, 5e-5, 1e-3, &format!("{label}: {name}"));
                }
            }
        }
    });
}

#[test]
fn forced_attention_kernels_match_references_forward_and_backward() {
    let g = profiled_gpu(None).unwrap();
    use AttentionKind::{Dot, L2};
    // L = 65: past one 64-row block, ragged for every row tiling; the operand source applies to the
    // subgroup kernels only, so the tiled kernels read buffers whatever it says
    let size = (65, SUBGROUP_HEAD_DIM);
    let tiled = AttentionKernel::Tiled;
    check_attention(&g, ("tiled", "buffers"), tiled, size, &[Dot, L2]);
    check_attention(&g, ("tiled", "textures"), tiled, size, &[]);
    if !AttentionKernel::Subgroup.supports(&g, SUBGROUP_HEAD_DIM) {
        eprintln!(
            "skipped the subgroup attention kernels: {} has no subgroups of >= 8 lanes",
            g.describe()
        );
        return;
    }
    // Each backward pipeline at Dh = 64 takes seconds to compile on lavapipe, so the subgroup
    // kernels' backward runs one kind per operand source here: the two sources differ only in their
    // loaders, and tests/attention.rs checks both kinds' backward on the CPU default (textures).
    let subgroup = AttentionKernel::Subgroup;
    check_attention(&g, ("subgroup", "buffers"), subgroup, size, &[L2]);
    check_attention(&g, ("subgroup", "textures"), subgroup, size, &[Dot]);
    // the one-row-per-lane kernels at `tiny`'s Dh = 16: L = 65 is past eight steps of 8 rows and
    // ragged; both kinds' backward from both sources (these pipelines compile fast); unforced, a
    // CPU adapter picks them at this width
    let lanes = AttentionKernel::Lanes;
    let size = (65, LANES_HEAD_DIM);
    check_attention(&g, ("lanes", "buffers"), lanes, size, &[Dot, L2]);
    check_attention(&g, ("lanes", "textures"), lanes, size, &[Dot, L2]);
    let default = if g.is_cpu() { lanes } else { tiled };
    check_attention(&g, ("", "textures"), default, (19, LANES_HEAD_DIM), &[L2]);
}

#[test]
fn forced_subgroup_kernels_are_refused_where_they_cannot_run() {
    use vitgan::ops::{attention::attention_forward, matmul::matmul};
    // the subgroup attention kernels exist for Dh = 64 only: forcing them at 16 is an error
    let g = profiled_gpu(None).unwrap();
    let x = random(&mut rng(5), 2 * 19 * 16, -1.0, 1.0);
    let q = vitgan::Tensor::from_slice(&g, &x, &[1, 2, 19, 16]).unwrap();
    with_env(&[("VITGAN_ATTENTION_KERNEL", "subgroup")], || {
        for kind in [AttentionKind::Dot, AttentionKind::L2] {
            let r = attention_forward(&q, &q, &q, kind);
            assert!(r.is_err(), "forced subgroup attention at Dh = 16 ran");
        }
    });
    // and the one-row-per-lane kernels for Dh = 16 only: forcing them at 17 is an error
    let x17 = random(&mut rng(6), 19 * 17, -1.0, 1.0);
    let q = vitgan::Tensor::from_slice(&g, &x17, &[1, 1, 19, 17]).unwrap();
    with_env(&[("VITGAN_ATTENTION_KERNEL", "lanes")], || {
        let r = attention_forward(&q, &q, &q, AttentionKind::L2);
        assert!(r.is_err(), "forced lanes attention at Dh = 17 ran");
    });
    // on an adapter without subgroups (Mesa's GL llvmpipe where installed) a forced subgroup matmul
    // is an error too
    let gl = match profiled_gpu(Some("gl")) {
        Ok(gl) if !supports_subgroup_kernel(&gl) => gl,
        Ok(gl) => {
            eprintln!(
                "skipped the adapter without subgroups: {} has them",
                gl.describe()
            );
            return;
        }
        Err(e) => {
            eprintln!("skipped the adapter without subgroups: no GL adapter ({e})");
            return;
        }
    };
    let a = vitgan::Tensor::from_slice(&gl, &x[..68 * 8], &[68, 8]).unwrap();
    let b = vitgan::Tensor::from_slice(&gl, &x[..8 * 12], &[8, 12]).unwrap();
    with_env(&[("VITGAN_MATMUL_KERNEL", "subgroup")], || {
        let r = matmul(&a, &b);
        assert!(
            r.is_err(),
            "forced subgroup matmul ran on {}",
            gl.describe()
        );
    });
}

// ---- LayerNorm -----------------------------------------------------------------------------------

#[test]
fn layer_norm_paths_match_the_reference_forward_and_backward() {
    let g = profiled_gpu(None).unwrap();
    let mut r = rng(900);
    // LayerNorm ([D] affine) and SLN ([B, D] affine). On CPU adapters ≥ 64 rows of a width divisible
    // by 4 take the vec4 row kernels (whose γ, β come from buffers or textures) and a width divisible
    // by 4 the per-column dγ/dβ kernel; the other shapes take the workgroup kernels (as GPUs do always)
    for (x_shape, affine_shape) in [
        (vec![70usize, 12], vec![12usize]),
        (vec![2, 40, 8], vec![2, 8]),
        (vec![70, 7], vec![7]),
        (vec![3, 5, 12], vec![3, 12]),
    ] {
        let d = *x_shape.last().unwrap();
        let n: usize = x_shape.iter().product();
        let na: usize = affine_shape.iter().product();
        let rows_per_group = n / d / (na / d);
        let (x, gamma, beta, dy) = (
            random(&mut r, n, -2.0, 2.0),
            random(&mut r, na, 0.5, 1.5),
            random(&mut r, na, -0.5, 0.5),
            random(&mut r, n, -1.0, 1.0),
        );
        let (x64, g64, b64, dy64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&dy));
        let eps = 1e-5;
        let want = layer_norm_ref(&x64, &g64, &b64, d, rows_per_group, eps);
        let (want_dx, want_dg, want_db) =
            layer_norm_backward_ref(&x64, &g64, &dy64, d, rows_per_group, eps);
        // the analytic reference is the gradient of Σ dy ⊙ y
        let loss = |x: &[f64], gm: &[f64], bt: &[f64]| {
            dot(&dy64, &layer_norm_ref(x, gm, bt, d, rows_per_group, eps).y)
        };
        for (name, analytic, numeric) in [
            (
                "dx",
                &want_dx,
                numeric_grad(&x64, 1e-5, |v| loss(v, &g64, &b64)),
            ),
            (
                "dγ",
                &want_dg,
                numeric_grad(&g64, 1e-5, |v| loss(&x64, v, &b64)),
            ),
            (
                "dβ",
                &want_db,
                numeric_grad(&b64, 1e-5, |v| loss(&x64, &g64, v)),
            ),
        ] {
            let a32: Vec<f32> = analytic.iter().map(|&v| v as f32).collect();
            let what = format!("reference {name}, x {x_shape:?}");
            assert_close(&a32, &numeric, 1e-5, 1e-5, &what);
        }

        let rows4 = g.is_cpu() && n / d >= 64 && d % 4 == 0;
        let cols4 = g.is_cpu() && d % 4 == 0;
        for operands in ["buffers", "textures"] {
            let label = format!("x {x_shape:?}, affine {affine_shape:?}, {operands}");
            with_env(&[("VITGAN_LAYER_NORM_OPERANDS", operands)], || {
                let (xt, gt, bt) = (
                    upload_to(&g, &x, &x_shape),
                    upload_to(&g, &gamma, &affine_shape),
                    upload_to(&g, &beta, &affine_shape),
                );
                let ((y, mean, rstd), ran_fwd) = dispatched(&g, || {
                    layer_norm_forward(&xt, &gt, &bt, eps as f32).unwrap()
                });
                let dyt = upload_to(&g, &dy, &x_shape);
                let ((dx, dg, db), ran_bwd) = dispatched(&g, || {
                    layer_norm_backward(&xt, &gt, &mean, &rstd, &dyt).unwrap()
                });
                // the kernels: row and column kernels reading γ, β, x, dy from the forced source, or
                // workgroup kernels
                let shader = if rows4 && operands == "textures" {
                    "layer_norm_textures"
                } else {
                    "layer_norm"
                };
                let row = |entry: &str| match rows4 {
                    true => format!("{shader}::{entry}_rows4"),
                    false => format!("layer_norm::{entry}"),
                };
                let affine = match cols4 {
                    true => match operands {
                        "textures" => "layer_norm_textures::layer_norm_backward_affine_cols4",
                        _ => "layer_norm::layer_norm_backward_affine_cols4",
                    }
                    .to_string(),
                    false => "layer_norm::layer_norm_backward_affine".to_string(),
                };
                for (ran, wanted) in [
                    (&ran_fwd, row("layer_norm_forward")),
                    (&ran_bwd, row("layer_norm_backward_input")),
                    (&ran_bwd, affine),
                ] {
                    assert!(
                        ran.contains(&wanted),
                        "{label}: wanted {wanted}, ran {ran:?}"
                    );
                }

                let y = y.to_vec().unwrap();
                assert_close(&y, &want.y, 2e-5, 1e-4, &format!("y, {label}"));
                let mean = mean.to_vec().unwrap();
                assert_close(&mean, &want.mean, 1e-6, 1e-5, &format!("μ, {label}"));
                let rstd = rstd.to_vec().unwrap();
                assert_close(&rstd, &want.rstd, 1e-5, 1e-4, &format!("rstd, {label}"));
                let dx = dx.to_vec().unwrap();
                assert_close(&dx, &want_dx, 2e-5, 1e-4, &format!("dx, {label}"));
                assert_eq!(dg.shape(), &affine_shape[..]);
                let dg = dg.to_vec().unwrap();
                assert_close(&dg, &want_dg, 1e-4, 1e-4, &format!("dγ, {label}"));
                let db = db.to_vec().unwrap();
                assert_close(&db, &want_db, 1e-4, 1e-4, &format!("dβ, {label}"));
            });
        }
    }
}

// ---- INR decoder ---------------------------------------------------------------------------------

#[test]
fn generator_runs_the_same_with_the_fused_and_the_composed_inr_decoder() {
    use vitgan::model::{Generator, ModelConfig};
    use vitgan::nn::{Init, InrPath};
    use vitgan::{ParamStore, Tape};
    // the shared test GPU opens inside with_env: opening reads the environment (VITGAN_PROFILE)
    let g = with_env(&[], gpu);
    let cfg = ModelConfig::tiny();
    let mut params = ParamStore::new();
    let generator = with_env(&[], || {
        Generator::new(&g, &mut params, &mut Init::new(7), &cfg).unwrap()
    });
    let z = upload_to(
        &g,
        &random(&mut rng(8), 3 * cfg.latent_dim, -1.0, 1.0),
        &[3, cfg.latent_dim],
    );
    let mut runs = Vec::new();
    for path in ["fused", "composed"] {
        runs.push(with_env(&[("VITGAN_INR", path)], || {
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
            (
                pixels,
                grad("generator.decoder.w1"),
                grad("generator.decoder.style1.weight"),
            )
        }));
    }
    let (fused, composed) = (&runs[0], &runs[1]);
    assert_close(&composed.0, &to_f64(&fused.0), 1e-4, 1e-3, "images");
    assert_close(&composed.1, &to_f64(&fused.1), 1e-3, 1e-3, "dL/dw1");
    assert_close(&composed.2, &to_f64(&fused.2), 1e-3, 1e-3, "dL/dstyle1");
    // a composed intermediate over the adapter's binding limit always takes the fused kernel
    let too_big = g.limits().max_storage_buffer_binding_size as usize + 4;
    with_env(&[("VITGAN_INR", "composed")], || {
        assert_eq!(InrPath::for_problem(&g, too_big), InrPath::Fused);
    });
}

/// The tape's tied L2 attention at the `tiny` preset's head width (16): by default and under
/// `VITGAN_ATTENTION_KERNEL=tiled` the fused kernels run; under `VITGAN_ATTENTION_KERNEL=composed` the
/// composition of primitive ops (no `attention` kernel dispatched). All three give the f64
/// reference's output and gradients (the gradient of q is the sum of its query and key roles).
#[test]
fn tape_attention_composes_only_when_asked() {
    use vitgan::Tape;
    let g = profiled_gpu(None).unwrap();
    let (heads, l, dh) = (6, 17, 16);
    let d = Dims::new(heads, l, dh);
    let shape = [2, 3, l, dh];
    let mut r = rng(1717);
    let (q, v, dout) = (
        random(&mut r, d.numel(), -1.0, 1.0),
        random(&mut r, d.numel(), -1.0, 1.0),
        random(&mut r, d.numel(), -1.0, 1.0),
    );
    let (q64, v64) = (to_f64(&q), to_f64(&v));
    let (want_out, _) = attention_ref(&q64, &q64, &v64, d, AttentionKind::L2);
    let (want_dq, want_dk, want_dv) =
        attention_backward_ref(&q64, &q64, &v64, &to_f64(&dout), d, AttentionKind::L2);
    let want_dq: Vec<f64> = want_dq.iter().zip(&want_dk).map(|(a, b)| a + b).collect();
    for forced in [None, Some("tiled"), Some("composed")] {
        let vars: Vec<(&str, &str)> = forced
            .map(|f| vec![("VITGAN_ATTENTION_KERNEL", f)])
            .unwrap_or_default();
        with_env(&vars, || {
            let label = format!("tape L2 attention, VITGAN_ATTENTION_KERNEL={forced:?}");
            let tape = Tape::new(&g);
            let qv = tape.leaf(upload_to(&g, &q, &shape), true);
            let vv = tape.leaf(upload_to(&g, &v, &shape), true);
            let ((out, dq, dv), ran) = dispatched(&g, || {
                let out = tape.l2_attention_tied(qv, vv).unwrap();
                tape.backward_with(out, upload_to(&g, &dout, &shape))
                    .unwrap();
                let grad = |x| tape.grad(x).unwrap().to_vec().unwrap();
                (tape.value(out).to_vec().unwrap(), grad(qv), grad(vv))
            });
            let fused = ran.iter().any(|k| k.contains("::attention_"));
            assert_eq!(fused, forced != Some("composed"), "{label}: ran {ran:?}");
            assert_close(&out, &want_out, 2e-5, 1e-4, &format!("{label}: out"));
            assert_close(&dq, &want_dq, 5e-5, 1e-3, &format!("{label}: dq + dk"));
            assert_close(&dv, &want_dv, 5e-5, 1e-3, &format!("{label}: dv"));
        });
    }
}

// ---- memory-bound kernels: operands from buffers and from textures --------------------------------

/// Elementwise maps, sums over an axis, strided copies and Adam, each forced to
/// read its operands from buffers and from textures (`VITGAN_*_OPERANDS`), against f64 references,
/// with the kernel that ran checked (on CPU adapters; elsewhere these vec4 kernels do not run and
/// only the results are checked).
#[test]
fn memory_bound_kernels_read_buffers_and_textures() {
    use vitgan::ops::adam::{AdamConfig, adam_step};
    use vitgan::ops::elementwise::{Binary, Unary, binary, unary, unary_backward};
    use vitgan::ops::{layout, reduce};
    let g = profiled_gpu(None).unwrap();
    let cpu = g.is_cpu();
    let mut r = rng(41);
    // odd outer sizes; the innermost a multiple of 4 (the vec4 kernels' condition)
    // 5,180 floats: past the first texture row (1,024 vec4s)
    let (rows, inner) = (37usize, 28usize);
    let n = rows * 5 * inner;
    let a = random(&mut r, n, -2.0, 2.0);
    let b = random(&mut r, n, -2.0, 2.0);
    let row_b = random(&mut r, rows * inner, -2.0, 2.0);
    let (a64, b64, row64) = (to_f64(&a), to_f64(&b), to_f64(&row_b));
    for operands in ["buffers", "textures"] {
        let shader = |family: &str| match (cpu, operands) {
            (true, "textures") => format!("{family}_textures"),
            _ => family.to_string(),
        };
        let check = |ran: &[String], family: &str, entry: &str, label: &str| {
            if cpu {
                let wanted = format!("{}::{entry}", shader(family));
                assert!(
                    ran.contains(&wanted),
                    "{label}, {operands}: wanted {wanted}, ran {ran:?}"
                );
            }
        };
        let vars: Vec<(&'static str, &str)> = [
            "VITGAN_ELEMENTWISE_OPERANDS",
            "VITGAN_REDUCE_OPERANDS",
            "VITGAN_LAYOUT_OPERANDS",
            "VITGAN_ADAM_OPERANDS",
        ]
        .into_iter()
        .map(|v| (v, operands))
        .chain([("VITGAN_PROFILE", "1")])
        .collect();
        with_env(&vars, || {
            let at = upload_to(&g, &a, &[rows, 5, inner]);
            let bt = upload_to(&g, &b, &[rows, 5, inner]);
            let rowt = upload_to(&g, &row_b, &[rows, 1, inner]);
            // unary and its backward
            let (y, ran) = dispatched(&g, || unary(&at, Unary::Sin).unwrap());
            check(&ran, "elementwise", "unary_chunks4", "sin");
            let want: Vec<f64> = a64.iter().map(|v| v.sin()).collect();
            assert_close(
                &y.to_vec().unwrap(),
                &want,
                1e-6,
                1e-5,
                &format!("sin, {operands}"),
            );
            let (dx, ran) = dispatched(&g, || unary_backward(&at, &bt, Unary::Sin).unwrap());
            check(
                &ran,
                "elementwise",
                "unary_backward_chunks4",
                "sin backward",
            );
            let want: Vec<f64> = a64.iter().zip(&b64).map(|(x, dy)| dy * x.cos()).collect();
            assert_close(
                &dx.to_vec().unwrap(),
                &want,
                1e-6,
                1e-5,
                &format!("sin', {operands}"),
            );
            // binary on equal shapes, and broadcast over the middle axis (vec4 runs)
            let (y, ran) = dispatched(&g, || binary(&at, &bt, Binary::Sub).unwrap());
            check(&ran, "elementwise", "binary_chunks4", "sub");
            let want: Vec<f64> = a64.iter().zip(&b64).map(|(x, y)| x - y).collect();
            assert_close(
                &y.to_vec().unwrap(),
                &want,
                1e-6,
                1e-6,
                &format!("sub, {operands}"),
            );
            let (y, ran) = dispatched(&g, || binary(&at, &rowt, Binary::Mul).unwrap());
            check(&ran, "elementwise", "binary_runs4", "broadcast mul");
            let want: Vec<f64> = (0..n)
                .map(|i| a64[i] * row64[(i / (5 * inner)) * inner + i % inner])
                .collect();
            assert_close(
                &y.to_vec().unwrap(),
                &want,
                1e-6,
                1e-6,
                &format!("mul, {operands}"),
            );
            // sum over the middle axis, one invocation per output
            let (s, ran) = dispatched(&g, || reduce::sum_axis(&at, 1, false).unwrap());
            check(&ran, "reduce", "sum_axis_lanes", "sum");
            let want: Vec<f64> = (0..rows * inner)
                .map(|o| {
                    (0..5)
                        .map(|k| a64[(o / inner * 5 + k) * inner + o % inner])
                        .sum()
                })
                .collect();
            assert_close(
                &s.to_vec().unwrap(),
                &want,
                1e-5,
                1e-5,
                &format!("sum, {operands}"),
            );
            // a permute whose innermost axis stays (vec4 runs)
            let (p, ran) = dispatched(&g, || layout::permute(&at, &[1, 0, 2]).unwrap());
            check(&ran, "layout", "strided_copy_runs4", "permute");
            let want: Vec<f64> = (0..n)
                .map(|i| {
                    let (k, rest) = (i / (rows * inner), i % (rows * inner));
                    a64[(rest / inner * 5 + k) * inner + rest % inner]
                })
                .collect();
            assert_close(
                &p.to_vec().unwrap(),
                &want,
                0.0,
                0.0,
                &format!("permute, {operands}"),
            );
            // one Adam step with the EMA (β1 = 0.5 so that m matters)
            let cfg = AdamConfig {
                lr: 0.01,
                beta1: 0.5,
                beta2: 0.9,
                eps: 1e-8,
            };
            let (param, grad) = (at.deep_clone().unwrap(), bt.clone());
            let m = upload_to(&g, &row_b.repeat(5), &[n]);
            let v = upload_to(&g, &vec![0.25; n], &[n]);
            let ema = upload_to(&g, &b, &[n]);
            let ((), ran) = dispatched(&g, || {
                adam_step(&param, &grad, &m, &v, Some((&ema, 0.75)), cfg, 1).unwrap()
            });
            check(&ran, "adam", "adam_step_chunks4", "adam");
            let m0 = to_f64(&row_b.repeat(5));
            let (mut want_p, mut want_m, mut want_v, mut want_e) = (vec![], vec![], vec![], vec![]);
            for i in 0..n {
                let gi = b64[i];
                let mi = 0.5 * m0[i] + 0.5 * gi;
                let vi = 0.9 * 0.25 + 0.1 * gi * gi;
                let pi = a64[i] - 0.01 * (mi / 0.5) / ((vi / (1.0 - 0.9f64)).sqrt() + 1e-8);
                want_p.push(pi);
                want_m.push(mi);
                want_v.push(vi);
                want_e.push(0.75 * b64[i] + 0.25 * pi);
            }
            for (t, want, what) in [
                (&param, &want_p, "param"),
                (&m, &want_m, "m"),
                (&v, &want_v, "v"),
                (&ema, &want_e, "ema"),
            ] {
                let label = format!("adam {what}, {operands}");
                assert_close(&t.to_vec().unwrap(), want, 1e-5, 1e-5, &label);
            }
            // the same step without an EMA (D's optimiser)
            let param = at.deep_clone().unwrap();
            let m = upload_to(&g, &row_b.repeat(5), &[n]);
            let v = upload_to(&g, &vec![0.25; n], &[n]);
            let ((), ran) = dispatched(&g, || {
                adam_step(&param, &grad, &m, &v, None, cfg, 1).unwrap()
            });
            check(&ran, "adam", "adam_step_chunks4", "adam without EMA");
            let label = format!("adam without EMA, {operands}");
            assert_close(&param.to_vec().unwrap(), &want_p, 1e-5, 1e-5, &label);
        });
    }
}

// ---- spectral normalisation: workgroup reductions and one invocation per output -------------------

/// The power iteration and the backward's ⟨G, W⟩ with the workgroup kernels (the GPU default) and the
/// `_lanes` kernels (the CPU default), each forced, against the f64 references; odd shapes, a weight
/// wider than 64 columns, one taller than 64 rows, and one whose rows are longer than the CPU loop
/// budget (16,400 columns: `W v` and the row sums must fall back to the workgroup kernels there,
/// while `Wᵀu`, a loop over 2 rows, stays on the lanes kernel).
#[test]
fn spectral_norm_paths_match_the_reference() {
    use vitgan::ops::spectral_norm::{power_iteration, spectral_normalize_backward};
    let g = profiled_gpu(None).unwrap();
    for (i, &(out, inp)) in [
        (7usize, 13usize),
        (65, 33),
        (3, 300),
        (130, 70),
        (2, 16_400),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(900 + i as u64);
        let w = random(&mut r, out * inp, -1.0, 1.0);
        let u0 = random(&mut r, out, -1.0, 1.0);
        let grad = random(&mut r, out * inp, -1.0, 1.0);
        let (w64, g64) = (to_f64(&w), to_f64(&grad));
        let (want_u, want_v, want_sigma) = power_iteration_ref(&w64, out, inp, &to_f64(&u0), 2);
        for kernel in ["workgroup", "lanes"] {
            let label = format!("{out}x{inp}, {kernel}");
            with_env(
                &[
                    ("VITGAN_SPECTRAL_NORM_KERNEL", kernel),
                    ("VITGAN_PROFILE", "1"),
                ],
                || {
                    let wt = upload_to(&g, &w, &[out, inp]);
                    let u = upload_to(&g, &u0, &[out]);
                    let ((sigma, v), ran) = dispatched(&g, || power_iteration(&wt, &u, 2).unwrap());
                    // each product's loop: Wᵀu over the rows, W v and the row sums over the columns
                    let fits = |loop_len: usize| loop_len <= vitgan::ops::CPU_LOOP_BUDGET;
                    for (entry, loop_len) in [("transposed_matvec", out), ("matvec", inp)] {
                        let wanted = match kernel == "lanes" && fits(loop_len) {
                            true => format!("spectral_norm::{entry}_lanes"),
                            false => format!("spectral_norm::{entry}"),
                        };
                        assert!(
                            ran.contains(&wanted),
                            "{label}: wanted {wanted}, ran {ran:?}"
                        );
                    }
                    assert_close(
                        &u.to_vec().unwrap(),
                        &want_u,
                        1e-5,
                        1e-4,
                        &format!("u, {label}"),
                    );
                    assert_close(
                        &v.to_vec().unwrap(),
                        &want_v,
                        1e-5,
                        1e-4,
                        &format!("v, {label}"),
                    );
                    let got_sigma = sigma.to_vec().unwrap();
                    assert_close(&got_sigma, &[want_sigma], 0.0, 1e-5, &format!("σ, {label}"));
                    // dW = σ0/σ · (G − ⟨G, W⟩/σ · u vᵀ), with this call's u, v and σ
                    let sigma0 = upload_to(&g, &[1.7], &[1]);
                    let gt = upload_to(&g, &grad, &[out, inp]);
                    let (dw, ran) = dispatched(&g, || {
                        spectral_normalize_backward(&gt, &wt, &u, &v, &sigma0, &sigma).unwrap()
                    });
                    let wanted = match kernel == "lanes" && fits(inp) {
                        true => "spectral_norm::row_dots_lanes",
                        false => "spectral_norm::row_dots",
                    };
                    assert!(
                        ran.iter().any(|k| k == wanted),
                        "{label}: wanted {wanted}, ran {ran:?}"
                    );
                    let (u64_, v64) = (to_f64(&u.to_vec().unwrap()), to_f64(&v.to_vec().unwrap()));
                    let s = got_sigma[0] as f64;
                    let dot: f64 = g64.iter().zip(&w64).map(|(a, b)| a * b).sum();
                    let want: Vec<f64> = (0..out * inp)
                        .map(|k| 1.7 / s * (g64[k] - dot / s * u64_[k / inp] * v64[k % inp]))
                        .collect();
                    assert_close(
                        &dw.to_vec().unwrap(),
                        &want,
                        1e-5,
                        1e-4,
                        &format!("dW, {label}"),
                    );
                },
            );
        }
    }
}

/// ISN's one-dispatch kernels (`normalize_weight_fused`, `normalize_weight_backward_fused`, the
/// default on CPU adapters for weights whose vectors fit workgroup memory) against the f64 reference
/// and, on CPU adapters, bit for bit against the separate `_lanes` kernels whose sums they repeat
/// in the same order (which keeps the default's training runs what they were). Odd sizes, the
/// 1,024-limit of a vector and the 16,384-element limit of the weight, and shapes past them (1,025
/// rows; 129 × 128; 16,400 columns, past the loop budget too) that must fall back to the separate
/// kernels; one iteration that advances `u`, and none (σ estimated from `u`, which must stay as it
/// was).
#[test]
fn spectral_norm_fused_kernels_match_the_separate_ones() {
    use vitgan::ops::spectral_norm::{SpectralNorm, normalize_weight, spectral_normalize_backward};
    let g = profiled_gpu(None).unwrap();
    for (i, &(out, inp)) in [
        (1usize, 1usize),
        (7, 13),
        (65, 33),
        (3, 300),
        (300, 3),
        (1024, 16),
        (16, 1024),
        (128, 128),
        (129, 128),
        (1025, 4),
        (2, 16_400),
    ]
    .iter()
    .enumerate()
    {
        let fits = out <= 1024 && inp <= 1024 && out * inp <= 16_384;
        let mut r = rng(950 + i as u64);
        let w = random(&mut r, out * inp, -1.0, 1.0);
        let u0 = random(&mut r, out, -1.0, 1.0);
        let grad = random(&mut r, out * inp, -1.0, 1.0);
        let (w64, g64) = (to_f64(&w), to_f64(&grad));
        let (want_u, want_v, want_sigma) = power_iteration_ref(&w64, out, inp, &to_f64(&u0), 1);
        for iters in [0u32, 1] {
            let mut results = Vec::new();
            for kernel in ["fused", "lanes"] {
                let label = format!("{out}x{inp}, {iters} iteration(s), {kernel}");
                let got = with_env(
                    &[
                        ("VITGAN_SPECTRAL_NORM_KERNEL", kernel),
                        ("VITGAN_PROFILE", "1"),
                    ],
                    || {
                        let wt = upload_to(&g, &w, &[out, inp]);
                        let sn = SpectralNorm {
                            u: upload_to(&g, &u0, &[out]),
                            sigma_init: upload_to(&g, &[1.7], &[1]),
                        };
                        let (nw, ran) =
                            dispatched(&g, || normalize_weight(&wt, &sn, iters, true).unwrap());
                        let is_fused = ran
                            .iter()
                            .any(|k| k == "spectral_norm::normalize_weight_fused");
                        assert_eq!(is_fused, kernel == "fused" && fits, "{label}: ran {ran:?}");
                        if is_fused {
                            assert_eq!(ran.len(), 1, "{label}: one dispatch, ran {ran:?}");
                        }
                        let state = sn.u.to_vec().unwrap();
                        let (u, v) = (nw.u.to_vec().unwrap(), nw.v.to_vec().unwrap());
                        let sigma = nw.sigma.to_vec().unwrap();
                        let weight = nw.weight.to_vec().unwrap();
                        assert_close(&u, &want_u, 1e-5, 1e-4, &format!("u, {label}"));
                        assert_close(&v, &want_v, 1e-5, 1e-4, &format!("v, {label}"));
                        assert_close(&sigma, &[want_sigma], 0.0, 1e-5, &format!("σ, {label}"));
                        let want_state = if iters == 1 {
                            want_u.clone()
                        } else {
                            to_f64(&u0)
                        };
                        assert_close(&state, &want_state, 1e-5, 1e-4, &format!("sn.u, {label}"));
                        let want_w: Vec<f64> = w64.iter().map(|x| 1.7 * x / want_sigma).collect();
                        assert_close(&weight, &want_w, 1e-5, 1e-4, &format!("W̄, {label}"));
                        let gt = upload_to(&g, &grad, &[out, inp]);
                        let (dw, ran) = dispatched(&g, || {
                            spectral_normalize_backward(
                                &gt,
                                &wt,
                                &nw.u,
                                &nw.v,
                                &sn.sigma_init,
                                &nw.sigma,
                            )
                            .unwrap()
                        });
                        let bw_fused = ran
                            .iter()
                            .any(|k| k == "spectral_norm::normalize_weight_backward_fused");
                        assert_eq!(bw_fused, is_fused, "{label}: backward ran {ran:?}");
                        let dw = dw.to_vec().unwrap();
                        // dW = σ0/σ · (G − ⟨G, W⟩/σ · u vᵀ), with this call's u, v and σ
                        let (u64_, v64, s) = (to_f64(&u), to_f64(&v), sigma[0] as f64);
                        let dot: f64 = g64.iter().zip(&w64).map(|(a, b)| a * b).sum();
                        let want: Vec<f64> = (0..out * inp)
                            .map(|k| 1.7 / s * (g64[k] - dot / s * u64_[k / inp] * v64[k % inp]))
                            .collect();
                        assert_close(&dw, &want, 1e-5, 1e-4, &format!("dW, {label}"));
                        (state, u, v, sigma, weight, dw)
                    },
                );
                results.push(got);
            }
            if g.is_cpu() && fits {
                // the same sums in the same order: the same bits (CPU adapters, where both run
                // on one compiler; a GPU's may contract multiply-adds differently per kernel)
                assert!(
                    results[0] == results[1],
                    "{out}x{inp}, {iters} iteration(s): fused and lanes differ"
                );
            }
        }
    }
}

/// Packed attention (the lanes kernels reading q, k, v in place in the `[B, L, parts · H · 16]`
/// projection and writing `[B, L, H · 16]`, the CPU default at head width 16) against the f64
/// reference and, bit for bit, against the lanes kernels on the heads split out on the host, for
/// both kinds (tied L2: `k = q`, q's gradient `dq + dk`), odd batches, lengths and head counts.
#[test]
fn packed_attention_matches_the_split_heads() {
    use vitgan::ops::attention::{
        AttentionKernel, Packed, attention_backward_with, attention_forward_with,
        attention_packed_backward, attention_packed_forward,
    };
    let g = profiled_gpu(None).unwrap();
    const DH: usize = 16;
    for (i, &(kind, bsz, len, heads)) in [
        (AttentionKind::L2, 1usize, 1usize, 1usize),
        (AttentionKind::L2, 3, 17, 4),
        (AttentionKind::L2, 2, 33, 3),
        (AttentionKind::Dot, 1, 1, 1),
        (AttentionKind::Dot, 3, 16, 4),
        (AttentionKind::Dot, 5, 9, 2),
    ]
    .iter()
    .enumerate()
    {
        let label = format!("{kind:?} B{bsz} L{len} H{heads}");
        let parts = kind.packed_parts();
        let width = parts * heads * DH;
        let mut r = rng(990 + i as u64);
        let qkv = random(&mut r, bsz * len * width, -1.0, 1.0);
        let dout = random(&mut r, bsz * len * heads * DH, -1.0, 1.0);
        let qkv_t = upload_to(&g, &qkv, &[bsz, len, width]);
        let p = Packed::of(&qkv_t, heads, kind).unwrap();
        if !p.runs_packed(&g) {
            eprintln!(
                "{label}: {} does not run the lanes kernels; skipped",
                g.describe()
            );
            return;
        }
        // the heads on the host: part t, head h, row l at [b, l, t, h, :]
        let split = |t: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(bsz * heads * len * DH);
            for b in 0..bsz {
                for h in 0..heads {
                    for l in 0..len {
                        let at = ((b * len + l) * parts + t) * heads * DH + h * DH;
                        out.extend_from_slice(&qkv[at..at + DH]);
                    }
                }
            }
            out
        };
        // [B, L, H, Dh] ↔ [B, H, L, Dh]
        let to_heads = |x: &[f32]| -> Vec<f32> {
            let mut out = vec![0.0; x.len()];
            for b in 0..bsz {
                for l in 0..len {
                    for h in 0..heads {
                        let from = ((b * len + l) * heads + h) * DH;
                        let to = ((b * heads + h) * len + l) * DH;
                        out[to..to + DH].copy_from_slice(&x[from..from + DH]);
                    }
                }
            }
            out
        };
        let (q, v) = (split(0), split(parts - 1));
        let k = if kind == AttentionKind::L2 {
            q.clone()
        } else {
            split(1)
        };
        let shape = [bsz, heads, len, DH];
        let (qt, kt, vt) = (
            upload_to(&g, &q, &shape),
            upload_to(&g, &k, &shape),
            upload_to(&g, &v, &shape),
        );
        let lanes = AttentionKernel::Lanes;
        let (want_out, want_lse) = attention_forward_with(&qt, &kt, &vt, kind, lanes).unwrap();
        let dout_heads = upload_to(&g, &to_heads(&dout), &shape);
        let (dq, dk, dv) = attention_backward_with(
            &qt,
            &kt,
            &vt,
            &want_out,
            &want_lse,
            &dout_heads,
            kind,
            lanes,
        )
        .unwrap();

        let ((out, lse), ran) = dispatched(&g, || attention_packed_forward(&qkv_t, &p).unwrap());
        assert_eq!(ran.len(), 1, "{label}: one dispatch, ran {ran:?}");
        let dout_t = upload_to(&g, &dout, &[bsz, len, heads * DH]);
        let dqkv = attention_packed_backward(&qkv_t, &out, &lse, &dout_t, &p).unwrap();
        let (out, lse, dqkv) = (
            out.to_vec().unwrap(),
            lse.to_vec().unwrap(),
            dqkv.to_vec().unwrap(),
        );
        assert_eq!(out.len(), bsz * len * heads * DH, "{label}");

        // bit for bit: the same kernels' arithmetic, only the addresses differ
        assert!(to_heads(&out) == want_out.to_vec().unwrap(), "{label}: out");
        assert!(lse == want_lse.to_vec().unwrap(), "{label}: lse");
        let (dq, dk, dv) = (
            dq.to_vec().unwrap(),
            dk.to_vec().unwrap(),
            dv.to_vec().unwrap(),
        );
        let dq_total: Vec<f32> = match kind {
            AttentionKind::L2 => dq.iter().zip(&dk).map(|(a, b)| a + b).collect(),
            AttentionKind::Dot => dq.clone(),
        };
        let grads: Vec<&[f32]> = match kind {
            AttentionKind::L2 => vec![&dq_total, &dv],
            AttentionKind::Dot => vec![&dq_total, &dk, &dv],
        };
        let mut want_dqkv = vec![0.0f32; qkv.len()];
        for (t, grad) in grads.iter().enumerate() {
            for b in 0..bsz {
                for h in 0..heads {
                    for l in 0..len {
                        let at = ((b * len + l) * parts + t) * heads * DH + h * DH;
                        let from = ((b * heads + h) * len + l) * DH;
                        want_dqkv[at..at + DH].copy_from_slice(&grad[from..from + DH]);
                    }
                }
            }
        }
        assert!(dqkv == want_dqkv, "{label}: d(qkv)");

        // and the f64 reference
        let d = Dims::new(bsz * heads, len, DH);
        let (q64, k64, v64) = (to_f64(&q), to_f64(&k), to_f64(&v));
        let (ref_out, _) = attention_ref(&q64, &k64, &v64, d, kind);
        assert_close(
            &to_heads(&out),
            &ref_out,
            1e-5,
            1e-4,
            &format!("out, {label}"),
        );
        let (rq, rk, rv) =
            attention_backward_ref(&q64, &k64, &v64, &to_f64(&to_heads(&dout)), d, kind);
        let rq: Vec<f64> = match kind {
            AttentionKind::L2 => rq.iter().zip(&rk).map(|(a, b)| a + b).collect(),
            AttentionKind::Dot => rq,
        };
        assert_close(&dq_total, &rq, 1e-5, 1e-4, &format!("dq, {label}"));
        assert_close(&dv, &rv, 1e-5, 1e-4, &format!("dv, {label}"));
        if kind == AttentionKind::Dot {
            assert_close(&dk, &rk, 1e-5, 1e-4, &format!("dk, {label}"));
        }

        // and central differences of Σ out ⊙ dout through the packed forward, at a few entries
        let loss = |x: &[f32]| -> f64 {
            let t = upload_to(&g, x, &[bsz, len, width]);
            let (o, _) = attention_packed_forward(&t, &p).unwrap();
            let o = o.to_vec().unwrap();
            o.iter()
                .zip(&dout)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum()
        };
        let h = 1e-2f32;
        for e in 0..6 {
            let at = (e * 7919 + i * 31) % qkv.len();
            let (mut plus, mut minus) = (qkv.clone(), qkv.clone());
            plus[at] += h;
            minus[at] -= h;
            let fd = (loss(&plus) - loss(&minus)) / (2.0 * h as f64);
            let got = dqkv[at] as f64;
            assert!(
                (fd - got).abs() <= 2e-2 * (1.0 + got.abs()),
                "{label}: d(qkv)[{at}] = {got}, central difference {fd}"
            );
        }
    }
}

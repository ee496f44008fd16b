//! Kernel micro-benchmarks: `cargo bench --bench kernels [-- FILTER ...]`.
//!
//! For every case: the first call (pipeline compilation + first dispatch) is timed on its own, then the
//! case is warmed up and run N times; the median is reported. Times come from GPU timestamp queries on
//! GPUs that have them (`Gpu::time_gpu`), else (and on CPU adapters such as lavapipe, whose timestamps
//! are unreliable) from the wall clock around the work plus a device sync.
//! Matmuls report GFLOP/s (2·M·N·K) next to OpenBLAS SGEMM through numpy on the same shape, measured
//! right before ours (`benches/numpy_sgemm.py`, all cores; skipped with a note when python3/numpy are
//! missing), and check a few rows of the result against an f64 reference; bandwidth-bound
//! kernels report GB/s (bytes read + written). Every result is also appended as one JSON object per line
//! to `$CARGO_TARGET_DIR/bench-results.jsonl` (default `target/`).
//!
//! Arguments that do not start with `-` are filters: a case runs when its kernel name contains one of
//! them (`matmul`, `softmax`, `gelu`, `add`, `permute`, `sum`, `dispatch`). Environment:
//! `VITGAN_BENCH_SECONDS` (time budget per case for the repetitions, default 2),
//! `VITGAN_BENCH_REPS` (fixed repetition count), `VITGAN_BENCH_TIMER=wall|gpu` (force the timer),
//! `VITGAN_MATMUL_OPERANDS=buffers|textures` (operand source of the CPU matmul kernels), plus the adapter choice of `Gpu::default_adapter`
//! (`VITGAN_ADAPTER`, `VITGAN_BACKEND`) and `VITGAN_MATMUL_TILE`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;
use vitgan::ops::elementwise::{self, Unary};
use vitgan::ops::matmul::{
    Activation, MatmulOptions, SUBGROUP_KERNEL_MIN_FLOPS, TileConfig, matmul_fused,
};
use vitgan::ops::{conv, layout, pool, reduce, resize, softmax};
use vitgan::{Result, Tensor};

mod harness;
use harness::*;

/// A matmul shape: C[M,N] = op(A)·op(B) with inner dimension K.
#[derive(Clone, Copy)]
struct MatmulShape {
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
}

impl MatmulShape {
    const fn plain(m: usize, k: usize, n: usize) -> MatmulShape {
        MatmulShape {
            m,
            k,
            n,
            trans_a: false,
            trans_b: false,
        }
    }
    fn label(&self) -> String {
        format!(
            "{}x{}x{}{}{}",
            self.m,
            self.k,
            self.n,
            if self.trans_a { " A^T" } else { "" },
            if self.trans_b { " B^T" } else { "" }
        )
    }
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n) as f64
    }
}

impl Bench {
    /// `epilogue`: bias + GELU fused into the product; `save_preact`: also store the pre-activations
    /// (what a training forward does, for the backward).
    fn matmul_case(
        &mut self,
        kernel: &str,
        s: MatmulShape,
        epilogue: bool,
        save_preact: bool,
    ) -> Result<()> {
        // the yardstick runs right before our kernel, so both see the same machine load
        let numpy = self.numpy_gflops(s);
        let a_shape = if s.trans_a { [s.k, s.m] } else { [s.m, s.k] };
        let b_shape = if s.trans_b { [s.n, s.k] } else { [s.k, s.n] };
        let (a, a_host) = self.random_tensor_and_data(&a_shape)?;
        let (b, b_host) = self.random_tensor_and_data(&b_shape)?;
        let (bias, bias_host) = self.random_tensor_and_data(&[s.n])?;
        let opts = MatmulOptions {
            trans_a: s.trans_a,
            trans_b: s.trans_b,
            bias: epilogue.then_some(&bias),
            act: if epilogue {
                Activation::Gelu
            } else {
                Activation::None
            },
            save_preact,
        };
        let m = self.measure(&|| matmul_fused(&a, &b, opts).map(drop))?;
        // a timing of wrong results is worthless: compare a few rows with an f64 reference
        let c = matmul_fused(&a, &b, opts)?.0.to_vec()?;
        check_matmul_rows(s, &a_host, &b_host, epilogue.then_some(&bias_host[..]), &c)?;
        let tiles = TileConfig::for_problem(&self.gpu, s.flops());
        let variant = format!("{:?} {}x{}", tiles.kernel, tiles.bm(), tiles.bn());
        self.report(
            kernel,
            &s.label(),
            Work::Flops(s.flops()),
            &m,
            numpy,
            Some(variant),
        )
    }

    /// OpenBLAS SGEMM GFLOP/s on shape `s` via numpy (all cores); `None` (with a note, once) when
    /// python3 or numpy cannot be run.
    fn numpy_gflops(&mut self, s: MatmulShape) -> Option<f64> {
        if !self.numpy_available {
            return None;
        }
        match numpy_sgemm(s) {
            Ok(gflops) => Some(gflops),
            Err(why) => {
                println!("note: {why}; skipping the numpy/OpenBLAS ratio");
                self.numpy_available = false;
                None
            }
        }
    }

    /// A bandwidth-bound case on freshly made random inputs.
    fn bandwidth_case(
        &mut self,
        kernel: &str,
        shapes: &[&[usize]],
        bytes: f64,
        run: impl Fn(&[Tensor]) -> Result<Tensor>,
    ) -> Result<()> {
        if !self.selected(kernel) {
            return Ok(());
        }
        let inputs = shapes
            .iter()
            .map(|s| self.random_tensor(s))
            .collect::<Result<Vec<_>>>()?;
        let m = self.measure(&|| run(&inputs).map(drop))?;
        self.report(
            kernel,
            &format!("{:?}", shapes[0]),
            Work::Bytes(bytes),
            &m,
            None,
            None,
        )
    }

    /// Per-dispatch cost of 1,000 tiny kernels: all recorded then submitted once, vs a submit after each.
    fn dispatch_overhead(&mut self) -> Result<()> {
        const N: usize = 1000;
        let x = self.random_tensor(&[256])?;
        let gpu = self.gpu.clone();
        let run = |flush_each: bool| -> Result<f64> {
            gpu.sync()?;
            let t = Instant::now();
            for _ in 0..N {
                drop(elementwise::unary(&x, Unary::Relu)?);
                if flush_each {
                    gpu.flush()?;
                }
            }
            gpu.sync()?;
            Ok(ms_since(t))
        };
        let mut results = Vec::new();
        for (kernel, flush_each) in [("dispatch_batched", false), ("dispatch_submit_each", true)] {
            let t = Instant::now();
            run(flush_each)?;
            let first_call_ms = ms_since(t);
            let mut times = (0..5)
                .map(|_| run(flush_each))
                .collect::<Result<Vec<_>>>()?;
            times.sort_by(f64::total_cmp);
            let median_ms = times[times.len() / 2];
            let us = median_ms * 1e3 / N as f64;
            println!(
                "{kernel:<18} {:<22} {median_ms:>9.3} ms  {us:>8.2} µs/dispatch  first {first_call_ms:>8.1} ms  (wall x5)  [{}]",
                format!("{N} x relu[256]"),
                self.adapter
            );
            self.append_json(&format!(
                "{{\"kernel\":{},\"shape\":{},\"adapter\":{},\"backend\":{},\"median_ms\":{},\"first_call_ms\":{},\"us_per_dispatch\":{},\"timer\":\"wall\",\"reps\":5,\"date\":{}}}",
                json_str(kernel),
                json_str(&format!("{N}x[256]")),
                json_str(&self.adapter),
                json_str(&self.backend),
                json_num(median_ms),
                json_num(first_call_ms),
                json_num(us),
                self.date
            ))?;
            results.push(us);
        }
        println!(
            "dispatch overhead: {:.2} µs batched vs {:.2} µs with a submit after each ({:.1}x)",
            results[0],
            results[1],
            results[1] / results[0]
        );
        Ok(())
    }
}

/// Compare rows 0, M/2 and M−1 of `c` with an f64 reference of op(A)·op(B) (+ bias, GELU).
fn check_matmul_rows(
    s: MatmulShape,
    a: &[f32],
    b: &[f32],
    bias_gelu: Option<&[f32]>,
    c: &[f32],
) -> Result<()> {
    for row in [0, s.m / 2, s.m - 1] {
        for col in 0..s.n {
            let mut z = 0.0f64;
            for kk in 0..s.k {
                let av = if s.trans_a {
                    a[kk * s.m + row]
                } else {
                    a[row * s.k + kk]
                };
                let bv = if s.trans_b {
                    b[col * s.k + kk]
                } else {
                    b[kk * s.n + col]
                };
                z += av as f64 * bv as f64;
            }
            if let Some(bias) = bias_gelu {
                z += bias[col] as f64;
                z = 0.5 * z * (1.0 + (0.7978845608028654 * (z + 0.044715 * z * z * z)).tanh());
            }
            let got = c[row * s.n + col] as f64;
            let tol = 1e-5 * (s.k as f64).sqrt() * 4.0 + 1e-4 * z.abs();
            if (got - z).abs() > tol || !got.is_finite() {
                return Err(vitgan::Error::Device(format!(
                    "matmul {} gave C[{row}, {col}] = {got}, the f64 reference is {z}",
                    s.label()
                )));
            }
        }
    }
    Ok(())
}

/// OpenBLAS SGEMM (numpy, `OPENBLAS_NUM_THREADS` = all cores) GFLOP/s on one shape, or why not.
fn numpy_sgemm(s: MatmulShape) -> std::result::Result<f64, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/numpy_sgemm.py");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = Command::new("python3")
        .arg(&script)
        .arg(format!(
            "{},{},{},{},{}",
            s.m, s.k, s.n, s.trans_a as u8, s.trans_b as u8
        ))
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .output()
        .map_err(|e| format!("python3 could not be run ({e})"))?;
    if !out.status.success() {
        return Err(format!(
            "the numpy SGEMM yardstick failed ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // `M K N TA TB median_ms gflops`
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .split_whitespace()
        .nth(6)
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| format!("unexpected output from {}: {stdout}", script.display()))
}

fn main() -> Result<()> {
    let mut bench = Bench::from_args()?;
    println!(
        "matmul: {:?} below {SUBGROUP_KERNEL_MIN_FLOPS:e} flops, {:?} from there",
        TileConfig::for_problem(&bench.gpu, 0.0),
        TileConfig::for_gpu(&bench.gpu)
    );

    // --- matmul, with OpenBLAS as the yardstick -------------------------------------------------
    let plain = [
        MatmulShape::plain(8192, 384, 1152),
        MatmulShape::plain(8192, 384, 1536),
        MatmulShape::plain(8192, 1536, 384),
        MatmulShape::plain(8192, 384, 384),
        MatmulShape::plain(1024, 384, 1536),
    ];
    // the two backward products of a Linear(384→1536) on 8192 tokens: dW = Xᵀ·dY and dX = dY·Wᵀ
    let transposed = [
        (
            "matmul_at",
            MatmulShape {
                trans_a: true,
                ..MatmulShape::plain(384, 8192, 1536)
            },
        ),
        (
            "matmul_bt",
            MatmulShape {
                trans_b: true,
                ..MatmulShape::plain(8192, 1536, 384)
            },
        ),
    ];
    let fused = MatmulShape::plain(8192, 384, 1536);
    // the narrow weight gradients of a `tiny` step: the INR's output and hidden layers over 8,192
    // pixels (cut into K-slices on CPU adapters, see `ops::matmul::k_slices`), D's and G's 64 × 64
    // weights over 1,088 and 512 tokens
    if bench.selected("matmul_at_narrow") {
        for (m, k, n) in [(3, 8192, 32), (32, 8192, 32), (64, 1088, 64), (64, 512, 64)] {
            let shape = MatmulShape {
                trans_a: true,
                ..MatmulShape::plain(m, k, n)
            };
            bench.matmul_case("matmul_at_narrow", shape, false, false)?;
        }
    }
    if bench.selected("matmul") {
        for s in plain {
            bench.matmul_case("matmul", s, false, false)?;
        }
    }
    if bench.selected("matmul_bias_gelu") {
        bench.matmul_case("matmul_bias_gelu", fused, true, false)?;
    }
    if bench.selected("matmul_bias_gelu_train") {
        bench.matmul_case("matmul_bias_gelu_train", fused, true, true)?;
    }
    for (kernel, s) in transposed {
        if bench.selected(kernel) {
            bench.matmul_case(kernel, s, false, false)?;
        }
    }

    // --- bandwidth-bound kernels ----------------------------------------------------------------
    let f = 4.0; // bytes per f32
    for row in [65usize, 256] {
        // attention scores of 128 images × 6 heads × 65 queries (64 patches + class token), over 65
        // keys, and the same row count over 256 keys (a longer sequence)
        let rows = 128 * 6 * 65;
        let n = (rows * row) as f64;
        bench.bandwidth_case(
            &format!("softmax_{row}"),
            &[&[rows, row]],
            2.0 * f * n,
            |x| softmax::softmax(&x[0]),
        )?;
    }
    let tokens = [128 * 64, 1536];
    let n = (tokens[0] * tokens[1]) as f64;
    bench.bandwidth_case("gelu", &[&tokens], 2.0 * f * n, |x| {
        elementwise::unary(&x[0], Unary::Gelu)
    })?;
    bench.bandwidth_case("add", &[&tokens, &tokens], 3.0 * f * n, |x| {
        elementwise::add(&x[0], &x[1])
    })?;
    // heads split: [B, T, H, dh] → [B, H, T, dh]
    bench.bandwidth_case("permute_0213", &[&[128, 64, 6, 256]], 2.0 * f * n, |x| {
        layout::permute(&x[0], &[0, 2, 1, 3])
    })?;
    // bias gradient: Σ over the token axis
    bench.bandwidth_case("sum_axis0", &[&tokens], f * (n + tokens[1] as f64), |x| {
        reduce::sum_axis(&x[0], 0, false)
    })?;
    bench.bandwidth_case("sum_axis1", &[&tokens], f * (n + tokens[0] as f64), |x| {
        reduce::sum_axis(&x[0], 1, false)
    })?;

    // InceptionV3's image kernels at a batch of 4: the im2col gather of its 3×3 convolution over
    // 147×147×32, that convolution whole (gather + matmul), the 3×3 average pool of Mixed_5b's
    // input, and the 16×16 → 299×299 resize of its input
    let img = [4usize, 147, 147, 32];
    let win = conv::Window2d::square(3, 1, 1);
    let cols = (img[0] * img[1] * img[2] * 9 * img[3]) as f64;
    bench.bandwidth_case(
        "im2col_3x3",
        &[&img],
        f * (cols + (img.iter().product::<usize>()) as f64),
        |x| conv::im2col(&x[0], &win),
    )?;
    if bench.selected("conv2d_3x3") {
        let x = bench.random_tensor(&img)?;
        let w = bench.random_tensor(&[9 * 32, 64])?;
        let m = bench.measure(&|| {
            conv::conv2d(&x, &w, None, &win, Activation::Relu)?;
            Ok(())
        })?;
        let flops = 2.0 * (img[0] * img[1] * img[2]) as f64 * (9 * 32 * 64) as f64;
        bench.report(
            "conv2d_3x3",
            &format!("{img:?} → 64"),
            Work::Flops(flops),
            &m,
            None,
            None,
        )?;
    }
    let pooled = [4usize, 35, 35, 192];
    let n_pool = pooled.iter().product::<usize>() as f64;
    bench.bandwidth_case("avg_pool_3x3", &[&pooled], 2.0 * f * n_pool, |x| {
        pool::pool2d(&x[0], &conv::Window2d::square(3, 1, 1), pool::Pool::Average)
    })?;
    let small = [4usize, 16, 16, 3];
    bench.bandwidth_case(
        "resize_299",
        &[&small],
        f * (4 * 299 * 299 * 3 + 4 * 16 * 16 * 3) as f64,
        |x| resize::resize_bilinear(&x[0], 299, 299),
    )?;

    // --- dispatch overhead ------------------------------------------------------------------------
    if bench.selected("dispatch") {
        bench.dispatch_overhead()?;
    }
    println!("results appended to {}", bench.results_path.display());
    Ok(())
}

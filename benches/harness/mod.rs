//! The benchmark harness shared by `benches/kernels.rs` and `benches/model.rs`: adapter, filters,
//! first-call latency, warm-up, median of N runs (GPU timestamps on GPUs that have them, else wall
//! clock plus a device sync), printing and one JSON object per result appended to
//! `$CARGO_TARGET_DIR/bench-results.jsonl` (default `target/`).
#![allow(dead_code)]

use rand::{Rng, SeedableRng, rngs::StdRng};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use vitgan::{Gpu, Result, Tensor};

/// Whether runs are timed by the wall clock (plus a device sync) rather than GPU timestamps:
/// `VITGAN_BENCH_TIMER=wall|gpu` chooses; by default adapters without timestamp queries and CPU
/// adapters use the wall clock. On lavapipe (Mesa 22.3) the timestamps of a compute pass come out far
/// too short once any pass has used a storage texture (the CPU matmul kernels do), and on a CPU the
/// wall clock measures the same thing.
fn wall_clock_only(gpu: &Gpu) -> bool {
    match std::env::var("VITGAN_BENCH_TIMER").as_deref() {
        Ok("wall") => true,
        Ok("gpu") => !gpu.has_timestamps(),
        _ => !gpu.has_timestamps() || gpu.is_cpu(),
    }
}

/// What a case's throughput is measured in.
#[derive(Clone, Copy)]
pub enum Work {
    /// Floating-point operations per run (reported as GFLOP/s).
    Flops(f64),
    /// Bytes read + written per run (reported as GB/s).
    Bytes(f64),
    /// Images processed per run (reported as images/s).
    Images(f64),
}

/// Timing of one case.
pub struct Measurement {
    pub first_call_ms: f64,
    pub median_ms: f64,
    pub reps: usize,
    /// `"gpu"` (timestamp queries) or `"wall"` (wall clock + sync).
    pub timer: &'static str,
}

impl Measurement {
    fn of(first_call_ms: f64, mut times: Vec<f64>, timer: &'static str) -> Measurement {
        times.sort_by(f64::total_cmp);
        Measurement {
            first_call_ms,
            median_ms: times[times.len() / 2],
            reps: times.len(),
            timer,
        }
    }
}

pub struct Bench {
    pub gpu: Gpu,
    pub filters: Vec<String>,
    pub rng: StdRng,
    pub results_path: PathBuf,
    pub adapter: String,
    pub backend: String,
    pub date: u64,
    /// Cleared (after printing why) the first time numpy cannot be run.
    pub numpy_available: bool,
}

impl Bench {
    /// Open the default adapter (honouring `VITGAN_ADAPTER` / `VITGAN_BACKEND`), print it, and take
    /// the command line's non-flag arguments as filters.
    pub fn from_args() -> Result<Bench> {
        let filters: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let gpu = Gpu::default_adapter()?;
        let info = gpu.info().clone();
        println!("adapter: {}", gpu.describe());
        println!(
            "timer: {}",
            if wall_clock_only(&gpu) {
                "wall clock + device sync"
            } else {
                "GPU timestamps"
            }
        );
        Ok(Bench {
            gpu,
            filters,
            rng: StdRng::seed_from_u64(0x5eed),
            results_path: results_path(),
            adapter: info.name.clone(),
            backend: format!("{:?}", info.backend),
            date: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            numpy_available: true,
        })
    }

    pub fn selected(&self, kernel: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| kernel.contains(f.as_str()))
    }

    pub fn random_tensor(&mut self, shape: &[usize]) -> Result<Tensor> {
        Ok(self.random_tensor_and_data(shape)?.0)
    }

    pub fn random_tensor_and_data(&mut self, shape: &[usize]) -> Result<(Tensor, Vec<f32>)> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.rng.random_range(-1.0..1.0)).collect();
        Ok((Tensor::from_slice(&self.gpu, &data, shape)?, data))
    }

    /// First call, warm-up, then the median of N runs of `body` (which records dispatches).
    pub fn measure(&self, body: &dyn Fn() -> Result<()>) -> Result<Measurement> {
        let (first_call_ms, one_ms) = self.first_call_and_warm_up(body)?;
        let reps = self.repetitions(one_ms);
        let mut times = Vec::with_capacity(reps);
        let mut timer = "gpu";
        for _ in 0..reps {
            let (ms, t) = self.time_once(body)?;
            times.push(ms);
            timer = t;
        }
        Ok(Measurement::of(first_call_ms, times, timer))
    }

    /// [`Bench::measure`] for bodies whose times are compared (fused vs unfused, a kernel vs a copy):
    /// after every body's first call and warm-up the repetitions go round-robin (`a`, `b`, `a`, `b`,
    /// …), so a slow spell of a shared machine lands on every median instead of skewing their ratios.
    pub fn measure_alternating(
        &self,
        bodies: &[&dyn Fn() -> Result<()>],
    ) -> Result<Vec<Measurement>> {
        let mut firsts = Vec::with_capacity(bodies.len());
        let mut one_round_ms = 0.0;
        for body in bodies {
            let (first, one) = self.first_call_and_warm_up(*body)?;
            firsts.push(first);
            one_round_ms += one;
        }
        let reps = self.repetitions(one_round_ms);
        let mut times = vec![Vec::with_capacity(reps); bodies.len()];
        let mut timers = vec!["gpu"; bodies.len()];
        for _ in 0..reps {
            for ((body, t), timer) in bodies.iter().zip(times.iter_mut()).zip(timers.iter_mut()) {
                let (ms, which) = self.time_once(*body)?;
                t.push(ms);
                *timer = which;
            }
        }
        Ok(firsts
            .into_iter()
            .zip(times)
            .zip(timers)
            .map(|((first, t), timer)| Measurement::of(first, t, timer))
            .collect())
    }

    /// The first call's time (pipeline compilation + first dispatch), then warm-up runs (at least one,
    /// until ~10% of the budget is spent); returns (first call ms, last warm-up run ms).
    fn first_call_and_warm_up(&self, body: &dyn Fn() -> Result<()>) -> Result<(f64, f64)> {
        let gpu = &self.gpu;
        gpu.sync()?;
        let t0 = Instant::now();
        body()?;
        gpu.sync()?;
        let first_call_ms = ms_since(t0);
        let budget_ms = env_f64("VITGAN_BENCH_SECONDS", 2.0) * 1e3;
        let warm = Instant::now();
        loop {
            let t = Instant::now();
            body()?;
            gpu.sync()?;
            let one_ms = ms_since(t);
            if ms_since(warm) >= 0.1 * budget_ms || ms_since(warm) >= 3.0 * one_ms.max(1.0) {
                return Ok((first_call_ms, one_ms));
            }
        }
    }

    /// Repetitions that fill the time budget at `one_ms` each (`VITGAN_BENCH_REPS` fixes the count).
    fn repetitions(&self, one_ms: f64) -> usize {
        let budget_ms = env_f64("VITGAN_BENCH_SECONDS", 2.0) * 1e3;
        match std::env::var("VITGAN_BENCH_REPS")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            Some(n) => std::cmp::max(n, 1),
            None => ((budget_ms / one_ms.max(1e-3)).ceil() as usize).clamp(5, 200),
        }
    }

    /// One timed run of `body`: (ms, `"gpu"` or `"wall"`).
    fn time_once(&self, body: &dyn Fn() -> Result<()>) -> Result<(f64, &'static str)> {
        let gpu = &self.gpu;
        let t = Instant::now();
        let gpu_ms = if wall_clock_only(gpu) {
            body()?;
            gpu.sync()?;
            None
        } else {
            gpu.time_gpu(body)?
        };
        Ok(match gpu_ms {
            Some(ms) => (ms, "gpu"),
            None => (ms_since(t), "wall"),
        })
    }

    /// Print one result row and append it to the JSONL file.
    pub fn report(
        &self,
        kernel: &str,
        shape: &str,
        work: Work,
        m: &Measurement,
        yardstick: Option<f64>,
        variant: Option<String>,
    ) -> Result<()> {
        let rate = match work {
            Work::Flops(f) => f / m.median_ms / 1e6,
            Work::Bytes(b) => b / m.median_ms / 1e6,
            Work::Images(n) => n / m.median_ms * 1e3,
        };
        let unit = match work {
            Work::Flops(_) => "GFLOP/s",
            Work::Bytes(_) => "GB/s",
            Work::Images(_) => "img/s",
        };
        let versus = match yardstick {
            Some(y) => format!("  numpy {y:7.1} GFLOP/s  ratio {:5.3}", rate / y),
            None => String::new(),
        };
        let variant_note = variant
            .as_ref()
            .map_or(String::new(), |v| format!("  {{{v}}}"));
        println!(
            "{kernel:<18} {shape:<22} {:>9.3} ms  {rate:>8.2} {unit:<7}  first {:>8.1} ms  ({} x{}){versus}{variant_note}  [{}]",
            m.median_ms, m.first_call_ms, m.timer, m.reps, self.adapter
        );
        let mut json = format!(
            "{{\"kernel\":{},\"shape\":{},\"adapter\":{},\"backend\":{},\"median_ms\":{},\"first_call_ms\":{}",
            json_str(kernel),
            json_str(shape),
            json_str(&self.adapter),
            json_str(&self.backend),
            json_num(m.median_ms),
            json_num(m.first_call_ms),
        );
        match work {
            Work::Flops(_) => json += &format!(",\"gflops\":{}", json_num(rate)),
            Work::Bytes(_) => json += &format!(",\"gbps\":{}", json_num(rate)),
            Work::Images(_) => json += &format!(",\"images_per_s\":{}", json_num(rate)),
        }
        if let Some(y) = yardstick {
            json += &format!(
                ",\"numpy_gflops\":{},\"ratio\":{}",
                json_num(y),
                json_num(rate / y)
            );
        }
        if let Some(v) = &variant {
            json += &format!(",\"variant\":{}", json_str(v));
        }
        json += &format!(
            ",\"timer\":{},\"reps\":{},\"date\":{}}}",
            json_str(m.timer),
            m.reps,
            self.date
        );
        self.append_json(&json)
    }

    /// A yardstick measured outside this crate (PyTorch): printed like [`Bench::report`] with
    /// `runner` in place of the adapter, and appended with `"backend":"external"`.
    pub fn report_external(
        &self,
        kernel: &str,
        shape: &str,
        work: Work,
        median_ms: f64,
        runner: &str,
    ) -> Result<()> {
        let (rate, unit, key) = match work {
            Work::Flops(f) => (f / median_ms / 1e6, "GFLOP/s", "gflops"),
            Work::Bytes(b) => (b / median_ms / 1e6, "GB/s", "gbps"),
            Work::Images(n) => (n / median_ms * 1e3, "img/s", "images_per_s"),
        };
        println!("{kernel:<18} {shape:<22} {median_ms:>9.3} ms  {rate:>8.2} {unit:<7}  [{runner}]");
        self.append_json(&format!(
            "{{\"kernel\":{},\"shape\":{},\"adapter\":{},\"backend\":\"external\",\"median_ms\":{},\"{key}\":{},\"date\":{}}}",
            json_str(kernel),
            json_str(shape),
            json_str(runner),
            json_num(median_ms),
            json_num(rate),
            self.date
        ))
    }

    pub fn append_json(&self, line: &str) -> Result<()> {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.results_path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.results_path)?;
            writeln!(f, "{line}")
        };
        write().map_err(|e| {
            vitgan::Error::Device(format!(
                "could not append to {}: {e}",
                self.results_path.display()
            ))
        })
    }
}

pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

pub fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|v: &f64| *v > 0.0)
        .unwrap_or(default)
}

/// A JSON string literal (quotes, backslashes and control characters escaped).
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number (non-finite values become `null`).
pub fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "null".to_string()
    }
}

/// `$CARGO_TARGET_DIR/bench-results.jsonl`, or `target/` under the crate root.
pub fn results_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = match std::env::var("CARGO_TARGET_DIR") {
        Ok(d) if !d.is_empty() => root.join(d), // an absolute path replaces `root`
        _ => root.join("target"),
    };
    dir.join("bench-results.jsonl")
}

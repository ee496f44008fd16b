//! ViTGAN-level benchmarks: `cargo bench --bench model [-- FILTER ...]`.
//!
//! - fused L2 / dot-product attention vs the unfused composition (scores written to memory), at
//!   B=128, H=6, Dh=64 and L = 65 and 256, forward and forward+backward, with the ratio;
//! - LayerNorm / self-modulated LayerNorm vs a plain copy of the same tensor (bandwidth ratio);
//! - the INR patch decoder fused vs unfused (128×64 patches of 4×4 pixels);
//! - G and D forward and forward+backward time per image at the `cifar32` preset;
//! - a full training step (G and D, bCR and augmentation on) in images/s at `cifar32` and `tiny`
//!   (`VITGAN_BENCH_RECIPE=default`: the trainer's default recipe instead, neither bCR nor aug;
//!   `VITGAN_BENCH_REUSE_FAKES=on|off`: G's step on D's latents and images, or not, over the recipe's);
//! - InceptionV3 (pytorch-fid's network, closed-form weights: same work) forward in images/s.
//!
//! Batches default to the paper's 128 on GPUs and to smaller ones on CPU adapters (lavapipe), where
//! one cifar32 step at batch 128 takes minutes; `VITGAN_BENCH_BATCH` overrides. `VITGAN_PROFILE=1` adds
//! a per-kernel profile of one step (each dispatch submitted alone). Timing, output and
//! the JSON lines are those of `benches/kernels.rs` (shared harness in `benches/harness/mod.rs`).

mod harness;

use harness::{Bench, Work};
use vitgan::autodiff::Tape;
use vitgan::autodiff::attention::attention_unfused;
use vitgan::autodiff::inr::inr_decode_unfused;
use vitgan::metrics::inception::{FormulaWeights, INPUT_SIZE, InceptionV3};
use vitgan::model::ModelConfig;
use vitgan::nn::Init;
use vitgan::ops::attention::AttentionKind;
use vitgan::ops::elementwise::Unary;
use vitgan::ops::layer_norm::layer_norm_forward;
use vitgan::train::{TrainConfig, Trainer};
use vitgan::{Result, Tensor};

/// Time `run(fused, backward)` fused and unfused, forward and forward+backward, and print the ratio.
/// `flops` is the forward's work; forward+backward counts `backward_factor` times it.
fn compare_fused(
    bench: &Bench,
    name: &str,
    label: &str,
    flops: f64,
    backward_factor: f64,
    run: &dyn Fn(bool, bool) -> Result<()>,
) -> Result<()> {
    for backward in [false, true] {
        let pass = if backward { "fwd+bwd" } else { "fwd" };
        let m = bench.measure_alternating(&[&|| run(true, backward), &|| run(false, backward)])?;
        let (fused, unfused) = (&m[0], &m[1]);
        let work = Work::Flops(if backward {
            backward_factor * flops
        } else {
            flops
        });
        bench.report(
            &format!("{name}_fused_{pass}"),
            label,
            work,
            fused,
            None,
            None,
        )?;
        bench.report(
            &format!("{name}_unfused_{pass}"),
            label,
            work,
            unfused,
            None,
            None,
        )?;
        println!(
            "    fused is {:.2}x faster than unfused",
            unfused.median_ms / fused.median_ms
        );
    }
    Ok(())
}

/// An error unless `copy` holds exactly the values `want` (the benchmark then stops with it).
fn check_copy(name: &str, want: &[f32], copy: &Tensor) -> Result<()> {
    let got = copy.to_vec()?;
    let wrong = (got.len() != want.len())
        .then_some(got.len().min(want.len()))
        .or_else(|| (0..want.len()).find(|&i| got[i].to_bits() != want[i].to_bits()));
    match wrong {
        None => Ok(()),
        Some(i) => Err(vitgan::Error::Other(format!(
            "{name} does not copy its input: {} of {} values, element {i} is {:?} but the input \
             holds {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        ))),
    }
}

fn main() -> Result<()> {
    let mut bench = Bench::from_args()?;
    let cpu = bench.gpu.is_cpu();
    let batch_override: Option<usize> = std::env::var("VITGAN_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok());
    // the training step's recipe: the paper's (bCR 10, DiffAugment 0.8; the default here) or the
    // trainer's default (neither)
    let default_recipe = match std::env::var("VITGAN_BENCH_RECIPE").as_deref() {
        Err(_) | Ok("paper") => false,
        Ok("default") => true,
        Ok(other) => {
            return Err(vitgan::Error::Other(format!(
                "VITGAN_BENCH_RECIPE={other}: use `paper` or `default`"
            )));
        }
    };
    let reuse_fakes = match std::env::var("VITGAN_BENCH_REUSE_FAKES").as_deref() {
        Err(_) => None,
        Ok("on") => Some(true),
        Ok("off") => Some(false),
        Ok(other) => {
            return Err(vitgan::Error::Other(format!(
                "VITGAN_BENCH_REUSE_FAKES={other}: use `on` or `off` (unset: the recipe's)"
            )));
        }
    };

    // ---- attention: fused vs unfused
    // ViTGAN's length at batch 128, and L = 256. On CPU adapters L = 256 runs at batch 16 (the unfused
    // scores at batch 128, 201 MB, exceed lavapipe's 128 MiB binding), so L = 65 runs at batch 16 too
    // for a comparison at equal batch.
    // The `tiny` preset's shape too (its D at batch 32 sees 64 images: 4 heads of width 16, 17 tokens;
    // `VITGAN_ATTENTION_KERNEL=composed` runs it as the unfused rows). Cases are (sequence length,
    // batch, heads, head width).
    let mut cases = vec![(65usize, 128usize, 6usize, 64usize), (17, 64, 4, 16)];
    if cpu {
        cases.extend([(65, 16, 6, 64), (256, 16, 6, 64)]);
    } else {
        cases.push((256, 128, 6, 64));
    }
    if let Some(b) = batch_override {
        cases = vec![(65, b, 6, 64), (256, b, 6, 64), (17, b, 4, 16)];
    }
    for (len, batch, heads, dh) in cases {
        let shape = [batch, heads, len, dh];
        for kind in [AttentionKind::L2, AttentionKind::Dot] {
            let name = format!("attention_{kind:?}").to_lowercase();
            if !bench.selected(&name) {
                continue;
            }
            let q = bench.random_tensor(&shape)?;
            let k = if kind == AttentionKind::L2 {
                q.clone()
            } else {
                bench.random_tensor(&shape)?
            };
            let v = bench.random_tensor(&shape)?;
            let flops = 4.0 * (batch * heads * len * len * dh) as f64;
            let label = format!("B{batch} H{heads} L{len} Dh{dh}");
            let gpu = bench.gpu.clone();
            let run = |fused: bool, backward: bool| -> Result<()> {
                let tape = Tape::new(&gpu);
                let (qv, vv) = (
                    tape.leaf(q.clone(), backward),
                    tape.leaf(v.clone(), backward),
                );
                let kv = if kind == AttentionKind::L2 {
                    qv
                } else {
                    tape.leaf(k.clone(), backward)
                };
                let out = match (fused, kind) {
                    (true, AttentionKind::L2) => tape.l2_attention_tied_fused(qv, vv)?,
                    (true, AttentionKind::Dot) => tape.attention_fused(qv, kv, vv, kind)?,
                    (false, _) => attention_unfused(&tape, qv, kv, vv, kind)?,
                };
                if backward {
                    let loss = tape.sum(out)?;
                    tape.backward(loss)?;
                }
                Ok(())
            };
            compare_fused(&bench, &name, &label, flops, 2.5, &run)?;
        }
    }

    // ---- LayerNorm / SLN vs copy
    if bench.selected("layer_norm") {
        let (b, t, d) = (128usize, 65usize, 384usize);
        let (x, x_data) = bench.random_tensor_and_data(&[b, t, d])?;
        let bytes = 2.0 * (b * t * d * 4) as f64;
        // plain copies in a compute kernel: the identity permutation through the strided-copy kernel
        // (on CPU adapters one invocation moving the whole tensor as vec4s, memcpy-like), and the
        // elementwise kernel computing y = 1·x + 0 (launched like LayerNorm: many invocations)
        let strided = || vitgan::ops::layout::permute(&x, &[0, 1, 2]);
        let elementwise = || vitgan::ops::elementwise::unary(&x, Unary::Affine(1.0, 0.0));
        // a yardstick that does not copy measures nothing: check each once, bit for bit, before timing
        check_copy("copy_strided", &x_data, &strided()?)?;
        check_copy("copy_elementwise", &x_data, &elementwise()?)?;
        let copy_strided = || -> Result<()> {
            strided()?;
            Ok(())
        };
        let copy_elementwise = || -> Result<()> {
            elementwise()?;
            Ok(())
        };
        // LayerNorm's γ, β are [D]; SLN's are per sample, [B, D]
        let (ln_gamma, ln_beta) = (bench.random_tensor(&[d])?, bench.random_tensor(&[d])?);
        let (sln_gamma, sln_beta) = (bench.random_tensor(&[b, d])?, bench.random_tensor(&[b, d])?);
        let layer_norm = || -> Result<()> {
            layer_norm_forward(&x, &ln_gamma, &ln_beta, 1e-5)?;
            Ok(())
        };
        let self_modulated = || -> Result<()> {
            layer_norm_forward(&x, &sln_gamma, &sln_beta, 1e-5)?;
            Ok(())
        };
        // all four alternate, so the ratios compare runs made at the same time
        let m = bench.measure_alternating(&[
            &copy_strided,
            &copy_elementwise,
            &layer_norm,
            &self_modulated,
        ])?;
        let names = [
            "copy_strided",
            "copy_elementwise",
            "layer_norm",
            "self_modulated_ln",
        ];
        for (name, m) in names.iter().zip(&m) {
            bench.report(
                name,
                &format!("{b}x{t}x{d}"),
                Work::Bytes(bytes),
                m,
                None,
                None,
            )?;
        }
        for (name, norm) in names[2..].iter().zip(&m[2..]) {
            for (copy, copy_m) in names[..2].iter().zip(&m[..2]) {
                println!(
                    "    {name} runs at {:.2} of {copy}'s bandwidth",
                    copy_m.median_ms / norm.median_ms
                );
            }
        }
    }

    // ---- INR decoder fused vs unfused
    if bench.selected("inr") {
        let (n, t, f, c) = (128 * 64usize, 16usize, 128usize, 3usize);
        let e = bench.random_tensor(&[t, f])?;
        let s1 = bench.random_tensor(&[n, f])?;
        let s2 = bench.random_tensor(&[n, f])?;
        let w1 = bench.random_tensor(&[f, f])?;
        let b1 = bench.random_tensor(&[f])?;
        let w2 = bench.random_tensor(&[c, f])?;
        let b2 = bench.random_tensor(&[c])?;
        let gpu = bench.gpu.clone();
        let run = |fused: bool, backward: bool| -> Result<()> {
            let tape = Tape::new(&gpu);
            let leaf = |t: &Tensor| tape.leaf(t.clone(), backward);
            let vars = [
                leaf(&e),
                leaf(&s1),
                leaf(&s2),
                leaf(&w1),
                leaf(&b1),
                leaf(&w2),
                leaf(&b2),
            ];
            let [e, s1, s2, w1, b1, w2, b2] = vars;
            let out = if fused {
                tape.inr_decode(e, s1, s2, w1, b1, w2, b2, true)?
            } else {
                inr_decode_unfused(&tape, e, s1, s2, w1, b1, w2, b2, true)?
            };
            if backward {
                let loss = tape.sum(out)?;
                tape.backward(loss)?;
            }
            Ok(())
        };
        let flops = 2.0 * (n * t * (f * f + c * f)) as f64;
        let label = format!("N{n} P²{t} F{f} C{c}");
        compare_fused(&bench, "inr", &label, flops, 3.0, &run)?;
    }

    // ---- G and D per image at cifar32
    if bench.selected("generator") || bench.selected("discriminator") {
        let cfg = ModelConfig::cifar32();
        let batch = batch_override.unwrap_or(if cpu { 16 } else { 128 });
        let gpu = bench.gpu.clone();
        let mut init = Init::new(1);
        let mut gp = vitgan::ParamStore::new();
        let mut dp = vitgan::ParamStore::new();
        let generator = vitgan::model::Generator::new(&gpu, &mut gp, &mut init, &cfg)?;
        let discriminator = vitgan::model::Discriminator::new(&gpu, &mut dp, &mut init, &cfg)?;
        let z = bench.random_tensor(&[batch, cfg.latent_dim])?;
        let img = bench.random_tensor(&[batch, 32, 32, 3])?;
        let label = format!("cifar32 batch {batch}");
        for backward in [false, true] {
            let pass = if backward { "fwd+bwd" } else { "fwd" };
            let g = bench.measure(&|| {
                let tape = Tape::new(&gpu);
                if !backward {
                    tape.no_grad(|| generator.forward(&tape, tape.constant(z.clone())))?;
                    return Ok(());
                }
                let out = generator.forward(&tape, tape.constant(z.clone()))?;
                let loss = tape.mean(out)?;
                tape.backward(loss)
            })?;
            bench.report(
                &format!("generator_{pass}"),
                &label,
                Work::Images(batch as f64),
                &g,
                None,
                None,
            )?;
            let d = bench.measure(&|| {
                let tape = Tape::new(&gpu);
                if !backward {
                    tape.no_grad(|| discriminator.forward(&tape, tape.constant(img.clone())))?;
                    return Ok(());
                }
                let out = discriminator.forward(&tape, tape.leaf(img.clone(), true))?;
                let loss = tape.mean(out)?;
                tape.backward(loss)
            })?;
            bench.report(
                &format!("discriminator_{pass}"),
                &label,
                Work::Images(batch as f64),
                &d,
                None,
                None,
            )?;
        }
    }

    // ---- full training step
    for preset in ["tiny", "cifar32"] {
        let name = format!("train_step_{preset}");
        if !bench.selected(&name) {
            continue;
        }
        let model = ModelConfig::preset(preset)?;
        let default_batch = if preset == "tiny" {
            32
        } else if cpu {
            8
        } else {
            128
        };
        let batch = batch_override.unwrap_or(default_batch);
        let (recipe, recipe_label) = if default_recipe {
            let d = TrainConfig::default();
            let label = format!(
                "default recipe: no bCR, no aug, LeCam {}, R1 {} every {} steps",
                d.lecam, d.r1, d.r1_every
            );
            (d, label)
        } else {
            (TrainConfig::paper(), "bCR, aug 0.8".to_string())
        };
        let cfg = TrainConfig {
            batch,
            reuse_fakes: reuse_fakes.unwrap_or(recipe.reuse_fakes),
            ..recipe
        };
        let recipe_label = if cfg.reuse_fakes {
            format!("{recipe_label}; G's step on D's fakes")
        } else {
            recipe_label
        };
        let mut first = Trainer::new(&bench.gpu, &model, &cfg)?;
        let s = model.image_size;
        let real = bench.random_tensor(&[batch, s, s, model.channels])?;
        // the first step's inputs and losses, for the PyTorch yardstick to check it computes the same
        let inputs = first.step_inputs(&real)?;
        let out = first.train_step(&real)?;
        let losses = (out.d_loss.to_vec()?[0], out.g_loss.to_vec()?[0]);
        let trainer = std::cell::RefCell::new(first);
        let m = bench.measure(&|| {
            trainer.borrow_mut().train_step(&real)?;
            Ok(())
        })?;
        let label = format!("{preset} batch {batch} ({recipe_label})");
        bench.report(&name, &label, Work::Images(batch as f64), &m, None, None)?;
        // what one step asks of the device
        let gpu = &bench.gpu;
        let before = (
            gpu.dispatch_count(),
            gpu.submit_count(),
            gpu.uploaded_bytes(),
        );
        trainer.borrow_mut().train_step(&real)?;
        gpu.sync()?;
        println!(
            "    one step: {} dispatches, {} submits, {:.1} KiB uploaded",
            gpu.dispatch_count() - before.0,
            gpu.submit_count() - before.1,
            (gpu.uploaded_bytes() - before.2) as f64 / 1024.0
        );
        print_family_profile(gpu, || trainer.borrow_mut().train_step(&real).map(|_| ()))?;
        match pytorch_step(&inputs, losses, &format!("{preset}_b{batch}")) {
            Ok((torch_ms, runner)) => {
                bench.report_external(
                    &format!("{name}_pytorch"),
                    &label,
                    Work::Images(batch as f64),
                    torch_ms,
                    &runner,
                )?;
                println!(
                    "    this crate runs the step at {:.2}x PyTorch eager's images/s",
                    torch_ms / m.median_ms
                );
            }
            Err(why) => println!("note: no PyTorch yardstick: {why}"),
        }
    }

    // ---- InceptionV3 (FID features): resize to 299² + the whole network, per image
    if bench.selected("inception") {
        let net = InceptionV3::new(&bench.gpu, &FormulaWeights)?;
        let batch = batch_override.unwrap_or(if cpu { net.batch_size() } else { 50 });
        let x = bench.random_tensor(&[batch, INPUT_SIZE, INPUT_SIZE, 3])?;
        let m = bench.measure(&|| {
            net.forward(&x)?;
            Ok(())
        })?;
        let label = format!("batch {batch}, 299x299");
        bench.report(
            "inception_v3",
            &label,
            Work::Images(batch as f64),
            &m,
            None,
            None,
        )?;
        println!(
            "    FID-10k needs {:.1} min of Inception on this adapter (one reference set more if not cached)",
            1e4 / (batch as f64 / m.median_ms * 1e3) / 60.0
        );
    }
    Ok(())
}

/// Repetitions of the PyTorch step timed by `benches/pytorch_step.py` (`VITGAN_BENCH_TORCH_REPS`).
const TORCH_REPS: usize = 10;

/// The same training step in PyTorch eager (float32, CPU, all cores) through `benches/pytorch_step.py`:
/// it first recomputes the step `inputs` describe and must get this crate's `losses`, then times
/// steps. Returns (median ms, a description of the runner), or why there is no yardstick.
fn pytorch_step(
    inputs: &vitgan::io::checkpoint::Checkpoint,
    losses: (f32, f32),
    case: &str,
) -> std::result::Result<(f64, String), String> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let file = root.join(format!("target/bench-step-{case}.safetensors"));
    inputs
        .save(&file)
        .map_err(|e| format!("could not write {}: {e}", file.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let reps = std::env::var("VITGAN_BENCH_TORCH_REPS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(TORCH_REPS);
    let out = std::process::Command::new("python3")
        .arg(root.join("benches/pytorch_step.py"))
        .arg(&file)
        .arg(format!("--expect={},{}", losses.0, losses.1))
        .arg(format!("--repeat={reps}"))
        .arg(format!("--threads={threads}"))
        .output()
        .map_err(|e| format!("python3 could not be run ({e})"))?;
    let _ = std::fs::remove_file(&file);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "benches/pytorch_step.py failed: {}",
            err.lines().last().unwrap_or("").trim()
        ));
    }
    // `d_loss g_loss median_ms images_per_s`
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ms = stdout
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("unexpected output from benches/pytorch_step.py: {stdout}"))?;
    let version = std::process::Command::new("python3")
        .args(["-c", "import torch; print(torch.__version__)"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok((
        ms,
        format!("PyTorch {version} eager, CPU, {threads} threads, x{reps}"),
    ))
}

/// With `VITGAN_PROFILE=1` (every dispatch submitted and waited for alone, so the sum exceeds a normal
/// step's time): ms, share and dispatches of one call of `step` per kernel family (WGSL file).
fn print_family_profile(gpu: &vitgan::Gpu, step: impl FnOnce() -> Result<()>) -> Result<()> {
    let totals = || -> std::collections::HashMap<String, (u64, f64)> {
        gpu.profile_report()
            .into_iter()
            .map(|(k, n, ms)| (k, (n, ms)))
            .collect()
    };
    let before = totals();
    if before.is_empty() && std::env::var("VITGAN_PROFILE").as_deref() != Ok("1") {
        return Ok(());
    }
    step()?;
    // families: the WGSL files; a pipeline's shader name is its file's stem plus a variant suffix
    let mut stems: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .map_err(|e| vitgan::Error::Device(format!("shaders/: {e}")))?
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".wgsl")
                .map(String::from)
        })
        .collect();
    stems.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut families: std::collections::BTreeMap<String, (u64, f64)> = Default::default();
    for (kernel, (n, ms)) in totals() {
        let (n0, ms0) = before.get(&kernel).copied().unwrap_or_default();
        let shader = kernel.split("::").next().unwrap_or(&kernel);
        let family = stems
            .iter()
            .find(|s| shader.starts_with(s.as_str()))
            .cloned()
            .unwrap_or_else(|| shader.to_string());
        let e = families.entry(family).or_default();
        e.0 += n - n0;
        e.1 += ms - ms0;
    }
    let mut kernels: Vec<(String, u64, f64)> = totals()
        .into_iter()
        .map(|(k, (n, ms))| {
            let (n0, ms0) = before.get(&k).copied().unwrap_or_default();
            (k, n - n0, ms - ms0)
        })
        .filter(|r| r.1 > 0)
        .collect();
    kernels.sort_by(|a, b| b.2.total_cmp(&a.2));
    println!("    slowest kernels of one step (each dispatch alone):");
    for (kernel, n, ms) in kernels.iter().take(20) {
        println!(
            "      {kernel:<48} {ms:>9.1} ms {n:>5} dispatches {:>7.3} ms each",
            ms / *n as f64
        );
    }
    let total: f64 = families.values().map(|v| v.1).sum();
    let mut rows: Vec<_> = families.into_iter().filter(|(_, v)| v.0 > 0).collect();
    rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
    println!("    profile of one step (each dispatch alone): {total:.1} ms");
    for (family, (n, ms)) in rows {
        println!(
            "      {family:<14} {ms:>9.1} ms {:>5.1} %  {n:>5} dispatches",
            100.0 * ms / total
        );
    }
    Ok(())
}

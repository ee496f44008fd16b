//! Whole-step parity with an independent PyTorch implementation (`scripts/step_parity.py`, float64
//! autograd): one training step (D then G, bCR and augmentation on) of a trainer initialised from a
//! fixed seed, compared on D's and G's losses, every logit, every parameter's gradient norm and a
//! few entries of every gradient, against fixtures in `tests/fixtures/step_parity/`.
//!
//! Regenerating a fixture (PyTorch is a dev-time tool only; CI never needs it):
//! ```sh
//! cargo test --release --test step_parity -- --ignored dump   # writes target/step_parity/*
//! python3 scripts/step_parity.py target/step_parity/tiny_b32.safetensors \
//!     tests/fixtures/step_parity/tiny_b32.json                # likewise for the other cases
//! ```
//! The `.safetensors` input holds the initial weights (a training checkpoint), the real batch, both
//! latent batches and the augmentation seeds; no weights are committed.
mod common;
use common::gpu;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use vitgan::Tensor;
use vitgan::data::Batcher;
use vitgan::data::synthetic::synthetic_shapes;
use vitgan::model::ModelConfig;
use vitgan::train::{GanLoss, StepTrace, TrainConfig, Trainer};

/// The parity cases: (name, preset, batch). cifar32 at batch 8 crosses lavapipe's loop limit in the
/// per-head slices of D's attention (4·B·D·(L+1) floats in one run) on an unsplit strided copy.
/// `tiny_b32_reuse`: the same step with G's step on D's latents and generated images (their
/// forward kept on the tape through D's update). The hinge loss has no case: at initialisation
/// every logit lies in (−1, 1), where the exact gradient of D's head bias and final LayerNorm shift
/// is 0, and Adam's first step (`lr·g/(|g| + ε)`) turns float32's ~1e-8 remainder into a move of
/// ~0.8·lr that float64 does not make; `hinge_loss_is_the_formula` checks that loss instead.
const CASES: [(&str, &str, usize); 4] = [
    ("tiny_b32", "tiny", 32),
    ("cifar32_b8", "cifar32", 8),
    ("tiny_b32_reuse", "tiny", 32),
    ("tiny_b32_r1_lecam", "tiny", 32),
];

/// Gradient entries compared per parameter tensor.
const ENTRIES_PER_TENSOR: usize = 4;

/// The training config of every parity case: [`TrainConfig::paper`] (bCR λ = 10, augmentation
/// p = 0.8, Adam lr 0.002, β = (0, 0.99), logistic loss, fresh latents in G's step), not the
/// default, so changes of the default recipe do not move the fixtures; a case named `*_reuse`
/// turns on `reuse_fakes`, one named `*_r1_lecam` R1 γ = 10 (every step: the noisy real batch
/// is a fifth part of D's batch; γ this large so that the term, ~0.6, weighs as much as the
/// losses in the gradients compared) and LeCam λ = 0.1 (its averages are 0 at the first step, so the
/// term is `λ·(E D(x)² + E D(G(z))²)`).
fn parity_config(case: &str, batch: usize) -> TrainConfig {
    let r1_lecam = case.ends_with("_r1_lecam");
    TrainConfig {
        batch,
        seed: 7,
        loss: GanLoss::Logistic,
        reuse_fakes: case.ends_with("_reuse"),
        r1: if r1_lecam { 10.0 } else { 0.0 },
        lecam: if r1_lecam { 0.1 } else { 0.0 },
        ..TrainConfig::paper()
    }
}

fn train_fields(c: &TrainConfig) -> Value {
    serde_json::from_str(&c.step_fields_json()).expect("step_fields_json writes JSON")
}

/// The fixed rule choosing which entries of an `n`-element gradient are compared.
fn entry_indices(n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..ENTRIES_PER_TENSOR)
        .map(|k| (k * 7919 + 3 * k * k + 1) % n)
        .collect();
    idx.dedup();
    idx
}

/// A fresh trainer for `preset` under `config` and the real batch it trains on (the first images
/// of the synthetic set in the batcher's order of step 0).
fn setup(preset: &str, config: &TrainConfig) -> (Trainer, Tensor) {
    let batch = config.batch;
    let mut model = ModelConfig::preset(preset).unwrap();
    // the paper's model, pinned like the training recipe
    model.d_query_gain = 1.0;
    model.g_equalised_affines = false;
    model.inr_demodulate_output = true;
    model.inr_tied_output_init = false;
    let trainer = Trainer::new(&gpu(), &model, config).unwrap();
    let data = synthetic_shapes(256, model.image_size, config.seed);
    let batcher = Batcher::new(data.len, batch, config.seed);
    let mut host = Vec::new();
    Batcher::fill_batch(&data, &batcher.indices_for_step(0), &mut host);
    let shape = [batch, model.image_size, model.image_size, model.channels];
    let real = Tensor::from_slice(&gpu(), &host, &shape).unwrap();
    (trainer, real)
}

fn grads_summary(grads: &[(String, Tensor)]) -> Value {
    let mut out = serde_json::Map::new();
    for (name, g) in grads {
        let v = g.to_vec().unwrap();
        let norm = v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let entries: Vec<Value> = entry_indices(v.len())
            .into_iter()
            .map(|i| json!([i, v[i]]))
            .collect();
        out.insert(
            name.clone(),
            json!({"norm": norm, "numel": v.len(), "entries": entries}),
        );
    }
    Value::Object(out)
}

/// The step's results in the fixture's format.
fn summary(out_d: f32, out_g: f32, trace: &StepTrace) -> Value {
    json!({
        "d_loss": out_d,
        "g_loss": out_g,
        "d_logits": trace.d_logits.to_vec().unwrap(),
        "g_logits": trace.g_logits.to_vec().unwrap(),
        "d_grads": grads_summary(&trace.d_grads),
        "g_grads": grads_summary(&trace.g_grads),
    })
}

fn run_step(trainer: &mut Trainer, real: &Tensor) -> Value {
    let (out, trace) = trainer.train_step_traced(real).unwrap();
    let d = out.d_loss.to_vec().unwrap()[0];
    let g = out.g_loss.to_vec().unwrap()[0];
    summary(d, g, &trace)
}

fn fixture_path(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/step_parity")
        .join(format!("{case}.json"))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("fixture: `{what}` is not a number"))
}

/// Relative difference with a floor, so values near 0 compare absolutely against `scale`.
fn rel(got: f64, want: f64, scale: f64) -> f64 {
    (got - want).abs() / want.abs().max(scale)
}

/// Compares `got` (this crate) with `want` (the fixture); returns every violation, worst first.
fn compare(got: &Value, want: &Value) -> (Vec<String>, BTreeMap<&'static str, f64>) {
    let mut bad = Vec::new();
    let mut worst: BTreeMap<&'static str, f64> = BTreeMap::new();
    let mut note = |kind: &'static str, e: f64| {
        let w = worst.entry(kind).or_insert(0.0);
        *w = w.max(e);
    };
    for key in ["d_loss", "g_loss"] {
        let (g, w) = (num(&got[key], key), num(&want[key], key));
        let e = rel(g, w, 1e-12);
        note("loss", e);
        if e > 1e-4 {
            bad.push(format!("{key}: {g} vs PyTorch {w} (relative {e:.2e})"));
        }
    }
    for key in ["d_logits", "g_logits"] {
        let (g, w) = (got[key].as_array().unwrap(), want[key].as_array().unwrap());
        assert_eq!(g.len(), w.len(), "{key}: number of logits");
        let scale = w.iter().map(|x| num(x, key).abs()).fold(0.0, f64::max);
        for (i, (g, w)) in g.iter().zip(w).enumerate() {
            let (g, w) = (num(g, key), num(w, key));
            let e = rel(g, w, 0.1 * scale.max(1e-3));
            note("logit", e);
            if e > 1e-4 {
                bad.push(format!("{key}[{i}]: {g} vs PyTorch {w} (relative {e:.2e})"));
            }
        }
    }
    for key in ["d_grads", "g_grads"] {
        let (g, w) = (
            got[key].as_object().unwrap(),
            want[key].as_object().unwrap(),
        );
        let names = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(g),
            names(w),
            "{key}: the parameters with gradients differ"
        );
        for (name, wv) in w {
            let gv = &g[name];
            let (gn, wn) = (num(&gv["norm"], name), num(&wv["norm"], name));
            let e = rel(gn, wn, 1e-6);
            note("gradient norm", e);
            if e > 1e-3 {
                bad.push(format!(
                    "{key} {name}: norm {gn} vs PyTorch {wn} (relative {e:.2e})"
                ));
            }
            // entries: relative to the tensor's RMS gradient
            let rms = wn / num(&wv["numel"], name).sqrt();
            for (ge, we) in gv["entries"]
                .as_array()
                .unwrap()
                .iter()
                .zip(wv["entries"].as_array().unwrap())
            {
                assert_eq!(ge[0], we[0], "{name}: entry indices differ");
                let (g1, w1) = (num(&ge[1], name), num(&we[1], name));
                let e = (g1 - w1).abs() / rms.max(1e-12);
                note("gradient entry (of RMS)", e);
                if e > 1e-3 {
                    bad.push(format!(
                        "{key} {name}[{}]: {g1} vs PyTorch {w1} ({e:.2e} of the RMS gradient {rms:.3e})",
                        we[0]
                    ));
                }
            }
        }
    }
    (bad, worst)
}

fn check_case(case: &str, preset: &str, batch: usize) {
    let path = fixture_path(case);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (see this file's header)", path.display()));
    let want: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(want["preset"], preset, "{case}: fixture preset");
    assert_eq!(
        want["train"],
        train_fields(&parity_config(case, batch)),
        "{case}: the fixture was made with another training config; regenerate it"
    );
    let (mut trainer, real) = setup(preset, &parity_config(case, batch));
    let got = run_step(&mut trainer, &real);
    let (bad, worst) = compare(&got, &want);
    eprintln!("{case}: worst relative differences {worst:?}");
    assert!(
        bad.is_empty(),
        "{case}: {} values differ from PyTorch float64, e.g.\n{}",
        bad.len(),
        bad.iter().take(12).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn tiny_step_matches_pytorch() {
    let (case, preset, batch) = CASES[0];
    check_case(case, preset, batch);
}

#[test]
fn cifar32_step_matches_pytorch() {
    let (case, preset, batch) = CASES[1];
    check_case(case, preset, batch);
}

#[test]
fn tiny_reuse_step_matches_pytorch() {
    let (case, preset, batch) = CASES[2];
    check_case(case, preset, batch);
}

#[test]
fn tiny_r1_lecam_step_matches_pytorch() {
    let (case, preset, batch) = CASES[3];
    check_case(case, preset, batch);
}

/// Writes each case's input for `scripts/step_parity.py` (initial checkpoint + batch + latents +
/// augmentation seeds) and this crate's own results, into `target/step_parity/`.
#[test]
#[ignore = "dev tool: writes the inputs of scripts/step_parity.py"]
fn dump() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/step_parity");
    std::fs::create_dir_all(&dir).unwrap();
    for (case, preset, batch) in CASES {
        let (mut trainer, real) = setup(preset, &parity_config(case, batch));
        let mut ckpt = trainer.step_inputs(&real).unwrap();
        ckpt.metadata.insert("parity.case".into(), case.into());
        ckpt.save(&dir.join(format!("{case}.safetensors"))).unwrap();
        let mut result = run_step(&mut trainer, &real);
        result["preset"] = json!(preset);
        result["train"] = train_fields(&parity_config(case, batch));
        std::fs::write(
            dir.join(format!("{case}.rust.json")),
            serde_json::to_string_pretty(&result).unwrap(),
        )
        .unwrap();
        eprintln!("wrote {}/{case}.*", dir.display());
    }
}

/// The hinge loss on the crate's own logits, in float64: `L_D = E max(0, 1 − D(x)) + E max(0, 1 +
/// D(G(z)))` plus bCR's `λ E (D(x) − D(T x))²` for real and fake, `L_G = −E D(G(z))`; and the
/// gradient of D's head bias, which every logit carries with weight 1, is `(#{D(G(z)) > −1} −
/// #{D(x) < 1}) / B` (bCR's differences do not depend on it). A logistic loss gives other values.
#[test]
fn hinge_loss_is_the_formula() {
    let batch = 8;
    let config = TrainConfig {
        loss: GanLoss::Hinge,
        ..parity_config("tiny_hinge", batch)
    };
    let (mut trainer, real) = setup("tiny", &config);
    let (out, trace) = trainer.train_step_traced(&real).unwrap();
    let logits: Vec<f64> = trace
        .d_logits
        .to_vec()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert_eq!(
        logits.len(),
        4 * batch,
        "bCR is on: real, fake and both shifted"
    );
    let b = batch as f64;
    let part = |i: usize| &logits[i * batch..(i + 1) * batch];
    let (lr, lf, lrs, lfs) = (part(0), part(1), part(2), part(3));
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / b;
    let sq = |a: &[f64], c: &[f64]| mean(&mut a.iter().zip(c).map(|(x, y)| (x - y).powi(2)));
    let want_d = mean(&mut lr.iter().map(|x| (1.0 - x).max(0.0)))
        + mean(&mut lf.iter().map(|x| (1.0 + x).max(0.0)))
        + config.bcr_real as f64 * sq(lr, lrs)
        + config.bcr_fake as f64 * sq(lf, lfs);
    let got_d = out.d_loss.to_vec().unwrap()[0] as f64;
    assert!(
        (got_d - want_d).abs() <= 1e-5 * want_d.abs(),
        "D's hinge loss {got_d}, formula {want_d}"
    );
    let g_logits = trace.g_logits.to_vec().unwrap();
    let want_g = -g_logits.iter().map(|&x| x as f64).sum::<f64>() / b;
    let got_g = out.g_loss.to_vec().unwrap()[0] as f64;
    assert!(
        (got_g - want_g).abs() <= 1e-5 * want_g.abs().max(1e-3),
        "G's hinge loss {got_g}, formula {want_g}"
    );
    let count = |v: &[f64], f: fn(f64) -> bool| v.iter().filter(|&&x| f(x)).count() as f64;
    let want_bias = (count(lf, |x| x > -1.0) - count(lr, |x| x < 1.0)) / b;
    let (_, bias) = trace
        .d_grads
        .iter()
        .find(|(n, _)| n == "discriminator.head.bias")
        .expect("D's head has a bias");
    let got_bias = bias.to_vec().unwrap()[0] as f64;
    assert!(
        (got_bias - want_bias).abs() <= 1e-5,
        "∂L_D/∂(head bias) {got_bias}, formula {want_bias}"
    );
}

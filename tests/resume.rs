//! Resuming from a checkpoint is exact: a run stopped after `K` steps, saved, loaded into a fresh
//! trainer and continued for `MORE` steps ends, bit for bit, where the run that never stopped ends —
//! every parameter of G and D, both Adam moments of both optimisers, G's EMA, the power-iteration
//! vectors and σ(W_init), the LeCam averages, the step counters — and the randomness of the steps
//! after that (batch order, latents, augmentation) is the same. Bit for bit because the kernels are
//! deterministic: the same dispatches on the same adapter give the same bits, whichever buffers the
//! pool hands out. The negative controls show the comparison fails when a state is not restored.
mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use vitgan::Tensor;
use vitgan::data::Batcher;
use vitgan::io::checkpoint::Checkpoint;
use vitgan::model::{ModelConfig, NetConfig};
use vitgan::train::{TrainConfig, Trainer};

/// Steps before the checkpoint.
const K: u64 = 3;
/// Steps after it, in both runs.
const MORE: u64 = 2;
/// Images in the toy dataset: not a multiple of the batch, so batches straddle epochs (step 2 spans
/// epochs 0 and 1) and the step after the compared ones starts a new epoch.
const DATASET: usize = 10;
const BATCH: usize = 4;

/// `tiny` at width 16 and depth 1: every component, well under a second per step on lavapipe.
fn micro() -> ModelConfig {
    let net = NetConfig {
        patch: 4,
        depth: 1,
        width: 16,
        heads: 2,
        mlp_hidden: 32,
    };
    ModelConfig {
        name: "micro".into(),
        image_size: 8,
        channels: 3,
        latent_dim: 16,
        mapping_layers: 1,
        generator: net.clone(),
        discriminator: net,
        inr_hidden: 16,
        ..ModelConfig::tiny()
    }
}

/// The paper's recipe (bCR λ = 10 on real and fake, augmentation p = 0.8, EMA) plus LeCam, lazy
/// R1 (every second step, so a resumed run must pick up the schedule) and a learning-rate warm-up,
/// so that every saved state changes what the next step does.
fn config() -> TrainConfig {
    TrainConfig {
        batch: BATCH,
        seed: 11,
        lecam: 0.1,
        r1: 0.1,
        r1_every: 2,
        warmup_steps: 10,
        ..TrainConfig::paper()
    }
}

/// `n` 8×8 RGB images: a strong colour with a vertical gradient and per-image noise.
fn dataset(n: usize) -> Vec<f32> {
    let size = 8;
    let noise = random(&mut rng(1000), n * size * size * 3, -0.3, 0.3);
    let mut out = Vec::with_capacity(noise.len());
    for i in 0..n * size * size {
        let y = (i / size) % size;
        let grad = (y as f32 / (size - 1) as f32 - 0.5) * 0.4;
        for (c, base) in [0.7f32, -0.5, 0.2].iter().enumerate() {
            out.push((base + grad + noise[i * 3 + c]).clamp(-1.0, 1.0));
        }
    }
    out
}

/// The batch of step `step` as the trainer binary draws it: a [`Batcher`] over the dataset with the
/// run's seed.
fn batch_for(trainer: &Trainer, data: &[f32], step: u64) -> Tensor {
    let batcher = Batcher::new(DATASET, trainer.config.batch, trainer.config.seed);
    let image = data.len() / DATASET;
    let mut host = Vec::new();
    for i in batcher.indices_for_step(step) {
        host.extend_from_slice(&data[i * image..(i + 1) * image]);
    }
    Tensor::from_slice(&trainer.gpu, &host, &[BATCH, 8, 8, 3]).unwrap()
}

/// Everything one step returned: both losses and D's logits on real and generated images.
fn run_steps(trainer: &mut Trainer, data: &[f32], n: u64) -> Vec<Vec<f32>> {
    (0..n)
        .map(|_| {
            let real = batch_for(trainer, data, trainer.step);
            let out = trainer.train_step(&real).unwrap();
            [out.d_loss, out.g_loss, out.logits_real, out.logits_fake]
                .iter()
                .flat_map(|t| t.to_vec().unwrap())
                .collect()
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A tensor or metadata entry in which two checkpoints differ.
#[derive(Debug)]
struct Difference {
    /// The tensor's name, or `metadata KEY`.
    name: String,
    detail: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.detail)
    }
}

/// Every tensor and metadata entry in which `a` and `b` differ (not bit for bit), with how many
/// elements differ and the largest relative difference.
fn differences(a: &Checkpoint, b: &Checkpoint) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut differ = |name: String, detail: String| out.push(Difference { name, detail });
    let keys: BTreeSet<&String> = a.metadata.keys().chain(b.metadata.keys()).collect();
    for key in keys {
        let (x, y) = (a.metadata.get(key), b.metadata.get(key));
        if x != y {
            differ(format!("metadata {key}"), format!("{x:?} vs {y:?}"));
        }
    }
    let names: BTreeSet<&String> = a.tensors.iter().chain(&b.tensors).map(|t| &t.0).collect();
    for name in names {
        match (a.tensor(name), b.tensor(name)) {
            (Some((sx, _)), Some((sy, _))) if sx != sy => {
                differ(name.clone(), format!("shape {sx:?} vs {sy:?}"))
            }
            (Some((_, x)), Some((_, y))) => {
                let differing = x.iter().zip(y).filter(|(p, q)| p.to_bits() != q.to_bits());
                let (count, worst) = differing.fold((0, 0.0f64), |(n, w), (p, q)| {
                    let rel = (*p as f64 - *q as f64).abs() / (p.abs().max(q.abs()) as f64);
                    (n + 1, w.max(rel))
                });
                if count > 0 {
                    let detail = format!(
                        "{count} of {} elements differ, worst relative {worst:.2e}",
                        x.len()
                    );
                    differ(name.clone(), detail);
                }
            }
            (x, _) => differ(
                name.clone(),
                format!(
                    "only in the {} checkpoint",
                    if x.is_some() { "first" } else { "second" }
                ),
            ),
        }
    }
    out
}

/// Asserts that `a` and `b` hold the same tensors and metadata, bit for bit, listing the first
/// differences otherwise.
#[track_caller]
fn assert_identical(a: &Checkpoint, b: &Checkpoint, what: &str) {
    let diff = differences(a, b);
    let first: Vec<String> = diff.iter().take(8).map(|d| d.to_string()).collect();
    assert!(
        diff.is_empty(),
        "{what}: {} differences, the first:\n{}",
        diff.len(),
        first.join("\n")
    );
}

/// How many differences there are per group of state (a tensor name up to its first dot:
/// `generator`, `ema`, `adam_g`, …; a metadata entry by itself).
fn by_group(diff: &[Difference]) -> BTreeMap<&str, usize> {
    let mut out = BTreeMap::new();
    for d in diff {
        let group = match d.name.starts_with("metadata ") {
            true => d.name.as_str(),
            false => d.name.split('.').next().unwrap(),
        };
        *out.entry(group).or_default() += 1;
    }
    out
}

/// Whether tensor `name` is of `kind`: a name prefix, or, starting with a dot, a name suffix.
fn is_kind(name: &str, kind: &str) -> bool {
    if kind.starts_with('.') {
        name.ends_with(kind)
    } else {
        name.starts_with(kind)
    }
}

/// Overwrites every tensor and counter the test can reach through the trainer's public fields with
/// junk, so that whatever a load fails to restore shows (a fresh trainer would otherwise already
/// hold the right σ(W_init) and initial power-iteration vectors).
fn scramble(trainer: &mut Trainer) {
    let mut tensors: Vec<Tensor> = Vec::new();
    for store in [&trainer.g_params, &trainer.d_params] {
        tensors.extend(store.iter().chain(store.states()).map(|p| p.value.clone()));
    }
    for opt in [&trainer.opt_g, &trainer.opt_d] {
        for (_, m, v) in &opt.moments {
            tensors.extend([m.clone(), v.clone()]);
        }
        tensors.extend(opt.ema.iter().flatten().map(|(_, t)| t.clone()));
    }
    tensors.extend([trainer.lecam_real.clone(), trainer.lecam_fake.clone()]);
    let mut r = rng(77);
    for t in tensors {
        t.write(&random(&mut r, t.numel(), 0.5, 2.0)).unwrap();
    }
    trainer.step = 1234;
    trainer.opt_g.steps = 567;
    trainer.opt_d.steps = 89;
}

/// `ckpt` with `edit` applied to every tensor whose name `select` accepts (`edit` gets the name).
fn tampered(
    ckpt: &Checkpoint,
    select: impl Fn(&str) -> bool,
    edit: impl Fn(&str, &mut Vec<f32>),
) -> Checkpoint {
    let mut out = ckpt.clone();
    for (name, _, values) in &mut out.tensors {
        if select(name) {
            edit(name, values);
        }
    }
    out
}

#[test]
fn resume_is_bit_exact_and_tampering_is_detected() {
    let g = gpu();
    let data = dataset(DATASET);
    let start = std::time::Instant::now();

    // the uninterrupted run: K steps, a checkpoint, MORE steps
    let mut a = Trainer::new(&g, &micro(), &config()).unwrap();
    let initial = a.to_checkpoint().unwrap();
    run_steps(&mut a, &data, K);
    let dir = std::env::temp_dir().join(format!("vitgan-resume-exact-{}", std::process::id()));
    let path = dir.join("checkpoint.safetensors");
    a.save_checkpoint(&path).unwrap();
    let saved = Checkpoint::load(&path).unwrap();
    assert_identical(
        &saved,
        &a.to_checkpoint().unwrap(),
        "the file differs from the trainer it was saved from",
    );
    let continued = run_steps(&mut a, &data, MORE);
    let final_a = a.to_checkpoint().unwrap();
    println!(
        "{} tensors, {} values, {} metadata entries; {K} + {MORE} steps in {:.1} s",
        final_a.tensors.len(),
        final_a.tensors.iter().map(|t| t.2.len()).sum::<usize>(),
        final_a.metadata.len(),
        start.elapsed().as_secs_f64()
    );

    // every kind of state is in the checkpoint, and all but σ(W_init) moved during the run, so an
    // equal ending is not the fresh trainer's state agreeing with itself
    let kinds = [
        "generator.",
        "discriminator.",
        "ema.generator.",
        "adam_g.m.",
        "adam_g.v.",
        "adam_d.m.",
        "adam_d.v.",
        ".sn_u",
        ".sn_sigma_init",
        "lecam.real",
        "lecam.fake",
    ];
    let moved = differences(&initial, &final_a);
    for kind in kinds {
        assert!(
            final_a.tensors.iter().any(|(n, _, _)| is_kind(n, kind)),
            "the checkpoint has no `{kind}` tensor"
        );
        assert!(
            kind == ".sn_sigma_init" || moved.iter().any(|d| is_kind(&d.name, kind)),
            "no `{kind}` tensor changed in {} steps",
            K + MORE
        );
    }
    for key in ["step", "adam_g.steps", "adam_d.steps"] {
        assert_eq!(final_a.metadata[key], (K + MORE).to_string(), "{key}");
    }

    // the resumed run: a fresh trainer with every reachable state scrambled, then the checkpoint
    let mut b = Trainer::new(&g, &micro(), &config()).unwrap();
    scramble(&mut b);
    b.load_checkpoint(&saved, "test checkpoint").unwrap();
    assert_identical(
        &saved,
        &b.to_checkpoint().unwrap(),
        "loading did not restore the checkpoint",
    );
    let resumed = run_steps(&mut b, &data, MORE);
    for (i, (x, y)) in continued.iter().zip(&resumed).enumerate() {
        assert_eq!(
            bits(x),
            bits(y),
            "step {} outputs: {x:?} vs {y:?}",
            K + i as u64
        );
    }
    let final_b = b.to_checkpoint().unwrap();
    assert_identical(
        &final_a,
        &final_b,
        "the resumed run ends elsewhere than the continued one",
    );

    // the randomness of the following steps: data order, latents, augmentation, and the step itself
    let next = a.step;
    assert_eq!(b.step, next);
    for step in next..next + 5 {
        let order = |t: &Trainer| {
            Batcher::new(DATASET, t.config.batch, t.config.seed).indices_for_step(step)
        };
        assert_eq!(order(&a), order(&b), "batch order of step {step}");
        for purpose in [0, 1] {
            assert_eq!(
                bits(&a.latents(BATCH, step, purpose).unwrap().to_vec().unwrap()),
                bits(&b.latents(BATCH, step, purpose).unwrap().to_vec().unwrap()),
                "latents {purpose} of step {step}"
            );
        }
    }
    for k in 0..5 {
        assert_eq!(a.aug_seed(k), b.aug_seed(k), "augmentation draw {k}");
    }
    let z = a.latents(8, u64::MAX, 7).unwrap();
    for (what, x, y) in [
        ("EMA samples", a.sample_ema(&z), b.sample_ema(&z)),
        ("samples", a.sample_current(&z), b.sample_current(&z)),
    ] {
        let (x, y) = (x.unwrap().to_vec().unwrap(), y.unwrap().to_vec().unwrap());
        assert_eq!(bits(&x), bits(&y), "{what}");
    }
    let (third_a, third_b) = (run_steps(&mut a, &data, 1), run_steps(&mut b, &data, 1));
    assert_eq!(bits(&third_a[0]), bits(&third_b[0]), "step {next} outputs");
    assert_identical(
        &a.to_checkpoint().unwrap(),
        &b.to_checkpoint().unwrap(),
        &format!("after step {next}"),
    );
    println!(
        "resumed = continued, bit for bit, after {} steps ({:.1} s so far)",
        K + MORE + 1,
        start.elapsed().as_secs_f64()
    );

    // ---- negative controls: a checkpoint that lost a state, loaded into the same trainer (its load
    // overwrites everything, as shown above), then the same MORE steps
    let resume_from = |ckpt: &Checkpoint, b: &mut Trainer| -> (Vec<Vec<f32>>, Vec<Difference>) {
        b.load_checkpoint(ckpt, "tampered checkpoint").unwrap();
        let outputs = run_steps(b, &data, MORE);
        (outputs, differences(&final_a, &b.to_checkpoint().unwrap()))
    };
    let has = |diff: &[Difference], kind: &str| diff.iter().any(|d| is_kind(&d.name, kind));

    // G's Adam moments zeroed: the first resumed step's outputs (the old test compared its losses)
    // are still equal bit for bit — G's loss is computed before G's update — but G's second
    // moments, G, its EMA and, through G's samples, D then differ
    let no_g_moments = tampered(&saved, |n| n.starts_with("adam_g."), |_, v| v.fill(0.0));
    let (outputs, diff) = resume_from(&no_g_moments, &mut b);
    assert_eq!(
        bits(&outputs[0]),
        bits(&continued[0]),
        "first step's outputs"
    );
    println!(
        "G's Adam moments zeroed: tensors differing {:?}",
        by_group(&diff)
    );
    for kind in ["adam_g.v.", "generator.", "ema.generator."] {
        assert!(has(&diff, kind), "no `{kind}` difference: {diff:#?}");
    }

    // the EMA restarted from the checkpoint's weights: nothing in a step reads the EMA, so every
    // output and every other tensor agree, and exactly the EMA tensors differ
    let weights = |name: &str| saved.tensor(name).unwrap().1.to_vec();
    let ema_restarted = tampered(
        &saved,
        |n| n.starts_with("ema."),
        |n, v| *v = weights(n.strip_prefix("ema.").unwrap()),
    );
    let (outputs, diff) = resume_from(&ema_restarted, &mut b);
    for (x, y) in outputs.iter().zip(&continued) {
        assert_eq!(bits(x), bits(y), "outputs with the EMA restarted");
    }
    println!("EMA restarted: tensors differing {:?}", by_group(&diff));
    assert!(
        !diff.is_empty() && diff.iter().all(|d| is_kind(&d.name, "ema.")),
        "{diff:#?}"
    );

    // the LeCam averages or D's power-iteration vectors lost: D's first step already differs
    for (what, prefix, suffix) in [
        ("LeCam averages", "lecam.", ""),
        ("D's power-iteration vectors", "discriminator.", ".sn_u"),
    ] {
        let select = |n: &str| n.starts_with(prefix) && n.ends_with(suffix);
        let lost = tampered(&saved, select, |_, v| v.fill(0.5));
        let (outputs, diff) = resume_from(&lost, &mut b);
        assert_ne!(
            bits(&outputs[0]),
            bits(&continued[0]),
            "{what}: first step's outputs"
        );
        println!("{what} lost: tensors differing {:?}", by_group(&diff));
        assert!(has(&diff, "discriminator."), "{what}: {diff:#?}");
    }

    // D's Adam step counter lost: Adam's bias correction and the warm-up differ
    let mut counter_lost = saved.clone();
    counter_lost
        .metadata
        .insert("adam_d.steps".into(), "0".into());
    let (_, diff) = resume_from(&counter_lost, &mut b);
    println!("D's step counter lost: differing {:?}", by_group(&diff));
    assert!(has(&diff, "metadata adam_d.steps"), "{diff:#?}");
    assert!(has(&diff, "discriminator."), "{diff:#?}");

    // a checkpoint missing a tensor or a counter is refused, naming it
    let victim = "adam_g.v.generator.mapping.0.weight";
    let mut missing = saved.clone();
    let before = missing.tensors.len();
    missing.tensors.retain(|(n, _, _)| n != victim);
    assert_eq!(missing.tensors.len(), before - 1, "no tensor {victim}");
    let msg = b
        .load_checkpoint(&missing, "test checkpoint")
        .unwrap_err()
        .to_string();
    assert!(msg.contains(&format!("`{victim}`")), "{msg}");
    let mut missing = saved.clone();
    missing.metadata.remove("adam_g.steps");
    let msg = b
        .load_checkpoint(&missing, "test checkpoint")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`adam_g.steps`"), "{msg}");

    println!("total {:.1} s", start.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_checkpoint_from_another_config_is_refused() {
    let g = gpu();
    let ckpt = Trainer::new(&g, &micro(), &config())
        .unwrap()
        .to_checkpoint()
        .unwrap();
    // another model field: named
    let mut other = micro();
    other.generator.depth = 2;
    let mut c = Trainer::new(&g, &other, &config()).unwrap();
    let msg = c
        .load_checkpoint(&ckpt, "test checkpoint")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("generator.depth"), "{msg}");
    // another seed (the whole random stream) or batch: named
    for (field, cfg) in [
        (
            "config.seed",
            TrainConfig {
                seed: 12,
                ..config()
            },
        ),
        (
            "config.batch",
            TrainConfig {
                batch: 2,
                ..config()
            },
        ),
    ] {
        let mut c = Trainer::new(&g, &micro(), &cfg).unwrap();
        let msg = c
            .load_checkpoint(&ckpt, "test checkpoint")
            .unwrap_err()
            .to_string();
        assert!(msg.contains(field), "{field}: {msg}");
    }
    // another preset: the preset is named, not the first field that differs
    let mut renamed = micro();
    renamed.name = "cifar32".into();
    let mut d = Trainer::new(&g, &renamed, &config()).unwrap();
    let msg = d
        .load_checkpoint(&ckpt, "test checkpoint")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("--preset") && msg.contains(&format!("`{}`", micro().name)),
        "{msg}"
    );
}

/// An initialisation-only setting (`inr_tied_output_init`) may differ, or be missing from a
/// checkpoint written before it existed: the checkpoint's weights replace what it chose, so the
/// resumed state is the checkpoint's either way.
#[test]
fn an_init_only_setting_does_not_block_resume() {
    let g = gpu();
    let ckpt = Trainer::new(&g, &micro(), &config())
        .unwrap()
        .to_checkpoint()
        .unwrap();
    let key = "config.inr_tied_output_init";
    assert_eq!(ckpt.metadata.get(key).map(String::as_str), Some("true"));
    let mut older = ckpt.clone();
    older.metadata.remove(key);
    let untied = ModelConfig {
        inr_tied_output_init: false,
        ..micro()
    };
    for (what, model, saved) in [
        ("another value", &untied, &ckpt),
        ("no value", &micro(), &older),
    ] {
        let mut t = Trainer::new(&g, model, &config()).unwrap();
        t.load_checkpoint(saved, "test checkpoint")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        // the resumed run records its own value of the setting; everything else is the checkpoint's
        let mut resumed = t.to_checkpoint().unwrap();
        match saved.metadata.get(key) {
            Some(v) => resumed.metadata.insert(key.into(), v.clone()),
            None => resumed.metadata.remove(key),
        };
        assert_identical(saved, &resumed, what);
    }
}

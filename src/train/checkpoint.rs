//! Whole-run checkpoints: G, D, G's EMA, both Adam states, power-iteration vectors and σ(W_init),
//! LeCam averages, step counters and the config, in one safetensors file. The random streams are
//! pure functions of (seed, step), so the step is the whole RNG state.

use super::{TrainConfig, Trainer};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::model::ModelConfig;
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::path::Path;

/// Format tag stored in the metadata.
pub const FORMAT: &str = "vitgan-checkpoint-1";

impl Trainer {
    /// Config entries a checkpoint must match to be resumed (model fields plus batch and seed).
    pub fn checkpoint_config(&self) -> BTreeMap<String, String> {
        let mut f = self.model.fields();
        f.insert("config.batch".into(), self.config.batch.to_string());
        f.insert("config.seed".into(), self.config.seed.to_string());
        f
    }

    /// Every persistent tensor, by checkpoint name.
    fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for store in [&self.g_params, &self.d_params] {
            out.extend(store.iter().map(|p| (p.name.clone(), p.value.clone())));
            out.extend(store.states().map(|p| (p.name.clone(), p.value.clone())));
        }
        if let Some(ema) = &self.opt_g.ema {
            out.extend(ema.iter().map(|(n, t)| (format!("ema.{n}"), t.clone())));
        }
        for (tag, opt) in [("adam_g", &self.opt_g), ("adam_d", &self.opt_d)] {
            for (n, m, v) in &opt.moments {
                out.push((format!("{tag}.m.{n}"), m.clone()));
                out.push((format!("{tag}.v.{n}"), v.clone()));
            }
        }
        out.push(("lecam.real".into(), self.lecam_real.clone()));
        out.push(("lecam.fake".into(), self.lecam_fake.clone()));
        out
    }

    /// The checkpoint plus the inputs of the next step: the real batch `parity.real`, both latent
    /// batches `parity.z_d` / `parity.z_g`, the five augmentation seeds `parity.aug_seeds` and the
    /// training fields `parity.train` (JSON, [`TrainConfig::step_fields_json`]). What an independent
    /// implementation needs to compute the same step (`scripts/step_parity.py`,
    /// `benches/pytorch_step.py`).
    pub fn step_inputs(&self, real: &Tensor) -> Result<Checkpoint> {
        let mut ckpt = self.to_checkpoint()?;
        let b = self.config.batch;
        let z_d = self.latents(b, self.step, 0)?;
        let z_g = self.latents(b, self.step, 1)?;
        for (name, t) in [
            ("parity.real", real),
            ("parity.z_d", &z_d),
            ("parity.z_g", &z_g),
        ] {
            ckpt.tensors
                .push((name.into(), t.shape().to_vec(), t.to_vec()?));
        }
        if self.r1_active() {
            let noise = self.r1_noise(b)?;
            ckpt.tensors.push((
                "parity.r1_noise".into(),
                noise.shape().to_vec(),
                noise.to_vec()?,
            ));
        }
        let seeds: Vec<String> = (0..5).map(|k| self.aug_seed(k).to_string()).collect();
        let meta = &mut ckpt.metadata;
        meta.insert("parity.aug_seeds".into(), seeds.join(","));
        meta.insert("parity.train".into(), self.config.step_fields_json());
        Ok(ckpt)
    }

    /// Snapshot the run (reads every tensor back from the GPU).
    pub fn to_checkpoint(&self) -> Result<Checkpoint> {
        let mut tensors = Vec::new();
        for (name, t) in self.named_tensors() {
            tensors.push((name, t.shape().to_vec(), t.to_vec()?));
        }
        let mut metadata = self.checkpoint_config();
        metadata.insert("format".into(), FORMAT.into());
        metadata.insert("preset".into(), self.model.name.clone());
        metadata.insert("step".into(), self.step.to_string());
        metadata.insert("adam_g.steps".into(), self.opt_g.steps.to_string());
        metadata.insert("adam_d.steps".into(), self.opt_d.steps.to_string());
        if let Some(run) = &self.run_config {
            metadata.insert("run.config".into(), run.clone());
        }
        Ok(Checkpoint { tensors, metadata })
    }

    /// Write a checkpoint atomically to `path`.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        self.to_checkpoint()?.save(path)
    }

    /// A trainer rebuilt from `ckpt` alone (no dataset needed): the model is the checkpoint's
    /// `preset` with its `config.*` fields ([`ModelConfig::from_fields`]), the batch and seed are
    /// the checkpoint's, and every tensor (G, its EMA, D, Adam moments) and counter is restored.
    /// The other hyperparameters (learning rates, β, bCR, …) are not stored in a checkpoint: they
    /// are [`TrainConfig::default`]'s, which matters only if training continues. `source` names
    /// the checkpoint in error messages.
    pub fn from_checkpoint(gpu: &Gpu, ckpt: &Checkpoint, source: &str) -> Result<Trainer> {
        check_format(ckpt, source)?;
        let preset = ckpt.metadata.get("preset").ok_or_else(|| {
            Error::Other(format!(
                "{source} has no `preset` entry in its metadata; it was not written by the vitgan \
                 trainer"
            ))
        })?;
        let mut fields = ckpt.metadata.clone();
        // the trainer's own entries; the rest of `config.*` is the model
        let mut number = |key: &str| -> Result<u64> {
            let value = fields.remove(key).ok_or_else(|| Error::Config {
                field: key.into(),
                detail: format!(
                    "{source} has no such entry; it is not a complete vitgan checkpoint"
                ),
            })?;
            value.parse().map_err(|_| Error::Config {
                field: key.into(),
                detail: format!("`{value}` in {source} is not a whole number"),
            })
        };
        let train = TrainConfig {
            batch: number("config.batch")? as usize,
            seed: number("config.seed")?,
            ..TrainConfig::default()
        };
        let model = ModelConfig::from_fields(preset, &fields).map_err(|e| match e {
            Error::Config { field, detail } => Error::Config {
                field,
                detail: format!("{detail} (in {source})"),
            },
            other => other,
        })?;
        let mut trainer = Trainer::new(gpu, &model, &train)?;
        trainer.load_checkpoint(ckpt, source)?;
        trainer.run_config = ckpt.metadata.get("run.config").cloned();
        Ok(trainer)
    }

    /// Restore a run from `ckpt`; refuses a checkpoint from another config, naming the field.
    pub fn load_checkpoint(&mut self, ckpt: &Checkpoint, source: &str) -> Result<()> {
        check_format(ckpt, source)?;
        // another preset differs in many fields; name the preset, not the first field that differs
        if let Some(saved) = ckpt.metadata.get("preset")
            && *saved != self.model.name
        {
            return Err(Error::Config {
                field: "--preset".into(),
                detail: format!(
                    "{source} was written by a `{saved}` run, this run is `{}`; pass --preset \
                     {saved} to resume it, or start without --resume",
                    self.model.name
                ),
            });
        }
        // initialisation-only settings need not match: the checkpoint's weights replace what they
        // chose (and checkpoints from before such a setting existed do not record it)
        let mut expected = self.checkpoint_config();
        for key in ModelConfig::INIT_ONLY_FIELDS {
            match ckpt.metadata.get(key) {
                Some(saved) => expected.insert(key.to_string(), saved.clone()),
                None => expected.remove(key),
            };
        }
        ckpt.check_config(&expected)?;
        let number = |key: &str| -> Result<u64> {
            ckpt.metadata
                .get(key)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    Error::Other(format!(
                        "{source}: metadata `{key}` missing or not a number"
                    ))
                })
        };
        let (step, g_steps, d_steps) = (
            number("step")?,
            number("adam_g.steps")?,
            number("adam_d.steps")?,
        );
        let by_name: BTreeMap<&str, (&Vec<usize>, &Vec<f32>)> = ckpt
            .tensors
            .iter()
            .map(|(n, s, d)| (n.as_str(), (s, d)))
            .collect();
        for (name, t) in self.named_tensors() {
            let (shape, data) = by_name.get(name.as_str()).ok_or_else(|| {
                Error::Other(format!(
                    "{source} has no tensor `{name}`; it was saved by another version"
                ))
            })?;
            if shape.as_slice() != t.shape() {
                return Err(Error::shape(
                    "load_checkpoint",
                    format!(
                        "`{name}` is {shape:?} in {source} but {:?} in this model",
                        t.shape()
                    ),
                ));
            }
            t.write(data)?;
        }
        self.step = step;
        self.opt_g.steps = g_steps;
        self.opt_d.steps = d_steps;
        Ok(())
    }
}

/// Refuses a checkpoint without this crate's format tag.
pub(crate) fn check_format(ckpt: &Checkpoint, source: &str) -> Result<()> {
    if ckpt.metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(Error::Other(format!(
            "{source} is not a vitgan training checkpoint (its metadata has no `format: {FORMAT}` \
             entry); give a checkpoint.safetensors written by the trainer"
        )));
    }
    Ok(())
}

//! Optimiser state for one network: Adam moments per parameter, optionally an EMA copy of the weights.

use crate::autodiff::ParamStore;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::ops::adam::{AdamConfig, adam_step};
use crate::tensor::Tensor;

/// Adam (+ EMA) over every parameter of a [`ParamStore`].
pub struct Optimizer {
    pub config: AdamConfig,
    /// (name, m, v) in the store's order.
    pub moments: Vec<(String, Tensor, Tensor)>,
    /// EMA copies (name, tensor) when enabled.
    pub ema: Option<Vec<(String, Tensor)>>,
    pub ema_decay: f32,
    /// Steps taken (Adam's t).
    pub steps: u64,
    /// Learning-rate multiplier per parameter, in the store's order (1 unless set).
    pub lr_multipliers: Vec<f32>,
    /// Linear learning-rate warm-up: step `t` uses `lr · min(1, t / warmup_steps)` (0 = none).
    pub warmup_steps: u64,
}

impl Optimizer {
    /// Zero moments; the EMA starts as a copy of the weights.
    pub fn new(
        gpu: &Gpu,
        store: &ParamStore,
        config: AdamConfig,
        ema_decay: Option<f32>,
    ) -> Result<Optimizer> {
        let moments = store
            .iter()
            .map(|p| {
                Ok((
                    p.name.clone(),
                    Tensor::zeros(gpu, p.value.shape())?,
                    Tensor::zeros(gpu, p.value.shape())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let ema = match ema_decay {
            Some(_) => Some(
                store
                    .iter()
                    .map(|p| Ok((p.name.clone(), p.value.deep_clone()?)))
                    .collect::<Result<Vec<_>>>()?,
            ),
            None => None,
        };
        Ok(Optimizer {
            config,
            moments,
            ema,
            ema_decay: ema_decay.unwrap_or(0.0),
            steps: 0,
            lr_multipliers: vec![1.0; store.iter().count()],
            warmup_steps: 0,
        })
    }

    /// Multiplies the learning rate of every parameter whose name starts with `prefix` by `mult`
    /// (StyleGAN's mapping network uses 0.01); returns how many parameters it applies to.
    pub fn set_lr_multiplier(&mut self, prefix: &str, mult: f32) -> usize {
        let mut n = 0;
        for ((name, _, _), m) in self.moments.iter().zip(&mut self.lr_multipliers) {
            if name.starts_with(prefix) {
                *m = mult;
                n += 1;
            }
        }
        n
    }

    /// The base learning rate at the current step (after warm-up).
    pub fn current_lr(&self) -> f32 {
        let warm = if self.warmup_steps > 0 {
            (self.steps as f32 / self.warmup_steps as f32).min(1.0)
        } else {
            1.0
        };
        self.config.lr * warm
    }

    /// One step from gradients given by name (parameters without a gradient are left alone).
    pub fn step(&mut self, store: &ParamStore, grads: &[(String, Tensor)]) -> Result<()> {
        self.steps += 1;
        for (i, p) in store.iter().enumerate() {
            let (name, m, v) = &self.moments[i];
            if name != &p.name {
                return Err(Error::Other(format!(
                    "optimiser state out of order at {name} / {}",
                    p.name
                )));
            }
            let Some((_, g)) = grads.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let ema = self
                .ema
                .as_ref()
                .map(|e| (&e[i].1, self.effective_ema_decay()));
            let config = AdamConfig {
                lr: self.current_lr() * self.lr_multipliers[i],
                ..self.config
            };
            adam_step(&p.value, g, m, v, ema, config, self.steps)?;
        }
        Ok(())
    }

    /// The EMA decay at the current step: `min(decay, (1 + t)/(10 + t))`, so early in training the
    /// average follows the weights closely instead of staying near the initialisation for thousands
    /// of steps.
    pub fn effective_ema_decay(&self) -> f32 {
        let t = self.steps as f32;
        self.ema_decay.min((1.0 + t) / (10.0 + t))
    }

    /// Swap every parameter's contents with its EMA copy (call twice to swap back).
    pub fn swap_ema(&self, store: &ParamStore) -> Result<()> {
        let Some(ema) = &self.ema else { return Ok(()) };
        for (p, (_, e)) in store.iter().zip(ema) {
            let tmp = p.value.deep_clone()?;
            p.value.copy_from(e)?;
            e.copy_from(&tmp)?;
        }
        Ok(())
    }
}

//! The training step: non-saturating logistic losses, balanced consistency regularisation, optional
//! LeCam regularisation, R1 (by a finite difference along noise), differentiable augmentation, Adam
//! (+ EMA of G) — all on the GPU. Alternating D and G updates; losses stay on the GPU until the
//! caller reads them (asynchronously) for logging.

pub mod augment;
pub mod checkpoint;
pub mod diagnostics;
pub mod evaluate;
pub mod generate;
pub mod optimizer;

use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{Discriminator, Generator, ModelConfig};
use crate::nn::Init;
use crate::ops::adam::AdamConfig;
use crate::ops::elementwise::Unary;
use crate::tensor::Tensor;
use augment::{AugmentOps, diff_augment};
use optimizer::Optimizer;

/// The adversarial loss, as a function of D's logits `D(x)` on real and `D(G(z))` on generated
/// images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GanLoss {
    /// Non-saturating logistic (the paper's): `L_D = E softplus(−D(x)) + E softplus(D(G(z)))`,
    /// `L_G = E softplus(−D(G(z)))`.
    Logistic,
    /// Hinge (SAGAN, BigGAN): `L_D = E max(0, 1 − D(x)) + E max(0, 1 + D(G(z)))`,
    /// `L_G = −E D(G(z))`.
    Hinge,
}

impl GanLoss {
    /// The name the trainer's `--loss` flag and [`TrainConfig::step_fields_json`] use.
    pub const fn name(self) -> &'static str {
        match self {
            GanLoss::Logistic => "logistic",
            GanLoss::Hinge => "hinge",
        }
    }
}

/// Training hyperparameters. Defaults: the recipe measured best here (README, *Recipe*): the
/// paper's optimiser (Adam lr 0.002, β = (0, 0.99)) and EMA, without bCR and DiffAugment — at the
/// budgets measured (≤ 1,000 steps of `tiny`) both regularisers kept D at 2 ln 2 and cost SWD —
/// and with lazy R1 γ = 0.1 every 4 steps instead; [`TrainConfig::paper`] has the paper's values.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Images per batch (paper: 128).
    pub batch: usize,
    /// Adam learning rate for G (paper: 0.002).
    pub lr_g: f32,
    /// Adam learning rate for D (paper: 0.002).
    pub lr_d: f32,
    /// Adam β1 (paper: 0).
    pub beta1: f32,
    /// Adam β2 (paper: 0.99).
    pub beta2: f32,
    /// bCR weight on real images (paper: 10; default 0 = off).
    pub bcr_real: f32,
    /// bCR weight on generated images (paper: 10; default 0 = off).
    pub bcr_fake: f32,
    /// LeCam regularisation weight λ (Tseng et al. 2021; 0 = off, the default and the paper's):
    /// `λ·(E(D(x) − α_F)² + E(D(G(z)) − α_R)²)` added to D's loss, with `α_R`, `α_F` moving averages
    /// (decay 0.99) of D's mean logit on real and generated images.
    pub lecam: f32,
    /// R1 weight γ (Mescheder et al. 2018; 0 = off; default 0.1, the paper 0): `(γ/2)·E‖∇ₓD(x)‖²`
    /// on real images (as D sees them, after augmentation), estimated without a double backward as
    /// `(γ/(2σ²))·E(D(x + σε) − D(x))²` with `ε ~ N(0, I)` and `σ =` [`R1_NOISE_STD`]: for small σ,
    /// `E_ε(D(x + σε) − D(x))² = σ²‖∇ₓD(x)‖² + O(σ³)`, and so for its gradient in D's weights.
    pub r1: f32,
    /// Apply R1 every this many steps only, with weight `γ·r1_every` (StyleGAN2's lazy
    /// regularisation; 1 = every step; default 4).
    pub r1_every: u64,
    /// Probability of each augmentation op (paper: 0.8; default 0 = no augmentation).
    pub aug_prob: f32,
    /// EMA decay of G's weights (ramped up as `min(decay, (1 + t)/(10 + t))` over the first steps).
    pub ema_decay: f32,
    /// Seed for initialisation, latents, augmentation and data order.
    pub seed: u64,
    /// Linear learning-rate warm-up of both networks over this many steps (0 = none).
    pub warmup_steps: u64,
    /// Learning-rate multiplier of G's mapping network (StyleGAN: 0.01).
    pub mapping_lr_mult: f32,
    /// G's step trains on the latents and generated images of D's step (their forward kept on the
    /// tape) instead of drawing new ones: one generator forward fewer per step, as in PyTorch's
    /// DCGAN example. G's weights do not change between the two steps, so the images are the same
    /// function of G; only the latents are shared.
    pub reuse_fakes: bool,
    /// The adversarial loss (paper: logistic).
    pub loss: GanLoss,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            bcr_real: 0.0,
            bcr_fake: 0.0,
            aug_prob: 0.0,
            // measured on `tiny`, Fashion-MNIST, eight seeds (README, Recipe; LeCam λ = 0.1 with
            // R1 and without it was worse); not measured on the larger presets
            r1: 0.1,
            r1_every: 4,
            ..TrainConfig::paper()
        }
    }
}

impl TrainConfig {
    /// The paper's training recipe: bCR λ = 10 on real and fake, DiffAugment p = 0.8, Adam lr 0.002
    /// with β = (0, 0.99), EMA 0.999, batch 128.
    pub fn paper() -> Self {
        TrainConfig {
            batch: 128,
            lr_g: 0.002,
            lr_d: 0.002,
            beta1: 0.0,
            beta2: 0.99,
            bcr_real: 10.0,
            bcr_fake: 10.0,
            lecam: 0.0,
            r1: 0.0,
            r1_every: 1,
            aug_prob: 0.8,
            ema_decay: 0.999,
            seed: 0,
            warmup_steps: 0,
            mapping_lr_mult: 1.0,
            reuse_fakes: false,
            loss: GanLoss::Logistic,
        }
    }

    /// The fields an independent implementation of one step needs, as a JSON object: `batch`,
    /// `lr_g`, `lr_d`, `beta1`, `beta2`, `eps` (Adam's, 1e-8), `bcr_real`, `bcr_fake`, `lecam`,
    /// `aug_prob`, `seed`, `loss` (`"logistic"` | `"hinge"`), `reuse_fakes` (G's step on the latents of
    /// D's, whose `z_d` it then uses), and with R1 on `r1`, `r1_every` and `r1_noise_std` (σ; the noise
    /// itself is `parity.r1_noise` of [`Trainer::step_inputs`]); each f32 as its shortest decimal,
    /// always with a `.` or an exponent (a float to JSON readers). Warm-up and the mapping multiplier
    /// are left out: they do not act on the first step of a run without warm-up.
    pub fn step_fields_json(&self) -> String {
        let f = |x: f32| {
            let s = x.to_string();
            if s.contains(['.', 'e']) { s } else { s + ".0" }
        };
        format!(
            "{{\"batch\": {}, \"lr_g\": {}, \"lr_d\": {}, \"beta1\": {}, \"beta2\": {}, \"eps\": 1e-8, \
             \"bcr_real\": {}, \"bcr_fake\": {}, \"lecam\": {}, \"aug_prob\": {}, \"seed\": {}, \
             \"loss\": \"{}\", \"reuse_fakes\": {}{}}}",
            self.batch,
            f(self.lr_g),
            f(self.lr_d),
            f(self.beta1),
            f(self.beta2),
            f(self.bcr_real),
            f(self.bcr_fake),
            f(self.lecam),
            f(self.aug_prob),
            self.seed,
            self.loss.name(),
            self.reuse_fakes,
            if self.r1 > 0.0 {
                format!(
                    ", \"r1\": {}, \"r1_every\": {}, \"r1_noise_std\": {}",
                    f(self.r1),
                    self.r1_every,
                    f(R1_NOISE_STD)
                )
            } else {
                String::new()
            }
        )
    }

    /// Refuses values no run can use, naming the trainer's flag: learning rates and the mapping
    /// multiplier must be finite and positive, β₁, β₂ and the EMA decay in [0, 1), the augmentation
    /// probability in [0, 1], the bCR and LeCam weights finite and ≥ 0, the batch ≥ 1.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, detail: String| {
            Err(Error::Config {
                field: field.into(),
                detail,
            })
        };
        for (field, v) in [
            ("--lr-g", self.lr_g),
            ("--lr-d", self.lr_d),
            ("--mapping-lr-mult", self.mapping_lr_mult),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(field, format!("{v} must be a finite number above 0"));
            }
        }
        for (field, v) in [
            ("--beta1", self.beta1),
            ("--beta2", self.beta2),
            ("--ema", self.ema_decay),
        ] {
            if !(0.0..1.0).contains(&v) {
                return bad(field, format!("{v} must be in [0, 1)"));
            }
        }
        if !(0.0..=1.0).contains(&self.aug_prob) {
            return bad(
                "--aug-prob",
                format!("{} must be a probability in [0, 1]", self.aug_prob),
            );
        }
        for (field, v) in [
            ("--bcr", self.bcr_real),
            ("--bcr", self.bcr_fake),
            ("--lecam", self.lecam),
            ("--r1", self.r1),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(
                    field,
                    format!("{v} must be a finite weight ≥ 0 (0 disables)"),
                );
            }
        }
        if self.batch == 0 {
            return bad("--batch", "must be at least 1".into());
        }
        if self.r1_every == 0 {
            return bad("--r1-every", "must be at least 1".into());
        }
        Ok(())
    }
}

/// GPU-resident results of one step (read them back only when logging).
pub struct StepOutput {
    /// D's total loss `[1]`.
    pub d_loss: Tensor,
    /// G's loss `[1]`.
    pub g_loss: Tensor,
    /// D's logits on the (augmented) real batch `[B, 1]`.
    pub logits_real: Tensor,
    /// D's logits on the (augmented) generated batch `[B, 1]` (from D's step).
    pub logits_fake: Tensor,
    /// `Σ ‖∂L_D/∂θ_D‖²` and `Σ ‖∂L_G/∂θ_G‖²` `[1]`, from [`Trainer::train_step_diagnosed`] only.
    pub grad_sq_norms: Option<(Tensor, Tensor)>,
}

/// What one step computed besides its outputs, for checking a step against an independent
/// implementation (`tests/step_parity.rs`, `scripts/step_parity.py`).
pub struct StepTrace {
    /// All of D's logits in its step, `[4B, 1]` with bCR (real, fake, shifted real, shifted fake),
    /// else `[2B, 1]`; with R1 in this step, `B` more last (the real images plus R1's noise).
    pub d_logits: Tensor,
    /// D's parameter gradients of D's loss (before D's Adam step).
    pub d_grads: Vec<(String, Tensor)>,
    /// D's logits on the generated batch in G's step `[B, 1]`.
    pub g_logits: Tensor,
    /// G's parameter gradients of G's loss (after D's update, before G's Adam step).
    pub g_grads: Vec<(String, Tensor)>,
}

/// The noise scale σ of R1's finite-difference estimate, in image units ([-1, 1]): small against
/// the images (a 16×16×3 image's norm is ~17, the noise's ~1.4), large against f32 rounding of D's
/// logits.
pub const R1_NOISE_STD: f32 = 0.05;

/// A 64-bit mix of several values (SplitMix64 finaliser), for deriving per-step seeds.
pub fn mix_seed(parts: &[u64]) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    for &p in parts {
        h ^= p
            .wrapping_add(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(h << 6)
            .wrapping_add(h >> 2);
        h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 31;
    }
    h
}

/// Everything a training run holds: both networks, their optimisers, the step counter.
pub struct Trainer {
    pub gpu: Gpu,
    pub model: ModelConfig,
    pub config: TrainConfig,
    pub g_params: ParamStore,
    pub d_params: ParamStore,
    pub generator: Generator,
    pub discriminator: Discriminator,
    pub opt_g: Optimizer,
    pub opt_d: Optimizer,
    /// Steps completed.
    pub step: u64,
    /// LeCam's moving averages of D's outputs on real and fake images, `[1]` each.
    pub lecam_real: Tensor,
    pub lecam_fake: Tensor,
    /// The settings of the run as the trainer's `--config` TOML, kept in checkpoints as `run.config`
    /// so a run can be repeated from its checkpoint (`None`: not recorded).
    pub run_config: Option<String>,
    tape: Tape,
}

impl Trainer {
    /// Fresh networks initialised from `config.seed`.
    pub fn new(gpu: &Gpu, model: &ModelConfig, config: &TrainConfig) -> Result<Trainer> {
        model.validate()?;
        config.validate()?;
        if config.batch == 0 {
            return Err(Error::Config {
                field: "batch".into(),
                detail: "must be at least 1".into(),
            });
        }
        let mut init = Init::new(config.seed);
        let mut g_params = ParamStore::new();
        let mut d_params = ParamStore::new();
        let generator = Generator::new(gpu, &mut g_params, &mut init, model)?;
        let discriminator = Discriminator::new(gpu, &mut d_params, &mut init, model)?;
        let adam = |lr| AdamConfig {
            lr,
            beta1: config.beta1,
            beta2: config.beta2,
            eps: 1e-8,
        };
        let mut opt_g = Optimizer::new(gpu, &g_params, adam(config.lr_g), Some(config.ema_decay))?;
        let mut opt_d = Optimizer::new(gpu, &d_params, adam(config.lr_d), None)?;
        opt_g.set_lr_multiplier("generator.mapping.", config.mapping_lr_mult);
        opt_g.warmup_steps = config.warmup_steps;
        opt_d.warmup_steps = config.warmup_steps;
        Ok(Trainer {
            gpu: gpu.clone(),
            model: model.clone(),
            config: config.clone(),
            g_params,
            d_params,
            generator,
            discriminator,
            opt_g,
            opt_d,
            step: 0,
            lecam_real: Tensor::zeros(gpu, &[1])?,
            lecam_fake: Tensor::zeros(gpu, &[1])?,
            run_config: None,
            tape: Tape::new(gpu),
        })
    }

    /// Standard-normal latents `[n, latent_dim]`, a pure function of (seed, step, purpose).
    pub fn latents(&self, n: usize, step: u64, purpose: u64) -> Result<Tensor> {
        let mut init = Init::new(mix_seed(&[self.config.seed, step, purpose]));
        Tensor::from_slice(
            &self.gpu,
            &init.normal(n * self.model.latent_dim, 1.0),
            &[n, self.model.latent_dim],
        )
    }

    /// Seed of augmentation draw `k` of the current step: 0 = real images in D's step, 1 = generated
    /// images in D's step, 2 / 3 = bCR's shift of those, 4 = generated images in G's step.
    pub fn aug_seed(&self, k: u64) -> u32 {
        mix_seed(&[self.config.seed, self.step, 100 + k]) as u32
    }

    fn maybe_augment(&self, x: Var, k: u64) -> Result<Var> {
        if self.config.aug_prob > 0.0 {
            diff_augment(
                &self.tape,
                x,
                self.aug_seed(k),
                self.config.aug_prob,
                AugmentOps::ALL,
            )
        } else {
            Ok(x)
        }
    }

    /// One alternating step: update D on `real` (`[B, H, W, C]` in [-1, 1]) and fresh fakes, then G.
    pub fn train_step(&mut self, real: &Tensor) -> Result<StepOutput> {
        Ok(self.step_with_trace(real, false, false)?.0)
    }

    /// [`Trainer::train_step`], also summing both networks' squared gradient norms on the GPU.
    pub fn train_step_diagnosed(&mut self, real: &Tensor) -> Result<StepOutput> {
        Ok(self.step_with_trace(real, false, true)?.0)
    }

    /// [`Trainer::train_step`], also returning both networks' logits and parameter gradients.
    pub fn train_step_traced(&mut self, real: &Tensor) -> Result<(StepOutput, StepTrace)> {
        let (out, trace) = self.step_with_trace(real, true, false)?;
        Ok((out, trace.expect("a trace was asked for")))
    }

    fn step_with_trace(
        &mut self,
        real: &Tensor,
        want_trace: bool,
        want_norms: bool,
    ) -> Result<(StepOutput, Option<StepTrace>)> {
        let m = &self.model;
        let want = [self.config.batch, m.image_size, m.image_size, m.channels];
        if real.shape() != want {
            return Err(Error::shape(
                "train_step",
                format!("real batch {:?}, expected {want:?}", real.shape()),
            ));
        }
        let b = self.config.batch;
        let t = &self.tape;

        // ---- discriminator step
        t.clear();
        t.unfreeze_all();
        let reuse = self.config.reuse_fakes;
        if !reuse {
            t.freeze("generator.");
        }
        t.set_power_iterations(1);
        let z = t.constant(self.latents(b, self.step, 0)?);
        // with reuse, G's forward is recorded for G's step and D sees a detached copy, so D's
        // backward stops at the images
        let (fake, fake_for_g) = if reuse {
            let f = self.generator.forward(t, z)?;
            (t.detach(f), Some(f))
        } else {
            (t.no_grad(|| self.generator.forward(t, z))?, None)
        };
        let x = t.constant(real.clone());
        let bcr = self.config.bcr_real > 0.0 || self.config.bcr_fake > 0.0;
        let (xa, fa) = (self.maybe_augment(x, 0)?, self.maybe_augment(fake, 1)?);
        let mut inputs = vec![xa, fa];
        let r1_now = self.r1_active();
        if bcr {
            // bCR's transform T: a random translation + scaling of what D saw, always applied
            inputs.push(diff_augment(
                t,
                xa,
                self.aug_seed(2),
                1.0,
                AugmentOps::SHIFT,
            )?);
            inputs.push(diff_augment(
                t,
                fa,
                self.aug_seed(3),
                1.0,
                AugmentOps::SHIFT,
            )?);
        }
        if r1_now {
            inputs.push(t.add(xa, t.constant(self.r1_noise(b)?))?);
        }
        let logits = self.discriminator.forward(t, t.concat(&inputs, 0)?)?;
        let part = |i: usize| t.slice(logits, 0, i * b, b);
        let (lr, lf) = (part(0)?, part(1)?);
        let (real_term, fake_term) = match self.config.loss {
            GanLoss::Logistic => (
                t.mean(t.unary(t.scale(lr, -1.0)?, Unary::Softplus)?)?,
                t.mean(t.unary(lf, Unary::Softplus)?)?,
            ),
            GanLoss::Hinge => (
                t.mean(t.unary(t.unary(lr, Unary::Affine(-1.0, 1.0))?, Unary::Relu)?)?,
                t.mean(t.unary(t.unary(lf, Unary::Affine(1.0, 1.0))?, Unary::Relu)?)?,
            ),
        };
        let mut d_loss = t.add(real_term, fake_term)?;
        if bcr {
            let sq_diff =
                |a: Var, c: Var| -> Result<Var> { t.mean(t.unary(t.sub(a, c)?, Unary::Square)?) };
            let r = t.scale(sq_diff(lr, part(2)?)?, self.config.bcr_real)?;
            let f = t.scale(sq_diff(lf, part(3)?)?, self.config.bcr_fake)?;
            d_loss = t.add(d_loss, t.add(r, f)?)?;
        }
        if r1_now {
            // (γ·every/(2σ²))·E(D(x + σε) − D(x))², the noisy copy last in the batch
            let noisy = part(inputs.len() - 1)?;
            let sq = t.mean(t.unary(t.sub(noisy, lr)?, Unary::Square)?)?;
            let w =
                self.config.r1 * self.config.r1_every as f32 / (2.0 * R1_NOISE_STD * R1_NOISE_STD);
            d_loss = t.add(d_loss, t.scale(sq, w)?)?;
        }
        if self.config.lecam > 0.0 {
            // R = E‖D(x) − α_F‖² + E‖D(G(z)) − α_R‖², α = moving averages of D's outputs
            let a_f = t.constant(self.lecam_fake.clone());
            let a_r = t.constant(self.lecam_real.clone());
            let r1 = t.mean(t.unary(t.sub(lr, a_f)?, Unary::Square)?)?;
            let r2 = t.mean(t.unary(t.sub(lf, a_r)?, Unary::Square)?)?;
            d_loss = t.add(d_loss, t.scale(t.add(r1, r2)?, self.config.lecam)?)?;
        }
        t.backward(d_loss)?;
        let d_grads = t.param_grads()?;
        let d_norm = if want_norms {
            diagnostics::squared_norm(&d_grads)?
        } else {
            None
        };
        self.opt_d.step(&self.d_params, &d_grads)?;
        let d_logits = t.value(logits);
        let logits_real = t.value(lr);
        let logits_fake = t.value(lf);
        if self.config.lecam > 0.0 {
            self.update_lecam(&logits_real, &logits_fake)?;
        }
        let d_loss = t.value(d_loss);

        // ---- generator step (D frozen, its power iteration not advanced); with reuse the tape
        // keeps D's step, whose nodes get no gradient from G's loss
        if fake_for_g.is_none() {
            t.clear();
        }
        t.unfreeze_all();
        t.freeze("discriminator.");
        t.set_power_iterations(0);
        let fake = match fake_for_g {
            Some(f) => f,
            None => {
                let z = t.constant(self.latents(b, self.step, 1)?);
                self.generator.forward(t, z)?
            }
        };
        let logits = self
            .discriminator
            .forward(t, self.maybe_augment(fake, 4)?)?;
        let g_loss = match self.config.loss {
            GanLoss::Logistic => t.mean(t.unary(t.scale(logits, -1.0)?, Unary::Softplus)?)?,
            GanLoss::Hinge => t.scale(t.mean(logits)?, -1.0)?,
        };
        t.backward(g_loss)?;
        let g_grads = t.param_grads()?;
        let g_norm = if want_norms {
            diagnostics::squared_norm(&g_grads)?
        } else {
            None
        };
        self.opt_g.step(&self.g_params, &g_grads)?;
        let g_logits = t.value(logits);
        let g_loss = t.value(g_loss);
        t.clear();
        t.unfreeze_all();
        t.set_power_iterations(1);
        self.step += 1;
        self.gpu.flush()?;
        let trace = want_trace.then_some(StepTrace {
            d_logits,
            d_grads,
            g_logits,
            g_grads,
        });
        let out = StepOutput {
            d_loss,
            g_loss,
            logits_real,
            logits_fake,
            grad_sq_norms: d_norm.zip(g_norm),
        };
        Ok((out, trace))
    }

    /// Whether this step's D update carries the R1 term.
    pub fn r1_active(&self) -> bool {
        self.config.r1 > 0.0 && self.step.is_multiple_of(self.config.r1_every)
    }

    /// R1's noise `σε` for this step, `[n, H, W, C]`, a pure function of (seed, step).
    pub fn r1_noise(&self, n: usize) -> Result<Tensor> {
        let m = &self.model;
        let shape = [n, m.image_size, m.image_size, m.channels];
        let mut init = Init::new(mix_seed(&[self.config.seed, self.step, 200]));
        let count = shape.iter().product();
        Tensor::from_slice(&self.gpu, &init.normal(count, R1_NOISE_STD), &shape)
    }

    fn update_lecam(&self, real: &Tensor, fake: &Tensor) -> Result<()> {
        use crate::ops::{elementwise, reduce};
        const DECAY: f32 = 0.99;
        for (ema, logits) in [(&self.lecam_real, real), (&self.lecam_fake, fake)] {
            let mean = reduce::mean_all(logits)?;
            let next = elementwise::add(
                &elementwise::scale(ema, DECAY)?,
                &elementwise::scale(&mean, 1.0 - DECAY)?,
            )?;
            ema.copy_from(&next)?;
        }
        Ok(())
    }

    /// Images from the EMA generator for latents `z` (`[n, latent_dim]`), NHWC in [-1, 1].
    pub fn sample_ema(&self, z: &Tensor) -> Result<Tensor> {
        self.opt_g.swap_ema(&self.g_params)?;
        let out = self.sample_current(z);
        self.opt_g.swap_ema(&self.g_params)?;
        out
    }

    /// Images from the current (non-averaged) generator.
    pub fn sample_current(&self, z: &Tensor) -> Result<Tensor> {
        let tape = Tape::new(&self.gpu);
        tape.no_grad(|| {
            let zv = tape.constant(z.clone());
            let img = self.generator.forward(&tape, zv)?;
            Ok(tape.value(img))
        })
    }

    /// D's logits for images `[n, H, W, C]` (no augmentation, no power iteration).
    pub fn discriminate(&self, images: &Tensor) -> Result<Tensor> {
        let tape = Tape::new(&self.gpu);
        tape.set_power_iterations(0);
        tape.no_grad(|| {
            let x = tape.constant(images.clone());
            Ok(tape.value(self.discriminator.forward(&tape, x)?))
        })
    }
}

//! Sample quality during training: the multi-scale SWD and KID (random conv features) of the EMA
//! generator's samples against a fixed subset of the training data, with the two reference points
//! that make a value readable — a second real subset (the floor: what a perfect generator would
//! score at this sample size) and the untrained generator.

use super::Trainer;
use crate::data::{Batcher, ImageDataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::metrics::ImageSet;
use crate::metrics::features::{FEATURE_DIM, RandomConvFeatures};
use crate::metrics::kid::{Kid, KidOptions, kid};
use crate::metrics::swd::{Swd, SwdOptions, swd};

/// One evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleMetrics {
    pub swd: Swd,
    pub kid: Kid,
}

impl std::fmt::Display for SampleMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SWD {}  KID {}", self.swd, self.kid)
    }
}

/// Evaluates image sets against `n` fixed training images.
pub struct SampleEvaluator {
    gpu: Gpu,
    /// Images compared with.
    n: usize,
    size: usize,
    channels: usize,
    reference: Vec<f32>,
    second: Vec<f32>,
    reference_features: Vec<f32>,
    features: RandomConvFeatures,
    seed: u64,
}

/// Images generated per forward pass when sampling for an evaluation.
const SAMPLE_BATCH: usize = 128;

impl SampleEvaluator {
    /// Draws `2n` distinct images of `data` (a seeded permutation): the first `n` are the reference,
    /// the next `n` give the real-vs-real floor. Needs at least `2n` images.
    pub fn new(gpu: &Gpu, data: &ImageDataset, n: usize, seed: u64) -> Result<Self> {
        if n < 16 || data.len < 2 * n {
            return Err(Error::Config {
                field: "eval-n".into(),
                detail: format!(
                    "an evaluation of {n} samples needs at least 16 of them and 2·{n} training \
                     images (the data has {})",
                    data.len
                ),
            });
        }
        let order = Batcher::new(data.len, 2 * n, seed ^ 0xE7A1).indices_for_step(0);
        let (mut reference, mut second) = (Vec::new(), Vec::new());
        Batcher::fill_batch(data, &order[..n], &mut reference);
        Batcher::fill_batch(data, &order[n..], &mut second);
        let features = RandomConvFeatures::new(data.channels);
        let set = ImageSet::new(&reference, n, data.size, data.channels)?;
        let reference_features = features.set(&set);
        Ok(SampleEvaluator {
            gpu: gpu.clone(),
            n,
            size: data.size,
            channels: data.channels,
            reference,
            second,
            reference_features,
            features,
            seed,
        })
    }

    /// Samples per evaluation.
    pub fn n(&self) -> usize {
        self.n
    }

    /// SWD and KID of `images` (`n` NHWC images in [-1, 1]) against the reference.
    pub fn images(&self, images: &[f32]) -> Result<SampleMetrics> {
        let set = ImageSet::new(images, self.n, self.size, self.channels)?;
        let reference = ImageSet::new(&self.reference, self.n, self.size, self.channels)?;
        let o = SwdOptions {
            seed: self.seed,
            ..Default::default()
        };
        let swd = swd(Some(&self.gpu), &reference, &set, &o)?;
        let kid = kid(
            Some(&self.gpu),
            &self.reference_features,
            &self.features.set(&set),
            FEATURE_DIM,
            &KidOptions {
                seed: self.seed,
                // subsets of half the samples, so that they differ and the spread means something
                subset_size: (self.n / 2).min(1000),
                ..Default::default()
            },
        )?;
        Ok(SampleMetrics { swd, kid })
    }

    /// The floor: a second set of real images against the reference.
    pub fn real_vs_real(&self) -> Result<SampleMetrics> {
        self.images(&self.second)
    }

    /// `n` samples of `trainer`'s EMA generator (fixed latents), evaluated.
    pub fn ema_generator(&self, trainer: &Trainer) -> Result<SampleMetrics> {
        self.images(&self.ema_samples(trainer)?)
    }

    /// `n` samples of the EMA generator for latents fixed by the evaluator's seed.
    pub fn ema_samples(&self, trainer: &Trainer) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.n * self.size * self.size * self.channels);
        for (k, start) in (0..self.n).step_by(SAMPLE_BATCH).enumerate() {
            let count = SAMPLE_BATCH.min(self.n - start);
            let z = trainer.latents(count, u64::MAX - 1, 0xE7A1_0000 + k as u64)?;
            out.extend(trainer.sample_ema(&z)?.to_vec()?);
        }
        Ok(out)
    }
}

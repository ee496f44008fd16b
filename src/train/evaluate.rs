//! Sample quality during training: the multi-scale SWD and KID (random conv features) of the EMA
//! generator's samples against a fixed subset of the training data, with the two reference points
//! that make a value readable — a second real subset (the floor: what a perfect generator would
//! score at this sample size) and the untrained generator; and FID, KID and IS on pytorch-fid's
//! InceptionV3 ([`InceptionEvaluator`]), with the reference features cached to a file.

use super::Trainer;
use super::generate::{Weights, latents};
use crate::data::{Batcher, ImageDataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::io::checkpoint::Checkpoint;
use crate::metrics::ImageSet;
use crate::metrics::features::{FEATURE_DIM, RandomConvFeatures};
use crate::metrics::fid::{FeatureStatistics, frechet_distance_to_features};
use crate::metrics::inception::{
    CLASSES as INCEPTION_CLASSES, FEATURE_DIM as INCEPTION_DIM, InceptionV3,
};
use crate::metrics::inception_score::{DEFAULT_SPLITS, InceptionScore, inception_score};
use crate::metrics::kid::{Kid, KidOptions, kid};
use crate::metrics::swd::{Swd, SwdOptions, swd};
use std::path::Path;

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

/// FID, KID and IS of a sample set on pytorch-fid's InceptionV3.
#[derive(Clone, Debug)]
pub struct InceptionMetrics {
    /// Samples evaluated.
    pub n: usize,
    /// Real images the statistics were taken over.
    pub reference_n: usize,
    pub fid: f64,
    /// Unbiased cubic-kernel MMD² over pool3 features, 100 subsets of min(1,000, n) samples.
    pub kid: Kid,
    /// exp(E KL(p(y|x) ‖ p(y))) over the 1008 logits, 10 splits.
    pub inception_score: InceptionScore,
}

impl std::fmt::Display for InceptionMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "FID {:.6}\nKID {:.4} ± {:.4}\nIS {:.2} ± {:.2}",
            self.fid,
            self.kid.mean,
            self.kid.std,
            self.inception_score.mean,
            self.inception_score.std
        )
    }
}

/// Format tag of a cached reference-feature file.
pub const REFERENCE_CACHE_FORMAT: &str = "vitgan-inception-reference-1";

/// Evaluates image sets with InceptionV3 against the pool3 features of `n` real images, computed
/// once (and cached to a file when asked).
pub struct InceptionEvaluator {
    gpu: Gpu,
    net: InceptionV3,
    reference_features: Vec<f32>,
    reference: FeatureStatistics,
    size: usize,
    channels: usize,
}

impl InceptionEvaluator {
    /// The reference: `n` images of `data` (all of them if `n` is larger), a seeded selection.
    /// With `cache`, the features are read from that file when it was written for the same data,
    /// size, selection and weights, and written to it otherwise. `progress(done, total)` reports
    /// the Inception passes and returns whether to go on ([`Error::Stopped`] when it returns
    /// `false`).
    pub fn new(
        gpu: &Gpu,
        net: InceptionV3,
        data: &ImageDataset,
        n: usize,
        seed: u64,
        cache: Option<&Path>,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Self> {
        let n = n.min(data.len);
        if n < 2 {
            return Err(Error::Config {
                field: "reference".into(),
                detail: format!(
                    "FID needs at least 2 real images (the data has {})",
                    data.len
                ),
            });
        }
        let order = Batcher::new(data.len, n, seed ^ 0xF1D).indices_for_step(0);
        // the key names the selected images by content, so a changed dataset is not served stale
        let content = order.iter().fold(0xCBF2_9CE4_8422_2325u64, |h, &i| {
            data.image(i).iter().fold(h, |h, b| {
                (h ^ *b as u64).wrapping_mul(0x0000_0100_0000_01B3)
            })
        });
        let key = format!(
            "{} | {} images of {}x{}x{} | {n} selected with seed {seed}, content {content:016x} | \
             inception {:016x}",
            data.source,
            data.len,
            data.size,
            data.size,
            data.channels,
            net.fingerprint()
        );
        let cached = match cache {
            Some(path) if path.exists() => read_reference_cache(path, &key)?,
            _ => None,
        };
        let reference_features = match cached {
            Some(f) => f,
            None => {
                let mut pixels = Vec::new();
                Batcher::fill_batch(data, &order, &mut pixels);
                let set = ImageSet::new(&pixels, n, data.size, data.channels)?;
                let f = net.run(&set, &mut *progress)?.features;
                if let Some(path) = cache {
                    let mut metadata = std::collections::BTreeMap::new();
                    metadata.insert("format".to_string(), REFERENCE_CACHE_FORMAT.to_string());
                    metadata.insert("source".to_string(), key.clone());
                    Checkpoint {
                        tensors: vec![("features".into(), vec![n, INCEPTION_DIM], f.clone())],
                        metadata,
                    }
                    .save(path)?;
                }
                f
            }
        };
        let reference = FeatureStatistics::from_features(&reference_features, INCEPTION_DIM)?;
        Ok(InceptionEvaluator {
            gpu: gpu.clone(),
            net,
            reference_features,
            reference,
            size: data.size,
            channels: data.channels,
        })
    }

    /// Real images in the reference.
    pub fn reference_n(&self) -> usize {
        self.reference.n
    }

    /// The network (e.g. for its batch size).
    pub fn network(&self) -> &InceptionV3 {
        &self.net
    }

    /// FID, KID and IS of `set` (at least 2 images of the reference's size and channels).
    pub fn images(
        &self,
        set: &ImageSet,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<InceptionMetrics> {
        if set.size != self.size || set.channels != self.channels {
            return Err(Error::shape(
                "inception metrics",
                format!(
                    "samples are {0}×{0}×{1} but the reference images are {2}×{2}×{3}",
                    set.size, set.channels, self.size, self.channels
                ),
            ));
        }
        let out = self.net.run(set, &mut *progress)?;
        let kid = kid(
            Some(&self.gpu),
            &self.reference_features,
            &out.features,
            INCEPTION_DIM,
            &KidOptions::default(),
        )?;
        Ok(InceptionMetrics {
            n: set.n,
            reference_n: self.reference.n,
            fid: frechet_distance_to_features(&self.reference, &out.features, INCEPTION_DIM)?,
            kid,
            inception_score: inception_score(
                &out.logits,
                INCEPTION_CLASSES,
                DEFAULT_SPLITS.min(set.n),
            )?,
        })
    }

    /// `n` samples of `trainer`'s EMA generator (latents of `seed`, as `examples/generate.rs` draws
    /// them), evaluated.
    pub fn ema_generator(
        &self,
        trainer: &Trainer,
        n: usize,
        seed: u64,
        progress: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<InceptionMetrics> {
        let m = &trainer.model;
        let mut pixels = Vec::with_capacity(n * m.image_size * m.image_size * m.channels);
        for first in (0..n).step_by(SAMPLE_BATCH) {
            let count = SAMPLE_BATCH.min(n - first);
            let z = latents(&self.gpu, m.latent_dim, seed, first, count)?;
            pixels.extend(trainer.sample(Weights::Ema, &z)?.to_vec()?);
        }
        self.images(
            &ImageSet::new(&pixels, n, m.image_size, m.channels)?,
            progress,
        )
    }
}

/// The cached features of `path` if it was written for `key`; `None` when it was written for
/// something else (it is then recomputed and replaced).
fn read_reference_cache(path: &Path, key: &str) -> Result<Option<Vec<f32>>> {
    let file = Checkpoint::load(path)?;
    if file.metadata.get("format").map(String::as_str) != Some(REFERENCE_CACHE_FORMAT) {
        return Err(Error::Other(format!(
            "{} is not an Inception reference cache (format tag missing); delete it or choose \
             another cache path",
            path.display()
        )));
    }
    if file.metadata.get("source").map(String::as_str) != Some(key) {
        return Ok(None);
    }
    match file.tensor("features") {
        Some((shape, values)) if shape.len() == 2 && shape[1] == INCEPTION_DIM => {
            Ok(Some(values.to_vec()))
        }
        _ => Err(Error::Other(format!(
            "{}: the cached features are missing or malformed; delete the file to recompute them",
            path.display()
        ))),
    }
}

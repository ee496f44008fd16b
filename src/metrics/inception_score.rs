//! Inception score (Salimans et al. 2016) from classifier logits.
//!
//! With `p(y|xᵢ) = softmax(logitsᵢ)` (f64, max-subtracted; `log p` as `x − max − ln Σ exp(x − max)`)
//! and the rows cut into `splits` contiguous parts, part `s` holding rows
//! `⌊s·n/splits⌋ .. ⌊(s+1)·n/splits⌋`:
//!
//! `ISₛ = exp( meanᵢ KL(p(y|xᵢ) ‖ pₛ(y)) )`, `KL(p ‖ q) = Σ_c p_c (ln p_c − ln q_c)`,
//! `pₛ(y) = meanᵢ p(y|xᵢ)` over the part,
//!
//! reported as the mean and the population standard deviation (`ddof = 0`) of the `ISₛ`. This is
//! the original implementation's and torch-fidelity's `isc_features_to_metric` with
//! `shuffle=False`; torch-fidelity shuffles the rows by default (`numpy.random.RandomState(2020)
//! .permutation(n)`), which moves its splits' scores but not what they estimate. Terms with
//! `p_c = 0` (underflow) contribute their limit 0.

use crate::error::{Error, Result};

/// Splits of the literature (Salimans et al., torch-fidelity).
pub const DEFAULT_SPLITS: usize = 10;

/// Mean and standard deviation of the splits' scores.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InceptionScore {
    pub mean: f64,
    pub std: f64,
    pub splits: usize,
}

impl std::fmt::Display for InceptionScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2} ± {:.2}", self.mean, self.std)
    }
}

/// Inception score of row-major `logits` `[n, classes]` (InceptionV3's 1008 logits) over `splits`
/// contiguous parts ([`DEFAULT_SPLITS`] in the literature).
///
/// Errors: `classes = 0` or a length that is not a multiple of it, `splits = 0`, fewer rows than
/// splits, a non-finite logit (naming its row and class).
pub fn inception_score(logits: &[f32], classes: usize, splits: usize) -> Result<InceptionScore> {
    if classes == 0 || !logits.len().is_multiple_of(classes) {
        return Err(Error::shape(
            "inception_score",
            format!(
                "{} logits are not whole rows of {classes} classes",
                logits.len()
            ),
        ));
    }
    let n = logits.len() / classes;
    if splits == 0 || n < splits {
        return Err(Error::Other(format!(
            "the inception score needs at least one row per split: {n} rows, {splits} splits"
        )));
    }
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        return Err(Error::Other(format!(
            "logit {} of row {} is {}; the classifier produced a non-finite value",
            i % classes,
            i / classes,
            logits[i]
        )));
    }

    // ln Σ_c exp(x_c) per row, computed as max + ln Σ exp(x − max)
    let log_normaliser: Vec<f64> = logits
        .chunks_exact(classes)
        .map(|row| {
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            max + row
                .iter()
                .map(|&x| (x as f64 - max).exp())
                .sum::<f64>()
                .ln()
        })
        .collect();

    let mut scores = Vec::with_capacity(splits);
    let mut marginal = vec![0f64; classes];
    for s in 0..splits {
        let (begin, end) = (s * n / splits, (s + 1) * n / splits);
        let rows = || {
            logits[begin * classes..end * classes]
                .chunks_exact(classes)
                .zip(&log_normaliser[begin..end])
        };
        marginal.iter_mut().for_each(|q| *q = 0.0);
        for (row, &lse) in rows() {
            for (q, &x) in marginal.iter_mut().zip(row) {
                *q += (x as f64 - lse).exp();
            }
        }
        let log_marginal: Vec<f64> = marginal
            .iter()
            .map(|&q| (q / (end - begin) as f64).ln())
            .collect();
        let mut kl_sum = 0.0;
        for (row, &lse) in rows() {
            for (&x, &log_q) in row.iter().zip(&log_marginal) {
                let log_p = x as f64 - lse;
                let p = log_p.exp();
                if p > 0.0 {
                    kl_sum += p * (log_p - log_q);
                }
            }
        }
        scores.push((kl_sum / (end - begin) as f64).exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let variance = scores.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / splits as f64;
    Ok(InceptionScore {
        mean,
        std: variance.sqrt(),
        splits,
    })
}

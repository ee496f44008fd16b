//! A short training run of `tiny`: D learns to separate real from fake and G's samples move toward
//! the data distribution (resuming from a checkpoint: `tests/resume.rs`).
mod common;
use common::*;
use vitgan::Tensor;
use vitgan::model::ModelConfig;
use vitgan::train::{TrainConfig, Trainer};

/// "Real" images of `size`²: a strong colour (0.7, −0.5, 0.2) with a vertical gradient and noise.
fn real_images(b: usize, size: usize, step: u64) -> Vec<f32> {
    let mut r = rng(1000 + step);
    let noise = random(&mut r, b * size * size * 3, -0.1, 0.1);
    let mut out = Vec::with_capacity(noise.len());
    for i in 0..b * size * size {
        let y = (i / size) % size;
        let grad = (y as f32 / (size - 1) as f32 - 0.5) * 0.4;
        for (c, base) in [0.7f32, -0.5, 0.2].iter().enumerate() {
            out.push((base + grad + noise[i * 3 + c]).clamp(-1.0, 1.0));
        }
    }
    out
}

/// Distance of the samples' per-channel means from the data's (0.7, −0.5, 0.2).
fn colour_distance(images: &[f32]) -> f64 {
    let mut mean = [0.0f64; 3];
    for px in images.chunks(3) {
        for c in 0..3 {
            mean[c] += px[c] as f64;
        }
    }
    let n = (images.len() / 3) as f64;
    [0.7, -0.5, 0.2]
        .iter()
        .enumerate()
        .map(|(c, t)| (mean[c] / n - t).powi(2))
        .sum::<f64>()
        .sqrt()
}

fn accuracy(trainer: &Trainer, real: &Tensor, fake: &Tensor) -> f64 {
    let lr = trainer.discriminate(real).unwrap().to_vec().unwrap();
    let lf = trainer.discriminate(fake).unwrap().to_vec().unwrap();
    let correct = lr.iter().filter(|v| **v > 0.0).count() + lf.iter().filter(|v| **v < 0.0).count();
    correct as f64 / (lr.len() + lf.len()) as f64
}

/// Fraction of (real, fake) pairs that D ranks correctly, D(real) > D(fake): 0.5 is chance, and unlike
/// the sign accuracy it does not depend on where D's logits are centred.
fn ranking_accuracy(trainer: &Trainer, real: &Tensor, fake: &Tensor) -> f64 {
    let lr = trainer.discriminate(real).unwrap().to_vec().unwrap();
    let lf = trainer.discriminate(fake).unwrap().to_vec().unwrap();
    let pairs = lr
        .iter()
        .flat_map(|r| lf.iter().map(move |f| (r > f) as u32))
        .sum::<u32>();
    pairs as f64 / (lr.len() * lf.len()) as f64
}

#[test]
fn training_separates_real_from_fake_and_moves_samples_toward_data() {
    // the `tiny` preset itself, with the paper's hyperparameters (bCR λ = 10, augmentation p = 0.8)
    let g = gpu();
    let model = ModelConfig::tiny();
    let size = model.image_size;
    let cfg = TrainConfig {
        batch: 8,
        seed: 3,
        ..TrainConfig::paper()
    };
    let mut trainer = Trainer::new(&g, &model, &cfg).unwrap();
    let z = trainer.latents(32, 999, 9).unwrap();
    let untrained = colour_distance(&trainer.sample_current(&z).unwrap().to_vec().unwrap());
    let real = Tensor::zeros(&g, &[8, size, size, 3]).unwrap();
    let mut best_accuracy: f64 = 0.0;
    for step in 0..80 {
        real.write(&real_images(8, size, step)).unwrap();
        let out = trainer.train_step(&real).unwrap();
        if step % 10 == 9 {
            let d = out.d_loss.to_vec().unwrap()[0];
            let gl = out.g_loss.to_vec().unwrap()[0];
            assert!(
                d.is_finite() && gl.is_finite(),
                "losses at step {step}: D {d}, G {gl}"
            );
            let fake = trainer
                .sample_current(&trainer.latents(8, step, 5).unwrap())
                .unwrap();
            let acc = accuracy(&trainer, &real, &fake);
            let rank = ranking_accuracy(&trainer, &real, &fake);
            println!(
                "step {step}: D loss {d:.3}, G loss {gl:.3}, D sign accuracy {acc:.2}, ranking accuracy {rank:.2}"
            );
            best_accuracy = best_accuracy.max(rank);
        }
    }
    let trained = colour_distance(&trainer.sample_current(&z).unwrap().to_vec().unwrap());
    let ema = colour_distance(&trainer.sample_ema(&z).unwrap().to_vec().unwrap());
    println!(
        "colour distance to data: untrained {untrained:.3}, trained {trained:.3}, EMA {ema:.3}"
    );
    assert!(
        best_accuracy >= 0.75,
        "D never separated real from fake (best accuracy {best_accuracy})"
    );
    assert!(
        trained < 0.5 * untrained,
        "G did not move toward the data: {untrained} → {trained}"
    );
}

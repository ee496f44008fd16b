//! R1's estimate without a double backward (`TrainConfig::r1`): for `ε ~ N(0, I)` and the trainer's
//! σ, `E_ε (D(x + σε) − D(x))² / σ²` must equal `‖∇ₓD(x)‖²`, here with the gradient taken by central
//! differences in each of an image's 768 coordinates and the expectation over 512 noise draws,
//! on `tiny`'s discriminator after a few training steps. Over 512 draws the estimate's relative
//! standard error is `√(2/512)` ≈ 6 % (`(gᵀε)²` is `‖g‖²·χ²₁`); the test allows 25 %, which a σ large
//! enough to bend the estimate (curvature of D over the noise) or a wrong scale would exceed.
//! The whole training step with R1 is checked against float64 PyTorch in `tests/step_parity.rs`.
mod common;
use common::*;
use vitgan::Tensor;
use vitgan::data::Batcher;
use vitgan::data::synthetic::synthetic_shapes;
use vitgan::model::ModelConfig;
use vitgan::nn::Init;
use vitgan::train::{R1_NOISE_STD, TrainConfig, Trainer};

/// D's logits for `images` (`n` images of `len` floats each), in chunks of 256.
fn logits(trainer: &Trainer, images: &[f32], len: usize, shape: &[usize; 3]) -> Vec<f64> {
    let mut out = Vec::new();
    for chunk in images.chunks(256 * len) {
        let n = chunk.len() / len;
        let t = Tensor::from_slice(&gpu(), chunk, &[n, shape[0], shape[1], shape[2]]).unwrap();
        out.extend(
            trainer
                .discriminate(&t)
                .unwrap()
                .to_vec()
                .unwrap()
                .iter()
                .map(|&v| v as f64),
        );
    }
    out
}

#[test]
fn noise_estimate_matches_the_input_gradient_norm() {
    let model = ModelConfig::preset("tiny").unwrap();
    let (size, ch) = (model.image_size, model.channels);
    let len = size * size * ch;
    let config = TrainConfig {
        batch: 16,
        seed: 3,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(&gpu(), &model, &config).unwrap();
    let data = synthetic_shapes(256, size, config.seed);
    let batcher = Batcher::new(data.len, config.batch, config.seed);
    let mut host = Vec::new();
    // a few steps, so that D is not at its initialisation
    for step in 0..5 {
        Batcher::fill_batch(&data, &batcher.indices_for_step(step), &mut host);
        let real = Tensor::from_slice(&gpu(), &host, &[config.batch, size, size, ch]).unwrap();
        trainer.train_step(&real).unwrap();
    }
    let shape = [size, size, ch];
    let (h, draws) = (0.01f32, 512);
    for image in 0..2 {
        let x = &host[image * len..(image + 1) * len];
        // central differences: image i·2 is x + h·e_i, i·2 + 1 is x − h·e_i
        let mut probes = Vec::with_capacity(2 * len * len);
        for i in 0..len {
            for sign in [1.0f32, -1.0] {
                let mut p = x.to_vec();
                p[i] += sign * h;
                probes.extend(p);
            }
        }
        let d = logits(&trainer, &probes, len, &shape);
        let grad_sq: f64 = (0..len)
            .map(|i| ((d[2 * i] - d[2 * i + 1]) / (2.0 * h as f64)).powi(2))
            .sum();
        // the estimate: D at x and at x + σε for 512 draws of ε
        let mut init = Init::new(100 + image as u64);
        let noise = init.normal(draws * len, R1_NOISE_STD);
        let mut noisy = x.to_vec();
        for k in 0..draws {
            noisy.extend(
                x.iter()
                    .zip(&noise[k * len..(k + 1) * len])
                    .map(|(a, e)| a + e),
            );
        }
        let d = logits(&trainer, &noisy, len, &shape);
        let sigma = R1_NOISE_STD as f64;
        let estimate =
            d[1..].iter().map(|v| (v - d[0]).powi(2)).sum::<f64>() / (draws as f64 * sigma * sigma);
        eprintln!(
            "image {image}: ‖∇ₓD‖² {grad_sq:.5e} (central differences), noise estimate {estimate:.5e}"
        );
        assert!(
            grad_sq > 1e-6,
            "D's input gradient is ~0 ({grad_sq:e}): nothing is tested"
        );
        assert!(
            (estimate / grad_sq - 1.0).abs() < 0.25,
            "image {image}: R1's noise estimate {estimate:e} against ‖∇ₓD‖² {grad_sq:e}"
        );
    }
}

mod common;
use common::*;
use vitgan::ops::adam::{AdamConfig, adam_step};

/// f64 reference of `steps` Adam steps with EMA; returns (param, m, v, ema).
fn adam_ref(
    p0: &[f64],
    grads: &[Vec<f64>],
    c: AdamConfig,
    decay: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let n = p0.len();
    let (mut p, mut m, mut v, mut ema) = (p0.to_vec(), vec![0.0; n], vec![0.0; n], p0.to_vec());
    let (b1, b2) = (c.beta1 as f64, c.beta2 as f64);
    for (t, g) in grads.iter().enumerate() {
        let t = t as i32 + 1;
        for i in 0..n {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            let mh = m[i] / (1.0 - b1.powi(t));
            let vh = v[i] / (1.0 - b2.powi(t));
            p[i] -= c.lr as f64 * mh / (vh.sqrt() + c.eps as f64);
            ema[i] = decay * ema[i] + (1.0 - decay) * p[i];
        }
    }
    (p, m, v, ema)
}

#[test]
fn adam_with_ema_matches_reference() {
    for (ci, cfg) in [
        AdamConfig::default(),
        AdamConfig {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
        },
    ]
    .into_iter()
    .enumerate()
    {
        // 1031: one parameter per invocation; 1036 (a multiple of 4): vec4 chunks on CPU adapters
        for n in [1031usize, 1036] {
            let mut r = rng(ci as u64 + n as u64);
            let p0 = random(&mut r, n, -1.0, 1.0);
            let grads: Vec<Vec<f32>> = (0..5).map(|_| random(&mut r, n, -1.0, 1.0)).collect();
            let p = upload(&p0, &[n]);
            let ema = upload(&p0, &[n]);
            let m = vitgan::Tensor::zeros(&gpu(), &[n]).unwrap();
            let v = vitgan::Tensor::zeros(&gpu(), &[n]).unwrap();
            for (t, g) in grads.iter().enumerate() {
                adam_step(
                    &p,
                    &upload(g, &[n]),
                    &m,
                    &v,
                    Some((&ema, 0.999)),
                    cfg,
                    t as u64 + 1,
                )
                .unwrap();
            }
            let gf: Vec<Vec<f64>> = grads.iter().map(|g| to_f64(g)).collect();
            let (wp, wm, wv, we) = adam_ref(&to_f64(&p0), &gf, cfg, 0.999);
            assert_close(&p.to_vec().unwrap(), &wp, 1e-5, 1e-4, "param");
            assert_close(&m.to_vec().unwrap(), &wm, 1e-6, 1e-4, "m");
            assert_close(&v.to_vec().unwrap(), &wv, 1e-6, 1e-4, "v");
            assert_close(&ema.to_vec().unwrap(), &we, 1e-5, 1e-4, "ema");
        }
    }
}

#[test]
fn adam_without_ema_and_shape_errors() {
    // 7: one parameter per invocation; 8: vec4 chunks on CPU adapters (with the unused EMA binding)
    for n in [7usize, 8] {
        let p = upload(&vec![1.0; n], &[n]);
        let g = upload(&vec![0.5; n], &[n]);
        let m = vitgan::Tensor::zeros(&gpu(), &[n]).unwrap();
        let v = vitgan::Tensor::zeros(&gpu(), &[n]).unwrap();
        adam_step(&p, &g, &m, &v, None, AdamConfig::default(), 1).unwrap();
        // first step with β1 = 0: update = lr · g/|g| = lr
        assert_close(
            &p.to_vec().unwrap(),
            &vec![1.0 - 0.002; n],
            1e-6,
            0.0,
            "first step moves by lr",
        );
        let bad = upload(&[0.0; 3], &[3]);
        assert!(adam_step(&p, &bad, &m, &v, None, AdamConfig::default(), 1).is_err());
    }
}

//! Improved spectral normalisation: power iteration vs f64 reference, σ vs the largest singular value,
//! W̄ = σ0·W/σ and its backward vs finite differences (u, v constant).

mod common;
use common::spectral_norm::{
    power_iteration_ref, spectral_normalize_ref, top_singular_value, transposed_matvec,
};
use common::*;
use vitgan::Tape;
use vitgan::ops::spectral_norm::{
    SpectralNorm, power_iteration, scale_by_sigma_ratio, spectral_normalize_backward,
};

fn scalar(t: &vitgan::Tensor) -> f64 {
    t.to_vec().unwrap()[0] as f64
}

fn unit(v: Vec<f64>) -> Vec<f64> {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

#[test]
fn power_iteration_steps_match_reference() {
    for (i, &(out, inp)) in [(1, 1), (7, 13), (13, 7), (65, 33), (3, 300)]
        .iter()
        .enumerate()
    {
        let mut r = rng(i as u64);
        let w = random(&mut r, out * inp, -1.0, 1.0);
        let u0 = random(&mut r, out, -1.0, 1.0);
        let u = upload(&u0, &[out]);
        let (sigma, v) = power_iteration(&upload(&w, &[out, inp]), &u, 3).unwrap();
        let (want_u, want_v, want_sigma) =
            power_iteration_ref(&to_f64(&w), out, inp, &to_f64(&u0), 3);
        let name = format!("{out}x{inp}");
        assert_close(
            &u.to_vec().unwrap(),
            &want_u,
            1e-5,
            1e-4,
            &format!("u, {name}"),
        );
        assert_close(
            &v.to_vec().unwrap(),
            &want_v,
            1e-5,
            1e-4,
            &format!("v, {name}"),
        );
        assert_close(
            &sigma.to_vec().unwrap(),
            &[want_sigma],
            0.0,
            1e-5,
            &format!("sigma, {name}"),
        );
    }
}

#[test]
fn converged_sigma_is_the_largest_singular_value() {
    for (i, &(out, inp, iters)) in [(7, 13, 200), (65, 33, 300), (384, 1536, 300)]
        .iter()
        .enumerate()
    {
        let mut r = rng(100 + i as u64);
        let w = random(&mut r, out * inp, -1.0, 1.0);
        let sn = SpectralNorm::init(&upload(&w, &[out, inp]), iters, 7 + i as u64).unwrap();
        let want = top_singular_value(&to_f64(&w), out, inp);
        let got = scalar(&sn.sigma_init);
        assert!(
            ((got - want) / want).abs() < 1e-3,
            "{out}x{inp}: σ after {iters} iterations is {got}, the largest singular value is {want}"
        );
    }
}

#[test]
fn normalized_weight_keeps_the_initial_spectral_norm() {
    let (out, inp) = (48, 29);
    let mut r = rng(200);
    let w_init = random(&mut r, out * inp, -1.0, 1.0);
    let sn = SpectralNorm::init(&upload(&w_init, &[out, inp]), 300, 1).unwrap();
    let sigma0 = scalar(&sn.sigma_init);
    assert!((sigma0 / top_singular_value(&to_f64(&w_init), out, inp) - 1.0).abs() < 1e-3);
    // the weight moves during training; W̄ keeps σ(W_init)
    let noise = random(&mut r, out * inp, -1.0, 1.0);
    let w: Vec<f32> = w_init
        .iter()
        .zip(&noise)
        .map(|(a, n)| 2.5 * a + 0.7 * n)
        .collect();
    let tape = Tape::new(&gpu());
    let wv = tape.leaf(upload(&w, &[out, inp]), true);
    let w_bar = tape.spectral_normalize(wv, &sn, 300).unwrap();
    let w_bar = to_f64(&tape.value(w_bar).to_vec().unwrap());
    let got = top_singular_value(&w_bar, out, inp);
    assert!(
        (got / sigma0 - 1.0).abs() < 1e-3,
        "σ(W̄) = {got} but σ(W_init) = {sigma0}"
    );
}

#[test]
fn normalized_weight_is_invariant_to_scaling() {
    let (out, inp) = (21, 34);
    let mut r = rng(300);
    let w = random(&mut r, out * inp, -1.0, 1.0);
    let w_scaled: Vec<f32> = w.iter().map(|x| x * 3.7).collect();
    let sn = SpectralNorm::init(&upload(&w, &[out, inp]), 5, 3).unwrap();
    let sn_scaled = SpectralNorm {
        u: sn.u.deep_clone().unwrap(),
        sigma_init: sn.sigma_init.clone(),
    };
    let tape = Tape::new(&gpu());
    let a = tape
        .spectral_normalize(tape.constant(upload(&w, &[out, inp])), &sn, 1)
        .unwrap();
    let b = tape
        .spectral_normalize(tape.constant(upload(&w_scaled, &[out, inp])), &sn_scaled, 1)
        .unwrap();
    let a = tape.value(a).to_vec().unwrap();
    assert_close(
        &tape.value(b).to_vec().unwrap(),
        &to_f64(&a),
        1e-6,
        1e-5,
        "W̄(3.7 W) vs W̄(W)",
    );
    // and it is not the identity: W̄ ≠ W unless σ0 = σ
    assert!(a.iter().zip(&w).any(|(x, y)| (x - y).abs() > 1e-3));
}

/// `spectral_normalize_backward` vs central differences of `Σ R ⊙ σ0·W/(uᵀWv)` with `u, v` fixed.
#[test]
fn backward_matches_finite_differences() {
    for (i, &(out, inp)) in [(1, 1), (7, 13), (20, 9), (65, 33)].iter().enumerate() {
        let mut r = rng(400 + i as u64);
        let w = random(&mut r, out * inp, -1.0, 1.0);
        let g = random(&mut r, out * inp, -1.0, 1.0);
        let wt = upload(&w, &[out, inp]);
        // few iterations: u, v are far from converged, so u vᵀ is not W's top singular pair
        let u = upload(&random(&mut r, out, -1.0, 1.0), &[out]);
        let (sigma, v) = power_iteration(&wt, &u, 1).unwrap();
        let sigma0 = upload(&[1.7], &[1]);
        let dw =
            spectral_normalize_backward(&upload(&g, &[out, inp]), &wt, &u, &v, &sigma0, &sigma)
                .unwrap();

        let (u64_, v64) = (to_f64(&u.to_vec().unwrap()), to_f64(&v.to_vec().unwrap()));
        let (w64, g64) = (to_f64(&w), to_f64(&g));
        let want = numeric_grad(&w64, 1e-6, |w| {
            dot(&g64, &spectral_normalize_ref(w, out, inp, &u64_, &v64, 1.7))
        });
        assert_close(
            &dw.to_vec().unwrap(),
            &want,
            1e-4,
            1e-3,
            &format!("dW, {out}x{inp}"),
        );

        let w_bar = scale_by_sigma_ratio(&wt, &sigma0, &sigma).unwrap();
        let want_bar = spectral_normalize_ref(&w64, out, inp, &u64_, &v64, 1.7);
        assert_close(
            &w_bar.to_vec().unwrap(),
            &want_bar,
            1e-5,
            1e-4,
            &format!("W̄, {out}x{inp}"),
        );
    }
}

/// Through the tape, twice on the same weight (as D runs on real and fake images): each call's
/// backward uses that call's u and v, although the second call moved the shared u.
#[test]
fn tape_backward_uses_the_u_v_of_its_own_call() {
    let (out, inp) = (11, 17);
    let mut r = rng(500);
    let w = random(&mut r, out * inp, -1.0, 1.0);
    let g = random(&mut r, out * inp, -1.0, 1.0);
    let wt = upload(&w, &[out, inp]);
    let sn = SpectralNorm::init(&wt, 1, 9).unwrap();
    let sigma0 = scalar(&sn.sigma_init);
    let u_before = to_f64(&sn.u.to_vec().unwrap());

    let tape = Tape::new(&gpu());
    let wv = tape.leaf(wt, true);
    let first = tape.spectral_normalize(wv, &sn, 1).unwrap();
    let u_first = to_f64(&sn.u.to_vec().unwrap());
    let _second = tape.spectral_normalize(wv, &sn, 1).unwrap();
    let u_second = to_f64(&sn.u.to_vec().unwrap());
    assert!(
        u_first
            .iter()
            .zip(&u_second)
            .any(|(a, b)| (a - b).abs() > 1e-3),
        "u must still move"
    );

    tape.backward_with(first, upload(&g, &[out, inp])).unwrap();
    let w64 = to_f64(&w);
    let v_first = unit(transposed_matvec(&w64, out, inp, &u_before));
    let want = numeric_grad(&w64, 1e-6, |w| {
        dot(
            &to_f64(&g),
            &spectral_normalize_ref(w, out, inp, &u_first, &v_first, sigma0),
        )
    });
    assert_close(
        &tape.grad(wv).unwrap().to_vec().unwrap(),
        &want,
        1e-4,
        1e-3,
        "dW through the tape",
    );
}

#[test]
fn bad_shapes_are_errors() {
    let w = upload(&[1.0; 6], &[2, 3]);
    assert!(power_iteration(&w, &upload(&[1.0; 3], &[3]), 1).is_err());
    assert!(power_iteration(&w, &upload(&[1.0; 2], &[2]), 0).is_err());
    assert!(SpectralNorm::init(&upload(&[1.0; 6], &[6]), 1, 0).is_err());
}

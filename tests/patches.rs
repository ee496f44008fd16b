//! Overlapping patches and patches → image: GPU vs f64 reference, the backward as the adjoint of the
//! forward, and the generator's inverse.

mod common;
use common::patches::{extract_patches_backward_ref, extract_patches_ref, patches_to_image_ref};
use common::*;
use vitgan::Tape;
use vitgan::ops::patches::{extract_patches, extract_patches_backward, patches_to_image};

/// (image [B, H, W, C], patch, overlap)
const CASES: &[([usize; 4], usize, usize)] = &[
    ([2, 12, 8, 3], 4, 2),
    ([1, 9, 6, 3], 3, 1),
    ([2, 12, 8, 3], 4, 0),
    ([1, 7, 7, 2], 7, 3),
    ([3, 10, 15, 1], 5, 2),
    ([1, 8, 8, 3], 2, 3), // overlap wider than the patch: windows reach two cells away
    ([2, 1, 1, 5], 1, 1),
];

fn patches_shape(img: [usize; 4], p: usize, o: usize) -> [usize; 3] {
    let k = p + 2 * o;
    [img[0], (img[1] / p) * (img[2] / p), k * k * img[3]]
}

#[test]
fn extract_patches_matches_reference() {
    for (i, &(img, p, o)) in CASES.iter().enumerate() {
        let x = random(&mut rng(i as u64), img.iter().product(), -1.0, 1.0);
        let got = extract_patches(&upload(&x, &img), p, o).unwrap();
        assert_eq!(got.shape(), patches_shape(img, p, o));
        let want = extract_patches_ref(&to_f64(&x), img, p, o);
        assert_close(
            &got.to_vec().unwrap(),
            &want,
            0.0,
            0.0,
            &format!("patches {img:?} P={p} o={o}"),
        );
    }
}

#[test]
fn extract_patches_backward_matches_reference_and_is_the_adjoint() {
    for (i, &(img, p, o)) in CASES.iter().enumerate() {
        let mut r = rng(100 + i as u64);
        let x = random(&mut r, img.iter().product(), -1.0, 1.0);
        let pshape = patches_shape(img, p, o);
        let y = random(&mut r, pshape.iter().product(), -1.0, 1.0);
        let name = format!("{img:?} P={p} o={o}");
        let back = extract_patches_backward(&upload(&y, &pshape), img, p, o).unwrap();
        assert_eq!(back.shape(), img);
        let back = back.to_vec().unwrap();
        let want = extract_patches_backward_ref(&to_f64(&y), img, p, o);
        assert_close(&back, &want, 1e-6, 1e-6, &format!("backward {name}"));
        // ⟨extract(x), y⟩ = ⟨x, extract_backward(y)⟩, both sides from the GPU
        let fwd = to_f64(
            &extract_patches(&upload(&x, &img), p, o)
                .unwrap()
                .to_vec()
                .unwrap(),
        );
        let lhs = dot(&fwd, &to_f64(&y));
        let rhs = dot(&to_f64(&x), &to_f64(&back));
        assert!(
            (lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()),
            "adjoint identity {name}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn tape_gradient_matches_finite_differences() {
    let (img, p, o) = ([1, 6, 9, 2], 3, 1);
    let mut r = rng(200);
    let x = random(&mut r, img.iter().product(), -1.0, 1.0);
    let pshape = patches_shape(img, p, o);
    let w = random(&mut r, pshape.iter().product(), -1.0, 1.0);
    let tape = Tape::new(&gpu());
    let xv = tape.leaf(upload(&x, &img), true);
    let y = tape.extract_patches(xv, p, o).unwrap();
    tape.backward_with(y, upload(&w, &pshape)).unwrap();
    let want = numeric_grad(&to_f64(&x), 1e-3, |x| {
        dot(&to_f64(&w), &extract_patches_ref(x, img, p, o))
    });
    assert_close(
        &tape.grad(xv).unwrap().to_vec().unwrap(),
        &want,
        1e-5,
        1e-5,
        "d img",
    );
}

#[test]
fn patches_to_image_matches_reference_and_inverts_plain_patching() {
    for (i, &(img, p)) in [
        ([2, 12, 8, 3], 4),
        ([1, 9, 6, 3], 3),
        ([3, 5, 10, 1], 5),
        ([1, 4, 4, 2], 1),
    ]
    .iter()
    .enumerate()
    {
        let mut r = rng(300 + i as u64);
        let pshape = patches_shape(img, p, 0);
        let patches = random(&mut r, pshape.iter().product(), -1.0, 1.0);
        let name = format!("{img:?} P={p}");
        let got = patches_to_image(&upload(&patches, &pshape), img[1], img[2], p).unwrap();
        assert_eq!(got.shape(), img);
        let got = got.to_vec().unwrap();
        assert_close(
            &got,
            &patches_to_image_ref(&to_f64(&patches), img, p),
            0.0,
            0.0,
            &name,
        );
        // extract(o = 0) ∘ patches_to_image = identity, and the other way round
        let again = extract_patches(&upload(&got, &img), p, 0)
            .unwrap()
            .to_vec()
            .unwrap();
        assert_close(
            &again,
            &to_f64(&patches),
            0.0,
            0.0,
            &format!("extract ∘ to_image, {name}"),
        );
        let x = random(&mut r, img.iter().product(), -1.0, 1.0);
        let round = patches_to_image(
            &extract_patches(&upload(&x, &img), p, 0).unwrap(),
            img[1],
            img[2],
            p,
        )
        .unwrap()
        .to_vec()
        .unwrap();
        assert_close(
            &round,
            &to_f64(&x),
            0.0,
            0.0,
            &format!("to_image ∘ extract, {name}"),
        );
    }
}

#[test]
fn patches_to_image_tape_gradient_matches_finite_differences() {
    let (img, p) = ([2, 6, 4, 3], 2);
    let pshape = patches_shape(img, p, 0);
    let mut r = rng(400);
    let patches = random(&mut r, pshape.iter().product(), -1.0, 1.0);
    let w = random(&mut r, img.iter().product(), -1.0, 1.0);
    let tape = Tape::new(&gpu());
    let pv = tape.leaf(upload(&patches, &pshape), true);
    let y = tape.patches_to_image(pv, img[1], img[2], p).unwrap();
    tape.backward_with(y, upload(&w, &img)).unwrap();
    let want = numeric_grad(&to_f64(&patches), 1e-3, |q| {
        dot(&to_f64(&w), &patches_to_image_ref(q, img, p))
    });
    assert_close(
        &tape.grad(pv).unwrap().to_vec().unwrap(),
        &want,
        1e-5,
        1e-5,
        "d patches",
    );
}

#[test]
fn indivisible_sizes_are_errors_naming_the_numbers() {
    let x = upload(&[0.0; 2 * 10 * 8 * 3], &[2, 10, 8, 3]);
    let err = extract_patches(&x, 4, 2).unwrap_err().to_string();
    assert!(err.contains("10") && err.contains('4'), "{err}");
    assert!(extract_patches(&x, 0, 0).is_err());
    assert!(extract_patches(&upload(&[0.0; 8], &[8]), 2, 1).is_err());
    let patches = upload(&[0.0; 2 * 4 * 48], &[2, 4, 48]);
    let err = patches_to_image(&patches, 10, 8, 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("10") && err.contains('4'), "{err}");
    // wrong patch count for the image size
    assert!(patches_to_image(&patches, 12, 8, 4).is_err());
    // last axis not P·P·C
    assert!(patches_to_image(&upload(&[0.0; 2 * 4 * 47], &[2, 4, 47]), 8, 8, 4).is_err());
    // backward with patches of the wrong shape
    assert!(extract_patches_backward(&patches, [2, 8, 8, 3], 4, 2).is_err());
}

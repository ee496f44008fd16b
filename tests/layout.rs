mod common;
use common::*;
use vitgan::ops::layout;

fn permute_ref(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let n: usize = shape.iter().product();
    let strides = vitgan::ops::contiguous_strides(shape);
    (0..n)
        .map(|lin| {
            let mut rem = lin;
            let mut src = 0;
            for d in (0..out_shape.len()).rev() {
                let c = rem % out_shape[d];
                rem /= out_shape[d];
                src += c * strides[perm[d]];
            }
            x[src] as f64
        })
        .collect()
}

#[test]
fn permute_and_transpose() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[7, 13], &[1, 0]),
        (&[2, 65, 6, 17], &[0, 2, 1, 3]),
        (&[3, 5, 7, 2, 1], &[4, 2, 0, 3, 1]),
        (&[1], &[0]),
        // unit-stride innermost runs of a multiple of 4: the vec4-run kernel on CPU adapters
        (&[2, 65, 6, 16], &[0, 2, 1, 3]),
        (&[3, 4, 8], &[1, 0, 2]),
    ];
    for (i, (shape, perm)) in cases.iter().enumerate() {
        let mut r = rng(i as u64);
        let x = random(&mut r, shape.iter().product(), -1.0, 1.0);
        let y = layout::permute(&upload(&x, shape), perm).unwrap();
        assert_close(
            &y.to_vec().unwrap(),
            &permute_ref(&x, shape, perm),
            0.0,
            0.0,
            &format!("permute {shape:?} {perm:?}"),
        );
        let back = layout::permute(&y, &layout::inverse_permutation(perm)).unwrap();
        assert_close(
            &back.to_vec().unwrap(),
            &to_f64(&x),
            0.0,
            0.0,
            "inverse permutation",
        );
    }
    assert!(layout::permute(&upload(&[0.0; 6], &[2, 3]), &[0, 0]).is_err());
}

#[test]
fn slice_concat_and_pad() {
    // inner width 5: the per-element kernel; 8: vec4 runs on CPU adapters
    for inner in [5usize, 8] {
        slice_concat_and_pad_with(inner);
    }
}

fn slice_concat_and_pad_with(inner: usize) {
    let mut r = rng(5);
    let shape = [3usize, 11, inner];
    let x = random(&mut r, 33 * inner, -1.0, 1.0);
    let t = upload(&x, &shape);
    let s = layout::slice(&t, 1, 4, 6).unwrap();
    assert_eq!(s.shape(), &[3, 6, inner]);
    let mut want = Vec::new();
    for a in 0..3 {
        for b in 4..10 {
            for c in 0..inner {
                want.push(x[(a * 11 + b) * inner + c] as f64);
            }
        }
    }
    assert_close(&s.to_vec().unwrap(), &want, 0.0, 0.0, "slice");
    // pad_slice is the adjoint of slice: the slice of the padded tensor is the input, the rest is zero
    let padded = layout::pad_slice(&s, &shape, 1, 4)
        .unwrap()
        .to_vec()
        .unwrap();
    for a in 0..3 {
        for b in 0..11 {
            for c in 0..inner {
                let v = padded[(a * 11 + b) * inner + c];
                let expect = if (4..10).contains(&b) {
                    x[(a * 11 + b) * inner + c]
                } else {
                    0.0
                };
                assert_eq!(v, expect);
            }
        }
    }
    let p0 = layout::slice(&t, 1, 0, 4).unwrap();
    let p2 = layout::slice(&t, 1, 10, 1).unwrap();
    let cat = layout::concat(&[&p0, &s, &p2], 1).unwrap();
    assert_eq!(cat.shape(), &shape);
    assert_close(
        &cat.to_vec().unwrap(),
        &to_f64(&x),
        0.0,
        0.0,
        "concat of slices",
    );
    assert!(layout::slice(&t, 1, 8, 4).is_err());
    assert!(layout::concat(&[&p0, &upload(&[0.0; 4], &[4])], 1).is_err());
}

#[test]
fn broadcast_to_materialises() {
    let x = upload(&[1.0, 2.0, 3.0], &[3, 1]);
    let y = layout::broadcast_to(&x, &[2, 3, 2])
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(
        y,
        vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    );
    assert!(layout::broadcast_to(&x, &[2, 2]).is_err());
}

#[test]
fn reshape_is_a_view() {
    let x = upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
    let y = x.reshape(&[3, 2]).unwrap();
    assert!(y.same_storage(&x));
    assert_eq!(y.to_vec().unwrap(), x.to_vec().unwrap());
    let msg = x.reshape(&[4, 2]).err().unwrap().to_string();
    assert!(msg.contains("[2, 3]") && msg.contains("[4, 2]"), "{msg}");
}

#[test]
fn long_contiguous_copies() {
    // identity permutations are one contiguous run: copied as vec4s by one invocation on CPU adapters
    // (length a multiple of 4), else per element
    for (i, shape) in [vec![3usize, 2048, 4], vec![5, 1031], vec![7, 4100]]
        .iter()
        .enumerate()
    {
        let mut r = rng(70 + i as u64);
        let x = random(&mut r, shape.iter().product(), -1.0, 1.0);
        let perm: Vec<usize> = (0..shape.len()).collect();
        let y = layout::permute(&upload(&x, shape), &perm).unwrap();
        assert_close(
            &y.to_vec().unwrap(),
            &to_f64(&x),
            0.0,
            0.0,
            &format!("copy {shape:?}"),
        );
    }
}

#[test]
fn empty_copies_are_no_ops() {
    let t = upload(&[1.0; 32], &[4, 8]);
    let s = layout::slice(&t, 1, 0, 0).unwrap();
    assert_eq!(s.shape(), &[4, 0]);
    assert!(s.to_vec().unwrap().is_empty());
    let p = layout::permute(&s, &[1, 0]).unwrap();
    assert_eq!(p.shape(), &[0, 4]);
}

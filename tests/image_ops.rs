//! Convolution (im2col + matmul), max/average pooling and bilinear resizing of NHWC images: GPU vs
//! plain f64 references on random inputs with odd sizes, non-square kernels, strides and padding.

mod common;
use common::*;
use vitgan::ops::conv::{Window2d, conv2d, im2col};
use vitgan::ops::matmul::Activation;
use vitgan::ops::pool::{Pool, pool2d};
use vitgan::ops::resize::resize_bilinear;

fn window(kernel: [usize; 2], stride: [usize; 2], pad: [usize; 2]) -> Window2d {
    Window2d {
        kernel,
        stride,
        pad,
    }
}

fn out_size(size: usize, k: usize, s: usize, p: usize) -> usize {
    (size + 2 * p - k) / s + 1
}

/// Pixel `(y, x)` of image `b` for signed coordinates, `None` outside.
fn pixel(img: &[f64], dims: [usize; 4], b: usize, y: isize, x: isize, c: usize) -> Option<f64> {
    let [_, h, w, ch] = dims;
    (y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w)
        .then(|| img[((b * h + y as usize) * w + x as usize) * ch + c])
}

/// Direct convolution in f64 (no im2col): weight `[kh·kw·C, C_out]` in (ky, kx, c) row order.
fn conv_ref(
    img: &[f64],
    dims: [usize; 4],
    weight: &[f64],
    bias: &[f64],
    c_out: usize,
    win: &Window2d,
    relu: bool,
) -> Vec<f64> {
    let [b, h, w, c] = dims;
    let (oh, ow) = (
        out_size(h, win.kernel[0], win.stride[0], win.pad[0]),
        out_size(w, win.kernel[1], win.stride[1], win.pad[1]),
    );
    let mut out = vec![0.0; b * oh * ow * c_out];
    for bi in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..c_out {
                    let mut acc = bias[co];
                    for ky in 0..win.kernel[0] {
                        for kx in 0..win.kernel[1] {
                            let y = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                            let x = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                            for ci in 0..c {
                                if let Some(v) = pixel(img, dims, bi, y, x, ci) {
                                    acc += v * weight
                                        [((ky * win.kernel[1] + kx) * c + ci) * c_out + co];
                                }
                            }
                        }
                    }
                    out[((bi * oh + oy) * ow + ox) * c_out + co] =
                        if relu { acc.max(0.0) } else { acc };
                }
            }
        }
    }
    out
}

fn pool_ref(img: &[f64], dims: [usize; 4], win: &Window2d, pool: Pool) -> Vec<f64> {
    let [b, h, w, c] = dims;
    let (oh, ow) = (
        out_size(h, win.kernel[0], win.stride[0], win.pad[0]),
        out_size(w, win.kernel[1], win.stride[1], win.pad[1]),
    );
    let mut out = Vec::with_capacity(b * oh * ow * c);
    for bi in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                for ci in 0..c {
                    let mut vals = Vec::new();
                    for ky in 0..win.kernel[0] {
                        for kx in 0..win.kernel[1] {
                            let y = (oy * win.stride[0] + ky) as isize - win.pad[0] as isize;
                            let x = (ox * win.stride[1] + kx) as isize - win.pad[1] as isize;
                            vals.extend(pixel(img, dims, bi, y, x, ci));
                        }
                    }
                    out.push(match pool {
                        Pool::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                        Pool::Average => vals.iter().sum::<f64>() / vals.len() as f64,
                    });
                }
            }
        }
    }
    out
}

/// PyTorch's bilinear source index and weight (align_corners=False) along one axis.
fn source_ref(o: usize, input: usize, output: usize) -> (usize, usize, f64) {
    let s = ((o as f64 + 0.5) * input as f64 / output as f64 - 0.5).max(0.0);
    let i0 = (s.floor() as usize).min(input - 1);
    (i0, (i0 + 1).min(input - 1), s - i0 as f64)
}

fn resize_ref(img: &[f64], dims: [usize; 4], oh: usize, ow: usize) -> Vec<f64> {
    let [b, h, w, c] = dims;
    let mut out = Vec::with_capacity(b * oh * ow * c);
    for bi in 0..b {
        for oy in 0..oh {
            let (y0, y1, ty) = source_ref(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1, tx) = source_ref(ox, w, ow);
                for ci in 0..c {
                    let at = |y: usize, x: usize| img[((bi * h + y) * w + x) * c + ci];
                    let top = (1.0 - tx) * at(y0, x0) + tx * at(y0, x1);
                    let bottom = (1.0 - tx) * at(y1, x0) + tx * at(y1, x1);
                    out.push((1.0 - ty) * top + ty * bottom);
                }
            }
        }
    }
    out
}

/// (image, window, output channels) — the shapes InceptionV3 uses (3×3 stride 2, 1×7 / 7×1 with
/// padding 3, 5×5 padding 2, 1×1) at odd sizes, plus one whose receptive field (3·3·1,901 =
/// 17,109 values) is longer than the CPU loop budget.
fn conv_cases() -> Vec<([usize; 4], Window2d, usize)> {
    vec![
        ([2, 11, 9, 3], window([3, 3], [2, 2], [0, 0]), 5),
        ([1, 7, 10, 4], window([3, 3], [1, 1], [1, 1]), 6),
        ([2, 9, 9, 5], window([1, 7], [1, 1], [0, 3]), 7),
        ([1, 9, 8, 3], window([7, 1], [1, 1], [3, 0]), 4),
        ([1, 8, 7, 2], window([5, 5], [1, 1], [2, 2]), 3),
        ([3, 5, 6, 9], window([1, 1], [1, 1], [0, 0]), 11),
        ([1, 13, 13, 2], window([3, 3], [2, 2], [1, 1]), 3),
        ([2, 3, 3, 1901], window([3, 3], [1, 1], [0, 0]), 3),
        // channels in multiples of 4 take the vec4 gather
        ([2, 9, 7, 8], window([3, 3], [2, 2], [1, 1]), 5),
        ([1, 6, 9, 12], window([1, 3], [1, 1], [0, 1]), 4),
        ([1, 3, 3, 1904], window([3, 3], [1, 1], [0, 0]), 2),
        // 65,540 channels: the vec4 gather would loop 16,385 times per tap, past the CPU loop
        // budget, so the launcher falls back to one invocation per element
        ([1, 2, 2, 65_540], window([1, 1], [2, 2], [0, 0]), 2),
    ]
}

#[test]
fn im2col_lays_out_every_window() {
    for (i, (dims, win, _)) in conv_cases().into_iter().enumerate() {
        let x = random(&mut rng(i as u64), dims.iter().product(), -1.0, 1.0);
        let cols = im2col(&upload(&x, &dims), &win).unwrap();
        // im2col against the identity weight: the conv reference with C_out = kh·kw·C one-hot filters
        let rows = win.kernel[0] * win.kernel[1] * dims[3];
        if rows > 128 {
            continue;
        }
        let eye: Vec<f64> = (0..rows * rows)
            .map(|k| if k / rows == k % rows { 1.0 } else { 0.0 })
            .collect();
        let want = conv_ref(&to_f64(&x), dims, &eye, &vec![0.0; rows], rows, &win, false);
        assert_close(
            &cols.to_vec().unwrap(),
            &want,
            0.0,
            0.0,
            &format!("im2col {dims:?} {win:?}"),
        );
    }
}

#[test]
fn conv2d_matches_direct_convolution() {
    for (i, (dims, win, c_out)) in conv_cases().into_iter().enumerate() {
        let mut r = rng(100 + i as u64);
        let rows = win.kernel[0] * win.kernel[1] * dims[3];
        let x = random(&mut r, dims.iter().product(), -1.0, 1.0);
        let w = random(&mut r, rows * c_out, -0.5, 0.5);
        let bias = random(&mut r, c_out, -0.5, 0.5);
        for relu in [false, true] {
            let act = if relu {
                Activation::Relu
            } else {
                Activation::None
            };
            let got = conv2d(
                &upload(&x, &dims),
                &upload(&w, &[rows, c_out]),
                Some(&upload(&bias, &[c_out])),
                &win,
                act,
            )
            .unwrap();
            let oh = out_size(dims[1], win.kernel[0], win.stride[0], win.pad[0]);
            let ow = out_size(dims[2], win.kernel[1], win.stride[1], win.pad[1]);
            assert_eq!(got.shape(), [dims[0], oh, ow, c_out]);
            let want = conv_ref(
                &to_f64(&x),
                dims,
                &to_f64(&w),
                &to_f64(&bias),
                c_out,
                &win,
                relu,
            );
            let tol = 2e-6 * (rows as f64).sqrt();
            assert_close(
                &got.to_vec().unwrap(),
                &want,
                tol,
                1e-5,
                &format!("conv {dims:?} {win:?}"),
            );
        }
    }
}

#[test]
fn conv2d_refuses_mismatched_weights_and_windows() {
    let x = upload(&[0.0; 2 * 5 * 5 * 3], &[2, 5, 5, 3]);
    let w = upload(&[0.0; 27 * 4], &[27, 4]);
    let err = conv2d(
        &x,
        &upload(&[0.0; 26 * 4], &[26, 4]),
        None,
        &Window2d::square(3, 1, 0),
        Activation::None,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("[27, C_out]"), "{err}");
    let w7 = upload(&[0.0; 147 * 4], &[147, 4]);
    let err = conv2d(&x, &w7, None, &Window2d::square(7, 1, 0), Activation::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert!(conv2d(&x, &w, None, &Window2d::square(3, 0, 0), Activation::None).is_err());
}

#[test]
fn pooling_matches_reference() {
    let cases = [
        ([2, 11, 11, 3], Window2d::square(3, 2, 0)),
        ([1, 8, 9, 5], Window2d::square(3, 1, 1)),
        ([2, 7, 6, 4], Window2d::square(3, 2, 1)),
        ([1, 6, 5, 2], window([2, 3], [2, 1], [1, 1])),
        ([1, 3, 3, 7], Window2d::square(3, 1, 1)),
        // channels in multiples of 4 take the vec4 kernels
        ([2, 9, 9, 8], Window2d::square(3, 2, 0)),
        ([1, 5, 7, 12], Window2d::square(3, 1, 1)),
        // 8,000 channels: the vec4 loop (2,000 · (1 + 3 + 9) trips) is past the CPU loop budget,
        // so the launcher falls back to one invocation per element
        ([1, 3, 3, 8000], Window2d::square(3, 1, 1)),
    ];
    for (i, (dims, win)) in cases.into_iter().enumerate() {
        // negative values everywhere for max: padding must never win
        let x = random(&mut rng(200 + i as u64), dims.iter().product(), -2.0, -0.1);
        for pool in [Pool::Max, Pool::Average] {
            let got = pool2d(&upload(&x, &dims), &win, pool).unwrap();
            let want = pool_ref(&to_f64(&x), dims, &win, pool);
            assert_close(
                &got.to_vec().unwrap(),
                &want,
                1e-6,
                1e-6,
                &format!("{pool:?} {dims:?} {win:?}"),
            );
        }
    }
    let x = upload(&[0.0; 9], &[1, 3, 3, 1]);
    assert!(pool2d(&x, &Window2d::square(3, 1, 3), Pool::Max).is_err());
}

#[test]
fn bilinear_resize_matches_reference() {
    // up (16 → 299, Inception's input), down, identity, odd ratios, a 1-pixel axis
    let cases = [
        ([2, 16, 16, 3], 299, 299),
        ([1, 13, 7, 2], 5, 11),
        ([1, 9, 9, 1], 9, 9),
        ([2, 1, 6, 3], 4, 3),
        ([1, 40, 33, 3], 17, 64),
    ];
    for (i, (dims, oh, ow)) in cases.into_iter().enumerate() {
        let x = random(&mut rng(300 + i as u64), dims.iter().product(), -1.0, 1.0);
        let got = resize_bilinear(&upload(&x, &dims), oh, ow).unwrap();
        assert_eq!(got.shape(), [dims[0], oh, ow, dims[3]]);
        let want = resize_ref(&to_f64(&x), dims, oh, ow);
        assert_close(
            &got.to_vec().unwrap(),
            &want,
            1e-5,
            1e-5,
            &format!("resize {dims:?} → {oh}×{ow}"),
        );
    }
    let identity = random(&mut rng(9), 2 * 5 * 4 * 3, -1.0, 1.0);
    let same = resize_bilinear(&upload(&identity, &[2, 5, 4, 3]), 5, 4).unwrap();
    assert_eq!(
        same.to_vec().unwrap(),
        identity,
        "resizing to the same size is the identity"
    );
    assert!(resize_bilinear(&upload(&identity, &[2, 5, 4, 3]), 0, 4).is_err());
}

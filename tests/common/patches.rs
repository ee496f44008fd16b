//! f64 references for the patches family. Images are NHWC `[B, H, W, C]`.

/// Overlapping patches: `[B, L, K·K·C]` with `K = P + 2o`, `L = (H/P)(W/P)` row-major,
/// `out[b, gy·(W/P) + gx, (r·K + c)·C + ch] = img[b, gy·P − o + r, gx·P − o + c, ch]` (0 outside).
pub fn extract_patches_ref(img: &[f64], shape: [usize; 4], p: usize, o: usize) -> Vec<f64> {
    let [b, h, w, c] = shape;
    let (gh, gw, k) = (h / p, w / p, p + 2 * o);
    let mut out = Vec::with_capacity(b * gh * gw * k * k * c);
    for bi in 0..b {
        for gy in 0..gh {
            for gx in 0..gw {
                for r in 0..k {
                    for cc in 0..k {
                        let y = (gy * p + r) as isize - o as isize;
                        let x = (gx * p + cc) as isize - o as isize;
                        for ch in 0..c {
                            let inside = y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w;
                            out.push(if inside {
                                img[((bi * h + y as usize) * w + x as usize) * c + ch]
                            } else {
                                0.0
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// The transpose of [`extract_patches_ref`], written as a scatter-add (the kernel gathers instead).
pub fn extract_patches_backward_ref(
    dpatches: &[f64],
    shape: [usize; 4],
    p: usize,
    o: usize,
) -> Vec<f64> {
    let [b, h, w, c] = shape;
    let (gh, gw, k) = (h / p, w / p, p + 2 * o);
    let mut img = vec![0.0; b * h * w * c];
    let mut idx = 0;
    for bi in 0..b {
        for gy in 0..gh {
            for gx in 0..gw {
                for r in 0..k {
                    for cc in 0..k {
                        let y = (gy * p + r) as isize - o as isize;
                        let x = (gx * p + cc) as isize - o as isize;
                        for ch in 0..c {
                            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                                img[((bi * h + y as usize) * w + x as usize) * c + ch] +=
                                    dpatches[idx];
                            }
                            idx += 1;
                        }
                    }
                }
            }
        }
    }
    img
}

/// `[B, L, P·P·C]` → `[B, H, W, C]`: `img[b, y, x, ch] = patches[b, (y/P)(W/P) + x/P, ((y%P)·P + x%P)·C + ch]`.
pub fn patches_to_image_ref(patches: &[f64], shape: [usize; 4], p: usize) -> Vec<f64> {
    let [b, h, w, c] = shape;
    let (gh, gw) = (h / p, w / p);
    let mut img = Vec::with_capacity(b * h * w * c);
    for bi in 0..b {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let l = (y / p) * gw + x / p;
                    img.push(patches[((bi * gh * gw + l) * p * p + (y % p) * p + x % p) * c + ch]);
                }
            }
        }
    }
    img
}

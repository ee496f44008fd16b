//! The engine's InceptionV3 against pytorch-fid's own network with the same closed-form weights
//! (`scripts/inception_fixture.py` → tests/fixtures/inception/parity.json): pool3 features, logits
//! and the three intermediate blocks on three fixed 32×32 images resized to 299×299.

mod common;
use common::gpu;
use serde_json::Value;
use vitgan::metrics::ImageSet;
use vitgan::metrics::inception::{
    CLASSES, FEATURE_DIM, FormulaWeights, InceptionV3, SafetensorsWeights, WeightSource, quantise,
};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/inception/parity.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(_) => floats(x),
            _ => vec![x.as_f64().unwrap()],
        })
        .collect()
}

/// Largest |a − b| relative to the largest |b|.
fn relative_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0f64, f64::max)
        / scale
}

#[test]
fn formula_weights_match_numpy_bit_for_bit() {
    let f = fixture();
    let shapes: &[(&str, &[usize])] = &[
        ("Conv2d_1a_3x3.conv.weight", &[32, 3, 3, 3]),
        ("Mixed_7c.branch_pool.bn.running_var", &[192]),
        ("fc.weight", &[1008, 2048]),
    ];
    for (name, shape) in shapes {
        let got: Vec<u32> = FormulaWeights.tensor(name, shape).unwrap()[..4]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        let want: Vec<u32> = f["weights_bits"][name]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn matches_pytorch_fid_with_formula_weights() {
    let f = fixture();
    let size = f["size"].as_u64().unwrap() as usize;
    let pixels: Vec<f32> = floats(&f["images_u8"])
        .iter()
        .map(|u| (2.0 * u / 255.0 - 1.0) as f32)
        .collect();
    let n = pixels.len() / (size * size * 3);
    let set = ImageSet::new(&pixels, n, size, 3).unwrap();
    let gpu = gpu();
    let net = InceptionV3::new(&gpu, &FormulaWeights).unwrap();
    let out = net.forward(&net.prepare(&set, 0, n).unwrap()).unwrap();

    let features = out.features.to_vec().unwrap();
    let want = floats(&f["features"]);
    assert_eq!(out.features.shape(), [n, FEATURE_DIM]);
    let err = relative_error(&features, &want);
    println!("pool3 features: max relative error {err:.2e}");
    assert!(
        err < 1e-3,
        "pool3 features differ from pytorch-fid: {err:.2e}"
    );
    // the formula keeps the network alive: features spread across images, not collapsed to ≈ 0
    let spread: f64 = (0..FEATURE_DIM)
        .map(|d| {
            let col: Vec<f64> = (0..n).map(|i| want[i * FEATURE_DIM + d]).collect();
            let m = col.iter().sum::<f64>() / n as f64;
            (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n as f64).sqrt()
        })
        .sum::<f64>()
        / FEATURE_DIM as f64;
    assert!(
        spread > 0.05,
        "features barely differ across images: {spread}"
    );

    let logits = out.logits.to_vec().unwrap();
    assert_eq!(out.logits.shape(), [n, CLASSES]);
    let err = relative_error(&logits, &floats(&f["logits"]));
    println!("logits: max relative error {err:.2e}");
    assert!(err < 1e-3, "logits differ: {err:.2e}");

    for (k, block) in out.blocks.iter().enumerate() {
        let fb = &f["blocks"][k];
        let nchw: Vec<usize> = floats(&fb["shape_nchw"])
            .iter()
            .map(|v| *v as usize)
            .collect();
        let [bn, c, h, w] = [nchw[0], nchw[1], nchw[2], nchw[3]];
        assert_eq!(block.shape(), [bn, h, w, c], "block {k}");
        let v = block.to_vec().unwrap();
        let means: Vec<f32> = (0..bn * c)
            .map(|ic| {
                let (i, ch) = (ic / c, ic % c);
                ((0..h * w)
                    .map(|p| v[(i * h * w + p) * c + ch] as f64)
                    .sum::<f64>()
                    / (h * w) as f64) as f32
            })
            .collect();
        let err = relative_error(&means, &floats(&fb["channel_means"]));
        assert!(err < 1e-3, "block {k} channel means: {err:.2e}");
        let coords: Vec<Vec<usize>> = fb["coords_chw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| floats(c).iter().map(|x| *x as usize).collect())
            .collect();
        let got: Vec<f32> = (0..bn)
            .flat_map(|i| coords.iter().map(move |cc| (i, cc)))
            .map(|(i, cc)| v[((i * h + cc[1]) * w + cc[2]) * c + cc[0]])
            .collect();
        let err = relative_error(&got, &floats(&fb["values"]));
        println!("block {k}: max relative error {err:.2e}");
        assert!(err < 1e-3, "block {k} sampled values: {err:.2e}");
    }
}

#[test]
fn grey_images_are_replicated_and_inputs_quantised() {
    let gpu = gpu();
    let net = InceptionV3::new(&gpu, &FormulaWeights).unwrap();
    let grey: Vec<f32> = (0..2 * 8 * 8)
        .map(|i| ((i * 37) % 255) as f32 / 127.0 - 1.0)
        .collect();
    let rgb: Vec<f32> = grey.iter().flat_map(|v| [*v; 3]).collect();
    let a = net
        .prepare(&ImageSet::new(&grey, 2, 8, 1).unwrap(), 0, 2)
        .unwrap();
    let b = net
        .prepare(&ImageSet::new(&rgb, 2, 8, 3).unwrap(), 0, 2)
        .unwrap();
    assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
    assert_eq!(quantise(-1.0), -1.0);
    assert_eq!(quantise(1.0), 1.0);
    assert_eq!(quantise(5.0), 1.0);
    assert_eq!(quantise(f32::NAN), -1.0);
    assert_eq!(
        quantise(2.0 * 100.0 / 255.0 - 1.0),
        (2.0 * 100.0 / 255.0 - 1.0) as f32
    );
    assert!(
        net.prepare(
            &ImageSet::new(&[0.0; 2 * 8 * 8 * 2], 2, 8, 2).unwrap(),
            0,
            2
        )
        .is_err()
    );
}

#[test]
fn weight_file_errors_say_what_to_do() {
    let dir = std::env::temp_dir().join(format!("vitgan-inception-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("nope.safetensors");
    let err = SafetensorsWeights::open(&missing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("does not exist") && err.contains("convert_inception_weights.py"),
        "{err}"
    );
    let pth = dir.join("pt_inception.pth");
    std::fs::write(&pth, b"PK\x03\x04 not really").unwrap();
    let err = SafetensorsWeights::open(&pth).err().unwrap().to_string();
    assert!(err.contains("PyTorch pickle"), "{err}");
    // a safetensors file with the wrong tensors
    let ck = vitgan::io::checkpoint::Checkpoint {
        tensors: vec![("fc.bias".into(), vec![3], vec![0.0; 3])],
        metadata: Default::default(),
    };
    let wrong = dir.join("wrong.safetensors");
    ck.save(&wrong).unwrap();
    let src = SafetensorsWeights::open(&wrong).unwrap();
    let err = src.tensor("fc.bias", &[1008]).err().unwrap().to_string();
    assert!(err.contains("shape [3]"), "{err}");
    let err = src
        .tensor("fc.weight", &[1008, 2048])
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Records every tensor the network asks for, so a test can write them as a weights file.
/// (name, shape, values) of one tensor.
type NamedTensor = (String, Vec<usize>, Vec<f32>);

struct Recording(std::cell::RefCell<Vec<NamedTensor>>);

impl WeightSource for Recording {
    fn tensor(&self, name: &str, shape: &[usize]) -> vitgan::Result<Vec<f32>> {
        let v = FormulaWeights.tensor(name, shape)?;
        self.0
            .borrow_mut()
            .push((name.to_string(), shape.to_vec(), v.clone()));
        Ok(v)
    }
}

/// The loader reads a safetensors state dict (as scripts/convert_inception_weights.py writes it)
/// into the same network; `VITGAN_INCEPTION_WEIGHTS=<file>` checks a converted file instead.
#[test]
fn safetensors_weights_load_into_the_same_network() {
    let gpu = gpu();
    let rec = Recording(Default::default());
    let direct = InceptionV3::new(&gpu, &rec).unwrap();
    let names = rec.0.borrow().len();
    assert_eq!(
        names, 472,
        "tensors of pytorch-fid's state dict without num_batches_tracked"
    );
    let path = match std::env::var("VITGAN_INCEPTION_WEIGHTS") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) => {
            let p =
                std::env::temp_dir().join(format!("vitgan-inc-{}.safetensors", std::process::id()));
            vitgan::io::checkpoint::Checkpoint {
                tensors: rec.0.take(),
                metadata: Default::default(),
            }
            .save(&p)
            .unwrap();
            p
        }
    };
    let loaded = InceptionV3::load(&gpu, &path).unwrap();
    if std::env::var("VITGAN_INCEPTION_WEIGHTS").is_err() {
        std::fs::remove_file(&path).ok();
    }
    let img: Vec<f32> = (0..16 * 16 * 3)
        .map(|i| ((i * 7919) % 256) as f32 / 127.5 - 1.0)
        .collect();
    let set = ImageSet::new(&img, 1, 16, 3).unwrap();
    let a = direct.run(&set, |_, _| true).unwrap();
    let b = loaded.run(&set, |_, _| true).unwrap();
    assert_eq!(a.features, b.features);
    assert_eq!(a.logits, b.logits);
}

/// FID of a set against itself is ≈ 0, against other images clearly not; the reference features
/// are cached and reused (no Inception pass on the second construction).
#[test]
fn evaluator_scores_and_caches_the_reference() {
    use vitgan::data::{Batcher, open_dataset};
    use vitgan::train::evaluate::InceptionEvaluator;
    let gpu = gpu();
    let all = open_dataset("synthetic", 16, 3, 0).unwrap();
    let n = 6;
    let subset = |first: usize| {
        let mut ds = all.clone();
        ds.images = all.images[first * all.image_len()..(first + n) * all.image_len()]
            .to_vec()
            .into();
        ds.len = n;
        ds
    };
    let reference = subset(0);
    let cache = std::env::temp_dir().join(format!("vitgan-ref-{}.safetensors", std::process::id()));
    std::fs::remove_file(&cache).ok();
    // an evaluator over `reference` with the cache, and how many Inception passes it ran
    let build = |seed: u64| {
        let mut passes = 0;
        let ev = InceptionEvaluator::new(
            &gpu,
            InceptionV3::new(&gpu, &FormulaWeights).unwrap(),
            &reference,
            100,
            seed,
            Some(&cache),
            &mut |_, _| {
                passes += 1;
                true
            },
        )
        .unwrap();
        (ev, passes)
    };
    let (ev, passes) = build(0);
    assert!(passes > 0 && cache.exists());
    assert_eq!(
        ev.reference_n(),
        n,
        "a reference larger than the data uses all of it"
    );
    let pixels = |ds: &vitgan::data::ImageDataset| {
        let mut out = Vec::new();
        Batcher::fill_batch(ds, &(0..ds.len).collect::<Vec<_>>(), &mut out);
        out
    };
    let same = pixels(&reference);
    let m = ev
        .images(&ImageSet::new(&same, n, 16, 3).unwrap(), &mut |_, _| true)
        .unwrap();
    let other = pixels(&subset(100));
    let o = ev
        .images(&ImageSet::new(&other, n, 16, 3).unwrap(), &mut |_, _| true)
        .unwrap();
    println!(
        "FID same {} other {}; IS {}",
        m.fid, o.fid, m.inception_score
    );
    assert!(
        m.fid.abs() < 1e-3 * o.fid,
        "FID(a, a) = {} vs FID(a, b) = {}",
        m.fid,
        o.fid
    );
    assert!(m.inception_score.mean >= 1.0);
    let (again, passes) = build(0);
    assert_eq!(passes, 0, "the cached reference is reused");
    let m2 = again
        .images(&ImageSet::new(&other, n, 16, 3).unwrap(), &mut |_, _| true)
        .unwrap();
    assert_eq!(m2.fid, o.fid);
    // a different selection (seed) is not served from the cache
    let (_, passes) = build(1);
    assert!(passes > 0);
    let wrong = ev.images(
        &ImageSet::new(&same[..n * 16 * 16], n, 16, 1).unwrap(),
        &mut |_, _| true,
    );
    assert!(wrong.is_err(), "channels differ from the reference");
    std::fs::remove_file(&cache).ok();
}

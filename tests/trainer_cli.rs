//! The trainer binary's messages and exit codes (`examples/train.rs`, built by `cargo test`):
//! `--out` naming a file, a loss that is not finite before any checkpoint exists, and Ctrl-C; and
//! the command lines of all three binaries (clap): generated `--help`, refused flags and values.

mod common;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The trainer binary, with evaluation off and a log line per step.
fn trainer() -> Command {
    let mut c = common::example_binary("train");
    c.args(["--eval-n", "0", "--log-every", "1"]);
    c
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vitgan-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn out_naming_a_file_is_refused_clearly() {
    let dir = scratch("outfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = trainer()
        .args(["--steps", "1", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is a file") && err.contains("--out"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"x",
        "the file is left alone"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn non_finite_loss_before_any_checkpoint_says_so() {
    let dir = scratch("nan");
    let out = trainer()
        .args(["--steps", "3", "--lr", "1e30", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("non-finite loss"), "{err}");
    assert!(err.contains("No checkpoint was written"), "{err}");
    assert!(!dir.join("checkpoint.safetensors").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hyperparameters_out_of_range_are_refused_before_training() {
    for (flag, value) in [
        ("--lr", "nan"),
        ("--beta2", "1.5"),
        ("--aug-prob", "-0.1"),
        ("--bcr", "inf"),
    ] {
        let dir = scratch("range");
        let out = trainer()
            .args([flag, value, "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // refused while the command line is parsed: status 2, the convention for usage errors
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        let named = err.to_lowercase().contains(value) && err.contains(flag);
        assert!(named && !err.contains("step "), "{flag} {value}: {err}");
        assert!(!dir.exists(), "{flag} {value}: nothing is written");
    }
}

/// Model sizes that do not fit together are refused before any work, naming the field and values.
#[test]
fn model_sizes_that_do_not_fit_are_refused_before_training() {
    for (args, want) in [
        (
            &["--g-width", "50", "--g-heads", "4"][..],
            "generator.heads",
        ),
        (&["--d-patch", "5"][..], "discriminator.patch"),
        (
            &["--g-width", "1024", "--g-heads", "2"][..],
            "head width 512",
        ),
    ] {
        let dir = scratch("sizes");
        let out = trainer()
            .args(args)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(want) && !err.contains("step "),
            "{args:?}: {err}"
        );
        assert!(!dir.exists(), "{args:?}: nothing is written");
    }
}

/// Kills and reaps the child if the test fails before it exits.
struct KillOnDrop(Option<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Ctrl-C (SIGINT) ends a run with a checkpoint and status 130, and `--resume` from it (the
/// checkpoint's run settings, only `--steps` given) ends bit for bit where an uninterrupted run of
/// the same length ends.
#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_that_resumes_exactly_and_exits_130() {
    use vitgan::io::checkpoint::Checkpoint;
    let dir = scratch("sigint");
    let mut guard = KillOnDrop(Some(
        trainer()
            .args(["--steps", "100000", "--batch", "4", "--out"])
            .arg(&dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let id = guard.0.as_ref().unwrap().id();
    // wait until training has started (the first log line is in train.log)
    let start = Instant::now();
    while !std::fs::read_to_string(dir.join("train.log")).is_ok_and(|l| l.contains("step")) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the trainer did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = Command::new("kill")
        .args(["-INT", &id.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // the step in flight finishes, then the checkpoint is written: well within a minute
    let deadline = Instant::now() + Duration::from_secs(120);
    while guard.0.as_mut().unwrap().try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the trainer did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = guard.0.take().unwrap().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted; resume with --resume"), "{err}");
    let ckpt = dir.join("checkpoint.safetensors");
    let stopped = Checkpoint::load(&ckpt).unwrap();
    let step: u64 = stopped.metadata["step"].parse().unwrap();

    let end = (step + 2).to_string();
    let finish = |args: &[&std::ffi::OsStr], out: &str| {
        let o = trainer()
            .args(args)
            .args(["--steps", &end, "--out"])
            .arg(dir.join(out))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(0), "{err}");
        (
            Checkpoint::load(&dir.join(out).join("checkpoint.safetensors")).unwrap(),
            err,
        )
    };
    let (resumed, err) = finish(&["--resume".as_ref(), ckpt.as_os_str()], "resumed");
    assert!(
        err.contains(&format!("resumed from {} at step {step}", ckpt.display())),
        "{err}"
    );
    assert!(err.contains("note: steps = "), "{err}");
    // it trained the last two steps only (one log line each), not a whole run from scratch
    let log = std::fs::read_to_string(dir.join("resumed/train.log")).unwrap();
    let trained: Vec<&str> = log.lines().filter(|l| l.starts_with("step ")).collect();
    assert_eq!(trained.len(), 2, "{log}");
    let (straight, _) = finish(&["--batch".as_ref(), "4".as_ref()], "straight");
    assert_eq!(resumed.metadata["step"], end);
    assert_eq!(resumed.tensors.len(), straight.tensors.len());
    for ((n1, s1, v1), (n2, s2, v2)) in resumed.tensors.iter().zip(&straight.tensors) {
        assert_eq!((n1, s1), (n2, s2));
        let same = v1.iter().zip(v2).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "{n1}: interrupted at step {step} and resumed differs from a run without a stop"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `--config FILE` sets flags (the command line wins), every run writes `OUT/config.toml` with the
/// settings in effect and records them in its checkpoint, and that file repeats the run exactly:
/// the second run's checkpoint holds the same tensors, bit for bit. A bad file is refused, naming it.
#[test]
fn a_run_repeats_exactly_from_its_config_file() {
    use vitgan::io::checkpoint::Checkpoint;
    let dir = scratch("config");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("settings.toml");
    std::fs::write(
        &file,
        "steps = 2\nbatch = 4\nlr = 0.001\nseed = 3\nsample-every = 100\nd-overlap = false\n\
         g-width = 48\ng-heads = 3\n",
    )
    .unwrap();
    let run = |config: &std::path::Path, extra: &[&str], out: &str| {
        let o = trainer()
            .arg("--config")
            .arg(config)
            .args(extra)
            .arg("--out")
            .arg(dir.join(out))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(0), "{err}");
    };
    // `trainer()` turns evaluation off; both runs turn it on again, for metrics.svg
    let eval = ["--eval-n", "32"];
    run(
        &file,
        &["--seed", "5", "--plot-log", "on", eval[0], eval[1]],
        "first",
    );
    let written = std::fs::read_to_string(dir.join("first/config.toml")).unwrap();
    for line in [
        "steps = 2",
        "batch = 4",
        "lr-g = 0.001",
        "lr-d = 0.001",
        "seed = 5", // the command line's, not the file's 3
        "d-overlap = \"off\"",
        "preset = \"tiny\"",
        "plot-log = \"on\"",
        "g-width = 48",
        "g-heads = 3",
        "g-patch = 4", // the preset's sizes, resolved
        "d-width = 64",
        "inr-hidden = 32",
    ] {
        assert!(written.lines().any(|l| l == line), "{line} in\n{written}");
    }
    // the plots: losses on a log axis, the evaluation at the last step on metrics.svg
    let plot = |name: &str| std::fs::read_to_string(dir.join("first").join(name)).unwrap();
    assert!(plot("losses.svg").contains("loss (log scale)"));
    assert!(plot("discriminator.svg").contains("D(fake)"));
    let metrics = plot("metrics.svg");
    for label in ["SWD (log scale)", "KID EMA G", "real vs real"] {
        assert!(metrics.contains(label), "{label} in metrics.svg");
    }
    let first = Checkpoint::load(&dir.join("first/checkpoint.safetensors")).unwrap();
    assert_eq!(first.metadata.get("run.config"), Some(&written));
    let width = first.metadata.get("config.generator.width");
    assert_eq!(width.map(String::as_str), Some("48"));

    run(&dir.join("first/config.toml"), &eval, "second");
    let again = std::fs::read_to_string(dir.join("second/config.toml")).unwrap();
    assert_eq!(again, written);
    let second = Checkpoint::load(&dir.join("second/checkpoint.safetensors")).unwrap();
    assert_eq!(first.tensors.len(), second.tensors.len());
    for ((n1, s1, v1), (n2, s2, v2)) in first.tensors.iter().zip(&second.tensors) {
        assert_eq!((n1, s1), (n2, s2));
        let same = v1.iter().zip(v2).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{n1} differs between the run and its repeat");
    }
    // the command line's --lr wins over the file's lr-g and lr-d (it sets both)
    run(
        &dir.join("first/config.toml"),
        &["--lr", "0.004", "--steps", "1"],
        "third",
    );
    let third = std::fs::read_to_string(dir.join("third/config.toml")).unwrap();
    for line in ["lr-g = 0.004", "lr-d = 0.004", "steps = 1", "seed = 5"] {
        assert!(third.lines().any(|l| l == line), "{line} in\n{third}");
    }

    // refused, naming the file: a value of the wrong type, an unknown key, a value a flag rejects
    for (text, want) in [
        ("lr = [1]\n", "`lr` holds a value of type array"),
        ("learning-rate = 1\n", "--learning-rate"),
        ("lr = \"fast\"\n", "`fast` is not a valid number"),
        ("steps = \n", "not valid TOML"),
    ] {
        std::fs::write(&file, text).unwrap();
        let o = trainer().arg("--config").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains(&file.display().to_string()), "{text}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each binary's `--help` is generated from its flags (every flag listed, status 0), and an unknown
/// flag or a value out of range is refused before any work with status 2, naming it.
#[test]
fn every_binary_documents_its_flags_and_refuses_bad_ones() {
    let cases: [(&str, &[&str], [&str; 2]); 3] = [
        (
            "train",
            &[
                "--preset",
                "--data",
                "--crop",
                "--decode-cache",
                "--channels",
                "--out",
                "--config",
                "--resume",
                "--steps",
                "--log-every",
                "--sample-every",
                "--checkpoint-every",
                "--eval-every",
                "--eval-n",
                "--fid-every",
                "--fid-n",
                "--inception",
                "--batch",
                "--lr",
                "--lr-g",
                "--lr-d",
                "--beta1",
                "--beta2",
                "--bcr",
                "--lecam",
                "--r1",
                "--r1-every",
                "--aug-prob",
                "--ema",
                "--seed",
                "--warmup",
                "--mapping-lr-mult",
                "--d-attention",
                "--d-norm",
                "--d-overlap",
                "--g-style",
                "--g-decoder",
                "--d-query-gain",
                "--equalised-affines",
                "--inr-demod",
                "--adapter",
                "--backend",
            ],
            ["--log-every", "0"],
        ),
        (
            "generate",
            &[
                "--checkpoint",
                "--n",
                "--out",
                "--grid",
                "--raw",
                "--seed",
                "--batch",
                "--adapter",
                "--backend",
            ],
            ["--n", "0"],
        ),
        (
            "evaluate",
            &[
                "--data",
                "--crop",
                "--images",
                "--checkpoint",
                "--n",
                "--raw",
                "--seed",
                "--reference-n",
                "--inception",
                "--cache",
                "--json",
                "--adapter",
                "--backend",
            ],
            ["--reference-n", "1"],
        ),
    ];
    for (name, flags, [bad_flag, bad_value]) in cases {
        let help = common::example_binary(name).arg("--help").output().unwrap();
        assert_eq!(help.status.code(), Some(0), "{name} --help");
        let text = String::from_utf8_lossy(&help.stdout);
        for flag in flags {
            let listed = text
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{flag} ")) || l.trim() == *flag);
            assert!(listed, "{name} --help does not list {flag}:\n{text}");
        }
        for args in [vec!["--no-such-flag"], vec![bad_flag, bad_value]] {
            let o = common::example_binary(name).args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{name} {args:?}: {err}");
            assert!(
                err.contains(args[0]) && err.contains(args[args.len() - 1]),
                "{name} {args:?}: {err}"
            );
        }
    }
}

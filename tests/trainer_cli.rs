//! The trainer binary's messages and exit codes (`examples/train.rs`, built by `cargo test`):
//! `--out` naming a file, a loss that is not finite before any checkpoint exists, and Ctrl-C.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>/examples/train`, next to this test's `deps/` directory.
fn trainer() -> Command {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir
        .join("examples")
        .join(format!("train{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: a full `cargo test --release` builds the examples (or run `cargo build \
         --release --example train` first)",
        path.display()
    );
    let mut c = Command::new(path);
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
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        let named = err.to_lowercase().contains(value) && err.contains(flag);
        assert!(named && !err.contains("step "), "{flag} {value}: {err}");
        assert!(!dir.exists(), "{flag} {value}: nothing is written");
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

#[cfg(unix)]
#[test]
fn ctrl_c_writes_a_checkpoint_and_exits_130() {
    let dir = scratch("sigint");
    let mut guard = KillOnDrop(Some(
        trainer()
            .args(["--steps", "100000", "--out"])
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
    assert!(dir.join("checkpoint.safetensors").exists(), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

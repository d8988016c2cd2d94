//! The command line under hostile or careless use (issue "Nothing lost"):
//! odd arguments, run folders that must not be overwritten, resume that
//! keeps the run's own settings, bad data. Each case once failed.

mod common;
use common::{gz, pnnc, text};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODEL: &str = "model tiny
input [1, 28, 28]
classes 10

act p = poly(degree: 2, fit: relu, range: 12)

net {
  flatten
  dense(8); p; batchnorm
  dense(classes)
}

train {
  data: mnist(val_fraction: 0.2)
  epochs: 2  batch: 32  seed: 1
  optimizer: adamw(lr: 1e-2)
  boundary: exp(penalty: 12, weight: 10, reduce: sum)
  clip: norm(1.0, except: batchnorm)
}
";

fn temp(name: &str) -> PathBuf {
    common::temp("hostile", name)
}

/// IDX files of `n` 28x28 images with labels `i % classes`.
fn write_idx(dir: &Path, prefix: &str, n: usize, classes: u8) {
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        let class = (i % classes as usize) as u8;
        labels.push(class);
        images.extend((0..28 * 28).map(|p| {
            if p / 84 == class as usize {
                200u8
            } else {
                (p % 7) as u8
            }
        }));
    }
    gz(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), &images);
    gz(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), &labels);
}

fn fixture(name: &str) -> PathBuf {
    let dir = temp(name);
    std::fs::write(dir.join("model.pnn"), MODEL).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", 200, 10);
    write_idx(&data, "t10k", 50, 10);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    dir
}

fn train(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "model.pnn",
        "--data",
        "data",
        "--quiet",
        "--threads",
        "1",
    ];
    args.extend(extra);
    pnnc(dir, &args)
}

#[test]
fn non_utf8_arguments_are_errors_not_panics() {
    let dir = fixture("utf8");
    let bad = OsStr::from_bytes(b"run\xff");
    for cmd in ["train", "run", "sweep"] {
        // A non-UTF-8 --out: the run works and records the command lossily.
        let plain = [cmd, "model.pnn", "--data", "data", "--threads", "1"];
        let args: Vec<&OsStr> = plain
            .iter()
            .map(OsStr::new)
            .chain([
                OsStr::new("--out"),
                bad,
                OsStr::new("--epochs"),
                OsStr::new("1"),
            ])
            .collect();
        let o = pnnc(&dir, &args);
        assert_ne!(o.status.code(), Some(101), "{cmd} panicked: {}", text(&o));
        // A non-UTF-8 model path that does not exist: a usage error naming it.
        let args = [OsStr::new(cmd), OsStr::from_bytes(b"m\xfe.pnn")];
        let o = pnnc(&dir, &args);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o));
        let _ = std::fs::remove_dir_all(dir.join(OsStr::from_bytes(b"run\xff")));
    }
}

#[test]
fn resources_are_bounded_before_anything_is_allocated() {
    let dir = fixture("bounds");
    let o = train(&dir, &["--out", "a", "--batch", "4000000000"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("larger than the training split (160 samples)"),
        "{}",
        text(&o)
    );
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "data",
            "--threads",
            "100000",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("core"), "{}", text(&o));
    for (flag, value) in [("--epochs", "0"), ("--batch", "0"), ("--limit-train", "0")] {
        let o = train(&dir, &["--out", "b", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o));
        assert!(!dir.join("b/last.safetensors").exists());
    }
}

#[test]
fn an_earlier_run_is_never_overwritten_without_overwrite() {
    let dir = fixture("overwrite");
    let o = train(&dir, &["--out", "run", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    // Simulate a run without resume file (e.g. from an older pnnc).
    std::fs::remove_file(dir.join("run/resume.safetensors")).unwrap();
    let before = std::fs::read(dir.join("run/last.safetensors")).unwrap();
    let o = train(&dir, &["--out", "run", "--epochs", "1", "--seed", "5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already holds a run") && text(&o).contains("--overwrite"));
    assert_eq!(
        std::fs::read(dir.join("run/last.safetensors")).unwrap(),
        before
    );
    let o = train(
        &dir,
        &[
            "--out",
            "run",
            "--epochs",
            "1",
            "--seed",
            "5",
            "--overwrite",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(
        std::fs::read(dir.join("run/last.safetensors")).unwrap(),
        before
    );
}

#[test]
fn resume_keeps_the_runs_settings_and_refuses_conflicting_flags() {
    let dir = fixture("resume");
    let o = train(
        &dir,
        &[
            "--out",
            "run",
            "--epochs",
            "1",
            "--batch",
            "16",
            "--limit-train",
            "96",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read(dir.join("run/config.json")).unwrap();
    for (flag, value, says) in [
        ("--seed", "3", "--seed 3: the run's seed is 1"),
        ("--batch", "8", "--batch 8: the run's batch size is 16"),
        (
            "--limit-train",
            "50",
            "--limit-train 50: the run uses 96 training samples",
        ),
        ("--baseline", "relu", "--baseline relu"),
    ] {
        let o = train(
            &dir,
            &["--out", "run", "--resume", "--epochs", "2", flag, value],
        );
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o));
        assert!(text(&o).contains(says), "{flag}: {}", text(&o));
    }
    // Without flags the run's own batch (16, not the model's 32) and subset are used.
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--out",
            "run",
            "--resume",
            "--epochs",
            "2",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let steps: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let summary = steps.last().expect("summary line");
    // 96 training samples, batch 16: 6 steps per epoch (the model's batch 32 would give 3).
    assert_eq!(summary["summary"]["steps"], 12, "{summary}");
    assert_eq!(summary["summary"]["train_samples"], 96, "{summary}");
    assert_eq!(std::fs::read(dir.join("run/config.json")).unwrap(), config);
}

#[test]
fn data_folders_are_never_silently_replaced() {
    let dir = fixture("data");
    std::fs::create_dir_all(dir.join("partial")).unwrap();
    std::fs::copy(
        dir.join("data/train-images-idx3-ubyte.gz"),
        dir.join("partial/train-images-idx3-ubyte.gz"),
    )
    .unwrap();
    // $PNN_DATA holds a complete copy: --data must not fall back to it.
    let o = Command::new(env!("CARGO_BIN_EXE_pnnc"))
        .args([
            "train",
            "model.pnn",
            "--data",
            "partial",
            "--out",
            "r",
            "--threads",
            "1",
        ])
        .current_dir(&dir)
        .env("PNN_DATA", dir.join("data"))
        .env("HOME", dir.join("empty"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("lacks train-labels-idx1-ubyte.gz"),
        "{}",
        text(&o)
    );
    // A data set with more classes than the model declares is refused up front.
    let eleven = dir.join("eleven");
    std::fs::create_dir_all(&eleven).unwrap();
    write_idx(&eleven, "train", 220, 11);
    write_idx(&eleven, "t10k", 55, 11);
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "eleven",
            "--out",
            "e",
            "--threads",
            "1",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("label 10"), "{}", text(&o));
    // The run folder records which data was used.
    let o = train(&dir, &["--out", "ok", "--epochs", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let config = std::fs::read_to_string(dir.join("ok/config.json")).unwrap();
    assert!(config.contains("\"data_dir\": \"data\""), "{config}");
}

#[test]
fn usage_errors_exit_2_in_every_command() {
    let dir = fixture("codes");
    let cases: [&[&str]; 12] = [
        &["train", "missing.pnn"],
        &["run", "missing.pnn"],
        &["sweep", "missing.pnn"],
        &["eval", "missing.pnn", "--weights", "w.safetensors"],
        &[
            "compile",
            "missing.pnn",
            "--weights",
            "w.safetensors",
            "-o",
            "c.json",
        ],
        &["simulate", "missing.circuit.json", "--data", "s.json"],
        &[
            "calibrate",
            "missing.pnn",
            "--weights",
            "w.safetensors",
            "--data",
            "s.json",
        ],
        &["he-run", "missing.circuit.json", "--inputs", "s.json"],
        &["info", "missing.pnn"],
        &["check", "missing.pnn"],
        &["bench", "--model", "missing.pnn"],
        &["data", "inspect", "no_such_set"],
    ];
    for args in cases {
        let o = pnnc(&dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("error"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn data_inspect_accepts_a_folder() {
    let dir = fixture("inspect");
    let o = pnnc(&dir, &["data", "inspect", "data", "--no-cache"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("data set     mnist"), "{}", text(&o));
}

#[test]
fn a_sweep_cell_keeps_the_model_it_trained() {
    let dir = fixture("cellmodel");
    let o = pnnc(
        &dir,
        &[
            "sweep",
            "model.pnn",
            "--degrees",
            "4",
            "--methods",
            "plain",
            "--epochs",
            "1",
            "--data",
            "data",
            "--out",
            "sw",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let cell = dir.join("sw/d4-plain-s1");
    let model = std::fs::read_to_string(cell.join("model.json")).unwrap();
    assert!(model.contains("\"degree\": 4"), "{model}");
    // The base file does not match the cell's weights; the cell's model.json does.
    let weights = cell.join("last.safetensors");
    let base = pnnc(
        &dir,
        &[
            OsStr::new("eval"),
            OsStr::new("model.pnn"),
            OsStr::new("--weights"),
            weights.as_os_str(),
            OsStr::new("--data"),
            OsStr::new("data"),
        ],
    );
    assert_eq!(base.status.code(), Some(2), "{}", text(&base));
    assert!(
        text(&base).contains("the hash covers the whole model file"),
        "{}",
        text(&base)
    );
    let json = cell.join("model.json");
    let o = pnnc(
        &dir,
        &[
            OsStr::new("eval"),
            json.as_os_str(),
            OsStr::new("--weights"),
            weights.as_os_str(),
            OsStr::new("--data"),
            OsStr::new("data"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

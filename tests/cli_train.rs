//! End to end: `pnnc train` / `pnnc eval` on a small synthetic IDX data set
//! written by the test, and their errors on a missing data set and on the
//! weights of another model.

mod common;
use common::{gz, pnnc, text};
use std::path::{Path, PathBuf};

const MODEL: &str = "model tiny
input [1, 28, 28]
classes 10

act p = poly(degree: 2, fit: relu, range: 12)

net {
  flatten
  dense(16); p; batchnorm
  dense(classes)
}

train {
  data: mnist(val_fraction: 0.2)
  epochs: 3  batch: 32  seed: 1
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  boundary: exp(penalty: 12, weight: 10, reduce: sum)
  clip: norm(1.0, except: batchnorm)
}
";

fn temp(name: &str) -> PathBuf {
    common::temp("cli-train", name)
}

/// IDX files of `n` 28x28 images: class c lights up row band c (learnable).
fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u32) {
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    let mut state = seed.wrapping_mul(2654435761) | 1;
    for i in 0..n {
        let class = (i % 10) as u8;
        labels.push(class);
        for r in 0..28 {
            for _ in 0..28 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = (state % 60) as u8;
                let band = r / 3 == class as usize;
                images.push(if band { 180 + noise } else { noise });
            }
        }
    }
    gz(&dir.join(format!("{prefix}-images-idx3-ubyte.gz")), &images);
    gz(&dir.join(format!("{prefix}-labels-idx1-ubyte.gz")), &labels);
}

/// A folder with model.pnn, data/ and an empty PNN_DATA, run from there.
fn fixture(name: &str) -> PathBuf {
    let dir = temp(name);
    std::fs::write(dir.join("model.pnn"), MODEL).unwrap();
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train", 400, 1);
    write_idx(&data, "t10k", 100, 2);
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    dir
}

#[test]
fn train_then_eval_on_a_fixture_data_set() {
    let dir = fixture("ok");
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "data",
            "--out",
            "run",
            "--json",
            "--threads",
            "1",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    // JSON lines: 3 epochs then the summary.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    let loss = |i: usize| lines[i]["metrics"]["train_loss"].as_f64().unwrap();
    assert!(loss(2) < loss(0), "loss did not fall: {lines:?}");
    for f in [
        "model.pnn",
        "config.json",
        "metrics.jsonl",
        "metrics.csv",
        "best.safetensors",
        "last.safetensors",
        "resume.safetensors",
        "summary.json",
    ] {
        assert!(dir.join("run").join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/summary.json")).unwrap())
            .unwrap();
    assert!(summary["test_acc"].as_f64().unwrap() > 0.5, "{summary}");
    assert_eq!(summary["he_compatible"], true);
    let config = std::fs::read_to_string(dir.join("run/config.json")).unwrap();
    assert!(config.contains("\"--out\""), "{config}");

    // A second fresh run into the same folder is refused.
    let again = pnnc(
        &dir,
        &["train", "model.pnn", "--data", "data", "--out", "run"],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--resume"), "{}", text(&again));

    let e = pnnc(
        &dir,
        &[
            "eval",
            "model.pnn",
            "--weights",
            "run/best.safetensors",
            "--data",
            "data",
        ],
    );
    assert!(e.status.success(), "{}", text(&e));
    let out = text(&e);
    assert!(out.contains("test accuracy"), "{out}");
    assert!(out.contains("confusion matrix"), "{out}");
    // summary.json's best_test_acc is the accuracy of best.safetensors.
    let e = pnnc(
        &dir,
        &[
            "eval",
            "model.pnn",
            "--weights",
            "run/best.safetensors",
            "--data",
            "data",
            "--json",
        ],
    );
    assert!(e.status.success(), "{}", text(&e));
    let eval: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(
        summary["best_test_acc"], eval["accuracy"],
        "{summary} {eval}"
    );

    // Weights of another model are refused.
    std::fs::write(
        dir.join("other.pnn"),
        MODEL.replace("dense(16)", "dense(20)"),
    )
    .unwrap();
    let w = pnnc(
        &dir,
        &[
            "eval",
            "other.pnn",
            "--weights",
            "run/best.safetensors",
            "--data",
            "data",
        ],
    );
    assert_eq!(w.status.code(), Some(2), "{}", text(&w));
    assert!(text(&w).contains("were trained for model"), "{}", text(&w));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_data_set_says_where_it_looked() {
    let dir = fixture("missing");
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "nowhere",
            "--out",
            "run",
            "--quiet",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("error:"), "{msg}");
    assert!(msg.contains("nowhere"), "{msg}");
    assert!(msg.contains("help:"), "{msg}");
    assert!(!dir.join("run/summary.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_without_a_run_is_refused() {
    let dir = fixture("noresume");
    let o = pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "data",
            "--out",
            "run",
            "--resume",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no run to resume"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_diverged_sweep_cell_keeps_its_step_and_reason() {
    let dir = fixture("diverge");
    // A rate of 1e3 without clipping throws degree-22 activations far out of range.
    let model = MODEL.replace("lr: 1e-2", "lr: 1e3");
    std::fs::write(dir.join("model.pnn"), model).unwrap();
    let o = pnnc(
        &dir,
        &[
            "sweep",
            "model.pnn",
            "--degrees",
            "22",
            "--methods",
            "plain",
            "--seeds",
            "1",
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
    let cell: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sw/d22-plain-s1/cell.json")).unwrap(),
    )
    .unwrap();
    let step = cell["diverged_step"].as_u64().expect("the cell diverged");
    assert!(cell["test_acc"].is_null());
    let why = cell["diverged"].as_str().unwrap();
    assert!(
        why.starts_with(&format!(
            "training diverged at step {step} (epoch 1, batch "
        )),
        "{why}"
    );
    assert!(
        why.contains("not finite") || why.contains("the loss is"),
        "{why}"
    );
    let csv = std::fs::read_to_string(dir.join("sw/results.csv")).unwrap();
    // The row names the basis, the site that escaped, and how far it went
    // against its fit range B = 47.
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("22,chebyshev,plain,1,diverged,,,{step},poly1,")))
        .unwrap_or_else(|| panic!("{csv}"));
    let fields: Vec<&str> = row.split(',').collect();
    let max_abs: f64 = fields[9].parse().unwrap();
    assert!(
        max_abs > 47.0 && fields[10] == "poly1" && fields[11] == "47",
        "{row}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

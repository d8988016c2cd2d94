//! `pnnc run model.pnn`: the whole pipeline in one command — check, train,
//! calibrate, compile, simulate (the library's [`pipeline::run`]), then an
//! optional encrypted check — ending with one printed summary.

use super::failure::{Failure, report, set_threads, stop_flag, with_resume_hint};
use crate::pipeline::folder::write_json;
use crate::pipeline::recipe::Baseline;
use crate::pipeline::run::{self as pipeline, RunOptions, RunSummary};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The model file (.pnn).
    pub model: PathBuf,
    /// Folder holding the data set (the only place searched when given).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on this data set instead of the model's, e.g. `fashion_mnist`.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Run folder (default: runs/<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the run files of an earlier run in --out.
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long)]
    pub epochs: Option<u32>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Use only the first N training samples.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Preset for a first try: 1 epoch on 12,000 training samples, 100 test
    /// samples simulated (explicit --epochs / --limit-train win).
    #[arg(long)]
    pub quick: bool,
    /// Also train a comparison baseline (same network, ReLU; not HE-compatible).
    #[arg(long, value_enum)]
    pub compare: Option<Baseline>,
    /// Test samples evaluated through the compiled circuit (default 500, --quick 100).
    #[arg(long)]
    pub simulate: Option<usize>,
    /// Run N test samples encrypted with OpenFHE (runners/openfhe, via `pnnc he-run`).
    #[arg(long)]
    pub encrypted: Option<usize>,
    /// Worker threads (default: all cores; at most the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: &RunArgs) -> ExitCode {
    report(run_pipeline(args).map(|_| ()))
}

fn pct(a: Option<f64>) -> String {
    a.map_or("-".into(), |a| format!("{:.2} %", 100.0 * a))
}

fn run_pipeline(args: &RunArgs) -> Result<RunSummary, Failure> {
    let threads = set_threads(args.threads)?;
    let dataset = match &args.dataset {
        Some(text) => Some(crate::data::parse_spec(text).map_err(|e| {
            Failure::usage(format!(
                "--dataset `{text}`: {e}\n  help: e.g. --dataset fashion_mnist"
            ))
        })?),
        None => None,
    };
    let model = pipeline::with_dataset(super::train::load_model(&args.model)?, dataset);
    let opts = RunOptions {
        model_path: &args.model,
        model: &model,
        data_dir: args.data.as_deref(),
        out: args.out.clone(),
        epochs: args.epochs,
        seed: args.seed,
        limit_train: args.limit_train,
        quick: args.quick,
        compare_relu: args.compare.is_some(),
        simulate: args.simulate,
        threads,
        overwrite: args.overwrite,
        stop: Some(stop_flag()),
    };
    let mut summary = pipeline::run(&opts, &mut |line| eprintln!("{line}")).map_err(|f| {
        with_resume_hint(
            f,
            "a run cannot resume: start it again with --overwrite (or continue the training alone with `pnnc train MODEL --out RUN --resume`)",
        )
    })?;
    if let Some(d) = &summary.diverged {
        print_summary(&summary);
        return Err(Failure::job(format!("{}: {d}", args.model.display())));
    }
    if let Some(n) = args.encrypted {
        let out = PathBuf::from(&summary.run_folder);
        summary.encrypted = Some(encrypted_check(&out, &model, args, n)?);
        write_json(&out.join(crate::pipeline::folder::RUN_SUMMARY), &summary)?;
    }
    print_summary(&summary);
    Ok(summary)
}

/// `pnnc he-run` on N test samples of the run's circuit.
fn encrypted_check(
    out: &Path,
    model: &crate::ir::Model,
    args: &RunArgs,
    n: usize,
) -> Result<serde_json::Value, Failure> {
    let (splits, _) = crate::pipeline::train::load_splits(
        model,
        &args.model,
        args.data.as_deref(),
        None,
        args.seed.unwrap_or(model.train.seed),
        None,
    )?;
    let samples = crate::pipeline::evaluate::raw_samples(&splits.test, &splits.normalization, n);
    let circuit = out.join(crate::pipeline::folder::CIRCUIT);
    let inputs = out.join("he-inputs.json");
    let take = &samples[..];
    write_json(
        &inputs,
        &serde_json::json!({
            "samples": take.iter().map(|(x, _)| x).collect::<Vec<_>>(),
            "labels": take.iter().map(|(_, y)| y).collect::<Vec<_>>(),
        }),
    )?;
    let report_path = out.join("he-report.json");
    let args = super::he_run::HeRunArgs {
        circuit: circuit.clone(),
        inputs: Some(inputs),
        data: None,
        samples: take.len(),
        python: None,
        report: Some(report_path.clone()),
        tolerance: 1e-3,
        pick: super::he_run::Pick::Spread,
        per_ciphertext: None,
        quiet: false,
    };
    let code = super::he_run::run(&args);
    let text = std::fs::read_to_string(&report_path).map_err(|e| {
        Failure::job(format!(
            "{}: the encrypted check wrote no report ({e}; exit {code:?})",
            report_path.display()
        ))
    })?;
    let r: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Failure::job(format!("{}: {e}", report_path.display())))?;
    Ok(serde_json::json!({
        "samples": take.len(),
        "passed": r.get("passed"),
        "max_logit_error": r.get("max_logit_error"),
        "prediction_mismatches": r.get("prediction_mismatches"),
        "mean_latency_seconds": r.get("mean_latency_seconds"),
        "amortized_seconds_per_sample": r.get("amortized_seconds_per_sample"),
        "report": report_path.display().to_string(),
    }))
}

fn print_summary(s: &RunSummary) {
    println!("== pnnc run: {} on {}", s.model, s.data_set);
    println!("preset          {}", s.preset);
    println!(
        "trained         {} epoch(s) on {} samples",
        s.epochs, s.train_samples
    );
    if let Some(d) = &s.diverged {
        println!("DIVERGED        {d}");
    }
    println!("test accuracy   {}", pct(s.test_acc));
    if s.relu_test_acc.is_some() {
        println!(
            "ReLU baseline   {} (not HE-compatible)",
            pct(s.relu_test_acc)
        );
    }
    for (site, (b, max, out)) in &s.calibration {
        println!(
            "range           {site}: max |x| {max:.2} of B = {b}{}",
            if *out > 0.0 {
                format!(" ({:.4} % outside)", 100.0 * out)
            } else {
                String::new()
            }
        );
    }
    if let (Some(d), Some(c)) = (s.depth, &s.ckks) {
        println!(
            "CKKS            depth {d}, ring dim {}, {} slots, scale 2^{}, log Q {} (max {} at {}-bit security), {} rotation keys",
            c["ring_dim"],
            c["slots"],
            c["scale_bits"],
            c["log_q"],
            c["max_log_q"],
            c["security"],
            c["rotation_keys"]
        );
    }
    if let Some(sim) = &s.simulation {
        println!(
            "simulated       {} test samples: circuit {:.2} %, trained network {:.2} %, same prediction {}/{}, max logit diff {:.2e}",
            sim.samples,
            100.0 * sim.circuit_acc,
            100.0 * sim.network_acc,
            sim.agree,
            sim.samples,
            sim.max_logit_diff
        );
    }
    if let Some(e) = &s.encrypted {
        println!("encrypted       {e}");
    }
    println!("run folder      {} ({:.0} s)", s.run_folder, s.seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDX file: magic, big-endian dims, bytes.
    fn idx(kind: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, kind];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend(data);
        v
    }

    /// A tiny learnable Fashion-MNIST stand-in: class c has a bright row c.
    fn write_fixture(dir: &Path, n: u32, seed: u32) {
        let (images, labels) = (0..n).fold((Vec::new(), Vec::new()), |(mut im, mut lb), i| {
            let c = (i * 7 + seed) % 10;
            let mut img = vec![0u8; 28 * 28];
            for col in 0..28 {
                img[(2 * c as usize + 3) * 28 + col] = 200 + ((i + col as u32) % 50) as u8;
            }
            im.extend(img);
            lb.push(c as u8);
            (im, lb)
        });
        let prefix = if seed == 0 { "train" } else { "t10k" };
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(3, &[n, 28, 28], &images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(1, &[n], &labels),
        )
        .unwrap();
    }

    #[test]
    fn run_end_to_end_on_a_tiny_idx_data_set() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        write_fixture(&data, 200, 0);
        write_fixture(&data, 40, 3);
        let model = dir.path().join("tiny.pnn");
        std::fs::write(
            &model,
            "model tiny\ninput [1, 28, 28]\nclasses 10\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  flatten; dense(16); p; batchnorm\n  dense(classes)\n}\ntrain {\n  data: fashion_mnist\n  epochs: 3  batch: 20  seed: 1\n  optimizer: adamw(lr: 1e-2)\n  boundary: exp(penalty: 12, weight: 10, reduce: sum)\n  clip: norm(1.0, except: batchnorm)\n}\n",
        )
        .unwrap();
        let out = dir.path().join("run");
        let args = RunArgs {
            model: model.clone(),
            data: Some(data),
            dataset: None,
            out: Some(out.clone()),
            overwrite: false,
            epochs: Some(2),
            seed: None,
            limit_train: None,
            quick: false,
            compare: Some(Baseline::Relu),
            simulate: Some(20),
            encrypted: None,
            threads: Some(1),
        };
        let s = run_pipeline(&args).unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!(s.epochs, 2);
        assert!(s.test_acc.is_some() && s.relu_test_acc.is_some());
        let sim = s.simulation.expect("simulated");
        assert_eq!(sim.samples, 20);
        // The folded circuit predicts what the trained network predicts.
        assert_eq!(sim.agree, 20, "max logit diff {}", sim.max_logit_diff);
        assert!(s.depth.unwrap_or(0) >= 3);
        assert_eq!(s.calibration.len(), 1);
        for f in [
            "run-summary.json",
            "circuit.json",
            "last.safetensors",
            "metrics.jsonl",
            "relu/summary.json",
        ] {
            assert!(out.join(f).is_file(), "{f} missing");
        }
        // A second run into the same folder is refused, not overwritten.
        let Err(again) = run_pipeline(&args) else {
            panic!("a second run into the same folder was not refused")
        };
        assert_eq!(again.code, 2);
        assert!(again.message.contains("already holds a run"));
    }

    #[test]
    fn a_model_without_data_set_says_how_to_name_one() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pnn");
        std::fs::write(
            &model,
            "model m\ninput [4]\nclasses 2\nnet {\n  dense(classes)\n}\n",
        )
        .unwrap();
        let m = crate::check::load_model(&model).unwrap();
        let Err(e) = crate::pipeline::train::load_splits(&m, &model, None, None, 1, None) else {
            panic!("a model without data set loaded data")
        };
        assert!(
            e.message.contains("--dataset fashion_mnist"),
            "{}",
            e.message
        );
    }
}

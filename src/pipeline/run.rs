//! The whole pipeline: check, train, calibrate, compile, simulate, with one
//! summary (`run-summary.json`). `pnnc run` adds printing and the optional
//! encrypted check.

use super::Failure;
use super::evaluate::{self, Calibration, Simulation};
use super::folder::{self, CIRCUIT, RUN_SUMMARY, Start};
use super::recipe::{Method, Overrides, Recipe, run_config};
use super::train::{TrainJob, load_splits, train_on};
use crate::he::{CompileOptions, compile, io as circuit_io};
use crate::ir::{DataSpec, Model};
use crate::train::run::{LAST, Progress};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// `--quick`: training epochs, training samples, test samples simulated.
pub const QUICK_EPOCHS: u32 = 1;
pub const QUICK_LIMIT_TRAIN: usize = 12_000;
pub const QUICK_SIMULATE: usize = 100;
/// Test samples simulated without `--quick`.
pub const DEFAULT_SIMULATE: usize = 500;
/// Validation samples used to calibrate activation ranges.
const CALIBRATION_SAMPLES: usize = 256;

/// What `pnnc run` was asked to do.
pub struct RunOptions<'a> {
    pub model_path: &'a Path,
    /// The checked model (with `--dataset` applied).
    pub model: &'a Model,
    pub data_dir: Option<&'a Path>,
    /// Run folder (default: runs/<model>).
    pub out: Option<PathBuf>,
    pub epochs: Option<u32>,
    pub seed: Option<u64>,
    pub limit_train: Option<usize>,
    pub quick: bool,
    /// Also train the ReLU network on the same data.
    pub compare_relu: bool,
    /// Test samples simulated through the circuit.
    pub simulate: Option<usize>,
    pub threads: usize,
    pub overwrite: bool,
    pub stop: Option<&'a AtomicBool>,
}

/// `run-summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub model: String,
    pub data_set: String,
    pub preset: String,
    pub epochs: u32,
    pub train_samples: usize,
    pub test_acc: Option<f64>,
    pub relu_test_acc: Option<f64>,
    pub diverged: Option<String>,
    pub depth: Option<u32>,
    pub ckks: Option<serde_json::Value>,
    pub calibration: Calibration,
    pub simulation: Option<Simulation>,
    pub encrypted: Option<serde_json::Value>,
    pub run_folder: String,
    pub seconds: f64,
}

/// The model with `--dataset` applied.
pub fn with_dataset(mut model: Model, dataset: Option<DataSpec>) -> Model {
    if let Some(spec) = dataset {
        model.train.data = Some(spec);
    }
    model
}

/// Check, train, calibrate, compile and simulate; `note` receives one line
/// per stage. A divergence ends the run early with `diverged` set.
pub fn run(opts: &RunOptions, note: &mut dyn FnMut(String)) -> Result<RunSummary, Failure> {
    let started = std::time::Instant::now();
    let model = opts.model;
    let data_name = model
        .train
        .data
        .as_ref()
        .map_or_else(|| "-".to_string(), |d| d.name().to_string());
    note(format!(
        "check: {} ok ({} parameters, depth {})",
        opts.model_path.display(),
        model.params,
        model.depth
    ));
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}", model.name)));
    let start = if opts.overwrite {
        Start::Overwrite
    } else {
        Start::Fresh
    };
    let epochs = opts.epochs.or(opts.quick.then_some(QUICK_EPOCHS));
    let limit_train = opts.limit_train.or(opts.quick.then_some(QUICK_LIMIT_TRAIN));
    let overrides = Overrides {
        epochs,
        seed: opts.seed,
        ..Overrides::default()
    };
    let mut config = run_config(model, &overrides);
    config.progress = Progress::Bars;
    super::limits::check_settings(config.epochs, config.batch, limit_train)?;
    folder::prepare(&out, start)?;
    let preset = if opts.quick {
        format!(
            "--quick: {} epoch(s) on {} training samples (the model asks for {} epochs on the full set)",
            config.epochs,
            limit_train.map_or("all".into(), |n| n.to_string()),
            model.train.epochs
        )
    } else {
        "full (the model's train { } settings and command-line overrides)".into()
    };
    let (splits, data_dir) = load_splits(
        model,
        opts.model_path,
        opts.data_dir,
        None,
        config.seed,
        limit_train,
    )?;

    note(format!(
        "train: {} on {} ({} samples) into {}",
        model.name,
        data_name,
        splits.train.len(),
        out.display()
    ));
    let job = TrainJob {
        model,
        model_path: opts.model_path,
        data_dir: opts.data_dir,
        out: &out,
        config: config.clone(),
        limit_train,
        threads: opts.threads,
        start,
        stop: opts.stop,
    };
    let trained = train_on(&job, &splits, &data_dir)?;
    let mut summary = RunSummary {
        model: opts.model_path.display().to_string(),
        data_set: data_name,
        preset,
        epochs: trained.cell.epochs,
        train_samples: trained.cell.train_samples,
        test_acc: trained.cell.test_acc,
        relu_test_acc: None,
        diverged: trained.cell.diverged.clone(),
        depth: None,
        ckks: None,
        calibration: BTreeMap::new(),
        simulation: None,
        encrypted: None,
        run_folder: out.display().to_string(),
        seconds: 0.0,
    };
    if summary.diverged.is_some() {
        summary.seconds = started.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // Calibrate on validation samples (test samples when there is no validation split).
    let ck = evaluate::load_checkpoint(model, &out.join(LAST))?;
    let calib_set = if splits.val.is_empty() {
        &splits.test
    } else {
        &splits.val
    };
    let calib_samples =
        evaluate::raw_samples(calib_set, &splits.normalization, CALIBRATION_SAMPLES);
    summary.calibration = evaluate::calibrate(model, &ck, &calib_samples)?;

    // Compile.
    let (lo, hi) = evaluate::raw_bounds(&splits);
    let compiled = compile(
        model,
        &ck,
        &CompileOptions {
            input_range: [lo, hi],
        },
    )
    .map_err(|e| Failure::job(format!("{}: compile: {e}", opts.model_path.display())))?;
    for w in &compiled.warnings {
        note(format!("warning: {}: {w}", opts.model_path.display()));
    }
    let circuit_path = out.join(CIRCUIT);
    circuit_io::write(
        &circuit_path,
        &compiled.circuit,
        &compiled.tensors,
        circuit_io::INLINE_LIMIT,
    )
    .map_err(|e| Failure::usage(format!("{}: {e}", circuit_path.display())))?;
    let p = &compiled.circuit.params;
    summary.depth = Some(compiled.circuit.depth);
    summary.ckks = Some(serde_json::json!({
        "ring_dim": p.ring_dim, "slots": p.slots, "mult_depth": p.mult_depth,
        "scale_bits": p.scale_bits, "first_mod_bits": p.first_mod_bits,
        "log_q": p.log_q, "max_log_q": p.max_log_q, "security": p.security,
        "bootstrapping": p.bootstrapping.is_some(),
        "rotation_keys": compiled.circuit.rotations.len(),
    }));

    // Simulate.
    let n_sim = opts.simulate.unwrap_or(if opts.quick {
        QUICK_SIMULATE
    } else {
        DEFAULT_SIMULATE
    });
    let test_samples = evaluate::raw_samples(&splits.test, &splits.normalization, n_sim);
    note(format!(
        "simulate: {} test samples through the circuit",
        test_samples.len()
    ));
    summary.simulation = Some(evaluate::simulate(
        &circuit_path,
        model,
        &ck,
        &test_samples,
    )?);

    // ReLU baseline on the same data.
    if opts.compare_relu {
        let relu_out = out.join("relu");
        note(format!(
            "compare: ReLU baseline into {}",
            relu_out.display()
        ));
        folder::prepare(&relu_out, start)?;
        let recipe: Recipe = Method::Relu.recipe();
        let mut relu_config = run_config(
            model,
            &Overrides {
                recipe,
                ..overrides
            },
        );
        relu_config.progress = Progress::Bars;
        let relu_job = TrainJob {
            out: &relu_out,
            config: relu_config,
            ..job
        };
        summary.relu_test_acc = train_on(&relu_job, &splits, &data_dir)?.cell.test_acc;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    folder::write_json(&out.join(RUN_SUMMARY), &summary)?;
    Ok(summary)
}

//! `pnnc run model.pnn`: the whole pipeline in one command — check, train,
//! calibrate, compile, simulate, optionally an encrypted check and a ReLU
//! baseline — ending with one summary (printed and `run-summary.json`).
//!
//! The training part ([`train_request`]) is shared with `pnnc sweep`. It
//! mirrors `pnnc train` but takes an in-memory checked model, so that a sweep
//! can override the activation degree without writing model files.

use super::failure::{Failure, report, set_threads};
use super::train::{split, write_json};
use crate::data::{self, DataError, Dataset, LoadOptions, Splits};
use crate::he::reference::Reference;
use crate::he::{CompileOptions, compile, io as circuit_io};
use crate::ir::weights::write_atomic;
use crate::ir::{
    BoundaryKind, BoundaryLoss, Checkpoint, Clip, ClipExcept, Model, Normalization, Reduce,
};
use crate::train::run::{self as trainer, Progress, RunConfig, RunData, RunError};
use crate::train::{Network, NetworkOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--quick`: training epochs, training samples, test samples simulated.
pub const QUICK_EPOCHS: u32 = 1;
pub const QUICK_LIMIT_TRAIN: usize = 12_000;
pub const QUICK_SIMULATE: usize = 100;
/// Validation samples used to calibrate activation ranges.
const CALIBRATION_SAMPLES: usize = 256;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The model file (.pnn).
    pub model: PathBuf,
    /// Folder holding the data set (searched before the model's own path and $PNN_DATA).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Train on this data set instead of the model's, e.g. `fashion_mnist`.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Run folder (default: runs/<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
    pub compare: Option<super::train::Baseline>,
    /// Test samples evaluated through the compiled circuit (default 500, --quick 100).
    #[arg(long)]
    pub simulate: Option<usize>,
    /// Run N test samples encrypted with OpenFHE (runners/openfhe, via `pnnc he-run`).
    #[arg(long)]
    pub encrypted: Option<usize>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// A training recipe of the sweep (and of `--compare relu`).
#[derive(
    clap::ValueEnum,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Boundary loss + selective clipping (the paper's framework).
    Framework,
    /// Selective clipping only.
    NoBoundary,
    /// Boundary loss + clipping of every tensor, BatchNorm included.
    ClipAll,
    /// Boundary loss only.
    NoClip,
    /// Neither boundary loss nor clipping.
    Plain,
    /// The ReLU network (not HE-compatible), with the model's clipping.
    Relu,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Framework => "framework",
            Method::NoBoundary => "no-boundary",
            Method::ClipAll => "clip-all",
            Method::NoClip => "no-clip",
            Method::Plain => "plain",
            Method::Relu => "relu",
        }
    }
    fn boundary(self) -> bool {
        matches!(self, Method::Framework | Method::ClipAll | Method::NoClip)
    }
}

/// What one training run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub test_acc: Option<f64>,
    pub best_val_acc: Option<f64>,
    /// Global step at which the loss or a gradient became NaN/Inf.
    pub diverged_step: Option<u64>,
    /// The divergence message.
    pub diverged: Option<String>,
    pub epochs: u32,
    pub steps: u64,
    pub seconds: f64,
    pub train_samples: usize,
}

/// One training run of an in-memory model.
pub struct TrainRequest<'a> {
    pub model: &'a Model,
    pub model_path: &'a Path,
    pub data_dir: Option<&'a Path>,
    pub out: &'a Path,
    /// None: the model's own `train { }` recipe.
    pub method: Option<Method>,
    pub epochs: Option<u32>,
    pub seed: Option<u64>,
    pub limit_train: Option<usize>,
    pub threads: usize,
    pub quiet: bool,
}

/// The model's training config with the method applied.
pub fn method_config(
    model: &Model,
    method: Option<Method>,
    req_epochs: Option<u32>,
    seed: Option<u64>,
) -> RunConfig {
    let t = &model.train;
    let max_norm = t.clip.as_ref().map_or(1.0, |c| c.max_norm);
    let default_boundary = BoundaryLoss {
        kind: BoundaryKind::Exp,
        penalty: None,
        weight: 10.0,
        reduce: Reduce::Sum,
    };
    let (boundary, clip) = match method {
        None => (t.boundary.clone(), t.clip.clone()),
        Some(m) => {
            let boundary = m
                .boundary()
                .then(|| t.boundary.clone().unwrap_or(default_boundary));
            let clip = match m {
                Method::Framework | Method::NoBoundary => Some(Clip {
                    max_norm,
                    except: ClipExcept::BatchNorm,
                }),
                Method::ClipAll => Some(Clip {
                    max_norm,
                    except: ClipExcept::None,
                }),
                Method::NoClip | Method::Plain => None,
                Method::Relu => t.clip.clone(),
            };
            (boundary, clip)
        }
    };
    let relu = method == Some(Method::Relu);
    let site_ranges = super::train::poly_site_ranges(model);
    let mut metadata = super::train::run_metadata(relu);
    if let Some(m) = method {
        metadata.insert("method".into(), m.name().into());
    }
    RunConfig {
        epochs: req_epochs.unwrap_or(t.epochs),
        batch: t.batch.max(1),
        seed: seed.unwrap_or(t.seed),
        optimizer: t.optimizer.clone(),
        poly_lr_scale: t.poly_lr_scale,
        schedule: t.schedule.clone(),
        boundary,
        clip,
        site_ranges,
        model_name: model.name.clone(),
        model_hash: model.source_hash.clone(),
        metadata,
        progress: Progress::Quiet,
    }
}

/// Load the model's data set; a missing Fashion-MNIST is fetched with
/// `pnnc data get fashion-mnist` first (other sets: the loader's error says
/// which files to put where).
pub fn load_splits(
    model: &Model,
    model_path: &Path,
    data_dir: Option<&Path>,
    seed: u64,
    limit_train: Option<usize>,
) -> Result<Splits, Failure> {
    let spec = model.train.data.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "{}: the model names no data set\n  help: pass `--dataset fashion_mnist` (or another data set), or add `data: fashion_mnist()` to its `train {{ }}` section",
            model_path.display()
        ))
    })?;
    let opts = LoadOptions {
        data_dir: data_dir.map(Path::to_path_buf),
        model_dir: model_path.parent().map(Path::to_path_buf),
        normalization: None,
        seed,
        use_cache: true,
        limit_train,
    };
    match data::load(spec, &opts) {
        Ok(s) => Ok(s),
        Err(DataError::NotFound { name, .. }) if name.replace('-', "_") == "fashion_mnist" => {
            eprintln!(
                "fashion-mnist is not on this machine: fetching it (`pnnc data get fashion-mnist`)"
            );
            if fetch_fashion_mnist() != ExitCode::SUCCESS {
                return Err(Failure::usage(
                    "could not fetch fashion-mnist\n  help: see the message above, or put the four IDX files in a folder and pass --data DIR",
                ));
            }
            data::load(spec, &opts).map_err(|e| Failure::usage(e.to_string()))
        }
        Err(e) => Err(Failure::usage(e.to_string())),
    }
}

/// `pnnc data get fashion-mnist`, through the data stage's own command.
fn fetch_fashion_mnist() -> ExitCode {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: super::data::DataArgs,
    }
    match Wrap::try_parse_from(["pnnc-data", "get", "fashion-mnist"]) {
        Ok(w) => super::data::run(&w.args),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Train `req.model` on `splits` into `req.out` (a `pnnc train` run folder:
/// model.pnn, config.json, metrics, checkpoints, summary.json). A divergence
/// is a result (`diverged_step`), not an error.
pub fn train_on(req: &TrainRequest, splits: &Splits) -> Result<CellResult, Failure> {
    let mut cfg = method_config(req.model, req.method, req.epochs, req.seed);
    cfg.progress = if req.quiet {
        Progress::Quiet
    } else {
        Progress::Bars
    };
    let relu = req.method == Some(Method::Relu);
    let mut net = Network::new(
        req.model,
        cfg.seed,
        &NetworkOptions {
            baseline_relu: relu,
        },
    )
    .map_err(|e| Failure::job(format!("{}: {e}", req.model_path.display())))?;
    std::fs::create_dir_all(req.out)
        .map_err(|e| Failure::usage(format!("{}: {e}", req.out.display())))?;
    let source = std::fs::read(req.model_path)
        .map_err(|e| Failure::usage(format!("{}: {e}", req.model_path.display())))?;
    write_atomic(&req.out.join("model.pnn"), &source).map_err(|e| Failure::usage(e.to_string()))?;
    write_json(
        &req.out.join("config.json"),
        &serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>(),
            "model_file": req.model_path.display().to_string(),
            "model_name": req.model.name,
            "model_hash": req.model.source_hash,
            "method": req.method.map_or("model", Method::name),
            "he_compatible": !relu,
            "threads": req.threads,
            "limit_train": req.limit_train,
            "config": &cfg,
        }),
    )?;
    let spec = req.model.train.data.clone();
    let shape = splits.train.sample_shape.clone();
    let augment = move |x: &mut [f32], _batch: usize, seed: u64| {
        if let Some(spec) = &spec {
            data::augment_batch(spec, &shape, x, seed);
        }
    };
    let run_data = RunData {
        train: split(&splits.train),
        val: (!splits.val.is_empty()).then(|| split(&splits.val)),
        test: (!splits.test.is_empty()).then(|| split(&splits.test)),
        classes: req.model.classes,
        normalization: splits.normalization.clone(),
        augment: Some(&augment),
    };
    let mut result = CellResult {
        test_acc: None,
        best_val_acc: None,
        diverged_step: None,
        diverged: None,
        epochs: 0,
        steps: 0,
        seconds: 0.0,
        train_samples: splits.train.len(),
    };
    let started = std::time::Instant::now();
    match trainer::train(&mut net, &cfg, &run_data, req.out, false) {
        Ok(s) => {
            write_json(
                &req.out.join("summary.json"),
                &serde_json::json!({
                    "model_name": req.model.name,
                    "method": req.method.map_or("model", Method::name),
                    "he_compatible": !relu,
                    "train_samples": splits.train.len(),
                    "val_samples": splits.val.len(),
                    "test_samples": splits.test.len(),
                    "run": &s,
                }),
            )?;
            result.test_acc = s.test_acc;
            result.best_val_acc = s.best_val_acc;
            result.epochs = s.epochs;
            result.steps = s.steps;
            result.seconds = s.seconds;
        }
        Err(RunError::Diverged {
            step,
            epoch,
            batch,
            ref what,
            ..
        }) => {
            result.diverged_step = Some(step);
            // What diverged and which site escaped its range: the sweep's cell.json keeps it.
            result.diverged = Some(format!(
                "training diverged at step {step} (epoch {epoch}, batch {batch}): {what}"
            ));
            result.epochs = epoch;
            result.steps = step;
            result.seconds = started.elapsed().as_secs_f64();
        }
        Err(e @ (RunError::Io(_) | RunError::Resume { .. })) => {
            return Err(Failure::usage(e.to_string()));
        }
        Err(e) => return Err(Failure::job(format!("{}: {e}", req.model_path.display()))),
    }
    Ok(result)
}

/// [`load_splits`] then [`train_on`].
pub fn train_request(req: &TrainRequest) -> Result<CellResult, Failure> {
    let seed = req.seed.unwrap_or(req.model.train.seed);
    let splits = load_splits(
        req.model,
        req.model_path,
        req.data_dir,
        seed,
        req.limit_train,
    )?;
    train_on(req, &splits)
}

/// Raw (unnormalised) samples of `d`: the HE stages take inputs as the data
/// set stores them and apply the checkpoint's normalisation themselves.
pub fn raw_samples(d: &Dataset, norm: &Normalization, limit: usize) -> Vec<(Vec<f64>, usize)> {
    let len = d.sample_len();
    let channels = norm.mean.len().max(1);
    let per_channel = (len / channels).max(1);
    (0..d.len().min(limit))
        .map(|i| {
            let x = d
                .sample(i)
                .iter()
                .enumerate()
                .map(|(j, &v)| {
                    let c = (j / per_channel).min(channels - 1);
                    let (m, s) = (
                        norm.mean.get(c).copied().unwrap_or(0.0),
                        norm.std.get(c).copied().unwrap_or(1.0),
                    );
                    f64::from(v) * f64::from(s) + f64::from(m)
                })
                .collect();
            (x, d.y[i] as usize)
        })
        .collect()
}

/// Per activation site: (range B, max |x| seen, fraction of values outside [-B, B]).
pub type Calibration = BTreeMap<String, (f64, f64, f64)>;

pub fn calibrate(
    model: &Model,
    ck: &Checkpoint,
    samples: &[(Vec<f64>, usize)],
) -> Result<Calibration, String> {
    let sites =
        crate::he::calibrate::calibrate(model, ck, samples.iter().map(|(x, _)| x.as_slice()))
            .map_err(|e| e.to_string())?;
    Ok(sites
        .into_iter()
        .map(|(name, s)| (name, (s.range, s.max_abs, s.outside_fraction())))
        .collect())
}

/// Circuit evaluated in plaintext against the unfolded trained network.
#[derive(Debug, Clone, Serialize)]
pub struct Simulation {
    pub samples: usize,
    pub circuit_acc: f64,
    pub network_acc: f64,
    /// Samples where the circuit and the network predict the same class.
    pub agree: usize,
    pub max_logit_diff: f64,
}

pub fn simulate(
    circuit_path: &Path,
    model: &Model,
    ck: &Checkpoint,
    samples: &[(Vec<f64>, usize)],
) -> Result<Simulation, String> {
    let lc = circuit_io::load(circuit_path).map_err(|e| e.to_string())?;
    let reference = Reference::new(model, ck).map_err(|e| e.to_string())?;
    let argmax = super::common::argmax;
    let (mut c_ok, mut n_ok, mut agree, mut max_diff) = (0, 0, 0, 0.0f64);
    for (x, label) in samples {
        let got = crate::he::simulate::logits(&lc, x, None);
        let want = reference.logits(x).map_err(|e| e.to_string())?;
        c_ok += usize::from(argmax(&got) == *label);
        n_ok += usize::from(argmax(&want) == *label);
        agree += usize::from(argmax(&got) == argmax(&want));
        max_diff = got
            .iter()
            .zip(&want)
            .fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
    }
    let n = samples.len().max(1) as f64;
    Ok(Simulation {
        samples: samples.len(),
        circuit_acc: c_ok as f64 / n,
        network_acc: n_ok as f64 / n,
        agree,
        max_logit_diff: max_diff,
    })
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

pub fn run(args: &RunArgs) -> ExitCode {
    report(pipeline(args).map(|_| ()))
}

fn pct(a: Option<f64>) -> String {
    a.map_or("-".into(), |a| format!("{:.2} %", 100.0 * a))
}

fn pipeline(args: &RunArgs) -> Result<RunSummary, Failure> {
    let started = std::time::Instant::now();
    let threads = set_threads(args.threads);
    // 1. check
    let mut model = super::train::load_model(&args.model)?;
    if let Some(text) = &args.dataset {
        let spec = super::data::parse_spec(text).map_err(|e| {
            Failure::usage(format!(
                "--dataset `{text}`: {e}\n  help: e.g. --dataset fashion_mnist"
            ))
        })?;
        model.train.data = Some(spec);
    }
    let data_name = model
        .train
        .data
        .as_ref()
        .map_or_else(|| "-".to_string(), |d| d.name().to_string());
    eprintln!(
        "check: {} ok ({} parameters, depth {})",
        args.model.display(),
        model.params,
        model.depth
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}", model.name)));
    if out.join(trainer::RESUME).exists() {
        return Err(Failure::usage(format!(
            "{}: this folder already holds a run\n  help: pass another --out, or delete the folder",
            out.display()
        )));
    }
    let epochs = args.epochs.or(args.quick.then_some(QUICK_EPOCHS));
    let limit_train = args.limit_train.or(args.quick.then_some(QUICK_LIMIT_TRAIN));
    let preset = if args.quick {
        format!(
            "--quick: {} epoch(s) on {} training samples (the model asks for {} epochs on the full set)",
            epochs.unwrap_or(model.train.epochs),
            limit_train.map_or("all".into(), |n| n.to_string()),
            model.train.epochs
        )
    } else {
        "full (the model's train { } settings and command-line overrides)".into()
    };
    let seed = args.seed.unwrap_or(model.train.seed);
    let splits = load_splits(&model, &args.model, args.data.as_deref(), seed, limit_train)?;

    // 2. train
    eprintln!(
        "train: {} on {} ({} samples) into {}",
        model.name,
        data_name,
        splits.train.len(),
        out.display()
    );
    let req = TrainRequest {
        model: &model,
        model_path: &args.model,
        data_dir: args.data.as_deref(),
        out: &out,
        method: None,
        epochs,
        seed: Some(seed),
        limit_train,
        threads,
        quiet: false,
    };
    let result = train_on(&req, &splits)?;
    let mut summary = RunSummary {
        model: args.model.display().to_string(),
        data_set: data_name,
        preset,
        epochs: result.epochs,
        train_samples: result.train_samples,
        test_acc: result.test_acc,
        relu_test_acc: None,
        diverged: result.diverged.clone(),
        depth: None,
        ckks: None,
        calibration: BTreeMap::new(),
        simulation: None,
        encrypted: None,
        run_folder: out.display().to_string(),
        seconds: 0.0,
    };
    if let Err(e) = super::plot::plot_run(&out) {
        eprintln!("warning: plots: {e}");
    }
    if let Some(d) = &result.diverged {
        summary.seconds = started.elapsed().as_secs_f64();
        print_summary(&summary);
        return Err(Failure::job(format!("{}: {d}", args.model.display())));
    }

    // 3. calibrate on validation samples (test samples when there is no validation split)
    let ck_path = out.join(trainer::LAST);
    let ck = super::common::load_weights(&model, &ck_path).map_err(Failure::usage)?;
    let calib_set = if splits.val.is_empty() {
        &splits.test
    } else {
        &splits.val
    };
    let calib_samples = raw_samples(calib_set, &splits.normalization, CALIBRATION_SAMPLES);
    summary.calibration = calibrate(&model, &ck, &calib_samples).map_err(Failure::job)?;

    // 4. compile
    let (lo, hi) = raw_bounds(&splits);
    let compiled = compile(
        &model,
        &ck,
        &CompileOptions {
            input_range: [lo, hi],
        },
    )
    .map_err(|e| Failure::job(format!("{}: compile: {e}", args.model.display())))?;
    for w in &compiled.warnings {
        eprintln!("warning: {}: {w}", args.model.display());
    }
    let circuit_path = out.join("circuit.json");
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

    // 5. simulate
    let n_sim = args
        .simulate
        .unwrap_or(if args.quick { QUICK_SIMULATE } else { 500 });
    let test_samples = raw_samples(&splits.test, &splits.normalization, n_sim);
    eprintln!(
        "simulate: {} test samples through the circuit",
        test_samples.len()
    );
    summary.simulation =
        Some(simulate(&circuit_path, &model, &ck, &test_samples).map_err(Failure::job)?);

    // 6. encrypted check
    if let Some(n) = args.encrypted {
        summary.encrypted = Some(encrypted_check(&out, &circuit_path, &test_samples, n)?);
    }

    // 7. ReLU baseline
    if args.compare.is_some() {
        let relu_out = out.join("relu");
        eprintln!("compare: ReLU baseline into {}", relu_out.display());
        let relu_req = TrainRequest {
            out: &relu_out,
            method: Some(Method::Relu),
            ..req
        };
        let r = train_on(&relu_req, &splits)?;
        summary.relu_test_acc = r.test_acc;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    write_json(&out.join("run-summary.json"), &summary)?;
    print_summary(&summary);
    Ok(summary)
}

/// Smallest and largest raw input value of the training split.
fn raw_bounds(splits: &Splits) -> (f64, f64) {
    let raw = raw_samples(&splits.train, &splits.normalization, 2000);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for (x, _) in &raw {
        for &v in x {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn encrypted_check(
    out: &Path,
    circuit: &Path,
    samples: &[(Vec<f64>, usize)],
    n: usize,
) -> Result<serde_json::Value, Failure> {
    let inputs = out.join("he-inputs.json");
    let take = &samples[..n.min(samples.len())];
    write_json(
        &inputs,
        &serde_json::json!({
            "samples": take.iter().map(|(x, _)| x).collect::<Vec<_>>(),
            "labels": take.iter().map(|(_, y)| y).collect::<Vec<_>>(),
        }),
    )?;
    let report_path = out.join("he-report.json");
    let args = super::he_run::HeRunArgs {
        circuit: circuit.to_path_buf(),
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
            epochs: Some(2),
            seed: None,
            limit_train: None,
            quick: false,
            compare: Some(super::super::train::Baseline::Relu),
            simulate: Some(20),
            encrypted: None,
            threads: Some(1),
        };
        let s = pipeline(&args).unwrap_or_else(|f| panic!("{}", f.message));
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
        let Err(again) = pipeline(&args) else {
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
        let Err(e) = load_splits(&m, &model, None, 1, None) else {
            panic!("a model without data set loaded data")
        };
        assert!(
            e.message.contains("--dataset fashion_mnist"),
            "{}",
            e.message
        );
    }

    #[test]
    fn methods_map_to_boundary_and_clipping() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.pnn");
        std::fs::write(&model, "model m\ninput [4]\nclasses 2\nact p = poly(degree: 2, fit: relu, range: 12)\nnet {\n  dense(4); p\n  dense(classes)\n}\n").unwrap();
        let m = crate::check::load_model(&model).unwrap();
        let cfg = |x| method_config(&m, Some(x), None, None);
        let except = |c: &RunConfig| c.clip.as_ref().map(|c| c.except);
        assert!(cfg(Method::Framework).boundary.is_some());
        assert_eq!(except(&cfg(Method::Framework)), Some(ClipExcept::BatchNorm));
        assert!(cfg(Method::NoBoundary).boundary.is_none());
        assert_eq!(
            except(&cfg(Method::NoBoundary)),
            Some(ClipExcept::BatchNorm)
        );
        assert_eq!(except(&cfg(Method::ClipAll)), Some(ClipExcept::None));
        assert!(cfg(Method::NoClip).boundary.is_some() && cfg(Method::NoClip).clip.is_none());
        assert!(cfg(Method::Plain).boundary.is_none() && cfg(Method::Plain).clip.is_none());
        let relu = cfg(Method::Relu);
        assert_eq!(
            relu.metadata.get("he_compatible").map(String::as_str),
            Some("false")
        );
    }
}

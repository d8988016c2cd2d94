//! `pnnc train model.pnn`: train a checked model on its data set into a run folder.

use crate::data::{self, LoadOptions, Splits};
use crate::ir::{Clip, ClipExcept, Model, OpKind, weights::write_atomic};
use crate::train::run::{self, Progress, RunConfig, RunData, RunError, Split};
use crate::train::{Network, NetworkOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use super::failure::{Failure, report, set_threads};

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The model file (.pnn).
    pub model: PathBuf,
    /// Folder holding the data set (searched before the model's own path and $PNN_DATA).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs (default: the model's `train { epochs }`).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Batch size (default: the model's `train { batch }`).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Seed of initialisation, shuffling, augmentation and the validation split.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run folder (default: runs/<model>-s<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its last completed epoch.
    #[arg(long)]
    pub resume: bool,
    /// Use only the first N training samples.
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Train a comparison baseline instead of the polynomial network (not HE-compatible).
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Turn the boundary loss off (ablation).
    #[arg(long)]
    pub no_boundary_loss: bool,
    /// Gradient clipping: selective (the paper: skip BatchNorm), all, or off.
    #[arg(long, value_enum)]
    pub clip: Option<ClipMode>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// JSON lines on stdout instead of progress bars.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Baseline {
    Relu,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ClipMode {
    Selective,
    All,
    Off,
}

/// `config.json` of a run folder.
#[derive(Serialize)]
struct RunFile<'a> {
    command: Vec<String>,
    model_file: String,
    model_name: &'a str,
    model_hash: &'a str,
    baseline: Option<Baseline>,
    he_compatible: bool,
    threads: usize,
    limit_train: Option<usize>,
    config: &'a RunConfig,
}

/// `summary.json` of a finished run.
#[derive(Serialize)]
struct Summary<'a> {
    model_name: &'a str,
    he_compatible: bool,
    baseline: Option<Baseline>,
    train_samples: usize,
    val_samples: usize,
    test_samples: usize,
    #[serde(flatten)]
    run: &'a run::RunSummary,
}

pub fn run(args: &TrainArgs) -> ExitCode {
    report(train(args))
}

/// Parse and check a model file.
pub fn load_model(path: &Path) -> Result<Model, Failure> {
    crate::check::load_model(path).map_err(|e| match e {
        crate::check::ModelError::Load(e) => Failure::usage(format!(
            "{e}\n  help: give the path of a UTF-8 .pnn model file"
        )),
        invalid => Failure::usage(format!(
            "{invalid}\n  help: run `pnnc check {}` and fix the errors",
            path.display()
        )),
    })
}

/// Load the model's data set (normalised with `normalization` when given).
pub fn load_data(
    model: &Model,
    model_path: &Path,
    data_dir: Option<&Path>,
    normalization: Option<crate::ir::Normalization>,
    seed: u64,
    limit_train: Option<usize>,
) -> Result<Splits, Failure> {
    let spec = model.train.data.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "{}: the model names no data set\n  help: add `data: fashion_mnist()` (or another data set) to its `train {{ }}` section",
            model_path.display()
        ))
    })?;
    let opts = LoadOptions {
        data_dir: data_dir.map(Path::to_path_buf),
        model_dir: model_path.parent().map(Path::to_path_buf),
        normalization,
        seed,
        use_cache: true,
        limit_train,
    };
    data::load(spec, &opts).map_err(|e| Failure::usage(e.to_string()))
}

/// The model's training config with the command-line overrides applied.
fn effective_config(model: &Model, args: &TrainArgs, progress: Progress) -> RunConfig {
    let t = &model.train;
    let clip = match args.clip {
        None => t.clip.clone(),
        Some(ClipMode::Off) => None,
        Some(mode) => Some(Clip {
            max_norm: t.clip.as_ref().map_or(1.0, |c| c.max_norm),
            except: if mode == ClipMode::All {
                ClipExcept::None
            } else {
                ClipExcept::BatchNorm
            },
        }),
    };
    let relu = args.baseline == Some(Baseline::Relu);
    let site_ranges = poly_site_ranges(model);
    let metadata = run_metadata(relu);
    RunConfig {
        epochs: args.epochs.unwrap_or(t.epochs),
        batch: args.batch.unwrap_or(t.batch).max(1),
        seed: args.seed.unwrap_or(t.seed),
        optimizer: t.optimizer.clone(),
        poly_lr_scale: t.poly_lr_scale,
        schedule: t.schedule.clone(),
        // A ReLU network has nothing to keep in range.
        boundary: if args.no_boundary_loss || relu {
            None
        } else {
            t.boundary.clone()
        },
        clip,
        site_ranges,
        model_name: model.name.clone(),
        model_hash: model.source_hash.clone(),
        metadata,
        progress,
    }
}

/// (site name, fit range B) of every polynomial activation, for the loop's
/// range report and NaN messages.
pub fn poly_site_ranges(model: &Model) -> BTreeMap<String, f64> {
    model
        .ops()
        .into_iter()
        .filter_map(|op| match &op.kind {
            OpKind::Poly(p) => Some((op.name.clone(), p.range)),
            _ => None,
        })
        .collect()
}

/// Checkpoint metadata every run carries: whether it can run under HE.
pub fn run_metadata(relu: bool) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    metadata.insert("he_compatible".into(), (!relu).to_string());
    if relu {
        metadata.insert("baseline".into(), "relu".into());
    }
    metadata
}

pub fn split(d: &data::Dataset) -> Split<'_> {
    Split {
        x: &d.x,
        y: &d.y,
        sample_len: d.sample_len(),
    }
}

pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::job(e.to_string()))?;
    write_atomic(path, format!("{text}\n").as_bytes()).map_err(|e| Failure::usage(e.to_string()))
}

fn train(args: &TrainArgs) -> Result<(), Failure> {
    let threads = set_threads(args.threads);
    let model = load_model(&args.model)?;
    let progress = if args.json {
        Progress::Json
    } else if args.quiet {
        Progress::Quiet
    } else {
        Progress::Bars
    };
    let cfg = effective_config(&model, args, progress);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("runs/{}-s{}", model.name, cfg.seed)));
    let resume_file = out.join(run::RESUME);
    if args.resume && !resume_file.is_file() {
        return Err(Failure::usage(format!(
            "{}: no run to resume (no {})\n  help: start the run without --resume, or pass its --out folder",
            out.display(),
            run::RESUME
        )));
    }
    if !args.resume && resume_file.exists() {
        return Err(Failure::usage(format!(
            "{}: this folder already holds a run\n  help: pass --resume to continue it, or another --out",
            out.display()
        )));
    }
    let splits = load_data(
        &model,
        &args.model,
        args.data.as_deref(),
        None,
        cfg.seed,
        args.limit_train,
    )?;
    let relu = args.baseline == Some(Baseline::Relu);
    let mut net = Network::new(
        &model,
        cfg.seed,
        &NetworkOptions {
            baseline_relu: relu,
        },
    )
    .map_err(|e| Failure::job(format!("{}: {e}", args.model.display())))?;

    std::fs::create_dir_all(&out).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
    let source = std::fs::read(&args.model)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.model.display())))?;
    write_atomic(&out.join("model.pnn"), &source).map_err(|e| Failure::usage(e.to_string()))?;
    write_json(
        &out.join("config.json"),
        &RunFile {
            command: std::env::args().collect(),
            model_file: args.model.display().to_string(),
            model_name: &model.name,
            model_hash: &model.source_hash,
            baseline: args.baseline,
            he_compatible: !relu,
            threads,
            limit_train: args.limit_train,
            config: &cfg,
        },
    )?;

    let spec = model.train.data.clone();
    let shape = splits.train.sample_shape.clone();
    let augment = move |x: &mut [f32], _batch: usize, seed: u64| {
        if let Some(spec) = &spec {
            data::augment_batch(spec, &shape, x, seed);
        }
    };
    let data = RunData {
        train: split(&splits.train),
        val: (!splits.val.is_empty()).then(|| split(&splits.val)),
        test: (!splits.test.is_empty()).then(|| split(&splits.test)),
        classes: model.classes,
        normalization: splits.normalization.clone(),
        augment: Some(&augment),
    };
    let summary = match run::train(&mut net, &cfg, &data, &out, args.resume) {
        Ok(s) => s,
        Err(e @ RunError::Diverged { .. }) => {
            return Err(Failure::job(format!(
                "{}: {e}\n  (last good checkpoint: {})",
                args.model.display(),
                out.join(run::LAST).display()
            )));
        }
        Err(e @ (RunError::Io(_) | RunError::Resume { .. })) => {
            return Err(Failure::usage(e.to_string()));
        }
        Err(e) => return Err(Failure::job(format!("{}: {e}", args.model.display()))),
    };
    let s = Summary {
        model_name: &model.name,
        he_compatible: !relu,
        baseline: args.baseline,
        train_samples: splits.train.len(),
        val_samples: splits.val.len(),
        test_samples: splits.test.len(),
        run: &summary,
    };
    write_json(&out.join("summary.json"), &s)?;
    match progress {
        Progress::Json => println!(
            "{}",
            serde_json::json!({"event": "summary", "summary": &s, "out": out.display().to_string()})
        ),
        Progress::Quiet => {}
        Progress::Bars => {
            let pct = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
            eprintln!(
                "done: {} epochs in {:.1}s, best val acc {} (epoch {}), test acc {} (final weights), {} (best.safetensors){}\n  run folder: {}",
                summary.epochs,
                summary.seconds,
                pct(summary.best_val_acc),
                summary.best_epoch.map_or("-".into(), |e| e.to_string()),
                pct(summary.test_acc),
                pct(summary.best_test_acc),
                if relu {
                    " (ReLU baseline: not HE-compatible)"
                } else {
                    ""
                },
                out.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{BoundaryKind, BoundaryLoss, Reduce};
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn args(extra: &[&str]) -> TrainArgs {
        let mut v = vec!["pnnc", "m.pnn"];
        v.extend(extra);
        Wrap::parse_from(v).args
    }

    fn model() -> Model {
        let act = crate::train::models::relu_poly(2, 12.0, crate::ir::Basis::Chebyshev);
        let mut m = crate::train::models::bench_model("mnist_cnn", &act).unwrap();
        m.train.boundary = Some(BoundaryLoss {
            kind: BoundaryKind::Exp,
            penalty: Some(12.0),
            weight: 10.0,
            reduce: Reduce::Sum,
        });
        m.train.clip = Some(Clip {
            max_norm: 0.5,
            except: ClipExcept::BatchNorm,
        });
        m
    }

    #[test]
    fn overrides_apply_to_the_model_config() {
        let m = model();
        let cfg = effective_config(&m, &args(&[]), Progress::Quiet);
        assert_eq!(cfg.clip, m.train.clip);
        assert!(cfg.boundary.is_some());
        assert_eq!(cfg.site_ranges.len(), 3);
        assert_eq!(
            cfg.metadata.get("he_compatible").map(String::as_str),
            Some("true")
        );

        let all = effective_config(
            &m,
            &args(&["--clip", "all", "--epochs", "5"]),
            Progress::Quiet,
        );
        assert_eq!(
            all.clip,
            Some(Clip {
                max_norm: 0.5,
                except: ClipExcept::None
            })
        );
        assert_eq!(all.epochs, 5);
        let off = effective_config(
            &m,
            &args(&["--clip", "off", "--no-boundary-loss"]),
            Progress::Quiet,
        );
        assert_eq!(off.clip, None);
        assert_eq!(off.boundary, None);

        let relu = effective_config(&m, &args(&["--baseline", "relu"]), Progress::Quiet);
        assert_eq!(relu.boundary, None);
        assert_eq!(
            relu.metadata.get("he_compatible").map(String::as_str),
            Some("false")
        );
        assert_eq!(
            relu.metadata.get("baseline").map(String::as_str),
            Some("relu")
        );
    }
}

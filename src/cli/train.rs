//! `pnnc train model.pnn`: train a checked model on its data set into a run folder.

use crate::ir::Model;
use crate::pipeline::folder::{self, Start};
use crate::pipeline::recipe::{Baseline, BoundaryChoice, ClipMode, Overrides, Recipe, run_config};
use crate::pipeline::train::{ResumeRequest, TrainJob, Trained, resume_config};
use crate::train::run::{self, Progress};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use super::failure::{Failure, report, set_threads};
pub use crate::pipeline::folder::write_json;

#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The model file (.pnn).
    pub model: PathBuf,
    /// Folder holding the data set (the only place searched when given).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Epochs (default: the model's `train { epochs }`); with --resume, how far to train.
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
    /// Continue the run in --out from its last completed epoch, with its own settings.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace the run files of an earlier run in --out.
    #[arg(long)]
    pub overwrite: bool,
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
    /// Worker threads (default: all cores; at most the number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress output.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// JSON lines on stdout instead of progress bars.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &TrainArgs) -> ExitCode {
    report(train(args))
}

/// Parse and check a model file, or read a checked model a run folder
/// saved (`model.json`, e.g. a sweep cell's model with its degree applied).
pub fn load_model(path: &Path) -> Result<Model, Failure> {
    if path.extension().is_some_and(|e| e == "json") {
        return super::common::load_model(path).map_err(|e| {
            Failure::usage(format!(
                "{e}\n  help: give a .pnn model file, or the model.json of a run folder"
            ))
        });
    }
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

/// The recipe the flags ask for.
fn recipe(args: &TrainArgs) -> Recipe {
    Recipe {
        boundary: if args.no_boundary_loss {
            BoundaryChoice::Off
        } else {
            BoundaryChoice::Model
        },
        clip: args.clip,
        relu: args.baseline == Some(Baseline::Relu),
        method: None,
    }
}

fn train(args: &TrainArgs) -> Result<(), Failure> {
    let threads = set_threads(args.threads)?;
    let model = load_model(&args.model)?;
    let progress = if args.json {
        Progress::Json
    } else if args.quiet {
        Progress::Quiet
    } else {
        Progress::Bars
    };
    let out = args.out.clone().unwrap_or_else(|| {
        let seed = args.seed.unwrap_or(model.train.seed);
        PathBuf::from(format!("runs/{}-s{seed}", model.name))
    });
    let (mut config, limit_train, data_dir, start) = if args.resume {
        folder::prepare(&out, Start::Resume)?;
        let recorded = folder::read_run_file(&out)?;
        let request = ResumeRequest {
            epochs: args.epochs,
            batch: args.batch,
            seed: args.seed,
            limit_train: args.limit_train,
            relu: args.baseline == Some(Baseline::Relu),
            no_boundary: args.no_boundary_loss,
            clip: args.clip,
        };
        let config = resume_config(&recorded, &model, &args.model, &request)?;
        let data_dir = args.data.clone().or(recorded.data_dir.map(PathBuf::from));
        (config, recorded.limit_train, data_dir, Start::Resume)
    } else {
        let overrides = Overrides {
            epochs: args.epochs,
            batch: args.batch,
            seed: args.seed,
            recipe: recipe(args),
        };
        let start = if args.overwrite {
            Start::Overwrite
        } else {
            Start::Fresh
        };
        (
            run_config(&model, &overrides),
            args.limit_train,
            args.data.clone(),
            start,
        )
    };
    config.progress = progress;
    let job = TrainJob {
        model: &model,
        model_path: &args.model,
        data_dir: data_dir.as_deref(),
        out: &out,
        config,
        limit_train,
        threads,
        start,
        stop: Some(super::failure::stop_flag()),
    };
    let resume_hint = format!(
        "resume with `pnnc train {} --out {} --resume`",
        args.model.display(),
        out.display()
    );
    let trained = crate::pipeline::train::train(&job)
        .map_err(|f| super::failure::with_resume_hint(f, &resume_hint))?;
    print_outcome(&trained, &job, progress)
}

fn print_outcome(trained: &Trained, job: &TrainJob, progress: Progress) -> Result<(), Failure> {
    if let Some(d) = &trained.cell.diverged {
        let last = job.out.join(run::LAST);
        let kept = if last.is_file() {
            format!("last good checkpoint: {}", last.display())
        } else {
            "no checkpoint was written: it diverged in the first epoch".into()
        };
        return Err(Failure::job(format!(
            "{}: {d}\n  help: {}\n  ({kept})",
            job.model_path.display(),
            trained
                .cell
                .diverged_help
                .as_deref()
                .unwrap_or("lower the learning rate"),
        )));
    }
    let Some(summary) = &trained.summary else {
        return Ok(());
    };
    match progress {
        Progress::Json => println!(
            "{}",
            serde_json::json!({"event": "summary", "summary": &trained.summary_json, "out": job.out.display().to_string()})
        ),
        Progress::Quiet => {}
        Progress::Bars => {
            let pct = |a: Option<f64>| a.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a));
            let relu = job.config.metadata.contains_key("baseline");
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
                job.out.display()
            );
        }
    }
    Ok(())
}

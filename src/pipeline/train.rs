//! One training run: load the data, build the network, train into a run
//! folder. Shared by `pnnc train`, `run` and `sweep`; a divergence is a
//! result ([`CellResult::diverged`]), not an error.

use super::Failure;
use super::folder::{self, MODEL_FILE, RunFile, SUMMARY, Start};
use super::limits;
use super::recipe::{Baseline, ClipMode};
use crate::data::{self, DataError, Dataset, LoadOptions, Splits};
use crate::ir::weights::write_atomic;
use crate::ir::{ClipExcept, Model};
use crate::train::run::{self as trainer, RunConfig, RunData, RunError, RunSummary, Split};
use crate::train::{Network, NetworkOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// What one training run measured (a sweep cell's `cell.json`).
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellResult {
    pub test_acc: Option<f64>,
    pub best_val_acc: Option<f64>,
    /// Global step at which the loss or a gradient became NaN/Inf.
    pub diverged_step: Option<u64>,
    /// The divergence message.
    pub diverged: Option<String>,
    /// What to try against the divergence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_help: Option<String>,
    pub epochs: u32,
    pub steps: u64,
    pub seconds: f64,
    pub train_samples: usize,
    /// The largest activation input of the run (completed epochs and the
    /// failing batch), where it arose, and that site's fit range B.
    #[serde(default)]
    pub max_abs_input: Option<f64>,
    #[serde(default)]
    pub max_abs_site: Option<String>,
    #[serde(default)]
    pub max_abs_range: Option<f64>,
    /// The site furthest outside its range when training diverged.
    #[serde(default)]
    pub diverged_site: Option<String>,
}

/// A finished (or diverged) run.
#[derive(Debug, Clone, PartialEq)]
pub struct Trained {
    pub cell: CellResult,
    /// The trainer's summary, when the run did not diverge.
    pub summary: Option<RunSummary>,
    /// `summary.json` as written.
    pub summary_json: Option<serde_json::Value>,
}

/// `summary.json` of a finished run.
#[derive(Serialize)]
struct SummaryFile<'a> {
    model_name: &'a str,
    method: &'a str,
    he_compatible: bool,
    baseline: Option<Baseline>,
    train_samples: usize,
    val_samples: usize,
    test_samples: usize,
    #[serde(flatten)]
    run: &'a RunSummary,
}

/// Everything one run needs.
pub struct TrainJob<'a> {
    pub model: &'a Model,
    pub model_path: &'a Path,
    /// `--data`: only this folder is searched when given.
    pub data_dir: Option<&'a Path>,
    pub out: &'a Path,
    pub config: RunConfig,
    pub limit_train: Option<usize>,
    pub threads: usize,
    pub start: Start,
    /// Set (by Ctrl-C) to stop after the current batch.
    pub stop: Option<&'a AtomicBool>,
}

impl TrainJob<'_> {
    fn relu(&self) -> bool {
        self.config.metadata.get("baseline").map(String::as_str) == Some("relu")
    }
}

/// Load the model's data set (normalised with `normalization` when given,
/// else with statistics of its training split). A missing Fashion-MNIST is
/// fetched from Debian's package first when no `--data` folder was given.
pub fn load_splits(
    model: &Model,
    model_path: &Path,
    data_dir: Option<&Path>,
    normalization: Option<crate::ir::Normalization>,
    seed: u64,
    limit_train: Option<usize>,
) -> Result<(Splits, PathBuf), Failure> {
    let spec = model.train.data.as_ref().ok_or_else(|| {
        Failure::usage(format!(
            "{}: the model names no data set\n  help: add `data: fashion_mnist()` (or another data set) to its `train {{ }}` section, or pass `--dataset fashion_mnist` to `pnnc run`",
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
    let located = match data::locate(spec, &opts) {
        Err(DataError::NotFound { name, .. })
            if data_dir.is_none() && name.replace('-', "_") == "fashion_mnist" =>
        {
            eprintln!("fashion-mnist is not on this machine: fetching it from Debian's package");
            data::fetch::fashion_mnist(&mut |line| eprintln!("{line}")).map_err(|e| {
                Failure::usage(format!(
                    "could not fetch fashion-mnist: {e}\n  help: put the four IDX files in a folder and pass --data DIR"
                ))
            })?;
            data::locate(spec, &opts)
        }
        other => other,
    }
    .map_err(|e| Failure::usage(e.to_string()))?;
    let splits = data::load(spec, &opts).map_err(|e| Failure::usage(e.to_string()))?;
    check_classes(model, &splits, &located)?;
    Ok((splits, located))
}

/// The data set's classes must be the model's: an extra class folder or a
/// label beyond `classes` is an error here, not a failure in the middle of training.
fn check_classes(model: &Model, splits: &Splits, folder: &Path) -> Result<(), Failure> {
    let names = &splits.train.class_names;
    if !names.is_empty() && names.len() != model.classes {
        return Err(Failure::usage(format!(
            "{}: the data set has {} classes ({}), the model declares `classes {}`\n  help: remove the extra class folders from the data, or change `classes` in the model",
            folder.display(),
            names.len(),
            names.join(", "),
            model.classes
        )));
    }
    for (split, set) in [
        ("train", &splits.train),
        ("validation", &splits.val),
        ("test", &splits.test),
    ] {
        if let Some(i) = set.y.iter().position(|&y| y as usize >= model.classes) {
            return Err(Failure::usage(format!(
                "{}: {split} sample {i} has label {}, but the model declares `classes {}`\n  help: check the data set's labels, or change `classes` in the model",
                folder.display(),
                set.y[i],
                model.classes
            )));
        }
    }
    Ok(())
}

/// Check the settings, prepare the folder, load the data and train.
pub fn train(job: &TrainJob) -> Result<Trained, Failure> {
    limits::check_settings(job.config.epochs, job.config.batch, job.limit_train)?;
    folder::prepare(job.out, job.start)?;
    let (splits, data_dir) = load_splits(
        job.model,
        job.model_path,
        job.data_dir,
        None,
        job.config.seed,
        job.limit_train,
    )?;
    train_on(job, &splits, &data_dir)
}

/// Train `job.model` on `splits` (read from `data_dir`) into `job.out`,
/// whose folder [`folder::prepare`] has made ready.
pub fn train_on(job: &TrainJob, splits: &Splits, data_dir: &Path) -> Result<Trained, Failure> {
    let cfg = &job.config;
    limits::check_settings(cfg.epochs, cfg.batch, job.limit_train)?;
    limits::check_batch(
        job.model,
        cfg.batch,
        splits.train.len(),
        limits::available_memory(),
    )?;
    let relu = job.relu();
    let mut net = Network::new(
        job.model,
        cfg.seed,
        &NetworkOptions {
            baseline_relu: relu,
        },
    )
    .map_err(|e| Failure::job(format!("{}: {e}", job.model_path.display())))?;
    if job.start != Start::Resume {
        write_run_files(job, data_dir)?;
    }
    let spec = job.model.train.data.clone();
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
        classes: job.model.classes,
        normalization: splits.normalization.clone(),
        augment: Some(&augment),
        stop: job.stop,
    };
    let mut cell = CellResult {
        train_samples: splits.train.len(),
        ..CellResult::default()
    };
    let started = std::time::Instant::now();
    let outcome = trainer::train(
        &mut net,
        cfg,
        &run_data,
        job.out,
        job.start == Start::Resume,
    );
    let failing = match &outcome {
        Err(RunError::Diverged { site, .. }) => site.clone(),
        _ => None,
    };
    if let Some((site, x)) = largest_input(job.out, failing) {
        cell.max_abs_range = cfg.site_ranges.get(&site).copied();
        cell.max_abs_input = Some(f64::from(x));
        cell.max_abs_site = Some(site);
    }
    match outcome {
        Ok(s) => {
            let file = SummaryFile {
                model_name: &job.model.name,
                method: cfg.metadata.get("method").map_or("model", String::as_str),
                he_compatible: !relu,
                baseline: relu.then_some(Baseline::Relu),
                train_samples: splits.train.len(),
                val_samples: splits.val.len(),
                test_samples: splits.test.len(),
                run: &s,
            };
            folder::write_json(&job.out.join(SUMMARY), &file)?;
            let summary_json = serde_json::to_value(&file).ok();
            cell.test_acc = s.test_acc;
            cell.best_val_acc = s.best_val_acc;
            cell.epochs = s.epochs;
            cell.steps = s.steps;
            cell.seconds = s.seconds;
            Ok(Trained {
                cell,
                summary: Some(s),
                summary_json,
            })
        }
        Err(RunError::Diverged {
            step,
            epoch,
            batch,
            ref what,
            ref help,
            ref site,
        }) => {
            cell.diverged_site = site.as_ref().map(|(name, _)| name.clone());
            cell.diverged_step = Some(step);
            // What diverged and which site escaped its range: the sweep's cell.json keeps it.
            cell.diverged = Some(format!(
                "training diverged at step {step} (epoch {epoch}, batch {batch}): {what}"
            ));
            cell.diverged_help = Some(help.clone());
            cell.epochs = epoch;
            cell.steps = step;
            cell.seconds = started.elapsed().as_secs_f64();
            Ok(Trained {
                cell,
                summary: None,
                summary_json: None,
            })
        }
        Err(RunError::Interrupted { epoch, epochs_done }) => Err(Failure {
            code: 130,
            message: format!(
                "{}: interrupted during epoch {epoch}; {epochs_done} completed epoch(s) are saved",
                job.out.display()
            ),
        }),
        Err(e @ (RunError::Io(_) | RunError::Resume { .. })) => Err(Failure::usage(e.to_string())),
        Err(e) => Err(Failure::job(format!("{}: {e}", job.model_path.display()))),
    }
}

/// The largest activation input recorded in the run's metrics, or in the
/// failing batch of a diverged run: (site, max |x|); a non-finite input wins.
pub fn largest_input(out: &Path, failing: Option<(String, f32)>) -> Option<(String, f32)> {
    let rows = crate::train::metrics::read(out).unwrap_or_default();
    let seen = rows
        .iter()
        .flat_map(|r| r.act_max_abs.iter().map(|(s, v)| (s.clone(), *v)))
        .chain(failing);
    let rank = |v: f32| {
        if v.is_finite() {
            f64::from(v)
        } else {
            f64::INFINITY
        }
    };
    seen.fold(None, |best: Option<(String, f32)>, (s, v)| match &best {
        Some((_, b)) if rank(*b) >= rank(v) => best,
        _ => Some((s, v)),
    })
}

/// model.pnn (the source as trained) and config.json of a fresh run.
fn write_run_files(job: &TrainJob, data_dir: &Path) -> Result<(), Failure> {
    let source = std::fs::read(job.model_path)
        .map_err(|e| Failure::usage(format!("{}: {e}", job.model_path.display())))?;
    write_atomic(&job.out.join(MODEL_FILE), &source).map_err(|e| Failure::usage(e.to_string()))?;
    folder::write_json(&job.out.join(folder::MODEL_JSON), job.model)?;
    let relu = job.relu();
    folder::write_json(
        &job.out.join(folder::CONFIG),
        &RunFile {
            command: folder::command_line(),
            model_file: job.model_path.display().to_string(),
            model_name: job.model.name.clone(),
            model_hash: job.model.source_hash.clone(),
            method: Some(
                job.config
                    .metadata
                    .get("method")
                    .cloned()
                    .unwrap_or_else(|| "model".into()),
            ),
            baseline: relu.then_some(Baseline::Relu),
            he_compatible: !relu,
            threads: job.threads,
            limit_train: job.limit_train,
            data_dir: Some(data_dir.display().to_string()),
            config: job.config.clone(),
        },
    )
}

pub fn split(d: &Dataset) -> Split<'_> {
    Split {
        x: &d.x,
        y: &d.y,
        sample_len: d.sample_len(),
    }
}

/// What the command line asks of a resumed run; None/false: not given.
#[derive(Debug, Clone, Default)]
pub struct ResumeRequest {
    pub epochs: Option<u32>,
    pub batch: Option<usize>,
    pub seed: Option<u64>,
    pub limit_train: Option<usize>,
    pub relu: bool,
    pub no_boundary: bool,
    pub clip: Option<ClipMode>,
}

/// The recorded configuration of the run in `out`, for `--resume`: the
/// run's own settings, with `--epochs` (how far to train) the only change
/// allowed. A flag that would change anything else is refused, as is a
/// model file that changed since the run started.
pub fn resume_config(
    run: &RunFile,
    model: &Model,
    model_path: &Path,
    req: &ResumeRequest,
) -> Result<RunConfig, Failure> {
    if run.model_hash != model.source_hash {
        return Err(Failure::usage(format!(
            "{}: this model file is not the one the run was started with (its hash covers the whole file, `train` section included)\n  help: resume with the run's own copy: pnnc train {} --resume",
            model_path.display(),
            Path::new(&run.model_file).display()
        )));
    }
    let cfg = &run.config;
    let recorded_clip = match &cfg.clip {
        None => ClipMode::Off,
        Some(c) if c.except == ClipExcept::BatchNorm => ClipMode::Selective,
        Some(_) => ClipMode::All,
    };
    let relu = run.baseline == Some(Baseline::Relu);
    let mut conflicts = Vec::new();
    if let Some(b) = req.batch.filter(|b| *b != cfg.batch) {
        conflicts.push(format!(
            "--batch {b}: the run's batch size is {}",
            cfg.batch
        ));
    }
    if let Some(s) = req.seed.filter(|s| *s != cfg.seed) {
        conflicts.push(format!("--seed {s}: the run's seed is {}", cfg.seed));
    }
    if let Some(l) = req.limit_train.filter(|l| Some(*l) != run.limit_train) {
        conflicts.push(format!(
            "--limit-train {l}: the run uses {}",
            run.limit_train
                .map_or("the whole training split".into(), |r| format!(
                    "{r} training samples"
                ))
        ));
    }
    if req.relu && !relu {
        conflicts.push("--baseline relu: the run trains the polynomial network".into());
    }
    if req.no_boundary && cfg.boundary.is_some() {
        conflicts.push("--no-boundary-loss: the run trains with a boundary loss".into());
    }
    if let Some(c) = req.clip.filter(|c| *c != recorded_clip) {
        conflicts.push(format!(
            "--clip {}: the run's clipping is {}",
            c.name(),
            recorded_clip.name()
        ));
    }
    if !conflicts.is_empty() {
        return Err(Failure::usage(format!(
            "a resumed run keeps the settings it was started with:\n  {}\n  help: drop these flags (the run's config.json holds its settings), or start a new run in another --out",
            conflicts.join("\n  ")
        )));
    }
    let mut cfg = cfg.clone();
    if let Some(e) = req.epochs {
        cfg.epochs = e;
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(classes: usize, y: Vec<u32>) -> Dataset {
        Dataset {
            sample_shape: vec![1],
            x: vec![0.0; y.len()],
            y,
            class_names: (0..classes).map(|c| format!("c{c}")).collect(),
        }
    }

    #[test]
    fn a_data_set_with_an_extra_class_folder_is_refused_up_front() {
        let act = crate::train::models::relu_poly(2, 12.0, crate::ir::Basis::Chebyshev);
        let model = crate::train::models::bench_model("mnist_cnn", &act).unwrap();
        let splits = |classes: usize, y: Vec<u32>| Splits {
            train: set(classes, y),
            val: set(classes, vec![]),
            test: set(classes, vec![0]),
            normalization: crate::ir::Normalization {
                mean: vec![0.0],
                std: vec![1.0],
            },
        };
        let folder = Path::new("data/cifar10");
        let e = check_classes(&model, &splits(11, vec![0, 10]), folder).unwrap_err();
        assert!(
            e.message.contains("has 11 classes (c0, c1") && e.message.contains("`classes 10`"),
            "{e}"
        );
        assert!(check_classes(&model, &splits(10, vec![0, 9]), folder).is_ok());
        let e = check_classes(&model, &splits(0, vec![0, 12]), folder).unwrap_err();
        assert!(e.message.contains("train sample 1 has label 12"), "{e}");
    }
}

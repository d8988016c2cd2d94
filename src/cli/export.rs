//! `pnnc export torch MODEL.pnn -o DIR`: a PyTorch trainer folder for the model
//! (library: `crate::export::torch`; docs/scale-out.md).

use super::train::{Failure, load_model, report};
use crate::export::torch::{self, DATA_FILE, Options};
use crate::pipeline::recipe::{Method, Overrides, Recipe, run_config};
use crate::pipeline::train::load_splits;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Subcommand, Debug)]
pub enum ExportTarget {
    /// A self-contained PyTorch trainer (DistributedDataParallel, torchrun) with pnnc's semantics.
    Torch(TorchArgs),
}

#[derive(Args, Debug)]
pub struct TorchArgs {
    /// The model file (.pnn).
    pub model: PathBuf,
    /// The folder to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace an existing folder.
    #[arg(long)]
    pub overwrite: bool,
    /// Training recipe (default: the model's own `train` section); `relu` exports the baseline.
    #[arg(long, value_enum)]
    pub method: Option<Method>,
    /// Epochs (default: the model's).
    #[arg(long)]
    pub epochs: Option<u32>,
    /// Seed of initialisation, order and augmentation (default: the model's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also write the model's data set into the folder (`data.safetensors`, as `pnnc data export`).
    #[arg(long)]
    pub with_data: bool,
    /// Folder holding the data set (with --with-data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N training samples (with --with-data).
    #[arg(long)]
    pub limit_train: Option<usize>,
}

pub fn run(args: &ExportArgs) -> ExitCode {
    match &args.target {
        ExportTarget::Torch(a) => report(export_torch(a)),
    }
}

fn export_torch(args: &TorchArgs) -> Result<(), Failure> {
    let model = load_model(&args.model)?;
    let cfg = run_config(
        &model,
        &Overrides {
            epochs: args.epochs,
            batch: None,
            seed: args.seed,
            recipe: args.method.map_or(Recipe::MODEL, Method::recipe),
        },
    );
    let opts = Options {
        baseline_relu: args.method == Some(Method::Relu),
        overwrite: args.overwrite,
        model_file: args.model.display().to_string(),
    };
    let splits = if args.with_data {
        let (splits, _) = load_splits(
            &model,
            &args.model,
            args.data.as_deref(),
            None,
            cfg.seed,
            args.limit_train,
        )?;
        Some(splits)
    } else {
        None
    };
    let spec = model.train.data.clone();
    let limit = args
        .limit_train
        .or(spec.as_ref().and_then(|s| s.limit_train));
    let files = torch::export(&model, &cfg, &opts, &args.output, |dir| {
        match (&splits, &spec) {
            (Some(splits), Some(spec)) => {
                crate::data::export::write(splits, spec, cfg.seed, limit, &dir.join(DATA_FILE))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            _ => Ok(()),
        }
    })
    .map_err(|e| match e {
        torch::ExportError::Unsupported { .. } | torch::ExportError::Fit { .. } => {
            Failure::job(format!("{}: {e}", args.model.display()))
        }
        e => Failure::usage(e.to_string()),
    })?;
    let out = args.output.display();
    let data = if args.with_data {
        format!("{out}/{DATA_FILE}")
    } else {
        println!(
            "data: pnnc data export {} -o {out}/{DATA_FILE}",
            args.model.display()
        );
        format!("{out}/{DATA_FILE}")
    };
    println!(
        "wrote {out} ({} files{}): {} epochs, batch {}, seed {}",
        files.len() + usize::from(args.with_data),
        if args.with_data {
            ", data included"
        } else {
            ""
        },
        cfg.epochs,
        cfg.batch,
        cfg.seed
    );
    println!(
        "train: python {out}/train.py --data {data} --out runs/{}   (torchrun --nproc_per_node N for more processes)",
        model.name
    );
    Ok(())
}

//! `pnnc bench`: time training steps of a benchmark network on random data,
//! as `shared/bench/torch_reference.py` does (the kernels' `train::bench`).

use super::failure::{Failure, report};
use crate::ir::Basis;
use crate::train::NetworkOptions;
use crate::train::bench::time_train_step;
use crate::train::models::{bench_model, image_range, relu_poly};
use std::process::ExitCode;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchModel {
    HarMlp,
    MnistCnn,
    Resnet20,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "mnist-cnn")]
    pub model: BenchModel,
    /// Polynomial degree (fit range B and threshold P from the paper's table).
    #[arg(long, default_value_t = 8)]
    pub degree: u32,
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Timed steps (after 2 warm-up steps).
    #[arg(long, default_value_t = 12)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// ReLU in place of the polynomials (the PyTorch `--impl relu` row).
    #[arg(long)]
    pub relu: bool,
}

pub fn run(args: &BenchArgs) -> ExitCode {
    report(bench(args))
}

/// The paper's (B, P) for the HAR MLP, else for images.
fn ranges(model: BenchModel, degree: u32) -> (f64, f64) {
    match (model, degree) {
        (BenchModel::HarMlp, 2) => (13.0, 13.0),
        (BenchModel::HarMlp, 4) => (20.0, 20.0),
        (BenchModel::HarMlp, _) => (35.0, 35.0),
        _ => image_range(degree),
    }
}

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    if !(1..=31).contains(&args.degree) {
        return Err(Failure::usage(format!(
            "--degree {}: degrees run from 1 to 31\n  help: e.g. --degree 8",
            args.degree
        )));
    }
    if args.batch == 0 || args.steps == 0 {
        return Err(Failure::usage(
            "--batch and --steps must be at least 1\n  help: e.g. --batch 128 --steps 12",
        ));
    }
    let name = match args.model {
        BenchModel::HarMlp => "har_mlp",
        BenchModel::MnistCnn => "mnist_cnn",
        BenchModel::Resnet20 => "resnet20",
    };
    let (range, penalty) = ranges(args.model, args.degree);
    let act = relu_poly(args.degree, range, Basis::Chebyshev);
    let model = bench_model(name, &act)
        .ok_or_else(|| Failure::usage(format!("unknown bench model {name}")))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.max(1))
        .build()
        .map_err(|e| Failure::job(format!("thread pool: {e}")))?;
    let opts = NetworkOptions {
        baseline_relu: args.relu,
    };
    let r = pool
        .install(|| time_train_step(&model, args.batch, penalty, 2, args.steps, &opts))
        .map_err(|e| Failure::job(format!("{name}: {e}")))?;
    println!(
        "{}",
        serde_json::json!({
            "engine": "pnnc", "model": name,
            "impl": if args.relu { "relu" } else { "chebyshev" },
            "degree": args.degree, "batch": args.batch, "threads": args.threads,
            "steps": args.steps,
            "median_step_ms": (r.median_step_ms * 100.0).round() / 100.0,
            "samples_per_s": r.samples_per_s.round(),
            "peak_rss_mb": r.peak_rss_mb.map(|m| m.round()),
        })
    );
    Ok(())
}

//! `pnnc bench`: time training steps of a network on random data, as
//! `shared/bench/torch_reference.py` does (the kernels' `train::bench`).
//! The network is one of the reference's (`har-mlp`, `mnist-cnn`,
//! `resnet20`) or any `.pnn` file.

use super::failure::{Failure, report};
use crate::ir::{Basis, Model, OpKind};
use crate::pipeline::ranges::{self, Domain};
use crate::pipeline::transform::with_degree;
use crate::train::NetworkOptions;
use crate::train::bench::time_train_step;
use crate::train::models::{bench_model, relu_poly};
use std::path::Path;
use std::process::ExitCode;

/// The PyTorch reference's networks, by the names its `--model` takes.
const BUILT_IN: [(&str, &str, Domain); 3] = [
    ("har-mlp", "har_mlp", Domain::Har),
    ("mnist-cnn", "mnist_cnn", Domain::Image),
    ("resnet20", "resnet20", Domain::Image),
];

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A network of the PyTorch reference (har-mlp, mnist-cnn, resnet20) or a .pnn file.
    #[arg(long, default_value = "mnist-cnn")]
    pub model: String,
    /// Polynomial degree with the paper's (B, P) (default: 8 for the reference's
    /// networks; a .pnn file keeps its own activations unless given).
    #[arg(long)]
    pub degree: Option<u32>,
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

/// The network to time, with its boundary threshold P.
fn network(args: &BenchArgs) -> Result<(String, Model, f64, Option<u32>), Failure> {
    if let Some(&(_, name, domain)) = BUILT_IN.iter().find(|(flag, ..)| *flag == args.model) {
        let degree = args.degree.unwrap_or(8);
        let (range, penalty) =
            ranges::lookup(domain, degree).map_err(|e| Failure::usage(format!("--degree: {e}")))?;
        let act = relu_poly(degree, range, Basis::Chebyshev);
        let model = bench_model(name, &act)
            .ok_or_else(|| Failure::usage(format!("unknown bench model {name}")))?;
        return Ok((name.to_string(), model, penalty, Some(degree)));
    }
    let path = Path::new(&args.model);
    if path.extension().is_none_or(|e| e != "pnn") {
        return Err(Failure::usage(format!(
            "--model {}: neither a network of the PyTorch reference nor a .pnn file\n  help: pass har-mlp, mnist-cnn, resnet20 or the path of a .pnn model",
            args.model
        )));
    }
    let mut model = super::train::load_model(path)?;
    if let Some(degree) = args.degree {
        let domain = Domain::of(&model);
        let (range, penalty) =
            ranges::lookup(domain, degree).map_err(|e| Failure::usage(format!("--degree: {e}")))?;
        with_degree(&mut model, degree, range, penalty);
    }
    let penalty = model
        .train
        .boundary
        .as_ref()
        .and_then(|b| b.penalty)
        .or_else(|| first_range(&model))
        .unwrap_or(1.0);
    Ok((model.name.clone(), model, penalty, args.degree))
}

/// The fit range B of the model's first activation.
fn first_range(model: &Model) -> Option<f64> {
    model.ops().into_iter().find_map(|op| match &op.kind {
        OpKind::Poly(p) => Some(p.range),
        _ => None,
    })
}

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    if args.batch == 0 || args.steps == 0 {
        return Err(Failure::usage(
            "--batch and --steps must be at least 1\n  help: e.g. --batch 128 --steps 12",
        ));
    }
    let threads = crate::pipeline::limits::threads(Some(args.threads))?;
    let (name, model, penalty, degree) = network(args)?;
    crate::pipeline::limits::check_batch(
        &model,
        args.batch,
        args.batch,
        crate::pipeline::limits::available_memory(),
    )?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
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
            "degree": degree, "batch": args.batch, "threads": threads,
            "steps": args.steps,
            "median_step_ms": (r.median_step_ms * 100.0).round() / 100.0,
            "samples_per_s": r.samples_per_s.round(),
            "peak_rss_mb": r.peak_rss_mb.map(|m| m.round()),
        })
    );
    Ok(())
}

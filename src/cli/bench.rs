//! `pnnc bench`: time training steps of a benchmark network on random data,
//! as `shared/bench/torch_reference.py` does (AdamW with poly coefficients at
//! 0.1x, boundary loss exp with lambda 10, selective clipping at 1.0).

use super::train::{Failure, report, set_threads};
use crate::ir::{Basis, BoundaryKind, BoundaryLoss, Clip, ClipExcept, Optimizer, Reduce};
use crate::train::models::{bench_model, image_range, relu_poly};
use crate::train::optim::Optim;
use crate::train::run::{Trainee, update};
use crate::train::{Network, NetworkOptions};
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchModel {
    HarMlp,
    MnistCnn,
    Resnet20,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchBasis {
    Chebyshev,
    Power,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "mnist_cnn")]
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
    #[arg(long, value_enum, default_value = "chebyshev")]
    pub basis: BenchBasis,
    /// ReLU in place of the polynomials (the PyTorch `--impl relu` row).
    #[arg(long)]
    pub relu: bool,
}

pub fn run(args: &BenchArgs) -> ExitCode {
    report(bench(args))
}

/// Peak resident set size of this process in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn bench(args: &BenchArgs) -> Result<(), Failure> {
    if !(1..=31).contains(&args.degree) {
        return Err(Failure::usage(format!(
            "--degree {}: degrees run from 1 to 31",
            args.degree
        )));
    }
    let threads = set_threads(Some(args.threads));
    let name = match args.model {
        BenchModel::HarMlp => "har_mlp",
        BenchModel::MnistCnn => "mnist_cnn",
        BenchModel::Resnet20 => "resnet20",
    };
    let (range, penalty) = image_range(args.degree);
    let basis = match args.basis {
        BenchBasis::Chebyshev => Basis::Chebyshev,
        BenchBasis::Power => Basis::Power,
    };
    let model = bench_model(name, &relu_poly(args.degree, range, basis))
        .ok_or_else(|| Failure::usage(format!("unknown bench model {name}")))?;
    let mut net = Network::new(&model, 0, &NetworkOptions { baseline_relu: args.relu })
        .map_err(|e| Failure::job(e.to_string()))?;
    let boundary = (!args.relu).then_some(BoundaryLoss {
        kind: BoundaryKind::Exp,
        penalty: Some(penalty),
        weight: 10.0,
        reduce: Reduce::Sum,
    });
    let clip = Clip {
        max_norm: 1.0,
        except: ClipExcept::BatchNorm,
    };
    let optimizer = Optimizer::AdamW {
        lr: 1e-3,
        weight_decay: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let meta = net.param_meta();
    let lens: Vec<usize> = meta.iter().map(|m| m.len).collect();
    let mut optim = Optim::new(&optimizer, &lens);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let len = model.input.numel() as usize;
    // Standard normal inputs like torch.randn (Box-Muller).
    let x: Vec<f32> = (0..args.batch * len)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.r#gen::<f64>().max(1e-12), rng.r#gen());
            ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
        })
        .collect();
    let y: Vec<u32> = (0..args.batch)
        .map(|_| rng.gen_range(0..model.classes as u32))
        .collect();
    let mut times = Vec::new();
    for step in 0..args.steps + 2 {
        let t0 = Instant::now();
        Trainee::step(&mut net, &x, &y, args.batch, boundary.as_ref(), step as u64)
            .map_err(Failure::job)?;
        update(&mut net, &meta, &mut optim, Some(&clip), [1e-3, 1e-4]).map_err(|i| {
            Failure::job(format!("non-finite gradient in `{}`", meta[i].name))
        })?;
        if step >= 2 {
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({
            "impl": if args.relu { "pnnc-relu" } else { "pnnc" },
            "model": name, "degree": args.degree, "batch": args.batch, "threads": threads,
            "basis": format!("{:?}", basis).to_lowercase(), "steps": times.len(),
            "median_step_ms": (median * 100.0).round() / 100.0,
            "samples_per_s": (args.batch as f64 / median * 1000.0).round(),
            "peak_rss_mb": peak_rss_mib().map(|m| m.round()),
        })
    );
    Ok(())
}

//! Training-step benchmark of the networks in shared/bench/torch_reference.py.
//!
//!   cargo run --release --example bench_train_step -- MODEL DEGREE BATCH [THREADS] [STEPS]
//!
//! MODEL: har_mlp | mnist_cnn | resnet20; `relu` as DEGREE runs the ReLU baseline.
//! Prints one JSON line like the PyTorch reference.

use pnnc::ir::Basis;
use pnnc::train::NetworkOptions;
use pnnc::train::bench::time_train_step;
use pnnc::train::models::{bench_model, image_range, relu_poly};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: bench_train_step MODEL DEGREE|relu BATCH [THREADS] [STEPS]");
        return ExitCode::from(2);
    }
    let baseline = args[1] == "relu";
    let degree: u32 = if baseline {
        2
    } else {
        args[1].parse().unwrap_or(0)
    };
    let batch: usize = args[2].parse().unwrap_or(0);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let (range, penalty) = if args[0] == "har_mlp" {
        match degree {
            2 => (13.0, 13.0),
            4 => (20.0, 20.0),
            _ => (35.0, 35.0),
        }
    } else {
        image_range(degree)
    };
    let act = relu_poly(degree, range, Basis::Chebyshev);
    let Some(model) = bench_model(&args[0], &act) else {
        eprintln!(
            "error: unknown model `{}`\nhelp: har_mlp, mnist_cnn or resnet20",
            args[0]
        );
        return ExitCode::from(2);
    };
    let pool = match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: thread pool: {e}");
            return ExitCode::from(1);
        }
    };
    let opts = NetworkOptions {
        baseline_relu: baseline,
    };
    let result = pool.install(|| time_train_step(&model, batch, penalty, 2, steps, &opts));
    match result {
        Ok(r) => {
            println!(
                "{{\"engine\": \"pnnc\", \"model\": \"{}\", \"impl\": \"{}\", \"degree\": {}, \"batch\": {}, \"threads\": {}, \"median_step_ms\": {:.2}, \"samples_per_s\": {:.1}, \"peak_rss_mb\": {}, \"final_loss\": {:.4}}}",
                args[0],
                if baseline { "relu" } else { "chebyshev" },
                degree,
                batch,
                threads,
                r.median_step_ms,
                r.samples_per_s,
                r.peak_rss_mb
                    .map(|m| format!("{m:.1}"))
                    .unwrap_or_else(|| "null".into()),
                r.final_loss
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

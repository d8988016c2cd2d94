//! `pnnc simulate CIRCUIT --data SAMPLES [-n N] [--noise] [--model M --weights W]`

use super::common::{argmax, fail, load_model, load_samples, load_weights};
use crate::he::io;
use crate::he::reference::Reference;
use crate::he::simulate::{NoiseModel, logits};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    pub circuit: PathBuf,
    /// Samples as JSON: `[{"x": [...], "label": 3}, ...]`.
    #[arg(long)]
    pub data: PathBuf,
    /// Use only the first N samples.
    #[arg(short = 'n', long)]
    pub limit: Option<usize>,
    /// Also predict the encrypted error with the CKKS noise model.
    #[arg(long)]
    pub noise: bool,
    /// The unfolded model and weights, to report agreement with them.
    #[arg(long, requires = "weights")]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub weights: Option<PathBuf>,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    let lc = match io::load(&args.circuit) {
        Ok(c) => c,
        Err(e) => return fail(e, ""),
    };
    let numel = lc.circuit.model.input_shape.iter().product();
    let mut samples = match load_samples(&args.data, numel) {
        Ok(s) => s,
        Err(e) => return fail(e, "pass samples of the model's input shape"),
    };
    samples.truncate(args.limit.unwrap_or(usize::MAX));
    let reference = match (&args.model, &args.weights) {
        (Some(m), Some(w)) => {
            match load_model(m).and_then(|m| load_weights(&m, w).map(|ck| (m, ck))) {
                Ok(pair) => Some(pair),
                Err(e) => {
                    return fail(
                        e,
                        "pass the model and weights the circuit was compiled from",
                    );
                }
            }
        }
        _ => None,
    };
    let reference = match &reference {
        Some((m, ck)) => match Reference::new(m, ck) {
            Ok(r) => Some(r),
            Err(e) => return fail(e, ""),
        },
        None => None,
    };
    let mut noise = args.noise.then(|| NoiseModel::for_circuit(&lc, 1));
    let (mut correct, mut labelled, mut agree, mut max_diff, mut max_noise) =
        (0, 0, 0, 0.0f64, 0.0f64);
    for s in &samples {
        let y = logits(&lc, &s.x, None);
        if let Some(label) = s.label {
            labelled += 1;
            correct += usize::from(argmax(&y) == label);
        }
        if let Some(r) = &reference {
            match r.logits(&s.x) {
                Ok(want) => {
                    agree += usize::from(argmax(&want) == argmax(&y));
                    max_diff = want
                        .iter()
                        .zip(&y)
                        .fold(max_diff, |m, (a, b)| m.max((a - b).abs()));
                }
                Err(e) => return fail(e, ""),
            }
        }
        if let Some(n) = noise.as_mut() {
            let noisy = logits(&lc, &s.x, Some(n));
            max_noise = noisy
                .iter()
                .zip(&y)
                .fold(max_noise, |m, (a, b)| m.max((a - b).abs()));
        }
    }
    println!("samples {}", samples.len());
    if labelled > 0 {
        println!(
            "accuracy {:.4} ({correct}/{labelled})",
            correct as f64 / labelled as f64
        );
    }
    if reference.is_some() {
        println!(
            "agreement with the unfolded network: {agree}/{} identical predictions, max logit difference {max_diff:.3e}",
            samples.len()
        );
    }
    if noise.is_some() {
        println!("predicted CKKS error (noise model): max logit deviation {max_noise:.3e}");
    }
    if reference.is_some() && agree != samples.len() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

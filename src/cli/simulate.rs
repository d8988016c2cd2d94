//! `pnnc simulate CIRCUIT (--data [DIR] | --inputs FILE) [-n N] [--noise] [--model M --weights W]`

use super::common::{argmax, fail, load_model, load_weights, sample_source};
use crate::he::reference::Reference;
use crate::he::samples::{self, Pick, SampleSet};
use crate::he::simulate::{NoiseModel, checked_logits};
use crate::he::{LoadedCircuit, io};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    pub circuit: PathBuf,
    /// The test split of the circuit's data set (the model's `train { data: ... }`),
    /// raw as the circuit expects; DIR is searched first.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    pub data: Option<Option<PathBuf>>,
    /// Raw samples as JSON: `[{"x": [...], "label": 3}, ...]` (docs/cli.md, "Samples").
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Use N samples (default: all).
    #[arg(short = 'n', long = "samples", alias = "limit")]
    pub samples: Option<usize>,
    /// Which test samples `--data` takes: N evenly spaced, or the first N.
    #[arg(long, value_enum, default_value_t = Pick::Spread)]
    pub pick: Pick,
    /// Also predict the encrypted error with the CKKS noise model.
    #[arg(long)]
    pub noise: bool,
    /// The unfolded model and weights, to report agreement with them.
    #[arg(long, requires = "weights")]
    pub model: Option<PathBuf>,
    #[arg(long, requires = "model")]
    pub weights: Option<PathBuf>,
}

/// What the run measured.
#[derive(Default)]
struct Tally {
    correct: usize,
    labelled: usize,
    agree: usize,
    max_diff: f64,
    max_noise: f64,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    let lc = match io::load(&args.circuit) {
        Ok(c) => c,
        Err(e) => return fail(e, ""),
    };
    let samples = match load_samples(args, &lc) {
        Ok(s) => s,
        Err(e) => return fail(e, ""),
    };
    let pair = match (&args.model, &args.weights) {
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
    let reference = match &pair {
        Some((m, ck)) => match Reference::new(m, ck) {
            Ok(r) => Some(r),
            Err(e) => return fail(e, ""),
        },
        None => None,
    };
    let mut noise = args.noise.then(|| NoiseModel::for_circuit(&lc, 1));
    let tally = match evaluate(&lc, &samples, reference.as_ref(), noise.as_mut()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}: {e}", args.circuit.display());
            return ExitCode::from(1);
        }
    };
    print_tally(&tally, samples.len(), reference.is_some(), noise.is_some());
    if reference.is_some() && tally.agree != samples.len() {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn load_samples(args: &SimulateArgs, lc: &LoadedCircuit) -> Result<SampleSet, String> {
    let source = sample_source(&args.data, &args.inputs)?;
    let model = &lc.circuit.model;
    samples::load(
        &source,
        &samples::Request {
            input_len: model.input_shape.iter().product(),
            limit: args.samples,
            pick: args.pick,
            spec: model.data.as_ref(),
            model_dir: args.circuit.parent().map(PathBuf::from),
            owner: &args.circuit,
        },
    )
}

/// Every sample through the circuit (and the reference and noise model);
/// a non-finite value is an error naming the sample and the op.
fn evaluate(
    lc: &LoadedCircuit,
    samples: &SampleSet,
    reference: Option<&Reference>,
    mut noise: Option<&mut NoiseModel>,
) -> Result<Tally, String> {
    let mut t = Tally::default();
    for (i, (x, label)) in samples.x.iter().zip(&samples.labels).enumerate() {
        let at = |e: &dyn std::fmt::Display| format!("sample {i}: {e}");
        let y = checked_logits(lc, x, None).map_err(|e| at(&e))?;
        if let Some(label) = label {
            t.labelled += 1;
            t.correct += usize::from(argmax(&y) == *label);
        }
        if let Some(r) = reference {
            let want = r
                .logits(x)
                .map_err(|e| at(&format!("the unfolded network: {e}")))?;
            t.agree += usize::from(argmax(&want) == argmax(&y));
            t.max_diff = want
                .iter()
                .zip(&y)
                .fold(t.max_diff, |m, (a, b)| m.max((a - b).abs()));
        }
        if let Some(n) = noise.as_deref_mut() {
            let noisy = checked_logits(lc, x, Some(n)).map_err(|e| at(&e))?;
            t.max_noise = noisy
                .iter()
                .zip(&y)
                .fold(t.max_noise, |m, (a, b)| m.max((a - b).abs()));
        }
    }
    Ok(t)
}

fn print_tally(t: &Tally, samples: usize, reference: bool, noise: bool) {
    println!("samples {samples}");
    if t.labelled > 0 {
        println!(
            "accuracy {:.4} ({}/{})",
            t.correct as f64 / t.labelled as f64,
            t.correct,
            t.labelled
        );
    }
    if reference {
        println!(
            "agreement with the unfolded network: {}/{samples} identical predictions, max logit difference {:.3e}",
            t.agree, t.max_diff
        );
    }
    if noise {
        println!(
            "predicted CKKS error (noise model): max logit deviation {:.3e}",
            t.max_noise
        );
    }
}

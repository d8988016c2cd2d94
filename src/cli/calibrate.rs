//! `pnnc calibrate MODEL --weights W --data SAMPLES`: per activation, the
//! largest |x| seen and the fraction of values outside [-B, B].

use super::common::{fail, load_model, load_samples, load_weights};
use crate::he::calibrate::calibrate;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub weights: PathBuf,
    /// Samples as JSON: `[{"x": [...]}, ...]` (the validation split).
    #[arg(long)]
    pub data: PathBuf,
}

pub fn run(args: &CalibrateArgs) -> ExitCode {
    let (model, ck) = match load_model(&args.model)
        .and_then(|m| load_weights(&m, &args.weights).map(|c| (m, c)))
    {
        Ok(p) => p,
        Err(e) => return fail(e, "pass the model and the weights trained for it"),
    };
    let samples = match load_samples(&args.data, model.input.numel() as usize) {
        Ok(s) => s,
        Err(e) => return fail(e, ""),
    };
    let sites = match calibrate(&model, &ck, samples.iter().map(|s| s.x.as_slice())) {
        Ok(sites) => sites,
        Err(e) => return fail(e, ""),
    };
    let mut escaped = false;
    println!(
        "{:<32} {:>10} {:>10} {:>12} {:>12}",
        "activation", "B", "max |x|", "out values", "out samples"
    );
    for (name, site) in &sites {
        escaped |= site.outside > 0;
        println!(
            "{name:<32} {:>10.3} {:>10.3} {:>12.6} {:>12.6}",
            site.range,
            site.max_abs,
            site.outside_fraction(),
            site.samples_outside as f64 / samples.len().max(1) as f64
        );
    }
    if escaped {
        eprintln!(
            "warning: {}: some activation inputs leave [-B, B]; encrypted results may be wrong for them",
            args.model.display()
        );
        eprintln!("help: retrain with a boundary loss, or raise the activation's range");
    }
    ExitCode::SUCCESS
}

//! `pnnc calibrate MODEL --weights W (--data [DIR] | --inputs FILE) [-o FILE]`:
//! per activation, the largest |x| seen and the fraction of inputs outside
//! [-B, B] (escapes), by default over the whole test split.

use super::common::{fail, load_model, load_weights, sample_source};
use crate::he::calibrate::{CALIBRATION_FORMAT, Calibration, calibrate, sha256_file};
use crate::he::samples::{self, Pick, SampleSet, SampleSource};
use crate::ir::weights::write_atomic;
use crate::ir::{Checkpoint, Model};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct CalibrateArgs {
    pub model: PathBuf,
    #[arg(long)]
    pub weights: PathBuf,
    /// The test split of the model's data set (`train { data: ... }`); DIR is
    /// searched first.
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    pub data: Option<Option<PathBuf>>,
    /// Raw samples as JSON: `[{"x": [...], "label": 3}, ...]` (docs/cli.md, "Samples").
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Use N samples (default: all).
    #[arg(short = 'n', long = "samples")]
    pub samples: Option<usize>,
    /// Which test samples `--data` takes when -n is given.
    #[arg(long, value_enum, default_value_t = Pick::Spread)]
    pub pick: Pick,
    /// Write the escape rates here (JSON) for `pnnc compile --calibration`.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace FILE when it exists.
    #[arg(long)]
    pub overwrite: bool,
}

pub fn run(args: &CalibrateArgs) -> ExitCode {
    let (model, ck) = match load_model(&args.model)
        .and_then(|m| load_weights(&m, &args.weights).map(|c| (m, c)))
    {
        Ok(p) => p,
        Err(e) => return fail(e, "pass the model and the weights trained for it"),
    };
    if let Some(out) = &args.output
        && out.exists()
        && !args.overwrite
    {
        return fail(
            format!("{}: exists", out.display()),
            "pass --overwrite to replace it, or another -o FILE",
        );
    }
    let (samples, data) = match load_samples(args, &model) {
        Ok(s) => s,
        Err(e) => return fail(e, ""),
    };
    let calibration = match measure(args, &model, &ck, &samples, data) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}: {e}", args.model.display());
            return ExitCode::from(1);
        }
    };
    print_table(&calibration);
    if let Some(out) = &args.output {
        let text = serde_json::to_string_pretty(&calibration).unwrap_or_default() + "\n";
        if let Err(e) = write_atomic(out, text.as_bytes()) {
            return fail(
                format!("cannot write the calibration: {e}"),
                "check that the folder is writable",
            );
        }
        println!("wrote {}", out.display());
    }
    if calibration.sites.values().any(|s| s.outside > 0) {
        eprintln!(
            "warning: {}: some activation inputs leave [-B, B]; encrypted results may be wrong for them",
            args.model.display()
        );
        eprintln!("help: retrain with a boundary loss, or raise the activation's range");
    }
    ExitCode::SUCCESS
}

/// The samples, and a description of where they came from.
fn load_samples(args: &CalibrateArgs, model: &Model) -> Result<(SampleSet, String), String> {
    let source = sample_source(&args.data, &args.inputs)?;
    let set = samples::load(
        &source,
        &samples::Request {
            input_len: model.input.numel() as usize,
            limit: args.samples,
            pick: args.pick,
            spec: model.train.data.as_ref(),
            model_dir: args.model.parent().map(PathBuf::from),
            owner: &args.model,
        },
    )?;
    let data = match &source {
        SampleSource::Json(file) => format!("{} ({} samples)", file.display(), set.len()),
        SampleSource::Dataset(_) => format!(
            "test split of {} ({} samples)",
            model
                .train
                .data
                .as_ref()
                .map_or("the data set".to_string(), |d| d.name().to_string()),
            set.len()
        ),
    };
    Ok((set, data))
}

fn measure(
    args: &CalibrateArgs,
    model: &Model,
    ck: &Checkpoint,
    samples: &SampleSet,
    data: String,
) -> Result<Calibration, String> {
    let sites =
        calibrate(model, ck, samples.x.iter().map(Vec::as_slice)).map_err(|e| e.to_string())?;
    Ok(Calibration {
        format: CALIBRATION_FORMAT.into(),
        version: 1,
        model: model.name.clone(),
        model_hash: model.source_hash.clone(),
        weights_sha256: sha256_file(&args.weights)?,
        data,
        samples: samples.len() as u64,
        sites,
    })
}

fn print_table(c: &Calibration) {
    println!("{}", c.data);
    println!(
        "{:<32} {:>10} {:>10} {:>12} {:>12}",
        "activation", "B", "max |x|", "out values", "out samples"
    );
    for (name, site) in &c.sites {
        println!(
            "{name:<32} {:>10.3} {:>10.3} {:>12.6} {:>12.6}",
            site.range,
            site.max_abs,
            site.outside_fraction(),
            c.samples_fraction(site)
        );
    }
}

//! `pnnc calibrate MODEL --weights W --data SAMPLES`: per activation, the
//! largest |x| seen and the fraction of values outside [-B, B].

use super::common::{fail, load_model, load_samples, load_weights};
use crate::he::reference::Reference;
use crate::ir::OpKind;
use std::collections::BTreeMap;
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
    let reference = match Reference::new(&model, &ck) {
        Ok(r) => r,
        Err(e) => return fail(e, ""),
    };
    let ranges: BTreeMap<String, f64> = model
        .ops()
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::Poly(a) => Some((o.name.clone(), a.range)),
            _ => None,
        })
        .collect();
    // name -> (max |x|, values outside, values, samples with any outside)
    let mut stats: BTreeMap<String, (f64, u64, u64, u64)> = BTreeMap::new();
    for s in &samples {
        let result = reference.run(&s.x, &mut |name, v| {
            let b = ranges.get(name).copied().unwrap_or(f64::INFINITY);
            let e = stats.entry(name.to_string()).or_default();
            let outside = v.iter().filter(|x| x.abs() > b).count() as u64;
            e.0 = v.iter().fold(e.0, |m, x| m.max(x.abs()));
            e.1 += outside;
            e.2 += v.len() as u64;
            e.3 += u64::from(outside > 0);
        });
        if let Err(e) = result {
            return fail(e, "");
        }
    }
    let mut escaped = false;
    println!(
        "{:<32} {:>10} {:>10} {:>12} {:>12}",
        "activation", "B", "max |x|", "out values", "out samples"
    );
    for (name, b) in &ranges {
        let (max, out, n, out_s) = stats.get(name).copied().unwrap_or_default();
        escaped |= out > 0;
        println!(
            "{name:<32} {b:>10.3} {max:>10.3} {:>12.6} {:>12.6}",
            out as f64 / n.max(1) as f64,
            out_s as f64 / samples.len().max(1) as f64
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

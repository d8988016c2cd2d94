//! `pnnc eval model.pnn --weights CKPT`: test accuracy and confusion matrix.

use super::failure::{Failure, report, set_threads};
use super::train::load_model;
use crate::pipeline::evaluate::{load_checkpoint, non_finite_site, raw_samples};
use crate::train::run::{Split, argmax, predict_split};
use crate::train::{Network, NetworkOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The model file (.pnn) the weights were trained for.
    pub model: PathBuf,
    /// A checkpoint written by `pnnc train` (best.safetensors or last.safetensors).
    #[arg(long)]
    pub weights: PathBuf,
    /// Folder holding the data set.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs) -> ExitCode {
    report(eval(args))
}

/// `matrix[true][predicted]` counts.
pub fn confusion(logits: &[f32], y: &[u32], classes: usize) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; classes]; classes];
    for (row, &label) in logits.chunks_exact(classes).zip(y) {
        if let Some(r) = m.get_mut(label as usize) {
            r[argmax(row)] += 1;
        }
    }
    m
}

fn eval(args: &EvalArgs) -> Result<(), Failure> {
    set_threads(args.threads)?;
    let model = load_model(&args.model)?;
    let ck = load_checkpoint(&model, &args.weights)?;
    let relu = ck.metadata.get("baseline").map(String::as_str) == Some("relu");
    let mut net = Network::new(
        &model,
        0,
        &NetworkOptions {
            baseline_relu: relu,
        },
    )
    .map_err(|e| Failure::job(format!("{}: {e}", args.model.display())))?;
    net.load_tensors(&ck.tensors)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.weights.display())))?;
    let (splits, _) = crate::pipeline::train::load_splits(
        &model,
        &args.model,
        args.data.as_deref(),
        Some(ck.normalization.clone()),
        model.train.seed,
        None,
    )?;
    let test = &splits.test;
    let split = Split {
        x: &test.x,
        y: &test.y,
        sample_len: test.sample_len(),
    };
    if test.is_empty() {
        return Err(Failure::usage(format!(
            "{}: the data set has no test split to evaluate on",
            args.model.display()
        )));
    }
    let logits = predict_split(&mut net, &split).map_err(Failure::job)?;
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        let sample = i / model.classes.max(1);
        let raw = raw_samples(&test.select(&[sample]), &splits.normalization, 1);
        return Err(Failure::job(format!(
            "{}: test sample {sample}: the logits are {}; the first non-finite value arises in {}",
            args.weights.display(),
            logits[i],
            non_finite_site(&model, &ck, &raw[0].0)
        )));
    }
    let matrix = confusion(&logits, &test.y, model.classes);
    let correct: usize = (0..model.classes).map(|c| matrix[c][c]).sum();
    let acc = correct as f64 / test.len().max(1) as f64;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": model.name, "weights": args.weights.display().to_string(),
                "samples": test.len(), "accuracy": acc, "confusion": matrix,
                "he_compatible": !relu,
            })
        );
        return Ok(());
    }
    let names: Vec<String> = (0..model.classes)
        .map(|c| {
            test.class_names
                .get(c)
                .or(model.class_names.get(c))
                .cloned()
                .unwrap_or_else(|| c.to_string())
        })
        .collect();
    println!(
        "{}: test accuracy {:.2}% ({correct}/{}){}",
        model.name,
        100.0 * acc,
        test.len(),
        if relu {
            " [ReLU baseline, not HE-compatible]"
        } else {
            ""
        }
    );
    println!("confusion matrix (rows: true class, columns: predicted):");
    let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(6);
    print!("{:>width$}", "");
    for c in 0..model.classes {
        print!(" {c:>6}");
    }
    println!();
    for (c, row) in matrix.iter().enumerate() {
        print!("{:>width$}", names[c]);
        for v in row {
            print!(" {v:>6}");
        }
        println!();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_true_against_predicted() {
        let logits = [1.0, 0.0, 0.0, 1.0, 0.9, 0.1];
        assert_eq!(
            confusion(&logits, &[0, 1, 1], 2),
            vec![vec![1, 0], vec![1, 1]]
        );
    }
}

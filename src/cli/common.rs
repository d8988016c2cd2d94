//! Shared helpers of the HE subcommands: loading models, weights and samples.

use crate::he::samples::SampleSource;
use crate::ir::{Checkpoint, Model};
use std::path::{Path, PathBuf};

/// Print `error: <file>: ...` with a help line; returns the usage/I-O exit code.
pub fn fail(message: impl std::fmt::Display, help: &str) -> std::process::ExitCode {
    eprintln!("error: {message}");
    if !help.is_empty() {
        eprintln!("help: {help}");
    }
    std::process::ExitCode::from(2)
}

/// A checked model: a `.pnn` source (checked; errors rendered) or a
/// serialised `ir::Model` in `.json`.
pub fn load_model(path: &Path) -> Result<Model, String> {
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a checked model: {e}", path.display()));
    }
    crate::check::load_model(path).map_err(|e| e.to_string())
}

/// Trained weights for `model`, refused when they cannot run under HE
/// (a `--baseline relu` checkpoint: ReLU has no CKKS evaluation).
pub fn load_weights(model: &Model, path: &Path) -> Result<Checkpoint, String> {
    let ck = crate::pipeline::evaluate::load_checkpoint(model, path).map_err(|f| f.message)?;
    if ck.metadata.get("he_compatible").map(String::as_str) == Some("false") {
        let baseline = ck
            .metadata
            .get("baseline")
            .map_or("a non-HE".to_string(), |b| format!("a `{b}`"));
        return Err(format!(
            "{}: these weights are {baseline} baseline (checkpoint metadata he_compatible=false): its activations cannot run under CKKS\n  help: compile the checkpoint of a run trained without `--baseline`",
            path.display()
        ));
    }
    Ok(ck)
}

/// The `--data [DIR]` / `--inputs FILE` pair of `simulate`, `calibrate` and `he-run`.
pub fn sample_source(
    data: &Option<Option<PathBuf>>,
    inputs: &Option<PathBuf>,
) -> Result<SampleSource, String> {
    match (inputs, data) {
        (Some(file), None) => Ok(SampleSource::Json(file.clone())),
        (None, Some(dir)) => Ok(SampleSource::Dataset(dir.clone())),
        (Some(_), Some(_)) => Err("pass either --data [DIR] or --inputs FILE, not both".into()),
        (None, None) => Err(
            "no samples: pass --data [DIR] (the test split of the model's data set) or --inputs FILE (JSON samples)"
                .into(),
        ),
    }
}

pub use crate::pipeline::evaluate::argmax;

//! Shared helpers of the HE subcommands: loading models, weights and samples.

use crate::ir::{Checkpoint, Model};
use std::path::Path;

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

pub fn load_weights(model: &Model, path: &Path) -> Result<Checkpoint, String> {
    crate::pipeline::evaluate::load_checkpoint(model, path).map_err(|f| f.message)
}

/// A labelled sample set in JSON: `[{"x": [...], "label": 3}, ...]` (label optional).
#[derive(serde::Deserialize)]
pub struct Sample {
    pub x: Vec<f64>,
    #[serde(default)]
    pub label: Option<usize>,
}

pub fn load_samples(path: &Path, expected_len: usize) -> Result<Vec<Sample>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let samples: Vec<Sample> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a sample list: {e}", path.display()))?;
    for (i, s) in samples.iter().enumerate() {
        if s.x.len() != expected_len {
            return Err(format!(
                "{}: sample {i} has {} values, the model input needs {expected_len}",
                path.display(),
                s.x.len()
            ));
        }
    }
    Ok(samples)
}

pub use crate::pipeline::evaluate::argmax;

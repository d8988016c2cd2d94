//! `pnnc he-run model.circuit.json --inputs FILE -n N`: run a compiled circuit
//! on encrypted inputs with OpenFHE and check it against the plaintext circuit.
//!
//! The encrypted evaluation lives in `runners/openfhe/` (Python: OpenFHE's
//! only maintained binding is its CPython 3.10 wheel). This command finds or
//! creates the runner's virtual environment, writes the samples, runs the
//! runner and passes its report and exit status through (docs/encrypted.md).

use super::common::sample_source;
use crate::he::samples;
use crate::he::simulate::{self, run_checked};
use crate::he::{CircuitError, io};
use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub use crate::he::samples::Pick;

#[derive(Debug, Args)]
pub struct HeRunArgs {
    /// The circuit written by `pnnc compile`.
    pub circuit: PathBuf,
    /// Raw samples as JSON: `[{"x": [...], "label": 3}, ...]`, also an array
    /// of vectors or {"samples": [...], "labels": [...]} (docs/cli.md, "Samples").
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Run on the test split of the circuit's own data set (the model's
    /// `train { data: ... }`), raw as the circuit expects; an optional folder
    /// is searched first (like `--data` of `pnnc train`).
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    pub data: Option<Option<PathBuf>>,
    /// Number of samples to run (the first N of the inputs or test split).
    #[arg(short = 'n', long = "samples", default_value_t = 4)]
    pub samples: usize,
    /// Python interpreter that has `openfhe` installed (default: the runner's
    /// own venv, created by runners/openfhe/setup.sh on first use).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Where to write the JSON report (default: next to the circuit,
    /// `<name>.he-report.json`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Largest accepted |encrypted - plaintext| logit difference.
    #[arg(long, default_value_t = 1e-3)]
    pub tolerance: f64,
    /// Which test samples `--data` takes: `spread` = N evenly spaced over
    /// the test split (test splits are often ordered by class), `first` = the
    /// first N.
    #[arg(long, value_enum, default_value_t = Pick::Spread)]
    pub pick: Pick,
    /// Samples packed into one ciphertext (default: all the circuit's
    /// `samples_per_ciphertext`; 1 measures one sample at a time).
    #[arg(long, value_name = "K")]
    pub per_ciphertext: Option<usize>,
    /// No progress lines (key generation, each op) on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum HeRunError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid {
        path: PathBuf,
        message: String,
        help: String,
    },
    /// Samples that cannot be read (the message names the file or data set).
    #[error("{message}")]
    Samples { message: String, help: String },
    #[error("the encrypted runner is not set up: {message}")]
    Setup { message: String, help: String },
}

impl HeRunError {
    fn help(&self) -> Option<&str> {
        match self {
            HeRunError::Io { .. } => None,
            HeRunError::Invalid { help, .. }
            | HeRunError::Setup { help, .. }
            | HeRunError::Samples { help, .. } => Some(help.as_str()).filter(|h| !h.is_empty()),
        }
    }
}

pub fn run(args: &HeRunArgs) -> ExitCode {
    match execute(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(help) = e.help() {
                eprintln!("help: {help}");
            }
            ExitCode::from(2)
        }
    }
}

fn execute(args: &HeRunArgs) -> Result<ExitCode, HeRunError> {
    let runner_inputs = match inputs_document(args) {
        Ok(doc) => doc,
        Err(Prepared::Usage(e)) => return Err(e),
        Err(Prepared::NonFinite(message)) => {
            eprintln!("error: {}: {message}", args.circuit.display());
            return Ok(ExitCode::from(1));
        }
    };
    let runner_dir = runner_dir()?;
    let python = match &args.python {
        Some(p) => p.clone(),
        None => ensure_venv(&runner_dir)?,
    };
    let report = args
        .report
        .clone()
        .unwrap_or_else(|| default_report_path(&args.circuit));
    let inputs_file = TempFile::new("pnnc-he-inputs", "json");
    write_file(inputs_file.path(), runner_inputs.to_string().as_bytes())?;
    let status = Command::new(&python)
        .arg("-m")
        .arg("pnnc_he")
        .arg(&args.circuit)
        .arg("--inputs")
        .arg(inputs_file.path())
        .arg("--report")
        .arg(&report)
        .arg("--tolerance")
        .arg(args.tolerance.to_string())
        .args(
            args.per_ciphertext
                .map(|k| vec!["--per-ciphertext".to_string(), k.to_string()])
                .unwrap_or_default(),
        )
        .args(args.quiet.then_some("--quiet"))
        .env("PYTHONPATH", &runner_dir)
        .status()
        .map_err(|e| HeRunError::Setup {
            message: format!("cannot start {}: {e}", python.display()),
            help: "pass a Python 3.10 interpreter with `openfhe` installed via --python, \
                   or run runners/openfhe/setup.sh"
                .into(),
        })?;
    match status.code() {
        Some(0) => {
            println!("report: {}", report.display());
            Ok(ExitCode::SUCCESS)
        }
        Some(1) => {
            if report.exists() {
                println!("report: {}", report.display());
            }
            Ok(ExitCode::from(1))
        }
        Some(2) => Ok(ExitCode::from(2)),
        other => {
            eprintln!(
                "error: the encrypted runner stopped abnormally ({})",
                other.map_or("killed by a signal".to_string(), |c| format!("exit {c}"))
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// Why the runner's inputs could not be prepared.
enum Prepared {
    /// Bad circuit or samples: exit 2.
    Usage(HeRunError),
    /// The plaintext circuit overflows on a sample: exit 1.
    NonFinite(String),
}

/// The runner's input document: the samples (raw), their labels and
/// test-split indices, and per sample the activations whose plaintext
/// inputs left [-B, B] (the encrypted result may then be wrong too).
fn inputs_document(args: &HeRunArgs) -> Result<Value, Prepared> {
    let invalid = |path: &Path, message: String, help: &str| {
        Prepared::Usage(HeRunError::Invalid {
            path: path.to_path_buf(),
            message,
            help: help.into(),
        })
    };
    let lc = io::load(&args.circuit).map_err(|e| match e {
        CircuitError::Io { path, source } => Prepared::Usage(HeRunError::Io { path, source }),
        e => invalid(
            &args.circuit,
            strip_path(&e.to_string(), &args.circuit),
            "produce the circuit with `pnnc compile`",
        ),
    })?;
    let source = sample_source(&args.data, &args.inputs)
        .map_err(|m| invalid(&args.circuit, m, "e.g. --data -n 4"))?;
    let model = &lc.circuit.model;
    let set = samples::load(
        &source,
        &samples::Request {
            input_len: model.input_shape.iter().product(),
            limit: Some(args.samples),
            pick: args.pick,
            spec: model.data.as_ref(),
            model_dir: args.circuit.parent().map(PathBuf::from),
            owner: &args.circuit,
        },
    )
    .map_err(|m| {
        let (message, help) = m.split_once("\n  help: ").unwrap_or((&m, ""));
        Prepared::Usage(HeRunError::Samples {
            message: message.to_string(),
            help: help.to_string(),
        })
    })?;
    let mut escapes = Vec::with_capacity(set.len());
    for (i, x) in set.x.iter().enumerate() {
        let values = run_checked(&lc, x, None)
            .map_err(|e| Prepared::NonFinite(format!("sample {i}: the plaintext circuit: {e}")))?;
        escapes.push(simulate::escapes(&lc, &values));
    }
    let mut doc = json!({ "samples": set.x, "labels": set.labels, "escapes": escapes });
    if let Some(indices) = set.test_indices {
        doc["test_indices"] = json!(indices);
    }
    Ok(doc)
}

/// A loader message without its leading `path: ` (the error adds it again).
fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}: ", path.display());
    message.strip_prefix(&prefix).unwrap_or(message).to_string()
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), HeRunError> {
    std::fs::write(path, bytes).map_err(|source| HeRunError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `runners/openfhe` of this source tree, or `$PNNC_RUNNER_DIR`.
fn runner_dir() -> Result<PathBuf, HeRunError> {
    let dir = std::env::var_os("PNNC_RUNNER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("runners/openfhe"));
    if dir.join("pnnc_he").is_dir() {
        Ok(dir)
    } else {
        Err(HeRunError::Setup {
            message: format!("runner folder {} not found", dir.display()),
            help: "set PNNC_RUNNER_DIR to the `runners/openfhe` folder of a pnnc checkout".into(),
        })
    }
}

/// The venv's python, creating the venv with setup.sh on first use.
fn ensure_venv(runner_dir: &Path) -> Result<PathBuf, HeRunError> {
    let venv = std::env::var_os("PNNC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| runner_dir.join(".venv"));
    let python = venv.join("bin/python");
    let ready = python.exists()
        && Command::new(&python)
            .args(["-c", "import openfhe, numpy"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(python);
    }
    eprintln!(
        "setting up the encrypted-execution runner in {} (once; needs CPython 3.10 and network)",
        venv.display()
    );
    let setup = runner_dir.join("setup.sh");
    let output = Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .output()
        .map_err(|e| HeRunError::Setup {
            message: format!("cannot run {}: {e}", setup.display()),
            help: "run runners/openfhe/setup.sh by hand".into(),
        })?;
    if !output.status.success() {
        return Err(HeRunError::Setup {
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            help: "install CPython 3.10 (or set PNNC_PYTHON310), then run \
                   runners/openfhe/setup.sh; or pass --python"
                .into(),
        });
    }
    Ok(python)
}

/// `dir/model.circuit.json` -> `dir/model.he-report.json`.
fn default_report_path(circuit: &Path) -> PathBuf {
    let name = circuit
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".circuit.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    circuit.with_file_name(format!("{stem}.he-report.json"))
}

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(prefix: &str, ext: &str) -> TempFile {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{prefix}-{}-{nanos}.{ext}", std::process::id());
        TempFile(std::env::temp_dir().join(name))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_path_replaces_the_circuit_suffix() {
        assert_eq!(
            default_report_path(Path::new("out/har.circuit.json")),
            PathBuf::from("out/har.he-report.json")
        );
        assert_eq!(
            default_report_path(Path::new("x.json")),
            PathBuf::from("x.he-report.json")
        );
    }
}

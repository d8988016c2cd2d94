//! `pnnc he-run model.circuit.json --inputs FILE -n N`: run a compiled circuit
//! on encrypted inputs with OpenFHE and check it against the plaintext circuit.
//!
//! The encrypted evaluation lives in `runners/openfhe/` (Python: OpenFHE's
//! only maintained binding is its CPython 3.10 wheel). This command finds or
//! creates the runner's virtual environment, writes the samples, runs the
//! runner and passes its report and exit status through (docs/encrypted.md).

use clap::Args;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pick {
    Spread,
    First,
}

#[derive(Debug, Args)]
pub struct HeRunArgs {
    /// The circuit written by `pnnc compile`.
    pub circuit: PathBuf,
    /// Raw input samples: a JSON array of vectors, or {"samples": [...],
    /// "labels": [...]} (values as the model reads them, before normalisation).
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
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
    #[error("the encrypted runner is not set up: {message}")]
    Setup { message: String, help: String },
}

impl HeRunError {
    fn help(&self) -> Option<&str> {
        match self {
            HeRunError::Io { .. } => None,
            HeRunError::Invalid { help, .. } | HeRunError::Setup { help, .. } => Some(help),
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
    let input_len = circuit_input_len(&args.circuit)?;
    let runner_inputs = match (&args.inputs, &args.data) {
        (Some(inputs), _) => read_inputs(inputs, input_len, args.samples)?,
        (None, Some(dir)) => {
            dataset_inputs(&args.circuit, dir.as_deref(), args.samples, args.pick)?
        }
        (None, None) => {
            return Err(HeRunError::Invalid {
                path: args.circuit.clone(),
                message: "no samples to run".into(),
                help: "pass --inputs FILE or --data".into(),
            });
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

/// Number of values one input sample has, from the circuit's `input.shape`.
fn circuit_input_len(path: &Path) -> Result<usize, HeRunError> {
    let doc = read_json(path)?;
    let invalid = |message: &str| HeRunError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
        help: "produce the circuit with `pnnc compile`".into(),
    };
    if doc.get("format").and_then(Value::as_str) != Some("pnnc-circuit") {
        return Err(invalid(
            "not a pnnc circuit (field `format` is not \"pnnc-circuit\")",
        ));
    }
    let shape = doc
        .pointer("/input/shape")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("field `input.shape` is missing"))?;
    shape.iter().try_fold(1usize, |acc, d| {
        d.as_u64()
            .map(|d| acc * d as usize)
            .ok_or_else(|| invalid("`input.shape` must hold non-negative integers"))
    })
}

/// The runner's input document: the first `n` samples, checked for length.
fn read_inputs(path: &Path, input_len: usize, n: usize) -> Result<Value, HeRunError> {
    let doc = read_json(path)?;
    let invalid = |message: String| HeRunError::Invalid {
        path: path.to_path_buf(),
        message,
        help: "write a JSON array of sample vectors, or {\"samples\": [[...], ...], \
               \"labels\": [...]}"
            .into(),
    };
    let (samples, labels) = match &doc {
        Value::Array(samples) => (samples.clone(), None),
        Value::Object(map) => match map.get("samples") {
            Some(Value::Array(samples)) => (samples.clone(), map.get("labels").cloned()),
            _ => return Err(invalid("no `samples` array".into())),
        },
        _ => return Err(invalid("expected an array or an object".into())),
    };
    if samples.is_empty() || n == 0 {
        return Err(invalid(
            "no samples to run (need at least one, and -n >= 1)".into(),
        ));
    }
    let take = n.min(samples.len());
    let mut out = Vec::with_capacity(take);
    for (i, sample) in samples.iter().take(take).enumerate() {
        let values = flatten_numbers(sample)
            .ok_or_else(|| invalid(format!("sample {i} is not an array of finite numbers")))?;
        if values.len() != input_len {
            return Err(invalid(format!(
                "sample {i} has {} values, the circuit's input needs {input_len}",
                values.len()
            )));
        }
        out.push(values);
    }
    let labels = match labels {
        Some(Value::Array(l)) if l.len() >= take => Value::Array(l[..take].to_vec()),
        Some(Value::Array(_)) => return Err(invalid("fewer `labels` than samples".into())),
        _ => Value::Array(vec![Value::Null; take]),
    };
    Ok(json!({ "samples": out, "labels": labels }))
}

/// The runner's input document from the first `n` samples of the test split
/// of the circuit's data set. Raw values: the circuit folds the
/// normalisation in (docs/circuit-format.md).
fn dataset_inputs(
    circuit: &Path,
    data_dir: Option<&Path>,
    n: usize,
    pick: Pick,
) -> Result<Value, HeRunError> {
    let loaded = crate::he::io::load(circuit).map_err(|e| HeRunError::Invalid {
        path: circuit.to_path_buf(),
        message: e.to_string(),
        help: "produce the circuit with `pnnc compile`".into(),
    })?;
    let model = &loaded.circuit.model;
    let spec = model.data.as_ref().ok_or_else(|| HeRunError::Invalid {
        path: circuit.to_path_buf(),
        message: "the circuit names no data set (its model has no `train { data: ... }`)".into(),
        help: "pass the samples with --inputs FILE".into(),
    })?;
    let opts = crate::data::LoadOptions {
        data_dir: data_dir.map(Path::to_path_buf),
        model_dir: circuit.parent().map(Path::to_path_buf),
        use_cache: true,
        ..Default::default()
    };
    let raw = crate::data::load_raw(spec, &opts).map_err(|e| HeRunError::Invalid {
        path: circuit.to_path_buf(),
        message: format!("cannot load its data set: {e}"),
        help: "pass --data DIR with the data folder, or --inputs FILE".into(),
    })?;
    samples_document(&raw.test, model.input_shape.iter().product(), n, pick).map_err(|message| {
        HeRunError::Invalid {
            path: circuit.to_path_buf(),
            message,
            help: "compile the circuit from the model that names this data set".into(),
        }
    })
}

/// `n` samples of `test` (the first, or evenly spaced) with their labels and
/// test-split indices, as the runner reads them.
fn samples_document(
    test: &crate::data::Dataset,
    input_len: usize,
    n: usize,
    pick: Pick,
) -> Result<Value, String> {
    if test.sample_len() != input_len {
        return Err(format!(
            "its data set's samples have {} values, the circuit's input needs {input_len}",
            test.sample_len()
        ));
    }
    if test.is_empty() || n == 0 {
        return Err("no test samples to run (need at least one, and -n >= 1)".into());
    }
    let take = n.min(test.len());
    let indices: Vec<usize> = match pick {
        Pick::First => (0..take).collect(),
        Pick::Spread => (0..take).map(|i| i * test.len() / take).collect(),
    };
    let samples: Vec<Vec<f64>> = indices
        .iter()
        .map(|&i| test.sample(i).iter().map(|&v| f64::from(v)).collect())
        .collect();
    let labels: Vec<u32> = indices.iter().map(|&i| test.y[i]).collect();
    Ok(json!({ "samples": samples, "labels": labels, "test_indices": indices }))
}

/// A (possibly nested, e.g. [C][H][W]) array of finite numbers, flattened.
fn flatten_numbers(v: &Value) -> Option<Vec<f64>> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<f64>) -> bool {
        match v {
            Value::Number(x) => match x.as_f64() {
                Some(x) if x.is_finite() => {
                    out.push(x);
                    true
                }
                _ => false,
            },
            Value::Array(items) => items.iter().all(|item| walk(item, out)),
            _ => false,
        }
    }
    walk(v, &mut out).then_some(out)
}

fn read_json(path: &Path) -> Result<Value, HeRunError> {
    let text = std::fs::read_to_string(path).map_err(|source| HeRunError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| HeRunError::Invalid {
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
        help: "check the file; circuits come from `pnnc compile`".into(),
    })
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

    #[test]
    fn test_split_samples_are_limited_labelled_and_length_checked() {
        let test = crate::data::Dataset {
            sample_shape: vec![2],
            x: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            y: vec![2, 0, 1],
            class_names: vec!["a".into(), "b".into(), "c".into()],
        };
        let doc = samples_document(&test, 2, 2, Pick::First).unwrap();
        assert_eq!(doc["samples"], json!([[1.0, 2.0], [3.0, 4.0]]));
        assert_eq!(doc["labels"], json!([2, 0]));
        // Evenly spaced: 2 of 3 -> indices 0 and 1 (i * 3 / 2).
        let spread = samples_document(&test, 2, 2, Pick::Spread).unwrap();
        assert_eq!(spread["test_indices"], json!([0, 1]));
        let one = samples_document(&test, 2, 1, Pick::Spread).unwrap();
        assert_eq!(one["test_indices"], json!([0]));
        let all = samples_document(&test, 2, 10, Pick::Spread).unwrap();
        assert_eq!(all["labels"], json!([2, 0, 1]));
        let err = samples_document(&test, 3, 2, Pick::First).unwrap_err();
        assert!(
            err.contains("have 2 values") && err.contains("needs 3"),
            "{err}"
        );
        assert!(samples_document(&test, 2, 0, Pick::First).is_err());
    }

    #[test]
    fn inputs_are_flattened_limited_and_length_checked() {
        let dir = std::env::temp_dir().join(format!("pnnc-herun-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("in.json");
        std::fs::write(
            &file,
            r#"{"samples": [[[1, 2], [3, 4]], [[5, 6], [7, 8]], [[0, 0], [0, 0]]], "labels": [1, 0, 2]}"#,
        )
        .unwrap();
        let doc = read_inputs(&file, 4, 2).unwrap();
        assert_eq!(
            doc["samples"],
            json!([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
        );
        assert_eq!(doc["labels"], json!([1, 0]));
        let err = read_inputs(&file, 5, 2).unwrap_err().to_string();
        assert!(
            err.contains("sample 0 has 4 values") && err.contains("needs 5"),
            "{err}"
        );
        std::fs::write(&file, "[[1, \"a\"]]").unwrap();
        let err = read_inputs(&file, 2, 1).unwrap_err().to_string();
        assert!(
            err.contains("sample 0 is not an array of finite numbers"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

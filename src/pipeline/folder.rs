//! Run-folder rules (docs/cli.md, "Run folders"): a fresh run never writes
//! into a folder that holds another run unless asked to (`--overwrite`); a
//! resumed run keeps its own `config.json` and settings; temporary files
//! left by a killed write are removed before a run starts.

use super::Failure;
use super::recipe::Baseline;
use crate::ir::weights::write_atomic;
use crate::train::run::{BEST, LAST, RESUME, RunConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const MODEL_FILE: &str = "model.pnn";
/// The checked model as trained (with a sweep's degree or basis applied):
/// its hash is the checkpoints' hash, so `pnnc eval RUN/model.json` works.
pub const MODEL_JSON: &str = "model.json";
pub const CONFIG: &str = "config.json";
pub const SUMMARY: &str = "summary.json";
pub const METRICS: &str = "metrics.jsonl";
pub const METRICS_CSV: &str = "metrics.csv";
/// `pnnc run`'s own files.
pub const RUN_SUMMARY: &str = "run-summary.json";
pub const CIRCUIT: &str = "circuit.json";

/// Files a run writes; any one of them means the folder holds a run.
pub const RUN_FILES: [&str; 11] = [
    MODEL_FILE,
    MODEL_JSON,
    CONFIG,
    SUMMARY,
    METRICS,
    METRICS_CSV,
    LAST,
    BEST,
    RESUME,
    RUN_SUMMARY,
    CIRCUIT,
];

/// How a run treats its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Refuse a folder that holds a run.
    Fresh,
    /// Delete an earlier run's files first (`--overwrite`).
    Overwrite,
    /// Continue the run in the folder (`--resume`).
    Resume,
}

/// `config.json`: how a run was started. Read back by `--resume`, which
/// restores these settings and never rewrites the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunFile {
    pub command: Vec<String>,
    pub model_file: String,
    pub model_name: String,
    pub model_hash: String,
    /// The sweep method, or "model" for the model's own recipe.
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub baseline: Option<Baseline>,
    pub he_compatible: bool,
    pub threads: usize,
    pub limit_train: Option<usize>,
    /// The folder the data set was read from.
    #[serde(default)]
    pub data_dir: Option<String>,
    pub config: RunConfig,
}

/// The command line as typed, for `config.json` (non-UTF-8 arguments are
/// recorded lossily, never a panic).
pub fn command_line() -> Vec<String> {
    std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

/// The run files present in `out`.
pub fn existing_run_files(out: &Path) -> Vec<&'static str> {
    RUN_FILES
        .into_iter()
        .filter(|f| out.join(f).exists())
        .collect()
}

/// Make `out` ready for a run started as `start`.
pub fn prepare(out: &Path, start: Start) -> Result<(), Failure> {
    if out.exists() && !out.is_dir() {
        return Err(Failure::usage(format!(
            "{}: not a folder\n  help: pass a folder for the run with --out",
            out.display()
        )));
    }
    let found = existing_run_files(out);
    match start {
        Start::Resume if !out.join(RESUME).is_file() => {
            return Err(Failure::usage(format!(
                "{}: no run to resume (no {RESUME})\n  help: start the run without --resume, or pass its --out folder",
                out.display()
            )));
        }
        Start::Fresh if !found.is_empty() => {
            let help = if found.contains(&RESUME) {
                "pass --resume to continue it, --overwrite to replace it, or another --out"
            } else {
                "pass --overwrite to replace it, or another --out"
            };
            return Err(Failure::usage(format!(
                "{}: this folder already holds a run ({})\n  help: {help}",
                out.display(),
                found.join(", ")
            )));
        }
        Start::Overwrite => {
            for f in found {
                std::fs::remove_file(out.join(f))
                    .map_err(|e| Failure::usage(format!("{}: {e}", out.join(f).display())))?;
            }
        }
        _ => {}
    }
    std::fs::create_dir_all(out).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
    remove_stale_temp_files(out);
    Ok(())
}

/// Temporary files of `write_atomic` (`.<name>.tmp<pid>`) that a killed
/// process left behind in `dir`.
pub fn remove_stale_temp_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = name.strip_prefix('.').is_some_and(|rest| {
            RUN_FILES
                .iter()
                .any(|f| rest.strip_prefix(f).is_some_and(|t| t.starts_with(".tmp")))
        });
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Read `config.json` of a run folder.
pub fn read_run_file(out: &Path) -> Result<RunFile, Failure> {
    let path = out.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::usage(format!(
            "{}: {e}\n  help: --resume needs the run's config.json; start a new run instead",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{}: not a pnnc run configuration: {e}\n  help: --resume needs the config.json `pnnc train` wrote; start a new run instead",
            path.display()
        ))
    })
}

/// Write a JSON file atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Failure::job(e.to_string()))?;
    write_atomic(path, format!("{text}\n").as_bytes()).map_err(|e| Failure::usage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_an_earlier_run_is_refused_unless_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("run");
        prepare(&out, Start::Fresh).unwrap();
        std::fs::write(out.join(LAST), b"weights").unwrap();
        std::fs::write(out.join("notes.txt"), b"mine").unwrap();
        let e = prepare(&out, Start::Fresh).unwrap_err();
        assert!(
            e.message.contains("already holds a run (last.safetensors)"),
            "{e}"
        );
        assert!(e.message.contains("--overwrite"), "{e}");
        assert_eq!(std::fs::read(out.join(LAST)).unwrap(), b"weights");
        prepare(&out, Start::Overwrite).unwrap();
        assert!(!out.join(LAST).exists());
        // Files that are not a run's are never touched.
        assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    }

    #[test]
    fn resume_needs_a_resume_file_and_a_file_is_not_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let e = prepare(dir.path(), Start::Resume).unwrap_err();
        assert!(e.message.contains("no run to resume"), "{e}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"").unwrap();
        assert!(
            prepare(&file, Start::Fresh)
                .unwrap_err()
                .message
                .contains("not a folder")
        );
    }

    #[test]
    fn temporary_files_of_a_killed_write_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            ".last.safetensors.tmp123",
            ".metrics.jsonl.tmp9",
            ".mine.tmp1",
            "x.tmp2",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        remove_stale_temp_files(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".mine.tmp1", "x.tmp2"]);
    }
}

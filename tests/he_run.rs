//! `pnnc he-run` end to end on committed fixture circuits. Needs the runner's
//! venv (runners/openfhe/setup.sh, CPython 3.10 + openfhe); tests that need
//! it are ignored, with the reason, when it is absent (build.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    root().join("runners/openfhe/tests/fixtures").join(name)
}

/// The runner's python (the venv is never created by a test). Tests that call
/// it are `#[ignore]`d by build.rs's `pnnc_openfhe` cfg when it is absent.
fn runner_python() -> PathBuf {
    let python = std::env::var_os("PNNC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("runners/openfhe/.venv"))
        .join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import openfhe, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "runner venv {} was usable at build time but is not now: rebuild",
        python.display()
    );
    python
}

fn he_run(circuit: &Path, inputs: &Path, python: &Path, report: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pnnc"))
        .arg("he-run")
        .arg(circuit)
        .arg("--inputs")
        .arg(inputs)
        .args(["-n", "2", "--python"])
        .arg(python)
        .arg("--report")
        .arg(report)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("run pnnc")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pnnc-he-run-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn encrypted_run_matches_plaintext_with_predicted_levels() {
    let python = runner_python();
    let dir = temp_dir("ok");
    let report_path = dir.join("report.json");
    let out = he_run(
        &fixture("tiny_affine.circuit.json"),
        &fixture("tiny_affine.inputs.json"),
        &python,
        &report_path,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("encrypted check: PASSED"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("json");
    assert_eq!(report["passed"], true);
    assert_eq!(report["samples"].as_array().map(Vec::len), Some(2));
    for op in report["ops"].as_array().expect("ops") {
        assert_eq!(
            op["level_measured"],
            serde_json::json!([op["level_predicted"]]),
            "{op}"
        );
    }
    assert!(report["max_logit_error"].as_f64().expect("error") < 1e-3);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn too_few_levels_fail_with_the_op_named() {
    let python = runner_python();
    let dir = temp_dir("levels");
    let mut circuit: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny_affine.circuit.json")).expect("fixture"),
    )
    .expect("json");
    circuit["params"]["mult_depth"] = serde_json::json!(5);
    let path = dir.join("short.circuit.json");
    std::fs::write(&path, circuit.to_string()).expect("write");
    let out = he_run(
        &path,
        &fixture("tiny_affine.inputs.json"),
        &python,
        &dir.join("r.json"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("failure: sample 0, op 4"), "{stdout}");
    assert!(stdout.contains("encrypted check: FAILED"), "{stdout}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_sample_length_is_a_usage_error_naming_the_file() {
    let dir = temp_dir("len");
    let inputs = dir.join("bad.json");
    std::fs::write(&inputs, "[[1, 2, 3]]").expect("write");
    // No python needed: inputs are checked before the runner starts.
    let out = he_run(
        &fixture("tiny_affine.circuit.json"),
        &inputs,
        Path::new("/nonexistent/python"),
        &dir.join("r.json"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json: sample 0 has 3 values, the circuit's input needs 10"),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_file_that_is_not_a_circuit_is_rejected() {
    let dir = temp_dir("notcircuit");
    let path = dir.join("model.circuit.json");
    std::fs::write(&path, r#"{"format": "something-else"}"#).expect("write");
    let out = he_run(
        &path,
        &fixture("tiny_affine.inputs.json"),
        Path::new("/nonexistent/python"),
        &dir.join("r.json"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("model.circuit.json: not a pnnc circuit"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

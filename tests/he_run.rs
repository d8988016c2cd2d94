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

/// The report of a run that exited 0 and printed the encrypted check as passed.
fn passed_report(out: &Output, report_path: &Path) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("encrypted check: PASSED"), "{stdout}");
    serde_json::from_str(&std::fs::read_to_string(report_path).expect("report")).expect("json")
}

/// Every op's measured level is the one the compiler planned.
fn assert_levels_as_planned(ops: &[serde_json::Value]) {
    for op in ops {
        assert_eq!(
            op["level_measured"],
            serde_json::json!([op["level_predicted"]]),
            "{op}"
        );
    }
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
    let report = passed_report(&out, &report_path);
    assert_eq!(report["passed"], true);
    assert_eq!(report["samples"].as_array().map(Vec::len), Some(2));
    assert_levels_as_planned(report["ops"].as_array().expect("ops"));
    assert!(report["max_logit_error"].as_f64().expect("error") < 1e-3);
    std::fs::remove_dir_all(&dir).ok();
}

/// A compiled circuit whose depth needs a bootstrap (tests/fixtures/
/// toy_bootstrap.circuit.json, written by the compiler's own test at toy,
/// insecure parameters): OpenFHE's EvalBootstrap runs, the levels follow the
/// plan (a bootstrap leaves 16 of 22 levels consumed) and the logits match
/// the plaintext circuit.
#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn a_compiled_circuit_with_a_bootstrap_matches_plaintext() {
    let python = runner_python();
    let dir = temp_dir("bootstrap");
    let report_path = dir.join("report.json");
    let circuit = root().join("tests/fixtures/toy_bootstrap.circuit.json");
    let samples = root().join("tests/fixtures/toy_bootstrap.samples.json");
    let out = he_run(&circuit, &samples, &python, &report_path);
    let report = passed_report(&out, &report_path);
    let ops = report["ops"].as_array().expect("ops");
    let boots: Vec<_> = ops.iter().filter(|o| o["op"] == "bootstrap").collect();
    assert_eq!(boots.len(), 1, "{report}");
    assert_eq!(boots[0]["level_measured"], serde_json::json!([16]));
    assert_levels_as_planned(ops);
    for s in report["samples"].as_array().expect("samples") {
        assert_eq!(s["he_class"], s["plain_class"], "{s}");
    }
    assert!(report["max_logit_error"].as_f64().expect("error") < 1e-3);
    std::fs::remove_dir_all(&dir).ok();
}

/// A circuit edited to hold fewer levels than it needs is refused before
/// key generation (the runner's own failure at the op that runs out is
/// tested in runners/openfhe/tests).
#[test]
fn too_few_levels_are_refused_before_the_runner_starts() {
    let dir = temp_dir("levels");
    let mut circuit: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny_affine.circuit.json")).expect("fixture"),
    )
    .expect("json");
    circuit["params"]["mult_depth"] = serde_json::json!(5);
    circuit["params"]["log_q"] = serde_json::json!(60 + 5 * 50);
    let path = dir.join("short.circuit.json");
    std::fs::write(&path, circuit.to_string()).expect("write");
    let out = he_run(
        &path,
        &fixture("tiny_affine.inputs.json"),
        Path::new("/nonexistent/python"),
        &dir.join("r.json"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("short.circuit.json: invalid circuit"),
        "{stderr}"
    );
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
        stderr.contains("bad.json: sample 0 has 3 values, the model's input needs 10"),
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

/// Samples in the JSON format of `simulate` ({"x", "label"} objects) run the
/// same, and the report says, per sample, whether plaintext activation
/// inputs left [-B, B] (here: inputs far outside the fixture's range).
#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn simulate_json_samples_run_and_escapes_are_flagged() {
    let python = runner_python();
    let dir = temp_dir("escapes");
    let inputs: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("tiny_affine.inputs.json")).expect("fixture"),
    )
    .expect("json");
    let samples = inputs["samples"].as_array().expect("samples");
    let scaled: Vec<f64> = samples[1]
        .as_array()
        .expect("sample")
        .iter()
        .map(|v| v.as_f64().expect("number") * 50.0)
        .collect();
    let objects = serde_json::json!([{"x": samples[0], "label": 1}, {"x": scaled, "label": 2}]);
    let path = dir.join("objects.json");
    std::fs::write(&path, objects.to_string()).expect("write");
    let report_path = dir.join("report.json");
    let out = he_run(
        &fixture("tiny_affine.circuit.json"),
        &path,
        &python,
        &report_path,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
            .expect("json");
    assert_eq!(
        report["escaped_samples"],
        serde_json::json!([1]),
        "{stdout}"
    );
    assert_eq!(report["samples"][0]["escapes"], serde_json::json!([]));
    assert_eq!(report["samples"][1]["label"], 2);
    assert!(
        stdout.contains("warning: plaintext activation inputs left [-B, B] on samples [1]"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

//! The HE commands (`compile`, `simulate`, `calibrate`) under careless or
//! hostile use: nothing of the user's is overwritten, nothing non-finite is
//! reported as a result, samples are given one way (issue 17), and escapes
//! are measured (issue 13).

use super::calibrate::Calibration;
use super::tests::{act, conv_net, dense, model, random_checkpoint, random_input, tmp};
use super::{CompileOptions, compile, io, simulate};
use crate::cli::{calibrate as cal, compile as cc, simulate as cs};
use crate::ir::{Basis, Checkpoint, Model};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A folder with `model.json` and `best.safetensors` (random weights).
fn workspace(name: &str, m: &Model) -> (PathBuf, PathBuf, PathBuf, Checkpoint) {
    let dir = tmp(name).parent().unwrap().to_path_buf();
    let model_path = dir.join("model.json");
    std::fs::write(&model_path, serde_json::to_string(m).unwrap()).unwrap();
    let ck = random_checkpoint(m, 7);
    let weights = dir.join("best.safetensors");
    ck.save(&weights).unwrap();
    (dir, model_path, weights, ck)
}

fn compile_args(model: &Path, weights: &Path, out: &Path) -> cc::CompileArgs {
    cc::CompileArgs {
        model: model.to_path_buf(),
        weights: weights.to_path_buf(),
        output: Some(out.to_path_buf()),
        input_range: "0,1".into(),
        calibration: None,
    }
}

fn simulate_args(circuit: &Path, inputs: &Path) -> cs::SimulateArgs {
    cs::SimulateArgs {
        circuit: circuit.to_path_buf(),
        data: None,
        inputs: Some(inputs.to_path_buf()),
        samples: None,
        pick: Default::default(),
        noise: false,
        model: None,
        weights: None,
    }
}

/// Above `io::INLINE_LIMIT` numbers, so the circuit gets a sidecar.
fn wide_mlp() -> Model {
    model(
        "wide",
        &[1000],
        3,
        vec![
            dense("fc1", 1000, 256),
            act("p1", &[256], 2, Basis::Chebyshev, 8.0),
            dense("head", 256, 3),
        ],
    )
}

#[test]
fn compile_never_replaces_its_inputs() {
    let m = wide_mlp();
    let (dir, model_path, weights, _) = workspace("collide", &m);
    let before = std::fs::read(&weights).unwrap();
    // The report's case: -o next to the checkpoint with the same stem.
    let out = dir.join("best.json");
    assert_eq!(
        cc::run(&compile_args(&model_path, &weights, &out)),
        ExitCode::SUCCESS
    );
    assert_eq!(
        std::fs::read(&weights).unwrap(),
        before,
        "checkpoint replaced"
    );
    assert!(dir.join("best.tensors.safetensors").exists());
    io::load(&out).unwrap();
    // A sidecar or circuit that would land on an input is refused.
    let named = dir.join("w.tensors.safetensors");
    std::fs::copy(&weights, &named).unwrap();
    let code = cc::run(&compile_args(&model_path, &named, &dir.join("w.json")));
    assert_eq!(code, ExitCode::from(2));
    assert_eq!(std::fs::read(&named).unwrap(), before);
    let code = cc::run(&compile_args(&model_path, &weights, &model_path));
    assert_eq!(code, ExitCode::from(2));
    assert!(
        std::fs::read_to_string(&model_path)
            .unwrap()
            .contains("\"wide\"")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failed_write_leaves_no_orphan_sidecar_and_says_what_failed() {
    let m = wide_mlp();
    let (dir, model_path, weights, ck) = workspace("orphan", &m);
    let folder = dir.join("out");
    std::fs::create_dir_all(&folder).unwrap();
    let code = cc::run(&compile_args(&model_path, &weights, &folder));
    assert_eq!(code, ExitCode::from(2));
    let mut left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["best.safetensors", "model.json", "out"]);
    let c = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let err = io::write(&folder, &c.circuit, &c.tensors, 0).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("cannot write") && text.contains("out") && !text.contains("invalid"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_relu_baseline_checkpoint_is_refused() {
    let m = wide_mlp();
    let (dir, model_path, weights, mut ck) = workspace("relu", &m);
    ck.metadata.insert("he_compatible".into(), "false".into());
    ck.metadata.insert("baseline".into(), "relu".into());
    ck.save(&weights).unwrap();
    let err = crate::cli::common::load_weights(&m, &weights).unwrap_err();
    assert!(
        err.contains("best.safetensors")
            && err.contains("he_compatible=false")
            && err.contains("help:"),
        "{err}"
    );
    let out = dir.join("c.json");
    assert_eq!(
        cc::run(&compile_args(&model_path, &weights, &out)),
        ExitCode::from(2)
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_non_finite_value_is_an_error_naming_its_op() {
    let m = conv_net();
    let ck = random_checkpoint(&m, 7);
    let c = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let path = tmp("nonfinite");
    io::write(&path, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let lc = io::load(&path).unwrap();
    let x = vec![1e300; m.input.numel() as usize];
    let err = simulate::checked_logits(&lc, &x, None).unwrap_err();
    assert!(err.op >= 1, "{err}");
    assert!(err.to_string().contains("non-finite"), "{err}");
    let reference = super::reference::Reference::new(&m, &ck).unwrap();
    let err = reference.logits(&x).unwrap_err().to_string();
    assert!(err.contains("non-finite") && err.contains('`'), "{err}");
    // From the command line: exit 1, never an agreement with zero deviation.
    let inputs = path.with_file_name("huge.json");
    std::fs::write(&inputs, serde_json::json!([{"x": x}]).to_string()).unwrap();
    let model_path = path.with_file_name("m.json");
    std::fs::write(&model_path, serde_json::to_string(&m).unwrap()).unwrap();
    let weights = path.with_file_name("w.safetensors");
    ck.save(&weights).unwrap();
    let mut args = simulate_args(&path, &inputs);
    args.model = Some(model_path);
    args.weights = Some(weights);
    assert_eq!(cs::run(&args), ExitCode::from(1));
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn simulate_rejects_zero_classes_and_weights_without_a_model() {
    let m = conv_net();
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    let mut circuit = c.circuit.clone();
    circuit.model.classes = 0;
    let path = tmp("zero");
    io::write(&path, &circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let err = io::load(&path).unwrap_err().to_string();
    assert!(err.contains("classes is 0"), "{err}");
    use clap::Parser;
    let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
    let err = parse(&[
        "pnnc",
        "simulate",
        "c.json",
        "--inputs",
        "s.json",
        "--weights",
        "w",
    ])
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--model"), "{err}");
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// The committed runner fixtures load, and simulate reads their inputs
/// (the `{"samples", "labels"}` shape `he-run --inputs` always read).
#[test]
fn simulate_accepts_the_runner_fixtures() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("runners/openfhe/tests/fixtures");
    for name in ["tiny_mlp", "tiny_affine", "tiny_bootstrap"] {
        let circuit = fixtures.join(format!("{name}.circuit.json"));
        io::load(&circuit).unwrap_or_else(|e| panic!("{e}"));
        let inputs = fixtures.join(format!("{name}.inputs.json"));
        assert_eq!(
            cs::run(&simulate_args(&circuit, &inputs)),
            ExitCode::SUCCESS
        );
    }
}

/// simulate, calibrate and he-run take samples with the same flags.
#[test]
fn the_sample_flags_are_the_same_everywhere() {
    use clap::Parser;
    let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args).map(|c| c.command);
    for cmd in [
        vec!["pnnc", "simulate", "c.json"],
        vec!["pnnc", "he-run", "c.json"],
        vec!["pnnc", "calibrate", "m.pnn", "--weights", "w"],
    ] {
        for extra in [
            &["--data"][..],
            &["--data", "DIR", "-n", "3", "--pick", "first"],
            &["--inputs", "s.json", "--samples", "2"],
        ] {
            let args: Vec<&str> = cmd.iter().chain(extra).copied().collect();
            assert!(parse(&args).is_ok(), "{args:?}: {:?}", parse(&args).err());
        }
    }
    let err = crate::cli::common::sample_source(&Some(None), &Some("s.json".into())).unwrap_err();
    assert!(err.contains("not both"), "{err}");
    let err = crate::cli::common::sample_source(&None, &None).unwrap_err();
    assert!(err.contains("--data") && err.contains("--inputs"), "{err}");
}

#[test]
fn calibration_is_written_and_compile_warns_with_its_escape_rates() {
    let m = conv_net();
    let (dir, model_path, weights, ck) = workspace("calib", &m);
    let mut rng = StdRng::seed_from_u64(9);
    // Half the samples far outside the input range: some activations escape.
    let samples: Vec<_> = (0..10)
        .map(|i| {
            let x: Vec<f64> = random_input(&m, &mut rng)
                .into_iter()
                .map(|v| if i % 2 == 0 { v } else { v * 400.0 })
                .collect();
            serde_json::json!({"x": x, "label": i % 3})
        })
        .collect();
    let inputs = dir.join("samples.json");
    std::fs::write(&inputs, serde_json::to_string(&samples).unwrap()).unwrap();
    let out = dir.join("calib.json");
    let args = cal::CalibrateArgs {
        model: model_path.clone(),
        weights: weights.clone(),
        data: None,
        inputs: Some(inputs.clone()),
        samples: None,
        pick: Default::default(),
        output: Some(out.clone()),
        overwrite: false,
    };
    assert_eq!(cal::run(&args), ExitCode::SUCCESS);
    let c: Calibration = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(c.samples, 10);
    let escaped: Vec<_> = c.sites.iter().filter(|(_, s)| s.outside > 0).collect();
    assert!(!escaped.is_empty(), "{:?}", c.sites);
    assert!(escaped.iter().all(|(_, s)| s.samples_outside <= 5));
    // The same numbers as the library on the same samples.
    let xs: Vec<Vec<f64>> = samples
        .iter()
        .map(|s| serde_json::from_value(s["x"].clone()).unwrap())
        .collect();
    let direct = super::calibrate::calibrate(&m, &ck, xs.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(direct, c.sites);
    // Never overwritten without --overwrite.
    assert_eq!(cal::run(&args), ExitCode::from(2));
    let warnings = super::calibrate::escape_warnings(&c, &out);
    assert_eq!(warnings.len(), escaped.len());
    let (name, site) = escaped[0];
    assert!(
        warnings[0].contains(name.as_str())
            && warnings[0].contains(&format!("{:.4} %", 100.0 * site.outside_fraction()))
            && warnings[0].contains("on 10 samples"),
        "{}",
        warnings[0]
    );
    let mut compile = compile_args(&model_path, &weights, &dir.join("c.circuit.json"));
    compile.calibration = Some(out.clone());
    assert_eq!(cc::run(&compile), ExitCode::SUCCESS);
    // A calibration of other weights is refused.
    random_checkpoint(&m, 8).save(&weights).unwrap();
    let err = super::calibrate::load_calibration(&out, &m, &weights).unwrap_err();
    assert!(err.contains("other weights"), "{err}");
    assert_eq!(cc::run(&compile), ExitCode::from(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// he-run flags each sample whose plaintext activation inputs left [-B, B].
#[test]
fn escapes_are_found_per_sample_in_the_circuit() {
    let m = conv_net();
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    let path = tmp("escapes");
    io::write(&path, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let lc = io::load(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let x = random_input(&m, &mut rng);
    let values = simulate::run_checked(&lc, &x, None).unwrap();
    assert!(simulate::escapes(&lc, &values).is_empty());
    let big: Vec<f64> = x.iter().map(|v| v * 400.0).collect();
    let values = simulate::run_checked(&lc, &big, None).unwrap();
    let found = simulate::escapes(&lc, &values);
    assert!(!found.is_empty());
    for e in &found {
        let op = &lc.circuit.ops[e.op - 1];
        assert!(matches!(op.kind, super::circuit::OpKind::Poly { .. }));
        assert!(
            e.outside > 0 && e.outside <= e.values && e.max_ratio > 1.0,
            "{e:?}"
        );
        // Only slots that hold elements count.
        assert_eq!(e.values, op.in_shape.iter().product::<usize>());
    }
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// `pnnc info CIRCUIT` counts the levels bootstraps consume; a file that is
/// not a circuit is a usage error.
#[test]
fn info_on_a_circuit_accounts_for_bootstrap_levels() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let boot = io::load(&fixtures.join("toy_bootstrap.circuit.json")).unwrap();
    let a = boot.circuit.level_account();
    // 8 x (linear 1 + degree-3 poly 2) + head 1 = 25 levels of ops, one
    // bootstrap of 16 on the way: 41 levels through a chain of 22.
    assert_eq!(
        (
            a.op_levels,
            a.bootstraps_on_path,
            a.bootstrap_levels,
            a.total_levels
        ),
        (25, 1, 16, 41)
    );
    assert!(a.total_levels > boot.circuit.params.mult_depth);
    let plain = io::load(&fixtures.join("tiny.circuit.json")).unwrap();
    let a = plain.circuit.level_account();
    assert_eq!(
        (a.op_levels, a.total_levels),
        (plain.circuit.depth, plain.circuit.depth)
    );
    for format in [crate::cli::Format::Text, crate::cli::Format::Json] {
        assert_eq!(
            cc::circuit_info(&fixtures.join("toy_bootstrap.circuit.json"), format),
            ExitCode::SUCCESS
        );
    }
    let not_circuit = tmp("not_a_circuit").with_extension("json");
    std::fs::write(&not_circuit, "{\"x\": 1}").unwrap();
    assert_eq!(
        cc::circuit_info(&not_circuit, crate::cli::Format::Text),
        ExitCode::from(2)
    );
}

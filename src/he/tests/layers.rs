//! The layers of issue 14 section 4 (grouped, depthwise and 1-D convs and
//! pooling; polynomials given by their coefficients; channel concatenation)
//! through the HE stage, from `.pnn` text:
//! folding equivalence in plaintext, and an encrypted run under OpenFHE
//! (ignored, with the reason, where the runner is not installed: build.rs's
//! `pnnc_openfhe` cfg; CI fails instead).

use super::*;
use std::process::Command;

/// The model `text` describes, checked without errors.
fn model_of(text: &str) -> Model {
    let checked = crate::check::check_source("layers.pnn", text);
    assert!(
        !checked.has_errors(),
        "{:?}",
        checked
            .diagnostics
            .iter()
            .map(|d| &d.message)
            .collect::<Vec<_>>()
    );
    checked.model.expect("a model")
}

/// Grouped and depthwise 1-D convolutions and 1-D pooling on a sequence.
const SEQUENCE_CNN: &str = "model seq_cnn\ninput [4, 12]\nclasses 3\n\
    act p = poly(degree: 2, fit: relu, range: 4)\n\
    net {\n  conv(4, 3, padding: 1, groups: 2, bias: true)\n  p\n\
    conv(4, 3, groups: 4)\n  avgpool(2)\n  flatten\n  dense(classes)\n}\n";

/// Grouped and depthwise 2-D convolutions.
const GROUPED_CNN: &str = "model grouped_cnn\ninput [4, 5, 5]\nclasses 3\n\
    act p = poly(degree: 2, fit: relu, range: 4)\n\
    net {\n  conv(6, 3, padding: 1, groups: 2)\n  p\n  batchnorm\n\
    conv(6, 3, stride: 2, groups: 6)\n  global_avgpool\n  dense(classes)\n}\n";

/// CryptoNets' square and a learnable given cubic, in two bases.
const GIVEN_POLYS: &str = "model given_polys\ninput [1, 6, 6]\nclasses 3\n\
    act sq = poly(coeffs: [0, 0, 1], range: 6)\n\
    act cubic = poly(coeffs: [0.5, 0.25, -0.125, 0.0625], range: 3, basis: power, learnable: true)\n\
    net {\n  conv(2, 3, stride: 2)\n  sq\n  flatten\n  dense(4)\n  cubic\n  dense(classes)\n}\n";

/// Inception-style branches (1x1, 3x3 with a folded batchnorm, and one that
/// ends in an activation), a batchnorm and activation on the joined
/// channels, a strided conv over all of them; then a concat of flat vectors
/// (one ending in an activation) that is the network's output, placed into
/// one vector at one level for that branch.
const INCEPTION: &str = "model inception\ninput [2, 6, 6]\nclasses 5\n\
    act p = poly(degree: 2, fit: relu, range: 4)\n\
    net {\n  conv(4, 3, padding: 1)\n  p\n\
    concat {\n    conv(3, 1)\n  } {\n    conv(2, 3, padding: 1); batchnorm\n  } {\n    conv(2, 1); p\n  }\n\
    batchnorm\n  p\n  conv(4, 3, stride: 2, padding: 1)\n  global_avgpool\n\
    concat { dense(3) } { dense(2); p }\n}\n";

/// DenseNet: each layer's channels joined to its input's (`concat {} ...`),
/// batchnorm -> activation -> conv inside; the joined input of a residual.
const DENSENET: &str = "model densenet\ninput [2, 5, 5]\nclasses 3\n\
    act p = poly(degree: 2, fit: relu, range: 4)\n\
    block dense_layer(growth) { concat {} { batchnorm; p; conv(growth, 3, padding: 1) } }\n\
    net {\n  conv(3, 3, padding: 1)\n  dense_layer(2)\n  dense_layer(2)\n\
    batchnorm\n  p\n  residual { concat { conv(3, 1) } { conv(4, 3, padding: 1); p } }\n\
    avgpool(5)\n  flatten\n  dense(classes)\n}\n";

/// One value joined to itself (`concat {} {}`: two parts of one node,
/// which nothing may fold into for one of them), on a flat input.
const TWICE: &str = "model twice\ninput [4]\nclasses 3\n\
    act p = poly(degree: 2, fit: relu, range: 4)\n\
    net {\n  dense(3)\n  p\n  concat {} {} { scale(2) }\n  batchnorm\n  dense(classes)\n}\n";

/// Random weights, with the coefficients of every activation as training
/// starts them (for given polynomials: the user's, converted to the basis).
fn checkpoint_from_training(m: &Model) -> Checkpoint {
    use crate::train::backend::network::{NetworkOf, NetworkOptions};
    let mut ck = random_checkpoint(m, 7);
    let net = NetworkOf::<f64>::new(m, 1, &NetworkOptions::default()).unwrap();
    for (name, tensor) in net.to_tensors() {
        if name.ends_with(".coeffs") {
            ck.tensors.insert(name, tensor);
        }
    }
    ck
}

#[test]
fn a_given_square_is_x_squared_from_training_to_the_circuit() {
    let m = model_of(
        "model sq\ninput [3]\nclasses 3\nact sq = poly(coeffs: [0, 0, 1], range: 4)\nnet { sq }\n",
    );
    let ck = checkpoint_from_training(&m);
    // In the default Chebyshev basis on t = x / 4: x^2 = 8 T_0 + 8 T_2.
    assert_eq!(ck.tensors["poly1.coeffs"].data, [8.0, 0.0, 8.0]);
    let compiled = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let reference = Reference::new(&m, &ck).unwrap();
    let (mean, std) = (&ck.normalization.mean, &ck.normalization.std);
    for x in [[0.0, 0.5, 1.0], [0.9, 0.1, 0.3]] {
        let want: Vec<f64> = (0..3)
            .map(|i| ((x[i] - mean[i] as f64) / std[i] as f64).powi(2))
            .collect();
        for got in [reference.logits(&x).unwrap(), compiled.lowered.eval(&x)] {
            assert!(max_rel_diff(&want, &got) < 1e-6, "{want:?} vs {got:?}");
        }
    }
}

#[test]
fn folding_is_exact_for_given_polynomials() {
    let m = model_of(GIVEN_POLYS);
    let ck = checkpoint_from_training(&m);
    let compiled = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let reference = Reference::new(&m, &ck).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..10 {
        let x = random_input(&m, &mut rng);
        let (want, got) = (reference.logits(&x).unwrap(), compiled.lowered.eval(&x));
        assert!(max_rel_diff(&want, &got) < 1e-5, "{want:?} vs {got:?}");
    }
}

#[test]
fn folding_is_exact_for_grouped_depthwise_and_1d_layers() {
    for text in [SEQUENCE_CNN, GROUPED_CNN] {
        check_equivalence(&model_of(text), io::INLINE_LIMIT);
    }
}

/// Concat is exact in plaintext, and its levels are the checker's: the
/// joins are free, a map on the joined channels costs a level only on the
/// branches that do not end in a dense/conv, as `check::depth` counts.
#[test]
fn folding_is_exact_for_concat_and_levels_match_the_checker() {
    for text in [INCEPTION, DENSENET, TWICE] {
        let m = model_of(text);
        check_equivalence(&m, io::INLINE_LIMIT);
    }
    // Inception: conv 1, p 2 -> 3; branches 4 / 4 / 6 (1x1 then p); the
    // batchnorm after them costs a level on the third only (6 + 1 = 7 > 4);
    // p 9; conv 10; the flat concat: dense 11 / dense + p 13, and placing the
    // p branch into the output costs one more: 14.
    let m = model_of(INCEPTION);
    let levels: Vec<(String, u32)> = m.net.iter().map(|o| (o.name.clone(), o.level)).collect();
    assert_eq!(m.depth, 14, "{levels:?}");
    let cat = &m.net[2];
    assert_eq!((cat.output.dims(), cat.levels), ([7, 6, 6].as_slice(), 3));
    let bn = &m.net[3];
    assert!(matches!(
        bn.kind,
        OpKind::BatchNorm {
            foldable: false,
            ..
        }
    ));
    assert_eq!(bn.level, 7);
    assert_eq!(m.net.last().map(|o| o.levels), Some(4));
}

/// A concat whose branches come in different slot layouts (a strided conv
/// keeps its input's grid with gaps; one channel is packed densely): the
/// conv after it reads each part in its own, and its per-part products are
/// written in one layout to be summed.
#[test]
fn concat_joins_branches_laid_out_differently() {
    let text = "model layouts\ninput [2, 8, 8]\nclasses 3\n\
        act p = poly(degree: 2, fit: relu, range: 4)\n\
        net {\n  conv(8, 3, padding: 1)\n  p\n\
        concat { conv(4, 3, stride: 2, padding: 1) } { avgpool(2); conv(1, 1) } { avgpool(2) }\n\
        p\n  conv(4, 3, padding: 1)\n  global_avgpool\n  dense(classes)\n}\n";
    check_equivalence(&model_of(text), io::INLINE_LIMIT);
}

/// The runner's python: `$PNNC_VENV` or runners/openfhe/.venv, as build.rs looks.
fn runner_python() -> PathBuf {
    std::env::var_os("PNNC_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("runners/openfhe/.venv"))
        .join("bin/python")
}

/// Compile `m` with random weights, run `samples` random inputs encrypted,
/// and require the runner's check to pass: measured levels equal predicted
/// ones and encrypted logits within 1e-3 of the plaintext circuit's.
fn encrypted_run(m: &Model, ck: &Checkpoint, samples: usize) {
    let compiled = compile(m, ck, &CompileOptions::default()).unwrap();
    let path = tmp(&format!("{}-encrypted", m.name));
    io::write(
        &path,
        &compiled.circuit,
        &compiled.tensors,
        io::INLINE_LIMIT,
    )
    .unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let xs: Vec<Vec<f64>> = (0..samples).map(|_| random_input(m, &mut rng)).collect();
    let inputs = path.with_file_name("inputs.json");
    std::fs::write(&inputs, serde_json::json!({ "samples": xs }).to_string()).unwrap();
    let report = path.with_file_name("report.json");
    let out = Command::new(runner_python())
        .args(["-m", "pnnc_he"])
        .arg(&path)
        .arg("--inputs")
        .arg(&inputs)
        .arg("--report")
        .arg(&report)
        .arg("--quiet")
        .env(
            "PYTHONPATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("runners/openfhe"),
        )
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("start the runner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("encrypted check: PASSED"),
        "{}: {stdout}\n{}",
        m.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["passed"], true);
    for op in report["ops"].as_array().expect("ops") {
        assert_eq!(
            op["level_measured"],
            serde_json::json!([op["level_predicted"]]),
            "{op}"
        );
    }
    assert!(report["max_logit_error"].as_f64().unwrap() < 1e-3);
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn grouped_depthwise_and_1d_layers_run_encrypted() {
    for text in [SEQUENCE_CNN, GROUPED_CNN] {
        let m = model_of(text);
        encrypted_run(&m, &random_checkpoint(&m, 11), 2);
    }
}

#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn given_polynomials_run_encrypted() {
    let m = model_of(GIVEN_POLYS);
    encrypted_run(&m, &checkpoint_from_training(&m), 2);
}

#[test]
#[cfg_attr(
    not(pnnc_openfhe),
    ignore = "needs the OpenFHE runner: runners/openfhe/setup.sh (CPython 3.10)"
)]
fn concat_runs_encrypted() {
    // Inception has every kind of op a concat lowers to: per-branch products
    // summed, per-branch activations at different levels, a batchnorm on one
    // branch only, and a branch placed into the output by a masking product.
    // (DenseNet's circuit has the same kinds; the plaintext test covers it.)
    let m = model_of(INCEPTION);
    encrypted_run(&m, &random_checkpoint(&m, 13), 2);
}

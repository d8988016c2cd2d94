//! The std-models check clean, with the expected shapes, parameter counts and levels.

use pnnc::check;
use pnnc::ir::{Model, OpKind, levels};
use std::path::Path;

fn load(path: &str) -> Model {
    let checked = check::check_path(Path::new(path)).expect("readable");
    assert!(
        checked.diagnostics.is_empty(),
        "{path}:\n{}",
        check::render::text(&checked.sources, &checked.diagnostics, false)
    );
    checked.model.expect("model")
}

#[test]
fn every_std_model_and_clean_example_checks_without_diagnostics() {
    for dir in ["std-models", "std-models/bench"] {
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "pnn") {
                load(p.to_str().expect("utf8 path"));
            }
        }
    }
    load("examples/tiny_mlp.pnn");
    load("examples/residual.pnn");
    // Inception and DenseNet: the joins are free. conv 1, p 4; inception:
    // 1x1 -> p -> 3x3 (or 5x5) = 9, p 12; three dense layers (conv, folded
    // batchnorm, p: 4 levels each) 24; p 27; dense 28.
    let cat = load("examples/concat.pnn");
    assert_eq!(cat.depth, 28);
    let joined: Vec<Vec<usize>> = cat
        .net
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Concat { .. }))
        .map(|o| o.output.dims().to_vec())
        .collect();
    assert_eq!(
        joined,
        [[32, 32, 32], [40, 16, 16], [48, 16, 16], [56, 16, 16]]
    );
    // The boundary-loss comparison of docs/results.md: the same network, two losses.
    let (exp, cap) = (
        load("examples/cifar/resnet20_d2.pnn"),
        load("examples/cifar/resnet20_d2_cap.pnn"),
    );
    let ops = |m: &Model| -> Vec<(String, OpKind)> {
        m.ops()
            .into_iter()
            .map(|o| (o.name.clone(), o.kind.clone()))
            .collect()
    };
    assert!(ops(&exp) == ops(&cap), "the two networks differ");
    assert_eq!(
        cap.train.boundary.map(|b| b.kind),
        Some(pnnc::ir::BoundaryKind::ExpCapped { cap: 10.0 })
    );
    assert_eq!(
        exp.train.boundary.map(|b| b.kind),
        Some(pnnc::ir::BoundaryKind::Exp)
    );
}

#[test]
fn resnet20_matches_pytorch_parameter_count_and_hand_counted_depth() {
    let m = load("std-models/bench/resnet20.pnn");
    // torch_reference.py build("resnet20"): 272474 conv/bn/linear parameters
    // + 19 activation sites x 9 coefficients.
    assert_eq!(m.params, 272_474 + 19 * 9);
    assert_eq!(m.input.dims(), [3, 32, 32]);
    // stem conv+poly = 1+4; 9 blocks x (max(conv,poly,conv = 6; shortcut <= 1) + poly 4); dense 1.
    let poly = levels::poly(8);
    assert_eq!(
        m.depth,
        (levels::LINEAR + poly) + 9 * (2 * levels::LINEAR + poly + poly) + levels::LINEAR
    );
    assert_eq!(m.depth, 96);
    let residuals = m
        .net
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Residual { .. }))
        .count();
    assert_eq!(
        residuals, 9,
        "blocks expand in place: 3 stages x 3 basic blocks"
    );
    let all = m.ops();
    let projections = all
        .iter()
        .filter(|o| matches!(&o.kind, OpKind::Residual { shortcut, .. } if !shortcut.is_empty()))
        .count();
    assert_eq!(projections, 2);
    assert_eq!(
        all.iter()
            .filter(|o| matches!(o.kind, OpKind::Poly(_)))
            .count(),
        19
    );
}

#[test]
fn resnet18_has_about_11_2_million_parameters() {
    let m = load("std-models/resnet18.pnn");
    assert!((11_100_000..11_300_000).contains(&m.params), "{}", m.params);
    assert_eq!(
        m.net.last().map(|o| o.output.dims().to_vec()),
        Some(vec![10])
    );
}

#[test]
fn bench_models_match_torch_reference() {
    let har = load("std-models/bench/har_mlp.pnn");
    // Linear layers 768-256-128-64-32-16-64-6 with bias, BN on 5 layers, 7 poly sites of degree 8.
    let linear = [
        (768, 256),
        (256, 128),
        (128, 64),
        (64, 32),
        (32, 16),
        (16, 64),
        (64, 6),
    ];
    let dense: u64 = linear.iter().map(|(i, o)| (i * o + o) as u64).sum();
    let bn: u64 = 2 * (256 + 128 + 64 + 32 + 16);
    assert_eq!(har.params, dense + bn + 6 * 9);
    let cnn = load("std-models/bench/mnist_cnn.pnn");
    let conv: u64 = 16 * 9 + 32 * 16 * 9 + 64 * 32 * 9;
    assert_eq!(cnn.params, conv + 2 * (16 + 32 + 64) + 64 * 10 + 10 + 3 * 9);
    let shapes: Vec<Vec<usize>> = cnn.net.iter().map(|o| o.output.dims().to_vec()).collect();
    assert_eq!(shapes[0], [16, 28, 28]);
    assert_eq!(shapes[3], [32, 14, 14]);
    assert_eq!(shapes[6], [64, 7, 7]);
}

#[test]
fn source_hash_covers_imports() {
    let m = load("std-models/resnet20.pnn");
    assert_eq!(m.source_hash.len(), 64);
    let text = std::fs::read_to_string("std-models/resnet20.pnn").expect("read");
    let alone = check::check_source("elsewhere/resnet20.pnn", &text);
    assert!(
        alone.has_errors(),
        "without its import the model cannot check"
    );
}

#[test]
fn activation_placement_option_swaps_pairs() {
    let text = std::fs::read_to_string("std-models/bench/mnist_cnn.pnn").expect("read");
    let swapped = text.replace("clip: norm", "activation: after_bn\n  clip: norm");
    let c = check::check_source("std-models/bench/mnist_cnn.pnn", &swapped);
    let m = c.model.expect("model");
    let kinds: Vec<&str> = m.net.iter().take(3).map(|o| o.kind.keyword()).collect();
    assert_eq!(kinds, ["conv", "batchnorm", "poly"]);
}

//! End-to-end tests of the HE stage on small models built in code with
//! random weights: folding equivalence, ranges, levels, format, errors.

use super::circuit::{self, CircuitError, TensorStore};
use super::lower::NodeKind;
use super::reference::Reference;
use super::{CompileOptions, HeError, build, compile, io, simulate};
use crate::ir::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

mod layers;

pub(super) fn op(name: &str, kind: OpKind, input: &[usize], output: &[usize]) -> Op {
    Op {
        name: name.into(),
        kind,
        input: Shape(input.to_vec()),
        output: Shape(output.to_vec()),
        params: 0,
        levels: 0,
        level: 0,
        loc: SrcLoc::default(),
    }
}

pub(super) fn dense(name: &str, i: usize, o: usize) -> Op {
    let kind = OpKind::Dense {
        in_features: i,
        out_features: o,
        bias: true,
    };
    op(name, kind, &[i], &[o])
}

pub(super) fn conv(name: &str, input: [usize; 3], co: usize, k: usize, s: usize, p: usize) -> Op {
    let [ci, h, w] = input;
    let out = [co, (h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1];
    let kind = OpKind::Conv {
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        bias: true,
        groups: 1,
    };
    op(name, kind, &input, &out)
}

pub(super) fn bn(name: &str, shape: &[usize]) -> Op {
    let kind = OpKind::BatchNorm {
        channels: shape[0],
        eps: 1e-5,
        momentum: 0.1,
        foldable: true,
    };
    op(name, kind, shape, shape)
}

pub(super) fn act(name: &str, shape: &[usize], degree: u32, basis: Basis, range: f64) -> Op {
    let kind = OpKind::Poly(PolyAct {
        def: "p".into(),
        degree,
        basis,
        range,
        fit: FitTarget::Relu,
        fit_method: FitMethod::LeastSquares { points: 100 },
        learnable: true,
        coeffs: None,
    });
    op(name, kind, shape, shape)
}

pub(super) fn model(name: &str, input: &[usize], classes: usize, net: Vec<Op>) -> Model {
    let mut m = Model {
        name: name.into(),
        source_hash: format!("hash-{name}"),
        input: Shape(input.to_vec()),
        classes,
        class_names: vec![],
        net,
        train: TrainConfig {
            data: None,
            epochs: 1,
            batch: 1,
            seed: 1,
            optimizer: Optimizer::Sgd {
                lr: 0.1,
                momentum: 0.0,
                weight_decay: 0.0,
                nesterov: false,
            },
            poly_lr_scale: 0.1,
            schedule: Schedule::Constant,
            boundary: None,
            clip: None,
        },
        he: HeConfig {
            scheme: Scheme::Ckks,
            security: 128,
            depth_budget: None,
        },
        params: 0,
        depth: 0,
    };
    m.depth = build::ir_depth(&m);
    m
}

/// Tiny MLP: flatten -> dense -> poly (power basis) -> BN -> dense -> BN -> poly -> dense.
pub fn tiny_mlp() -> Model {
    model(
        "tiny_mlp",
        &[2, 5],
        3,
        vec![
            op("flat", OpKind::Flatten, &[2, 5], &[10]),
            dense("fc1", 10, 8),
            act("p1", &[8], 2, Basis::Power, 4.0),
            bn("bn1", &[8]),
            dense("fc2", 8, 6),
            bn("bn2", &[6]),
            act("p2", &[6], 3, Basis::Chebyshev, 5.0),
            dense("head", 6, 3),
        ],
    )
}

pub(super) fn conv_net() -> Model {
    model(
        "conv_net",
        &[2, 6, 6],
        3,
        vec![
            conv("c1", [2, 6, 6], 3, 3, 1, 1),
            bn("bn1", &[3, 6, 6]),
            act("p1", &[3, 6, 6], 4, Basis::Power, 6.0),
            bn("bn2", &[3, 6, 6]),
            op(
                "pool",
                OpKind::AvgPool {
                    kernel: [2, 2],
                    stride: [2, 2],
                },
                &[3, 6, 6],
                &[3, 3, 3],
            ),
            conv("c2", [3, 3, 3], 4, 3, 2, 1),
            act("p2", &[4, 2, 2], 2, Basis::Chebyshev, 6.0),
            bn("bn3", &[4, 2, 2]),
            op("flat", OpKind::Flatten, &[4, 2, 2], &[16]),
            dense("head", 16, 3),
        ],
    )
}

fn residual_net() -> Model {
    let s = [2, 4, 4];
    let body = vec![
        conv("b.c1", s, 2, 3, 1, 1),
        bn("b.bn1", &s),
        act("b.p", &s, 3, Basis::Power, 8.0),
        bn("b.bn2", &s),
        conv("b.c2", s, 2, 3, 1, 1),
        bn("b.bn3", &s),
    ];
    let block = op(
        "block",
        OpKind::Residual {
            body,
            shortcut: vec![],
        },
        &s,
        &s,
    );
    let body2 = vec![
        conv("r.c", s, 2, 3, 1, 1),
        act("r.p", &s, 2, Basis::Power, 8.0),
    ];
    let shortcut2 = vec![conv("r.sc", s, 2, 1, 1, 0), bn("r.bn", &s)];
    let block2 = op(
        "block2",
        OpKind::Residual {
            body: body2,
            shortcut: shortcut2,
        },
        &s,
        &s,
    );
    model(
        "residual_net",
        &s,
        3,
        vec![
            conv("stem", [2, 4, 4], 2, 3, 1, 1),
            act("p0", &s, 2, Basis::Power, 8.0),
            block,
            act("p1", &s, 2, Basis::Chebyshev, 16.0),
            block2,
            bn("bn_out", &s),
            op("gap", OpKind::GlobalAvgPool, &s, &[2]),
            dense("head", 2, 3),
        ],
    )
}

/// An MNIST-CNN-like net with stride-2 convs, also inside a residual block
/// with a strided projection shortcut (multiplexed layouts on both addends).
fn strided_net() -> Model {
    let (s0, s1, s2) = ([4, 16, 16], [8, 8, 8], [16, 4, 4]);
    let block = op(
        "down",
        OpKind::Residual {
            body: vec![
                conv("down.c", s0, 8, 3, 2, 1),
                act("down.p", &s1, 2, Basis::Power, 8.0),
            ],
            shortcut: vec![conv("down.sc", s0, 8, 1, 2, 0)],
        },
        &s0,
        &s1,
    );
    model(
        "strided_net",
        &[1, 16, 16],
        3,
        vec![
            conv("c1", [1, 16, 16], 4, 3, 1, 1),
            act("p1", &s0, 2, Basis::Power, 6.0),
            bn("bn1", &s0),
            block,
            act("p2", &s1, 2, Basis::Chebyshev, 16.0),
            conv("c3", s1, 16, 3, 2, 1),
            act("p3", &s2, 2, Basis::Chebyshev, 16.0),
            op("gap", OpKind::GlobalAvgPool, &s2, &[16]),
            dense("head", 16, 3),
        ],
    )
}

/// Random weights of the right shapes; small enough that activations stay in range.
pub fn random_checkpoint(m: &Model, seed: u64) -> Checkpoint {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ck = Checkpoint {
        model_name: m.name.clone(),
        model_hash: m.source_hash.clone(),
        normalization: Normalization {
            mean: (0..m.input.dims()[0])
                .map(|c| 0.3 + 0.1 * c as f32)
                .collect(),
            std: (0..m.input.dims()[0])
                .map(|c| 0.25 + 0.1 * c as f32)
                .collect(),
        },
        ..Default::default()
    };
    for o in m.ops() {
        for (name, shape) in o.param_shapes() {
            let n: usize = shape.iter().product();
            let fan_in = if shape.len() > 1 {
                shape[1..].iter().product::<usize>()
            } else {
                1
            };
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    if name.ends_with("running_var") || name.ends_with("gamma") {
                        rng.gen_range(0.5..1.5)
                    } else if name.ends_with("coeffs") {
                        rng.gen_range(-0.5..0.5)
                    } else {
                        rng.gen_range(-1.0..1.0) / (fan_in as f32).sqrt()
                    }
                })
                .collect();
            ck.tensors.insert(name, Tensor::new(shape, data));
        }
    }
    ck
}

pub(super) fn random_input(m: &Model, rng: &mut StdRng) -> Vec<f64> {
    (0..m.input.numel())
        .map(|_| rng.gen_range(0.0..1.0))
        .collect()
}

pub(super) fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pnnc-he-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.circuit.json"))
}

fn max_rel_diff(a: &[f64], b: &[f64]) -> f64 {
    let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// Folded (lowered graph), circuit (written, reloaded, simulated) and the
/// unfolded reference agree to 1e-5 relative.
fn check_equivalence(m: &Model, inline_limit: usize) {
    let ck = random_checkpoint(m, 7);
    let compiled = compile(m, &ck, &CompileOptions::default()).unwrap();
    assert_eq!(compiled.circuit.depth, m.depth, "circuit depth vs IR depth");
    check_equivalence_of(m, &ck, &compiled, inline_limit);
}

/// `compiled` (from `ck`) agrees with the reference on random inputs.
fn check_equivalence_of(
    m: &Model,
    ck: &Checkpoint,
    compiled: &super::Compiled,
    inline_limit: usize,
) {
    assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    let path = tmp(&m.name);
    io::write(&path, &compiled.circuit, &compiled.tensors, inline_limit).unwrap();
    let loaded = io::load(&path).unwrap();
    let reference = Reference::new(m, ck).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..20 {
        let x = random_input(m, &mut rng);
        let want = reference.logits(&x).unwrap();
        let folded = compiled.lowered.eval(&x);
        let circuit = simulate::logits(&loaded, &x, None);
        assert!(
            max_rel_diff(&want, &folded) < 1e-5,
            "{want:?} vs folded {folded:?}"
        );
        assert!(
            max_rel_diff(&want, &circuit) < 1e-5,
            "{want:?} vs circuit {circuit:?}"
        );
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn folding_is_exact_for_a_dense_model() {
    let m = tiny_mlp();
    check_equivalence(&m, io::INLINE_LIMIT);
    // BNs and 1/B fold away: 3 linear ops (the 6 -> 3 head as a fold:
    // linear + sum), 2 polys, nothing else.
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    let kinds: Vec<_> = c.circuit.ops.iter().map(|o| o.source.join("+")).collect();
    assert_eq!(c.circuit.ops.len(), 6, "{kinds:?}");
    assert!(matches!(
        c.circuit.ops[5].kind,
        circuit::OpKind::Sum {
            stride: 3,
            count: 2,
            ..
        }
    ));
}

/// A wide dense layer (a classifier head) becomes a linear op with 2m - 1
/// diagonals into m-long pieces, summed by rotations: exact, few diagonals.
#[test]
fn wide_linear_ops_fold_into_few_diagonals() {
    let m = model(
        "wide_head",
        &[300],
        5,
        vec![
            dense("fc", 300, 64),
            act("p", &[64], 2, Basis::Chebyshev, 8.0),
            dense("head", 64, 5),
        ],
    );
    check_equivalence(&m, io::INLINE_LIMIT);
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    let linear: Vec<usize> = c
        .circuit
        .ops
        .iter()
        .filter_map(|o| match &o.kind {
            circuit::OpKind::Linear { diagonals, .. } => Some(diagonals.len()),
            _ => None,
        })
        .collect();
    // 300 -> 64 unfolded: 363 diagonals; folded (m = 64): at most 127.
    assert!(linear[0] <= 127, "{linear:?}");
    assert!(linear[1] <= 9, "{linear:?}");
    let sums: Vec<_> = c
        .circuit
        .ops
        .iter()
        .filter(|o| matches!(o.kind, circuit::OpKind::Sum { .. }))
        .map(|o| o.level_in == o.level_out)
        .collect();
    assert_eq!(sums, [true, true], "a sum costs no level");
}

#[test]
fn sum_rotations_follow_the_doubling_rule() {
    // 7 terms of stride 4: doublings 4, 8 (4 terms), then offsets 16 (bit 1)
    // and 24 (bit 0).
    assert_eq!(build::sum_rotations(4, 7), [4, 8, 16, 24]);
    assert_eq!(build::sum_rotations(3, 1), Vec::<i64>::new());
    assert_eq!(build::sum_rotations(1, 8), [1, 2, 4]);
}

/// The same model with both activations in `basis`: B = 4 and 8 (powers
/// of two) and dyadic coefficients, so that every conversion is exact.
fn dyadic_mlp(basis: Basis) -> Model {
    model(
        "dyadic_mlp",
        &[6],
        3,
        vec![
            dense("fc1", 6, 5),
            act("p1", &[5], 2, basis, 4.0),
            bn("bn1", &[5]),
            dense("fc2", 5, 4),
            act("p2", &[4], 3, basis, 8.0),
            dense("head", 4, 3),
        ],
    )
}

/// A raw_power model compiles to the same circuit as the Chebyshev model
/// of the same function: equal circuits (bit for bit) and equal outputs.
#[test]
fn raw_power_compiles_to_the_chebyshev_circuit_of_the_same_function() {
    let cheb_model = dyadic_mlp(Basis::Chebyshev);
    let raw_model = dyadic_mlp(Basis::RawPower);
    let cheb_ck = random_checkpoint(&cheb_model, 7);
    let mut raw_ck = cheb_ck.clone();
    let chebyshev = [
        ("p1", 4.0, vec![0.5f32, 0.25, 0.125]),
        ("p2", 8.0, vec![0.25, 0.5, -0.125, 0.0625]),
    ];
    let mut cheb_ck = cheb_ck;
    for (site, range, c) in chebyshev {
        let name = format!("{site}.coeffs");
        let c64: Vec<f64> = c.iter().map(|&v| f64::from(v)).collect();
        let raw =
            crate::train::fit::power_to_raw(&crate::train::fit::chebyshev_to_power(&c64), range);
        let raw32: Vec<f32> = raw.iter().map(|&v| v as f32).collect();
        assert!(
            raw32.iter().zip(&raw).all(|(a, b)| f64::from(*a) == *b),
            "{raw:?}"
        );
        cheb_ck
            .tensors
            .insert(name.clone(), Tensor::new(vec![c.len()], c));
        raw_ck
            .tensors
            .insert(name, Tensor::new(vec![raw32.len()], raw32));
    }
    assert_ne!(cheb_ck.tensors, raw_ck.tensors);
    let opts = CompileOptions::default();
    let a = compile(&cheb_model, &cheb_ck, &opts).unwrap();
    let b = compile(&raw_model, &raw_ck, &opts).unwrap();
    assert_eq!(a.circuit, b.circuit);
    assert_eq!(a.tensors, b.tensors);
    // The unfolded references (each in its own basis) agree too.
    let (ra, rb) = (
        Reference::new(&cheb_model, &cheb_ck).unwrap(),
        Reference::new(&raw_model, &raw_ck).unwrap(),
    );
    let mut rng = StdRng::seed_from_u64(3);
    for _ in 0..10 {
        let x = random_input(&cheb_model, &mut rng);
        let (ya, yb) = (ra.logits(&x).unwrap(), rb.logits(&x).unwrap());
        assert!(max_rel_diff(&ya, &yb) < 1e-12, "{ya:?} vs {yb:?}");
    }
}

#[test]
fn folding_is_exact_for_convs_with_stride_padding_and_pooling() {
    check_equivalence(&conv_net(), io::INLINE_LIMIT);
}

#[test]
fn strided_convs_keep_the_input_grid_and_need_few_diagonals() {
    let m = strided_net();
    check_equivalence(&m, io::INLINE_LIMIT);
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    let gaps: Vec<(String, Option<usize>)> = c
        .circuit
        .ops
        .iter()
        .map(|o| (o.source.join("+"), o.layout.map(|l| l.gap)))
        .collect();
    let gap_of = |name: &str| {
        gaps.iter()
            .find(|(s, _)| s.split('+').any(|p| p == name))
            .and_then(|(_, g)| *g)
    };
    assert_eq!(gap_of("c1"), Some(1), "{gaps:?}");
    assert_eq!(gap_of("down.c"), Some(2), "{gaps:?}");
    assert_eq!(gap_of("down.sc"), Some(2), "{gaps:?}");
    assert_eq!(gap_of("c3"), Some(4), "{gaps:?}");
    assert_eq!(c.circuit.ops.last().unwrap().layout, None);
    // A layout edited by hand is caught on load.
    let path = tmp("strided-bad");
    io::write(&path, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let err = edit(&path, "\"gap\": 4", "\"gap\": 8").unwrap_err();
    assert!(err.to_string().contains("layout"), "{err}");
    // Against the dense layout (the lowered graph's logical matrices), the
    // strided convs need several times fewer diagonals.
    for (op, node) in c.circuit.ops.iter().zip(&c.lowered.nodes[1..]) {
        if let (circuit::OpKind::Linear { diagonals, .. }, NodeKind::Linear(map)) =
            (&op.kind, &node.kind)
        {
            let dense =
                build::signed_diagonals(map.rows.iter().enumerate().flat_map(|(r, row)| {
                    row.iter().map(move |&(col, _)| (r as i64, i64::from(col)))
                }));
            if op.layout.is_some_and(|l| l.gap > 1) && op.in_shape[1] > op.out_shape[1] {
                assert!(
                    diagonals.len() * 3 < dense.len(),
                    "{:?}: {} diagonals, dense layout {}",
                    op.source,
                    diagonals.len(),
                    dense.len()
                );
            }
        }
    }
}

#[test]
fn folding_is_exact_for_residual_blocks_with_sidecar_weights() {
    check_equivalence(&residual_net(), 0);
}

#[test]
fn interval_bounds_contain_every_observed_activation_input() {
    for m in [tiny_mlp(), conv_net(), residual_net()] {
        let ck = random_checkpoint(&m, 11);
        let compiled = compile(&m, &ck, &CompileOptions::default()).unwrap();
        let reference = Reference::new(&m, &ck).unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        for _ in 0..50 {
            let x = random_input(&m, &mut rng);
            let mut observed = Vec::new();
            reference
                .run(&x, &mut |name, v| {
                    observed.push((
                        name.to_string(),
                        v.iter().fold(0.0f64, |a, x| a.max(x.abs())),
                    ))
                })
                .unwrap();
            for (name, max) in observed {
                let (bound, range) = compiled
                    .circuit
                    .ops
                    .iter()
                    .find_map(|o| match &o.kind {
                        super::circuit::OpKind::Poly {
                            interval_bound,
                            declared_range,
                            ..
                        } if o.source.contains(&name) => Some((*interval_bound, *declared_range)),
                        _ => None,
                    })
                    .unwrap();
                // None = no finite bound: nothing to check.
                let Some(bound) = bound else { continue };
                assert!(
                    max / range <= bound * (1.0 + 1e-9) + 1e-12,
                    "{name}: {max} > {bound} * {range}"
                );
            }
        }
    }
}

#[test]
fn circuit_bytes_are_deterministic() {
    let m = conv_net();
    let ck = random_checkpoint(&m, 7);
    let a = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let b = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let (pa, pb) = (tmp("det_a"), tmp("det_b"));
    io::write(&pa, &a.circuit, &a.tensors, io::INLINE_LIMIT).unwrap();
    io::write(&pb, &b.circuit, &b.tensors, io::INLINE_LIMIT).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
}

fn edit(path: &Path, from: &str, to: &str) -> Result<(), CircuitError> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "fixture lacks {from}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
    io::load(path).map(|_| ())
}

#[test]
fn bad_circuits_are_clear_errors() {
    let m = tiny_mlp();
    let ck = random_checkpoint(&m, 7);
    let c = compile(&m, &ck, &CompileOptions::default()).unwrap();
    let path = tmp("bad");
    let write = || io::write(&path, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    write();
    let err = edit(
        &path,
        &format!("\"version\": {}", circuit::VERSION),
        "\"version\": 1",
    )
    .unwrap_err();
    assert!(
        matches!(err, CircuitError::Version { found: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("recompile"), "{err}");
    write();
    let err = edit(&path, "\"level_out\": 1", "\"level_out\": 3").unwrap_err();
    assert!(
        matches!(err, CircuitError::Invalid { .. }) && err.to_string().contains("levels"),
        "{err}"
    );
    write();
    let err = edit(&path, "\"degree\": 2", "\"degree\": 5").unwrap_err();
    assert!(err.to_string().contains("coefficients"), "{err}");
    write();
    let err = edit(&path, "\"op\": \"poly\"", "\"op\": \"mul\"").unwrap_err();
    assert!(matches!(err, CircuitError::Invalid { .. }), "{err}");
    write();
    let err = edit(&path, "\"rotations\": [", "\"rotations\": [99999, ").unwrap_err();
    assert!(matches!(err, CircuitError::Invalid { .. }), "{err}");
    write();
    let err = edit(
        &path,
        "\"key_switch_digits\": 4",
        "\"key_switch_digits\": 3",
    )
    .unwrap_err();
    assert!(err.to_string().contains("log_qp"), "{err}");
    write();
    let err = edit(
        &path,
        "\"samples_per_ciphertext\": 512",
        "\"samples_per_ciphertext\": 1024",
    )
    .unwrap_err();
    assert!(err.to_string().contains("samples_per_ciphertext"), "{err}");
    std::fs::write(&path, "{\"format\": \"pnnc-circuit\"").unwrap();
    assert!(matches!(
        io::load(&path).unwrap_err(),
        CircuitError::Parse { .. }
    ));
    // A sidecar that is not the one the circuit was written with.
    io::write(&path, &c.circuit, &c.tensors, 0).unwrap();
    let side = io::sidecar_path(&path);
    let other = compile(&m, &random_checkpoint(&m, 8), &CompileOptions::default()).unwrap();
    std::fs::write(&side, io::sidecar_bytes(&other.tensors).unwrap()).unwrap();
    let err = io::load(&path).unwrap_err();
    assert!(
        matches!(err, CircuitError::Sidecar { .. }) && err.to_string().contains("sha256"),
        "{err}"
    );
    assert!(matches!(c.circuit.tensors, TensorStore::Inline { .. }));
}

#[test]
fn missing_or_bad_weights_name_the_op() {
    let m = tiny_mlp();
    let mut ck = random_checkpoint(&m, 7);
    ck.tensors.remove("bn1.running_var");
    let err = compile(&m, &ck, &CompileOptions::default()).unwrap_err();
    assert!(err.to_string().contains("bn1.running_var"), "{err}");
    let mut ck = random_checkpoint(&m, 7);
    ck.tensors.get_mut("fc2.weight").unwrap().data[3] = f32::NAN;
    let err = compile(&m, &ck, &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(err, HeError::Weights { .. }) && err.to_string().contains("fc2"),
        "{err}"
    );
}

#[test]
fn an_impossible_declared_range_is_a_compile_error() {
    let m = tiny_mlp();
    let mut ck = random_checkpoint(&m, 7);
    // A bias of 100 puts every input of p1 far beyond B = 4.
    ck.tensors.get_mut("fc1.bias").unwrap().data[0] = 100.0;
    let err = compile(&m, &ck, &CompileOptions::default()).unwrap_err();
    assert!(
        matches!(err, HeError::Range { ref op, .. } if op == "p1"),
        "{err}"
    );
}

#[test]
fn parameters_follow_depth_and_deep_circuits_get_a_bootstrapping_plan() {
    let m = tiny_mlp();
    let c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    // depth: 3 linear + poly(2)=2 + poly(3)=2 = 7.
    assert_eq!(c.circuit.depth, 7);
    let p = &c.circuit.params;
    // 2^14 fits with 4 key-switching digits at scale 37 (docs/he.md).
    assert_eq!(
        (p.ring_dim, p.mult_depth, p.scale_bits, p.key_switch_digits),
        (16384, 7, 37, 4)
    );
    assert_eq!((p.log_q, p.log_qp), (316, 436));
    assert_eq!(c.circuit.packing.samples_per_ciphertext, 8192 / 16);
    assert!(p.bootstrapping.is_none());
    assert_eq!(c.circuit.packing.dim, 16);
    // A deep MLP: 12 x (dense + degree-8 poly) = 12 * 5 = 60 levels.
    let mut net = vec![];
    for i in 0..12 {
        net.push(dense(&format!("fc{i}"), 4, 4));
        net.push(act(&format!("p{i}"), &[4], 8, Basis::Chebyshev, 8.0));
    }
    net.push(dense("head", 4, 2));
    let deep = model("deep", &[4], 2, net);
    let deep_ck = random_checkpoint(&deep, 1);
    let c = compile(&deep, &deep_ck, &CompileOptions::default()).unwrap();
    let p = &c.circuit.params;
    let plan = p.bootstrapping.as_ref().expect("a plan");
    assert_eq!(p.ring_dim, 65536);
    assert_eq!(p.secret_key, super::params::SecretKey::SparseTernary);
    assert!(p.log_qp <= p.max_log_q, "{p:?}");
    // Sparse secret, budget [3, 3]: a bootstrap leaves 16 levels consumed.
    assert_eq!(plan.bootstrap_levels, 16);
    let boots: Vec<usize> = c
        .circuit
        .ops
        .iter()
        .filter(|o| matches!(o.kind, circuit::OpKind::Bootstrap { .. }))
        .map(|o| o.id)
        .collect();
    assert_eq!(boots.len(), plan.bootstraps as usize);
    // 60 levels in segments of mult_depth - 16: never fewer bootstraps than
    // that allows, and only activation inputs are refreshed.
    let segment = p.mult_depth - plan.bootstrap_levels;
    assert!(
        boots.len() as u32 >= (61 - p.mult_depth).div_ceil(segment),
        "{boots:?}"
    );
    for &b in &boots {
        let op = &c.circuit.ops[b - 1];
        assert_eq!(op.level_out, plan.bootstrap_levels);
        let reader = &c.circuit.ops[b];
        assert_eq!(reader.inputs, [b]);
        assert!(matches!(reader.kind, circuit::OpKind::Poly { .. }));
    }
    assert!(c.circuit.ops.iter().all(|o| o.level_out <= p.mult_depth));
    // The bootstrapped circuit validates and still computes the network.
    check_equivalence_of(&deep, &deep_ck, &c, io::INLINE_LIMIT);
}

/// On a chain, refreshing an activation's input only when the levels would
/// run out gives the fewest bootstraps: compare with every placement.
#[test]
fn bootstraps_are_placed_as_late_as_possible() {
    let mut net = vec![];
    for i in 0..6 {
        net.push(dense(&format!("fc{i}"), 4, 4));
        net.push(act(&format!("p{i}"), &[4], 3, Basis::Chebyshev, 8.0));
    }
    net.push(dense("head", 4, 2));
    let m = model("chain", &[4], 2, net);
    let lowered = super::lower::lower(
        &m,
        &super::reference::CheckpointParams(&random_checkpoint(&m, 1)),
        None,
    )
    .unwrap();
    let polys: Vec<usize> = lowered
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.kind, NodeKind::Poly { .. }))
        .map(|(i, _)| i)
        .collect();
    // Each layer: linear 1 + poly 2 = 3 levels; a bootstrap leaves level 4.
    for mult_depth in 7..=12 {
        let greedy = super::bootstrap::place(&lowered.nodes, lowered.output, mult_depth, Some(4))
            .ok()
            .map(|p| p.refresh.len());
        // Brute force: any subset of poly inputs refreshed, levels by the rules.
        let mut fewest = usize::MAX;
        for mask in 0u32..(1 << polys.len()) {
            let mut level = vec![0u32; lowered.nodes.len()];
            let mut ok = true;
            for (i, n) in lowered.nodes.iter().enumerate().skip(1) {
                let mut l_in = n.inputs.iter().map(|&j| level[j]).max().unwrap_or(0);
                if let Some(k) = polys.iter().position(|&p| p == i)
                    && mask & (1 << k) != 0
                {
                    // OpenFHE bootstraps a value past level 4 with a level left.
                    ok &= l_in > 4 && l_in < mult_depth;
                    l_in = 4;
                }
                level[i] = l_in + super::bootstrap::node_cost(&n.kind);
                ok &= level[i] <= mult_depth;
            }
            if ok {
                fewest = fewest.min(mask.count_ones() as usize);
            }
        }
        let fewest = (fewest < usize::MAX).then_some(fewest);
        assert_eq!(greedy, fewest, "mult_depth {mult_depth}");
        // From 8 levels on a layer fits between bootstraps with one to spare.
        assert_eq!(greedy.is_some(), mult_depth >= 8, "mult_depth {mult_depth}");
    }
    // Too few levels after a bootstrap for a layer: an error naming the activation.
    let err = super::bootstrap::place(&lowered.nodes, lowered.output, 7, Some(4)).unwrap_err();
    assert!(err.to_string().contains("activation `p"), "{err}");
}

/// Eight dense -> poly 3 layers and a head: 8 x (1 + 2) + 1 = 25 levels,
/// more than the toy chain of 16 + 6 levels holds without a bootstrap.
fn toy_bootstrap_model() -> (Model, Checkpoint, super::Tuning) {
    let mut net = vec![];
    for i in 0..8 {
        net.push(dense(&format!("fc{i}"), 8, 8));
        net.push(act(&format!("p{i}"), &[8], 3, Basis::Chebyshev, 8.0));
    }
    net.push(dense("head", 8, 3));
    let m = model("toy_boot", &[8], 3, net);
    let ck = random_checkpoint(&m, 3);
    let tuning = super::Tuning {
        security: Some(0),
        max_ring_dim: Some(1 << 12),
        max_levels: Some(16 + 6),
    };
    (m, ck, tuning)
}

/// Toy (insecure) parameters force bootstrapping on a small model, so that
/// the runner can execute it quickly in tests; too few levels name the op.
#[test]
fn toy_parameters_bootstrap_small_models_and_name_the_op_that_does_not_fit() {
    let (m, ck, tuning) = toy_bootstrap_model();
    let c = super::compile_with(&m, &ck, &CompileOptions::default(), &tuning).unwrap();
    let p = &c.circuit.params;
    assert_eq!((p.ring_dim, p.security), (4096, 0));
    assert!(p.mult_depth <= 22);
    assert!(p.bootstrapping.as_ref().unwrap().bootstraps >= 1);
    check_equivalence_of(&m, &ck, &c, io::INLINE_LIMIT);
    // A bootstrap of a value with more levels left than it leaves is a no-op
    // in OpenFHE: such a circuit is invalid.
    let mut noop = c.circuit.clone();
    let boot = noop
        .ops
        .iter_mut()
        .find(|o| matches!(o.kind, circuit::OpKind::Bootstrap { .. }))
        .unwrap();
    assert!(boot.level_in > boot.level_out);
    boot.level_out = boot.level_in;
    noop.params.bootstrapping.as_mut().unwrap().bootstrap_levels = boot.level_in;
    let path = tmp("noop_bootstrap");
    io::write(&path, &noop, &c.tensors, io::INLINE_LIMIT).unwrap();
    let err = io::load(&path).unwrap_err();
    assert!(err.to_string().contains("does nothing"), "{err}");
    let tight = super::Tuning {
        max_levels: Some(16 + 2),
        ..tuning
    };
    let err = super::compile_with(&m, &ck, &CompileOptions::default(), &tight).unwrap_err();
    assert!(err.to_string().contains("activation `p"), "{err}");
}

#[test]
fn a_circuit_without_a_finite_interval_bound_round_trips() {
    // Deep high-degree networks overflow interval arithmetic; JSON has no
    // infinity, so the bound is written as null and read back as None.
    let m = tiny_mlp();
    let mut c = compile(&m, &random_checkpoint(&m, 7), &CompileOptions::default()).unwrap();
    for op in &mut c.circuit.ops {
        if let super::circuit::OpKind::Poly { interval_bound, .. } = &mut op.kind {
            *interval_bound = None;
        }
    }
    let path = tmp("unbounded");
    io::write(&path, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"interval_bound\": null"));
    assert_eq!(io::load(&path).unwrap().circuit.ops, c.circuit.ops);
}

#[test]
fn calibration_counts_inputs_outside_the_range_per_site() {
    let m = tiny_mlp();
    let mut ck = random_checkpoint(&m, 7);
    // A bias of 100 puts unit 0 of every sample far beyond p1's B = 4.
    ck.tensors.get_mut("fc1.bias").unwrap().data[0] = 100.0;
    let mut rng = StdRng::seed_from_u64(5);
    let xs: Vec<Vec<f64>> = (0..3).map(|_| random_input(&m, &mut rng)).collect();
    let sites = super::calibrate::calibrate(&m, &ck, xs.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(sites.keys().collect::<Vec<_>>(), ["p1", "p2"]);
    let p1 = sites["p1"];
    assert_eq!((p1.range, p1.values, p1.samples_outside), (4.0, 3 * 8, 3));
    assert!(p1.max_abs > 50.0 && p1.outside >= 3, "{p1:?}");
    assert!((p1.outside_fraction() - p1.outside as f64 / 24.0).abs() < 1e-12);
    // A sample of the wrong length is an error, not a panic.
    assert!(super::calibrate::calibrate(&m, &ck, [[0.0; 3].as_slice()]).is_err());
}

#[test]
fn bsgs_rule_examples() {
    // A full 8x8 matrix: signed diagonals -7..=7. g = 4 gives baby {1,2,3}
    // and giant {-8,-4,4} (6 keys); g = 2 needs 8, g = 1 needs 14.
    let all: Vec<i64> = (-7..8).collect();
    assert_eq!(build::bsgs(&all, 8), (4, vec![-8, -4, 1, 2, 3, 4]));
    // A 3-tap band {-1, 0, 1}: g = 1 (keys -1, 1) ties g = 2 (keys 1, -2);
    // the smaller g wins.
    assert_eq!(build::bsgs(&[-1, 0, 1], 16), (1, vec![-1, 1]));
    // Only the main diagonal: no rotations.
    assert_eq!(build::bsgs(&[0], 8), (1, vec![]));
    // A 3x3 convolution's diagonals on a 28x28 grid, channel offsets of 784:
    // g = 784 (not a power of two) splits them into taps and channels.
    let taps = [-29, -28, -27, -1, 0, 1, 27, 28, 29];
    let conv: Vec<i64> = (-3..=3)
        .flat_map(|a| taps.iter().map(move |t| a * 784 + t))
        .collect();
    let (g, rotations) = build::bsgs(&conv, 4096);
    assert_eq!(g, 784);
    assert!(rotations.len() <= 16, "{rotations:?}");
    assert_eq!(
        build::signed_diagonals([(0, 2), (3, 1), (1, 3)].into_iter()),
        vec![-2, 2]
    );
}

/// The example circuit for the runner (tests/fixtures/tiny.circuit.json):
/// regenerated when missing or PNNC_UPDATE_FIXTURES is set, else compared.
#[test]
fn tiny_fixture_is_up_to_date() {
    let m = tiny_mlp();
    let ck = random_checkpoint(&m, 7);
    let c = compile(&m, &ck, &CompileOptions::default()).unwrap();
    fixture_is_up_to_date("tiny", &m, &ck, &c);
}

/// A compiled circuit with a bootstrap for the encrypted test in
/// tests/he_run.rs (tests/fixtures/toy_bootstrap.circuit.json): toy,
/// insecure parameters (security 0, N = 2^12) so that it runs in seconds.
#[test]
fn toy_bootstrap_fixture_is_up_to_date() {
    let (m, ck, tuning) = toy_bootstrap_model();
    let c = super::compile_with(&m, &ck, &CompileOptions::default(), &tuning).unwrap();
    assert!(c.circuit.params.bootstrapping.is_some());
    fixture_is_up_to_date("toy_bootstrap", &m, &ck, &c);
}

/// Writes tests/fixtures/NAME.circuit.json (and NAME.samples.json, inputs
/// with reference logits) when missing or PNNC_UPDATE_FIXTURES is set, else
/// checks that a fresh compile gives the same bytes.
fn fixture_is_up_to_date(name: &str, m: &Model, ck: &Checkpoint, c: &super::Compiled) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.circuit.json"));
    let fresh = tmp(&format!("fixture_{name}"));
    io::write(&fresh, &c.circuit, &c.tensors, io::INLINE_LIMIT).unwrap();
    let bytes = std::fs::read(&fresh).unwrap();
    if !path.exists() || std::env::var_os("PNNC_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &bytes).unwrap();
        // Sample inputs with reference logits, for runners to check against.
        let reference = Reference::new(m, ck).unwrap();
        let mut rng = StdRng::seed_from_u64(3);
        let samples: Vec<_> = (0..4)
            .map(|_| {
                let x = random_input(m, &mut rng);
                let y = reference.logits(&x).unwrap();
                serde_json::json!({"x": x, "logits": y})
            })
            .collect();
        let text = serde_json::to_string_pretty(&samples).unwrap() + "\n";
        std::fs::write(path.with_file_name(format!("{name}.samples.json")), text).unwrap();
    }
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "{} differs from a fresh compile: run with PNNC_UPDATE_FIXTURES=1 to refresh",
        path.display()
    );
}

#[test]
fn cli_compile_then_simulate_agrees_with_the_reference() {
    use crate::cli::{calibrate, compile as cc, simulate as cs};
    use std::process::ExitCode;
    let m = conv_net();
    let ck = random_checkpoint(&m, 7);
    let dir = tmp("cli").parent().unwrap().to_path_buf();
    let model_path = dir.join("conv.json");
    std::fs::write(&model_path, serde_json::to_string(&m).unwrap()).unwrap();
    let w = dir.join("conv.safetensors");
    ck.save(&w).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let samples: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"x": random_input(&m, &mut rng), "label": i % 3}))
        .collect();
    let data = dir.join("samples.json");
    std::fs::write(&data, serde_json::to_string(&samples).unwrap()).unwrap();
    let out = dir.join("conv.circuit.json");
    let code = cc::run(&cc::CompileArgs {
        model: model_path.clone(),
        weights: w.clone(),
        output: Some(out.clone()),
        input_range: "0,1".into(),
        calibration: None,
    });
    assert_eq!(code, ExitCode::SUCCESS);
    let code = cs::run(&cs::SimulateArgs {
        circuit: out.clone(),
        data: None,
        inputs: Some(data.clone()),
        samples: Some(5),
        pick: Default::default(),
        noise: true,
        model: Some(model_path.clone()),
        weights: Some(w.clone()),
    });
    assert_eq!(code, ExitCode::SUCCESS);
    let code = calibrate::run(&calibrate::CalibrateArgs {
        model: model_path.clone(),
        weights: w,
        data: None,
        inputs: Some(data),
        samples: None,
        pick: Default::default(),
        output: None,
        overwrite: false,
    });
    assert_eq!(code, ExitCode::SUCCESS);
    // Weights of another model are a usage error, not a panic.
    let other = random_checkpoint(&tiny_mlp(), 1);
    let wrong = dir.join("other.safetensors");
    other.save(&wrong).unwrap();
    let code = cc::run(&cc::CompileArgs {
        model: model_path,
        weights: wrong,
        output: Some(out),
        input_range: "0,1".into(),
        calibration: None,
    });
    assert_eq!(code, ExitCode::from(2));
    std::fs::remove_dir_all(&dir).ok();
}

fn std_model(path: &str) -> Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let checked = crate::check::check_path(&path).unwrap();
    assert!(checked.diagnostics.is_empty(), "{}", path.display());
    checked.model.unwrap()
}

/// The real MNIST CNN and ResNet-20: multiplexed layouts keep every linear op
/// small, the circuits validate, and ResNet-20 (depth > N = 2^16 allows) gets
/// a bootstrapping plan instead of an error.
#[test]
fn std_model_circuits_have_small_linear_ops() {
    // Diagonals of every linear op whose output is an image (the convs), and of the head.
    let diagonals = |c: &circuit::Circuit, image: bool| -> Vec<usize> {
        c.ops
            .iter()
            .filter(|o| o.layout.is_some() == image)
            .filter_map(|o| match &o.kind {
                circuit::OpKind::Linear { diagonals, .. } => Some(diagonals.len()),
                _ => None,
            })
            .collect()
    };
    let m = std_model("std-models/bench/mnist_cnn.pnn");
    let c = compile(&m, &random_checkpoint(&m, 1), &CompileOptions::default()).unwrap();
    assert_eq!(c.circuit.depth, m.depth);
    assert_eq!(c.circuit.params.ring_dim, 1 << 15);
    let conv_gaps: Vec<_> = c
        .circuit
        .ops
        .iter()
        .filter_map(|o| o.layout.map(|l| l.gap))
        .collect();
    assert_eq!(conv_gaps, [1, 1, 2, 2, 4, 4]);
    // Dense packing gave conv2 18,412 and conv3 9,305 diagonals; the head
    // (global pool + dense folded) reads all 3,136 slots of conv3's output:
    // 3,145 diagonals as one matrix, 19 as a fold (10 x 3,140, then a sum).
    assert_eq!(diagonals(&c.circuit, true), [144, 368, 891]);
    assert_eq!(diagonals(&c.circuit, false), [19]);
    // Baby steps of any size (784 = the grid): 226 keys with powers of two.
    assert_eq!(c.circuit.rotations.len(), 113);

    let m = std_model("std-models/resnet20.pnn");
    let c = compile(&m, &random_checkpoint(&m, 1), &CompileOptions::default()).unwrap();
    assert_eq!(c.ir_depth, m.depth);
    let p = &c.circuit.params;
    let plan = p.bootstrapping.as_ref().expect("ResNet-20 bootstraps");
    // 19 activations of degree 8 (4 levels each) plus a conv before each:
    // never more than one bootstrap per activation, and at least as many as
    // 96 levels in segments of mult_depth - 16 need.
    let segment = p.mult_depth - plan.bootstrap_levels;
    eprintln!(
        "resnet20: N {} L {} scale {} digits {} log_qp {} segment {segment} bootstraps {}",
        p.ring_dim, p.mult_depth, p.scale_bits, p.key_switch_digits, p.log_qp, plan.bootstraps
    );
    assert!(plan.bootstraps <= 19 && plan.bootstraps >= (96 - p.mult_depth).div_ceil(segment));
    assert!(p.log_qp <= p.max_log_q);
    let convs = diagonals(&c.circuit, true);
    assert_eq!(convs.len(), 21, "{convs:?}");
    assert!(convs.iter().all(|&d| d < 2000), "{convs:?}");
    // 64 channels of 8x8 at gap 4 on the 32x32 grid: 4,096 slots, folded.
    assert_eq!(diagonals(&c.circuit, false), [19]);
    let path = tmp("resnet20");
    io::write(&path, &c.circuit, &c.tensors, 0).unwrap();
    let loaded = io::load(&path);
    // 856 MB of sidecar: never left behind.
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
    loaded.unwrap();
}

//! `pnnc export torch` against pnnc itself: the PyTorch trainer of an exported
//! model must see the same batches and start from the same weights, compute the
//! same logits, loss (boundary term included) and gradients, take the same
//! optimizer step, agree between one and two gloo processes, round-trip
//! checkpoints bit for bit, and end a short run within a stated tolerance of
//! `pnnc train`. Needs a Python with torch, numpy and safetensors
//! (`$PNNC_TORCH_PYTHON`, else `python3`); without one build.rs marks every
//! test ignored with the reason (`pnnc_torch` cfg).

#[allow(dead_code)] // each test crate uses a different part of the shared helpers
mod common;

use pnnc::data::{Dataset, Splits, augment_batch};
use pnnc::export::torch::{self as export, Options};
use pnnc::ir::{Checkpoint, DataSpec, Model, Normalization, Tensor, Value};
use pnnc::train::optim::Optim;
use pnnc::train::run::{self, RunConfig, RunData, Split, Trainee};
use pnnc::train::{Network, NetworkOptions};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A network with every layer kind of the language: convolutions with bias,
/// stride and padding, polynomial sites in the basis under test (learnable and
/// fixed), BatchNorm after convolutions and dense layers, a residual with a
/// projection and one with the identity, average pooling, a scale, global
/// pooling, flatten, dense layers and dropout.
fn model_text(basis: &str, train: &str) -> String {
    format!(
        "model every_layer
input [2, 8, 8]
classes 3

act p = poly(degree: 4, fit: relu, range: 3, basis: {basis})
act q = poly(degree: 3, fit: silu, range: 2, basis: {basis}, learnable: false)

net {{
  conv(4, 3, padding: 1, bias: true); p; batchnorm
  residual {{
    conv(6, 3, stride: 2, padding: 1); q; batchnorm
    conv(6, 3, padding: 1)
  }} project {{
    conv(6, 1, stride: 2); batchnorm
  }}
  p; batchnorm
  residual {{ conv(6, 3, padding: 1); p }}
  avgpool(2)
  scale(0.5)
  global_avgpool
  flatten
  dense(10); q; batchnorm
  dropout(0.25)
  dense(classes)
}}

train {{
  {train}
}}
"
    )
}

/// Recipes under test: every basis, every boundary kind (exp with and
/// without a cap) and reduction, both clipping modes and none, AdamW and SGD
/// (with and without momentum).
const RECIPES: &[(&str, &str)] = &[
    (
        "chebyshev",
        "epochs: 2  batch: 12  seed: 3
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  boundary: exp(penalty: 1, weight: 10, reduce: sum)
  clip: norm(0.5, except: batchnorm)",
    ),
    (
        "power",
        "epochs: 2  batch: 12  seed: 4
  optimizer: adamw(lr: 5e-3, weight_decay: 0.05)
  schedule: cosine(min_lr: 0)
  boundary: l2(penalty: 1, weight: 5, reduce: max)
  clip: norm(0.5, except: none)",
    ),
    (
        "chebyshev",
        "epochs: 2  batch: 12  seed: 5
  optimizer: sgd(lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: true)
  boundary: maxnorm(weight: 0.1, reduce: l2)
  clip: none",
    ),
    (
        "power",
        "epochs: 2  batch: 12  seed: 6
  optimizer: sgd(lr: 0.1, momentum: 0)
  boundary: exp(penalty: 1, weight: 1, reduce: l1)
  clip: norm(1.0, except: batchnorm)",
    ),
    (
        "raw_power",
        "epochs: 2  batch: 12  seed: 7
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  boundary: exp(penalty: 1, weight: 10, reduce: sum, cap: 0.5)
  clip: norm(0.5, except: batchnorm)",
    ),
];

/// The recipe of the short runs: a capped exp term (inputs reach past P +
/// cap) that validation computes too, and a plateau schedule with the
/// official threshold that watches cross-entropy + that term (patience 0:
/// the rates change within the three epochs).
const RUN_RECIPE: &str = "epochs: 3  batch: 12  seed: 3
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  schedule: plateau(factor: 0.5, patience: 0, threshold: 0.1)
  boundary: exp(penalty: 1, weight: 10, reduce: sum, cap: 0.5)
  clip: norm(0.5, except: batchnorm)";

/// The Python with torch that build.rs found (tests that call this are
/// ignored by the `pnnc_torch` cfg when there is none).
fn python() -> PathBuf {
    export::find_python()
        .unwrap_or_else(|e| panic!("{e}\n(it was usable at build time but is not now: rebuild)"))
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pnnc-torch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn checked(dir: &Path, text: &str) -> Model {
    let path = dir.join("model.pnn");
    std::fs::write(&path, text).unwrap();
    pnnc::check::load_model(&path).unwrap()
}

fn config(model: &Model) -> RunConfig {
    pnnc::pipeline::recipe::run_config(model, &Default::default())
}

fn export_to(model: &Model, dir: &Path) -> PathBuf {
    let out = dir.join("export");
    export::export(model, &config(model), &Options::default(), &out, |_| Ok(())).unwrap();
    out
}

/// `python ARGS` with the export folder importable; 1 thread per process.
fn py(python: &Path, export_dir: &Path, args: &[&str]) -> Output {
    Command::new(python)
        .args(args)
        .env("PYTHONPATH", export_dir)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    text
}

/// Deterministic values in [-1, 1) (xorshift), for inputs.
fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

/// A learnable 3-class set of [2, 8, 8] images: class c brightens rows 2c..2c+2.
fn dataset(n: usize, seed: u32) -> Dataset {
    let mut x = noise(n * 128, seed);
    let y: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
    for (i, &c) in y.iter().enumerate() {
        for ch in 0..2 {
            for r in 2 * c as usize..2 * c as usize + 2 {
                for col in 0..8 {
                    x[i * 128 + ch * 64 + r * 8 + col] += 1.5;
                }
            }
        }
    }
    Dataset {
        sample_shape: vec![2, 8, 8],
        x,
        y,
        class_names: vec!["a".into(), "b".into(), "c".into()],
    }
}

fn write_batch(path: &Path, x: &[f32], y: &[u32]) {
    let n = y.len();
    let xb: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let yb: Vec<u8> = y.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect();
    let views = vec![
        (
            "x",
            TensorView::new(Dtype::F32, vec![n, 2, 8, 8], &xb).unwrap(),
        ),
        ("y", TensorView::new(Dtype::I64, vec![n], &yb).unwrap()),
    ];
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// pnnc's gradients as `grad/<param>` tensors, for `dump --grads`.
fn write_grads(path: &Path, want: &PnncStep) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = want
        .grads
        .iter()
        .map(|(name, g)| {
            let raw = g.iter().flat_map(|v| v.to_le_bytes()).collect();
            (format!("grad/{name}"), raw, want.after[name].shape.clone())
        })
        .collect();
    let views = bytes.iter().map(|(n, raw, shape)| {
        (
            n.clone(),
            TensorView::new(Dtype::F32, shape.clone(), raw).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Tensors and metadata of a safetensors file written by the Python side.
fn read_dump(path: &Path) -> (BTreeMap<String, Vec<f32>>, HashMap<String, String>) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (k, data)
        })
        .collect();
    (tensors, header.metadata().clone().unwrap_or_default())
}

/// max |a - b| <= tol * max |b| (plus a floor for all-zero tensors).
fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    assert!(
        diff <= tol * scale + 1e-12,
        "{what}: max difference {diff:e} exceeds {tol:e} x max |pnnc| {scale:e}"
    );
}

fn assert_scalar(what: &str, a: f64, b: f64, tol: f64) {
    assert!(
        (a - b).abs() <= tol * b.abs().max(1e-12),
        "{what}: torch {a} vs pnnc {b}"
    );
}

/// pnnc's network after two updates on other data: non-trivial weights and running statistics.
fn trained_network(model: &Model, cfg: &RunConfig) -> Network {
    let mut net = Network::new(model, cfg.seed, &NetworkOptions::default()).unwrap();
    let meta = net.param_meta();
    let lens: Vec<usize> = meta.iter().map(|m| m.len).collect();
    let mut optim = Optim::new(&cfg.optimizer, &lens);
    let d = dataset(12, 99);
    let lr = cfg.optimizer.lr();
    for step in 0..2 {
        Trainee::step(&mut net, &d.x, &d.y, 12, cfg.boundary.as_ref(), step).unwrap();
        run::update(
            &mut net,
            &meta,
            &mut optim,
            cfg.clip.as_ref(),
            [lr, lr * cfg.poly_lr_scale],
        )
        .unwrap();
    }
    net
}

fn checkpoint(model: &Model, net: &Network) -> Checkpoint {
    Checkpoint {
        model_name: model.name.clone(),
        model_hash: model.source_hash.clone(),
        normalization: Normalization {
            mean: vec![0.5, -0.25],
            std: vec![2.0, 0.75],
        },
        tensors: net.to_tensors(),
        metadata: [("epoch".to_string(), "1".to_string())].into(),
    }
}

/// What pnnc computes for one step on (x, y) from `net`: eval logits, the
/// step's losses and gradients (before clipping) and the tensors after one update.
struct PnncStep {
    logits: Vec<f32>,
    out: pnnc::train::StepOutput,
    grads: BTreeMap<String, Vec<f32>>,
    after: BTreeMap<String, Tensor>,
}

fn pnnc_step(mut net: Network, cfg: &RunConfig, x: &[f32], y: &[u32], seed: u64) -> PnncStep {
    let n = y.len();
    let logits = net.predict(x, n).unwrap();
    let out = net
        .train_step(x, y, n, cfg.boundary.as_ref(), seed)
        .unwrap();
    let mut grads = BTreeMap::new();
    net.visit_params_mut(&mut |_, info, _, g| {
        grads.insert(info.name.clone(), g.to_vec());
    });
    let meta = net.param_meta();
    let lens: Vec<usize> = meta.iter().map(|m| m.len).collect();
    let mut optim = Optim::new(&cfg.optimizer, &lens);
    let lr = cfg.optimizer.lr();
    run::update(
        &mut net,
        &meta,
        &mut optim,
        cfg.clip.as_ref(),
        [lr, lr * cfg.poly_lr_scale],
    )
    .unwrap();
    PnncStep {
        logits,
        out,
        grads,
        after: net.to_tensors(),
    }
}

fn dump_args<'a>(export_dir: &'a str, ck: &'a str, batch: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "--export",
        export_dir,
        "--weights",
        ck,
        "--batch",
        batch,
        "--out",
        out,
        "--step-seed",
        "77",
    ]
}

/// The Python dump of one step compared with pnnc's, at relative tolerance `tol`.
fn compare_step(label: &str, dump: &Path, want: &PnncStep, tol: f64, lr: f64) {
    let (t, meta) = read_dump(dump);
    let num = |k: &str| meta[k].parse::<f64>().unwrap();
    assert_close(
        &format!("{label}: eval logits"),
        &t["logits.eval"],
        &want.logits,
        tol,
    );
    assert_scalar(&format!("{label}: loss"), num("loss"), want.out.loss, tol);
    assert_scalar(
        &format!("{label}: cross-entropy"),
        num("ce_loss"),
        want.out.ce_loss,
        tol,
    );
    assert_scalar(
        &format!("{label}: boundary loss"),
        num("boundary_loss"),
        want.out.boundary_loss,
        tol,
    );
    assert!(
        want.out.boundary_loss > 0.0,
        "{label}: the boundary term must be active"
    );
    assert_eq!(meta["correct"].parse::<usize>().unwrap(), want.out.correct);
    let acts: BTreeMap<String, f32> = serde_json::from_str(&meta["act_max_abs"]).unwrap();
    for (site, v) in &want.out.act_max_abs {
        assert_scalar(
            &format!("{label}: max |x| at {site}"),
            f64::from(acts[site]),
            f64::from(*v),
            tol,
        );
    }
    let got: BTreeMap<String, Vec<f32>> = want
        .grads
        .keys()
        .map(|k| (k.clone(), t[&format!("grad/{k}")].clone()))
        .collect();
    assert_grads_close(label, &got, &want.grads, tol);
    for (name, v) in &want.after {
        let a = &t[&format!("after/{name}")];
        assert_after_close(
            &format!("{label}: {name}"),
            a,
            &v.data,
            want.grads.get(name),
            tol,
            lr,
        );
    }
}

/// The gradient as one vector to `tol` relative, and each tensor to 1e-3 of its
/// own largest element (a wrong tensor is off by far more): a small tensor whose gradient is mostly
/// cancellation (a bias before a BatchNorm) carries f32 summation noise of the
/// size of the whole gradient's, not of its own.
fn assert_grads_close(
    label: &str,
    got: &BTreeMap<String, Vec<f32>>,
    want: &BTreeMap<String, Vec<f32>>,
    tol: f64,
) {
    let global = want
        .values()
        .flatten()
        .fold(0f64, |m, v| m.max(f64::from(*v).abs()));
    for (name, g) in want {
        let a = &got[name];
        let diff = a.iter().zip(g).fold(0f64, |m, (&x, &y)| {
            m.max((f64::from(x) - f64::from(y)).abs())
        });
        assert!(
            diff <= tol * global,
            "{label}: gradient of {name}: max difference {diff:e} exceeds {tol:e} x max |gradient| {global:e}"
        );
        assert_close(&format!("{label}: gradient of {name}"), a, g, 1e-3);
    }
}

/// Tensors after one step. Adam divides each gradient element by its own
/// magnitude: an element that is zero in exact arithmetic (the constant
/// coefficient of a polynomial that a BatchNorm follows) is rounding noise in
/// both engines and moves by about +-lr either way. Such elements (gradient
/// below 1e-4 of the tensor's largest) are held to the step size; the optimizer
/// itself is compared from identical gradients in the recipe test.
fn assert_after_close(
    what: &str,
    a: &[f32],
    b: &[f32],
    grads: Option<&Vec<f32>>,
    tol: f64,
    lr: f64,
) {
    let floor = grads.map(|g| 1e-4 * g.iter().fold(0f32, |m, v| m.max(v.abs())));
    let scale = f64::from(b.iter().fold(0f32, |m, x| m.max(x.abs())));
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let noise = floor.is_some_and(|f| grads.is_some_and(|g| g[i].abs() <= f));
        let allowed = scale * tol + if noise { 2.0 * lr } else { 1e-12 };
        assert!(
            (f64::from(x) - f64::from(y)).abs() <= allowed,
            "{what}[{i}] after one step: {x} vs {y}"
        );
    }
}

#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn one_step_matches_pnnc_in_every_recipe() {
    let python = python();
    for (i, (basis, train)) in RECIPES.iter().enumerate() {
        let dir = temp(&format!("step{i}"));
        let model = checked(&dir, &model_text(basis, train));
        let cfg = config(&model);
        let exp = export_to(&model, &dir);
        let net = trained_network(&model, &cfg);
        let ck = dir.join("ck.safetensors");
        checkpoint(&model, &net).save(&ck).unwrap();
        let d = dataset(13, 7 + i as u32);
        write_batch(&dir.join("batch.safetensors"), &d.x, &d.y);
        let want = pnnc_step(net, &cfg, &d.x, &d.y, 77);
        let (e, c, b, o) = (
            exp.display().to_string(),
            ck.display().to_string(),
            dir.join("batch.safetensors").display().to_string(),
            dir.join("dump.safetensors").display().to_string(),
        );
        let mut args = vec!["-m", "pnnc_torch.dump"];
        args.extend(dump_args(&e, &c, &b, &o));
        ok(&py(&python, &exp, &args));
        compare_step(
            &format!("recipe {i} ({basis})"),
            Path::new(&o),
            &want,
            1e-4,
            cfg.optimizer.lr(),
        );
        // Clipping and the optimizer alone, from pnnc's own gradients: the same weights.
        let grads = dir.join("grads.safetensors");
        write_grads(&grads, &want);
        let g = grads.display().to_string();
        args.extend(["--grads", &g]);
        ok(&py(&python, &exp, &args));
        let (t, _) = read_dump(Path::new(&o));
        for (name, v) in &want.after {
            assert_close(
                &format!("recipe {i}: {name} after a step from pnnc's gradients"),
                &t[&format!("after/{name}")],
                &v.data,
                1e-5,
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn two_gloo_processes_equal_one_process_and_pnnc() {
    let python = python();
    let dir = temp("gloo");
    let (basis, train) = RECIPES[0];
    let model = checked(&dir, &model_text(basis, train));
    let cfg = config(&model);
    let exp = export_to(&model, &dir);
    let net = trained_network(&model, &cfg);
    let ck = dir.join("ck.safetensors");
    checkpoint(&model, &net).save(&ck).unwrap();
    // An odd batch: the two processes get 6 and 7 samples.
    let d = dataset(13, 21);
    let batch = dir.join("batch.safetensors");
    write_batch(&batch, &d.x, &d.y);
    let want = pnnc_step(net, &cfg, &d.x, &d.y, 77);
    let (e, c, b) = (
        exp.display().to_string(),
        ck.display().to_string(),
        batch.display().to_string(),
    );
    let (one, two) = (dir.join("one.safetensors"), dir.join("two.safetensors"));
    let (o1, o2) = (one.display().to_string(), two.display().to_string());
    let mut args = vec!["-m", "pnnc_torch.dump"];
    args.extend(dump_args(&e, &c, &b, &o1));
    ok(&py(&python, &exp, &args));
    let mut args = vec![
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "pnnc_torch.dump",
    ];
    args.extend(dump_args(&e, &c, &b, &o2));
    ok(&py(&python, &exp, &args));
    let (t1, m1) = read_dump(&one);
    let (t2, m2) = read_dump(&two);
    assert_eq!(m2["world_size"], "2");
    for k in ["loss", "ce_loss", "boundary_loss", "grad_norm"] {
        let (a, b) = (m2[k].parse::<f64>().unwrap(), m1[k].parse::<f64>().unwrap());
        assert_scalar(&format!("2 processes vs 1: {k}"), a, b, 1e-5);
    }
    let grads = |t: &BTreeMap<String, Vec<f32>>| -> BTreeMap<String, Vec<f32>> {
        t.iter()
            .filter_map(|(k, v)| k.strip_prefix("grad/").map(|n| (n.to_string(), v.clone())))
            .collect()
    };
    assert_grads_close("2 processes vs 1", &grads(&t2), &grads(&t1), 1e-5);
    assert_close(
        "2 processes vs 1: eval logits",
        &t2["logits.eval"],
        &t1["logits.eval"],
        1e-5,
    );
    for (k, v) in &t1 {
        if let Some(name) = k.strip_prefix("after/") {
            let g = t1.get(&format!("grad/{name}"));
            let what = format!("2 processes vs 1: {name}");
            assert_after_close(&what, &t2[k], v, g, 1e-5, cfg.optimizer.lr());
        }
    }
    compare_step(
        "2 gloo processes vs pnnc",
        &two,
        &want,
        1e-4,
        cfg.optimizer.lr(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn fresh_network_and_random_streams_equal_pnnc() {
    let python = python();
    let dir = temp("streams");
    let (basis, train) = RECIPES[0];
    let model = checked(&dir, &model_text(basis, train));
    let exp = export_to(&model, &dir);
    let init = dir.join("init.safetensors");
    let script = format!(
        "import json, numpy as np, torch
from pnnc_torch import ir, net, rng, data, ckpt
e = ir.Export({exp:?})
n = net.PnnNet(e, 11)
ckpt.save({init:?}, ckpt.Checkpoint('m', 'h', json.dumps(dict(mean=[], std=[])), n.tensors(), {{}}))
aug = {{'crop_padding': 2, 'hflip': True, 'time_mask': 3}}
x = torch.arange(5 * 2 * 8 * 8, dtype=torch.float32).reshape(5, 2, 8, 8)
y = data.apply_augment(x, data.augment_draws(11, 9, 5, [2, 8, 8], aug), [2, 8, 8], aug)
print(json.dumps({{
  'order': [rng.epoch_order(n_, 11, ep) for n_, ep in [(1, 0), (2, 0), (37, 0), (1000, 4)]],
  'aug': y.reshape(-1).tolist(),
  'dropout': net.dropout_mask(300, 0.3, 12345, 2, 17).tolist(),
}}))",
        exp = exp.display().to_string(),
        init = init.display().to_string(),
    );
    let out = ok(&py(&python, &exp, &["-c", &script]));
    let got: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // Initial weights: pnnc's own draws, bit for bit.
    let fresh = Network::new(&model, 11, &NetworkOptions::default()).unwrap();
    let torch_init = Checkpoint::load(&init).unwrap();
    assert_eq!(torch_init.tensors, fresh.to_tensors());
    // Sample orders of epochs.
    let orders: Vec<Vec<usize>> = serde_json::from_value(got["order"].clone()).unwrap();
    for (o, (n, ep)) in orders.iter().zip([(1, 0), (2, 0), (37, 0), (1000, 4)]) {
        assert_eq!(
            o,
            &run::epoch_order(n, 11, ep),
            "order of n = {n}, epoch {ep}"
        );
    }
    // Crop, flip and time mask of a batch at step 9.
    let spec = DataSpec::from_call(
        "cifar10",
        &[
            ("crop".into(), Value::Int(2)),
            ("hflip".into(), Value::Bool(true)),
        ],
    )
    .unwrap();
    let mut spec = spec;
    spec.augment.time_mask = 3;
    let mut x: Vec<f32> = (0..5 * 128).map(|v| v as f32).collect();
    augment_batch(
        &spec,
        &[2, 8, 8],
        &mut x,
        run::mix_seed(11, 2, 9), // the loop's augmentation stream of step 9
    );
    let aug: Vec<f32> = serde_json::from_value(got["aug"].clone()).unwrap();
    assert_eq!(aug, x);
    let mask: Vec<f32> = serde_json::from_value(got["dropout"].clone()).unwrap();
    let full: Vec<f32> = pnnc::train::backend::elementwise::dropout_mask(317, 0.3, 12345, 2);
    assert_eq!(mask, full[17..].to_vec());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn checkpoints_round_trip_bit_exact_and_other_models_are_refused() {
    let python = python();
    let dir = temp("roundtrip");
    let (basis, train) = RECIPES[1];
    let model = checked(&dir, &model_text(basis, train));
    let cfg = config(&model);
    let exp = export_to(&model, &dir);
    let ck = checkpoint(&model, &trained_network(&model, &cfg));
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    ck.save(&a).unwrap();
    // pnnc -> PyTorch network -> pnnc checkpoint.
    let script = format!(
        "from pnnc_torch import ir, net, ckpt
e = ir.Export({exp:?})
n = net.PnnNet(e, 0)
c = ckpt.load({a:?})
ckpt.check_model(c, {a:?}, e.name, e.model_hash)
n.load_tensors(c.tensors, {a:?})
ckpt.save({b:?}, ckpt.Checkpoint(c.model_name, c.model_hash, c.normalization, n.tensors(), c.metadata))",
        exp = exp.display().to_string(),
        a = a.display().to_string(),
        b = b.display().to_string(),
    );
    ok(&py(&python, &exp, &["-c", &script]));
    let back = Checkpoint::load(&b).unwrap();
    assert_eq!(back, ck);
    back.check_matches(&model, &b).unwrap();

    // A checkpoint of another model: the PyTorch side names the file and both hashes.
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = checked(&other_dir, &model_text(basis, RECIPES[0].1));
    let mut wrong = ck.clone();
    wrong.model_hash = other.source_hash.clone();
    wrong.model_name = "other_model".into();
    let w = dir.join("wrong.safetensors");
    wrong.save(&w).unwrap();
    let d = dataset(4, 1);
    let batch = dir.join("batch.safetensors");
    write_batch(&batch, &d.x, &d.y);
    let (e, wp, bp, op) = (
        exp.display().to_string(),
        w.display().to_string(),
        batch.display().to_string(),
        dir.join("o.safetensors").display().to_string(),
    );
    let mut args = vec!["-m", "pnnc_torch.dump"];
    args.extend(dump_args(&e, &wp, &bp, &op));
    let o = py(&python, &exp, &args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&wp), "{err}");
    assert!(err.contains(&other.source_hash[..12]), "{err}");
    assert!(err.contains(&model.source_hash[..12]), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// pnnc's loop and the exported trainer on the same data, init, order and
/// augmentation: per-epoch metrics and the final weights agree within `TOL`
/// (float rounding differs; nothing else does).
#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn short_runs_in_both_engines_end_within_tolerance() {
    let python = python();
    const TOL: f64 = 1e-3;
    let dir = temp("runs");
    let model = checked(&dir, &model_text("chebyshev", RUN_RECIPE));
    let cfg = config(&model);
    let exp = export_to(&model, &dir);
    let spec = DataSpec::from_call(
        "cifar10",
        &[
            ("crop".into(), Value::Int(1)),
            ("hflip".into(), Value::Bool(true)),
        ],
    )
    .unwrap();
    let splits = Splits {
        train: dataset(48, 1),
        val: dataset(24, 2),
        test: dataset(24, 3),
        normalization: Normalization {
            mean: vec![0.0, 0.0],
            std: vec![1.0, 1.0],
        },
    };
    let data_file = dir.join("data.safetensors");
    pnnc::data::export::write(&splits, &spec, cfg.seed, None, &data_file).unwrap();
    // pnnc
    let mut net = Network::new(&model, cfg.seed, &NetworkOptions::default()).unwrap();
    fn split(d: &Dataset) -> Split<'_> {
        Split {
            x: &d.x,
            y: &d.y,
            sample_len: 128,
        }
    }
    let augment = |x: &mut [f32], _: usize, seed: u64| augment_batch(&spec, &[2, 8, 8], x, seed);
    let data = RunData {
        train: split(&splits.train),
        val: Some(split(&splits.val)),
        test: Some(split(&splits.test)),
        classes: 3,
        normalization: splits.normalization.clone(),
        augment: Some(&augment),
        stop: None,
    };
    let pnnc_run = dir.join("pnnc-run");
    let summary = run::train(&mut net, &cfg, &data, &pnnc_run, false).unwrap();
    // PyTorch, one process and two gloo processes.
    let train_py = exp.join("train.py").display().to_string();
    let df = data_file.display().to_string();
    let one = dir.join("torch-1").display().to_string();
    ok(&py(
        &python,
        &exp,
        &[
            &train_py,
            "--data",
            &df,
            "--out",
            &one,
            "--threads",
            "1",
            "--quiet",
        ],
    ));
    let two = dir.join("torch-2").display().to_string();
    ok(&py(
        &python,
        &exp,
        &[
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            &train_py,
            "--data",
            &df,
            "--out",
            &two,
            "--threads",
            "1",
            "--quiet",
        ],
    ));
    let want = pnnc::train::metrics::read(&pnnc_run).unwrap();
    // The recipe is exercised: the validation term is there and the plateau cut the rate.
    assert!(
        want.iter().all(|r| r.val_boundary_loss.unwrap() > 0.0),
        "{want:?}"
    );
    assert!(want[2].lr < want[0].lr, "{want:?}");
    for run_dir in [&one, &two] {
        let rows = pnnc::train::metrics::read(Path::new(run_dir)).unwrap();
        assert_eq!(rows.len(), want.len());
        for (r, w) in rows.iter().zip(&want) {
            let what = |k: &str| format!("{run_dir} epoch {}: {k}", w.epoch);
            assert_scalar(&what("train loss"), r.train_loss, w.train_loss, TOL);
            assert_scalar(&what("boundary"), r.boundary_loss, w.boundary_loss, TOL);
            assert_scalar(
                &what("val loss"),
                r.val_loss.unwrap(),
                w.val_loss.unwrap(),
                TOL,
            );
            // In eval mode the later sites' inputs pass BatchNorms whose running
            // means follow the loss-blind constant coefficients (below), and the
            // exp term magnifies that: 5e-3 (measured 1.3e-3 with two processes).
            assert_scalar(
                &what("val boundary"),
                r.val_boundary_loss.unwrap(),
                w.val_boundary_loss.unwrap(),
                5.0 * TOL,
            );
            assert_eq!((r.lr, r.poly_lr), (w.lr, w.poly_lr), "{}", what("rates"));
            assert_scalar(&what("grad norm"), r.grad_norm, w.grad_norm, TOL);
        }
        let a = Checkpoint::load(&Path::new(run_dir).join("last.safetensors")).unwrap();
        let b = Checkpoint::load(&pnnc_run.join("last.safetensors")).unwrap();
        a.check_matches(&model, Path::new(run_dir)).unwrap();
        assert_eq!(a.normalization, b.normalization);
        // A constant added before a BatchNorm changes no loss: the constant
        // coefficient of such a polynomial moves by rounding noise times Adam's
        // normalisation (about +-poly lr per step) in either engine, and the
        // BatchNorm's running mean follows it. Those agree to 2 x steps x poly lr.
        let drift = 2.0 * summary.steps as f64 * cfg.optimizer.lr() * cfg.poly_lr_scale;
        for (k, v) in &b.tensors {
            let a = &a.tensors[k].data;
            if k.ends_with(".running_mean") || k.ends_with(".coeffs") {
                let free = |i: usize| k.ends_with(".running_mean") || i == 0;
                let scale = f64::from(v.data.iter().fold(0f32, |m, x| m.max(x.abs())));
                for (i, (&x, &y)) in a.iter().zip(&v.data).enumerate() {
                    let allowed = TOL * scale + if free(i) { drift } else { 0.0 };
                    let d = (f64::from(x) - f64::from(y)).abs();
                    assert!(d <= allowed, "{run_dir}: final {k}[{i}]: {x} vs pnnc {y}");
                }
            } else {
                assert_close(&format!("{run_dir}: final {k}"), a, &v.data, TOL);
            }
        }
        let s = export::read_summary(Path::new(run_dir)).unwrap();
        assert_eq!(s.steps, summary.steps);
        assert_eq!(s.best_epoch, summary.best_epoch);
        assert_scalar(
            "best test loss",
            s.best_test_loss.unwrap(),
            summary.best_test_loss.unwrap(),
            TOL,
        );
        assert_scalar(
            "test loss",
            s.test_loss.unwrap(),
            summary.test_loss.unwrap(),
            TOL,
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Issue 14's layers on images: a grouped and a depthwise conv, a concat
/// with an identity branch and three branches (an activation and a
/// batchnorm across them; a batchnorm right after one would make the
/// branches' shifts' gradients rounding noise), a
/// concat of flat vectors, and given polynomials (a fixed one, and a
/// learnable one in the power basis).
const IMAGE_LAYERS: &str = "model image_layers
input [2, 8, 8]
classes 3

act p = poly(degree: 3, fit: relu, range: 3)
act sq = poly(coeffs: [0, 0.5, 0.25], range: 4)
act cubic = poly(coeffs: [0.1, 1, 0, -0.05], range: 3, basis: power, learnable: true)

net {
  conv(4, 3, padding: 1, bias: true, groups: 2); p; batchnorm
  concat {
  } {
    conv(4, 3, padding: 1, groups: 4); sq
  } {
    conv(2, 1); batchnorm
  }
  cubic; batchnorm
  avgpool(2)
  flatten
  concat { dense(6); p } { dense(4) }
  dense(classes)
}

train {
  RECIPE
}
";

/// Issue 14's layers on a sequence (the same 128 values per sample as
/// [2, 8, 8]): grouped 1-D convs, 1-D pooling, a concat of channels, and a
/// given square in the power basis.
const SEQUENCE_LAYERS: &str = "model sequence_layers
input [8, 16]
classes 3

act p = poly(degree: 4, fit: relu, range: 3)
act sq = poly(coeffs: [0, 0, 1], range: 4, basis: power)

net {
  conv(8, 3, padding: 1, groups: 4, bias: true); p; batchnorm
  concat { conv(4, 3, stride: 2, padding: 1) } { avgpool(2); conv(2, 1, groups: 2) }
  sq
  avgpool(2, stride: 1)
  flatten
  dense(classes)
}

train {
  RECIPE
}
";

/// The exported package builds each of issue 14's layers as pnnc does: a
/// fresh network has pnnc's weights bit for bit (shapes, fan-ins, draw order,
/// a given polynomial's coefficients in its basis), and one step from trained
/// weights gives pnnc's logits, losses, gradients and update.
#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn grouped_1d_concat_and_given_polynomials_match_pnnc() {
    let python = python();
    for (i, text) in [IMAGE_LAYERS, SEQUENCE_LAYERS].iter().enumerate() {
        let dir = temp(&format!("layers{i}"));
        let model = checked(&dir, &text.replace("RECIPE", RECIPES[0].1));
        let cfg = config(&model);
        let exp = export_to(&model, &dir);
        let init = dir.join("init.safetensors");
        let script = format!(
            "import json
from pnnc_torch import ir, net, ckpt
n = net.PnnNet(ir.Export({exp:?}), 11)
ckpt.save({init:?}, ckpt.Checkpoint('m', 'h', json.dumps(dict(mean=[], std=[])), n.tensors(), {{}}))",
            exp = exp.display().to_string(),
            init = init.display().to_string(),
        );
        ok(&py(&python, &exp, &["-c", &script]));
        let fresh = Network::new(&model, 11, &NetworkOptions::default()).unwrap();
        assert_eq!(
            Checkpoint::load(&init).unwrap().tensors,
            fresh.to_tensors(),
            "{}: initial tensors",
            model.name
        );
        let net = trained_network(&model, &cfg);
        let ck = dir.join("ck.safetensors");
        checkpoint(&model, &net).save(&ck).unwrap();
        let d = dataset(13, 30 + i as u32);
        let batch = dir.join("batch.safetensors");
        write_batch(&batch, &d.x, &d.y);
        let want = pnnc_step(net, &cfg, &d.x, &d.y, 77);
        let (e, c, b, o) = (
            exp.display().to_string(),
            ck.display().to_string(),
            batch.display().to_string(),
            dir.join("dump.safetensors").display().to_string(),
        );
        let mut args = vec!["-m", "pnnc_torch.dump"];
        args.extend(dump_args(&e, &c, &b, &o));
        ok(&py(&python, &exp, &args));
        compare_step(&model.name, Path::new(&o), &want, 1e-4, cfg.optimizer.lr());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn python_unit_tests_pass() {
    let python = python();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("export/torch");
    let o = Command::new(&python)
        .args(["-m", "unittest", "discover", "-s", "tests", "-t", "."])
        .current_dir(&root)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    ok(&o);
}

const CLI_MODEL: &str = "model tiny
input [1, 28, 28]
classes 10

act p = poly(degree: 2, fit: relu, range: 12)

net {
  flatten
  dense(16); p; batchnorm
  dense(classes)
}

train {
  data: mnist(val_fraction: 0.2)
  epochs: 2  batch: 32  seed: 1
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  boundary: exp(penalty: 12, weight: 10, reduce: sum)
  clip: norm(1.0, except: batchnorm)
}
";

/// IDX files of `n` 28x28 images: class c lights up row band c.
fn write_idx(dir: &Path, prefix: &str, n: usize, seed: u32) {
    let gz = |name: String, bytes: &[u8]| common::gz(&dir.join(name), bytes);
    let mut images = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        images.extend(d.to_be_bytes());
    }
    let mut labels = vec![0, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    let pixels = noise(n * 784, seed);
    for i in 0..n {
        let class = (i % 10) as u8;
        labels.push(class);
        for (j, v) in pixels[i * 784..(i + 1) * 784].iter().enumerate() {
            let band = j / 28 / 3 == class as usize;
            images.push(((v + 1.0) * 30.0) as u8 + if band { 180 } else { 0 });
        }
    }
    gz(format!("{prefix}-images-idx3-ubyte.gz"), &images);
    gz(format!("{prefix}-labels-idx1-ubyte.gz"), &labels);
}

fn trainer(python: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(python)
        .arg("exp/train.py")
        .args(["--data", "d.safetensors", "--threads", "1"])
        .args(args)
        .current_dir(dir)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap()
}

fn rows_without_time(run: &Path) -> Vec<pnnc::train::metrics::EpochMetrics> {
    let mut rows = pnnc::train::metrics::read(run).unwrap();
    rows.iter_mut().for_each(|r| r.seconds = 0.0);
    rows
}

/// The user's path: `pnnc data export`, `pnnc export torch`, `python train.py`
/// (and `--resume`), then the run folder back in `pnnc eval`, `compile` and
/// `train --resume`.
#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn cli_export_train_resume_and_back_into_pnnc() {
    let python = python();
    let dir = temp("cli");
    std::fs::write(dir.join("model.pnn"), CLI_MODEL).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    write_idx(&dir.join("data"), "train", 200, 1);
    write_idx(&dir.join("data"), "t10k", 60, 2);
    let args = [
        "data",
        "export",
        "model.pnn",
        "--data",
        "data",
        "-o",
        "d.safetensors",
    ];
    let out = ok(&common::pnnc(&dir, &args));
    assert!(out.contains("train 160, val 40, test 60"), "{out}");
    assert!(out.contains("validation seed 1"), "{out}");
    let again = common::pnnc(&dir, &args);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    ok(&common::pnnc(
        &dir,
        &["export", "torch", "model.pnn", "-o", "exp"],
    ));
    let again = common::pnnc(&dir, &["export", "torch", "model.pnn", "-o", "exp"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Two epochs straight, and one epoch then a resume to two.
    let o = ok(&trainer(&python, &dir, &["--out", "straight", "--json"]));
    let events: Vec<serde_json::Value> = o
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{o}");
    assert_eq!(events[2]["event"], "summary");
    ok(&trainer(
        &python,
        &dir,
        &["--out", "split", "--epochs", "1", "--quiet"],
    ));
    let refused = trainer(&python, &dir, &["--out", "split", "--quiet"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--resume"));
    // A resumed run keeps its settings; --epochs says how far to train.
    let refused = trainer(
        &python,
        &dir,
        &["--out", "split", "--resume", "--seed", "9"],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("keeps the settings"));
    ok(&trainer(
        &python,
        &dir,
        &["--out", "split", "--resume", "--epochs", "2", "--quiet"],
    ));
    assert_eq!(
        rows_without_time(&dir.join("straight")),
        rows_without_time(&dir.join("split"))
    );
    let (a, b) = (
        Checkpoint::load(&dir.join("straight/last.safetensors")).unwrap(),
        Checkpoint::load(&dir.join("split/last.safetensors")).unwrap(),
    );
    assert_eq!(a.tensors, b.tensors);

    // Back in pnnc: eval agrees with the trainer's own test accuracy, compile accepts it.
    let summary = export::read_summary(&dir.join("straight")).unwrap();
    let o = ok(&common::pnnc(
        &dir,
        &[
            "eval",
            "model.pnn",
            "--weights",
            "straight/last.safetensors",
            "--data",
            "data",
            "--json",
        ],
    ));
    let eval: serde_json::Value = serde_json::from_str(o.lines().next().unwrap()).unwrap();
    assert_eq!(eval["accuracy"].as_f64(), summary.test_acc, "{o}");
    ok(&common::pnnc(
        &dir,
        &[
            "compile",
            "model.pnn",
            "--weights",
            "straight/best.safetensors",
            "-o",
            "c.json",
        ],
    ));
    // pnnc continues the PyTorch run from its resume file.
    ok(&common::pnnc(
        &dir,
        &[
            "train",
            "model.pnn",
            "--data",
            "data",
            "--out",
            "straight",
            "--resume",
            "--epochs",
            "3",
            "--quiet",
        ],
    ));
    assert_eq!(
        pnnc::train::metrics::read(&dir.join("straight"))
            .unwrap()
            .len(),
        3
    );

    // Without torch (no site packages): the install hint.
    let bare = Command::new(&python)
        .args([
            "-S",
            "exp/train.py",
            "--data",
            "d.safetensors",
            "--out",
            "x",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(!bare.status.success());
    let err = String::from_utf8_lossy(&bare.stderr);
    assert!(err.contains("pip install torch numpy safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The ReLU baseline (`pnnc export torch --method relu`): ReLU at every site,
/// no boundary loss, the fitted coefficients kept in checkpoints.
#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn relu_baseline_step_matches_pnnc() {
    let python = python();
    let dir = temp("relu");
    let (basis, train) = RECIPES[0];
    let model = checked(&dir, &model_text(basis, train));
    use pnnc::pipeline::recipe::{Method, Overrides, run_config};
    let relu = Overrides {
        recipe: Method::Relu.recipe(),
        ..Overrides::default()
    };
    let cfg = run_config(&model, &relu);
    assert!(cfg.boundary.is_none());
    let exp = dir.join("export");
    let opts = Options {
        baseline_relu: true,
        ..Options::default()
    };
    export::export(&model, &cfg, &opts, &exp, |_| Ok(())).unwrap();
    let relu = NetworkOptions {
        baseline_relu: true,
    };
    let net = Network::new(&model, cfg.seed, &relu).unwrap();
    let ck = dir.join("ck.safetensors");
    checkpoint(&model, &net).save(&ck).unwrap();
    let d = dataset(10, 3);
    let batch = dir.join("batch.safetensors");
    write_batch(&batch, &d.x, &d.y);
    let n = d.y.len();
    let mut net = net;
    let logits = net.predict(&d.x, n).unwrap();
    let out = net.train_step(&d.x, &d.y, n, None, 77).unwrap();
    let mut grads = BTreeMap::new();
    net.visit_params_mut(&mut |_, info, _, g| {
        grads.insert(info.name.clone(), g.to_vec());
    });
    let (e, c, b, o) = (
        exp.display().to_string(),
        ck.display().to_string(),
        batch.display().to_string(),
        dir.join("o.safetensors").display().to_string(),
    );
    let mut args = vec!["-m", "pnnc_torch.dump"];
    args.extend(dump_args(&e, &c, &b, &o));
    ok(&py(&python, &exp, &args));
    let (t, meta) = read_dump(Path::new(&o));
    assert_close("relu: eval logits", &t["logits.eval"], &logits, 1e-4);
    assert_scalar("relu: loss", meta["loss"].parse().unwrap(), out.loss, 1e-4);
    assert_eq!(meta["boundary_loss"].parse::<f64>().unwrap(), 0.0);
    assert!(!grads.keys().any(|k| k.ends_with(".coeffs")));
    let got: BTreeMap<String, Vec<f32>> = grads
        .keys()
        .map(|k| (k.clone(), t[&format!("grad/{k}")].clone()))
        .collect();
    assert_grads_close("relu", &got, &grads, 1e-4);
    // The sites' coefficients travel in the checkpoint, unchanged.
    for (k, v) in net.to_tensors() {
        if k.ends_with(".coeffs") {
            assert_eq!(t[&format!("after/{k}")], v.data, "{k}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model whose polynomial inputs are ~1e5 (`scale`): the exp boundary term
/// is infinite at the first step, so its polynomial cell diverges at step 0 in
/// either engine, while its ReLU cell trains.
const SWEEP_MODEL: &str = "model sweepy
input [1, 28, 28]
classes 10

act p = poly(degree: 2, fit: relu, range: 12)

net {
  flatten
  dense(16); scale(100000); p; batchnorm
  dense(classes)
}

train {
  data: mnist(val_fraction: 0.2)
  epochs: 1  batch: 32  seed: 1
  optimizer: adamw(lr: 1e-2, weight_decay: 0.01, poly_lr_scale: 0.1)
  boundary: exp(penalty: 12, weight: 10, reduce: sum)
  clip: norm(1.0, except: batchnorm)
}
";

/// `pnnc sweep --engine torch`: two cells (a polynomial cell that diverges at
/// step 0, a ReLU cell that trains) through the exported trainer under two
/// gloo processes, collected into the same results.csv as the native engine's
/// sweep of the same grid, which agrees with it.
#[test]
#[cfg_attr(
    not(pnnc_torch),
    ignore = "needs a Python with torch, numpy and safetensors ($PNNC_TORCH_PYTHON, else python3)"
)]
fn torch_sweep_cells_match_the_native_sweep() {
    let dir = temp("sweep");
    std::fs::write(dir.join("model.pnn"), SWEEP_MODEL).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::create_dir_all(dir.join("empty")).unwrap();
    write_idx(&dir.join("data"), "train", 200, 3);
    write_idx(&dir.join("data"), "t10k", 60, 4);
    let sweep = |out: &str, engine: &[&str]| {
        let mut args = vec![
            "sweep",
            "model.pnn",
            "--degrees",
            "2",
            "--methods",
            "framework,relu",
            "--threads",
            "2",
            "--data",
            "data",
            "--out",
            out,
        ];
        args.extend(engine);
        ok(&common::pnnc(&dir, &args))
    };
    sweep("native", &[]);
    let log = sweep(
        "torch",
        &[
            "--engine",
            "torch",
            "--nproc-per-node",
            "2",
            "--device",
            "cpu",
        ],
    );
    assert!(log.contains("PyTorch, 2 processes"), "{log}");
    let csv = |out: &str| std::fs::read_to_string(dir.join(out).join("results.csv")).unwrap();
    let (native, torch) = (csv("native"), csv("torch"));
    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    };
    let (n, t) = (rows(&native), rows(&torch));
    assert_eq!(n[0], t[0], "the same columns");
    assert_eq!(t.len(), 3, "{torch}");
    let col = |name: &str| n[0].iter().position(|c| c == name).unwrap();
    // d2-framework-s1: diverged at step 0 at the same site in both engines.
    assert_eq!(t[1][col("status")], "diverged", "{torch}");
    for c in [
        "degree",
        "basis",
        "method",
        "status",
        "diverged_step",
        "diverged_site",
        "max_abs_site",
        "fit_range",
        "epochs",
        "steps",
    ] {
        assert_eq!(n[1][col(c)], t[1][col(c)], "{c}:\n{native}\n{torch}");
        assert_eq!(n[2][col(c)], t[2][col(c)], "{c}:\n{native}\n{torch}");
    }
    assert_eq!(t[1][col("diverged_step")], "0");
    // relu-s1: trained one epoch (5 steps of 32 of 160 samples); the test accuracy
    // agrees within 2 of the 60 test samples (the engines' sums round differently).
    assert_eq!(t[2][col("status")], "ok", "{torch}");
    assert_eq!(t[2][col("steps")], "5");
    let acc = |r: &Vec<String>| r[col("test_acc")].parse::<f64>().unwrap();
    assert!(
        (acc(&n[2]) - acc(&t[2])).abs() <= 2.0 / 60.0 + 1e-9,
        "{native}\n{torch}"
    );
    // The cell folders are pnnc run folders; the markdown table is written too.
    let cell = dir.join("torch/relu-s1");
    for f in [
        "cell.json",
        "metrics.jsonl",
        "best.safetensors",
        "summary.json",
    ] {
        assert!(cell.join(f).is_file(), "{f}");
    }
    let diverged: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("torch/d2-framework-s1/cell.json")).unwrap(),
    )
    .unwrap();
    assert!(
        diverged["diverged"]
            .as_str()
            .unwrap()
            .starts_with("training diverged at step 0 (epoch 1, batch 0): the loss is inf"),
        "{diverged}"
    );
    assert!(dir.join("torch/results.md").is_file());
    // The run folder's model.json (the model as trained) evaluates its weights.
    let o = ok(&common::pnnc(
        &dir,
        &[
            "eval",
            "torch/relu-s1/model.json",
            "--weights",
            "torch/relu-s1/last.safetensors",
            "--data",
            "data",
            "--json",
        ],
    ));
    let eval: serde_json::Value = serde_json::from_str(o.lines().next().unwrap()).unwrap();
    let summary = export::read_summary(&cell).unwrap();
    assert_eq!(eval["accuracy"].as_f64(), summary.test_acc, "{o}");
    // A finished sweep is kept: a second run trains nothing.
    let again = sweep("torch", &["--engine", "torch", "--device", "cpu"]);
    assert_eq!(again.matches("finished, kept").count(), 2, "{again}");
    // raw_power at degree 22: x^22 overflows float32 (|x| ~ 1e5 > 56.4); both
    // engines name the site whose polynomial overflowed and point at chebyshev.
    let raw = [
        "--bases",
        "raw_power",
        "--degrees",
        "22",
        "--methods",
        "framework",
    ];
    let cell = |out: &str| -> serde_json::Value {
        let text =
            std::fs::read_to_string(dir.join(out).join("d22-raw_power-framework-s1/cell.json"));
        serde_json::from_str(&text.unwrap()).unwrap()
    };
    let mut args = vec!["sweep", "model.pnn", "--threads", "1", "--data", "data"];
    args.extend(raw);
    let native_raw = [args.clone(), vec!["--out", "raw-native"]].concat();
    ok(&common::pnnc(&dir, &native_raw));
    let torch_raw = [args, vec!["--out", "raw-torch", "--engine", "torch"]].concat();
    ok(&common::pnnc(&dir, &torch_raw));
    let (n, t) = (cell("raw-native"), cell("raw-torch"));
    let site = n["diverged_site"].as_str().unwrap();
    assert_eq!(t["diverged_site"], n["diverged_site"], "{n}\n{t}");
    assert_eq!(t["diverged_step"], 0, "{t}");
    for c in [&n, &t] {
        let msg = c["diverged"].as_str().unwrap();
        let want = format!("the polynomial at poly site `{site}` overflowed: finite inputs");
        assert!(msg.contains(&want), "{msg}");
        assert!(
            c["diverged_help"]
                .as_str()
                .unwrap()
                .contains("basis: chebyshev"),
            "{c}"
        );
    }
    // The torch options need the torch engine.
    let o = common::pnnc(&dir, &["sweep", "model.pnn", "--nproc-per-node", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--engine torch"));
    std::fs::remove_dir_all(&dir).unwrap();
}

//! Finite-difference gradient checks of every kernel and of whole networks,
//! in f64 (central differences).

use super::batchnorm::{bn_backward, bn_forward_train};
use super::boundary::{SiteLoss, site_backward, site_term};
use super::concat::{concat_backward, concat_forward};
use super::conv::{ConvGeom, conv_backward, conv_forward, grouped_backward, grouped_forward};
use super::dense::{dense_backward, dense_forward};
use super::loss::cross_entropy;
use super::network::{NetworkOf, NetworkOptions};
use super::poly::{PolyBasis, poly_backward, poly_forward};
use super::pool::{
    PoolGeom, avgpool_backward, avgpool_forward, global_avgpool_backward, global_avgpool_forward,
};
use crate::ir::{Basis, BoundaryKind, BoundaryLoss, Reduce};
use crate::train::models::{SeqBuilder, model_from_ops, relu_poly};

const H: f64 = 1e-5;

/// Deterministic pseudo-random values in [-scale, scale].
fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let v = ((i as f64 + 1.0) * 12.9898 + seed as f64 * 78.233).sin() * 43758.5453;
            (v - v.floor() - 0.5) * 2.0 * scale
        })
        .collect()
}

/// Central-difference gradient of `f` at `x`.
fn numeric_grad(x: &[f64], f: &dyn Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + H;
            let up = f(&x);
            x[i] = orig - H;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * H)
        })
        .collect()
}

fn assert_close(what: &str, analytic: &[f64], numeric: &[f64], tol: f64) {
    assert_eq!(analytic.len(), numeric.len(), "{what}: length");
    let scale = numeric.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (a, n)) in analytic.iter().zip(numeric).enumerate() {
        assert!(
            (a - n).abs() <= tol * scale,
            "{what}[{i}]: analytic {a} vs numeric {n}"
        );
    }
    // A check that cannot fail is no check: the gradient must not vanish.
    assert!(
        numeric.iter().any(|v| v.abs() > 1e-8),
        "{what}: numeric gradient is zero"
    );
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn dense_gradients() {
    let (batch, in_f, out_f) = (3, 4, 5);
    let x = values(batch * in_f, 1, 1.0);
    let w = values(out_f * in_f, 2, 1.0);
    let b = values(out_f, 3, 1.0);
    let r = values(batch * out_f, 4, 1.0);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; batch * out_f];
        dense_forward(x, batch, in_f, out_f, w, Some(b), &mut y);
        dot(&y, &r)
    };
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; b.len()];
    dense_backward(
        &x,
        batch,
        in_f,
        out_f,
        &w,
        &r,
        Some(&mut dx[..]),
        &mut dw,
        Some(&mut db[..]),
    );
    assert_close(
        "dense dx",
        &dx,
        &numeric_grad(&x, &|v| loss(v, &w, &b)),
        1e-7,
    );
    assert_close(
        "dense dw",
        &dw,
        &numeric_grad(&w, &|v| loss(&x, v, &b)),
        1e-7,
    );
    assert_close(
        "dense db",
        &db,
        &numeric_grad(&b, &|v| loss(&x, &w, v)),
        1e-7,
    );
}

#[test]
fn conv_gradients_with_stride_padding_and_a_shared_weight() {
    let g = ConvGeom {
        in_c: 2,
        in_h: 5,
        in_w: 6,
        out_c: 3,
        kernel: [3, 2],
        stride: [2, 1],
        padding: [1, 1],
    };
    check_conv(&g, 3);
}

/// Batches larger than the kernel's sample groups (groups of 2 and of 3 with
/// a short last group), so that the grouped im2col, the per-group GEMMs and
/// the sum of the groups' weight gradients are all exercised.
#[test]
fn conv_gradients_over_grouped_batches() {
    for (g, batch) in [
        (
            ConvGeom {
                in_c: 2,
                in_h: 6,
                in_w: 5,
                out_c: 3,
                kernel: [3, 3],
                stride: [2, 2],
                padding: [1, 2],
            },
            37,
        ),
        (
            ConvGeom {
                in_c: 3,
                in_h: 4,
                in_w: 4,
                out_c: 2,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
            },
            20,
        ),
    ] {
        check_conv(&g, batch);
    }
}

fn check_conv(g: &ConvGeom, batch: usize) {
    let g = *g;
    let x1 = values(batch * g.in_len(), 5, 1.0);
    let x2 = values(batch * g.in_len(), 6, 1.0);
    let w = values(g.weight_len(), 7, 0.5);
    let b = values(g.out_c, 8, 0.5);
    let r = values(batch * g.out_len(), 9, 1.0);
    // The same weight in two convolutions: its gradient must be the sum.
    let loss = |x1: &[f64], w: &[f64], b: &[f64]| {
        let mut y1 = vec![0.0; batch * g.out_len()];
        let mut y2 = vec![0.0; batch * g.out_len()];
        conv_forward(&g, x1, batch, w, Some(b), &mut y1);
        conv_forward(&g, &x2, batch, w, None, &mut y2);
        dot(&y1, &r) + 0.5 * dot(&y2, &r)
    };
    let mut dx = vec![0.0; x1.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; b.len()];
    conv_backward(
        &g,
        &x1,
        batch,
        &w,
        &r,
        Some(&mut dx[..]),
        &mut dw,
        Some(&mut db[..]),
    );
    let half: Vec<f64> = r.iter().map(|v| 0.5 * v).collect();
    conv_backward(&g, &x2, batch, &w, &half, None, &mut dw, None);
    assert_close(
        "conv dx",
        &dx,
        &numeric_grad(&x1, &|v| loss(v, &w, &b)),
        1e-7,
    );
    assert_close(
        "conv dw",
        &dw,
        &numeric_grad(&w, &|v| loss(&x1, v, &b)),
        1e-7,
    );
    assert_close(
        "conv db",
        &db,
        &numeric_grad(&b, &|v| loss(&x1, &w, v)),
        1e-7,
    );
}

/// Grouped (2 groups), depthwise (a group per channel) and 1-D (height 1)
/// convolutions: `g` is one group's geometry.
#[test]
fn grouped_depthwise_and_1d_conv_gradients() {
    let geom = |in_c, in_h, in_w, out_c, kernel, stride, padding| ConvGeom {
        in_c,
        in_h,
        in_w,
        out_c,
        kernel,
        stride,
        padding,
    };
    for (g, groups) in [
        (geom(2, 5, 4, 3, [3, 2], [2, 1], [1, 1]), 2),
        (geom(1, 4, 4, 1, [3, 3], [1, 1], [1, 1]), 3),
        (geom(1, 1, 9, 2, [1, 3], [1, 2], [0, 1]), 2),
    ] {
        check_grouped_conv(&g, groups, 3);
    }
}

fn check_grouped_conv(g: &ConvGeom, groups: usize, batch: usize) {
    let (in_len, out_len) = (g.in_len() * groups, g.out_len() * groups);
    let x = values(batch * in_len, 15, 1.0);
    let w = values(g.weight_len() * groups, 16, 0.5);
    let b = values(g.out_c * groups, 17, 0.5);
    let r = values(batch * out_len, 18, 1.0);
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        let mut y = vec![0.0; batch * out_len];
        grouped_forward(g, groups, x, batch, w, Some(b), &mut y);
        dot(&y, &r)
    };
    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; b.len()]);
    grouped_backward(
        g,
        groups,
        &x,
        batch,
        &w,
        &r,
        Some(&mut dx[..]),
        &mut dw,
        Some(&mut db[..]),
    );
    let what = format!("grouped conv ({groups} groups)");
    assert_close(
        &format!("{what} dx"),
        &dx,
        &numeric_grad(&x, &|v| loss(v, &w, &b)),
        1e-7,
    );
    assert_close(
        &format!("{what} dw"),
        &dw,
        &numeric_grad(&w, &|v| loss(&x, v, &b)),
        1e-7,
    );
    assert_close(
        &format!("{what} db"),
        &db,
        &numeric_grad(&b, &|v| loss(&x, &w, v)),
        1e-7,
    );
    // A grouped convolution is a full one whose cross-group weights are zero.
    let full = ConvGeom {
        in_c: g.in_c * groups,
        out_c: g.out_c * groups,
        ..*g
    };
    let mut wfull = vec![0.0; full.weight_len()];
    let taps = g.kernel[0] * g.kernel[1];
    for o in 0..full.out_c {
        let k = o / g.out_c;
        for i in 0..g.in_c {
            let src = &w[(o * g.in_c + i) * taps..][..taps];
            wfull[(o * full.in_c + k * g.in_c + i) * taps..][..taps].copy_from_slice(src);
        }
    }
    let (mut y, mut yfull) = (vec![0.0; batch * out_len], vec![0.0; batch * out_len]);
    grouped_forward(g, groups, &x, batch, &w, Some(&b), &mut y);
    conv_forward(&full, &x, batch, &wfull, Some(&b), &mut yfull);
    assert_close(&format!("{what} forward vs full"), &y, &yfull, 1e-12);
}

#[test]
fn pool_gradients() {
    for (kernel, stride) in [([2, 2], [2, 2]), ([3, 2], [1, 2])] {
        let g = PoolGeom {
            channels: 2,
            in_h: 5,
            in_w: 6,
            kernel,
            stride,
        };
        let batch = 2;
        let (oh, ow) = g.out_hw().unwrap();
        let x = values(batch * 2 * 30, 10, 1.0);
        let r = values(batch * 2 * oh * ow, 11, 1.0);
        let loss = |x: &[f64]| {
            let mut y = vec![0.0; r.len()];
            avgpool_forward(&g, x, &mut y);
            dot(&y, &r)
        };
        let mut dx = vec![0.0; x.len()];
        avgpool_backward(&g, &r, &mut dx);
        assert_close("avgpool dx", &dx, &numeric_grad(&x, &loss), 1e-8);
    }
    let x = values(2 * 3 * 12, 12, 1.0);
    let r = values(6, 13, 1.0);
    let loss = |x: &[f64]| {
        let mut y = vec![0.0; 6];
        global_avgpool_forward(x, 12, &mut y);
        dot(&y, &r)
    };
    let mut dx = vec![0.0; x.len()];
    global_avgpool_backward(&r, 12, &mut dx);
    assert_close("global avgpool dx", &dx, &numeric_grad(&x, &loss), 1e-8);
}

/// Concatenation copies values, so its gradient splits dy: every input
/// gets exactly its part of each sample.
#[test]
fn concat_gradients() {
    let (batch, lens) = (3, [4usize, 2, 5]);
    let xs: Vec<Vec<f64>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| values(batch * n, 20 + i as u64, 1.0))
        .collect();
    let total: usize = lens.iter().sum();
    let r = values(batch * total, 23, 1.0);
    let loss = |xs: &[Vec<f64>]| {
        let slices: Vec<&[f64]> = xs.iter().map(Vec::as_slice).collect();
        let mut y = vec![0.0; batch * total];
        concat_forward(&slices, &lens, batch, &mut y);
        dot(&y, &r)
    };
    for (i, x) in xs.iter().enumerate() {
        let mut dx = vec![0.0; x.len()];
        concat_backward(&r, &lens, i, batch, &mut dx);
        let numeric = numeric_grad(x, &|v| {
            let mut moved = xs.clone();
            moved[i] = v.to_vec();
            loss(&moved)
        });
        assert_close(&format!("concat d(input {i})"), &dx, &numeric, 1e-8);
    }
    // Sample 1 of the output: each input's sample 1, in order.
    let slices: Vec<&[f64]> = xs.iter().map(Vec::as_slice).collect();
    let mut y = vec![0.0; batch * total];
    concat_forward(&slices, &lens, batch, &mut y);
    let want: Vec<f64> = (0..3)
        .flat_map(|i| xs[i][lens[i]..2 * lens[i]].to_vec())
        .collect();
    assert_eq!(y[total..2 * total], want[..]);
}

#[test]
fn batchnorm_training_gradients() {
    // [C, H, W] data (spatial 6) and feature vectors (spatial 1).
    for (batch, c, s) in [(3, 2, 6), (5, 4, 1)] {
        let x = values(batch * c * s, 14, 2.0);
        let gamma = values(c, 15, 1.0);
        let beta = values(c, 16, 1.0);
        let r = values(x.len(), 17, 1.0);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
            bn_forward_train(x, batch, c, s, g, b, 1e-5, 0.1, &mut rm, &mut rv, &mut y);
            dot(&y, &r)
        };
        let mut y = vec![0.0; x.len()];
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        let cache = bn_forward_train(
            &x, batch, c, s, &gamma, &beta, 1e-5, 0.1, &mut rm, &mut rv, &mut y,
        );
        let mut dx = vec![0.0; x.len()];
        let mut dg = vec![0.0; c];
        let mut db = vec![0.0; c];
        bn_backward(
            &cache,
            &r,
            batch,
            c,
            s,
            &gamma,
            Some(&mut dx[..]),
            &mut dg,
            &mut db,
        );
        assert_close(
            "bn dx",
            &dx,
            &numeric_grad(&x, &|v| loss(v, &gamma, &beta)),
            1e-6,
        );
        assert_close(
            "bn dgamma",
            &dg,
            &numeric_grad(&gamma, &|v| loss(&x, v, &beta)),
            1e-6,
        );
        assert_close(
            "bn dbeta",
            &db,
            &numeric_grad(&beta, &|v| loss(&x, &gamma, v)),
            1e-6,
        );
        // Running statistics moved towards the batch statistics.
        assert!(rm.iter().any(|v| *v != 0.0) && rv.iter().any(|v| *v != 1.0));
    }
}

#[test]
fn poly_gradients_in_every_basis() {
    for basis in [PolyBasis::Chebyshev, PolyBasis::Power, PolyBasis::RawPower] {
        for degree in [2usize, 8, 22] {
            let range = 3.0;
            // Inputs partly outside [-B, B], as in training.
            let x = values(50, 18 + degree as u64, 3.6);
            let c = values(degree + 1, 19, 1.0);
            let r = values(x.len(), 20, 1.0);
            let loss = |x: &[f64], c: &[f64]| {
                let mut y = vec![0.0; x.len()];
                poly_forward(x, c, range, basis, &mut y);
                dot(&y, &r)
            };
            let mut dx = vec![0.0; x.len()];
            let mut dc = vec![0.0; c.len()];
            poly_backward(
                &x,
                &r,
                &c,
                range,
                basis,
                Some(&mut dx[..]),
                Some(&mut dc[..]),
            );
            let what = format!("poly {basis:?} degree {degree}");
            assert_close(
                &format!("{what} dx"),
                &dx,
                &numeric_grad(&x, &|v| loss(v, &c)),
                1e-6,
            );
            assert_close(
                &format!("{what} dc"),
                &dc,
                &numeric_grad(&c, &|v| loss(&x, v)),
                1e-6,
            );
        }
    }
}

#[test]
fn poly_matches_direct_evaluation() {
    let c = values(9, 21, 1.0);
    let x = values(20, 22, 2.0);
    let range = 1.5;
    let mut y = vec![0.0; x.len()];
    poly_forward(&x, &c, range, PolyBasis::Chebyshev, &mut y);
    for (xv, yv) in x.iter().zip(&y) {
        let t: f64 = xv / range;
        // T_k(t) = cosh(k acosh t) outside [-1, 1], cos(k acos t) inside.
        let want: f64 = c
            .iter()
            .enumerate()
            .map(|(k, ck)| {
                let tk = if t.abs() <= 1.0 {
                    (k as f64 * t.acos()).cos()
                } else {
                    let v = (k as f64 * t.abs().acosh()).cosh();
                    if t < 0.0 && k % 2 == 1 { -v } else { v }
                };
                ck * tk
            })
            .sum();
        assert!((yv - want).abs() < 1e-9, "{yv} vs {want}");
    }
}

#[test]
fn boundary_loss_gradients() {
    let x = values(40, 23, 4.0);
    // Excesses reach 2: cap 0.5 puts elements on both sides of the cap.
    for kind in [
        SiteLoss::Exp,
        SiteLoss::ExpCapped { cap: 0.5 },
        SiteLoss::ExpCapped { cap: 0.0 },
        SiteLoss::L2,
        SiteLoss::MaxNorm,
    ] {
        let penalty = 2.0;
        let mut dx = vec![0.0; x.len()];
        site_backward(&x, kind, penalty, 1.5, &mut dx);
        let num = numeric_grad(&x, &|v| 1.5 * site_term(v, kind, penalty));
        assert_close(&format!("boundary {kind:?}"), &dx, &num, 1e-6);
    }
    // Known values: one element 1 past the threshold out of 4.
    let x = [0.0, 3.0, -1.0, 0.5];
    assert!((site_term(&x, SiteLoss::Exp, 2.0) - (1f64.exp() - 1.0) / 4.0).abs() < 1e-12);
    assert!((site_term(&x, SiteLoss::L2, 2.0) - 0.25).abs() < 1e-12);
    assert_eq!(site_term(&x, SiteLoss::MaxNorm, 2.0), 3.0);
    // Capped at 0.25: exp(0.25) - 1 + exp(0.25) * (1 - 0.25), over 4.
    let capped = SiteLoss::ExpCapped { cap: 0.25 };
    let want = (0.25f64.exp() - 1.0 + 0.25f64.exp() * 0.75) / 4.0;
    assert!((site_term(&x, capped, 2.0) - want).abs() < 1e-12);
    // Below the cap it is the paper's form, bit for bit.
    let big = SiteLoss::ExpCapped { cap: 5.0 };
    assert_eq!(site_term(&x, big, 2.0), site_term(&x, SiteLoss::Exp, 2.0));
    // Value and slope are continuous at the cap: one element at excess
    // cap -/+ h, through site_term and site_backward.
    let cap = 3.0;
    let kind = SiteLoss::ExpCapped { cap };
    let at = |e: f64| {
        let x = [2.0 + e];
        let mut d = [0.0];
        site_backward(&x, kind, 2.0, 1.0, &mut d);
        (site_term(&x, kind, 2.0), d[0])
    };
    let ((v0, s0), (v1, s1)) = (at(cap - 1e-9), at(cap + 1e-9));
    assert!(
        (v0 - v1).abs() < 1e-7 && (s0 - s1).abs() < 1e-7,
        "{v0} {v1} {s0} {s1}"
    );
    assert!((s1 - cap.exp()).abs() < 1e-7);
    // Far beyond: linear, slope exp(cap).
    let (v, s) = at(1000.0);
    assert_eq!(s, cap.exp());
    assert!((v - (cap.exp() - 1.0 + cap.exp() * (1000.0 - cap))).abs() < 1e-9 * v);
}

#[test]
fn cross_entropy_gradient() {
    let (batch, classes) = (4, 3);
    let logits = values(batch * classes, 24, 2.0);
    let labels = [0u32, 2, 1, 2];
    let ce = cross_entropy(&logits, &labels, classes);
    let num = numeric_grad(&logits, &|v| cross_entropy(v, &labels, classes).loss);
    assert_close("cross entropy", &ce.dlogits, &num, 1e-7);
}

/// Checks d(loss)/d(param) of a whole network against central differences,
/// on every parameter (up to `per_param` entries each).
/// The model a `.pnn` text describes, as the checker builds it.
fn model_from_source(name: &str, text: &str) -> crate::ir::Model {
    let checked = crate::check::check_source(name, text);
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    checked.model.expect("model")
}

/// An L2 boundary loss (sum reduction, weight 0.5) with the given penalty.
fn l2_boundary(penalty: f64) -> BoundaryLoss {
    BoundaryLoss {
        kind: BoundaryKind::L2,
        penalty: Some(penalty),
        weight: 0.5,
        reduce: Reduce::Sum,
    }
}

fn check_network(model: &crate::ir::Model, boundary: Option<&BoundaryLoss>, input_scale: f64) {
    let batch = 4;
    let mut net = NetworkOf::<f64>::new(model, 3, &NetworkOptions::default()).unwrap();
    let x: Vec<f32> = values(batch * net.input_len(), 30, input_scale)
        .iter()
        .map(|v| *v as f32)
        .collect();
    let y: Vec<u32> = (0..batch as u32)
        .map(|i| i % net.classes() as u32)
        .collect();
    let out = net.train_step(&x, &y, batch, boundary, 7).unwrap();
    if boundary.is_some() {
        assert!(
            out.boundary_loss > 0.0,
            "boundary loss inactive: test checks nothing"
        );
    }
    let mut analytic: Vec<Vec<f64>> = Vec::new();
    net.visit_params_mut(&mut |_, _, _, g| analytic.push(g.to_vec()));
    let infos = net.params();
    for (p, info) in infos.iter().enumerate() {
        let count = info.len.min(6);
        let mut numeric = Vec::new();
        for e in 0..count {
            let idx = e * info.len / count;
            let mut eval = |delta: f64| {
                net.visit_params_mut(&mut |i, _, v, _| {
                    if i == p {
                        v[idx] += delta;
                    }
                });
                let l = net.train_step(&x, &y, batch, boundary, 7).unwrap().loss;
                net.visit_params_mut(&mut |i, _, v, _| {
                    if i == p {
                        v[idx] -= delta;
                    }
                });
                l
            };
            numeric.push((eval(H) - eval(-H)) / (2.0 * H));
        }
        let picked: Vec<f64> = (0..count)
            .map(|e| analytic[p][e * info.len / count])
            .collect();
        let scale = numeric.iter().fold(1e-3f64, |m, v| m.max(v.abs()));
        for (a, n) in picked.iter().zip(&numeric) {
            assert!(
                (a - n).abs() <= 1e-5 * scale,
                "{}: analytic {a} vs numeric {n}",
                info.name
            );
        }
    }
    // Some gradient is non-zero (a zero-gradient bug would pass silently otherwise).
    assert!(analytic.iter().flatten().any(|v| v.abs() > 1e-6));
}

#[test]
fn whole_dense_network_with_residual_and_boundary_loss() {
    let act = relu_poly(4, 1.0, Basis::Chebyshev);
    let act_pow = relu_poly(3, 1.5, Basis::Power);
    let act_raw = relu_poly(5, 2.0, Basis::RawPower);
    let mut s = SeqBuilder::new("", vec![2, 3]);
    s.flatten().dense(5, true).poly(&act).batchnorm();
    s.dense(5, true).poly(&act_raw);
    // The dense above feeds both branches: its weight is reached through two paths.
    s.residual(
        |b| {
            b.dense(5, true).poly(&act_pow).batchnorm();
        },
        |_| {},
    );
    s.dropout(0.3).scale(0.5).dense(3, true);
    let model = model_from_ops("t", vec![2, 3], 3, s.ops);
    for (kind, reduce) in [
        (BoundaryKind::Exp, Reduce::Sum),
        (BoundaryKind::ExpCapped { cap: 0.2 }, Reduce::Sum),
        (BoundaryKind::L2, Reduce::L2),
        (BoundaryKind::MaxNorm, Reduce::Max),
        (BoundaryKind::Exp, Reduce::L1),
    ] {
        let bl = BoundaryLoss {
            kind,
            penalty: None,
            weight: 0.7,
            reduce,
        };
        check_network(&model, Some(&bl), 2.0);
    }
    check_network(&model, None, 2.0);
}

#[test]
fn whole_conv_network_with_pools_and_residual() {
    let act = relu_poly(2, 2.0, Basis::Power);
    let act_c = relu_poly(3, 2.0, Basis::Chebyshev);
    let mut s = SeqBuilder::new("", vec![2, 7, 7]);
    s.conv(3, 3, 2, 1, true).poly(&act_c).batchnorm();
    s.residual(
        |b| {
            b.conv(3, 3, 1, 1, false).poly(&act).batchnorm();
            b.conv(4, 1, 1, 0, false);
        },
        |sc| {
            sc.conv(4, 1, 1, 0, false).batchnorm();
        },
    );
    s.avgpool(2, 1).poly(&act).global_avgpool().dense(3, true);
    let model = model_from_ops("c", vec![2, 7, 7], 3, s.ops);
    let bl = l2_boundary(1.0);
    check_network(&model, Some(&bl), 2.0);
}

/// A network written in the language: 1-D grouped and depthwise convs and
/// 1-D pooling on a sequence input, as the checker builds it.
#[test]
fn whole_network_with_grouped_and_1d_layers_from_source() {
    let text = "model seq\ninput [4, 12]\nclasses 3\n\
        act p = poly(degree: 3, fit: relu, range: 4)\n\
        net {\n  conv(6, 3, padding: 1, groups: 2, bias: true)\n  p\n  batchnorm\n\
        conv(6, 3, stride: 2, groups: 6)\n  p\n  avgpool(2)\n  flatten\n  dense(3)\n}\n";
    let model = model_from_source("seq.pnn", text);
    let bl = l2_boundary(1.0);
    check_network(&model, Some(&bl), 2.0);
}

/// Polynomials given by their coefficients: a fixed square (gradient to the
/// input only; its coefficients are no parameter) and a learnable cubic in
/// the power basis, as the checker builds them.
#[test]
fn whole_network_with_given_polynomials_from_source() {
    let text = "model given\ninput [2, 5, 5]\nclasses 3\n\
        act sq = poly(coeffs: [0, 0, 1], range: 4)\n\
        act cubic = poly(coeffs: [0.5, 0.25, -0.125, 0.0625], range: 3, basis: power, learnable: true)\n\
        net {\n  conv(3, 3, bias: true)\n  sq\n  flatten\n  dense(4)\n  cubic\n  dense(3)\n}\n";
    let model = model_from_source("given.pnn", text);
    let net = NetworkOf::<f64>::new(&model, 3, &NetworkOptions::default()).unwrap();
    let coeffs: Vec<String> = net
        .params()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n.ends_with(".coeffs"))
        .collect();
    assert_eq!(coeffs, ["poly2.coeffs"], "only the learnable cubic trains");
    let bl = l2_boundary(0.25);
    check_network(&model, Some(&bl), 2.0);
    check_network(&model, None, 2.0);
}

/// Channel concatenation as the checker builds it: an identity branch (the
/// input feeds the join and the other branches: three paths to one tensor),
/// three branches with their own layers, a concat of flat vectors, and a
/// batchnorm after a concat (per channel across branches).
#[test]
fn whole_network_with_concat_from_source() {
    let text = "model cat\ninput [2, 5, 5]\nclasses 3\n\
        act p = poly(degree: 3, fit: relu, range: 4)\n\
        net {\n  conv(3, 3, padding: 1, bias: true)\n  p\n\
        concat {\n  } {\n    conv(2, 1); p\n  } {\n    conv(4, 3, padding: 1); batchnorm\n  }\n\
        batchnorm\n  p\n  avgpool(2)\n  flatten\n\
        concat { dense(4); p } { dense(3) }\n  dense(3)\n}\n";
    let model = model_from_source("cat.pnn", text);
    assert_eq!(model.net[2].output.dims(), [9, 5, 5]);
    let bl = l2_boundary(1.0);
    check_network(&model, Some(&bl), 2.0);
    check_network(&model, None, 2.0);
}

#[test]
fn network_api_round_trip_determinism_and_errors() {
    use super::network::{Network, ParamGroup};
    let mut fixed = relu_poly(3, 2.0, Basis::Chebyshev);
    fixed.learnable = false;
    let mut s = SeqBuilder::new("", vec![4]);
    s.dense(6, true)
        .poly(&relu_poly(2, 2.0, Basis::Power))
        .batchnorm();
    s.dense(5, false).poly(&fixed).dense(3, true);
    let model = model_from_ops("api", vec![4], 3, s.ops);
    let mut net = Network::new(&model, 11, &NetworkOptions::default()).unwrap();
    let names: Vec<String> = net.params().iter().map(|p| p.name.clone()).collect();
    assert_eq!(
        names,
        [
            "dense0.weight",
            "dense0.bias",
            "poly1.coeffs",
            "batchnorm2.gamma",
            "batchnorm2.beta",
            "dense3.weight",
            "dense5.weight",
            "dense5.bias"
        ]
    );
    assert_eq!(net.params()[2].group, ParamGroup::PolyCoeffs);
    let x: Vec<f32> = values(8 * 4, 40, 1.5).iter().map(|v| *v as f32).collect();
    let y = [0u32, 1, 2, 0, 1, 2, 0, 1];
    let out = net.train_step(&x, &y, 8, None, 1).unwrap();
    assert_eq!(out.act_max_abs.len(), 2);
    assert_eq!(out.act_max_abs[0].0, "poly1");
    // Checkpoint tensors: every Op::param_shapes name, including running stats and fixed coeffs.
    let tensors = net.to_tensors();
    for op in model.ops() {
        for (name, shape) in op.param_shapes() {
            assert_eq!(tensors[&name].shape, shape, "{name}");
        }
    }
    let logits = net.predict(&x, 8).unwrap();
    assert_eq!(logits.len(), 8 * 3);
    let mut other = Network::new(&model, 99, &NetworkOptions::default()).unwrap();
    assert_ne!(other.predict(&x, 8).unwrap(), logits);
    other.load_tensors(&tensors).unwrap();
    assert_eq!(other.predict(&x, 8).unwrap(), logits);
    // Same seed, same step: same result.
    let mut a = Network::new(&model, 5, &NetworkOptions::default()).unwrap();
    let mut b = Network::new(&model, 5, &NetworkOptions::default()).unwrap();
    assert_eq!(
        a.train_step(&x, &y, 8, None, 3).unwrap(),
        b.train_step(&x, &y, 8, None, 3).unwrap()
    );
    // Bad input is an error, not a panic.
    assert!(net.train_step(&x[1..], &y, 8, None, 1).is_err());
    assert!(
        net.train_step(&x, &[0, 1, 2, 0, 1, 2, 0, 7], 8, None, 1)
            .is_err()
    );
    let mut missing = tensors.clone();
    missing.remove("batchnorm2.running_var");
    assert!(net.load_tensors(&missing).is_err());
    // The ReLU baseline has no coefficient parameters but still saves them.
    let base = Network::new(
        &model,
        5,
        &NetworkOptions {
            baseline_relu: true,
        },
    )
    .unwrap();
    assert!(
        base.params()
            .iter()
            .all(|p| p.group != ParamGroup::PolyCoeffs)
    );
    assert!(base.to_tensors().contains_key("poly1.coeffs"));
}

// ---- The same kernels as dfdx ops: gradients through dfdx's tape ----

mod through_dfdx {
    use super::{H, assert_close, values};
    use crate::train::backend::boundary::{SiteLoss, SiteReduce};
    use crate::train::backend::conv::ConvGeom;
    use crate::train::backend::ops::{self, BnDims, Coeffs, Flat};
    use crate::train::backend::poly::PolyBasis;
    use crate::train::backend::pool::PoolGeom;
    use dfdx::shapes::{HasShape, Rank0};
    use dfdx::tensor::{Cpu, Gradients, OwnedTape, Tensor, TensorFromVec, Trace, WithEmptyTape};
    use dfdx::tensor_ops::{Backward, BroadcastTo, SumTo};

    type Owned = OwnedTape<f64, Cpu>;
    type OpFn = dyn Fn(Vec<Flat<f64, Owned>>) -> Flat<f64, Owned>;

    /// Loss = sum(op(inputs) * r), with dfdx's own mul and sum on top of our
    /// op, so the op's gradients pass through dfdx ops before reaching it.
    fn loss_of(dev: &Cpu, inputs: &[Vec<f64>], op: &OpFn, r: &[f64]) -> (f64, Vec<Vec<f64>>) {
        let params: Vec<Tensor<(usize,), f64, Cpu>> =
            inputs.iter().map(|v| ops::param(dev, v.clone())).collect();
        let mut args: Vec<Flat<f64, Owned>> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            // The tape rides on the first argument.
            args.push(if i == 0 {
                p.clone().traced(Gradients::leaky())
            } else {
                p.retaped::<Owned>()
            });
        }
        let out = op(args);
        let rt = dev.tensor_from_vec(r.to_vec(), (r.len(),));
        let loss: Tensor<Rank0, f64, Cpu, Owned> = (out * rt).sum();
        let value = loss.as_vec()[0];
        let mut grads = loss.backward();
        let g = params
            .iter()
            .map(|p| grads.get_or_alloc_mut(p).unwrap().to_vec())
            .collect();
        (value, g)
    }

    fn check_op(name: &str, inputs: Vec<Vec<f64>>, out_len: usize, op: &OpFn, tol: f64) {
        let dev = Cpu::default();
        let r = values(out_len, 99, 1.0);
        let (_, analytic) = loss_of(&dev, &inputs, op, &r);
        for (k, input) in inputs.iter().enumerate() {
            let numeric: Vec<f64> = (0..input.len())
                .map(|i| {
                    let eval = |d: f64| {
                        let mut moved = inputs.clone();
                        moved[k][i] += d;
                        loss_of(&dev, &moved, op, &r).0
                    };
                    (eval(H) - eval(-H)) / (2.0 * H)
                })
                .collect();
            assert_close(&format!("{name} input {k}"), &analytic[k], &numeric, tol);
        }
    }

    #[test]
    fn dense_op() {
        let (batch, i, o) = (3, 4, 5);
        let inputs = vec![
            values(batch * i, 1, 1.0),
            values(o * i, 2, 0.5),
            values(o, 3, 0.5),
        ];
        check_op(
            "dense",
            inputs,
            batch * o,
            &move |mut a| {
                let b = a.pop();
                let w = a.pop().unwrap();
                ops::dense(a.pop().unwrap(), w, b, batch, i, o, true)
            },
            1e-7,
        );
    }

    #[test]
    fn conv_op_with_stride_and_padding() {
        let geom = ConvGeom {
            in_c: 2,
            in_h: 5,
            in_w: 4,
            out_c: 3,
            kernel: [3, 2],
            stride: [2, 1],
            padding: [1, 1],
        };
        let batch = 2;
        let inputs = vec![
            values(batch * geom.in_len(), 4, 1.0),
            values(geom.weight_len(), 5, 0.5),
            values(3, 6, 0.5),
        ];
        check_op(
            "conv",
            inputs,
            batch * geom.out_len(),
            &move |mut a| {
                let b = a.pop();
                let w = a.pop().unwrap();
                ops::conv2d(a.pop().unwrap(), w, b, geom, 1, batch, true)
            },
            1e-7,
        );
    }

    #[test]
    fn grouped_conv_op_on_a_sequence() {
        // One group's geometry; 2 groups over a [4, 7] sequence.
        let geom = ConvGeom {
            in_c: 2,
            in_h: 1,
            in_w: 7,
            out_c: 3,
            kernel: [1, 3],
            stride: [1, 2],
            padding: [0, 1],
        };
        let (batch, groups) = (2, 2);
        let inputs = vec![
            values(batch * geom.in_len() * groups, 4, 1.0),
            values(geom.weight_len() * groups, 5, 0.5),
            values(geom.out_c * groups, 6, 0.5),
        ];
        check_op(
            "grouped conv",
            inputs,
            batch * geom.out_len() * groups,
            &move |mut a| {
                let b = a.pop();
                let w = a.pop().unwrap();
                ops::conv2d(a.pop().unwrap(), w, b, geom, groups, batch, true)
            },
            1e-7,
        );
    }

    #[test]
    fn batchnorm_train_op() {
        let d = BnDims {
            batch: 3,
            channels: 2,
            spatial: 4,
            eps: 1e-5,
        };
        let inputs = vec![values(24, 7, 1.0), values(2, 8, 1.0), values(2, 9, 0.5)];
        check_op(
            "batchnorm",
            inputs,
            24,
            &move |mut a| {
                let (beta, gamma) = (a.pop().unwrap(), a.pop().unwrap());
                let (mut rm, mut rv) = (vec![0.0; 2], vec![1.0; 2]);
                ops::batchnorm_train(a.pop().unwrap(), gamma, beta, d, 0.1, &mut rm, &mut rv)
            },
            1e-6,
        );
    }

    #[test]
    fn poly_op_every_basis_with_boundary_term() {
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power, PolyBasis::RawPower] {
            for degree in [2, 8, 22] {
                let inputs = vec![values(12, 10, 1.5), values(degree + 1, 11, 0.3)];
                check_op(
                    &format!("poly {basis:?} degree {degree}"),
                    inputs,
                    12,
                    &move |mut a| {
                        let c = a.pop().unwrap();
                        let out = ops::poly(
                            a.pop().unwrap(),
                            Coeffs::Trainable(c),
                            1.0,
                            basis,
                            Some((SiteLoss::L2, 1.0)),
                        );
                        // The boundary term joins through dfdx's own ops.
                        let term = out.term.expect("term asked for");
                        let (t, _) = ops::boundary_loss(vec![term], SiteReduce::Sum, 0.5);
                        let n = out.y.shape().0;
                        out.y + t.broadcast_like(&(n,))
                    },
                    1e-6,
                );
            }
        }
    }

    #[test]
    fn pools_relu_dropout_ops() {
        let geom = PoolGeom {
            channels: 2,
            in_h: 4,
            in_w: 5,
            kernel: [2, 2],
            stride: [2, 1],
        };
        let x = values(2 * 40, 12, 1.0);
        let (oh, ow) = geom.out_hw().unwrap();
        check_op(
            "avgpool",
            vec![x.clone()],
            2 * 2 * oh * ow,
            &move |mut a| ops::avgpool(a.pop().unwrap(), geom, 2),
            1e-8,
        );
        check_op(
            "global avgpool",
            vec![x.clone()],
            4,
            &|mut a| ops::global_avgpool(a.pop().unwrap(), 20),
            1e-8,
        );
        check_op(
            "relu",
            vec![x.clone()],
            80,
            &|mut a| ops::relu(a.pop().unwrap()).0,
            1e-8,
        );
        let mask: Vec<f64> = (0..80)
            .map(|i| if i % 3 == 0 { 0.0 } else { 1.5 })
            .collect();
        check_op(
            "dropout",
            vec![x],
            80,
            &move |mut a| ops::dropout(a.pop().unwrap(), mask.clone()),
            1e-8,
        );
    }

    /// The concat op through dfdx, with one tensor joined twice (its
    /// gradient must collect both parts).
    #[test]
    fn concat_op_with_a_repeated_input() {
        let batch = 2;
        let inputs = vec![values(batch * 3, 15, 1.0), values(batch * 5, 16, 1.0)];
        check_op(
            "concat",
            inputs,
            batch * 11,
            &move |mut a| {
                let b = a.pop().unwrap();
                let x = a.pop().unwrap();
                let again = x.with_empty_tape();
                ops::concat(vec![x, b, again], &[3, 5, 3], batch)
            },
            1e-8,
        );
    }

    #[test]
    fn cross_entropy_and_boundary_reduce_ops() {
        let labels = [0u32, 2, 1];
        for reduce in [
            SiteReduce::Sum,
            SiteReduce::Max,
            SiteReduce::L1,
            SiteReduce::L2,
        ] {
            check_op(
                &format!("cross entropy + boundary {reduce:?}"),
                vec![values(9, 13, 2.0), values(6, 14, 2.0)],
                1,
                &move |mut a| {
                    let z = a.pop().unwrap();
                    let ce = ops::cross_entropy_loss(a.pop().unwrap(), &labels, 3);
                    let (s1, s2) = (z.with_empty_tape(), z);
                    let t1 = ops::poly(
                        s1,
                        Coeffs::Fixed(&[0.0, 1.0]),
                        1.0,
                        PolyBasis::Power,
                        Some((SiteLoss::Exp, 1.0)),
                    );
                    let t2 = ops::poly(
                        s2,
                        Coeffs::Fixed(&[0.0, 1.0]),
                        1.0,
                        PolyBasis::Power,
                        Some((SiteLoss::L2, 0.5)),
                    );
                    let terms = vec![t1.term.unwrap(), t2.term.unwrap()];
                    let (b, _) = ops::boundary_loss(terms, reduce, 0.7);
                    // The poly backward ops (which carry the terms' gradient
                    // to z) ride on the outputs' tapes: those must reach the
                    // loss, here with weight 0.
                    let keep: Tensor<Rank0, f64, Cpu, Owned> = (t1.y + t2.y).sum();
                    (ce.loss + b + keep * 0.0).broadcast_like(&(1,))
                },
                1e-6,
            );
        }
    }
}

/// The eval-mode boundary term is weight * reduce(per-site terms) on the
/// eval-mode inputs; for a site on the network input that is the site term
/// of the input itself. Logits are those of `predict`; the ReLU baseline
/// has no term.
#[test]
fn eval_boundary_term_is_the_weighted_site_terms() {
    use super::network::Network;
    let mut s = SeqBuilder::new("", vec![4]);
    s.poly(&relu_poly(2, 1.0, Basis::Chebyshev)).dense(3, true);
    let model = model_from_ops("v", vec![4], 3, s.ops);
    let mut net = Network::new(&model, 1, &NetworkOptions::default()).unwrap();
    let x: Vec<f32> = values(8 * 4, 41, 3.0).iter().map(|v| *v as f32).collect();
    let bl = BoundaryLoss {
        kind: BoundaryKind::Exp,
        penalty: Some(1.5),
        weight: 10.0,
        reduce: Reduce::Sum,
    };
    let (logits, term) = net.predict_with_boundary(&x, 8, &bl).unwrap();
    assert_eq!(logits, net.predict(&x, 8).unwrap());
    let want = 10.0 * site_term(&x, SiteLoss::Exp, 1.5);
    assert!(
        want > 0.0 && (term - want).abs() < 1e-12 * want,
        "{term} vs {want}"
    );
    let relu_opts = NetworkOptions {
        baseline_relu: true,
    };
    let mut relu = Network::new(&model, 1, &relu_opts).unwrap();
    assert_eq!(relu.predict_with_boundary(&x, 8, &bl).unwrap().1, 0.0);
}

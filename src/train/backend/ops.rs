//! Our kernels as dfdx ops: dfdx holds the tensors and the tape and runs the
//! reverse pass; each op here runs one of our forward kernels and registers
//! our hand-written backward kernel with the public
//! `Tape::add_backward_op` + `Gradients::get_or_alloc_mut`.
//!
//! The recipe (DESIGN.md section 5), the same in every op: `.contiguous()`
//! each input, `split_tape()` each and `merge` the tapes; copy each input's
//! data out once, run the kernel, wrap the output with `tensor_from_vec`; if
//! the tape records, capture the inputs' data and ghosts in a backward op
//! that takes the output gradient and ADDS into each input's gradient (our
//! backward kernels all accumulate); `put_tape` on the output.
//!
//! Activations are flat `(usize,)` tensors (`[batch, features...]` row-major);
//! the op arguments carry the geometry. Pitfalls that finite differences
//! caught: the tape rides on the first argument; a tensor used k times
//! needs `with_empty_tape()` k-1 times (dropping the tape owner drops the
//! upstream backward ops); parameters are tape-less tensors passed as
//! `p.retaped()`.

use super::batchnorm::{bn_backward, bn_forward_eval, bn_forward_train};
use super::boundary::{SiteLoss, SiteReduce, reduce_sites, site_backward, site_term};
use super::concat::{concat_backward, concat_forward};
use super::conv::{ConvGeom, grouped_backward, grouped_forward};
use super::dense::{dense_backward, dense_forward};
use super::elementwise::{relu_backward, relu_forward};
use super::loss::cross_entropy;
use super::poly::{PolyBasis, poly_backward, poly_forward};
use super::pool::{
    PoolGeom, avgpool_backward, avgpool_forward, global_avgpool_backward, global_avgpool_forward,
};
use super::real::Real;
use dfdx::shapes::{Dtype, HasShape, Rank0, Shape};
use dfdx::tensor::{Cpu, Merge, NoneTape, PutTape, SplitTape, Tape, Tensor, TensorFromVec};
use dfdx::tensor_ops::ReshapeTo;

/// A scalar our kernels and dfdx's CPU device both support (f32, f64).
pub trait Elem: Real + Dtype + num_traits::Float {}
impl<T: Real + Dtype + num_traits::Float> Elem for T {}

/// A tape type (`OwnedTape` while training, `NoneTape` in eval).
pub trait Tp<T: Elem>: Tape<T, Cpu> + Merge<Self> {}
impl<T: Elem, X: Tape<T, Cpu> + Merge<X>> Tp<T> for X {}

/// A flat activation or parameter tensor.
pub type Flat<T, P> = Tensor<(usize,), T, Cpu, P>;
/// A scalar loss tensor.
pub type Scalar<T, P> = Tensor<Rank0, T, Cpu, P>;
/// A stored parameter (no tape).
pub type Param<T> = Tensor<(usize,), T, Cpu>;

/// Copies a tensor's data out (the one copy at an op's input boundary).
fn values<T: Elem, S: Shape>(t: &Tensor<S, T, Cpu>) -> Vec<T> {
    let mut v = vec![<T as Real>::ZERO; t.shape().num_elements()];
    t.copy_into(&mut v);
    v
}

/// Contiguous input without its tape, plus the tape.
fn split<T: Elem, S: Shape, P: Tp<T>>(t: Tensor<S, T, Cpu, P>) -> (Tensor<S, T, Cpu>, P) {
    t.contiguous().split_tape()
}

/// Takes a gradient buffer out of `grads` (zeros if absent) so that a
/// kernel can add into it without aliasing the others; see `put_grad!`.
/// (Macros because dfdx's `Tensorlike` and `GhostTensor` are not nameable
/// outside dfdx; inference still accepts them.)
macro_rules! take_grad {
    ($grads:expr, $t:expr) => {
        std::mem::take(&mut **$grads.get_or_alloc_mut($t)?)
    };
}

macro_rules! put_grad {
    ($grads:expr, $t:expr, $v:expr) => {
        **$grads.get_or_alloc_mut($t)? = $v
    };
}

fn flat<T: Elem>(dev: &Cpu, v: Vec<T>) -> Param<T> {
    let n = v.len();
    dev.tensor_from_vec(v, (n,))
}

/// A stored parameter from its values.
pub fn param<T: Elem>(dev: &Cpu, v: Vec<T>) -> Param<T> {
    flat(dev, v)
}

/// Reads a parameter's values (one copy).
pub fn param_values<T: Elem>(p: &Param<T>) -> Vec<T> {
    values(p)
}

/// Max |x| (NaN if any element is NaN), for the per-site activation report.
pub fn max_abs<T: Real>(x: &[T]) -> f32 {
    let mut m = 0.0f32;
    for v in x {
        let a = v.to_f32().abs();
        if a.is_nan() {
            return f32::NAN;
        }
        m = m.max(a);
    }
    m
}

/// Dense layer; `need_dx` false skips the input gradient (the network's input).
#[allow(clippy::too_many_arguments)]
pub fn dense<T: Elem, P: Tp<T>>(
    x: Flat<T, P>,
    w: Flat<T, P>,
    b: Option<Flat<T, P>>,
    batch: usize,
    in_f: usize,
    out_f: usize,
    need_dx: bool,
) -> Flat<T, P> {
    let (x, tape) = split(x);
    let (w, wt) = split(w);
    let mut tape = tape.merge(wt);
    let b = b.map(|b| {
        let (b, bt) = split(b);
        tape = std::mem::take(&mut tape).merge(bt);
        b
    });
    let (xv, wv) = (values(&x), values(&w));
    let bv = b.as_ref().map(values);
    let mut y = vec![<T as Real>::ZERO; batch * out_f];
    dense_forward(&xv, batch, in_f, out_f, &wv, bv.as_deref(), &mut y);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg, wg, bg) = (out.ghost(), x.ghost(), w.ghost(), b.map(|b| b.ghost()));
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = if need_dx {
                take_grad!(grads, &xg)
            } else {
                Vec::new()
            };
            let mut dw = take_grad!(grads, &wg);
            let mut db = match &bg {
                Some(g) => Some(take_grad!(grads, g)),
                None => None,
            };
            let dxs = need_dx.then_some(dx.as_mut_slice());
            dense_backward(
                &xv,
                batch,
                in_f,
                out_f,
                &wv,
                &dy,
                dxs,
                &mut dw,
                db.as_deref_mut(),
            );
            if need_dx {
                put_grad!(grads, &xg, dx);
            }
            put_grad!(grads, &wg, dw);
            if let (Some(g), Some(d)) = (bg, db) {
                put_grad!(grads, &g, d);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// 2-D convolution (im2col + our matmul) in `groups` groups of `geom`
/// each (see [`grouped_forward`]); `need_dx` as for [`dense`].
pub fn conv2d<T: Elem, P: Tp<T>>(
    x: Flat<T, P>,
    w: Flat<T, P>,
    b: Option<Flat<T, P>>,
    geom: ConvGeom,
    groups: usize,
    batch: usize,
    need_dx: bool,
) -> Flat<T, P> {
    let (x, tape) = split(x);
    let (w, wt) = split(w);
    let mut tape = tape.merge(wt);
    let b = b.map(|b| {
        let (b, bt) = split(b);
        tape = std::mem::take(&mut tape).merge(bt);
        b
    });
    let (xv, wv) = (values(&x), values(&w));
    let bv = b.as_ref().map(values);
    let mut y = vec![<T as Real>::ZERO; batch * geom.out_len() * groups];
    grouped_forward(&geom, groups, &xv, batch, &wv, bv.as_deref(), &mut y);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg, wg, bg) = (out.ghost(), x.ghost(), w.ghost(), b.map(|b| b.ghost()));
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = if need_dx {
                take_grad!(grads, &xg)
            } else {
                Vec::new()
            };
            let mut dw = take_grad!(grads, &wg);
            let mut db = match &bg {
                Some(g) => Some(take_grad!(grads, g)),
                None => None,
            };
            let dxs = need_dx.then_some(dx.as_mut_slice());
            grouped_backward(
                &geom,
                groups,
                &xv,
                batch,
                &wv,
                &dy,
                dxs,
                &mut dw,
                db.as_deref_mut(),
            );
            if need_dx {
                put_grad!(grads, &xg, dx);
            }
            put_grad!(grads, &wg, dw);
            if let (Some(g), Some(d)) = (bg, db) {
                put_grad!(grads, &g, d);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// BatchNorm geometry: `[batch, channels, spatial]`.
#[derive(Debug, Clone, Copy)]
pub struct BnDims {
    pub batch: usize,
    pub channels: usize,
    pub spatial: usize,
    pub eps: f64,
}

/// BatchNorm in training mode (batch statistics); updates the running
/// statistics with `momentum`.
pub fn batchnorm_train<T: Elem, P: Tp<T>>(
    x: Flat<T, P>,
    gamma: Flat<T, P>,
    beta: Flat<T, P>,
    d: BnDims,
    momentum: f64,
    running_mean: &mut [T],
    running_var: &mut [T],
) -> Flat<T, P> {
    let (x, tape) = split(x);
    let (gamma, gt) = split(gamma);
    let (beta, bt) = split(beta);
    let mut tape = tape.merge(gt).merge(bt);
    let (xv, gv, bv) = (values(&x), values(&gamma), values(&beta));
    let mut y = vec![<T as Real>::ZERO; xv.len()];
    let cache = bn_forward_train(
        &xv,
        d.batch,
        d.channels,
        d.spatial,
        &gv,
        &bv,
        d.eps,
        momentum,
        running_mean,
        running_var,
        &mut y,
    );
    drop(xv);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg, gg, bg) = (out.ghost(), x.ghost(), gamma.ghost(), beta.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            let mut dg = take_grad!(grads, &gg);
            let mut db = take_grad!(grads, &bg);
            bn_backward(
                &cache,
                &dy,
                d.batch,
                d.channels,
                d.spatial,
                &gv,
                Some(&mut dx),
                &mut dg,
                &mut db,
            );
            put_grad!(grads, &xg, dx);
            put_grad!(grads, &gg, dg);
            put_grad!(grads, &bg, db);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// BatchNorm in eval mode (running statistics). Forward only: evaluation
/// never records a tape.
pub fn batchnorm_eval<T: Elem, P: Tp<T>>(
    x: Flat<T, P>,
    gamma: Flat<T, P>,
    beta: Flat<T, P>,
    d: BnDims,
    running_mean: &[T],
    running_var: &[T],
) -> Flat<T, P> {
    assert!(!P::OWNS_TAPE, "eval-mode batchnorm is never differentiated");
    let (x, tape) = split(x);
    let (gamma, gt) = split(gamma);
    let (beta, bt) = split(beta);
    let tape = tape.merge(gt).merge(bt);
    let (xv, gv, bv) = (values(&x), values(&gamma), values(&beta));
    let mut y = vec![<T as Real>::ZERO; xv.len()];
    bn_forward_eval(
        &xv,
        d.channels,
        d.spatial,
        &gv,
        &bv,
        d.eps,
        running_mean,
        running_var,
        &mut y,
    );
    flat(x.device(), y).put_tape(tape)
}

/// The polynomial's coefficients: a trainable parameter or fixed values.
pub enum Coeffs<'a, T: Elem, P> {
    Trainable(Flat<T, P>),
    Fixed(&'a [T]),
}

/// What [`poly`] returns besides the output.
pub struct PolyOut<T: Elem, P> {
    pub y: Flat<T, P>,
    /// The site's boundary term (a second output of the same op), when asked.
    pub term: Option<Scalar<T, P>>,
    pub term_value: f64,
    pub max_abs: f32,
    /// The inputs are finite but some output is not: the polynomial itself
    /// overflowed (e.g. x^22 in float32 past |x| = 56.4 in the raw power form).
    pub overflowed: bool,
}

/// The fused polynomial activation p(x / range), and optionally this site's
/// boundary term computed from the same copy of x.
pub fn poly<T: Elem, P: Tp<T>>(
    x: Flat<T, P>,
    coeffs: Coeffs<'_, T, P>,
    range: f64,
    basis: PolyBasis,
    site_loss: Option<(SiteLoss, f64)>,
) -> PolyOut<T, P> {
    let (x, mut tape) = split(x);
    let (cv, cg) = match coeffs {
        Coeffs::Trainable(c) => {
            let (c, ct) = split(c);
            tape = tape.merge(ct);
            (values(&c), Some(c.ghost()))
        }
        Coeffs::Fixed(c) => (c.to_vec(), None),
    };
    let xv = values(&x);
    let max_abs = max_abs(&xv);
    let range_t = <T as Real>::from_f64(range);
    let mut y = vec![<T as Real>::ZERO; xv.len()];
    poly_forward(&xv, &cv, range_t, basis, &mut y);
    let overflowed = max_abs.is_finite() && y.iter().any(|v| !v.is_finite());
    let dev = x.device().clone();
    let out = flat(&dev, y);
    let (term, term_value) = match site_loss {
        Some((kind, penalty)) => {
            let v = site_term(&xv, kind, penalty);
            let t: Scalar<T, P> = dev
                .tensor_from_vec(vec![<T as Real>::from_f64(v)], ())
                .put_tape(P::default());
            (Some(t), v)
        }
        None => (None, 0.0),
    };
    if P::OWNS_TAPE {
        let (yg, xg) = (out.ghost(), x.ghost());
        let tg = term.as_ref().map(|t| t.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            let mut dc = match &cg {
                Some(g) => Some(take_grad!(grads, g)),
                None => None,
            };
            poly_backward(
                &xv,
                &dy,
                &cv,
                range_t,
                basis,
                Some(&mut dx),
                dc.as_deref_mut(),
            );
            if let (Some(tg), Some((kind, penalty))) = (tg, site_loss) {
                let weight = Real::to_f64(take_grad!(grads, &tg)[0]);
                site_backward(&xv, kind, penalty, weight, &mut dx);
            }
            put_grad!(grads, &xg, dx);
            if let (Some(g), Some(d)) = (cg, dc) {
                put_grad!(grads, &g, d);
            }
            Ok(())
        });
    }
    PolyOut {
        y: out.put_tape(tape),
        term,
        term_value,
        max_abs,
        overflowed,
    }
}

/// ReLU (the baseline); returns max |x| too.
pub fn relu<T: Elem, P: Tp<T>>(x: Flat<T, P>) -> (Flat<T, P>, f32) {
    let (x, mut tape) = split(x);
    let xv = values(&x);
    let m = max_abs(&xv);
    let mut y = vec![<T as Real>::ZERO; xv.len()];
    relu_forward(&xv, &mut y);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg) = (out.ghost(), x.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            relu_backward(&xv, &dy, &mut dx);
            put_grad!(grads, &xg, dx);
            Ok(())
        });
    }
    (out.put_tape(tape), m)
}

/// Average pooling over `batch` samples.
pub fn avgpool<T: Elem, P: Tp<T>>(x: Flat<T, P>, geom: PoolGeom, batch: usize) -> Flat<T, P> {
    let (x, mut tape) = split(x);
    let xv = values(&x);
    let (oh, ow) = geom
        .out_hw()
        .expect("pool geometry validated at build time");
    let mut y = vec![<T as Real>::ZERO; batch * geom.channels * oh * ow];
    avgpool_forward(&geom, &xv, &mut y);
    drop(xv);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg) = (out.ghost(), x.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            avgpool_backward(&geom, &dy, &mut dx);
            put_grad!(grads, &xg, dx);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// Mean over each plane of `spatial` elements.
pub fn global_avgpool<T: Elem, P: Tp<T>>(x: Flat<T, P>, spatial: usize) -> Flat<T, P> {
    let (x, mut tape) = split(x);
    let xv = values(&x);
    let mut y = vec![<T as Real>::ZERO; xv.len() / spatial];
    global_avgpool_forward(&xv, spatial, &mut y);
    drop(xv);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg) = (out.ghost(), x.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            global_avgpool_backward(&dy, spatial, &mut dx);
            put_grad!(grads, &xg, dx);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// The inputs' samples joined per sample (`concat`): input i holds `lens[i]`
/// values per sample. `xs` must not be empty; a tensor may appear more than
/// once (its gradient collects every part).
pub fn concat<T: Elem, P: Tp<T>>(xs: Vec<Flat<T, P>>, lens: &[usize], batch: usize) -> Flat<T, P> {
    let mut tape = P::default();
    let mut inputs = Vec::with_capacity(xs.len());
    for x in xs {
        let (x, t) = split(x);
        tape = tape.merge(t);
        inputs.push(x);
    }
    let data: Vec<Vec<T>> = inputs.iter().map(values).collect();
    let slices: Vec<&[T]> = data.iter().map(Vec::as_slice).collect();
    let total: usize = lens.iter().sum();
    let mut y = vec![<T as Real>::ZERO; batch * total];
    concat_forward(&slices, lens, batch, &mut y);
    drop(slices);
    drop(data);
    let dev = inputs
        .first()
        .map(|x| x.device().clone())
        .expect("concat of at least one input");
    let out = flat(&dev, y);
    if P::OWNS_TAPE {
        let yg = out.ghost();
        let xgs: Vec<_> = inputs.iter().map(|x| x.ghost()).collect();
        let lens = lens.to_vec();
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            for (i, xg) in xgs.iter().enumerate() {
                let mut dx = take_grad!(grads, xg);
                concat_backward(&dy, &lens, i, batch, &mut dx);
                put_grad!(grads, xg, dx);
            }
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// Element-wise multiplication by a fixed mask (inverted dropout).
pub fn dropout<T: Elem, P: Tp<T>>(x: Flat<T, P>, mask: Vec<T>) -> Flat<T, P> {
    let (x, mut tape) = split(x);
    let xv = values(&x);
    let y: Vec<T> = xv.iter().zip(&mask).map(|(a, m)| *a * *m).collect();
    drop(xv);
    let out = flat(x.device(), y);
    if P::OWNS_TAPE {
        let (yg, xg) = (out.ghost(), x.ghost());
        tape.add_backward_op(move |grads| {
            let dy = take_grad!(grads, &yg);
            let mut dx = take_grad!(grads, &xg);
            for ((d, g), m) in dx.iter_mut().zip(&dy).zip(&mask) {
                *d += *g * *m;
            }
            put_grad!(grads, &xg, dx);
            Ok(())
        });
    }
    out.put_tape(tape)
}

/// What [`cross_entropy_loss`] returns besides the loss tensor.
pub struct CeOut<T: Elem, P> {
    pub loss: Scalar<T, P>,
    pub value: f64,
    pub correct: usize,
}

/// Mean softmax cross-entropy of logits `[batch, classes]`; labels < classes.
pub fn cross_entropy_loss<T: Elem, P: Tp<T>>(
    logits: Flat<T, P>,
    labels: &[u32],
    classes: usize,
) -> CeOut<T, P> {
    let (x, mut tape) = split(logits);
    let ce = cross_entropy(&values(&x), labels, classes);
    let loss: Scalar<T, NoneTape> = x
        .device()
        .tensor_from_vec(vec![<T as Real>::from_f64(ce.loss)], ());
    if P::OWNS_TAPE {
        let (lg, xg) = (loss.ghost(), x.ghost());
        let dlogits = ce.dlogits;
        tape.add_backward_op(move |grads| {
            let g = take_grad!(grads, &lg)[0];
            let mut dx = take_grad!(grads, &xg);
            for (d, v) in dx.iter_mut().zip(&dlogits) {
                *d += g * *v;
            }
            put_grad!(grads, &xg, dx);
            Ok(())
        });
    }
    CeOut {
        loss: loss.put_tape(tape),
        value: ce.loss,
        correct: ce.correct,
    }
}

/// `weight * reduce(terms)` over the per-site boundary terms; returns the
/// loss tensor and its value. `terms` must not be empty.
pub fn boundary_loss<T: Elem, P: Tp<T>>(
    terms: Vec<Scalar<T, P>>,
    reduce: SiteReduce,
    weight: f64,
) -> (Scalar<T, P>, f64) {
    let mut tape = P::default();
    let mut ghosts = Vec::with_capacity(terms.len());
    let mut values_f64 = Vec::with_capacity(terms.len());
    let mut dev = None;
    for t in terms {
        let (t, tt) = split(t);
        tape = tape.merge(tt);
        values_f64.push(Real::to_f64(values(&t)[0]));
        ghosts.push(t.ghost());
        dev.get_or_insert_with(|| t.device().clone());
    }
    let dev = dev.expect("boundary loss over at least one site");
    let (value, dterms) = reduce_sites(&values_f64, reduce);
    let value = weight * value;
    let out: Scalar<T, NoneTape> = dev.tensor_from_vec(vec![<T as Real>::from_f64(value)], ());
    if P::OWNS_TAPE {
        let og = out.ghost();
        tape.add_backward_op(move |grads| {
            let g = Real::to_f64(take_grad!(grads, &og)[0]);
            for (tg, d) in ghosts.iter().zip(&dterms) {
                let mut dt = take_grad!(grads, tg);
                dt[0] += <T as Real>::from_f64(g * weight * d);
                put_grad!(grads, tg, dt);
            }
            Ok(())
        });
    }
    (out.put_tape(tape), value)
}

//! The trainable network built from a checked model: a static layer graph
//! and parameters stored as dfdx tensors. A training step builds the
//! forward pass from our dfdx ops (`super::ops`) on a recording tape, and
//! dfdx's `backward()` runs the reverse pass; there is no other.

use super::boundary::{SiteLoss, SiteReduce, reduce_sites};
use super::conv::ConvGeom;
use super::elementwise::dropout_mask;
use super::ops::{self, BnDims, Elem, Flat, Param, Scalar, Tp};
use super::poly::PolyBasis;
use super::pool::PoolGeom;
use super::real::Real;
use crate::ir::{
    Basis, BoundaryKind, BoundaryLoss, Model, Op, OpKind, PolyAct, Reduce, Shape, Tensor,
};
use crate::train::error::TrainError;
use dfdx::optim::UnusedTensors;
use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, Gradients, NoneTape, OwnedTape, Trace, WithEmptyTape};
use dfdx::tensor_ops::Backward;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkOptions {
    /// ReLU in place of every polynomial (a comparison baseline; not HE-compatible).
    pub baseline_relu: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamGroup {
    Weight,
    Bias,
    BatchNormAffine,
    PolyCoeffs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamInfo {
    /// `<op name>.<param>` as in `Op::param_shapes`.
    pub name: String,
    pub group: ParamGroup,
    pub len: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepOutput {
    /// ce_loss + boundary_loss.
    pub loss: f64,
    pub ce_loss: f64,
    /// The weighted term: lambda * reduce(per-site terms); 0 without boundary loss.
    pub boundary_loss: f64,
    /// Correct arg-max predictions in the batch.
    pub correct: usize,
    /// Per activation site (op name): max |input| in this batch (NaN if any input was NaN).
    pub act_max_abs: Vec<(String, f32)>,
    /// The first site (in forward order) whose finite inputs gave a
    /// non-finite output: where a NaN or infinite loss began.
    pub overflow_site: Option<String>,
}

struct Slot<T: Elem> {
    info: ParamInfo,
    shape: Vec<usize>,
    value: Param<T>,
    grad: Vec<T>,
}

enum Coeffs<T> {
    Trainable(usize),
    Fixed(Vec<T>),
}

enum Layer<T> {
    Dense {
        in_f: usize,
        out_f: usize,
        w: usize,
        b: Option<usize>,
    },
    Conv {
        /// One group's geometry.
        geom: ConvGeom,
        groups: usize,
        w: usize,
        b: Option<usize>,
    },
    BatchNorm {
        name: String,
        c: usize,
        s: usize,
        eps: f64,
        momentum: f64,
        gamma: usize,
        beta: usize,
        running_mean: Vec<T>,
        running_var: Vec<T>,
    },
    Poly {
        name: String,
        site: usize,
        basis: PolyBasis,
        range: f64,
        coeffs: Coeffs<T>,
    },
    /// The baseline's ReLU; keeps the site's fitted coefficients for checkpoints.
    Relu {
        name: String,
        site: usize,
        coeffs: Vec<T>,
    },
    AvgPool {
        geom: PoolGeom,
    },
    GlobalAvgPool {
        spatial: usize,
    },
    Flatten,
    Dropout {
        p: f64,
        id: u64,
    },
    Scale {
        factor: T,
    },
    Residual {
        body: Vec<Layer<T>>,
        shortcut: Vec<Layer<T>>,
    },
    /// Two or more branches; `lens[i]`: values per sample of branch i's output.
    Concat {
        branches: Vec<Vec<Layer<T>>>,
        lens: Vec<usize>,
    },
}

struct Site {
    name: String,
    range: f64,
}

/// The network, generic over the scalar type (f64 for gradient checks).
pub struct NetworkOf<T: Elem> {
    layers: Vec<Layer<T>>,
    params: Vec<Slot<T>>,
    sites: Vec<Site>,
    input_len: usize,
    classes: usize,
    baseline_relu: bool,
    dev: Cpu,
    /// Scratch for `visit_params_mut` (values copied out of and back into dfdx).
    scratch: Vec<T>,
}

/// Callback of [`NetworkOf::visit_params_mut`]: (index, info, values, last gradients).
pub type ParamVisitor<'a, T> = dyn FnMut(usize, &ParamInfo, &mut [T], &[T]) + 'a;

/// The network the trainer uses.
pub type Network = NetworkOf<f32>;

struct Builder<'a> {
    rng: StdRng,
    opts: &'a NetworkOptions,
    params_len: usize,
    dropouts: u64,
}

fn shape_err(op: &Op, message: String) -> TrainError {
    TrainError::Shape {
        op: op.name.clone(),
        message,
    }
}

fn kaiming<T: Elem>(rng: &mut StdRng, len: usize, fan_in: usize) -> Vec<T> {
    // PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    (0..len)
        .map(|_| <T as Real>::from_f64(rng.gen_range(-bound..=bound)))
        .collect()
}

fn site_reduce(r: Reduce) -> SiteReduce {
    match r {
        Reduce::Sum => SiteReduce::Sum,
        Reduce::Max => SiteReduce::Max,
        Reduce::L1 => SiteReduce::L1,
        Reduce::L2 => SiteReduce::L2,
    }
}

fn poly_basis(b: Basis) -> PolyBasis {
    match b {
        Basis::Chebyshev => PolyBasis::Chebyshev,
        Basis::Power => PolyBasis::Power,
        Basis::RawPower => PolyBasis::RawPower,
    }
}

impl<T: Elem> NetworkOf<T> {
    pub fn new(model: &Model, seed: u64, opts: &NetworkOptions) -> Result<Self, TrainError> {
        let mut net = NetworkOf {
            layers: Vec::new(),
            params: Vec::new(),
            sites: Vec::new(),
            input_len: model.input.numel() as usize,
            classes: model.classes,
            baseline_relu: opts.baseline_relu,
            dev: Cpu::default(),
            scratch: Vec::new(),
        };
        let mut b = Builder {
            rng: StdRng::seed_from_u64(seed),
            opts,
            params_len: 0,
            dropouts: 0,
        };
        let (layers, out) = net.build_seq(&model.net, &model.input, &mut b)?;
        net.layers = layers;
        if out.numel() != model.classes as u64 {
            return Err(TrainError::Shape {
                op: model.net.last().map(|o| o.name.clone()).unwrap_or_default(),
                message: format!(
                    "the network ends with shape {out}, but the model has {} classes",
                    model.classes
                ),
            });
        }
        Ok(net)
    }

    fn add_param(
        &mut self,
        name: String,
        group: ParamGroup,
        shape: Vec<usize>,
        value: Vec<T>,
    ) -> usize {
        let len = value.len();
        self.params.push(Slot {
            info: ParamInfo { name, group, len },
            shape,
            grad: vec![<T as Real>::ZERO; len],
            value: ops::param(&self.dev, value),
        });
        self.params.len() - 1
    }

    fn build_seq(
        &mut self,
        ops: &[Op],
        input: &Shape,
        b: &mut Builder,
    ) -> Result<(Vec<Layer<T>>, Shape), TrainError> {
        let mut shape = input.clone();
        let mut layers = Vec::with_capacity(ops.len());
        for op in ops {
            if op.input != shape {
                return Err(shape_err(
                    op,
                    format!("declared input shape {} but receives {shape}", op.input),
                ));
            }
            let (layer, out) = self.build_op(op, &shape, b)?;
            if out != op.output {
                return Err(shape_err(
                    op,
                    format!("declared output shape {} but computes {out}", op.output),
                ));
            }
            layers.push(layer);
            shape = out;
        }
        Ok((layers, shape))
    }

    fn build_op(
        &mut self,
        op: &Op,
        input: &Shape,
        b: &mut Builder,
    ) -> Result<(Layer<T>, Shape), TrainError> {
        let dims = input.dims();
        let numel = input.numel() as usize;
        let name = |s: &str| format!("{}.{s}", op.name);
        b.params_len += 1;
        Ok(match &op.kind {
            OpKind::Dense {
                in_features,
                out_features,
                bias,
            } => {
                if numel != *in_features {
                    return Err(shape_err(
                        op,
                        format!("expects {in_features} input features, receives {input}"),
                    ));
                }
                let wv = kaiming(&mut b.rng, in_features * out_features, *in_features);
                let w = self.add_param(
                    name("weight"),
                    ParamGroup::Weight,
                    vec![*out_features, *in_features],
                    wv,
                );
                let bias = if *bias {
                    let bv = kaiming(&mut b.rng, *out_features, *in_features);
                    Some(self.add_param(name("bias"), ParamGroup::Bias, vec![*out_features], bv))
                } else {
                    None
                };
                (
                    Layer::Dense {
                        in_f: *in_features,
                        out_f: *out_features,
                        w,
                        b: bias,
                    },
                    Shape(vec![*out_features]),
                )
            }
            OpKind::Conv {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
                bias,
                groups,
            } => {
                // A sequence [C, T] is convolved as [C, 1, T].
                let (in_h, in_w) = match dims {
                    [c, h, w] if c == in_channels => (*h, *w),
                    [c, t] if c == in_channels => (1, *t),
                    _ => {
                        return Err(shape_err(
                            op,
                            format!(
                                "expects [{in_channels}, H, W] or [{in_channels}, T], receives {input}"
                            ),
                        ));
                    }
                };
                let groups = (*groups).max(1);
                if in_channels % groups != 0 || out_channels % groups != 0 {
                    return Err(shape_err(
                        op,
                        format!(
                            "groups {groups} do not divide channels {in_channels} -> {out_channels}"
                        ),
                    ));
                }
                let geom = ConvGeom {
                    in_c: in_channels / groups,
                    in_h,
                    in_w,
                    out_c: out_channels / groups,
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                };
                let (oh, ow) = geom.out_hw().ok_or_else(|| {
                    shape_err(op, format!("kernel {kernel:?} does not fit input {input}"))
                })?;
                // PyTorch's fan-in: one group's input channels times the kernel.
                let fan_in = geom.patch_len();
                let wv = kaiming(&mut b.rng, geom.weight_len() * groups, fan_in);
                let shape = op.param_shapes().swap_remove(0).1;
                let w = self.add_param(name("weight"), ParamGroup::Weight, shape, wv);
                let bias = if *bias {
                    let bv = kaiming(&mut b.rng, *out_channels, fan_in);
                    Some(self.add_param(name("bias"), ParamGroup::Bias, vec![*out_channels], bv))
                } else {
                    None
                };
                let output = if dims.len() == 2 {
                    vec![*out_channels, ow]
                } else {
                    vec![*out_channels, oh, ow]
                };
                (
                    Layer::Conv {
                        geom,
                        groups,
                        w,
                        b: bias,
                    },
                    Shape(output),
                )
            }
            OpKind::BatchNorm {
                channels,
                eps,
                momentum,
                ..
            } => {
                if dims.is_empty() || dims[0] != *channels {
                    return Err(shape_err(
                        op,
                        format!("expects {channels} channels in dim 0, receives {input}"),
                    ));
                }
                let c = *channels;
                let gamma = self.add_param(
                    name("gamma"),
                    ParamGroup::BatchNormAffine,
                    vec![c],
                    vec![<T as Real>::ONE; c],
                );
                let beta = self.add_param(
                    name("beta"),
                    ParamGroup::BatchNormAffine,
                    vec![c],
                    vec![<T as Real>::ZERO; c],
                );
                (
                    Layer::BatchNorm {
                        name: op.name.clone(),
                        c,
                        s: numel / c.max(1),
                        eps: *eps,
                        momentum: *momentum,
                        gamma,
                        beta,
                        running_mean: vec![<T as Real>::ZERO; c],
                        running_var: vec![<T as Real>::ONE; c],
                    },
                    input.clone(),
                )
            }
            OpKind::Poly(act) => (self.build_poly(op, act, b)?, input.clone()),
            OpKind::AvgPool { kernel, stride } => {
                // A sequence [C, T] is pooled as [C, 1, T].
                let (in_h, in_w) = match dims {
                    [_, h, w] => (*h, *w),
                    [_, t] => (1, *t),
                    _ => {
                        return Err(shape_err(
                            op,
                            format!("expects [C, H, W] or [C, T], receives {input}"),
                        ));
                    }
                };
                let geom = PoolGeom {
                    channels: dims[0],
                    in_h,
                    in_w,
                    kernel: *kernel,
                    stride: *stride,
                };
                let (oh, ow) = geom.out_hw().ok_or_else(|| {
                    shape_err(op, format!("window {kernel:?} does not fit input {input}"))
                })?;
                let output = if dims.len() == 2 {
                    vec![dims[0], ow]
                } else {
                    vec![dims[0], oh, ow]
                };
                (Layer::AvgPool { geom }, Shape(output))
            }
            OpKind::GlobalAvgPool => {
                if dims.len() < 2 {
                    return Err(shape_err(
                        op,
                        format!("expects [C, spatial...], receives {input}"),
                    ));
                }
                (
                    Layer::GlobalAvgPool {
                        spatial: numel / dims[0].max(1),
                    },
                    Shape(vec![dims[0]]),
                )
            }
            OpKind::Flatten => (Layer::Flatten, Shape(vec![numel])),
            OpKind::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(shape_err(
                        op,
                        format!("dropout probability {p} is outside [0, 1)"),
                    ));
                }
                b.dropouts += 1;
                (
                    Layer::Dropout {
                        p: *p,
                        id: b.dropouts,
                    },
                    input.clone(),
                )
            }
            OpKind::Scale { factor } => (
                Layer::Scale {
                    factor: <T as Real>::from_f64(*factor),
                },
                input.clone(),
            ),
            OpKind::Residual { body, shortcut } => {
                let (body_layers, body_out) = self.build_seq(body, input, b)?;
                let (short_layers, short_out) = self.build_seq(shortcut, input, b)?;
                if body_out != short_out {
                    return Err(shape_err(
                        op,
                        format!("body gives {body_out} but the shortcut gives {short_out}"),
                    ));
                }
                (
                    Layer::Residual {
                        body: body_layers,
                        shortcut: short_layers,
                    },
                    body_out,
                )
            }
            OpKind::Concat { branches } => self.build_concat(op, branches, input, b)?,
        })
    }

    /// Each branch from `input`, and the shape of their outputs joined along
    /// the first axis (the other axes must agree).
    fn build_concat(
        &mut self,
        op: &Op,
        branches: &[Vec<Op>],
        input: &Shape,
        b: &mut Builder,
    ) -> Result<(Layer<T>, Shape), TrainError> {
        if branches.len() < 2 {
            return Err(shape_err(
                op,
                format!(
                    "a concat needs two or more branches, has {}",
                    branches.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(branches.len());
        let mut lens = Vec::with_capacity(branches.len());
        let mut channels = 0usize;
        let mut rest: Option<Vec<usize>> = None;
        for (i, branch) in branches.iter().enumerate() {
            let (branch_layers, out) = self.build_seq(branch, input, b)?;
            let (first, tail) = out
                .dims()
                .split_first()
                .ok_or_else(|| shape_err(op, format!("branch {} gives a scalar", i + 1)))?;
            match &rest {
                Some(r) if r.as_slice() != tail => {
                    return Err(shape_err(
                        op,
                        format!(
                            "branch {} gives {out}, whose axes after the first differ from branch 1's",
                            i + 1
                        ),
                    ));
                }
                Some(_) => {}
                None => rest = Some(tail.to_vec()),
            }
            channels += first;
            lens.push(out.numel() as usize);
            layers.push(branch_layers);
        }
        let mut dims = vec![channels];
        dims.extend(rest.unwrap_or_default());
        Ok((
            Layer::Concat {
                branches: layers,
                lens,
            },
            Shape(dims),
        ))
    }

    fn build_poly(
        &mut self,
        op: &Op,
        act: &PolyAct,
        b: &mut Builder,
    ) -> Result<Layer<T>, TrainError> {
        let initial = crate::train::fit::initial_coeffs(act).map_err(|source| TrainError::Fit {
            op: op.name.clone(),
            source,
        })?;
        let coeffs: Vec<T> = initial.iter().map(|&c| <T as Real>::from_f64(c)).collect();
        let site = self.sites.len();
        self.sites.push(Site {
            name: op.name.clone(),
            range: act.range,
        });
        if b.opts.baseline_relu {
            return Ok(Layer::Relu {
                name: op.name.clone(),
                site,
                coeffs,
            });
        }
        let coeffs = if act.learnable {
            let len = coeffs.len();
            Coeffs::Trainable(self.add_param(
                format!("{}.coeffs", op.name),
                ParamGroup::PolyCoeffs,
                vec![len],
                coeffs,
            ))
        } else {
            Coeffs::Fixed(coeffs)
        };
        Ok(Layer::Poly {
            name: op.name.clone(),
            site,
            basis: poly_basis(act.basis),
            range: act.range,
            coeffs,
        })
    }

    /// Trainable parameters, in a fixed order (model op order, then
    /// `Op::param_shapes` order).
    pub fn params(&self) -> Vec<ParamInfo> {
        self.params.iter().map(|s| s.info.clone()).collect()
    }

    /// Names of the activation sites, in order (what `act_max_abs` reports).
    pub fn site_names(&self) -> Vec<String> {
        self.sites.iter().map(|s| s.name.clone()).collect()
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Whether this network is the ReLU baseline (not HE-compatible).
    pub fn is_baseline_relu(&self) -> bool {
        self.baseline_relu
    }

    /// Calls `f(index, info, values, last gradients)` for every trainable parameter.
    pub fn visit_params_mut(&mut self, f: &mut ParamVisitor<'_, T>) {
        for (i, s) in self.params.iter_mut().enumerate() {
            self.scratch.resize(s.info.len, <T as Real>::ZERO);
            s.value.copy_into(&mut self.scratch);
            f(i, &s.info, &mut self.scratch, &s.grad);
            s.value.copy_from(&self.scratch);
        }
    }

    fn check_batch(&self, x: &[f32], batch: usize) -> Result<(), TrainError> {
        if batch == 0 {
            return Err(TrainError::Input("empty batch".into()));
        }
        if x.len() != batch * self.input_len {
            return Err(TrainError::Input(format!(
                "{} values for a batch of {batch} samples of {} values each",
                x.len(),
                self.input_len
            )));
        }
        Ok(())
    }

    /// Forward and backward in training mode; leaves the gradients for
    /// [`Self::visit_params_mut`] and updates BatchNorm running statistics.
    pub fn train_step(
        &mut self,
        x: &[f32],
        y: &[u32],
        batch: usize,
        boundary: Option<&BoundaryLoss>,
        step_seed: u64,
    ) -> Result<StepOutput, TrainError> {
        self.check_batch(x, batch)?;
        if y.len() != batch {
            return Err(TrainError::Input(format!(
                "{} labels for a batch of {batch}",
                y.len()
            )));
        }
        if let Some(bad) = y.iter().find(|&&l| l as usize >= self.classes) {
            return Err(TrainError::Input(format!(
                "label {bad} is out of range for {} classes",
                self.classes
            )));
        }
        let site_loss = self.site_loss(boundary);
        let mut ctx = Ctx::<T, OwnedTape<T, Cpu>> {
            training: true,
            seed: step_seed,
            site_loss,
            penalties: self.sites.iter().map(|s| s.range).collect(),
            terms: Vec::new(),
            term_values: vec![0.0; self.sites.len()],
            act_max: vec![0.0; self.sites.len()],
            overflow: None,
        };
        // Only the parameters' gradients outlive the backward pass.
        let mut unused = UnusedTensors::default();
        for s in &self.params {
            unused.add(&s.value);
        }
        let mut grads = Gradients::leaky();
        grads.retain_leafs(&unused.ids);
        let input = self.input_tensor(x).traced(grads);
        let logits = forward_seq(
            &mut self.layers,
            &self.params,
            input,
            batch,
            &mut ctx,
            false,
        );
        let ce = ops::cross_entropy_loss(logits, y, self.classes);
        let mut boundary_loss = 0.0;
        let loss = match (boundary, ctx.site_loss, ctx.terms.is_empty()) {
            (Some(bl), Some(_), false) => {
                let terms = std::mem::take(&mut ctx.terms);
                let (term, value) = ops::boundary_loss(terms, site_reduce(bl.reduce), bl.weight);
                boundary_loss = value;
                // dfdx's own add joins the two loss terms.
                ce.loss + term
            }
            _ => ce.loss,
        };
        let mut grads = loss.backward();
        for s in &mut self.params {
            let g = grads
                .get_or_alloc_mut(&s.value)
                .expect("the CPU device allocates gradients infallibly");
            s.grad = std::mem::take(&mut **g);
        }
        Ok(StepOutput {
            loss: ce.value + boundary_loss,
            ce_loss: ce.value,
            boundary_loss,
            correct: ce.correct,
            act_max_abs: self
                .sites
                .iter()
                .map(|s| s.name.clone())
                .zip(ctx.act_max)
                .collect(),
            overflow_site: ctx.overflow.map(|i| self.sites[i].name.clone()),
        })
    }

    fn input_tensor(&self, x: &[f32]) -> Flat<T, NoneTape> {
        let v: Vec<T> = x.iter().map(|&v| <T as Real>::from_f32(v)).collect();
        ops::param(&self.dev, v)
    }

    /// The per-site boundary term and its threshold (None: each site's own
    /// range) of `boundary`; none for the ReLU baseline.
    fn site_loss(&self, boundary: Option<&BoundaryLoss>) -> Option<(SiteLoss, Option<f64>)> {
        if self.baseline_relu {
            return None;
        }
        boundary.map(|bl| {
            let kind = match bl.kind {
                BoundaryKind::Exp => SiteLoss::Exp,
                BoundaryKind::ExpCapped { cap } => SiteLoss::ExpCapped { cap },
                BoundaryKind::L2 => SiteLoss::L2,
                BoundaryKind::MaxNorm => SiteLoss::MaxNorm,
            };
            (kind, bl.penalty)
        })
    }

    /// Eval-mode logits `[batch, classes]`.
    pub fn predict(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>, TrainError> {
        Ok(self.predict_terms(x, batch, None)?.0)
    }

    /// Eval-mode logits and the batch's weighted boundary term, weight *
    /// reduce(per-site terms), computed in f64 as in training: what the
    /// official code adds to the validation loss that drives the plateau
    /// schedule. 0 for the ReLU baseline and a network without poly sites.
    pub fn predict_with_boundary(
        &mut self,
        x: &[f32],
        batch: usize,
        boundary: &BoundaryLoss,
    ) -> Result<(Vec<f32>, f64), TrainError> {
        let site_loss = self.site_loss(Some(boundary));
        let (logits, terms) = self.predict_terms(x, batch, site_loss)?;
        let value = match (site_loss, terms.is_empty()) {
            (Some(_), false) => {
                boundary.weight * reduce_sites(&terms, site_reduce(boundary.reduce)).0
            }
            _ => 0.0,
        };
        Ok((logits, value))
    }

    /// Eval-mode logits and, with `site_loss`, the per-site boundary terms.
    fn predict_terms(
        &mut self,
        x: &[f32],
        batch: usize,
        site_loss: Option<(SiteLoss, Option<f64>)>,
    ) -> Result<(Vec<f32>, Vec<f64>), TrainError> {
        self.check_batch(x, batch)?;
        let mut ctx = Ctx::<T, NoneTape> {
            training: false,
            seed: 0,
            site_loss,
            penalties: self.sites.iter().map(|s| s.range).collect(),
            terms: Vec::new(),
            term_values: vec![0.0; self.sites.len()],
            act_max: vec![0.0; self.sites.len()],
            overflow: None,
        };
        let input = self.input_tensor(x);
        let logits = forward_seq(
            &mut self.layers,
            &self.params,
            input,
            batch,
            &mut ctx,
            false,
        );
        let logits = ops::param_values(&logits)
            .iter()
            .map(|v| Real::to_f32(*v))
            .collect();
        let terms = if site_loss.is_some() {
            ctx.term_values
        } else {
            Vec::new()
        };
        Ok((logits, terms))
    }

    /// All parameters and BatchNorm running statistics, named per `Op::param_shapes`.
    pub fn to_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for s in &self.params {
            out.insert(
                s.info.name.clone(),
                to_tensor(&s.shape, &ops::param_values(&s.value)),
            );
        }
        collect_layer_tensors(&self.layers, &mut out);
        out
    }

    pub fn load_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
        let mut layer_state = Vec::new();
        collect_layer_state(&mut self.layers, &mut layer_state);
        let names: Vec<(&str, &[usize])> = self
            .params
            .iter()
            .map(|s| (s.info.name.as_str(), s.shape.as_slice()))
            .chain(
                layer_state
                    .iter()
                    .map(|(n, s, _)| (n.as_str(), s.as_slice())),
            )
            .collect();
        for &(name, shape) in &names {
            match tensors.get(name) {
                None => return Err(TrainError::Weights(format!("tensor `{name}` is missing"))),
                Some(t) if t.shape != shape || t.data.len() != shape.iter().product::<usize>() => {
                    return Err(TrainError::Weights(format!(
                        "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                        t.shape
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = tensors.keys().find(|k| !names.iter().any(|(n, _)| n == k)) {
            return Err(TrainError::Weights(format!(
                "tensor `{extra}` belongs to no layer of this model"
            )));
        }
        let convert = |name: &str| -> Vec<T> {
            tensors[name]
                .data
                .iter()
                .map(|&v| <T as Real>::from_f32(v))
                .collect()
        };
        for (name, _, dst) in &mut layer_state {
            **dst = convert(name);
        }
        for s in &mut self.params {
            s.value.copy_from(&convert(&s.info.name));
        }
        Ok(())
    }
}

fn to_tensor<T: Elem>(shape: &[usize], v: &[T]) -> Tensor {
    Tensor::new(shape.to_vec(), v.iter().map(|x| Real::to_f32(*x)).collect())
}

fn collect_layer_tensors<T: Elem>(layers: &[Layer<T>], out: &mut BTreeMap<String, Tensor>) {
    for l in layers {
        match l {
            Layer::BatchNorm {
                name,
                c,
                running_mean,
                running_var,
                ..
            } => {
                out.insert(
                    format!("{name}.running_mean"),
                    to_tensor(&[*c], running_mean),
                );
                out.insert(format!("{name}.running_var"), to_tensor(&[*c], running_var));
            }
            Layer::Poly {
                name,
                coeffs: Coeffs::Fixed(c),
                ..
            }
            | Layer::Relu {
                name, coeffs: c, ..
            } => {
                out.insert(format!("{name}.coeffs"), to_tensor(&[c.len()], c));
            }
            Layer::Residual { body, shortcut } => {
                collect_layer_tensors(body, out);
                collect_layer_tensors(shortcut, out);
            }
            Layer::Concat { branches, .. } => {
                for branch in branches {
                    collect_layer_tensors(branch, out);
                }
            }
            _ => {}
        }
    }
}

fn collect_layer_state<'a, T: Elem>(
    layers: &'a mut [Layer<T>],
    out: &mut Vec<(String, Vec<usize>, &'a mut Vec<T>)>,
) {
    for l in layers {
        match l {
            Layer::BatchNorm {
                name,
                c,
                running_mean,
                running_var,
                ..
            } => {
                out.push((format!("{name}.running_mean"), vec![*c], running_mean));
                out.push((format!("{name}.running_var"), vec![*c], running_var));
            }
            Layer::Poly {
                name,
                coeffs: Coeffs::Fixed(c),
                ..
            }
            | Layer::Relu {
                name, coeffs: c, ..
            } => {
                let len = c.len();
                out.push((format!("{name}.coeffs"), vec![len], c));
            }
            Layer::Residual { body, shortcut } => {
                collect_layer_state(body, out);
                collect_layer_state(shortcut, out);
            }
            Layer::Concat { branches, .. } => {
                for branch in branches {
                    collect_layer_state(branch, out);
                }
            }
            _ => {}
        }
    }
}

/// Per-pass state shared by all layers.
struct Ctx<T: Elem, P> {
    training: bool,
    seed: u64,
    /// Boundary loss kind and its threshold (None: each site's range).
    site_loss: Option<(SiteLoss, Option<f64>)>,
    penalties: Vec<f64>,
    /// The boundary terms of the sites passed so far (training with a boundary loss).
    terms: Vec<Scalar<T, P>>,
    term_values: Vec<f64>,
    act_max: Vec<f32>,
    /// The first site whose polynomial overflowed (see `ops::PolyOut`).
    overflow: Option<usize>,
}

fn forward_seq<T: Elem, P: Tp<T>>(
    layers: &mut [Layer<T>],
    params: &[Slot<T>],
    mut x: Flat<T, P>,
    batch: usize,
    ctx: &mut Ctx<T, P>,
    need_dx: bool,
) -> Flat<T, P> {
    for (i, layer) in layers.iter_mut().enumerate() {
        x = forward_layer(layer, params, x, batch, ctx, need_dx || i > 0);
    }
    x
}

/// A parameter as an op argument: the stored tensor with an empty tape of
/// the pass's kind (its id is what the gradient is filed under).
fn arg<T: Elem, P: Tp<T>>(params: &[Slot<T>], i: usize) -> Flat<T, P> {
    params[i].value.retaped::<P>()
}

fn forward_layer<T: Elem, P: Tp<T>>(
    layer: &mut Layer<T>,
    params: &[Slot<T>],
    x: Flat<T, P>,
    batch: usize,
    ctx: &mut Ctx<T, P>,
    need_dx: bool,
) -> Flat<T, P> {
    match layer {
        Layer::Dense { in_f, out_f, w, b } => {
            let bias = b.map(|i| arg(params, i));
            ops::dense(x, arg(params, *w), bias, batch, *in_f, *out_f, need_dx)
        }
        Layer::Conv { geom, groups, w, b } => {
            let bias = b.map(|i| arg(params, i));
            ops::conv2d(x, arg(params, *w), bias, *geom, *groups, batch, need_dx)
        }
        Layer::BatchNorm {
            c,
            s,
            eps,
            momentum,
            gamma,
            beta,
            running_mean,
            running_var,
            ..
        } => {
            let d = BnDims {
                batch,
                channels: *c,
                spatial: *s,
                eps: *eps,
            };
            let (g, bt) = (arg(params, *gamma), arg(params, *beta));
            if ctx.training {
                ops::batchnorm_train(x, g, bt, d, *momentum, running_mean, running_var)
            } else {
                ops::batchnorm_eval(x, g, bt, d, running_mean, running_var)
            }
        }
        Layer::Poly {
            site,
            basis,
            range,
            coeffs,
            ..
        } => {
            let c = match coeffs {
                Coeffs::Trainable(i) => ops::Coeffs::Trainable(arg(params, *i)),
                Coeffs::Fixed(c) => ops::Coeffs::Fixed(c.as_slice()),
            };
            let site_loss = ctx
                .site_loss
                .map(|(kind, p)| (kind, p.unwrap_or(ctx.penalties[*site])));
            let out = ops::poly(x, c, *range, *basis, site_loss);
            ctx.act_max[*site] = out.max_abs;
            if out.overflowed && ctx.overflow.is_none() {
                ctx.overflow = Some(*site);
            }
            ctx.term_values[*site] = out.term_value;
            ctx.terms.extend(out.term);
            out.y
        }
        Layer::Relu { site, .. } => {
            let (y, m) = ops::relu(x);
            ctx.act_max[*site] = m;
            y
        }
        Layer::AvgPool { geom } => ops::avgpool(x, *geom, batch),
        Layer::GlobalAvgPool { spatial } => ops::global_avgpool(x, *spatial),
        Layer::Flatten => x,
        Layer::Dropout { p, id } => {
            if !ctx.training || *p == 0.0 {
                return x;
            }
            let mask = dropout_mask(x.shape().0, *p, ctx.seed, *id);
            ops::dropout(x, mask)
        }
        // dfdx's own scalar multiplication.
        Layer::Scale { factor } => x * *factor,
        Layer::Residual { body, shortcut } => {
            // x is used twice: the body gets a copy with an empty tape and
            // the shortcut the tape owner (dropping it would lose every
            // upstream backward op); dfdx's own add merges the tapes.
            let b = forward_seq(body, params, x.with_empty_tape(), batch, ctx, need_dx);
            let s = forward_seq(shortcut, params, x, batch, ctx, need_dx);
            b + s
        }
        Layer::Concat { branches, lens } => {
            // As for a residual: every branch but the last reads a copy with
            // an empty tape, the last the tape owner; `ops::concat` merges them.
            let mut outs = Vec::with_capacity(branches.len());
            let Some((last, first)) = branches.split_last_mut() else {
                return x;
            };
            for branch in first {
                let input = x.with_empty_tape();
                outs.push(forward_seq(branch, params, input, batch, ctx, need_dx));
            }
            outs.push(forward_seq(last, params, x, batch, ctx, need_dx));
            ops::concat(outs, lens, batch)
        }
    }
}

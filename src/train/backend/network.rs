//! The trainable network built from a checked model: layers that own their
//! caches, parameters in one flat list, and an explicit reverse pass.

use super::batchnorm::{BnCache, bn_backward, bn_forward_eval, bn_forward_train};
use super::boundary::{SiteLoss, SiteReduce, reduce_sites, site_backward, site_term};
use super::conv::{ConvGeom, conv_backward, conv_forward};
use super::dense::{dense_backward, dense_forward};
use super::elementwise::{dropout_mask, relu_backward, relu_forward};
use super::loss::cross_entropy;
use super::poly::{PolyBasis, poly_backward, poly_forward};
use super::pool::{
    PoolGeom, avgpool_backward, avgpool_forward, global_avgpool_backward, global_avgpool_forward,
};
use super::real::Real;
use crate::ir::{
    Basis, BoundaryKind, BoundaryLoss, Model, Op, OpKind, PolyAct, Reduce, Shape, Tensor,
};
use crate::train::error::TrainError;
use crate::train::fit::fit_activation;
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
}

struct Slot<T> {
    info: ParamInfo,
    shape: Vec<usize>,
    value: Vec<T>,
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
        x: Vec<T>,
    },
    Conv {
        geom: ConvGeom,
        w: usize,
        b: Option<usize>,
        x: Vec<T>,
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
        cache: BnCache<T>,
    },
    Poly {
        name: String,
        site: usize,
        basis: PolyBasis,
        range: f64,
        coeffs: Coeffs<T>,
        x: Vec<T>,
        dydx: Vec<T>,
    },
    /// The baseline's ReLU; keeps the site's fitted coefficients for checkpoints.
    Relu {
        name: String,
        site: usize,
        coeffs: Vec<T>,
        x: Vec<T>,
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
        mask: Vec<T>,
    },
    Scale {
        factor: T,
    },
    Residual {
        body: Vec<Layer<T>>,
        shortcut: Vec<Layer<T>>,
    },
}

struct Site {
    name: String,
    range: f64,
}

/// The network, generic over the scalar type (f64 for gradient checks).
pub struct NetworkOf<T: Real> {
    layers: Vec<Layer<T>>,
    params: Vec<Slot<T>>,
    sites: Vec<Site>,
    input_len: usize,
    classes: usize,
    baseline_relu: bool,
}

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

fn kaiming<T: Real>(rng: &mut StdRng, len: usize, fan_in: usize) -> Vec<T> {
    // PyTorch's default for Linear/Conv weights and biases: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    (0..len)
        .map(|_| T::from_f64(rng.gen_range(-bound..=bound)))
        .collect()
}

fn poly_basis(b: Basis) -> PolyBasis {
    match b {
        Basis::Chebyshev => PolyBasis::Chebyshev,
        Basis::Power => PolyBasis::Power,
    }
}

impl<T: Real> NetworkOf<T> {
    pub fn new(model: &Model, seed: u64, opts: &NetworkOptions) -> Result<Self, TrainError> {
        let mut net = NetworkOf {
            layers: Vec::new(),
            params: Vec::new(),
            sites: Vec::new(),
            input_len: model.input.numel() as usize,
            classes: model.classes,
            baseline_relu: opts.baseline_relu,
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
            grad: vec![T::ZERO; len],
            value,
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
                        x: Vec::new(),
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
            } => {
                if dims.len() != 3 || dims[0] != *in_channels {
                    return Err(shape_err(
                        op,
                        format!("expects [{in_channels}, H, W], receives {input}"),
                    ));
                }
                let geom = ConvGeom {
                    in_c: dims[0],
                    in_h: dims[1],
                    in_w: dims[2],
                    out_c: *out_channels,
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                };
                let (oh, ow) = geom.out_hw().ok_or_else(|| {
                    shape_err(op, format!("kernel {kernel:?} does not fit input {input}"))
                })?;
                let fan_in = geom.patch_len();
                let wv = kaiming(&mut b.rng, geom.weight_len(), fan_in);
                let w = self.add_param(
                    name("weight"),
                    ParamGroup::Weight,
                    vec![*out_channels, *in_channels, kernel[0], kernel[1]],
                    wv,
                );
                let bias = if *bias {
                    let bv = kaiming(&mut b.rng, *out_channels, fan_in);
                    Some(self.add_param(name("bias"), ParamGroup::Bias, vec![*out_channels], bv))
                } else {
                    None
                };
                (
                    Layer::Conv {
                        geom,
                        w,
                        b: bias,
                        x: Vec::new(),
                    },
                    Shape(vec![*out_channels, oh, ow]),
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
                    vec![T::ONE; c],
                );
                let beta = self.add_param(
                    name("beta"),
                    ParamGroup::BatchNormAffine,
                    vec![c],
                    vec![T::ZERO; c],
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
                        running_mean: vec![T::ZERO; c],
                        running_var: vec![T::ONE; c],
                        cache: BnCache::default(),
                    },
                    input.clone(),
                )
            }
            OpKind::Poly(act) => (self.build_poly(op, act, b)?, input.clone()),
            OpKind::AvgPool { kernel, stride } => {
                if dims.len() != 3 {
                    return Err(shape_err(
                        op,
                        format!("expects [C, H, W], receives {input}"),
                    ));
                }
                let geom = PoolGeom {
                    channels: dims[0],
                    in_h: dims[1],
                    in_w: dims[2],
                    kernel: *kernel,
                    stride: *stride,
                };
                let (oh, ow) = geom.out_hw().ok_or_else(|| {
                    shape_err(op, format!("window {kernel:?} does not fit input {input}"))
                })?;
                (Layer::AvgPool { geom }, Shape(vec![dims[0], oh, ow]))
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
                        mask: Vec::new(),
                    },
                    input.clone(),
                )
            }
            OpKind::Scale { factor } => (
                Layer::Scale {
                    factor: T::from_f64(*factor),
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
        })
    }

    fn build_poly(
        &mut self,
        op: &Op,
        act: &PolyAct,
        b: &mut Builder,
    ) -> Result<Layer<T>, TrainError> {
        let fit = fit_activation(act.fit, act.degree, act.range, act.fit_method, act.basis)
            .map_err(|source| TrainError::Fit {
                op: op.name.clone(),
                source,
            })?;
        let coeffs: Vec<T> = fit.coeffs.iter().map(|&c| T::from_f64(c)).collect();
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
                x: Vec::new(),
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
            x: Vec::new(),
            dydx: Vec::new(),
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
    pub fn visit_params_mut(&mut self, f: &mut dyn FnMut(usize, &ParamInfo, &mut [T], &[T])) {
        for (i, s) in self.params.iter_mut().enumerate() {
            f(i, &s.info, &mut s.value, &s.grad);
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
        for s in &mut self.params {
            s.grad.fill(T::ZERO);
        }
        let site_loss = if self.baseline_relu {
            None
        } else {
            boundary.map(|bl| {
                let kind = match bl.kind {
                    BoundaryKind::Exp => SiteLoss::Exp,
                    BoundaryKind::L2 => SiteLoss::L2,
                    BoundaryKind::MaxNorm => SiteLoss::MaxNorm,
                };
                (kind, bl.penalty)
            })
        };
        let mut ctx = Ctx {
            training: true,
            seed: step_seed,
            site_loss,
            penalties: self.sites.iter().map(|s| s.range).collect(),
            terms: vec![0.0; self.sites.len()],
            act_max: vec![0.0; self.sites.len()],
            weights: vec![0.0; self.sites.len()],
        };
        let input: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
        let logits = forward_seq(&mut self.layers, &self.params, input, batch, &mut ctx);
        let ce = cross_entropy(&logits, y, self.classes);
        let mut boundary_loss = 0.0;
        if let (Some(bl), Some(_)) = (boundary, ctx.site_loss) {
            let reduce = match bl.reduce {
                Reduce::Sum => SiteReduce::Sum,
                Reduce::Max => SiteReduce::Max,
                Reduce::L1 => SiteReduce::L1,
                Reduce::L2 => SiteReduce::L2,
            };
            let (value, grads) = reduce_sites(&ctx.terms, reduce);
            boundary_loss = bl.weight * value;
            ctx.weights = grads.iter().map(|g| g * bl.weight).collect();
        }
        backward_seq(
            &mut self.layers,
            &mut self.params,
            ce.dlogits,
            batch,
            &ctx,
            false,
        );
        Ok(StepOutput {
            loss: ce.loss + boundary_loss,
            ce_loss: ce.loss,
            boundary_loss,
            correct: ce.correct,
            act_max_abs: self
                .sites
                .iter()
                .map(|s| s.name.clone())
                .zip(ctx.act_max)
                .collect(),
        })
    }

    /// Eval-mode logits `[batch, classes]`.
    pub fn predict(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>, TrainError> {
        self.check_batch(x, batch)?;
        let mut ctx = Ctx {
            training: false,
            seed: 0,
            site_loss: None,
            penalties: Vec::new(),
            terms: vec![0.0; self.sites.len()],
            act_max: vec![0.0; self.sites.len()],
            weights: Vec::new(),
        };
        let input: Vec<T> = x.iter().map(|&v| T::from_f32(v)).collect();
        let logits = forward_seq(&mut self.layers, &self.params, input, batch, &mut ctx);
        Ok(logits.iter().map(|v| v.to_f32()).collect())
    }

    /// Every named state tensor: trainable parameters, BatchNorm running
    /// statistics and fixed polynomial coefficients.
    fn state_mut(&mut self) -> Vec<(String, Vec<usize>, &mut Vec<T>)> {
        let mut out: Vec<(String, Vec<usize>, &mut Vec<T>)> = self
            .params
            .iter_mut()
            .map(|s| (s.info.name.clone(), s.shape.clone(), &mut s.value))
            .collect();
        collect_layer_state(&mut self.layers, &mut out);
        out
    }

    /// All parameters and BatchNorm running statistics, named per `Op::param_shapes`.
    pub fn to_tensors(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for s in &self.params {
            out.insert(s.info.name.clone(), to_tensor(&s.shape, &s.value));
        }
        collect_layer_tensors(&self.layers, &mut out);
        out
    }

    pub fn load_tensors(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
        let mut state = self.state_mut();
        for (name, shape, _) in &state {
            match tensors.get(name) {
                None => return Err(TrainError::Weights(format!("tensor `{name}` is missing"))),
                Some(t) if &t.shape != shape || t.data.len() != shape.iter().product::<usize>() => {
                    return Err(TrainError::Weights(format!(
                        "tensor `{name}` has shape {:?}, the model needs {shape:?}",
                        t.shape
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = tensors
            .keys()
            .find(|k| !state.iter().any(|(n, _, _)| n == *k))
        {
            return Err(TrainError::Weights(format!(
                "tensor `{extra}` belongs to no layer of this model"
            )));
        }
        for (name, _, dst) in &mut state {
            let src = &tensors[name.as_str()];
            for (d, s) in dst.iter_mut().zip(&src.data) {
                *d = T::from_f32(*s);
            }
        }
        Ok(())
    }
}

fn to_tensor<T: Real>(shape: &[usize], v: &[T]) -> Tensor {
    Tensor::new(shape.to_vec(), v.iter().map(|x| x.to_f32()).collect())
}

fn collect_layer_tensors<T: Real>(layers: &[Layer<T>], out: &mut BTreeMap<String, Tensor>) {
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
            _ => {}
        }
    }
}

fn collect_layer_state<'a, T: Real>(
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
            _ => {}
        }
    }
}

/// Per-pass state shared by all layers.
struct Ctx {
    training: bool,
    seed: u64,
    /// Boundary loss kind and its threshold (None: each site's range).
    site_loss: Option<(SiteLoss, Option<f64>)>,
    penalties: Vec<f64>,
    /// Per-site boundary terms (forward).
    terms: Vec<f64>,
    act_max: Vec<f32>,
    /// d(total loss)/d(site term) (backward).
    weights: Vec<f64>,
}

fn max_abs<T: Real>(x: &[T]) -> f32 {
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

fn forward_seq<T: Real>(
    layers: &mut [Layer<T>],
    params: &[Slot<T>],
    mut x: Vec<T>,
    batch: usize,
    ctx: &mut Ctx,
) -> Vec<T> {
    for layer in layers {
        x = forward_layer(layer, params, x, batch, ctx);
    }
    x
}

fn forward_layer<T: Real>(
    layer: &mut Layer<T>,
    params: &[Slot<T>],
    x: Vec<T>,
    batch: usize,
    ctx: &mut Ctx,
) -> Vec<T> {
    let training = ctx.training;
    let keep = |x: Vec<T>| if training { x } else { Vec::new() };
    match layer {
        Layer::Dense {
            in_f,
            out_f,
            w,
            b,
            x: cache,
        } => {
            let mut y = vec![T::ZERO; batch * *out_f];
            let bias = b.map(|i| params[i].value.as_slice());
            dense_forward(&x, batch, *in_f, *out_f, &params[*w].value, bias, &mut y);
            *cache = keep(x);
            y
        }
        Layer::Conv {
            geom,
            w,
            b,
            x: cache,
        } => {
            let mut y = vec![T::ZERO; batch * geom.out_len()];
            let bias = b.map(|i| params[i].value.as_slice());
            conv_forward(geom, &x, batch, &params[*w].value, bias, &mut y);
            *cache = keep(x);
            y
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
            cache,
            ..
        } => {
            let mut y = vec![T::ZERO; x.len()];
            let (g, bt) = (&params[*gamma].value, &params[*beta].value);
            if ctx.training {
                *cache = bn_forward_train(
                    &x,
                    batch,
                    *c,
                    *s,
                    g,
                    bt,
                    *eps,
                    *momentum,
                    running_mean,
                    running_var,
                    &mut y,
                );
            } else {
                bn_forward_eval(&x, *c, *s, g, bt, *eps, running_mean, running_var, &mut y);
            }
            y
        }
        Layer::Poly {
            site,
            basis,
            range,
            coeffs,
            x: cache,
            dydx,
            ..
        } => {
            ctx.act_max[*site] = max_abs(&x);
            let c = match coeffs {
                Coeffs::Trainable(i) => params[*i].value.as_slice(),
                Coeffs::Fixed(c) => c.as_slice(),
            };
            let mut y = vec![T::ZERO; x.len()];
            if ctx.training {
                dydx.resize(x.len(), T::ZERO);
                poly_forward(
                    &x,
                    c,
                    T::from_f64(*range),
                    *basis,
                    &mut y,
                    Some(dydx.as_mut_slice()),
                );
                if let Some((kind, p)) = ctx.site_loss {
                    let penalty = p.unwrap_or(ctx.penalties[*site]);
                    ctx.terms[*site] = site_term(&x, kind, penalty);
                }
                *cache = x;
            } else {
                poly_forward(&x, c, T::from_f64(*range), *basis, &mut y, None);
            }
            y
        }
        Layer::Relu { site, x: cache, .. } => {
            ctx.act_max[*site] = max_abs(&x);
            let mut y = vec![T::ZERO; x.len()];
            relu_forward(&x, &mut y);
            *cache = keep(x);
            y
        }
        Layer::AvgPool { geom } => {
            let (oh, ow) = geom.out_hw().expect("validated at build");
            let mut y = vec![T::ZERO; batch * geom.channels * oh * ow];
            avgpool_forward(geom, &x, &mut y);
            y
        }
        Layer::GlobalAvgPool { spatial } => {
            let mut y = vec![T::ZERO; x.len() / *spatial];
            global_avgpool_forward(&x, *spatial, &mut y);
            y
        }
        Layer::Flatten => x,
        Layer::Dropout { p, id, mask } => {
            if !ctx.training || *p == 0.0 {
                return x;
            }
            *mask = dropout_mask(x.len(), *p, ctx.seed, *id);
            x.iter().zip(mask.iter()).map(|(a, m)| *a * *m).collect()
        }
        Layer::Scale { factor } => x.into_iter().map(|v| v * *factor).collect(),
        Layer::Residual { body, shortcut } => {
            let b = forward_seq(body, params, x.clone(), batch, ctx);
            let s = forward_seq(shortcut, params, x, batch, ctx);
            b.into_iter().zip(s).map(|(a, c)| a + c).collect()
        }
    }
}

/// Reverse pass; returns the input gradient (empty when `need_input_grad`
/// is false, which skips work for the network's first layer).
fn backward_seq<T: Real>(
    layers: &mut [Layer<T>],
    params: &mut [Slot<T>],
    mut dy: Vec<T>,
    batch: usize,
    ctx: &Ctx,
    need_input_grad: bool,
) -> Vec<T> {
    for i in (0..layers.len()).rev() {
        let need = need_input_grad || i > 0;
        dy = backward_layer(&mut layers[i], params, dy, batch, ctx, need);
    }
    dy
}

fn backward_layer<T: Real>(
    layer: &mut Layer<T>,
    params: &mut [Slot<T>],
    dy: Vec<T>,
    batch: usize,
    ctx: &Ctx,
    need: bool,
) -> Vec<T> {
    match layer {
        Layer::Dense {
            in_f,
            out_f,
            w,
            b,
            x,
        } => {
            let mut dx = if need {
                vec![T::ZERO; x.len()]
            } else {
                Vec::new()
            };
            let mut dw = std::mem::take(&mut params[*w].grad);
            let mut db = b.map(|i| std::mem::take(&mut params[i].grad));
            dense_backward(
                x,
                batch,
                *in_f,
                *out_f,
                &params[*w].value,
                &dy,
                need.then_some(dx.as_mut_slice()),
                &mut dw,
                db.as_deref_mut(),
            );
            params[*w].grad = dw;
            if let (Some(i), Some(g)) = (b, db) {
                params[*i].grad = g;
            }
            dx
        }
        Layer::Conv { geom, w, b, x } => {
            let mut dx = if need {
                vec![T::ZERO; x.len()]
            } else {
                Vec::new()
            };
            let mut dw = std::mem::take(&mut params[*w].grad);
            let mut db = b.map(|i| std::mem::take(&mut params[i].grad));
            conv_backward(
                geom,
                x,
                batch,
                &params[*w].value,
                &dy,
                need.then_some(dx.as_mut_slice()),
                &mut dw,
                db.as_deref_mut(),
            );
            params[*w].grad = dw;
            if let (Some(i), Some(g)) = (b, db) {
                params[*i].grad = g;
            }
            dx
        }
        Layer::BatchNorm {
            c,
            s,
            gamma,
            beta,
            cache,
            ..
        } => {
            let mut dx = if need {
                vec![T::ZERO; dy.len()]
            } else {
                Vec::new()
            };
            let mut dg = std::mem::take(&mut params[*gamma].grad);
            let mut dbt = std::mem::take(&mut params[*beta].grad);
            bn_backward(
                cache,
                &dy,
                batch,
                *c,
                *s,
                &params[*gamma].value,
                need.then_some(dx.as_mut_slice()),
                &mut dg,
                &mut dbt,
            );
            params[*gamma].grad = dg;
            params[*beta].grad = dbt;
            dx
        }
        Layer::Poly {
            site,
            basis,
            range,
            coeffs,
            x,
            dydx,
            ..
        } => {
            let mut dx = if need {
                vec![T::ZERO; x.len()]
            } else {
                Vec::new()
            };
            let range_t = T::from_f64(*range);
            match coeffs {
                Coeffs::Trainable(i) => {
                    let mut dc = std::mem::take(&mut params[*i].grad);
                    poly_backward(
                        x,
                        dydx,
                        &dy,
                        range_t,
                        *basis,
                        need.then_some(dx.as_mut_slice()),
                        Some(&mut dc),
                    );
                    params[*i].grad = dc;
                }
                Coeffs::Fixed(_) => {
                    poly_backward(
                        x,
                        dydx,
                        &dy,
                        range_t,
                        *basis,
                        need.then_some(dx.as_mut_slice()),
                        None,
                    );
                }
            }
            if let (true, Some((kind, p))) = (need, ctx.site_loss) {
                let penalty = p.unwrap_or(ctx.penalties[*site]);
                site_backward(x, kind, penalty, ctx.weights[*site], &mut dx);
            }
            dx
        }
        Layer::Relu { x, .. } => {
            let mut dx = vec![T::ZERO; x.len()];
            if need {
                relu_backward(x, &dy, &mut dx);
            }
            dx
        }
        Layer::AvgPool { geom } => {
            let mut dx = vec![T::ZERO; batch * geom.channels * geom.in_h * geom.in_w];
            if need {
                avgpool_backward(geom, &dy, &mut dx);
            }
            dx
        }
        Layer::GlobalAvgPool { spatial } => {
            let mut dx = vec![T::ZERO; dy.len() * *spatial];
            if need {
                global_avgpool_backward(&dy, *spatial, &mut dx);
            }
            dx
        }
        Layer::Flatten => dy,
        Layer::Dropout { p, mask, .. } => {
            if *p == 0.0 {
                return dy;
            }
            dy.iter().zip(mask.iter()).map(|(g, m)| *g * *m).collect()
        }
        Layer::Scale { factor } => dy.into_iter().map(|g| g * *factor).collect(),
        Layer::Residual { body, shortcut } => {
            let db = backward_seq(body, params, dy.clone(), batch, ctx, need);
            let ds = backward_seq(shortcut, params, dy, batch, ctx, need);
            if !need {
                return Vec::new();
            }
            db.into_iter().zip(ds).map(|(a, b)| a + b).collect()
        }
    }
}

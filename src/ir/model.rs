//! The checked model: shapes inferred, blocks and loops expanded, every value
//! typed and range-checked, levels assigned.

use super::data_spec::DataSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A tensor shape without the batch dimension: `[C, H, W]` for images,
/// `[C, T]` for sequences, `[N]` for features.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// Number of elements; saturates instead of overflowing on absurd shapes.
    pub fn numel(&self) -> u64 {
        self.0
            .iter()
            .fold(1u64, |acc, &d| acc.saturating_mul(d as u64))
    }

    pub fn dims(&self) -> &[usize] {
        &self.0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// Where something was written, for messages of later stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SrcLoc {
    pub file: String,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for SrcLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A whole checked model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub name: String,
    /// sha256 (hex) of the model's source text and every imported file, so that
    /// weights trained for one model cannot be loaded into another.
    pub source_hash: String,
    pub input: Shape,
    pub classes: usize,
    /// Class names when the model or data set states them, else empty.
    pub class_names: Vec<String>,
    pub net: Vec<Op>,
    pub train: TrainConfig,
    pub he: HeConfig,
    /// Total trainable parameters (BatchNorm running statistics excluded).
    pub params: u64,
    /// Multiplicative depth of the whole network (the level after the last op).
    pub depth: u32,
}

impl Model {
    /// Every op in execution order, descending into nested sequences
    /// (a residual's body, then its shortcut; a concat's branches in order).
    pub fn ops(&self) -> Vec<&Op> {
        fn walk<'a>(ops: &'a [Op], out: &mut Vec<&'a Op>) {
            for op in ops {
                out.push(op);
                for seq in op.kind.nested() {
                    walk(seq, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.net, &mut out);
        out
    }
}

/// One layer of the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Unique dotted path, e.g. `stage1.block0.conv1`; parameter tensors are
    /// named `<name>.<param>` (see [`Op::param_shapes`]).
    pub name: String,
    pub kind: OpKind,
    pub input: Shape,
    pub output: Shape,
    /// Trainable parameters of this op (for a residual or concat: of all its branches).
    pub params: u64,
    /// Levels this op itself consumes (for a residual or concat: its deepest branch).
    pub levels: u32,
    /// Cumulative level after this op, counted from the input at level 0.
    pub level: u32,
    pub loc: SrcLoc,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OpKind {
    /// y = W x + b on a flat input; weight `[out, in]`.
    Dense {
        in_features: usize,
        out_features: usize,
        bias: bool,
    },
    /// 2-D convolution, NCHW; weight `[out, in / groups, kh, kw]`. On a
    /// sequence `[C, T]` it is a 1-D convolution, stored as one over
    /// `[C, 1, T]` (`kernel[0] == 1`, `stride[0] == 1`, `padding[0] == 0`),
    /// with weight `[out, in / groups, k]`.
    Conv {
        in_channels: usize,
        out_channels: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        bias: bool,
        /// Channel groups (PyTorch's `groups`): output channel `o` reads the
        /// input channels of group `o / (out / groups)` only.
        #[serde(default = "one_group")]
        groups: usize,
    },
    /// Per-channel (dim 0 of the shape) batch normalisation.
    BatchNorm {
        channels: usize,
        eps: f64,
        momentum: f64,
        /// Whether the HE lowering can fold it into an adjacent linear layer.
        foldable: bool,
    },
    /// p(x) = sum_k c_k phi_k(x / B): one activation site with its own coefficients.
    Poly(PolyAct),
    /// Average pooling over [kh, kw] windows.
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
    },
    /// Mean over all spatial positions: [C, H, W] -> [C].
    GlobalAvgPool,
    Flatten,
    /// Training only; the identity at inference.
    Dropout {
        p: f64,
    },
    /// Multiplication by a constant (folds into the next linear layer).
    Scale {
        factor: f64,
    },
    /// output = body(x) + shortcut(x); an empty shortcut is the identity.
    Residual {
        body: Vec<Op>,
        shortcut: Vec<Op>,
    },
    /// The branches' outputs concatenated along the first axis (channels of
    /// `[C, H, W]` and `[C, T]`, the features of `[N]`); every branch reads
    /// this op's input, and an empty branch is the identity. Two or more.
    Concat {
        branches: Vec<Vec<Op>>,
    },
}

impl Op {
    /// One line for tables and editors: `conv(16, 3x3, s1, p1)`, `p (poly deg 8)`.
    pub fn summary(&self) -> String {
        match &self.kind {
            OpKind::Dense {
                out_features, bias, ..
            } => format!(
                "dense({out_features}{})",
                if *bias { "" } else { ", bias: false" }
            ),
            OpKind::Conv {
                out_channels,
                kernel,
                stride,
                padding,
                groups,
                ..
            } => {
                let groups = if *groups > 1 {
                    format!(", g{groups}")
                } else {
                    String::new()
                };
                if self.input.dims().len() == 2 {
                    format!(
                        "conv({out_channels}, {}, s{}, p{}{groups})",
                        kernel[1], stride[1], padding[1]
                    )
                } else {
                    format!(
                        "conv({out_channels}, {}x{}, s{}, p{}{groups})",
                        kernel[0], kernel[1], stride[0], padding[0]
                    )
                }
            }
            OpKind::BatchNorm { foldable, .. } => {
                if *foldable {
                    "batchnorm".into()
                } else {
                    "batchnorm (unfolded)".into()
                }
            }
            OpKind::Poly(a) => format!("{} (poly deg {})", a.def, a.degree),
            OpKind::AvgPool { kernel, stride } if self.input.dims().len() == 2 => {
                format!("avgpool({}, s{})", kernel[1], stride[1])
            }
            OpKind::AvgPool { kernel, stride } => {
                format!("avgpool({}x{}, s{})", kernel[0], kernel[1], stride[0])
            }
            OpKind::Dropout { p } => format!("dropout({p})"),
            OpKind::Scale { factor } => format!("scale({factor})"),
            OpKind::Residual { shortcut, .. } => {
                if shortcut.is_empty() {
                    "residual (identity)".into()
                } else {
                    "residual (projection)".into()
                }
            }
            OpKind::Concat { branches } => format!("concat ({} branches)", branches.len()),
            other => other.keyword().into(),
        }
    }
}

impl OpKind {
    /// Short lowercase name as written in the language.
    pub fn keyword(&self) -> &'static str {
        match self {
            OpKind::Dense { .. } => "dense",
            OpKind::Conv { .. } => "conv",
            OpKind::BatchNorm { .. } => "batchnorm",
            OpKind::Poly(_) => "poly",
            OpKind::AvgPool { .. } => "avgpool",
            OpKind::GlobalAvgPool => "global_avgpool",
            OpKind::Flatten => "flatten",
            OpKind::Dropout { .. } => "dropout",
            OpKind::Scale { .. } => "scale",
            OpKind::Residual { .. } => "residual",
            OpKind::Concat { .. } => "concat",
        }
    }

    /// The op sequences nested in this op, in execution order: a residual's
    /// body and shortcut, a concat's branches; none for a plain layer.
    pub fn nested(&self) -> Vec<&[Op]> {
        match self {
            OpKind::Residual { body, shortcut } => vec![body, shortcut],
            OpKind::Concat { branches } => branches.iter().map(Vec::as_slice).collect(),
            _ => Vec::new(),
        }
    }

    /// [`Self::nested`], mutable.
    pub fn nested_mut(&mut self) -> Vec<&mut Vec<Op>> {
        match self {
            OpKind::Residual { body, shortcut } => vec![body, shortcut],
            OpKind::Concat { branches } => branches.iter_mut().collect(),
            _ => Vec::new(),
        }
    }
}

impl Op {
    /// The parameter tensors this op owns, as (`<op name>.<param>`, shape),
    /// in a fixed order. BatchNorm running statistics are included (they are
    /// state, not trained, but checkpoints carry them).
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let p = |suffix: &str, shape: Vec<usize>| (format!("{}.{suffix}", self.name), shape);
        match &self.kind {
            OpKind::Dense {
                in_features,
                out_features,
                bias,
            } => {
                let mut v = vec![p("weight", vec![*out_features, *in_features])];
                if *bias {
                    v.push(p("bias", vec![*out_features]));
                }
                v
            }
            OpKind::Conv {
                in_channels,
                out_channels,
                kernel,
                bias,
                groups,
                ..
            } => {
                let per_group = in_channels / (*groups).max(1);
                let weight = if self.input.dims().len() == 2 {
                    vec![*out_channels, per_group, kernel[1]]
                } else {
                    vec![*out_channels, per_group, kernel[0], kernel[1]]
                };
                let mut v = vec![p("weight", weight)];
                if *bias {
                    v.push(p("bias", vec![*out_channels]));
                }
                v
            }
            OpKind::BatchNorm { channels, .. } => vec![
                p("gamma", vec![*channels]),
                p("beta", vec![*channels]),
                p("running_mean", vec![*channels]),
                p("running_var", vec![*channels]),
            ],
            OpKind::Poly(act) => vec![p("coeffs", vec![act.degree as usize + 1])],
            _ => Vec::new(),
        }
    }
}

/// `p(x) = 0.5 + x^2` for raw power coefficients [0.5, 0, 1], for messages.
pub fn raw_power_text(coeffs: &[f64]) -> String {
    let terms: Vec<String> = coeffs
        .iter()
        .enumerate()
        .filter(|(_, c)| **c != 0.0)
        .map(|(k, c)| match k {
            0 => format!("{c}"),
            1 if *c == 1.0 => "x".to_string(),
            1 => format!("{c} x"),
            _ if *c == 1.0 => format!("x^{k}"),
            _ => format!("{c} x^{k}"),
        })
        .collect();
    format!("p(x) = {}", terms.join(" + ").replace("+ -", "- "))
}

/// Conv's `groups` in files written before it existed.
fn one_group() -> usize {
    1
}

/// A polynomial activation site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolyAct {
    /// The `act` definition this site instantiates (e.g. `p`).
    pub def: String,
    /// 1..=31.
    pub degree: u32,
    pub basis: Basis,
    /// The fit range B: the polynomial is evaluated on t = x / B (on x
    /// itself for [`Basis::RawPower`]), and HE assumes |x| <= B.
    pub range: f64,
    pub fit: FitTarget,
    pub fit_method: FitMethod,
    /// Whether the coefficients train (at `poly_lr_scale` times the base rate).
    pub learnable: bool,
    /// User-given coefficients a_0..a_degree of p(x) = sum a_k x^k on the
    /// raw input (`poly(coeffs: [...])`); `fit` and `fit_method` are then
    /// unused. Training and HE evaluate the same polynomial in `basis`
    /// (converted exactly, f64 rounding only). None: fitted to `fit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coeffs: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Basis {
    /// sum c_k T_k(t), Chebyshev polynomials of the first kind.
    Chebyshev,
    /// sum c_k t^k.
    Power,
    /// sum c_k x^k on the raw input x (not x / B), each power rounded to
    /// float32: the paper's official parametrization, which overflows
    /// float32 once |x|^degree > f32::MAX (|x| > 56.4 at degree 22).
    RawPower,
}

impl Basis {
    /// Every basis, in the order tables list them.
    pub const ALL: [Basis; 3] = [Basis::Chebyshev, Basis::Power, Basis::RawPower];

    /// The word the language uses (`basis: chebyshev`).
    pub fn name(self) -> &'static str {
        match self {
            Basis::Chebyshev => "chebyshev",
            Basis::Power => "power",
            Basis::RawPower => "raw_power",
        }
    }

    pub fn from_name(name: &str) -> Option<Basis> {
        Basis::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FitTarget {
    Relu,
    Silu,
    Gelu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FitMethod {
    /// Least squares at `points` evenly spaced points on [-B, B] (the paper: 100).
    LeastSquares { points: usize },
    /// Minimax (Remez exchange).
    Minimax,
}

/// The `train { ... }` section, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// None when the model names no data set (then `--data` must).
    pub data: Option<DataSpec>,
    pub epochs: u32,
    pub batch: usize,
    pub seed: u64,
    pub optimizer: Optimizer,
    /// Learning-rate multiplier of polynomial coefficients (paper: 0.1).
    pub poly_lr_scale: f64,
    pub schedule: Schedule,
    /// None: no boundary loss.
    pub boundary: Option<BoundaryLoss>,
    /// None: no clipping.
    pub clip: Option<Clip>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    AdamW {
        lr: f64,
        weight_decay: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
    },
    Sgd {
        lr: f64,
        momentum: f64,
        weight_decay: f64,
        nesterov: bool,
    },
}

impl Optimizer {
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::AdamW { lr, .. } | Optimizer::Sgd { lr, .. } => *lr,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// ReduceLROnPlateau on the validation loss (cross-entropy + weighted
    /// boundary term, as the official code monitors it).
    Plateau {
        factor: f64,
        patience: u32,
        min_lr: f64,
        /// Relative improvement that counts (mode min, threshold mode rel):
        /// loss < best * (1 - threshold). The language's default is the
        /// official code's 0.1; a file written before this field existed
        /// meant PyTorch's default 1e-4, which pnnc used then.
        #[serde(default = "pytorch_plateau_threshold")]
        threshold: f64,
    },
    /// Cosine annealing over all epochs down to `min_lr`.
    Cosine {
        min_lr: f64,
    },
    /// Multiply by `gamma` at each listed epoch.
    MultiStep {
        milestones: Vec<u32>,
        gamma: f64,
    },
}

/// PyTorch's ReduceLROnPlateau threshold (what runs before the `threshold`
/// option used).
fn pytorch_plateau_threshold() -> f64 {
    1e-4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoundaryLoss {
    pub kind: BoundaryKind,
    /// Threshold P; None means each site's own fit range B.
    pub penalty: Option<f64>,
    /// lambda.
    pub weight: f64,
    pub reduce: Reduce,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum BoundaryKind {
    /// mean(exp(max(0, |x| - P)) - 1): the paper's form.
    Exp,
    /// The exp form up to an excess `cap` = C, continued linearly beyond
    /// with the same value and slope: mean(f(max(0, |x| - P))) with
    /// f(e) = exp(e) - 1 for e <= C, exp(C) - 1 + exp(C) (e - C) beyond.
    /// Its gradient is at most exp(C) per element, so it cannot overflow
    /// float32 where the paper's form does.
    ExpCapped { cap: f64 },
    /// mean(max(0, |x| - P)^2)
    L2,
    /// max |x|
    MaxNorm,
}

/// How per-site boundary terms are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reduce {
    Sum,
    Max,
    L1,
    L2,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Maximum global L2 norm.
    pub max_norm: f64,
    pub except: ClipExcept,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClipExcept {
    /// Clip every parameter (ablation).
    None,
    /// Selective Gradient Clipping: leave BatchNorm gamma and beta out.
    BatchNorm,
}

/// The `he { ... }` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeConfig {
    pub scheme: Scheme,
    /// 128, 192 or 256.
    pub security: u32,
    /// Maximum multiplicative depth the user accepts (error E-code when crossed).
    pub depth_budget: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    Ckks,
}

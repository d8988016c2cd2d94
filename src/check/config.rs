//! `act` definitions, the `train { }` and `he { }` sections -> typed IR configs.

use super::diag::{Code, Diagnostic, FileId, Fix, Label};
use super::eval::{Bound, Env, ParamSpec, bind, eval, opt, options_help, req, type_error};
use crate::ir::{
    Basis, BoundaryKind, BoundaryLoss, Clip, ClipExcept, DataSpec, FitMethod, FitTarget, HeConfig,
    Optimizer, PolyAct, Reduce, Schedule, Scheme, TrainConfig, Value,
};
use crate::syntax::{ActDef, Call, Entry, Expr, ExprKind, Section, Span};

/// Where activation sites go relative to an adjacent batchnorm (`train { activation: ... }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Keep the order written in `net`.
    AsWritten,
    /// poly -> batchnorm (the paper's order).
    BeforeBn,
    /// batchnorm -> poly.
    AfterBn,
}

/// The checker's view of `train`: the IR config plus what lints need.
pub struct TrainInfo {
    pub config: TrainConfig,
    pub placement: Placement,
    /// Span of the `boundary:` entry, when written.
    pub boundary_span: Option<Span>,
    /// Span of the boundary `penalty` value, when written.
    pub penalty_span: Option<Span>,
}

/// ReduceLROnPlateau's threshold in the official code (every notebook:
/// `threshold: 0.1`, relative): an epoch counts as an improvement only when
/// the validation loss falls below 0.9 x the best so far.
pub const PAPER_PLATEAU_THRESHOLD: f64 = 0.1;

pub fn default_train() -> TrainConfig {
    TrainConfig {
        data: None,
        epochs: 10,
        batch: 128,
        seed: 0,
        optimizer: Optimizer::AdamW {
            lr: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        },
        poly_lr_scale: 0.1,
        schedule: Schedule::Plateau {
            factor: 0.1,
            patience: 5,
            min_lr: 0.0,
            threshold: PAPER_PLATEAU_THRESHOLD,
        },
        boundary: Some(BoundaryLoss {
            kind: BoundaryKind::Exp,
            penalty: None,
            weight: 10.0,
            reduce: Reduce::Sum,
        }),
        clip: Some(Clip {
            max_norm: 1.0,
            except: ClipExcept::BatchNorm,
        }),
    }
}

/// The arguments of `poly(...)` in an `act` definition.
pub const ACT_PARAMS: &[ParamSpec<'static>] = &[
    req("degree"),
    opt("fit"),
    req("range"),
    opt("basis"),
    opt("learnable"),
    opt("method"),
    opt("points"),
];

/// `act NAME = poly(degree: D, fit: relu, range: B, basis: chebyshev|power|raw_power, learnable: true, method: lstsq, points: 100)`
pub fn act(def: &ActDef, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<PolyAct> {
    let call = &def.call;
    if call.name.name != "poly" {
        let code = if super::nonhe::replacement(&call.name.name).is_some() {
            Code::NonHeOp
        } else {
            Code::UnknownName
        };
        let help = super::nonhe::replacement(&call.name.name)
            .unwrap_or("define activations as `poly(degree: 2, fit: relu, range: 13)`");
        diags.push(
            Diagnostic::new(
                code,
                format!(
                    "activation `{}` must be a polynomial, found `{}`",
                    def.name.name, call.name.name
                ),
                Label::new(file, call.name.span, "not `poly`"),
            )
            .help(help),
        );
        return None;
    }
    if call
        .args
        .iter()
        .any(|a| a.name.as_ref().is_some_and(|n| n.name == "coeffs"))
    {
        return given_act(def, file, diags);
    }
    let b = bind(call, ACT_PARAMS, &Env::new(), file, diags);
    let degree = b.int("degree", None, 1, 31, diags);
    let range = b.float("range", None, |r| r > 0.0, "a positive number", diags);
    let fit = b.word("fit", "relu", &["relu", "silu", "gelu"], diags);
    let basis = b.word(
        "basis",
        "chebyshev",
        &["chebyshev", "power", "raw_power"],
        diags,
    );
    let learnable = b.bool("learnable", true, diags);
    let method = b.word("method", "lstsq", &["lstsq", "minimax"], diags);
    let points = b.usize("points", Some(100), 2, 1_000_000, diags);
    if b.failed {
        return None;
    }
    if !fit_is_determined(&b, degree?, method?, points?, file, diags) {
        return None;
    }
    Some(PolyAct {
        def: def.name.name.clone(),
        degree: degree? as u32,
        basis: match basis? {
            "power" => Basis::Power,
            "raw_power" => Basis::RawPower,
            _ => Basis::Chebyshev,
        },
        range: range?,
        fit: match fit? {
            "silu" => FitTarget::Silu,
            "gelu" => FitTarget::Gelu,
            _ => FitTarget::Relu,
        },
        fit_method: match method? {
            "minimax" => FitMethod::Minimax,
            _ => FitMethod::LeastSquares { points: points? },
        },
        learnable: learnable?,
        coeffs: None,
    })
}

/// The arguments of `poly(coeffs: [...])`, a polynomial given by the user.
pub const GIVEN_ACT_PARAMS: &[ParamSpec<'static>] =
    &[req("coeffs"), req("range"), opt("basis"), opt("learnable")];

/// Arguments of a fitted polynomial that a given one refuses with a reason.
const FIT_ONLY: [&str; 4] = ["degree", "fit", "method", "points"];

/// Most coefficients of a given polynomial (degree 31, as fitted ones).
const MAX_GIVEN_COEFFS: usize = 32;

/// `act NAME = poly(coeffs: [a0, a1, ...], range: B, basis: chebyshev, learnable: false)`:
/// p(x) = sum a_k x^k on the raw input, fixed unless `learnable: true`.
fn given_act(def: &ActDef, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<PolyAct> {
    let mut call = def.call.clone();
    let mut refused = false;
    call.args.retain(|arg| {
        let Some(name) = arg.name.as_ref().filter(|n| FIT_ONLY.contains(&n.name.as_str())) else {
            return true;
        };
        refused = true;
        diags.push(
            Diagnostic::new(
                Code::UnknownArgument,
                format!("`{}` does not apply to a polynomial given by `coeffs`", name.name),
                Label::new(file, arg.span, "only for fitted polynomials"),
            )
            .help("the degree is the number of coefficients minus one; remove this argument, or remove `coeffs` to fit the polynomial instead"),
        );
        false
    });
    let b = bind(&call, GIVEN_ACT_PARAMS, &Env::new(), file, diags);
    let range = b.float("range", None, |r| r > 0.0, "a positive number", diags);
    let basis = b.word(
        "basis",
        "chebyshev",
        &["chebyshev", "power", "raw_power"],
        diags,
    );
    let learnable = b.bool("learnable", false, diags);
    let coeffs = given_coeffs(&b, file, diags);
    if b.failed || refused {
        return None;
    }
    let coeffs = coeffs?;
    Some(PolyAct {
        def: def.name.name.clone(),
        degree: (coeffs.len() - 1) as u32,
        basis: Basis::from_name(basis?).unwrap_or(Basis::Chebyshev),
        range: range?,
        // Unused for given coefficients (see `PolyAct::coeffs`).
        fit: FitTarget::Relu,
        fit_method: FitMethod::LeastSquares { points: 100 },
        learnable: learnable?,
        coeffs: Some(coeffs),
    })
}

/// The `coeffs` list: finite numbers, trailing zeros dropped, degree 1 to 31.
fn given_coeffs(b: &Bound, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<Vec<f64>> {
    let (value, span) = b.values.get("coeffs")?;
    let numbers: Option<Vec<f64>> = match value {
        Value::List(items) => items.iter().map(Value::as_f64).collect(),
        _ => None,
    };
    let Some(mut coeffs) = numbers else {
        type_error(*span, file, "a list of numbers [a0, a1, ...]", value, diags);
        return None;
    };
    let out_of_range = |message: String, label: &str, help: &str| {
        Diagnostic::new(Code::OutOfRange, message, Label::new(file, *span, label))
            .help(help.to_string())
    };
    if let Some(k) = coeffs.iter().position(|c| !c.is_finite()) {
        diags.push(out_of_range(
            format!("coefficient a{k} is not a finite number"),
            "not finite",
            "write every coefficient as a finite number",
        ));
        return None;
    }
    while coeffs.len() > 1 && coeffs.last() == Some(&0.0) {
        coeffs.pop();
    }
    if coeffs.len() < 2 {
        diags.push(out_of_range(
            "a constant polynomial is not an activation".into(),
            "no coefficient past a0 is non-zero",
            "give at least a0 and a1, e.g. `coeffs: [0, 0, 1]` for x^2",
        ));
        return None;
    }
    if coeffs.len() > MAX_GIVEN_COEFFS {
        diags.push(out_of_range(
            format!(
                "degree {} is above the maximum of {}",
                coeffs.len() - 1,
                MAX_GIVEN_COEFFS - 1
            ),
            "too many coefficients",
            "give at most 32 coefficients (degree 31)",
        ));
        return None;
    }
    Some(coeffs)
}

/// A least-squares fit of degree d has d + 1 coefficients and needs more
/// points than its degree; minimax chooses its own points.
fn fit_is_determined(
    b: &Bound,
    degree: i64,
    method: &str,
    points: usize,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if method == "minimax" {
        if b.has("points") {
            diags.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    "`points` applies only to `method: lstsq`",
                    Label::new(file, b.span("points"), "ignored by a minimax fit"),
                )
                .help("remove `points`: the minimax (Remez) fit chooses its own points"),
            );
            return false;
        }
        return true;
    }
    if points as i64 <= degree {
        let coefficients = degree + 1;
        diags.push(
            Diagnostic::new(
                Code::OutOfRange,
                format!(
                    "{points} fit points cannot determine the {coefficients} coefficients of a degree-{degree} polynomial"
                ),
                Label::new(file, b.span("points"), format!("needs at least {coefficients}")),
            )
            .help(format!(
                "use at least `points: {coefficients}` (the default 100 suits every degree), or lower the degree"
            ))
            .fix(Fix::replace(
                format!("Use `points: {coefficients}`"),
                file,
                b.span("points"),
                coefficients.to_string(),
            )),
        );
        return false;
    }
    true
}

pub const TRAIN_KEYS: &[&str] = &[
    "data",
    "epochs",
    "batch",
    "seed",
    "optimizer",
    "poly_lr_scale",
    "schedule",
    "boundary",
    "clip",
    "activation",
];

/// A call value (`adamw(lr: 1e-3)`) or a bare word (`none`, `constant`).
fn as_call(e: &Expr) -> Option<Call> {
    match &e.kind {
        ExprKind::Call(c) => Some(c.clone()),
        ExprKind::Name(n) => Some(Call {
            name: crate::syntax::Ident {
                name: n.clone(),
                span: e.span,
            },
            args: Vec::new(),
            parens: false,
            span: e.span,
        }),
        _ => None,
    }
}

fn expect_call(
    entry: &Entry,
    choices: &[&str],
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<Call> {
    let call = as_call(&entry.value);
    match call {
        Some(c) if choices.contains(&c.name.name.as_str()) => Some(c),
        other => {
            let typed = other
                .as_ref()
                .map_or(String::new(), |c| c.name.name.clone());
            diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!(
                        "`{}` must be one of: {}",
                        entry.key.name,
                        choices.join(", ")
                    ),
                    Label::new(file, entry.value.span, "not a valid choice"),
                )
                .help(options_help(choices, &typed)),
            );
            None
        }
    }
}

fn duplicate(
    seen: &mut Vec<(String, Span)>,
    key: &crate::syntax::Ident,
    what: &str,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key.name) {
        diags.push(
            Diagnostic::new(
                Code::Duplicate,
                format!("`{}` is set twice in `{what}`", key.name),
                Label::new(file, key.span, "set again here"),
            )
            .with(Label::new(file, *first, "first set here"))
            .help("keep one of the two entries"),
        );
        return true;
    }
    seen.push((key.name.clone(), key.span));
    false
}

pub fn train(section: Option<&Section>, file: FileId, diags: &mut Vec<Diagnostic>) -> TrainInfo {
    let mut info = TrainInfo {
        config: default_train(),
        placement: Placement::AsWritten,
        boundary_span: None,
        penalty_span: None,
    };
    let Some(section) = section else {
        return info;
    };
    let env = Env::new();
    let mut seen = Vec::new();
    // `poly_lr_scale` may be given in `train` or in the optimizer, not both.
    let mut scale_in_train: Option<Span> = None;
    let mut scale_in_optimizer: Option<(f64, Span)> = None;
    for entry in &section.entries {
        if duplicate(&mut seen, &entry.key, "train", file, diags) {
            continue;
        }
        let cfg = &mut info.config;
        let single = |name: &'static str, diags: &mut Vec<Diagnostic>| -> Bound {
            let call = Call {
                name: entry.key.clone(),
                args: vec![crate::syntax::Arg {
                    name: None,
                    value: entry.value.clone(),
                    span: entry.value.span,
                }],
                parens: true,
                span: entry.span,
            };
            bind(&call, &[req(name)], &env, file, diags)
        };
        match entry.key.name.as_str() {
            "epochs" => {
                if let Some(v) = single("epochs", diags).int("epochs", None, 1, 1_000_000, diags) {
                    cfg.epochs = v as u32;
                }
            }
            "batch" => {
                if let Some(v) = single("batch", diags).usize("batch", None, 1, 1 << 24, diags) {
                    cfg.batch = v;
                }
            }
            "seed" => {
                if let Some(v) = single("seed", diags).int("seed", None, 0, i64::MAX, diags) {
                    cfg.seed = v as u64;
                }
            }
            "poly_lr_scale" => {
                if let Some(v) = single("poly_lr_scale", diags).float(
                    "poly_lr_scale",
                    None,
                    |x| x >= 0.0,
                    "zero or positive",
                    diags,
                ) {
                    cfg.poly_lr_scale = v;
                }
                scale_in_train = Some(entry.key.span);
            }
            "activation" => {
                if let Some(w) = single("activation", diags).word(
                    "activation",
                    "as_written",
                    &["as_written", "before_bn", "after_bn"],
                    diags,
                ) {
                    info.placement = match w {
                        "before_bn" => Placement::BeforeBn,
                        "after_bn" => Placement::AfterBn,
                        _ => Placement::AsWritten,
                    };
                }
            }
            "data" => data(entry, &env, cfg, file, diags),
            "optimizer" => {
                if let Some((opt, scale)) = optimizer(entry, &env, file, diags) {
                    cfg.optimizer = opt;
                    scale_in_optimizer = scale;
                }
            }
            "schedule" => {
                if let Some(s) = schedule(entry, &env, file, diags) {
                    cfg.schedule = s;
                }
            }
            "boundary" => {
                info.boundary_span = Some(entry.span);
                if let Some((b, pspan)) = boundary(entry, &env, file, diags) {
                    cfg.boundary = b;
                    info.penalty_span = pspan;
                }
            }
            "clip" => {
                if let Some(c) = clip(entry, &env, file, diags) {
                    cfg.clip = c;
                }
            }
            other => diags.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    format!("`train` has no setting `{other}`"),
                    Label::new(file, entry.key.span, "unknown setting"),
                )
                .help(options_help(TRAIN_KEYS, other)),
            ),
        }
    }
    match (scale_in_train, scale_in_optimizer) {
        (Some(first), Some((_, again))) => diags.push(
            Diagnostic::new(
                Code::Duplicate,
                "`poly_lr_scale` is set twice in `train`: as a setting and in the optimizer",
                Label::new(file, again, "set again in the optimizer"),
            )
            .with(Label::new(file, first, "first set here"))
            .help("keep one of the two: `poly_lr_scale: X` in `train` or `poly_lr_scale: X` in the optimizer"),
        ),
        (None, Some((scale, _))) => info.config.poly_lr_scale = scale,
        _ => {}
    }
    info
}

fn data(
    entry: &Entry,
    env: &Env,
    cfg: &mut TrainConfig,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) {
    let Some(call) = as_call(&entry.value) else {
        diags.push(
            Diagnostic::new(
                Code::WrongType,
                "`data` must name a data set",
                Label::new(
                    file,
                    entry.value.span,
                    "expected a data set such as `mnist()`",
                ),
            )
            .help(format!("known data sets: {}", DataSpec::KNOWN.join(", "))),
        );
        return;
    };
    let mut args = Vec::new();
    let mut spans = Vec::new();
    for a in &call.args {
        let Some(name) = &a.name else {
            diags.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    "data set options must be named",
                    Label::new(file, a.span, "positional argument"),
                )
                .help("write `key: value`, e.g. `val_fraction: 0.1`"),
            );
            return;
        };
        let Some(v) = eval(&a.value, env, file, diags) else {
            return;
        };
        args.push((name.name.clone(), v));
        spans.push((name.name.clone(), a.span));
    }
    match DataSpec::from_call(&call.name.name, &args) {
        Ok(spec) => cfg.data = Some(spec),
        Err(errors) => {
            for e in errors {
                let span = e
                    .arg
                    .as_ref()
                    .and_then(|a| spans.iter().find(|(n, _)| n == a).map(|(_, s)| *s))
                    .unwrap_or(call.span);
                diags.push(
                    Diagnostic::new(
                        Code::BadDataSet,
                        e.message,
                        Label::new(file, span, "invalid data setting"),
                    )
                    .help(
                        e.help
                            .unwrap_or_else(|| "see docs/language.md, section train".into()),
                    ),
                );
            }
        }
    }
}

/// The optimizer, and its `poly_lr_scale` with the span where it was written.
fn optimizer(
    entry: &Entry,
    env: &Env,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Optimizer, Option<(f64, Span)>)> {
    let call = expect_call(entry, &["adamw", "sgd"], file, diags)?;
    let pos = |x: f64| x > 0.0;
    let nonneg = |x: f64| x >= 0.0;
    let unit = |x: f64| (0.0..1.0).contains(&x);
    if call.name.name == "adamw" {
        let spec = [
            opt("lr"),
            opt("weight_decay"),
            opt("beta1"),
            opt("beta2"),
            opt("eps"),
            opt("poly_lr_scale"),
        ];
        let b = bind(&call, &spec, env, file, diags);
        let lr = b.float("lr", Some(1e-3), pos, "positive", diags);
        let wd = b.float(
            "weight_decay",
            Some(0.01),
            nonneg,
            "zero or positive",
            diags,
        );
        let b1 = b.float("beta1", Some(0.9), unit, "in [0, 1)", diags);
        let b2 = b.float("beta2", Some(0.999), unit, "in [0, 1)", diags);
        let eps = b.float("eps", Some(1e-8), pos, "positive", diags);
        let scale = b.float("poly_lr_scale", None, nonneg, "zero or positive", diags);
        if b.has("poly_lr_scale") && scale.is_none() {
            return None;
        }
        Some((
            Optimizer::AdamW {
                lr: lr?,
                weight_decay: wd?,
                beta1: b1?,
                beta2: b2?,
                eps: eps?,
            },
            scale.map(|x| (x, b.span("poly_lr_scale"))),
        ))
    } else {
        let spec = [
            opt("lr"),
            opt("momentum"),
            opt("weight_decay"),
            opt("nesterov"),
            opt("poly_lr_scale"),
        ];
        let b = bind(&call, &spec, env, file, diags);
        let lr = b.float("lr", Some(0.1), pos, "positive", diags);
        let m = b.float("momentum", Some(0.9), unit, "in [0, 1)", diags);
        let wd = b.float(
            "weight_decay",
            Some(5e-4),
            nonneg,
            "zero or positive",
            diags,
        );
        let nesterov = b.bool("nesterov", false, diags);
        let scale = b.float("poly_lr_scale", None, nonneg, "zero or positive", diags);
        if b.has("poly_lr_scale") && scale.is_none() {
            return None;
        }
        Some((
            Optimizer::Sgd {
                lr: lr?,
                momentum: m?,
                weight_decay: wd?,
                nesterov: nesterov?,
            },
            scale.map(|x| (x, b.span("poly_lr_scale"))),
        ))
    }
}

fn schedule(
    entry: &Entry,
    env: &Env,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<Schedule> {
    let call = expect_call(
        entry,
        &["constant", "plateau", "cosine", "multistep"],
        file,
        diags,
    )?;
    let unit = |x: f64| x > 0.0 && x < 1.0;
    let nonneg = |x: f64| x >= 0.0;
    match call.name.name.as_str() {
        "constant" => {
            let b = bind(&call, &[], env, file, diags);
            (!b.failed).then_some(Schedule::Constant)
        }
        "plateau" => {
            let b = bind(
                &call,
                &[
                    opt("factor"),
                    opt("patience"),
                    opt("min_lr"),
                    opt("threshold"),
                ],
                env,
                file,
                diags,
            );
            let f = b.float("factor", Some(0.1), unit, "in (0, 1)", diags);
            let p = b.int("patience", Some(5), 0, 1_000_000, diags);
            let m = b.float("min_lr", Some(0.0), nonneg, "zero or positive", diags);
            let t = b.float(
                "threshold",
                Some(PAPER_PLATEAU_THRESHOLD),
                |x| (0.0..1.0).contains(&x),
                "in [0, 1)",
                diags,
            );
            Some(Schedule::Plateau {
                factor: f?,
                patience: p? as u32,
                min_lr: m?,
                threshold: t?,
            })
        }
        "cosine" => {
            let b = bind(&call, &[opt("min_lr")], env, file, diags);
            let m = b.float("min_lr", Some(0.0), nonneg, "zero or positive", diags);
            Some(Schedule::Cosine { min_lr: m? })
        }
        _ => {
            let b = bind(&call, &[req("milestones"), opt("gamma")], env, file, diags);
            let g = b.float("gamma", Some(0.1), unit, "in (0, 1)", diags);
            let (v, span) = b.values.get("milestones")?;
            let ms: Option<Vec<u32>> = match v {
                Value::List(items) => items
                    .iter()
                    .map(|i| match i {
                        Value::Int(e) if *e >= 1 && *e <= i64::from(u32::MAX) => Some(*e as u32),
                        _ => None,
                    })
                    .collect(),
                _ => None,
            };
            let Some(ms) = ms else {
                diags.push(
                    Diagnostic::new(
                        Code::WrongType,
                        "`milestones` must be a list of epoch numbers",
                        Label::new(file, *span, "expected e.g. [30, 60]"),
                    )
                    .help("write `multistep(milestones: [30, 60], gamma: 0.1)`"),
                );
                return None;
            };
            Some(Schedule::MultiStep {
                milestones: ms,
                gamma: g?,
            })
        }
    }
}

type BoundaryResult = (Option<BoundaryLoss>, Option<Span>);

/// Largest `cap` of `boundary: exp(cap: C)`: the gradient per element is up
/// to weight * exp(C), which must stay far below f32::MAX = exp(88.7).
pub const MAX_BOUNDARY_CAP: f64 = 80.0;

fn boundary(
    entry: &Entry,
    env: &Env,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<BoundaryResult> {
    let call = expect_call(entry, &["none", "exp", "l2", "maxnorm"], file, diags)?;
    if call.name.name == "none" {
        let b = bind(&call, &[], env, file, diags);
        return (!b.failed).then_some((None, None));
    }
    let is_exp = call.name.name == "exp";
    // `cap` belongs to the exp form only: elsewhere it is an unknown argument.
    let mut spec = vec![opt("penalty"), opt("weight"), opt("reduce")];
    if is_exp {
        spec.push(opt("cap"));
    }
    let b = bind(&call, &spec, env, file, diags);
    let cap = b.float(
        "cap",
        None,
        |c| (0.0..=MAX_BOUNDARY_CAP).contains(&c),
        "in [0, 80]",
        diags,
    );
    if b.has("cap") && cap.is_none() {
        return None;
    }
    let kind = match (call.name.name.as_str(), cap) {
        ("exp", Some(cap)) => BoundaryKind::ExpCapped { cap },
        ("exp", None) => BoundaryKind::Exp,
        ("l2", _) => BoundaryKind::L2,
        _ => BoundaryKind::MaxNorm,
    };
    let penalty = b.float("penalty", None, |x| x > 0.0, "positive", diags);
    let weight = b.float(
        "weight",
        Some(10.0),
        |x| x >= 0.0,
        "zero or positive",
        diags,
    );
    let reduce = b.word("reduce", "sum", &["sum", "max", "l1", "l2"], diags);
    if b.failed || (b.has("penalty") && penalty.is_none()) {
        return None;
    }
    let loss = BoundaryLoss {
        kind,
        penalty,
        weight: weight?,
        reduce: match reduce? {
            "max" => Reduce::Max,
            "l1" => Reduce::L1,
            "l2" => Reduce::L2,
            _ => Reduce::Sum,
        },
    };
    Some((Some(loss), b.has("penalty").then(|| b.span("penalty"))))
}

fn clip(
    entry: &Entry,
    env: &Env,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<Option<Clip>> {
    let call = expect_call(entry, &["none", "norm"], file, diags)?;
    if call.name.name == "none" {
        let b = bind(&call, &[], env, file, diags);
        return (!b.failed).then_some(None);
    }
    let b = bind(&call, &[opt("max_norm"), opt("except")], env, file, diags);
    let max_norm = b.float("max_norm", Some(1.0), |x| x > 0.0, "positive", diags);
    let except = b.word("except", "batchnorm", &["none", "batchnorm"], diags);
    Some(Some(Clip {
        max_norm: max_norm?,
        except: if except? == "none" {
            ClipExcept::None
        } else {
            ClipExcept::BatchNorm
        },
    }))
}

pub const HE_KEYS: &[&str] = &["scheme", "security", "depth"];

/// Largest `depth` budget in `he` (far above what CKKS parameters reach).
pub const MAX_DEPTH_BUDGET: i64 = 10_000;

/// `he { scheme: ckks  security: 128  depth: 40 }`; returns the config and
/// the span of `depth` when a budget is set.
pub fn he(
    section: Option<&Section>,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> (HeConfig, Option<Span>) {
    let mut cfg = HeConfig {
        scheme: Scheme::Ckks,
        security: 128,
        depth_budget: None,
    };
    let mut depth_span = None;
    let Some(section) = section else {
        return (cfg, None);
    };
    let mut seen = Vec::new();
    for entry in &section.entries {
        if duplicate(&mut seen, &entry.key, "he", file, diags) {
            continue;
        }
        let call = Call {
            name: entry.key.clone(),
            args: vec![crate::syntax::Arg {
                name: None,
                value: entry.value.clone(),
                span: entry.value.span,
            }],
            parens: true,
            span: entry.span,
        };
        match entry.key.name.as_str() {
            "scheme" => {
                let b = bind(&call, &[req("scheme")], &Env::new(), file, diags);
                b.word("scheme", "ckks", &["ckks"], diags);
            }
            "security" => {
                let b = bind(&call, &[req("security")], &Env::new(), file, diags);
                if let Some(bits) = b.int("security", None, 0, i64::MAX, diags) {
                    if [128, 192, 256].contains(&bits) {
                        cfg.security = bits as u32;
                    } else {
                        diags.push(
                            Diagnostic::new(
                                Code::OutOfRange,
                                format!("security level {bits} is not supported"),
                                Label::new(file, entry.value.span, "expected 128, 192 or 256"),
                            )
                            .help("use one of the HE standard levels: 128, 192 or 256 bits"),
                        );
                    }
                }
            }
            "depth" => {
                let b = bind(&call, &[req("depth")], &Env::new(), file, diags);
                if let Some(d) = b.int("depth", None, 1, MAX_DEPTH_BUDGET, diags) {
                    cfg.depth_budget = Some(d as u32);
                    depth_span = Some(entry.span);
                }
            }
            other => diags.push(
                Diagnostic::new(
                    Code::UnknownArgument,
                    format!("`he` has no setting `{other}`"),
                    Label::new(file, entry.key.span, "unknown setting"),
                )
                .help(options_help(HE_KEYS, other)),
            ),
        }
    }
    (cfg, depth_span)
}

#[cfg(test)]
mod tests {
    use crate::check::check_source;
    use crate::ir::{Basis, BoundaryKind, Model, OpKind};

    fn model(act: &str, train: &str) -> Result<Model, Vec<String>> {
        let text = format!(
            "model m\ninput [4]\nclasses 3\nact p = {act}\nnet {{ dense(8); p; dense(classes) }}\ntrain {{ {train} }}\n"
        );
        let c = check_source("m.pnn", &text);
        c.model.ok_or_else(|| {
            c.diagnostics
                .iter()
                .map(|d| format!("{} {}: {}", d.code, d.message, d.help))
                .collect()
        })
    }

    fn basis(m: &Model) -> Basis {
        m.ops()
            .into_iter()
            .find_map(|o| match &o.kind {
                OpKind::Poly(a) => Some(a.basis),
                _ => None,
            })
            .expect("a poly site")
    }

    #[test]
    fn capped_exp_boundary_parses_and_bad_caps_are_errors() {
        let boundary = |b: &str| model("poly(degree: 2, range: 12)", &format!("boundary: {b}"));
        let m = boundary("exp(penalty: 12, weight: 10, cap: 10)").unwrap();
        let b = m.train.boundary.unwrap();
        assert_eq!(b.kind, BoundaryKind::ExpCapped { cap: 10.0 });
        assert_eq!((b.penalty, b.weight), (Some(12.0), 10.0));
        // Without `cap` it stays the paper's form.
        let m = boundary("exp(penalty: 12)").unwrap();
        assert_eq!(m.train.boundary.unwrap().kind, BoundaryKind::Exp);
        assert!(boundary("exp(cap: 0)").is_ok());
        for bad in ["exp(cap: -1)", "exp(cap: 81)", "exp(cap: 1e400)"] {
            let errs = boundary(bad).unwrap_err();
            assert!(
                errs.iter().any(|e| e.starts_with("E0203")),
                "{bad}: {errs:?}"
            );
        }
        let errs = boundary("exp(cap: true)").unwrap_err();
        assert!(errs[0].starts_with("E0202"), "{errs:?}");
        // `cap` belongs to the exp form only.
        let errs = boundary("l2(penalty: 12, cap: 10)").unwrap_err();
        assert!(
            errs[0].starts_with("E0200") && errs[0].contains("cap"),
            "{errs:?}"
        );
    }

    #[test]
    fn raw_power_basis_parses_and_bad_bases_name_the_options() {
        let m = model(
            "poly(degree: 22, range: 47, basis: raw_power, learnable: false)",
            "",
        )
        .unwrap();
        assert_eq!(basis(&m), Basis::RawPower);
        let m = model("poly(degree: 2, range: 12)", "").unwrap();
        assert_eq!(basis(&m), Basis::Chebyshev);
        let errs = model("poly(degree: 2, range: 12, basis: rawpower)", "").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("E0203") && errs[0].contains("did you mean `raw_power`?"),
            "{errs:?}"
        );
    }
}

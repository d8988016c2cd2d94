//! `net { }` -> a list of IR ops: block and loop expansion, shape inference
//! and parameter counts. Levels and folding are assigned afterwards by
//! [`super::levels`].

use super::diag::{Code, Diagnostic, Edit, FileId, Fix, Label, Sources};
use super::eval::{Bound, Env, ParamSpec, bind, closest, eval, opt, req, type_error};
use crate::ir::{Op, OpKind, PolyAct, Shape, SrcLoc, Value};
use crate::syntax::{BlockDef, Branch, Call, ShortcutKind, Span, Stmt};
use std::collections::HashMap;

/// Most trainable parameters a model may have. Far above anything HE can
/// evaluate; exists so absurd sizes give an error instead of overflow.
pub const MAX_PARAMS: u64 = 4_000_000_000;
/// Most ops after expansion (guards nested loops).
pub const MAX_OPS: usize = 100_000;
/// Most loop iterations in one expansion, counted over all loops (guards
/// nested loops with empty bodies, which add no layers). A network within
/// [`MAX_OPS`] needs at most a few iterations per layer.
pub const MAX_LOOP_STEPS: usize = 1_000_000;
/// Most values in one activation tensor.
pub const MAX_NUMEL: u64 = 1 << 34;
/// Deepest chain of block uses.
pub const MAX_BLOCK_DEPTH: usize = 32;
/// Largest input size along one axis.
pub const MAX_DIM: usize = 1 << 24;
/// Largest kernel, stride or padding of `conv` and `avgpool`, per axis.
pub const MAX_WINDOW: usize = 1 << 16;

/// Unknown names that get a "did you mean" suggestion; later ones get the
/// list of layers only.
const MAX_SUGGESTIONS: usize = 20;

/// The built-in layers, in the order the docs list them.
pub const BUILTINS: &[&str] = &[
    "dense",
    "conv",
    "batchnorm",
    "avgpool",
    "global_avgpool",
    "flatten",
    "dropout",
    "scale",
];

/// A named activation definition.
pub struct ActInfo {
    /// None when the definition itself had errors (already reported).
    pub act: Option<PolyAct>,
    pub file: FileId,
    pub span: Span,
    /// Span of the `degree` / `range` arguments, for lints.
    pub degree_span: Span,
    pub range_span: Span,
}

pub struct BlockInfo<'a> {
    pub def: &'a BlockDef,
    pub file: FileId,
}

/// Everything a `net` may refer to by name.
pub struct Defs<'a> {
    pub acts: HashMap<String, ActInfo>,
    pub blocks: HashMap<String, BlockInfo<'a>>,
    /// Constants visible everywhere (`classes`).
    pub globals: Env,
}

/// Where an op was written: its statement, and the block uses that led there.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: FileId,
    pub span: Span,
    pub trace: Vec<Label>,
}

pub struct Builder<'a> {
    defs: &'a Defs<'a>,
    sources: &'a Sources,
    pub diags: Vec<Diagnostic>,
    pub origins: HashMap<String, Origin>,
    /// Names of acts actually used, for lints, in order of first use.
    pub used_acts: Vec<String>,
    used_set: std::collections::HashSet<String>,
    op_count: usize,
    /// Loop iterations so far, for [`MAX_LOOP_STEPS`].
    loop_steps: usize,
    /// Unknown names that got a "did you mean" (each search is linear in the
    /// definitions, so it is bounded).
    suggestions: usize,
    total_params: u64,
    stack: Vec<(String, Label)>,
    size_reported: bool,
    /// An import failed: unknown names may be its definitions (not reported).
    pub imports_failed: bool,
    /// Start of the item (`net` or the block) being expanded, innermost last.
    item_starts: Vec<(FileId, usize)>,
}

/// Per-scope counters that make op names unique (`conv1`, `conv2`, ...).
struct Scope {
    prefix: String,
    counters: HashMap<String, usize>,
}

impl Scope {
    fn new(prefix: String) -> Scope {
        Scope {
            prefix,
            counters: HashMap::new(),
        }
    }

    fn next(&mut self, kind: &str) -> String {
        let n = self.counters.entry(kind.to_string()).or_insert(0);
        *n += 1;
        format!("{}{kind}{n}", self.prefix)
    }
}

/// The parameters each built-in layer takes, in positional order.
pub fn builtin_params(name: &str) -> &'static [ParamSpec<'static>] {
    const DENSE: &[ParamSpec] = &[req("out"), opt("bias")];
    const CONV: &[ParamSpec] = &[
        req("out"),
        req("kernel"),
        opt("stride"),
        opt("padding"),
        opt("bias"),
        opt("groups"),
    ];
    const BN: &[ParamSpec] = &[opt("eps"), opt("momentum")];
    const POOL: &[ParamSpec] = &[req("kernel"), opt("stride")];
    const DROPOUT: &[ParamSpec] = &[req("p")];
    const SCALE: &[ParamSpec] = &[req("factor")];
    match name {
        "dense" => DENSE,
        "conv" => CONV,
        "batchnorm" => BN,
        "avgpool" => POOL,
        "dropout" => DROPOUT,
        "scale" => SCALE,
        _ => &[],
    }
}

/// One built-in layer after its arguments were checked. `params` is None
/// when the input shape is unknown, u64::MAX when the count overflows.
struct Layer {
    kind: OpKind,
    output: Flow,
    params: Option<u64>,
}

/// The call a layer was written as, for labels.
#[derive(Clone, Copy)]
struct LayerAt<'c> {
    call: &'c Call,
    file: FileId,
}

impl LayerAt<'_> {
    fn label(self, msg: String) -> Label {
        Label::new(self.file, self.call.span, msg)
    }
}

/// The shape flowing through the net; None after an error (so one mistake
/// does not cause a cascade of follow-on shape errors).
type Flow = Option<Shape>;

impl<'a> Builder<'a> {
    pub fn new(defs: &'a Defs<'a>, sources: &'a Sources) -> Builder<'a> {
        Builder {
            defs,
            sources,
            diags: Vec::new(),
            origins: HashMap::new(),
            used_acts: Vec::new(),
            used_set: std::collections::HashSet::new(),
            op_count: 0,
            loop_steps: 0,
            suggestions: 0,
            total_params: 0,
            stack: Vec::new(),
            size_reported: false,
            imports_failed: false,
            item_starts: Vec::new(),
        }
    }

    /// Whether expansion stopped at [`MAX_OPS`] layers or [`MAX_LOOP_STEPS`] iterations.
    pub fn limit_crossed(&self) -> bool {
        self.op_count > MAX_OPS || self.loop_steps > MAX_LOOP_STEPS
    }

    /// Count a loop's iterations; false (reported once) when that crosses the limit.
    fn loop_budget(&mut self, iterations: usize, file: FileId, span: Span) -> bool {
        let crossed_before = self.limit_crossed();
        self.loop_steps = self.loop_steps.saturating_add(iterations);
        if self.loop_steps > MAX_LOOP_STEPS && !crossed_before {
            self.diags.push(
                Diagnostic::new(
                    Code::TooLarge,
                    format!("the network's loops run more than {MAX_LOOP_STEPS} iterations"),
                    Label::new(file, span, "limit crossed here"),
                )
                .help("check loop ranges: nested loops multiply")
                .root_cause(),
            );
        }
        !self.limit_crossed()
    }

    pub fn total_params(&self) -> u64 {
        self.total_params
    }

    /// Expand the top-level net body.
    /// Expand the top-level net body; `item_start` is where the `net` item
    /// begins (fixes insert definitions before it).
    pub fn build(
        &mut self,
        body: &[Stmt],
        file: FileId,
        item_start: usize,
        input: Flow,
    ) -> (Vec<Op>, Flow) {
        self.item_starts.push((file, item_start));
        let mut scope = Scope::new(String::new());
        let mut ops = Vec::new();
        let mut flow = input;
        let env = self.defs.globals.clone();
        self.expand(body, file, &env, &mut scope, &mut flow, &mut ops);
        (ops, flow)
    }

    fn expand(
        &mut self,
        stmts: &[Stmt],
        file: FileId,
        env: &Env,
        scope: &mut Scope,
        flow: &mut Flow,
        out: &mut Vec<Op>,
    ) {
        for stmt in stmts {
            if self.limit_crossed() {
                // The shapes of a truncated network say nothing (no follow-on errors).
                *flow = None;
                return;
            }
            match stmt {
                Stmt::Call(call) => self.call(call, file, env, scope, flow, out),
                Stmt::For {
                    var, iter, body, ..
                } => {
                    let Some(v) = eval(iter, env, file, &mut self.diags) else {
                        *flow = None;
                        continue;
                    };
                    let Value::List(items) = v else {
                        type_error(
                            iter.span,
                            file,
                            "a list `[a, b]` or a range `a..b`",
                            &v,
                            &mut self.diags,
                        );
                        *flow = None;
                        continue;
                    };
                    if !self.loop_budget(items.len(), file, iter.span) {
                        *flow = None;
                        return;
                    }
                    for item in items {
                        if self.limit_crossed() {
                            *flow = None;
                            break;
                        }
                        let mut inner = env.clone();
                        inner.insert(var.name.clone(), item);
                        self.expand(body, file, &inner, scope, flow, out);
                    }
                }
                Stmt::Residual {
                    body,
                    shortcut,
                    span,
                } => {
                    let name = scope.next("res");
                    let input = flow.clone();
                    let mut body_ops = Vec::new();
                    let mut body_flow = input.clone();
                    let mut body_scope = Scope::new(format!("{name}."));
                    self.expand(
                        body,
                        file,
                        env,
                        &mut body_scope,
                        &mut body_flow,
                        &mut body_ops,
                    );
                    let mut short_ops = Vec::new();
                    let mut short_flow = input.clone();
                    if let Some(sc) = shortcut {
                        let apply = match sc.kind {
                            ShortcutKind::Always => true,
                            // Unknown shapes: expand anyway so its arguments are checked.
                            ShortcutKind::WhenShapeChanges => {
                                body_flow.is_none() || input.is_none() || body_flow != input
                            }
                        };
                        if apply {
                            let mut short_scope = Scope::new(format!("{name}.short."));
                            self.expand(
                                &sc.body,
                                file,
                                env,
                                &mut short_scope,
                                &mut short_flow,
                                &mut short_ops,
                            );
                        }
                    }
                    if let (Some(b), Some(s)) = (&body_flow, &short_flow)
                        && b != s
                    {
                        let short_label = match shortcut {
                            Some(sc) => {
                                Label::new(file, sc.span, format!("the shortcut gives {s}"))
                            }
                            None => {
                                Label::new(file, *span, format!("the identity shortcut gives {s}"))
                            }
                        };
                        let help = match (b.dims(), shortcut) {
                            ([c, ..], None) => format!(
                                "add a projection: `residual {{ ... }} project {{ conv({c}, 1, stride: S); batchnorm }}` with S the body's stride"
                            ),
                            _ => "make both paths end in the same shape".to_string(),
                        };
                        self.diags.push(
                            Diagnostic::new(
                                Code::ShapeMismatch,
                                format!(
                                    "residual join: the body gives {b} but the shortcut gives {s}"
                                ),
                                Label::new(file, *span, format!("the body gives {b}")),
                            )
                            .with(short_label)
                            .help(help),
                        );
                        // Continue with the body's shape: later layers are still checked.
                        short_flow = body_flow.clone();
                    }
                    let params = body_ops
                        .iter()
                        .chain(&short_ops)
                        .map(|o| o.params)
                        .fold(0u64, u64::saturating_add);
                    let output = body_flow.clone();
                    self.push(
                        out,
                        name,
                        OpKind::Residual {
                            body: body_ops,
                            shortcut: short_ops,
                        },
                        &input,
                        output,
                        params,
                        file,
                        *span,
                    );
                    *flow = if body_flow.is_some() && short_flow.is_some() {
                        body_flow
                    } else {
                        None
                    };
                }
                Stmt::Concat { branches, span } => {
                    self.concat(branches, *span, file, env, scope, flow, out);
                }
            }
        }
    }

    /// `concat { ... } { ... }`: every branch expanded from the same input,
    /// their outputs joined along the first axis.
    #[allow(clippy::too_many_arguments)]
    fn concat(
        &mut self,
        branches: &[Branch],
        span: Span,
        file: FileId,
        env: &Env,
        scope: &mut Scope,
        flow: &mut Flow,
        out: &mut Vec<Op>,
    ) {
        let name = scope.next("cat");
        let input = flow.clone();
        let mut branch_ops = Vec::with_capacity(branches.len());
        let mut outputs = Vec::with_capacity(branches.len());
        for (i, b) in branches.iter().enumerate() {
            let mut ops = Vec::new();
            let mut branch_flow = input.clone();
            let mut branch_scope = Scope::new(format!("{name}.b{}.", i + 1));
            self.expand(
                &b.body,
                file,
                env,
                &mut branch_scope,
                &mut branch_flow,
                &mut ops,
            );
            branch_ops.push(ops);
            outputs.push(branch_flow);
        }
        let output = if branches.len() < 2 {
            self.diags.push(
                Diagnostic::new(
                    Code::MissingArgument,
                    "`concat` has one branch; it joins two or more".to_string(),
                    Label::new(file, span, "one branch"),
                )
                .help("add a branch `{ ... }` (an empty `{}` passes the input through: DenseNet's x ++ f(x) is `concat {} { ... }`), or write the branch's layers without `concat`"),
            );
            None
        } else {
            let known: Option<Vec<Shape>> = outputs.iter().cloned().collect();
            known.and_then(|shapes| self.concat_shape(&shapes, branches, file))
        };
        let params = branch_ops
            .iter()
            .flatten()
            .map(|o| o.params)
            .fold(0u64, u64::saturating_add);
        // The branches' parameters are counted already; only the size is checked.
        let output = self.check_size(output, Some(0), span, file, &name);
        self.push(
            out,
            name,
            OpKind::Concat {
                branches: branch_ops,
            },
            &input,
            output.clone(),
            params,
            file,
            span,
        );
        *flow = output;
    }

    /// The shape of the branches' outputs joined along the first axis, or
    /// E0300 at the first branch whose other axes differ from the first's.
    fn concat_shape(&mut self, shapes: &[Shape], branches: &[Branch], file: FileId) -> Flow {
        let first = &shapes[0];
        let rest = |s: &Shape| s.dims().get(1..).unwrap_or(&[]).to_vec();
        let bad: Vec<usize> = (1..shapes.len())
            .filter(|&i| rest(&shapes[i]) != rest(first) || shapes[i].dims().is_empty())
            .collect();
        let Some(&i) = bad.first() else {
            let channels = shapes
                .iter()
                .map(|s| s.dims().first().copied().unwrap_or(0))
                .fold(0usize, usize::saturating_add);
            let mut dims = vec![channels];
            dims.extend(rest(first));
            return Some(Shape(dims));
        };
        let same_rank = shapes[i].dims().len() == first.dims().len();
        let help = if same_rank {
            let axes: Vec<String> = rest(first).iter().map(usize::to_string).collect();
            format!(
                "concat joins along the first axis (channels): every branch must end in [_, {}] as branch 1 does; keep strides and pooling equal across branches, and pad to keep the size (`conv(c, 3, padding: 1)`)",
                axes.join(", ")
            )
        } else {
            "every branch must end in a tensor of the same rank: flatten all branches or none"
                .to_string()
        };
        // A branch's shape comes from its last statement (the braces when empty).
        let at = |b: &Branch| b.body.last().map_or(b.span, Stmt::span);
        let mut d = Diagnostic::new(
            Code::ShapeMismatch,
            format!(
                "concat: branch {} gives {} but branch 1 gives {first}",
                i + 1,
                shapes[i]
            ),
            Label::new(
                file,
                at(&branches[i]),
                format!("branch {} gives {}", i + 1, shapes[i]),
            ),
        )
        .with(Label::new(
            file,
            at(&branches[0]),
            format!("branch 1 gives {first}"),
        ))
        .help(help);
        for &j in &bad[1..] {
            d = d.with(Label::new(
                file,
                at(&branches[j]),
                format!("branch {} gives {}", j + 1, shapes[j]),
            ));
        }
        self.diags.push(d);
        None
    }

    fn call(
        &mut self,
        call: &Call,
        file: FileId,
        env: &Env,
        scope: &mut Scope,
        flow: &mut Flow,
        out: &mut Vec<Op>,
    ) {
        // A block parameter or loop variable may name an activation or block.
        let mut name = call.name.name.clone();
        if let Some(v) = env.get(&name) {
            match v {
                // Its definition failed and was reported.
                v if super::eval::is_unknown(v) => {
                    *flow = None;
                    return;
                }
                Value::Ident(target) => name = target.clone(),
                other => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::WrongType,
                            format!("`{name}` is {} `{other}`, not a layer", other.type_name()),
                            Label::new(file, call.name.span, "used as a layer here"),
                        )
                        .help(
                            "only names of layers, activations and blocks can stand as statements",
                        ),
                    );
                    *flow = None;
                    return;
                }
            }
        }
        if BUILTINS.contains(&name.as_str()) {
            self.builtin(&name, call, file, env, scope, flow, out);
        } else if let Some(info) = self.defs.acts.get(&name) {
            if !call.args.is_empty() {
                self.diags.push(
                    Diagnostic::new(
                        Code::UnknownArgument,
                        format!("activation `{name}` takes no arguments"),
                        Label::new(file, call.span, "arguments given here"),
                    )
                    .with(Label::new(info.file, info.span, "defined here"))
                    .help(format!(
                        "write just `{name}`; change its settings in its `act` definition"
                    )),
                );
            }
            if self.used_set.insert(name.clone()) {
                self.used_acts.push(name.clone());
            }
            let Some(act) = info.act.clone() else {
                return;
            };
            let params = if act.learnable {
                u64::from(act.degree) + 1
            } else {
                0
            };
            let input = flow.clone();
            self.total_params = self.total_params.saturating_add(params);
            let op_name = scope.next("poly");
            self.push(
                out,
                op_name,
                OpKind::Poly(act),
                &input,
                input.clone(),
                params,
                file,
                call.span,
            );
        } else if let Some(block) = self.defs.blocks.get(&name) {
            self.block(block, &name, call, file, env, scope, flow, out);
        } else if let Some(non_he) = super::nonhe::lookup(&name) {
            let mut d = Diagnostic::new(
                Code::NonHeOp,
                format!("`{name}` cannot be evaluated under homomorphic encryption"),
                Label::new(file, call.span, "not HE-compatible"),
            )
            .help(non_he.help);
            if let Some(fix) = self.non_he_fix(&name, call, file) {
                d = d.fix(fix);
            }
            self.diags.push(d);
            // A shape-preserving op is skipped so later layers are still checked.
            if !non_he.keeps_shape {
                *flow = None;
            }
        } else {
            *flow = None;
            if !self.imports_failed {
                let d = self.unknown_name(&name, call, file);
                self.diags.push(d);
            }
        }
    }

    /// E0101 with a "did you mean" (or PyTorch spelling) and its fix.
    fn unknown_name(&mut self, name: &str, call: &Call, file: FileId) -> Diagnostic {
        let close = match super::nonhe::pytorch_spelling(name) {
            Some(ours) => Some((format!("PyTorch's `{name}` is written `{ours}` here"), ours)),
            None => {
                self.suggestions += 1;
                let candidates = BUILTINS
                    .iter()
                    .copied()
                    .chain(self.defs.acts.keys().map(String::as_str))
                    .chain(self.defs.blocks.keys().map(String::as_str));
                (self.suggestions <= MAX_SUGGESTIONS)
                    .then(|| closest(candidates, name))
                    .flatten()
                    .map(|c| (format!("did you mean `{c}`?"), c))
            }
        };
        let d = Diagnostic::new(
            Code::UnknownName,
            format!("unknown layer, activation or block `{name}`"),
            Label::new(file, call.name.span, "not defined"),
        );
        match close {
            Some((help, with)) => d.help(help).fix(Fix::replace(
                format!("Replace `{name}` with `{with}`"),
                file,
                call.name.span,
                with,
            )),
            None => d.help(format!(
                "layers are {}; activations and blocks must be defined with `act` or `block`",
                BUILTINS.join(", ")
            )),
        }
    }

    /// The help's replacement for a non-HE operation, as edits: a polynomial
    /// activation (an existing one, or a new `act` before the enclosing
    /// item), average pooling, batchnorm, or removing a softmax.
    fn non_he_fix(&self, name: &str, call: &Call, file: FileId) -> Option<Fix> {
        use super::nonhe::Family;
        let norm = super::nonhe::normalize(name);
        let replace = |title: String, text: &str| Some(Fix::replace(title, file, call.span, text));
        match super::nonhe::lookup(name)?.family {
            Family::Activation if norm != "glu" => {
                let fit = match norm.as_str() {
                    "gelu" | "quickgelu" => "gelu",
                    "silu" | "swish" => "silu",
                    _ => "relu",
                };
                Some(self.poly_fix(name, fit, call, file))
            }
            Family::MaxPool if norm == "maxpool" => Some(Fix::replace(
                format!("Replace `{name}` with `avgpool`"),
                file,
                call.name.span,
                "avgpool",
            )),
            Family::MaxPool if norm == "adaptivemaxpool" => replace(
                format!("Replace `{name}` with `global_avgpool`"),
                "global_avgpool",
            ),
            Family::Norm if call.args.is_empty() => {
                replace(format!("Replace `{name}` with `batchnorm`"), "batchnorm")
            }
            Family::Softmax if norm != "adaptivelogsoftmaxwithloss" => {
                replace(format!("Remove `{name}` (softmax runs on the client)"), "")
            }
            _ => None,
        }
    }

    /// Use a defined polynomial activation fitted to `fit`, or define one.
    fn poly_fix(&self, name: &str, fit: &str, call: &Call, file: FileId) -> Fix {
        use crate::ir::FitTarget;
        let fits = |a: &crate::ir::PolyAct| {
            matches!(
                (a.fit, fit),
                (FitTarget::Relu, "relu") | (FitTarget::Silu, "silu") | (FitTarget::Gelu, "gelu")
            )
        };
        let mut existing: Vec<&String> = self
            .defs
            .acts
            .iter()
            .filter(|(_, info)| info.act.as_ref().is_some_and(fits))
            .map(|(n, _)| n)
            .collect();
        existing.sort();
        if let Some(act) = existing.first() {
            return Fix::replace(
                format!("Replace `{name}` with the polynomial activation `{act}`"),
                file,
                call.span,
                act.as_str(),
            );
        }
        let taken = |n: &str| {
            BUILTINS.contains(&n)
                || self.defs.acts.contains_key(n)
                || self.defs.blocks.contains_key(n)
        };
        let fresh = std::iter::once("p".to_string())
            .chain((2..).map(|i| format!("p{i}")))
            .find(|n| !taken(n))
            .unwrap_or_else(|| "p".to_string());
        let (def_file, start) = self.item_starts.last().copied().unwrap_or((file, 0));
        Fix {
            title: format!("Replace `{name}` with a new polynomial activation `{fresh}`"),
            edits: vec![
                Edit {
                    file: def_file,
                    span: Span::new(start, start),
                    text: format!("act {fresh} = poly(degree: 2, fit: {fit}, range: 13)\n"),
                },
                Edit {
                    file,
                    span: call.span,
                    text: fresh,
                },
            ],
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        block: &BlockInfo<'_>,
        name: &str,
        call: &Call,
        file: FileId,
        env: &Env,
        scope: &mut Scope,
        flow: &mut Flow,
        out: &mut Vec<Op>,
    ) {
        let def = block.def;
        let use_label = Label::new(file, call.span, format!("in this use of block `{name}`"));
        if self.stack.iter().any(|(n, _)| n == name) {
            let mut d = Diagnostic::new(
                Code::RecursiveBlock,
                format!("block `{name}` uses itself"),
                Label::new(file, call.span, "recursive use"),
            )
            .with(Label::new(block.file, def.name.span, "block defined here"))
            .help("blocks are expanded in place and cannot recurse; repeat a block with `for i in 0..n { ... }`");
            for (_, l) in self.stack.iter().rev().take(3) {
                d = d.with(l.clone());
            }
            self.diags.push(d);
            *flow = None;
            return;
        }
        if self.stack.len() >= MAX_BLOCK_DEPTH {
            self.diags.push(
                Diagnostic::new(
                    Code::RecursiveBlock,
                    format!("blocks nested deeper than {MAX_BLOCK_DEPTH} levels"),
                    Label::new(file, call.span, "too deep"),
                )
                .help("flatten the block structure"),
            );
            *flow = None;
            return;
        }
        // Bind arguments to the block's parameters.
        let spec: Vec<ParamSpec> = def
            .params
            .iter()
            .map(|p| ParamSpec {
                name: p.name.name.as_str(),
                required: p.default.is_none(),
            })
            .collect();
        let before = self.diags.len();
        let bound = bind(call, &spec, env, file, &mut self.diags);
        // Defaults are evaluated where the block is defined, seeing earlier parameters.
        let mut inner = self.defs.globals.clone();
        for p in &def.params {
            let key = p.name.name.as_str();
            if let Some((v, _)) = bound.values.get(key) {
                inner.insert(key.to_string(), v.clone());
            } else if let Some(d) = &p.default
                && let Some(v) = eval(d, &inner, block.file, &mut self.diags)
            {
                inner.insert(key.to_string(), v);
            }
        }
        for d in &mut self.diags[before..] {
            d.secondary.push(Label::new(
                block.file,
                def.name.span,
                format!("block `{name}` defined here"),
            ));
        }
        if bound.failed {
            *flow = None;
            return;
        }
        let mut sub = Scope::new(format!("{}.", scope.next(name)));
        self.stack.push((name.to_string(), use_label.clone()));
        self.item_starts.push((block.file, def.span.start));
        let before = self.diags.len();
        self.expand(&def.body, block.file, &inner, &mut sub, flow, out);
        self.stack.pop();
        self.item_starts.pop();
        for d in &mut self.diags[before..] {
            if d.secondary.len() < 4 && d.code != Code::RecursiveBlock {
                d.secondary.push(use_label.clone());
            }
        }
    }

    /// A built-in layer: bind its arguments, infer its output shape and
    /// parameter count (one function per layer kind), then push the op.
    #[allow(clippy::too_many_arguments)]
    fn builtin(
        &mut self,
        name: &str,
        call: &Call,
        file: FileId,
        env: &Env,
        scope: &mut Scope,
        flow: &mut Flow,
        out: &mut Vec<Op>,
    ) {
        let b = bind(call, builtin_params(name), env, file, &mut self.diags);
        let input = flow.clone();
        let at = LayerAt { call, file };
        let layer = match name {
            "dense" => self.dense(&b, &input, at),
            "conv" => self.conv(&b, &input, at),
            "batchnorm" => self.batchnorm(&b, &input),
            "avgpool" => self.avgpool(&b, &input, at),
            "global_avgpool" => Some(self.global_avgpool(&input, at)),
            "flatten" => Some(Layer {
                kind: OpKind::Flatten,
                output: input.as_ref().map(|s| Shape(vec![s.numel() as usize])),
                params: Some(0),
            }),
            "dropout" => self.dropout(&b, &input),
            _ => self.scale(&b, &input),
        };
        let Some(Layer {
            kind,
            output,
            params,
        }) = layer
        else {
            *flow = None;
            return;
        };
        let op_name = scope.next(match name {
            "batchnorm" => "bn",
            "global_avgpool" => "gap",
            other => other,
        });
        let output = self.check_size(output, params, call.span, file, &op_name);
        let failed = output.is_none();
        self.push(
            out,
            op_name,
            kind,
            &input,
            output.clone(),
            params.unwrap_or(0),
            file,
            call.span,
        );
        *flow = if failed { None } else { output };
    }

    fn dense(&mut self, b: &Bound, input: &Flow, at: LayerAt<'_>) -> Option<Layer> {
        let d = &mut self.diags;
        let outf = b.usize("out", None, 1, i64::MAX as usize, d);
        let bias = b.bool("bias", true, d);
        let (outf, bias) = (outf?, bias?);
        let inf = match input.as_ref().map(|s| s.dims().to_vec()) {
            Some(dims) if dims.len() == 1 => Some(dims[0]),
            Some(dims) => {
                let s = Shape(dims);
                self.diags.push(
                    Diagnostic::new(
                        Code::ShapeMismatch,
                        format!("`dense` needs a flat input, but its input has shape {s}"),
                        at.label(format!("input is {s}")),
                    )
                    .help("add `flatten` (or `global_avgpool` for images) before `dense`"),
                );
                None
            }
            None => None,
        };
        let params = inf.and_then(|i| {
            (i as u64)
                .checked_mul(outf as u64)?
                .checked_add(if bias { outf as u64 } else { 0 })
        });
        Some(Layer {
            kind: OpKind::Dense {
                in_features: inf.unwrap_or(0),
                out_features: outf,
                bias,
            },
            output: inf.map(|_| Shape(vec![outf])),
            params: params.or(inf.map(|_| u64::MAX)),
        })
    }

    fn conv(&mut self, b: &Bound, input: &Flow, at: LayerAt<'_>) -> Option<Layer> {
        let d = &mut self.diags;
        let cout = b.usize("out", None, 1, i64::MAX as usize, d);
        let kernel = b.pair("kernel", None, 1, MAX_WINDOW, d);
        let stride = b.pair("stride", Some([1, 1]), 1, MAX_WINDOW, d);
        let padding = b.pair("padding", Some([0, 0]), 0, MAX_WINDOW, d);
        let bias = b.bool("bias", false, d);
        let groups = b.usize("groups", Some(1), 1, MAX_WINDOW, d);
        let (cout, mut kernel, mut stride, mut padding, bias, groups) =
            (cout?, kernel?, stride?, padding?, bias?, groups?);
        let mut output = None;
        let mut cin = 0;
        if let Some(s) = input {
            match s.dims() {
                [c, h, w] => {
                    cin = *c;
                    output = self.conv_output(b, at, s, [*h, *w], kernel, stride, padding, cout);
                }
                [c, n] => {
                    cin = *c;
                    // A sequence: a 1-D convolution, stored as one over [c, 1, n].
                    if self.sequence_windows(b, at, &["kernel", "stride", "padding"]) {
                        (kernel, stride, padding) = ([1, kernel[1]], [1, stride[1]], [0, padding[1]]);
                        output = self
                            .conv_output(b, at, s, [1, *n], kernel, stride, padding, cout)
                            .map(|o| Shape(vec![o.dims()[0], o.dims()[2]]));
                    }
                }
                _ => self.diags.push(
                    Diagnostic::new(
                        Code::ShapeMismatch,
                        format!("`conv` needs an image [channels, height, width] or a sequence [channels, length], but its input has shape {s}"),
                        at.label(format!("input is {s}")),
                    )
                    .help("give the model an input such as `input [1, 28, 28]` or `input [9, 128]`, or use `dense` on flat inputs"),
                ),
            }
        }
        // The output shape does not depend on the groups: later layers are still checked.
        if output.is_some() {
            self.groups_divide(b, at, groups, cin, cout);
        }
        let params = output.as_ref().and_then(|_| {
            (cout as u64)
                .checked_mul((cin / groups) as u64)?
                .checked_mul(kernel[0] as u64)?
                .checked_mul(kernel[1] as u64)?
                .checked_add(if bias { cout as u64 } else { 0 })
        });
        let params = params.or(output.as_ref().map(|_| u64::MAX));
        Some(Layer {
            kind: OpKind::Conv {
                in_channels: cin,
                out_channels: cout,
                kernel,
                stride,
                padding,
                bias,
                groups,
            },
            output,
            params,
        })
    }

    /// The [cout, oh, ow] of a convolution over `hw`, or None (reported)
    /// when the kernel does not fit.
    #[allow(clippy::too_many_arguments)]
    fn conv_output(
        &mut self,
        b: &Bound,
        at: LayerAt<'_>,
        input: &Shape,
        [h, w]: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        cout: usize,
    ) -> Option<Shape> {
        let oh = conv_out(h, kernel[0], stride[0], padding[0]);
        let ow = conv_out(w, kernel[1], stride[1], padding[1]);
        if let (Some(oh), Some(ow)) = (oh, ow) {
            return Some(Shape(vec![cout, oh, ow]));
        }
        let message = if input.dims().len() == 2 {
            format!(
                "kernel {} does not fit the length-{w} input (padding {})",
                kernel[1], padding[1]
            )
        } else {
            format!(
                "kernel {}x{} does not fit the {h}x{w} input (padding {}x{})",
                kernel[0], kernel[1], padding[0], padding[1]
            )
        };
        self.diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                message,
                Label::new(at.file, b.span("kernel"), "kernel larger than the padded input"),
            )
            .with(at.label(format!("input is {input}")))
            .help("use a smaller kernel or more padding, or remove a downsampling layer before this one"),
        );
        None
    }

    /// On a sequence [c, n], window arguments are single numbers; false
    /// (reported) when one is a list.
    fn sequence_windows(&mut self, b: &Bound, at: LayerAt<'_>, names: &[&str]) -> bool {
        let mut ok = true;
        for name in names {
            if let Some((Value::List(_), span)) = b.values.get(*name) {
                ok = false;
                self.diags.push(
                    Diagnostic::new(
                        Code::WrongType,
                        format!("`{name}` of a layer on a sequence is one number, not a list"),
                        Label::new(at.file, *span, "a list [h, w] is for images"),
                    )
                    .help(format!(
                        "the input is a sequence [channels, length]: write `{name}: N`"
                    )),
                );
            }
        }
        ok
    }

    /// Report a `groups` that does not divide both channel counts.
    fn groups_divide(
        &mut self,
        b: &Bound,
        at: LayerAt<'_>,
        groups: usize,
        cin: usize,
        cout: usize,
    ) {
        if cin.is_multiple_of(groups) && cout.is_multiple_of(groups) {
            return;
        }
        let (what, n) = if cin.is_multiple_of(groups) {
            ("output", cout)
        } else {
            ("input", cin)
        };
        let divisors: Vec<String> = common_divisors(cin, cout)
            .iter()
            .map(usize::to_string)
            .collect();
        self.diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                format!("`groups: {groups}` does not divide the {n} {what} channels of `conv` ({cin} in, {cout} out)"),
                Label::new(at.file, b.span("groups"), "groups must divide both channel counts"),
            )
            .help(format!("use groups that divide both {cin} and {cout}: {}", divisors.join(", "))),
        );
    }

    fn batchnorm(&mut self, b: &Bound, input: &Flow) -> Option<Layer> {
        let d = &mut self.diags;
        let eps = b.float("eps", Some(1e-5), |x| x > 0.0, "positive", d);
        let momentum = b.float(
            "momentum",
            Some(0.1),
            |x| x > 0.0 && x <= 1.0,
            "in (0, 1]",
            d,
        );
        let (eps, momentum) = (eps?, momentum?);
        let channels = input
            .as_ref()
            .and_then(|s| s.dims().first().copied())
            .unwrap_or(0);
        Some(Layer {
            kind: OpKind::BatchNorm {
                channels,
                eps,
                momentum,
                foldable: true,
            },
            output: input.clone(),
            params: Some(2 * channels as u64),
        })
    }

    fn avgpool(&mut self, b: &Bound, input: &Flow, at: LayerAt<'_>) -> Option<Layer> {
        let d = &mut self.diags;
        let kernel = b.pair("kernel", None, 1, MAX_WINDOW, d);
        let stride = b.pair("stride", kernel, 1, MAX_WINDOW, d);
        let (mut kernel, mut stride) = (kernel?, stride?);
        let output = match input.as_ref().map(|s| s.dims().to_vec()) {
            Some(dims) => match dims.as_slice() {
                [c, h, w] => self.pool_output(at, &dims, *c, [*h, *w], kernel, stride),
                [c, n] => {
                    // A sequence: pooled as [c, 1, n] with a 1 x k window.
                    if self.sequence_windows(b, at, &["kernel", "stride"]) {
                        (kernel, stride) = ([1, kernel[1]], [1, stride[1]]);
                        self.pool_output(at, &dims, *c, [1, *n], kernel, stride)
                            .map(|o| Shape(vec![*c, o.dims()[2]]))
                    } else {
                        None
                    }
                }
                _ => {
                    self.diags.push(
                        Diagnostic::new(
                            Code::ShapeMismatch,
                            format!(
                                "`avgpool` needs an image [channels, height, width] or a sequence [channels, length], found {}",
                                Shape(dims.clone())
                            ),
                            at.label("neither an image nor a sequence".into()),
                        )
                        .help("pool before `flatten`, or remove the pooling"),
                    );
                    None
                }
            },
            None => None,
        };
        Some(Layer {
            kind: OpKind::AvgPool { kernel, stride },
            output,
            params: Some(0),
        })
    }

    /// The [c, oh, ow] of average pooling over `hw`, or None (reported)
    /// when the window does not fit.
    fn pool_output(
        &mut self,
        at: LayerAt<'_>,
        dims: &[usize],
        c: usize,
        [h, w]: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
    ) -> Option<Shape> {
        if let (Some(oh), Some(ow)) = (
            conv_out(h, kernel[0], stride[0], 0),
            conv_out(w, kernel[1], stride[1], 0),
        ) {
            return Some(Shape(vec![c, oh, ow]));
        }
        let (window, size) = if dims.len() == 2 {
            (kernel[1].to_string(), format!("length-{w}"))
        } else {
            (format!("{}x{}", kernel[0], kernel[1]), format!("{h}x{w}"))
        };
        self.diags.push(
            Diagnostic::new(
                Code::ShapeMismatch,
                format!("pooling window {window} is larger than the {size} input"),
                at.label(format!("input is {}", Shape(dims.to_vec()))),
            )
            .help("use a smaller window, or `global_avgpool` to average everything"),
        );
        None
    }

    fn global_avgpool(&mut self, input: &Flow, at: LayerAt<'_>) -> Layer {
        let output = match input.as_ref().map(|s| s.dims().to_vec()) {
            Some(dims) if dims.len() >= 2 => Some(Shape(vec![dims[0]])),
            Some(dims) => {
                self.diags.push(
                    Diagnostic::new(
                        Code::ShapeMismatch,
                        format!(
                            "`global_avgpool` needs [channels, ...positions], found {}",
                            Shape(dims)
                        ),
                        at.label("input is already flat".into()),
                    )
                    .help("remove `global_avgpool`: the input has no spatial positions left"),
                );
                None
            }
            None => None,
        };
        Layer {
            kind: OpKind::GlobalAvgPool,
            output,
            params: Some(0),
        }
    }

    fn dropout(&mut self, b: &Bound, input: &Flow) -> Option<Layer> {
        let p = b.float(
            "p",
            None,
            |x| (0.0..1.0).contains(&x),
            "in [0, 1)",
            &mut self.diags,
        )?;
        Some(Layer {
            kind: OpKind::Dropout { p },
            output: input.clone(),
            params: Some(0),
        })
    }

    fn scale(&mut self, b: &Bound, input: &Flow) -> Option<Layer> {
        let factor = b.float(
            "factor",
            None,
            |x| x != 0.0,
            "a non-zero number",
            &mut self.diags,
        )?;
        Some(Layer {
            kind: OpKind::Scale { factor },
            output: input.clone(),
            params: Some(0),
        })
    }

    /// Reject absurd layer sizes (params or activation values); reported once.
    fn check_size(
        &mut self,
        output: Flow,
        params: Option<u64>,
        span: Span,
        file: FileId,
        op: &str,
    ) -> Flow {
        let output = output?;
        let params = params.unwrap_or(0);
        let new_total = self.total_params.saturating_add(params);
        let too_big = if params > MAX_PARAMS || new_total > MAX_PARAMS {
            Some(format!(
                "`{op}` brings the parameter count to {}, over the limit of {MAX_PARAMS}",
                if params == u64::MAX {
                    "more than 2^64".to_string()
                } else {
                    new_total.to_string()
                }
            ))
        } else if output.numel() > MAX_NUMEL {
            Some(format!(
                "`{op}` outputs {} values, over the limit of {MAX_NUMEL}",
                value_count(output.numel())
            ))
        } else {
            None
        };
        self.total_params = new_total;
        if let Some(msg) = too_big {
            if !self.size_reported {
                self.size_reported = true;
                self.diags.push(
                    Diagnostic::new(Code::TooLarge, msg, Label::new(file, span, "this layer is too large"))
                        .help("check the sizes: HE networks have thousands to millions of parameters, not billions"),
                );
            }
            return None;
        }
        Some(output)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        out: &mut Vec<Op>,
        name: String,
        kind: OpKind,
        input: &Flow,
        output: Flow,
        params: u64,
        file: FileId,
        span: Span,
    ) {
        self.op_count += 1;
        if self.op_count == MAX_OPS + 1 {
            self.diags.push(
                Diagnostic::new(
                    Code::TooLarge,
                    format!("the network expands to more than {MAX_OPS} layers"),
                    Label::new(file, span, "limit crossed here"),
                )
                .help("check loop ranges and block repetitions")
                .root_cause(),
            );
        }
        let (line, column) = self.sources.line_col(file, span.start);
        let trace = self.stack.iter().rev().map(|(_, l)| l.clone()).collect();
        self.origins
            .insert(name.clone(), Origin { file, span, trace });
        out.push(Op {
            name,
            kind,
            input: input.clone().unwrap_or(Shape(Vec::new())),
            output: output.unwrap_or(Shape(Vec::new())),
            params,
            levels: 0,
            level: 0,
            loc: SrcLoc {
                file: self.sources.path(file).to_string(),
                line,
                column,
            },
        });
    }
}

/// A count of values for messages; [`Shape::numel`] saturates at u64::MAX.
pub fn value_count(n: u64) -> String {
    if n == u64::MAX {
        "more than 2^64".to_string()
    } else {
        n.to_string()
    }
}

/// The common divisors of `a` and `b`, ascending (at most 12: a help line).
/// O(sqrt(gcd)) steps, so absurd channel counts stay cheap.
fn common_divisors(a: usize, b: usize) -> Vec<usize> {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let (mut low, mut high) = (Vec::new(), Vec::new());
    let mut d = 1;
    while d <= x / d {
        if x.is_multiple_of(d) {
            low.push(d);
            if d != x / d {
                high.push(x / d);
            }
        }
        d += 1;
    }
    low.extend(high.into_iter().rev());
    low.truncate(12);
    low
}

/// Output length of a convolution or pooling along one axis, None when the
/// window does not fit.
fn conv_out(n: usize, k: usize, s: usize, p: usize) -> Option<usize> {
    let padded = n.checked_add(p.checked_mul(2)?)?;
    if k > padded || s == 0 {
        return None;
    }
    Some((padded - k) / s + 1)
}

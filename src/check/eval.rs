//! Evaluating expressions to constant [`Value`]s and binding call arguments.

use super::diag::{Code, Diagnostic, FileId, Label};
use crate::ir::Value;
use crate::syntax::{Arg, BinOp, Call, Expr, ExprKind, Number, Span};
use std::collections::HashMap;

/// Longest list a range may produce (guards `for i in 0..1000000000000`).
pub const MAX_RANGE: i64 = 100_000;

/// Names visible to an expression: loop variables and block parameters.
pub type Env = HashMap<String, Value>;

/// The value of a name whose definition failed (bad or missing `classes`):
/// the failure was reported, so its uses fail silently instead of
/// reporting a type error each.
pub fn unknown() -> Value {
    Value::Ident(UNKNOWN.to_string())
}

/// Whether `v` is [`unknown`].
pub fn is_unknown(v: &Value) -> bool {
    matches!(v, Value::Ident(n) if n == UNKNOWN)
}

/// Cannot be written in a source file (identifiers are ASCII words).
const UNKNOWN: &str = "\u{0}unknown";

/// Evaluate `expr` in `env`. Bare names not bound in `env` evaluate to
/// [`Value::Ident`] (option words such as `relu`, `chebyshev`).
/// Errors are pushed to `diags` and give `None`.
pub fn eval(expr: &Expr, env: &Env, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<Value> {
    let here = |msg: &str| Label::new(file, expr.span, msg);
    match &expr.kind {
        ExprKind::Number { value, text } => {
            match value {
                Number::Int(i) => Some(Value::Int(*i)),
                Number::Float(f) => Some(Value::Float(*f)),
                Number::Overflow => {
                    diags.push(
                    Diagnostic::new(
                        Code::OutOfRange,
                        format!("number `{text}` is too large"),
                        here("does not fit in 64 bits"),
                    )
                    .help("integers must lie within ±9223372036854775807 and numbers must be finite"),
                );
                    None
                }
            }
        }
        ExprKind::Str(s) => Some(Value::Str(s.clone())),
        ExprKind::Bool(b) => Some(Value::Bool(*b)),
        ExprKind::Name(n) => match env.get(n) {
            Some(v) if is_unknown(v) => None,
            Some(v) => Some(v.clone()),
            None => Some(Value::Ident(n.clone())),
        },
        ExprKind::Paren(e) => eval(e, env, file, diags),
        ExprKind::List(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for it in items {
                match eval(it, env, file, diags) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(Value::List(out))
        }
        ExprKind::Range(a, b) => {
            let lo = eval_int(a, env, file, diags);
            let hi = eval_int(b, env, file, diags);
            let (lo, hi) = (lo?, hi?);
            if hi.saturating_sub(lo) > MAX_RANGE {
                diags.push(
                    Diagnostic::new(
                        Code::OutOfRange,
                        format!("range {lo}..{hi} is longer than {MAX_RANGE} elements"),
                        here("too long"),
                    )
                    .help(
                        "loops over more than 100000 values expand to a network too large to check",
                    ),
                );
                return None;
            }
            Some(Value::List((lo..hi.max(lo)).map(Value::Int).collect()))
        }
        ExprKind::Neg(e) => match eval(e, env, file, diags)? {
            Value::Int(i) => Some(Value::Int(i.checked_neg().unwrap_or(i64::MAX))),
            Value::Float(f) => Some(Value::Float(-f)),
            other => {
                type_error(expr.span, file, "a number", &other, diags);
                None
            }
        },
        ExprKind::Binary(op, a, b) => {
            let x = eval(a, env, file, diags);
            let y = eval(b, env, file, diags);
            arith(*op, x?, y?, expr.span, file, diags)
        }
        ExprKind::Call(c) => {
            diags.push(
                Diagnostic::new(
                    Code::WrongType,
                    format!("`{}(...)` is not a value here", c.name.name),
                    here("a call is not allowed here"),
                )
                .help("write a number, a name, a string or a list"),
            );
            None
        }
    }
}

fn arith(
    op: BinOp,
    x: Value,
    y: Value,
    span: Span,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Option<Value> {
    let overflow = |diags: &mut Vec<Diagnostic>| {
        diags.push(
            Diagnostic::new(
                Code::OutOfRange,
                "arithmetic overflow",
                Label::new(file, span, "result does not fit in 64 bits"),
            )
            .help("use smaller numbers"),
        );
        None
    };
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => {
            let r = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div => {
                    if b == 0 {
                        diags.push(
                            Diagnostic::new(
                                Code::OutOfRange,
                                "division by zero",
                                Label::new(file, span, "divides by 0"),
                            )
                            .help("divide by a non-zero number"),
                        );
                        return None;
                    }
                    // Exact integer division stays an integer; otherwise a number.
                    if a % b == 0 {
                        a.checked_div(b)
                    } else {
                        return Some(Value::Float(a as f64 / b as f64));
                    }
                }
            };
            match r {
                Some(v) => Some(Value::Int(v)),
                None => overflow(diags),
            }
        }
        (x, y) => {
            let (Some(a), Some(b)) = (x.as_f64(), y.as_f64()) else {
                let bad = if x.as_f64().is_none() { x } else { y };
                type_error(span, file, "numbers", &bad, diags);
                return None;
            };
            let r = match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => a / b,
            };
            if r.is_finite() {
                Some(Value::Float(r))
            } else {
                overflow(diags)
            }
        }
    }
}

fn eval_int(e: &Expr, env: &Env, file: FileId, diags: &mut Vec<Diagnostic>) -> Option<i64> {
    match eval(e, env, file, diags)? {
        Value::Int(i) => Some(i),
        other => {
            type_error(e.span, file, "an integer", &other, diags);
            None
        }
    }
}

/// Push "expected X, found Y".
pub fn type_error(
    span: Span,
    file: FileId,
    expected: &str,
    found: &Value,
    diags: &mut Vec<Diagnostic>,
) {
    let help = match found {
        Value::Ident(n) => {
            format!("`{n}` is not a defined parameter or loop variable here; write {expected}")
        }
        _ => format!("write {expected} here"),
    };
    diags.push(
        Diagnostic::new(
            Code::WrongType,
            format!("expected {expected}, found {} `{found}`", found.type_name()),
            Label::new(file, span, format!("expected {expected}")),
        )
        .help(help),
    );
}

/// One declared parameter of a built-in call.
pub struct ParamSpec<'s> {
    pub name: &'s str,
    pub required: bool,
}

pub const fn req(name: &'static str) -> ParamSpec<'static> {
    ParamSpec {
        name,
        required: true,
    }
}

pub const fn opt(name: &'static str) -> ParamSpec<'static> {
    ParamSpec {
        name,
        required: false,
    }
}

/// Arguments of one call after binding: name -> (value, span of the value).
#[derive(Debug, Default)]
pub struct Bound {
    pub values: HashMap<String, (Value, Span)>,
    pub file: FileId,
    pub call_span: Span,
    /// Whether binding failed somewhere (already reported).
    pub failed: bool,
}

/// Bind positional then named arguments of `call` to `spec`, reporting
/// unknown, duplicate and missing arguments.
pub fn bind(
    call: &Call,
    spec: &[ParamSpec<'_>],
    env: &Env,
    file: FileId,
    diags: &mut Vec<Diagnostic>,
) -> Bound {
    let mut bound = Bound {
        values: HashMap::new(),
        file,
        call_span: call.span,
        failed: false,
    };
    let what = &call.name.name;
    let names: Vec<&str> = spec.iter().map(|p| p.name).collect();
    let mut positional = 0usize;
    for arg in &call.args {
        let Arg { name, value, span } = arg;
        let slot = match name {
            Some(n) => match spec.iter().find(|p| p.name == n.name) {
                Some(p) => p.name,
                None => {
                    bound.failed = true;
                    diags.push(
                        Diagnostic::new(
                            Code::UnknownArgument,
                            format!("`{what}` has no argument `{}`", n.name),
                            Label::new(file, n.span, "unknown argument"),
                        )
                        .help(options_help(&names, &n.name)),
                    );
                    continue;
                }
            },
            None => match spec.get(positional) {
                Some(p) => {
                    positional += 1;
                    p.name
                }
                None => {
                    bound.failed = true;
                    diags.push(
                        Diagnostic::new(
                            Code::UnknownArgument,
                            format!(
                                "`{what}` takes at most {} positional argument(s)",
                                spec.len()
                            ),
                            Label::new(file, *span, "extra argument"),
                        )
                        .help(options_help(&names, "")),
                    );
                    continue;
                }
            },
        };
        if bound.values.contains_key(slot) {
            bound.failed = true;
            diags.push(
                Diagnostic::new(
                    Code::Duplicate,
                    format!("argument `{slot}` of `{what}` is given twice"),
                    Label::new(file, *span, "given again here"),
                )
                .help(format!("remove one of the `{slot}` arguments")),
            );
            continue;
        }
        match eval(value, env, file, diags) {
            Some(v) => {
                bound.values.insert(slot.to_string(), (v, value.span));
            }
            None => bound.failed = true,
        }
    }
    let missing: Vec<&str> = spec
        .iter()
        .filter(|p| p.required && !bound.values.contains_key(p.name))
        .map(|p| p.name)
        .collect();
    if !missing.is_empty() && !bound.failed {
        bound.failed = true;
        let list = missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ");
        diags.push(
            Diagnostic::new(
                Code::MissingArgument,
                format!(
                    "`{what}` needs {} {list}",
                    if missing.len() == 1 {
                        "the argument"
                    } else {
                        "the arguments"
                    }
                ),
                Label::new(file, call.span, format!("{list} missing")),
            )
            .help(format!("write it as `{what}({})`", signature(spec))),
        );
    }
    bound
}

fn signature(spec: &[ParamSpec<'_>]) -> String {
    spec.iter()
        .map(|p| {
            if p.required {
                p.name.to_string()
            } else {
                format!("{}: ...", p.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "options: a, b, c" plus a close match when there is one.
pub fn options_help(options: &[&str], typed: &str) -> String {
    let list = if options.is_empty() {
        "none".to_string()
    } else {
        options.join(", ")
    };
    match closest(options.iter().copied(), typed) {
        Some(best) => format!("did you mean `{best}`? (options: {list})"),
        None => format!("options: {list}"),
    }
}

/// The candidate within edit distance 2 of `typed`, if any.
pub fn closest<'a>(candidates: impl Iterator<Item = &'a str>, typed: &str) -> Option<&'a str> {
    if typed.is_empty() {
        return None;
    }
    candidates
        // Cheap first: names whose lengths differ by more than 2 are further
        // away (names are ASCII words, so bytes are characters).
        .filter(|c| c.len().abs_diff(typed.len()) <= 2)
        .map(|c| (edit_distance(c, typed), c))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

impl Bound {
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn span(&self, name: &str) -> Span {
        self.values.get(name).map_or(self.call_span, |(_, s)| *s)
    }

    /// An integer in `[min, max]`, or `default` when absent.
    pub fn int(
        &self,
        name: &str,
        default: Option<i64>,
        min: i64,
        max: i64,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<i64> {
        let Some((v, span)) = self.values.get(name) else {
            return default;
        };
        let Value::Int(i) = v else {
            type_error(*span, self.file, "an integer", v, diags);
            return None;
        };
        if *i < min || *i > max {
            diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!("`{name}` is {i}, outside {min}..={max}"),
                    Label::new(self.file, *span, "out of range"),
                )
                .help(format!("use a value from {min} to {max}")),
            );
            return None;
        }
        Some(*i)
    }

    pub fn usize(
        &self,
        name: &str,
        default: Option<usize>,
        min: usize,
        max: usize,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<usize> {
        self.int(
            name,
            default.map(|d| d as i64),
            min as i64,
            max as i64,
            diags,
        )
        .and_then(|i| usize::try_from(i).ok())
    }

    /// A number (integer or not) checked by `ok`, described by `range` in messages.
    pub fn float(
        &self,
        name: &str,
        default: Option<f64>,
        ok: impl Fn(f64) -> bool,
        range: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<f64> {
        let Some((v, span)) = self.values.get(name) else {
            return default;
        };
        let Some(f) = v.as_f64() else {
            type_error(*span, self.file, "a number", v, diags);
            return None;
        };
        if !f.is_finite() || !ok(f) {
            diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!("`{name}` is {f}, which is not {range}"),
                    Label::new(self.file, *span, "out of range"),
                )
                .help(format!("`{name}` must be {range}")),
            );
            return None;
        }
        Some(f)
    }

    pub fn bool(&self, name: &str, default: bool, diags: &mut Vec<Diagnostic>) -> Option<bool> {
        let Some((v, span)) = self.values.get(name) else {
            return Some(default);
        };
        match v {
            Value::Bool(b) => Some(*b),
            other => {
                type_error(*span, self.file, "`true` or `false`", other, diags);
                None
            }
        }
    }

    /// One of the option words in `choices`.
    pub fn word(
        &self,
        name: &str,
        default: &'static str,
        choices: &[&'static str],
        diags: &mut Vec<Diagnostic>,
    ) -> Option<&'static str> {
        let Some((v, span)) = self.values.get(name) else {
            return Some(default);
        };
        let found = match v {
            Value::Ident(s) | Value::Str(s) => choices.iter().copied().find(|c| c == s),
            _ => None,
        };
        if found.is_none() {
            diags.push(
                Diagnostic::new(
                    Code::OutOfRange,
                    format!("`{v}` is not a valid `{name}`"),
                    Label::new(
                        self.file,
                        *span,
                        format!("expected one of: {}", choices.join(", ")),
                    ),
                )
                .help(options_help(choices, v.as_str().unwrap_or(""))),
            );
        }
        found
    }

    /// An integer or a pair `[h, w]` of integers, each in `[min, max]`.
    pub fn pair(
        &self,
        name: &str,
        default: Option<[usize; 2]>,
        min: usize,
        max: usize,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<[usize; 2]> {
        let Some((v, span)) = self.values.get(name) else {
            return default;
        };
        let one = |v: &Value, diags: &mut Vec<Diagnostic>| -> Option<usize> {
            match v {
                Value::Int(i) if *i >= min as i64 && *i <= max as i64 => Some(*i as usize),
                Value::Int(i) => {
                    diags.push(
                        Diagnostic::new(
                            Code::OutOfRange,
                            format!("`{name}` is {i}, outside {min}..={max}"),
                            Label::new(self.file, *span, "out of range"),
                        )
                        .help(format!("use a value from {min} to {max}")),
                    );
                    None
                }
                other => {
                    type_error(
                        *span,
                        self.file,
                        "an integer or a list [h, w]",
                        other,
                        diags,
                    );
                    None
                }
            }
        };
        match v {
            Value::List(items) if items.len() == 2 => {
                let h = one(&items[0], diags);
                let w = one(&items[1], diags);
                Some([h?, w?])
            }
            Value::List(_) => {
                type_error(*span, self.file, "an integer or a list [h, w]", v, diags);
                None
            }
            v => one(v, diags).map(|k| [k, k]),
        }
    }
}

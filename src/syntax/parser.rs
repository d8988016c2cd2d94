//! pest parse tree -> [`ast::File`], with byte spans on every node.

use super::ast::*;
use pest::Parser;
use pest::iterators::Pair;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../grammar/pnn.pest"]
struct PnnParser;

/// Deepest bracket nesting accepted. Checked before parsing so that neither
/// pest nor our recursive walks can exhaust the stack on hostile input.
pub const MAX_NESTING: usize = 64;

/// A syntax error with the place it was found.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    pub help: String,
}

/// Parse a whole file.
pub fn parse(src: &str) -> Result<File, SyntaxError> {
    check_nesting(src)?;
    let mut pairs = PnnParser::parse(Rule::file, src).map_err(|e| from_pest(src, e))?;
    let Some(file) = pairs.next() else {
        return Ok(File { items: Vec::new() });
    };
    let items = file
        .into_inner()
        .filter(|p| p.as_rule() != Rule::EOI)
        .map(item)
        .collect();
    Ok(File { items })
}

/// Reject nesting deeper than [`MAX_NESTING`], skipping comments and strings.
fn check_nesting(src: &str) -> Result<(), SyntaxError> {
    let mut depth = 0usize;
    let mut in_comment = false;
    let mut in_string = false;
    for (i, c) in src.char_indices() {
        match c {
            '\n' => {
                in_comment = false;
                in_string = false;
            }
            _ if in_comment => {}
            '"' => in_string = !in_string,
            _ if in_string => {}
            '#' => in_comment = true,
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SyntaxError {
                        message: format!("nesting deeper than {MAX_NESTING} levels"),
                        span: Span::new(i, i + 1),
                        help: "flatten the structure: move inner parts into named blocks".into(),
                    });
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn from_pest(src: &str, e: pest::error::Error<Rule>) -> SyntaxError {
    use pest::error::{ErrorVariant, InputLocation};
    let (start, end) = match e.location {
        InputLocation::Pos(p) => (p, p),
        InputLocation::Span((s, e)) => (s, e),
    };
    // Point at the offending character (or the end of the file).
    let end = if end > start {
        end
    } else {
        src[start..]
            .chars()
            .next()
            .map_or(start, |c| start + c.len_utf8())
    };
    let found = match src[start..].chars().next() {
        None => "end of file".to_string(),
        Some(c) if c.is_ascii_whitespace() => "end of line".to_string(),
        Some(_) => {
            let word: String = src[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if word.is_empty() {
                format!("`{}`", &src[start..end])
            } else {
                format!("`{word}`")
            }
        }
    };
    let expected = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => describe(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    SyntaxError {
        message: format!("unexpected {found}"),
        span: Span::new(start, end),
        help: format!("expected {expected}"),
    }
}

fn describe(rules: &[Rule]) -> String {
    let mut names: Vec<&str> = rules.iter().map(|r| rule_name(*r)).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => "something else here".into(),
        1 => names[0].into(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

fn rule_name(rule: Rule) -> &'static str {
    match rule {
        Rule::EOI => "end of file",
        Rule::import
        | Rule::model_decl
        | Rule::input_decl
        | Rule::classes_decl
        | Rule::act_def
        | Rule::block_def
        | Rule::net
        | Rule::train
        | Rule::he => {
            "a section (`model`, `input`, `classes`, `act`, `block`, `net`, `train`, `he`, `import`)"
        }
        Rule::params | Rule::param => "block parameters `(name, name: default)`",
        Rule::body => "`{`",
        Rule::section => "`{`",
        Rule::for_stmt | Rule::residual_stmt | Rule::concat_stmt | Rule::call_stmt => "a layer",
        Rule::shortcut_clause => "`shortcut` or `project`",
        Rule::entry => "`key: value`",
        Rule::args => "`(`",
        Rule::named_arg => "an argument",
        Rule::expr | Rule::sum | Rule::product | Rule::unary => "a value",
        Rule::call => "a call",
        Rule::list => "a list `[...]`",
        Rule::range_op => "`..`",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::neg => "`-`",
        Rule::number => "a number",
        Rule::string => "a string",
        Rule::boolean => "`true` or `false`",
        Rule::ident => "a name",
        Rule::kw_residual => "`residual`",
        Rule::kw_shortcut => "`shortcut`",
        Rule::kw_project => "`project`",
        Rule::kw_concat => "`concat`",
        _ => "something else here",
    }
}

/// The span of a node without the white space and comments that pest's
/// implicit whitespace swallowed before a trailing optional part that failed.
fn span_of(p: &Pair<Rule>) -> Span {
    let s = p.as_span();
    let (start, end) = (s.start(), s.end());
    if let Some(last) = p.clone().into_inner().last() {
        let child_end = span_of(&last).end;
        let rest = p.get_input().get(child_end..end).unwrap_or("");
        if child_end <= end && only_trivia(rest) {
            return Span::new(start, child_end);
        }
    }
    Span::new(start, end)
}

fn only_trivia(text: &str) -> bool {
    let mut in_comment = false;
    for c in text.chars() {
        match c {
            '\n' => in_comment = false,
            _ if in_comment => {}
            '#' => in_comment = true,
            c if c.is_whitespace() => {}
            _ => return false,
        }
    }
    true
}

fn ident(p: Pair<Rule>) -> Ident {
    Ident {
        name: p.as_str().to_string(),
        span: span_of(&p),
    }
}

fn item(p: Pair<Rule>) -> Item {
    let span = span_of(&p);
    let rule = p.as_rule();
    let mut inner = p.into_inner().filter(|q| !is_keyword(q.as_rule()));
    // The grammar guarantees each child below; `next_pair` keeps us panic-free anyway.
    match rule {
        Rule::import => {
            let path = inner
                .next()
                .map(|s| unquote(s.as_str()))
                .unwrap_or_default();
            Item::Import { path, span }
        }
        Rule::model_decl => Item::Model {
            name: inner.next().map(ident).unwrap_or_else(|| missing(span)),
            span,
        },
        Rule::input_decl => Item::Input {
            shape: inner.next().map(expr).unwrap_or_else(|| missing_expr(span)),
            span,
        },
        Rule::classes_decl => Item::Classes {
            value: inner.next().map(expr).unwrap_or_else(|| missing_expr(span)),
            span,
        },
        Rule::act_def => {
            let name = inner.next().map(ident).unwrap_or_else(|| missing(span));
            let call = inner.next().map(call).unwrap_or_else(|| Call {
                name: missing(span),
                args: Vec::new(),
                parens: false,
                span,
            });
            Item::Act(ActDef { name, call, span })
        }
        Rule::block_def => {
            let name = inner.next().map(ident).unwrap_or_else(|| missing(span));
            let params = inner.next().map(params).unwrap_or_default();
            let body = inner.next().map(body).unwrap_or_default();
            Item::Block(BlockDef {
                name,
                params,
                body,
                span,
            })
        }
        Rule::net => Item::Net {
            body: inner.next().map(body).unwrap_or_default(),
            span,
        },
        Rule::train => Item::Train(section(inner.next(), span)),
        _ => Item::He(section(inner.next(), span)),
    }
}

fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_import
            | Rule::kw_model
            | Rule::kw_input
            | Rule::kw_classes
            | Rule::kw_act
            | Rule::kw_block
            | Rule::kw_net
            | Rule::kw_train
            | Rule::kw_he
            | Rule::kw_for
            | Rule::kw_in
            | Rule::kw_residual
            | Rule::kw_concat
    )
}

fn missing(span: Span) -> Ident {
    Ident {
        name: String::new(),
        span,
    }
}

fn missing_expr(span: Span) -> Expr {
    Expr {
        kind: ExprKind::List(Vec::new()),
        span,
    }
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

fn params(p: Pair<Rule>) -> Vec<Param> {
    p.into_inner()
        .map(|param| {
            let span = span_of(&param);
            let mut inner = param.into_inner();
            let name = inner.next().map(ident).unwrap_or_else(|| missing(span));
            let default = inner.next().map(expr);
            Param {
                name,
                default,
                span,
            }
        })
        .collect()
}

fn section(p: Option<Pair<Rule>>, outer: Span) -> Section {
    let Some(p) = p else {
        return Section {
            entries: Vec::new(),
            span: outer,
        };
    };
    let entries = p
        .into_inner()
        .filter(|e| e.as_rule() == Rule::entry)
        .map(|e| {
            let span = span_of(&e);
            let mut inner = e.into_inner();
            let key = inner.next().map(ident).unwrap_or_else(|| missing(span));
            let value = inner.next().map(expr).unwrap_or_else(|| missing_expr(span));
            Entry { key, value, span }
        })
        .collect();
    Section {
        entries,
        span: outer,
    }
}

fn body(p: Pair<Rule>) -> Vec<Stmt> {
    p.into_inner().map(stmt).collect()
}

fn stmt(p: Pair<Rule>) -> Stmt {
    let span = span_of(&p);
    match p.as_rule() {
        Rule::for_stmt => {
            let mut inner = p.into_inner().filter(|q| !is_keyword(q.as_rule()));
            let var = inner.next().map(ident).unwrap_or_else(|| missing(span));
            let iter = inner.next().map(expr).unwrap_or_else(|| missing_expr(span));
            let body = inner.next().map(body).unwrap_or_default();
            Stmt::For {
                var,
                iter,
                body,
                span,
            }
        }
        Rule::residual_stmt => {
            let mut main = Vec::new();
            let mut shortcut = None;
            for part in p.into_inner() {
                match part.as_rule() {
                    Rule::body => main = body(part),
                    Rule::shortcut_clause => {
                        let sspan = span_of(&part);
                        let mut kind = ShortcutKind::Always;
                        let mut sbody = Vec::new();
                        for q in part.into_inner() {
                            match q.as_rule() {
                                Rule::kw_project => kind = ShortcutKind::WhenShapeChanges,
                                Rule::body => sbody = body(q),
                                _ => {}
                            }
                        }
                        shortcut = Some(Shortcut {
                            kind,
                            body: sbody,
                            span: sspan,
                        });
                    }
                    _ => {}
                }
            }
            Stmt::Residual {
                body: main,
                shortcut,
                span,
            }
        }
        Rule::concat_stmt => Stmt::Concat {
            branches: p
                .into_inner()
                .filter(|q| q.as_rule() == Rule::body)
                .map(|q| Branch {
                    span: span_of(&q),
                    body: body(q),
                })
                .collect(),
            span,
        },
        _ => Stmt::Call(call_like(p)),
    }
}

/// A `call_stmt` (args optional) or a `call` (args present).
fn call_like(p: Pair<Rule>) -> Call {
    let span = span_of(&p);
    let mut inner = p.into_inner();
    let name = inner.next().map(ident).unwrap_or_else(|| missing(span));
    match inner.next() {
        Some(a) => Call {
            name,
            args: args(a),
            parens: true,
            span,
        },
        None => Call {
            name,
            args: Vec::new(),
            parens: false,
            span,
        },
    }
}

fn call(p: Pair<Rule>) -> Call {
    call_like(p)
}

fn args(p: Pair<Rule>) -> Vec<Arg> {
    p.into_inner()
        .map(|a| {
            let span = span_of(&a);
            if a.as_rule() == Rule::named_arg {
                let mut inner = a.into_inner();
                let name = inner.next().map(ident);
                let value = inner.next().map(expr).unwrap_or_else(|| missing_expr(span));
                Arg { name, value, span }
            } else {
                Arg {
                    name: None,
                    value: expr(a),
                    span,
                }
            }
        })
        .collect()
}

fn expr(p: Pair<Rule>) -> Expr {
    let span = span_of(&p);
    match p.as_rule() {
        Rule::expr => {
            let mut inner = p.into_inner();
            let Some(first) = inner.next() else {
                return missing_expr(span);
            };
            let lhs = expr(first);
            match (inner.next(), inner.next()) {
                (Some(_op), Some(rhs)) => Expr {
                    kind: ExprKind::Range(Box::new(lhs), Box::new(expr(rhs))),
                    span,
                },
                _ => lhs,
            }
        }
        Rule::sum | Rule::product => {
            let mut inner = p.into_inner();
            let Some(first) = inner.next() else {
                return missing_expr(span);
            };
            let mut acc = expr(first);
            while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
                let op = match op.as_str() {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    _ => BinOp::Div,
                };
                let rhs = expr(rhs);
                let s = Span::new(acc.span.start, rhs.span.end);
                acc = Expr {
                    kind: ExprKind::Binary(op, Box::new(acc), Box::new(rhs)),
                    span: s,
                };
            }
            acc
        }
        Rule::unary => {
            let parts: Vec<Pair<Rule>> = p.into_inner().collect();
            let mut negs: Vec<usize> = Vec::new();
            let mut atom = None;
            for part in parts {
                if part.as_rule() == Rule::neg {
                    negs.push(part.as_span().start());
                } else {
                    atom = Some(part);
                }
            }
            let Some(atom) = atom else {
                return missing_expr(span);
            };
            let paren = atom.as_rule() == Rule::expr;
            let mut e = expr(atom);
            if paren {
                e = Expr {
                    kind: ExprKind::Paren(Box::new(e)),
                    span: Span::new(negs.last().map_or(span.start, |n| n + 1), span.end),
                };
            }
            for start in negs.into_iter().rev() {
                e = Expr {
                    span: Span::new(start, e.span.end),
                    kind: ExprKind::Neg(Box::new(e)),
                };
            }
            e
        }
        Rule::number => Expr {
            kind: ExprKind::Number {
                text: p.as_str().to_string(),
                value: number(p.as_str()),
            },
            span,
        },
        Rule::string => Expr {
            kind: ExprKind::Str(unquote(p.as_str())),
            span,
        },
        Rule::boolean => Expr {
            kind: ExprKind::Bool(p.as_str() == "true"),
            span,
        },
        Rule::ident => Expr {
            kind: ExprKind::Name(p.as_str().to_string()),
            span,
        },
        Rule::list => Expr {
            kind: ExprKind::List(p.into_inner().map(expr).collect()),
            span,
        },
        Rule::call => Expr {
            kind: ExprKind::Call(call(p)),
            span,
        },
        _ => missing_expr(span),
    }
}

fn number(text: &str) -> Number {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let is_float = clean.contains(['.', 'e', 'E']);
    if is_float {
        match clean.parse::<f64>() {
            Ok(f) if f.is_finite() => Number::Float(f),
            _ => Number::Overflow,
        }
    } else {
        clean.parse::<i64>().map_or(Number::Overflow, Number::Int)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_small_model_with_spans() {
        let src =
            "model m\ninput [1, 28, 28]\nclasses 10\nnet { flatten; dense(10, bias: false) }\n";
        let file = parse(src).expect("parses");
        assert_eq!(file.items.len(), 4);
        let Item::Net { body, .. } = &file.items[3] else {
            panic!("net expected")
        };
        let Stmt::Call(c) = &body[1] else {
            panic!("call expected")
        };
        assert_eq!(&src[c.span.start..c.span.end], "dense(10, bias: false)");
        assert_eq!(
            c.args[1].name.as_ref().map(|n| n.name.as_str()),
            Some("bias")
        );
    }

    #[test]
    fn ranges_and_arithmetic() {
        let file = parse("block b(n) { for i in 0..n * 2 { dense(-i + 1) } }").expect("parses");
        let Item::Block(b) = &file.items[0] else {
            panic!()
        };
        let Stmt::For { iter, .. } = &b.body[0] else {
            panic!()
        };
        assert!(matches!(iter.kind, ExprKind::Range(..)));
    }

    #[test]
    fn syntax_error_is_located() {
        let src = "model m\nnet { dense(10 }\n";
        let err = parse(src).expect_err("must fail");
        assert_eq!(&src[err.span.start..err.span.end], "}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!(
            "net {{ dense({}1{}) }}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let err = parse(&src).expect_err("too deep");
        assert!(err.message.contains("nesting"));
    }

    #[test]
    fn a_byte_order_mark_is_skipped_and_spans_keep_their_offsets() {
        let src = "\u{feff}model m\nnet { dense(2) }\n";
        let file = parse(src).expect("parses");
        let Item::Model { name, .. } = &file.items[0] else {
            panic!("model expected")
        };
        assert_eq!(&src[name.span.start..name.span.end], "m");
        // Only at the start.
        assert!(parse("model m\n\u{feff}net { dense(2) }").is_err());
    }

    #[test]
    fn big_integers_overflow_cleanly() {
        assert_eq!(number("99999999999999999999999"), Number::Overflow);
        assert_eq!(number("1_000"), Number::Int(1000));
        assert_eq!(number("1e-3"), Number::Float(1e-3));
    }
}

//! Canonical formatting (`pnnc fmt`). Keeps comments and single blank lines;
//! statements (and section entries) written on one line stay on one line,
//! as do `{ ... }` bodies written on one line.

use super::ast::*;
use super::parser::{SyntaxError, parse};

const INDENT: &str = "  ";

/// Format `src`; fails only on a syntax error.
pub fn format(src: &str) -> Result<String, SyntaxError> {
    let file = parse(src)?;
    let mut p = Printer {
        src,
        comments: comments(src),
        next: 0,
        out: String::new(),
        depth: 0,
        prev_end: 0,
        at_block_start: true,
    };
    for item in &file.items {
        p.item(item);
    }
    p.leading(src.len());
    let trimmed = p.out.trim_end().to_string();
    Ok(if trimmed.is_empty() {
        String::new()
    } else {
        trimmed + "\n"
    })
}

/// `(byte offset, text)` of every `# ...` comment outside strings.
fn comments(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_string = false;
    let mut start = None;
    for (i, c) in src.char_indices() {
        if let Some(s) = start {
            if c == '\n' {
                out.push((s, src[s..i].trim_end().to_string()));
                start = None;
            }
            continue;
        }
        match c {
            '"' => in_string = !in_string,
            '\n' => in_string = false,
            '#' if !in_string => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, src[s..].trim_end().to_string()));
    }
    out
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<(usize, String)>,
    next: usize,
    out: String,
    depth: usize,
    /// End of the last thing printed, in source bytes.
    prev_end: usize,
    /// No blank line is kept right after `{` or at the top of the file.
    at_block_start: bool,
}

impl Printer<'_> {
    fn blank_between(&self, a: usize, b: usize) -> bool {
        let gap = self.src.get(a.min(b)..b).unwrap_or("");
        gap.matches('\n').count() >= 2
            && gap
                .split('\n')
                .skip(1)
                .take(gap.matches('\n').count() - 1)
                .any(|l| l.trim().is_empty())
    }

    fn same_line(&self, a: usize, b: usize) -> bool {
        !self.src.get(a.min(b)..b).unwrap_or("\n").contains('\n')
    }

    fn newline_indent(&mut self) {
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        for _ in 0..self.depth {
            self.out.push_str(INDENT);
        }
    }

    /// Start a new line for something beginning at source offset `start`.
    fn begin_line(&mut self, start: usize) {
        self.leading(start);
        if !self.at_block_start && self.blank_between(self.prev_end, start) {
            self.blank_line();
        }
        self.newline_indent();
        self.at_block_start = false;
    }

    fn blank_line(&mut self) {
        if !self.out.ends_with('\n') {
            self.out.push('\n');
        }
        self.out.push('\n');
    }

    /// Print comments that come before `upto` on their own lines.
    fn leading(&mut self, upto: usize) {
        while let Some((off, text)) = self.comments.get(self.next).cloned() {
            if off >= upto {
                break;
            }
            self.next += 1;
            if !self.out.is_empty() && self.same_line(self.prev_end, off) && self.prev_end > 0 {
                // A trailing comment the node printer did not claim.
                self.out.push_str("  ");
                self.out.push_str(&text);
            } else {
                if !self.at_block_start && self.blank_between(self.prev_end, off) {
                    self.blank_line();
                }
                self.newline_indent();
                self.out.push_str(&text);
                self.at_block_start = false;
            }
            self.prev_end = off + text.len();
        }
    }

    /// Append a comment that sits on the same source line after `end`.
    fn trailing(&mut self, end: usize) {
        self.prev_end = self.prev_end.max(end);
        if let Some((off, text)) = self.comments.get(self.next).cloned()
            && off >= end
            && self.same_line(end, off)
        {
            self.next += 1;
            self.out.push_str("  ");
            self.out.push_str(&text);
            self.prev_end = off + text.len();
        }
    }

    fn has_comment_in(&self, span: Span) -> bool {
        let rest = &self.comments[self.next.min(self.comments.len())..];
        let first = rest.partition_point(|(o, _)| *o < span.start);
        rest.get(first).is_some_and(|(o, _)| *o < span.end)
    }

    fn item(&mut self, item: &Item) {
        let span = item.span();
        self.begin_line(span.start);
        match item {
            Item::Import { path, .. } => self.out.push_str(&format!("import \"{path}\"")),
            Item::Model { name, .. } => self.out.push_str(&format!("model {}", name.name)),
            Item::Input { shape, .. } => self.out.push_str(&format!("input {}", expr(shape))),
            Item::Classes { value, .. } => self.out.push_str(&format!("classes {}", expr(value))),
            Item::Act(a) => self
                .out
                .push_str(&format!("act {} = {}", a.name.name, call(&a.call))),
            Item::Block(b) => {
                let params: Vec<String> = b
                    .params
                    .iter()
                    .map(|p| match &p.default {
                        Some(d) => format!("{}: {}", p.name.name, expr(d)),
                        None => p.name.name.clone(),
                    })
                    .collect();
                self.out
                    .push_str(&format!("block {}({}) ", b.name.name, params.join(", ")));
                self.body(&b.body, span);
            }
            Item::Net { body, .. } => {
                self.out.push_str("net ");
                self.body(body, span);
            }
            Item::Train(s) => {
                self.out.push_str("train ");
                self.section(s);
            }
            Item::He(s) => {
                self.out.push_str("he ");
                self.section(s);
            }
        }
        self.trailing(span.end);
    }

    /// The `{ ... }` body of a construct spanning `outer`.
    fn body(&mut self, stmts: &[Stmt], outer: Span) {
        let open = body_open(self.src, outer, stmts);
        // An empty body (a concat's identity branch) stays `{}`.
        if stmts.is_empty() && !self.has_comment_in(Span::new(open, outer.end)) {
            self.out.push_str("{}");
            self.prev_end = outer.end;
            return;
        }
        let inline = !stmts.is_empty()
            && self.same_line(open, outer.end)
            && stmts.iter().all(|s| matches!(s, Stmt::Call(_)))
            && !self.has_comment_in(Span::new(open, outer.end));
        if inline {
            let parts: Vec<String> = stmts.iter().map(stmt_inline).collect();
            self.out.push_str(&format!("{{ {} }}", parts.join("; ")));
            self.prev_end = outer.end;
            return;
        }
        self.out.push('{');
        self.prev_end = open + 1;
        self.trailing(open + 1);
        self.depth += 1;
        self.at_block_start = true;
        let mut line_end: Option<usize> = None;
        for (i, s) in stmts.iter().enumerate() {
            let span = s.span();
            let join = matches!(s, Stmt::Call(_))
                && line_end.is_some_and(|e| self.same_line(e, span.start))
                && !self.comment_before(span.start);
            if join {
                self.out.push_str("; ");
            } else {
                self.begin_line(span.start);
            }
            self.stmt(s);
            self.prev_end = span.end;
            line_end = matches!(s, Stmt::Call(_)).then_some(span.end);
            if !self.next_is_joined(s, stmts.get(i + 1)) {
                self.trailing(span.end);
            }
        }
        let close = outer.end.saturating_sub(1);
        self.leading(close);
        self.depth -= 1;
        self.newline_indent();
        self.out.push('}');
        self.prev_end = outer.end;
        self.at_block_start = false;
    }

    /// Whether `next`, the statement after `s`, will be joined onto its line.
    fn next_is_joined(&self, s: &Stmt, next: Option<&Stmt>) -> bool {
        match (s, next) {
            (Stmt::Call(_), Some(n @ Stmt::Call(_))) => {
                self.same_line(s.span().end, n.span().start) && !self.comment_before(n.span().start)
            }
            _ => false,
        }
    }

    /// Whether a comment not yet printed starts before `offset` (comments
    /// are in source order, so the next one decides).
    fn comment_before(&self, offset: usize) -> bool {
        self.comments
            .get(self.next)
            .is_some_and(|(o, _)| *o < offset)
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Call(c) => self.out.push_str(&call(c)),
            Stmt::For {
                var,
                iter,
                body,
                span,
            } => {
                self.out
                    .push_str(&format!("for {} in {} ", var.name, expr(iter)));
                self.body(body, *span);
            }
            Stmt::Residual {
                body,
                shortcut,
                span,
            } => {
                self.out.push_str("residual ");
                let body_end = shortcut.as_ref().map_or(span.end, |sc| sc.span.start);
                let body_span = Span::new(span.start, trim_end(self.src, body_end));
                self.body(body, body_span);
                if let Some(sc) = shortcut {
                    self.out.push_str(match sc.kind {
                        ShortcutKind::Always => " shortcut ",
                        ShortcutKind::WhenShapeChanges => " project ",
                    });
                    self.body(&sc.body, sc.span);
                }
            }
            Stmt::Concat { branches, .. } => {
                self.out.push_str("concat");
                for b in branches {
                    self.out.push(' ');
                    self.body(&b.body, b.span);
                }
            }
        }
    }

    fn section(&mut self, s: &Section) {
        let open = self
            .src
            .get(s.span.start..s.span.end)
            .and_then(|t| t.find('{'))
            .map_or(s.span.start, |i| s.span.start + i);
        let inline =
            self.same_line(open, s.span.end) && !self.has_comment_in(Span::new(open, s.span.end));
        if inline {
            if s.entries.is_empty() {
                self.out.push_str("{}");
            } else {
                let parts: Vec<String> = s.entries.iter().map(entry).collect();
                self.out.push_str(&format!("{{ {} }}", parts.join("  ")));
            }
            self.prev_end = s.span.end;
            return;
        }
        self.out.push('{');
        self.prev_end = open + 1;
        self.trailing(open + 1);
        self.depth += 1;
        self.at_block_start = true;
        for (i, e) in s.entries.iter().enumerate() {
            let join = i > 0
                && self.same_line(s.entries[i - 1].span.end, e.span.start)
                && !self.comment_before(e.span.start);
            if join {
                self.out.push_str("  ");
            } else {
                self.begin_line(e.span.start);
            }
            self.out.push_str(&entry(e));
            self.prev_end = e.span.end;
            let next_joined = s.entries.get(i + 1).is_some_and(|n| {
                self.same_line(e.span.end, n.span.start) && !self.comment_before(n.span.start)
            });
            if !next_joined {
                self.trailing(e.span.end);
            }
        }
        self.leading(s.span.end.saturating_sub(1));
        self.depth -= 1;
        self.newline_indent();
        self.out.push('}');
        self.prev_end = s.span.end;
    }
}

/// Offset of the `{` that opens a body inside `outer` (the first `{` after
/// the header, before the first statement).
fn body_open(src: &str, outer: Span, stmts: &[Stmt]) -> usize {
    let limit = stmts.first().map_or(outer.end, |s| s.span().start);
    let text = src.get(outer.start..limit).unwrap_or("");
    // The last `{` before the first statement: headers may contain `[`/`(` but not `{`.
    text.rfind('{').map_or(outer.start, |i| outer.start + i)
}

/// End of the text before `end`, skipping trailing whitespace.
fn trim_end(src: &str, end: usize) -> usize {
    let t = src.get(..end).unwrap_or("");
    t.trim_end().len()
}

fn stmt_inline(s: &Stmt) -> String {
    match s {
        Stmt::Call(c) => call(c),
        _ => String::new(),
    }
}

fn entry(e: &Entry) -> String {
    format!("{}: {}", e.key.name, expr(&e.value))
}

fn call(c: &Call) -> String {
    if !c.parens {
        return c.name.name.clone();
    }
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| match &a.name {
            Some(n) => format!("{}: {}", n.name, expr(&a.value)),
            None => expr(&a.value),
        })
        .collect();
    format!("{}({})", c.name.name, args.join(", "))
}

fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Number { text, .. } => text.clone(),
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Name(n) => n.clone(),
        ExprKind::List(items) => format!(
            "[{}]",
            items.iter().map(expr).collect::<Vec<_>>().join(", ")
        ),
        ExprKind::Range(a, b) => format!("{}..{}", expr(a), expr(b)),
        ExprKind::Call(c) => call(c),
        ExprKind::Neg(x) => format!("-{}", expr(x)),
        ExprKind::Binary(op, a, b) => format!("{} {} {}", expr(a), op.symbol(), expr(b)),
        ExprKind::Paren(x) => format!("({})", expr(x)),
    }
}

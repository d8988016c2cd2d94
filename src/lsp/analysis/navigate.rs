//! Go to definition (blocks, acts, imports) and document symbols.

use super::{Analysis, FileRange};
use crate::syntax::{Call, Expr, ExprKind, Item, Section, Span, Stmt};
use lsp_types::{DocumentSymbol, Position, Range, SymbolKind};

impl Analysis {
    /// Where the name (or import) at `pos` is defined.
    pub fn goto_definition(&self, pos: Position) -> Option<FileRange> {
        let offset = self.offset(pos);
        let ast = self.ast()?;
        for item in &ast.items {
            if let Item::Import { span, .. } = item
                && inside(*span, offset)
            {
                return self.import_target(*span);
            }
        }
        let name = self.name_at(offset)?;
        let def = self.definition(&name)?;
        Some(self.file_range(def.file, def.name_span))
    }

    /// The file an `import` of this document read (the first file it led to).
    fn import_target(&self, import: Span) -> Option<FileRange> {
        let id = self
            .checked
            .imported_by
            .iter()
            .filter(|(_, s)| **s == import)
            .map(|(id, _)| *id)
            .min()?;
        Some(FileRange {
            path: self.checked.sources.path(id).to_string(),
            range: Range::default(),
        })
    }

    /// The name written at `offset`: a statement's name, or a bare name
    /// among its arguments (`act: p`) or in a block parameter's default.
    fn name_at(&self, offset: usize) -> Option<String> {
        if let Some(call) = self.call_at(offset) {
            if inside(call.name.span, offset) {
                return Some(call.name.name.clone());
            }
            return call_arg_name(call, offset);
        }
        let ast = self.ast()?;
        ast.items.iter().find_map(|item| match item {
            Item::Block(b) => b
                .params
                .iter()
                .find_map(|p| p.default.as_ref().and_then(|d| expr_name(d, offset))),
            Item::Act(a) if inside(a.name.span, offset) => Some(a.name.name.clone()),
            _ => None,
        })
    }

    /// The outline: model, input, classes, imports, acts, blocks, net (with
    /// its statements), train and he (with their settings).
    pub fn symbols(&self) -> Vec<DocumentSymbol> {
        let Some(ast) = self.ast() else {
            return Vec::new();
        };
        ast.items
            .iter()
            .map(|item| self.item_symbol(item))
            .collect()
    }

    fn item_symbol(&self, item: &Item) -> DocumentSymbol {
        let span = item.span();
        let (name, kind, selection, children) = match item {
            Item::Import { path, .. } => {
                (format!("import \"{path}\""), SymbolKind::FILE, span, None)
            }
            Item::Model { name, .. } => (
                format!("model {}", name.name),
                SymbolKind::MODULE,
                name.span,
                None,
            ),
            Item::Input { .. } => ("input".into(), SymbolKind::FIELD, span, None),
            Item::Classes { .. } => ("classes".into(), SymbolKind::FIELD, span, None),
            Item::Act(a) => (a.name.name.clone(), SymbolKind::FUNCTION, a.name.span, None),
            Item::Block(b) => (
                b.name.name.clone(),
                SymbolKind::CLASS,
                b.name.span,
                Some(self.stmt_symbols(&b.body)),
            ),
            Item::Net { body, .. } => (
                "net".into(),
                SymbolKind::NAMESPACE,
                span,
                Some(self.stmt_symbols(body)),
            ),
            Item::Train(s) => (
                "train".into(),
                SymbolKind::OBJECT,
                span,
                Some(self.section(s)),
            ),
            Item::He(s) => ("he".into(), SymbolKind::OBJECT, span, Some(self.section(s))),
        };
        self.symbol(name, kind, span, selection, self.detail(item), children)
    }

    /// The text of an item's head (`input [3, 32, 32]`, `poly(...)`), one line.
    fn detail(&self, item: &Item) -> Option<String> {
        let span = match item {
            Item::Input { shape, .. } => shape.span,
            Item::Classes { value, .. } => value.span,
            Item::Act(a) => a.call.span,
            Item::Block(b) => return self.signature(&b.name.name),
            _ => return None,
        };
        let text = self.text().get(span.start..span.end)?;
        Some(text.lines().next().unwrap_or("").to_string())
    }

    fn stmt_symbols(&self, stmts: &[Stmt]) -> Vec<DocumentSymbol> {
        stmts
            .iter()
            .map(|s| match s {
                Stmt::Call(c) => self.call_symbol(c),
                Stmt::For {
                    var,
                    iter,
                    body,
                    span,
                } => {
                    let iter = self
                        .text()
                        .get(iter.span.start..iter.span.end)
                        .unwrap_or("");
                    self.symbol(
                        format!("for {} in {iter}", var.name),
                        SymbolKind::ARRAY,
                        *span,
                        var.span,
                        None,
                        Some(self.stmt_symbols(body)),
                    )
                }
                Stmt::Residual {
                    body,
                    shortcut,
                    span,
                } => {
                    let mut children = self.stmt_symbols(body);
                    if let Some(sc) = shortcut {
                        children.extend(self.stmt_symbols(&sc.body));
                    }
                    self.symbol(
                        "residual".into(),
                        SymbolKind::OPERATOR,
                        *span,
                        *span,
                        None,
                        Some(children),
                    )
                }
                Stmt::Concat { branches, span } => {
                    let children = branches
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            self.symbol(
                                format!("branch {}", i + 1),
                                SymbolKind::ARRAY,
                                b.span,
                                b.span,
                                None,
                                Some(self.stmt_symbols(&b.body)),
                            )
                        })
                        .collect();
                    self.symbol(
                        "concat".into(),
                        SymbolKind::OPERATOR,
                        *span,
                        *span,
                        None,
                        Some(children),
                    )
                }
            })
            .collect()
    }

    fn call_symbol(&self, c: &Call) -> DocumentSymbol {
        let written = self.text().get(c.span.start..c.span.end).unwrap_or("");
        self.symbol(
            c.name.name.clone(),
            SymbolKind::METHOD,
            c.span,
            c.name.span,
            Some(written.to_string()),
            None,
        )
    }

    fn section(&self, s: &Section) -> Vec<DocumentSymbol> {
        s.entries
            .iter()
            .map(|e| {
                let value = self.text().get(e.value.span.start..e.value.span.end);
                self.symbol(
                    e.key.name.clone(),
                    SymbolKind::PROPERTY,
                    e.span,
                    e.key.span,
                    value.map(String::from),
                    None,
                )
            })
            .collect()
    }

    #[allow(deprecated)] // `deprecated` is a required field of the struct
    fn symbol(
        &self,
        name: String,
        kind: SymbolKind,
        span: Span,
        selection: Span,
        detail: Option<String>,
        children: Option<Vec<DocumentSymbol>>,
    ) -> DocumentSymbol {
        DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: self.range(0, span),
            selection_range: self.range(0, selection),
            children,
        }
    }
}

fn inside(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

/// A bare name among `call`'s argument values at `offset`.
fn call_arg_name(call: &Call, offset: usize) -> Option<String> {
    call.args.iter().find_map(|a| expr_name(&a.value, offset))
}

/// The bare name at `offset` inside `e`.
fn expr_name(e: &Expr, offset: usize) -> Option<String> {
    if !inside(e.span, offset) {
        return None;
    }
    match &e.kind {
        ExprKind::Name(n) => Some(n.clone()),
        ExprKind::List(items) => items.iter().find_map(|i| expr_name(i, offset)),
        ExprKind::Paren(x) | ExprKind::Neg(x) => expr_name(x, offset),
        ExprKind::Binary(_, a, b) | ExprKind::Range(a, b) => {
            expr_name(a, offset).or_else(|| expr_name(b, offset))
        }
        ExprKind::Call(c) => call_arg_name(c, offset),
        _ => None,
    }
}

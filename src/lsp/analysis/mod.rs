//! The language server's pure core: one document's text (and the files it
//! imports, read through [`Files`]) in; diagnostics, hovers, definitions,
//! symbols, completions, formatting and code actions out, in LSP positions
//! (lines and UTF-16 code units). No I/O of its own and no protocol.

mod actions;
mod complete;
mod hover;
mod navigate;

pub use actions::Action;

use crate::check::{self, Checked, FileId, Files, Severity, SourceFile};
use crate::ir::Op;
use crate::syntax::{self, Call, Span, Stmt};
use lsp_types::{DiagnosticSeverity, NumberOrString, Position, Range, TextEdit};

/// One checked document.
pub struct Analysis {
    /// The document's path (imports resolve relative to its folder).
    pub path: String,
    pub checked: Checked,
}

/// A range in some file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRange {
    pub path: String,
    pub range: Range,
}

/// A diagnostic to show in one file's document, with the places it refers to.
#[derive(Debug, Clone, PartialEq)]
pub struct FileDiagnostic {
    /// The document it belongs to: the analysed one or a file it imports.
    pub path: String,
    /// Without `related_information` (the server turns `related` into it).
    pub diagnostic: lsp_types::Diagnostic,
    pub related: Vec<(FileRange, String)>,
}

/// An edit of some file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEdit {
    pub path: String,
    pub edit: TextEdit,
}

/// The LSP range of a byte span.
pub fn range_of(file: &SourceFile, span: Span) -> Range {
    let start = position_of(file, span.start);
    let end = position_of(file, span.end.max(span.start));
    Range { start, end }
}

/// The LSP position of a byte offset.
pub fn position_of(file: &SourceFile, offset: usize) -> Position {
    let (line, character) = file.line_utf16(offset);
    Position {
        line: line as u32,
        character: character as u32,
    }
}

/// The byte offset of an LSP position (clamped to the text).
pub fn offset_of(file: &SourceFile, pos: Position) -> usize {
    file.offset_of_utf16(pos.line as usize, pos.character as usize)
}

impl Analysis {
    /// Check `text` as the document at `path`.
    pub fn new(path: &str, text: &str, files: &dyn Files) -> Analysis {
        Analysis {
            path: path.to_string(),
            checked: check::check_source_in(path, text, files),
        }
    }

    pub fn text(&self) -> &str {
        self.checked.sources.text(0)
    }

    fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.checked.sources.files.get(id)
    }

    fn main(&self) -> &SourceFile {
        &self.checked.sources.files[0]
    }

    /// The byte offset in the document of an LSP position.
    pub fn offset(&self, pos: Position) -> usize {
        offset_of(self.main(), pos)
    }

    /// The LSP range of a span in file `id` (empty at the start when unknown).
    pub fn range(&self, id: FileId, span: Span) -> Range {
        self.file(id)
            .map_or_else(Range::default, |f| range_of(f, span))
    }

    fn file_range(&self, id: FileId, span: Span) -> FileRange {
        FileRange {
            path: self.checked.sources.path(id).to_string(),
            range: self.range(id, span),
        }
    }

    /// The syntax tree of the document, when it parsed.
    fn ast(&self) -> Option<&syntax::File> {
        self.checked
            .syntax
            .iter()
            .find(|(id, _)| *id == 0)
            .map(|(_, f)| f)
    }

    /// The diagnostics of `pnnc check`, for this document and for the files
    /// it imports: one located in an imported file is shown in that file and
    /// also at the `import` in this document that leads to it.
    pub fn diagnostics(&self) -> Vec<FileDiagnostic> {
        let mut out = Vec::new();
        for d in &self.checked.diagnostics {
            let mut related = vec![(
                self.file_range(d.primary.file, d.primary.span),
                d.primary.message.clone(),
            )];
            related.extend(
                d.secondary
                    .iter()
                    .map(|l| (self.file_range(l.file, l.span), l.message.clone())),
            );
            let here = self.range(d.primary.file, d.primary.span);
            if d.primary.file != 0 {
                out.push(FileDiagnostic {
                    path: self.checked.sources.path(d.primary.file).to_string(),
                    diagnostic: lsp_diagnostic(d, here, ""),
                    related: related.clone(),
                });
                if let Some(import) = self.checked.imported_by.get(&d.primary.file) {
                    let prefix = format!("in {}: ", self.checked.sources.path(d.primary.file));
                    out.push(FileDiagnostic {
                        path: self.path.clone(),
                        diagnostic: lsp_diagnostic(d, self.range(0, *import), &prefix),
                        related,
                    });
                }
                continue;
            }
            out.push(FileDiagnostic {
                path: self.path.clone(),
                diagnostic: lsp_diagnostic(d, here, ""),
                related,
            });
        }
        out
    }

    /// Paths of the files this document imports (read or not).
    pub fn imported_paths(&self) -> Vec<String> {
        self.checked.sources.files[1..]
            .iter()
            .map(|f| f.path.clone())
            .collect()
    }

    /// `pnnc fmt` as one edit of the whole document; None on a syntax error,
    /// empty when already formatted.
    pub fn format(&self) -> Option<Vec<TextEdit>> {
        let formatted = syntax::format(self.text()).ok()?;
        if formatted == self.text() {
            return Some(Vec::new());
        }
        let end = position_of(self.main(), self.text().len());
        Some(vec![TextEdit {
            range: Range {
                start: Position::default(),
                end,
            },
            new_text: formatted,
        }])
    }

    /// Every op of the expanded network, residual bodies included.
    fn ops(&self) -> Vec<&Op> {
        fn walk<'a>(ops: &'a [Op], out: &mut Vec<&'a Op>) {
            for op in ops {
                out.push(op);
                for seq in op.kind.nested() {
                    walk(seq, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.checked.net(), &mut out);
        out
    }

    /// The innermost statement call of the document containing `offset`.
    fn call_at(&self, offset: usize) -> Option<&Call> {
        let ast = self.ast()?;
        ast.items.iter().find_map(|item| match item {
            syntax::Item::Net { body, .. } => call_in(body, offset),
            syntax::Item::Block(b) => call_in(&b.body, offset),
            _ => None,
        })
    }

    /// The definition named `name`, if any.
    fn definition(&self, name: &str) -> Option<&check::Definition> {
        self.checked.definitions.iter().find(|d| d.name == name)
    }
}

/// The innermost call statement in `stmts` whose span contains `offset`.
fn call_in(stmts: &[Stmt], offset: usize) -> Option<&Call> {
    let inside = |s: Span| s.start <= offset && offset <= s.end;
    stmts.iter().find_map(|s| match s {
        Stmt::Call(c) if inside(c.span) => Some(c),
        Stmt::For { body, span, .. } if inside(*span) => call_in(body, offset),
        Stmt::Residual {
            body,
            shortcut,
            span,
        } if inside(*span) => call_in(body, offset)
            .or_else(|| shortcut.as_ref().and_then(|sc| call_in(&sc.body, offset))),
        Stmt::Concat { branches, span } if inside(*span) => {
            branches.iter().find_map(|b| call_in(&b.body, offset))
        }
        _ => None,
    })
}

/// A checker diagnostic as LSP's: same code, message and help.
fn lsp_diagnostic(d: &check::Diagnostic, range: Range, prefix: &str) -> lsp_types::Diagnostic {
    let mut message = format!("{prefix}{}", d.message);
    if !d.help.is_empty() {
        message.push_str("\nhelp: ");
        message.push_str(&d.help);
    }
    lsp_types::Diagnostic {
        range,
        severity: Some(match d.severity() {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        source: Some("pnnc".to_string()),
        message,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

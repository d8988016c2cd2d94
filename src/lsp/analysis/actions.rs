//! Code actions: the checker's fixes (a polynomial activation for a non-HE
//! one, `avgpool` for max-pooling, a misspelt name, enough fit points), and
//! a degree lowered to fit the depth budget (found by re-checking).

use super::{Analysis, FileEdit};
use crate::check::{self, Code, DefinitionKind, Files, LoadError};
use crate::ir::levels;
use crate::syntax::{ExprKind, Item, Span};
use lsp_types::{Range, TextEdit};
use std::path::{Path, PathBuf};

/// A code action: edits, and the diagnostic it resolves.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub title: String,
    /// The diagnostic as published for this document.
    pub diagnostic: Option<lsp_types::Diagnostic>,
    pub edits: Vec<FileEdit>,
    pub preferred: bool,
}

impl Analysis {
    /// Actions for the diagnostics of this document that touch `range`.
    /// `files` reads imports when a candidate fix is re-checked.
    pub fn code_actions(&self, range: Range, files: &dyn Files) -> Vec<Action> {
        let mut actions = Vec::new();
        for (i, d) in self.checked.diagnostics.iter().enumerate() {
            let at = if d.primary.file == 0 {
                self.range(0, d.primary.span)
            } else {
                match self.checked.imported_by.get(&d.primary.file) {
                    Some(import) => self.range(0, *import),
                    None => continue,
                }
            };
            if !touches(at, range) {
                continue;
            }
            let lsp = self.lsp_diagnostic_of(i);
            for fix in &d.fixes {
                actions.push(Action {
                    title: fix.title.clone(),
                    diagnostic: lsp.clone(),
                    edits: fix.edits.iter().map(|e| self.file_edit(e)).collect(),
                    preferred: d.fixes.len() == 1,
                });
            }
            if d.code == Code::DepthBudget {
                actions.extend(self.lower_degrees(files).into_iter().map(|mut a| {
                    a.diagnostic = lsp.clone();
                    a
                }));
            }
        }
        actions
    }

    /// The LSP form of checker diagnostic `i`, as shown in this document.
    fn lsp_diagnostic_of(&self, i: usize) -> Option<lsp_types::Diagnostic> {
        let d = &self.checked.diagnostics[i];
        let path = &self.path;
        self.diagnostics()
            .into_iter()
            .filter(|f| &f.path == path)
            .map(|f| f.diagnostic)
            .find(|l| {
                l.code == Some(lsp_types::NumberOrString::String(d.code.as_str().into()))
                    && l.message.contains(&d.message)
            })
    }

    fn file_edit(&self, e: &check::Edit) -> FileEdit {
        FileEdit {
            path: self.checked.sources.path(e.file).to_string(),
            edit: TextEdit {
                range: self.range(e.file, e.span),
                new_text: e.text.clone(),
            },
        }
    }

    /// For each activation used, the highest degree with fewer levels that
    /// brings the model within its depth budget, if one does.
    fn lower_degrees(&self, files: &dyn Files) -> Vec<Action> {
        let Some(budget) = self.checked.depth_budget else {
            return Vec::new();
        };
        let mut acts: Vec<(&str, u32)> = self
            .checked
            .definitions
            .iter()
            .filter_map(|d| match &d.kind {
                DefinitionKind::Act(Some(a)) if self.uses(&d.name) > 0 => {
                    Some((d.name.as_str(), a.degree))
                }
                _ => None,
            })
            .collect();
        acts.sort_by_key(|(name, degree)| (std::cmp::Reverse(*degree), *name));
        acts.into_iter()
            .filter_map(|(name, degree)| self.lower_degree(name, degree, budget, files))
            .collect()
    }

    /// The largest degree below `degree` (each costs fewer levels) with
    /// which the model checks within `budget`.
    fn lower_degree(
        &self,
        name: &str,
        degree: u32,
        budget: u32,
        files: &dyn Files,
    ) -> Option<Action> {
        let def = self.definition(name)?;
        let (file, value) = self.degree_span(def.file, &def.name)?;
        let path = self.checked.sources.path(file).to_string();
        let text = self.checked.sources.text(file);
        // Degree 2^k - 1 is the largest costing k levels.
        for k in (1..levels::poly(degree)).rev() {
            let candidate = (1u32 << k) - 1;
            let edited = format!("{}{candidate}{}", &text[..value.start], &text[value.end..]);
            let checked = if file == 0 {
                check::check_source_in(&self.path, &edited, files)
            } else {
                let overlay = Edited {
                    base: files,
                    path: PathBuf::from(&path),
                    text: edited,
                };
                check::check_source_in(&self.path, self.text(), &overlay)
            };
            let depth = checked.net().iter().map(|o| o.level).max().unwrap_or(0);
            if depth <= budget {
                return Some(Action {
                    title: format!(
                        "Lower the degree of `{name}` from {degree} to {candidate} (depth {depth}, budget {budget})"
                    ),
                    diagnostic: None,
                    edits: vec![FileEdit {
                        path,
                        edit: TextEdit {
                            range: self.range(file, value),
                            new_text: candidate.to_string(),
                        },
                    }],
                    preferred: false,
                });
            }
        }
        None
    }

    /// The span of the `degree` value in the act `name` defined in `file`.
    fn degree_span(&self, file: check::FileId, name: &str) -> Option<(check::FileId, Span)> {
        let ast = self
            .checked
            .syntax
            .iter()
            .find(|(id, _)| *id == file)
            .map(|(_, f)| f)?;
        ast.items.iter().find_map(|item| match item {
            Item::Act(a) if a.name.name == name => {
                let arg = a
                    .call
                    .args
                    .iter()
                    .find(|x| x.name.as_ref().is_some_and(|n| n.name == "degree"))
                    .or_else(|| a.call.args.first().filter(|x| x.name.is_none()))?;
                matches!(arg.value.kind, ExprKind::Number { .. }).then_some((file, arg.value.span))
            }
            _ => None,
        })
    }
}

/// Whether two ranges overlap or touch.
fn touches(a: Range, b: Range) -> bool {
    a.start <= b.end && b.start <= a.end
}

/// `base` with one file's text replaced (a candidate fix in an imported file).
struct Edited<'a> {
    base: &'a dyn Files,
    path: PathBuf,
    text: String,
}

impl Files for Edited<'_> {
    fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf> {
        self.base.canonicalize(path)
    }

    fn read(&self, path: &Path) -> Result<String, LoadError> {
        if path == self.path {
            return Ok(self.text.clone());
        }
        self.base.read(path)
    }
}

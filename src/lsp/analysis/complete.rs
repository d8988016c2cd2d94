//! Completion: section keywords at the top level, layer and defined names
//! in `net` and blocks, keyword arguments inside a call's parentheses, and
//! settings inside `train` and `he`.

use super::Analysis;
use crate::check::{DefinitionKind, config, net};
use lsp_types::{CompletionItem, CompletionItemKind, Position};

const SECTIONS: &[&str] = &[
    "model", "input", "classes", "import", "act", "block", "net", "train", "he",
];

/// Where the cursor is, as far as completion cares.
#[derive(Debug, PartialEq)]
enum Context {
    TopLevel,
    /// Inside `net { }`, a block body, a loop or a residual.
    Layers,
    /// Inside `train { }` or `he { }`.
    Settings(&'static [&'static str]),
    /// Inside the parentheses of a call to `callee`.
    Arguments(String),
}

impl Analysis {
    pub fn completions(&self, pos: Position) -> Vec<CompletionItem> {
        let offset = self.offset(pos);
        let before = self.text().get(..offset).unwrap_or("");
        match context(before) {
            Context::TopLevel => SECTIONS
                .iter()
                .map(|k| item(k, CompletionItemKind::KEYWORD, None))
                .collect(),
            Context::Settings(keys) => keys
                .iter()
                .map(|k| item_inserting(k, &format!("{k}: "), CompletionItemKind::PROPERTY))
                .collect(),
            Context::Arguments(callee) => self.arguments(&callee),
            Context::Layers => self.layers(),
        }
    }

    /// Built-in layers, defined activations and blocks, `for`, `residual` and `concat`.
    fn layers(&self) -> Vec<CompletionItem> {
        let mut items: Vec<CompletionItem> = net::BUILTINS
            .iter()
            .map(|b| {
                let params: Vec<&str> = net::builtin_params(b).iter().map(|p| p.name).collect();
                item(
                    b,
                    CompletionItemKind::FUNCTION,
                    Some(format!("{b}({})", params.join(", "))),
                )
            })
            .collect();
        for d in &self.checked.definitions {
            let (kind, detail) = match &d.kind {
                DefinitionKind::Act(Some(a)) => (
                    CompletionItemKind::VARIABLE,
                    format!("poly degree {}, range {}", a.degree, a.range),
                ),
                DefinitionKind::Act(None) => (CompletionItemKind::VARIABLE, "act".into()),
                DefinitionKind::Block { .. } => (
                    CompletionItemKind::MODULE,
                    self.signature(&d.name).unwrap_or_default(),
                ),
            };
            items.push(item(&d.name, kind, Some(detail)));
        }
        for k in ["for", "residual", "concat"] {
            items.push(item(k, CompletionItemKind::KEYWORD, None));
        }
        items
    }

    /// Keyword arguments of a built-in layer, `poly`, or a block.
    fn arguments(&self, callee: &str) -> Vec<CompletionItem> {
        let names: Vec<String> = if callee == "poly" {
            // A fitted polynomial's arguments, then a given one's list.
            config::ACT_PARAMS
                .iter()
                .map(|p| p.name.to_string())
                .chain(["coeffs".to_string()])
                .collect()
        } else if net::BUILTINS.contains(&callee) {
            net::builtin_params(callee)
                .iter()
                .map(|p| p.name.to_string())
                .collect()
        } else {
            match self.definition(callee).map(|d| &d.kind) {
                Some(DefinitionKind::Block { params }) => {
                    params.iter().map(|(p, _)| p.clone()).collect()
                }
                _ => Vec::new(),
            }
        };
        names
            .iter()
            .map(|n| item_inserting(n, &format!("{n}: "), CompletionItemKind::FIELD))
            .collect()
    }
}

fn item(label: &str, kind: CompletionItemKind, detail: Option<String>) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail,
        ..Default::default()
    }
}

fn item_inserting(label: &str, insert: &str, kind: CompletionItemKind) -> CompletionItem {
    CompletionItem {
        insert_text: Some(insert.to_string()),
        ..item(label, kind, None)
    }
}

/// The context of the end of `before` (the text up to the cursor).
fn context(before: &str) -> Context {
    let code = without_comments_and_strings(before);
    let bytes = code.as_bytes();
    // Walk back to the innermost unclosed bracket.
    let mut depth = 0usize;
    for i in (0..bytes.len()).rev() {
        match bytes[i] {
            b')' | b']' | b'}' => depth += 1,
            b'(' | b'[' | b'{' if depth > 0 => depth -= 1,
            b'[' => return Context::Layers,
            b'(' => return Context::Arguments(word_before(&code[..i]).to_string()),
            b'{' => {
                return match last_keyword(&code[..i]) {
                    Some("train") => Context::Settings(config::TRAIN_KEYS),
                    Some("he") => Context::Settings(config::HE_KEYS),
                    _ => Context::Layers,
                };
            }
            _ => {}
        }
    }
    Context::TopLevel
}

/// The identifier right before `text`'s end (spaces skipped).
fn word_before(text: &str) -> &str {
    let t = text.trim_end();
    let start = t
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map_or(0, |i| i + 1);
    &t[start..]
}

/// The first word of the statement that opens a `{` at the end of `text`:
/// `net`, `train`, `he`, `block`, `for`, `residual`, ...
fn last_keyword(text: &str) -> Option<&str> {
    let head_start = text.rfind(['{', '}', ';', '\n']).map_or(0, |i| i + 1);
    text[head_start..].split_whitespace().next()
}

/// `text` with comments and string contents blanked (same length), so that
/// brackets inside them do not count.
fn without_comments_and_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut comment, mut string) = (false, false);
    for c in text.chars() {
        let blank = match c {
            '\n' => {
                comment = false;
                string = false;
                false
            }
            _ if comment => true,
            '"' => {
                string = !string;
                false
            }
            _ if string => true,
            '#' => {
                comment = true;
                true
            }
            _ => false,
        };
        if blank {
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts() {
        assert_eq!(context("model m\n"), Context::TopLevel);
        assert_eq!(context("net {\n  conv(16, 3); "), Context::Layers);
        assert_eq!(
            context("net { conv(16, 3, str"),
            Context::Arguments("conv".into())
        );
        assert_eq!(
            context("act p = poly(degree: 2, "),
            Context::Arguments("poly".into())
        );
        assert_eq!(
            context("train {\n  epochs: 3\n  "),
            Context::Settings(config::TRAIN_KEYS)
        );
        assert_eq!(context("he { "), Context::Settings(config::HE_KEYS));
        assert_eq!(
            context("block b(n) { residual { dense(n) } project { "),
            Context::Layers
        );
        // Brackets in comments and strings do not count.
        assert_eq!(context("net { dense(2) # (\n  "), Context::Layers);
        assert_eq!(context("import \"a{b.pnn\"\n"), Context::TopLevel);
    }
}

//! Analysis tests on in-memory files. `$0` in a fixture marks the cursor.

use super::*;
use crate::check::{Files, LoadError};
use lsp_types::HoverContents;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Files held in memory (no disk): what the analysis is given as imports.
#[derive(Default)]
struct Mem(HashMap<PathBuf, String>);

impl Files for Mem {
    fn canonicalize(&self, path: &Path) -> std::io::Result<PathBuf> {
        let clean: PathBuf = path.components().collect();
        if self.0.contains_key(&clean) {
            Ok(clean)
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not found",
            ))
        }
    }

    fn read(&self, path: &Path) -> Result<String, LoadError> {
        let clean: PathBuf = path.components().collect();
        self.0.get(&clean).cloned().ok_or_else(|| LoadError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "not found"),
        })
    }
}

const MAIN: &str = "/m/main.pnn";

/// Analyse `main` (with `$0` removed) among `others`; the cursor position.
fn fixture(main: &str, others: &[(&str, &str)]) -> (Analysis, Position, Mem) {
    let offset = main.find("$0");
    let text = main.replace("$0", "");
    let mut mem = Mem::default();
    for (p, t) in others {
        mem.0.insert(PathBuf::from(p), t.to_string());
    }
    mem.0.insert(PathBuf::from(MAIN), text.clone());
    let analysis = Analysis::new(MAIN, &text, &mem);
    let pos = offset.map_or(Position::default(), |o| position_of(analysis.main(), o));
    (analysis, pos, mem)
}

fn hover_text(a: &Analysis, pos: Position) -> String {
    match a.hover(pos).map(|h| h.contents) {
        Some(HoverContents::Markup(m)) => m.value,
        other => format!("{other:?}"),
    }
}

const LIB: &str = "\
# Shared blocks.
block basic(cout, stride: 1, act: p) {
  residual {
    conv(cout, 3, stride: stride, padding: 1); act; batchnorm
  } project {
    conv(cout, 1, stride: stride); batchnorm
  }
}
";

const MODEL: &str = "\
import \"lib.pnn\"
model m
input [3, 8, 8]
classes 10
act p = poly(degree: 8, range: 35)
net {
  conv(16, 3, padding: 1); p; batchnorm
  basic(32, stride: 2)
  global_avgpool
  dense(classes)
}
";

fn model_with_cursor(marker_before: &str) -> String {
    let at = MODEL.find(marker_before).expect("marker");
    format!("{}$0{}", &MODEL[..at], &MODEL[at..])
}

#[test]
fn diagnostics_are_the_checkers_for_every_case() {
    for dir in ["tests/ui", "std-models", "examples"] {
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "pnn") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            let name = path.display().to_string();
            let checked = check::check_source(&name, &text);
            let analysis = Analysis::new(&name, &text, &check::Disk);
            let mine: Vec<_> = analysis
                .diagnostics()
                .into_iter()
                .filter(|d| d.path == name)
                .collect();
            // One per diagnostic of the file, plus none lost from imports.
            assert_eq!(mine.len(), checked.diagnostics.len(), "{name}");
            for (d, c) in mine.iter().zip(&checked.diagnostics) {
                assert_eq!(
                    d.diagnostic.code,
                    Some(NumberOrString::String(c.code.as_str().into())),
                    "{name}"
                );
                assert!(d.diagnostic.message.contains(&c.message), "{name}");
                assert!(d.diagnostic.message.contains(&c.help), "{name}");
                assert_eq!(d.related.len(), 1 + c.secondary.len(), "{name}");
            }
        }
    }
}

#[test]
fn ranges_are_in_utf16_code_units() {
    // `é` is one UTF-16 unit (2 bytes), `𝒙` two (4 bytes): `relu` starts at
    // unit 24 of line 4, byte 27.
    let (a, _, _) = fixture(
        "model m\ninput [4]\nclasses 2\nnet { # é𝒙\n dense(2, bias: \"é𝒙\"); relu }\n",
        &[],
    );
    let at = |line, from, to| Range {
        start: Position {
            line,
            character: from,
        },
        end: Position {
            line,
            character: to,
        },
    };
    let ranges: Vec<(String, Range)> = a
        .diagnostics()
        .iter()
        .map(|d| (format!("{:?}", d.diagnostic.code), d.diagnostic.range))
        .collect();
    assert_eq!(
        ranges,
        [
            ("Some(String(\"E0202\"))".to_string(), at(4, 16, 21)),
            ("Some(String(\"E0100\"))".to_string(), at(4, 24, 28)),
        ]
    );
}

#[test]
fn diagnostics_in_imports_show_in_both_files() {
    let (a, _, _) = fixture(
        "import \"lib.pnn\"\nmodel m\ninput [4]\nclasses 2\nnet { b(2) }\n",
        &[("/m/lib.pnn", "block b(n) { dense(n) ]\n")],
    );
    let d = a.diagnostics();
    insta::assert_debug_snapshot!(
        d.iter()
            .map(|d| (
                d.path.as_str(),
                d.diagnostic.range,
                d.diagnostic.message.as_str(),
                d.related
                    .iter()
                    .map(|(r, m)| format!(
                        "{}:{}:{} {m}",
                        r.path, r.range.start.line, r.range.start.character
                    ))
                    .collect::<Vec<_>>()
            ))
            .collect::<Vec<_>>()
    );
}

#[test]
fn hover_on_a_layer_shows_shape_params_and_levels() {
    let (a, pos, _) = fixture(&model_with_cursor("conv(16"), &[("/m/lib.pnn", LIB)]);
    insta::assert_snapshot!(hover_text(&a, pos));
}

#[test]
fn hover_on_an_activation_shows_its_polynomial() {
    let (a, pos, _) = fixture(
        &model_with_cursor("p; batchnorm\n  basic"),
        &[("/m/lib.pnn", LIB)],
    );
    insta::assert_snapshot!(hover_text(&a, pos));
    let (a, pos, _) = fixture(&model_with_cursor("p = poly"), &[("/m/lib.pnn", LIB)]);
    assert!(hover_text(&a, pos).starts_with("act `p`: polynomial of degree 8 (4 levels)"));
}

#[test]
fn hover_on_a_given_polynomial_shows_its_coefficients() {
    let text = MODEL.replace(
        "act p = poly(degree: 8, range: 35)",
        "act p = poly(coeffs: [0.5, 0, -1, 0], range: 35)",
    );
    let at = text.find("p = poly").expect("marker");
    let (a, pos, _) = fixture(
        &format!("{}$0{}", &text[..at], &text[at..]),
        &[("/m/lib.pnn", LIB)],
    );
    let hover = hover_text(&a, pos);
    assert!(
        hover.starts_with(
            "act `p`: polynomial of degree 2 (2 levels)  \ngiven: p(x) = 0.5 - 1 x^2 for |x| <= 35, chebyshev basis, fixed"
        ),
        "{hover}"
    );
}

#[test]
fn hover_on_a_block_use_shows_its_expansion() {
    let (a, pos, _) = fixture(&model_with_cursor("basic(32"), &[("/m/lib.pnn", LIB)]);
    insta::assert_snapshot!(hover_text(&a, pos));
}

#[test]
fn hover_works_in_a_model_with_errors() {
    let text =
        model_with_cursor("global_avgpool").replace("dense(classes)", "dense(classes); relu");
    let (a, pos, _) = fixture(&text, &[("/m/lib.pnn", LIB)]);
    assert!(a.checked.has_errors());
    assert!(
        hover_text(&a, pos).contains("output [32]"),
        "{}",
        hover_text(&a, pos)
    );
}

#[test]
fn definitions_of_blocks_acts_and_imports() {
    let lib = [("/m/lib.pnn", LIB)];
    let (a, pos, _) = fixture(&model_with_cursor("asic(32"), &lib);
    let target = a.goto_definition(pos).expect("block");
    assert_eq!(target.path, "/m/lib.pnn");
    assert_eq!(
        target.range.start,
        Position {
            line: 1,
            character: 6
        }
    );
    let (a, pos, _) = fixture(&model_with_cursor("p; batchnorm\n  basic"), &lib);
    let target = a.goto_definition(pos).expect("act");
    assert_eq!(target.path, MAIN);
    assert_eq!(
        target.range.start,
        Position {
            line: 4,
            character: 4
        }
    );
    let (a, pos, _) = fixture(&model_with_cursor("lib.pnn\""), &lib);
    assert_eq!(a.goto_definition(pos).expect("import").path, "/m/lib.pnn");
    let (a, pos, _) = fixture(&model_with_cursor("global_avgpool"), &lib);
    assert_eq!(a.goto_definition(pos), None);
}

#[test]
fn document_symbols_outline_the_file() {
    let (a, _, _) = fixture(MODEL, &[("/m/lib.pnn", LIB)]);
    fn show(symbols: &[lsp_types::DocumentSymbol], depth: usize, out: &mut String) {
        for s in symbols {
            out.push_str(&format!(
                "{}{} {:?} {}:{}{}\n",
                "  ".repeat(depth),
                s.name,
                s.kind,
                s.range.start.line,
                s.range.start.character,
                s.detail
                    .as_ref()
                    .map_or(String::new(), |d| format!("  {d}"))
            ));
            show(s.children.as_deref().unwrap_or(&[]), depth + 1, out);
        }
    }
    let mut out = String::new();
    show(&a.symbols(), 0, &mut out);
    insta::assert_snapshot!(out);
}

/// A concat goes through the generic paths: a layer inside a branch hovers
/// with its own shape and levels, the concat outlines as its branches, and
/// `concat` is offered where a layer may stand.
#[test]
fn concat_branches_hover_outline_and_complete() {
    let text = "model m\ninput [3, 8, 8]\nclasses 10\nact p = poly(degree: 8, range: 35)\n\
        net {\n  concat {} {\n    conv(4, 3, padding: 1); p\n  }\n  global_avgpool\n  dense(classes)\n}\n";
    let at = text.find("conv(4").expect("marker");
    let (a, pos, _) = fixture(&format!("{}$0{}", &text[..at], &text[at..]), &[]);
    let hover = hover_text(&a, pos);
    assert!(
        hover.contains("[4, 8, 8]") && hover.contains("cat1.b2.conv1"),
        "{hover}"
    );
    let net = a
        .symbols()
        .into_iter()
        .find(|s| s.name == "net")
        .expect("net symbol");
    let children = net.children.unwrap_or_default();
    let concat = children
        .iter()
        .find(|s| s.name == "concat")
        .expect("concat");
    let branches: Vec<(String, usize)> = concat
        .children
        .iter()
        .flatten()
        .map(|b| (b.name.clone(), b.children.as_ref().map_or(0, Vec::len)))
        .collect();
    assert_eq!(
        branches,
        [("branch 1".to_string(), 0), ("branch 2".to_string(), 2)]
    );
    let at = text.find("global_avgpool").expect("marker");
    let (a, pos, _) = fixture(&format!("{}$0{}", &text[..at], &text[at..]), &[]);
    let items = a.completions(pos);
    assert!(items.iter().any(|i| i.label == "concat"), "{items:?}");
}

#[test]
fn formatting_is_pnnc_fmt() {
    let (a, _, _) = fixture("model   m\nnet{dense(2)}\n", &[]);
    let edits = a.format().expect("parses");
    assert_eq!(edits.len(), 1);
    assert_eq!(
        edits[0].new_text,
        crate::syntax::format("model   m\nnet{dense(2)}\n").unwrap()
    );
    assert_eq!(
        edits[0].range.end,
        Position {
            line: 2,
            character: 0
        }
    );
    let (a, _, _) = fixture(&edits[0].new_text, &[]);
    assert_eq!(a.format(), Some(Vec::new()));
    let (a, _, _) = fixture("net {", &[]);
    assert_eq!(a.format(), None);
}

fn labels(items: Vec<lsp_types::CompletionItem>) -> Vec<String> {
    items.into_iter().map(|i| i.label).collect()
}

#[test]
fn completion_offers_what_fits_the_place() {
    let lib = [("/m/lib.pnn", LIB)];
    let (a, pos, _) = fixture(&model_with_cursor("16, 3, padding"), &lib);
    let args = labels(a.completions(pos));
    assert_eq!(
        args,
        ["out", "kernel", "stride", "padding", "bias", "groups"]
    );
    let (a, pos, _) = fixture(&model_with_cursor("basic(32"), &lib);
    let names = labels(a.completions(pos));
    for n in ["dense", "conv", "p", "basic", "residual", "for"] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    let (a, pos, _) = fixture(&model_with_cursor("32, stride"), &lib);
    assert_eq!(labels(a.completions(pos)), ["cout", "stride", "act"]);
    let (a, pos, _) = fixture(&format!("{MODEL}train {{\n  $0\n}}\n"), &lib);
    assert!(labels(a.completions(pos)).contains(&"poly_lr_scale".to_string()));
    let (a, pos, _) = fixture(&format!("{MODEL}$0"), &lib);
    assert!(labels(a.completions(pos)).contains(&"train".to_string()));
}

/// `texts` with `edits` applied (edits of one file must not overlap).
fn apply(texts: &HashMap<String, String>, edits: &[FileEdit]) -> HashMap<String, String> {
    let mut out = texts.clone();
    let mut by_file: HashMap<&str, Vec<&TextEdit>> = HashMap::new();
    for e in edits {
        by_file.entry(&e.path).or_default().push(&e.edit);
    }
    for (path, mut edits) in by_file {
        let file = SourceFile::new(path.to_string(), texts[path].clone());
        edits.sort_by_key(|e| std::cmp::Reverse(offset_of(&file, e.range.start)));
        let mut text = file.text.clone();
        for e in edits {
            let (s, t) = (
                offset_of(&file, e.range.start),
                offset_of(&file, e.range.end),
            );
            text.replace_range(s..t, &e.new_text);
        }
        out.insert(path.to_string(), text);
    }
    out
}

/// Apply the action titled like `title` and re-check the main file.
fn after_action(main: &str, others: &[(&str, &str)], title: &str) -> (String, Checked) {
    let (a, _, mem) = fixture(main, others);
    let actions = a.code_actions(
        Range {
            start: Position::default(),
            end: Position {
                line: 1000,
                character: 0,
            },
        },
        &mem,
    );
    let action = actions
        .iter()
        .find(|x| x.title.contains(title))
        .unwrap_or_else(|| {
            panic!(
                "no `{title}` among {:?}",
                actions.iter().map(|x| &x.title).collect::<Vec<_>>()
            )
        });
    assert!(
        action.diagnostic.is_some(),
        "{title}: no diagnostic attached"
    );
    let texts: HashMap<String, String> = mem
        .0
        .iter()
        .map(|(p, t)| (p.display().to_string(), t.clone()))
        .collect();
    let new = apply(&texts, &action.edits);
    let mut mem = Mem::default();
    for (p, t) in &new {
        mem.0.insert(PathBuf::from(p), t.clone());
    }
    let main_text = new[MAIN].clone();
    let checked = check::check_source_in(MAIN, &main_text, &mem);
    (main_text, checked)
}

#[test]
fn code_action_replaces_relu_by_a_polynomial_activation() {
    let (text, checked) = after_action(
        "model m\ninput [4]\nclasses 2\nnet { dense(8); relu; dense(classes) }\n",
        &[],
        "new polynomial activation `p`",
    );
    assert!(!checked.has_errors(), "{text}\n{:?}", checked.diagnostics);
    assert!(
        text.contains("act p = poly(degree: 2, fit: relu, range: 13)\nnet {"),
        "{text}"
    );
    // An existing activation is reused.
    let (text, checked) = after_action(
        "model m\ninput [4]\nclasses 2\nact q = poly(degree: 4, fit: gelu, range: 9)\nnet { dense(8); GELU; dense(classes) }\n",
        &[],
        "activation `q`",
    );
    assert!(!checked.has_errors(), "{text}");
}

#[test]
fn code_action_for_a_non_he_op_inside_an_imported_block() {
    let (_, checked) = after_action(
        "import \"lib.pnn\"\nmodel m\ninput [4]\nclasses 2\nnet { b(8); dense(classes) }\n",
        &[("/m/lib.pnn", "block b(n) {\n  dense(n); relu\n}\n")],
        "new polynomial activation",
    );
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    assert!(checked.sources.text(1).starts_with("act p = poly("));
}

#[test]
fn code_actions_for_maxpool_softmax_and_misspelt_names() {
    let base =
        "model m\ninput [1, 8, 8]\nclasses 2\nnet { conv(4, 3); LAYER; flatten; dense(classes) }\n";
    for (layer, title) in [
        ("maxpool(2)", "with `avgpool`"),
        ("MaxPool2d(2)", "with `avgpool`"),
        ("layernorm", "with `batchnorm`"),
        ("batchnrom", "with `batchnorm`"),
        ("BatchNorm2d", "with `batchnorm`"),
    ] {
        let (text, checked) = after_action(&base.replace("LAYER", layer), &[], title);
        assert!(!checked.has_errors(), "{layer}: {text}");
    }
    let (text, checked) = after_action(
        "model m\ninput [4]\nclasses 2\nnet { dense(classes); softmax }\n",
        &[],
        "Remove `softmax`",
    );
    assert!(!checked.has_errors(), "{text}");
}

#[test]
fn code_action_lowers_a_degree_to_fit_the_depth_budget() {
    let main = "model m\ninput [32]\nclasses 2\nact p = poly(degree: 8, range: 35)\nnet {\n  dense(64); p\n  dense(64); p\n  dense(classes)\n}\nhe { depth: 10 }\n";
    let (text, checked) = after_action(main, &[], "Lower the degree of `p` from 8 to 7");
    assert!(!checked.has_errors(), "{text}");
    assert_eq!(checked.model.map(|m| m.depth), Some(9));
    // No action when no degree fits.
    let (a, _, mem) = fixture(&main.replace("depth: 10", "depth: 2"), &[]);
    let all = Range {
        start: Position::default(),
        end: Position {
            line: 99,
            character: 0,
        },
    };
    assert!(
        a.code_actions(all, &mem)
            .iter()
            .all(|x| !x.title.contains("Lower"))
    );
}

#[test]
fn code_action_sets_enough_fit_points() {
    let (text, checked) = after_action(
        "model m\ninput [4]\nclasses 2\nact p = poly(degree: 8, range: 13, points: 5)\nnet { dense(4); p; dense(classes) }\n",
        &[],
        "points: 9",
    );
    assert!(!checked.has_errors(), "{text}");
}

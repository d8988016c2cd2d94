//! `pnnc fmt`: formatting keeps the meaning and comments, and is idempotent,
//! on every std-model and example.

use pnnc::{check, syntax};

fn files() -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for dir in [
        "std-models",
        "std-models/bench",
        "std-models/blocks",
        "examples",
    ] {
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "pnn") {
                v.push(p);
            }
        }
    }
    v
}

#[test]
fn format_is_idempotent_keeps_comments_and_meaning() {
    for path in files() {
        let text = std::fs::read_to_string(&path).expect("read");
        let once = syntax::format(&text).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let twice = syntax::format(&once).expect("formatted text parses");
        assert_eq!(once, twice, "{}: not idempotent", path.display());
        let count = |t: &str| t.lines().filter(|l| l.contains('#')).count();
        assert_eq!(
            count(&text),
            count(&once),
            "{}: comments lost",
            path.display()
        );
        // Same checked model (same diagnostics codes) before and after.
        let name = path.to_str().expect("utf8");
        let a = check::check_source(name, &text);
        let b = check::check_source(name, &once);
        let codes = |c: &check::Checked| c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>();
        assert_eq!(codes(&a), codes(&b), "{name}");
        let shape = |c: &check::Checked| {
            c.model.as_ref().map(|m| {
                let ops: Vec<_> = m
                    .ops()
                    .iter()
                    .map(|o| (o.name.clone(), o.kind.clone(), o.output.clone(), o.level))
                    .collect();
                (ops, m.params, m.depth, m.train.clone(), m.he.clone())
            })
        };
        assert_eq!(shape(&a), shape(&b), "{name}");
    }
}

#[test]
fn std_models_are_already_formatted() {
    for path in files() {
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            syntax::format(&text).expect("parses"),
            text,
            "{} is not formatted",
            path.display()
        );
    }
}

#[test]
fn messy_input_is_normalised() {
    let messy = "model   m\ninput [ 4,2 ]\nclasses 2\n\n\n\nnet {\n flatten\n    dense( classes ,bias:false )   # head\n}\n";
    let out = syntax::format(messy).expect("parses");
    assert_eq!(
        out,
        "model m\ninput [4, 2]\nclasses 2\n\nnet {\n  flatten\n  dense(classes, bias: false)  # head\n}\n"
    );
}

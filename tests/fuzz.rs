//! Random and mutated inputs never make the parser, checker or formatter panic.

use pnnc::{check, syntax};
use proptest::prelude::*;

fn seeds() -> Vec<String> {
    let mut v = Vec::new();
    for dir in ["std-models", "std-models/bench", "examples", "tests/ui"] {
        for e in std::fs::read_dir(dir).expect("dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "pnn") {
                v.push(std::fs::read_to_string(p).expect("read"));
            }
        }
    }
    v
}

fn exercise(text: &str) {
    let c = check::check_source("fuzz/input.pnn", text);
    let _ = check::render::text(&c.sources, &c.diagnostics, false);
    let _ = check::render::json_diagnostics(&c.sources, &c.diagnostics);
    if let Ok(f) = syntax::format(text) {
        // Formatting valid input must give valid input.
        assert!(
            syntax::parse(&f).is_ok(),
            "formatted text does not parse:\n{f}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(s in "\\PC{0,200}") {
        exercise(&s);
    }

    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "model", "m", "input", "[", "]", "classes", "10", "net", "{", "}", "(", ")", "dense", "conv",
        "residual", "project", "shortcut", "for", "in", "0..3", ",", ":", ";", "block", "b", "act", "p",
        "=", "poly", "degree", "range", "-", "*", "1e999", "99999999999999999999", "\"s\"", "#c\n", "\n",
        "train", "he", "import", "batchnorm", "flatten", "global_avgpool", "avgpool", "b(2)",
    ]), 0..80)) {
        exercise(&tokens.join(" "));
    }

    #[test]
    fn mutated_models_never_panic(seed in 0usize..64, pos in any::<prop::sample::Index>(), len in 0usize..20, insert in "\\PC{0,12}") {
        let seeds = seeds();
        let text = &seeds[seed % seeds.len()];
        let mut bytes: Vec<char> = text.chars().collect();
        let at = pos.index(bytes.len() + 1);
        let end = (at + len).min(bytes.len());
        bytes.splice(at..end, insert.chars());
        exercise(&bytes.into_iter().collect::<String>());
    }
}

#[test]
fn hostile_inputs_give_errors_not_crashes() {
    let deep_blocks: String = (0..200)
        .map(|i| format!("block b{i}() {{ b{}() }}\n", i + 1))
        .collect();
    let cases = [
        String::new(),
        "\u{0}\u{1}\u{2}".to_string(),
        "net {".repeat(5000),
        format!("model m\ninput [4]\nclasses 2\n{deep_blocks}block b200() {{ dense(2) }}\nnet {{ b0() }}"),
        "model m\ninput [4]\nclasses 2\nnet { for i in 0..100000 { for j in 0..100000 { dense(2) } } }".to_string(),
        "model m\ninput [99999999999, 99999999999, 99999999999]\nclasses 2\nnet { flatten; dense(2) }".to_string(),
    ];
    for text in &cases {
        let c = check::check_source("hostile.pnn", text);
        assert!(
            c.has_errors(),
            "expected an error for {:?}",
            &text[..text.len().min(60)]
        );
    }
}

#[test]
fn non_utf8_file_is_a_load_error() {
    let dir = std::env::temp_dir().join(format!("pnnc-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let path = dir.join("binary.pnn");
    std::fs::write(&path, [0x6d, 0xff, 0xfe, 0x00]).expect("write");
    let err = check::check_path(&path).expect_err("not UTF-8");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    let missing = check::check_path(&dir.join("missing.pnn")).expect_err("missing");
    assert!(missing.to_string().contains("missing.pnn"), "{missing}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Random and mutated inputs never make the parser, checker or formatter panic.

use pnnc::{check, syntax};
use proptest::prelude::*;
use std::time::{Duration, Instant};

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

/// Checking, rendering and formatting one input takes at most this long.
/// Generous (a debug build on a busy 2-core machine checks a whole
/// 100000-layer model in about a second of CPU, and wall time under load is
/// a few times that): it catches work that grows faster than the input, which
/// on the largest inputs below takes minutes.
const PER_INPUT: Duration = Duration::from_secs(10);

fn exercise(text: &str) {
    let started = Instant::now();
    exercise_untimed(text);
    let took = started.elapsed();
    assert!(
        took < PER_INPUT,
        "{took:?} for an input of {} bytes: {:?}",
        text.len(),
        &text[..text.floor_char_boundary(80)]
    );
}

fn exercise_untimed(text: &str) {
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
        "residual", "project", "shortcut", "concat", "{}", "for", "in", "0..3", ",", ":", ";", "block", "b", "act", "p",
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
        "model m\ninput [4]\nclasses 2\nnet { for i in 0..100000 { for j in 0..100000 { } } }".to_string(),
        // Many definitions and as many misspelt uses: suggestions stay bounded.
        format!(
            "model m\ninput [4]\nclasses 2\n{}net {{ {} }}",
            (0..20_000).map(|i| format!("block b{i:05}() {{ dense(4) }}\n")).collect::<String>(),
            (0..20_000).map(|i| format!("c{i:05}; ")).collect::<String>()
        ),
        "model m\ninput [99999999999, 99999999999, 99999999999]\nclasses 2\nnet { flatten; dense(2) }".to_string(),
        // The documented limit written out, one layer per line, each an error:
        // locations must not cost a scan of the file each.
        format!("model m\ninput [4]\nclasses 2\nnet {{\n{}}}\n", "  relu\n".repeat(100_000)),
        format!("model m\ninput [4]\nclasses 2\nnet {{\n{}  dense(3)\n}}\n", "  dense(4)\n".repeat(99_999)),
    ];
    for text in &cases {
        exercise(text);
        let c = check::check_source("hostile.pnn", text);
        assert!(
            c.has_errors(),
            "expected an error for {:?}",
            &text[..text.len().min(60)]
        );
    }
}

#[test]
fn the_largest_model_checks_without_errors() {
    let text = format!(
        "model m\ninput [4]\nclasses 2\nnet {{\n{}  dense(2)\n}}\n",
        "  dense(4)\n".repeat(check::net::MAX_OPS - 1)
    );
    let c = check::check_source("max.pnn", &text);
    assert!(!c.has_errors(), "{:?}", c.diagnostics.first());
    assert_eq!(c.model.map(|m| m.net.len()), Some(check::net::MAX_OPS));
}

#[test]
fn devices_folders_and_huge_files_are_not_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let folder = check::check_path(dir.path()).expect_err("a folder");
    assert!(
        folder.to_string().contains("not a regular file"),
        "{folder}"
    );
    #[cfg(unix)]
    {
        let device = check::check_path(std::path::Path::new("/dev/zero")).expect_err("a device");
        assert!(
            device.to_string().contains("not a regular file"),
            "{device}"
        );
        let main = dir.path().join("main.pnn");
        std::fs::write(&main, "import \"/dev/zero\"\nmodel m\n").expect("write");
        let c = check::check_path(&main).expect("readable");
        assert_eq!(c.diagnostics[0].code, check::Code::ImportFailed);
        assert!(
            c.diagnostics[0]
                .primary
                .message
                .contains("not a regular file")
        );
    }
    let huge = dir.path().join("huge.pnn");
    let file = std::fs::File::create(&huge).expect("create");
    file.set_len(check::MAX_FILE_BYTES + 1)
        .expect("sparse file");
    let err = check::check_path(&huge).expect_err("too large");
    assert!(err.to_string().contains("over the limit"), "{err}");
    let main = dir.path().join("imports_huge.pnn");
    std::fs::write(&main, "import \"huge.pnn\"\nmodel m\n").expect("write");
    let c = check::check_path(&main).expect("readable");
    assert_eq!(c.diagnostics[0].code, check::Code::ImportFailed);
    assert!(c.diagnostics[0].primary.message.contains("over the limit"));
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

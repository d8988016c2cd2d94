//! UI tests: every `tests/ui/*.pnn` case is checked; its rendered diagnostics
//! (colour off) and its JSON are insta snapshots. One case per code at least.

use pnnc::check::{self, Code, render};
use std::path::Path;

fn cases() -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir("tests/ui")
        .expect("tests/ui exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pnn"))
        .collect();
    v.sort();
    v
}

#[test]
fn ui_snapshots_text_and_json() {
    for path in cases() {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("case")
            .to_string();
        let checked = check::check_path(&path).expect("readable");
        // The code named by the file name must be among the diagnostics.
        let code = &name[..5];
        assert!(
            checked.diagnostics.iter().any(|d| d.code.as_str() == code),
            "{name}: expected a {code} diagnostic, got {:?}",
            checked
                .diagnostics
                .iter()
                .map(|d| d.code.as_str())
                .collect::<Vec<_>>()
        );
        let text = render::text(&checked.sources, &checked.diagnostics, false);
        insta::assert_snapshot!(format!("{name}.text"), text);
        let json = serde_json::to_string_pretty(&render::json_diagnostics(
            &checked.sources,
            &checked.diagnostics,
        ))
        .expect("json");
        insta::assert_snapshot!(format!("{name}.json"), json);
    }
}

#[test]
fn every_code_has_a_case_and_a_page() {
    let names: Vec<String> = cases()
        .iter()
        .filter_map(|p| p.file_name().and_then(|s| s.to_str()).map(String::from))
        .collect();
    for code in Code::ALL {
        assert!(
            names.iter().any(|n| n.starts_with(code.as_str())),
            "no UI case for {code}"
        );
        let page = code.explanation();
        assert!(
            page.starts_with(&format!("# {code}: ")),
            "docs page of {code} has no title"
        );
        assert!(
            page.contains("## How to fix it"),
            "docs page of {code} has no fix section"
        );
        assert!(Path::new(&format!("docs/diagnostics/{code}.md")).exists());
    }
}

#[test]
fn several_problems_are_all_reported_with_locations() {
    let checked = check::check_path(Path::new("tests/ui/E0100_non_he.pnn")).expect("readable");
    assert_eq!(checked.count(check::Severity::Error), 9);
    let text = checked.sources.text(0);
    let spans: Vec<&str> = checked
        .diagnostics
        .iter()
        .map(|d| &text[d.primary.span.start..d.primary.span.end])
        .collect();
    assert_eq!(
        spans,
        [
            "relu",
            "maxpool(2)",
            "layernorm",
            "sigmoid",
            "tanh",
            "gelu",
            "attention",
            "div(2)",
            "softmax"
        ]
    );
    assert!(checked.diagnostics.iter().all(|d| !d.help.is_empty()));
}

/// Every code some case emits, over all UI cases.
fn emitted_codes() -> std::collections::BTreeSet<&'static str> {
    cases()
        .iter()
        .flat_map(|p| check::check_path(p).expect("readable").diagnostics)
        .map(|d| d.code.as_str())
        .collect()
}

#[test]
fn every_emitted_code_has_a_page_and_every_page_is_emitted() {
    let emitted = emitted_codes();
    for code in &emitted {
        assert!(
            Path::new(&format!("docs/diagnostics/{code}.md")).exists(),
            "{code} is emitted but has no page"
        );
    }
    let mut pages = 0;
    for entry in std::fs::read_dir("docs/diagnostics").expect("docs/diagnostics") {
        let path = entry.expect("entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("md"),
            "{path:?}"
        );
        let code = Code::parse(stem).unwrap_or_else(|| panic!("{path:?} names no code"));
        assert_eq!(code.as_str(), stem, "{path:?}: page names are upper case");
        assert!(
            emitted.contains(stem),
            "{stem} has a page but no case emits it"
        );
        pages += 1;
    }
    assert_eq!(pages, Code::ALL.len());
}

/// The limits the checker enforces are the ones its pages state.
#[test]
fn pages_state_the_enforced_limits() {
    use pnnc::check::{MAX_FILE_BYTES, config, eval, net};
    use pnnc::syntax::MAX_NESTING;
    let limits: &[(Code, u64)] = &[
        (Code::Syntax, MAX_NESTING as u64),
        (Code::ImportFailed, MAX_FILE_BYTES),
        (Code::OutOfRange, net::MAX_DIM as u64),
        (Code::OutOfRange, net::MAX_WINDOW as u64),
        (Code::OutOfRange, eval::MAX_RANGE as u64),
        (Code::OutOfRange, config::MAX_DEPTH_BUDGET as u64),
        (Code::DepthBudget, config::MAX_DEPTH_BUDGET as u64),
        (Code::TooLarge, net::MAX_OPS as u64),
        (Code::TooLarge, net::MAX_LOOP_STEPS as u64),
        (Code::TooLarge, net::MAX_PARAMS),
        (Code::TooLarge, net::MAX_NUMEL),
        (Code::RecursiveBlock, net::MAX_BLOCK_DEPTH as u64),
    ];
    for (code, limit) in limits {
        let page: String = code
            .explanation()
            .chars()
            .filter(|c| *c != ',' && *c != '_')
            .collect();
        assert!(
            page.contains(&limit.to_string()),
            "docs/diagnostics/{code}.md does not state the limit {limit}"
        );
    }
}

#[test]
fn root_causes_come_first_and_follow_ons_are_suppressed() {
    let codes = |name: &str| -> Vec<&'static str> {
        let c = check::check_path(Path::new(&format!("tests/ui/{name}.pnn"))).expect("readable");
        c.diagnostics.iter().map(|d| d.code.as_str()).collect()
    };
    // The import's syntax error first, then the main file's own error; no E0101.
    assert_eq!(codes("E0001_import_syntax"), ["E0001", "E0202"]);
    assert_eq!(codes("E0002_import_not_a_file"), ["E0002"]);
    assert_eq!(codes("E0203_classes_follow_on"), ["E0203"]);
    assert_eq!(codes("E0301_layer_limit"), ["E0301"]);
    assert_eq!(codes("E0301_loop_limit"), ["E0301"]);
    assert_eq!(codes("E0301_input_too_large"), ["E0301"]);
}

#[test]
fn overflowed_sizes_are_never_printed_as_wrapped_numbers() {
    for path in cases() {
        let c = check::check_path(&path).expect("readable");
        let text = render::text(&c.sources, &c.diagnostics, false);
        assert!(!text.contains(&u64::MAX.to_string()), "{path:?}:\n{text}");
    }
}

/// `pnnc explain` prints code pages and topic pages, lists the topics, and
/// answers an unknown name with exit 2 and the closest name.
#[test]
fn explain_prints_codes_and_topics() {
    let run = |arg: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pnnc"))
            .args(["explain", arg])
            .output()
            .expect("pnnc runs")
    };
    let out = run("e0203");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        Code::OutOfRange.explanation()
    );
    let out = run("raw_power");
    assert!(out.status.success());
    let page = std::fs::read_to_string("docs/topics/raw_power.md").expect("page");
    assert_eq!(String::from_utf8_lossy(&out.stdout), page);
    let out = run("topics");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("raw_power "));
    let out = run("raw-pwer");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neither a diagnostic code nor a topic"),
        "{err}"
    );
    assert!(err.contains("did you mean `raw_power`?"), "{err}");
}

//! The VS Code extension (editors/vscode) is well formed and its grammar
//! knows the language: every keyword of grammar/pnn.pest and every built-in
//! layer. (Its client is exercised through `pnnc lsp` in tests/lsp.rs and,
//! with a real editor, tests/nvim.rs.)

use serde_json::Value;
use std::path::Path;

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn vscode_extension_is_well_formed() {
    let dir = Path::new("editors/vscode");
    let package = json("editors/vscode/package.json");
    let main = package["main"].as_str().expect("main");
    assert!(dir.join(main).is_file(), "{main}");
    let language = &package["contributes"]["languages"][0];
    assert_eq!(language["id"], "pnn");
    assert_eq!(language["extensions"][0], ".pnn");
    let config = language["configuration"].as_str().expect("configuration");
    let config = json(&dir.join(config).display().to_string());
    assert_eq!(config["comments"]["lineComment"], "#");
    assert_eq!(config["brackets"].as_array().map(Vec::len), Some(3));
    let grammar = package["contributes"]["grammars"][0]["path"]
        .as_str()
        .expect("grammar");
    assert!(dir.join(grammar).is_file());
    // One runtime dependency: the language client.
    let deps: Vec<&String> = package["dependencies"]
        .as_object()
        .expect("dependencies")
        .keys()
        .collect();
    assert_eq!(deps, ["vscode-languageclient"]);
    let extension = std::fs::read_to_string(dir.join(main)).expect("extension");
    assert!(
        extension.contains("args: [\"lsp\"]"),
        "the client starts `pnnc lsp`"
    );
}

#[test]
fn textmate_grammar_knows_every_keyword_and_layer() {
    let grammar =
        std::fs::read_to_string("editors/vscode/syntaxes/pnn.tmLanguage.json").expect("grammar");
    let _: Value = serde_json::from_str(&grammar).expect("grammar is JSON");
    let pest = std::fs::read_to_string("grammar/pnn.pest").expect("pest grammar");
    let keywords: Vec<&str> = pest
        .lines()
        .filter_map(|l| l.strip_prefix("kw_"))
        .filter_map(|l| l.split('"').nth(1))
        .collect();
    assert!(keywords.len() >= 14, "{keywords:?}");
    for word in keywords
        .iter()
        .chain(pnnc::check::net::BUILTINS)
        .chain(&["poly", "true", "false"])
    {
        assert!(
            ["|{}|", "({}|", "|{}|)", "|{})", "({})"]
                .iter()
                .any(|p| grammar.contains(&p.replace("{}", word))),
            "the TextMate grammar does not highlight `{word}`"
        );
    }
}

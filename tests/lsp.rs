//! `pnnc lsp` driven over stdio as an editor drives it: initialize, open a
//! broken file, read its diagnostics, hover, go to definition, format,
//! shut down and exit.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::Duration;

/// Longest wait for one message; the server answers in milliseconds.
const WAIT: Duration = Duration::from_secs(60);

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
    /// The latest diagnostics published for each URI.
    diagnostics: HashMap<String, Vec<Value>>,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pnnc"))
            .args(["lsp", "--stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pnnc lsp");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            while let Some(message) = read_message(&mut reader) {
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
            diagnostics: HashMap::new(),
        }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).expect("write");
        self.stdin.flush().expect("flush");
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Send a request and wait for its response (keeping diagnostics that arrive meanwhile).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let message = self.receive(method);
            if message["id"] == json!(id) {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
        }
    }

    fn receive(&mut self, waiting_for: &str) -> Value {
        let message = match self.messages.recv_timeout(WAIT) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => panic!("no answer to {waiting_for} in {WAIT:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the server exited during {waiting_for}"),
        };
        if message["method"] == "textDocument/publishDiagnostics" {
            let uri = message["params"]["uri"].as_str().unwrap_or("").to_string();
            let list = message["params"]["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            self.diagnostics.insert(uri, list);
        }
        message
    }

    /// Wait until diagnostics for `uri` have been published.
    fn diagnostics_for(&mut self, uri: &str) -> Vec<Value> {
        while !self.diagnostics.contains_key(uri) {
            self.receive("publishDiagnostics");
        }
        self.diagnostics[uri].clone()
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.diagnostics.remove(uri);
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "pnn", "version": 1, "text": text}}),
        );
    }
}

fn read_message(reader: &mut impl BufRead) -> Option<Value> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            length = n.parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length?];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

fn uri(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).expect("path exists");
    pnnc::lsp::uri::from_path(&absolute)
}

fn at(line: u32, character: u32) -> Value {
    json!({"line": line, "character": character})
}

#[test]
fn an_editor_session_over_stdio() {
    let mut client = Client::start();
    let init = client.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    let caps = &init["capabilities"];
    for cap in [
        "hoverProvider",
        "definitionProvider",
        "documentSymbolProvider",
        "documentFormattingProvider",
        "completionProvider",
        "codeActionProvider",
    ] {
        assert!(!caps[cap].is_null(), "{cap} missing: {caps}");
    }
    client.notify("initialized", json!({}));

    // A broken file, with a non-ASCII comment before the errors on their line.
    let broken = uri(Path::new("tests/ui/E0100_non_he.pnn"));
    let text = "model m\ninput [1, 28, 28]\nclasses 10\nnet {\n  conv(8, 3); relu # é𝒙\n  flatten; dense(classes); softmax\n}\n";
    client.open(&broken, text);
    let diags = client.diagnostics_for(&broken);
    let found: Vec<(String, Value)> = diags
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap_or("").to_string(),
                d["range"].clone(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "E0100".to_string(),
                json!({"start": at(4, 14), "end": at(4, 18)})
            ),
            (
                "E0100".to_string(),
                json!({"start": at(5, 27), "end": at(5, 34)})
            ),
        ]
    );
    assert!(
        diags[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("help: replace it by a polynomial activation")
    );
    assert_eq!(diags[0]["source"], "pnnc");

    // The same text fixed by a code action: a polynomial activation for relu.
    let actions = client.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": broken}, "range": {"start": at(4, 15), "end": at(4, 15)}, "context": {"diagnostics": []}}),
    );
    let titles: Vec<&str> = actions
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["title"].as_str())
        .collect();
    assert!(
        titles.iter().any(|t| t.contains("polynomial activation")),
        "{titles:?}"
    );

    // Hover on a layer of a std-model, and go to a block in its import.
    let resnet = uri(Path::new("std-models/resnet20.pnn"));
    let resnet_text = std::fs::read_to_string("std-models/resnet20.pnn").expect("read");
    client.open(&resnet, &resnet_text);
    assert_eq!(client.diagnostics_for(&resnet), Vec::<Value>::new());
    let (line, column) = find(&resnet_text, "stage(32, 3)");
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": resnet}, "position": at(line, column + 1)}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(
        shown.contains("block stage(width, blocks, stride: 2, act: p)"),
        "{shown}"
    );
    assert!(shown.contains("[16, 32, 32] → [32, 16, 16]"), "{shown}");
    let (line, column) = find(&resnet_text, "conv(16, 3, padding: 1)");
    let hover = client.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": resnet}, "position": at(line, column + 2)}),
    );
    let shown = hover["contents"]["value"].as_str().unwrap_or("");
    assert!(
        shown.contains("output [16, 32, 32] · 432 parameters · level 0 → 1"),
        "{shown}"
    );

    let definition = client.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": resnet}, "position": at(line + 1, 4)}),
    );
    assert!(
        definition["uri"]
            .as_str()
            .unwrap_or("")
            .ends_with("std-models/blocks/resnet.pnn"),
        "{definition}"
    );
    let blocks = std::fs::read_to_string("std-models/blocks/resnet.pnn").expect("read");
    let (def_line, def_column) = find(&blocks, "stage(width");
    assert_eq!(definition["range"]["start"], at(def_line, def_column));

    let symbols = client.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": resnet}}),
    );
    let names: Vec<&str> = symbols
        .as_array()
        .expect("symbols")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"model resnet20") && names.contains(&"net"),
        "{names:?}"
    );

    // Formatting an untidy document: one edit, the text of `pnnc fmt`.
    let untidy = uri(Path::new("tests/ui/E0004_missing.pnn"));
    client.open(
        &untidy,
        "model   m\ninput [4]\nclasses 2\nnet{dense(classes)}\n",
    );
    let edits = client.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": untidy}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(
        edits[0]["newText"],
        "model m\ninput [4]\nclasses 2\nnet { dense(classes) }\n"
    );

    // A change fixes the broken file: its diagnostics clear.
    client.diagnostics.remove(&broken);
    client.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": broken, "version": 2}, "contentChanges": [
            {"range": {"start": at(5, 26), "end": at(5, 34)}, "text": ""},
            {"range": {"start": at(4, 14), "end": at(4, 18)}, "text": "scale(0.5)"},
        ]}),
    );
    assert_eq!(client.diagnostics_for(&broken), Vec::<Value>::new());

    assert_eq!(client.request("shutdown", Value::Null), Value::Null);
    client.notify("exit", Value::Null);
    let status = client.child.wait().expect("exit");
    assert!(status.success(), "{status}");
}

/// 0-based line and UTF-16 column of the first `needle` in `text`.
fn find(text: &str, needle: &str) -> (u32, u32) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not found"));
    let line = text[..at].matches('\n').count() as u32;
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let column = text[start..at].encode_utf16().count() as u32;
    (line, column)
}

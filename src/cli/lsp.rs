//! `pnnc lsp` (the language server) and the hidden `bench-lsp`.

use crate::lsp::analysis::Analysis;
use crate::lsp::server::apply_changes;
use lsp_types::{Position, Range, TextDocumentContentChangeEvent};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LspArgs {
    /// Talk over stdin/stdout (the only transport; accepted because editor
    /// clients pass it).
    #[arg(long)]
    pub stdio: bool,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model files to edit.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Keystrokes per file.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
}

/// Serve until the client exits; exit 1 on a protocol or I/O error.
pub fn run(_args: &LspArgs) -> ExitCode {
    match crate::lsp::server::run_stdio() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: pnnc lsp: {e}");
            ExitCode::from(1)
        }
    }
}

/// For each file, type `runs` characters at the start of its `net` body as
/// an editor would send them (one incremental change each) and time what
/// the server does per keystroke: apply the change, re-check the document
/// (imports read from disk) and build its diagnostics. Prints the median.
pub fn bench(args: &BenchArgs) -> ExitCode {
    for path in &args.files {
        let text = match crate::check::Disk.read_path(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                eprintln!("help: {}", e.help());
                return ExitCode::from(2);
            }
        };
        let name = path.display().to_string();
        let Some(at) = text.find("net {").map(|i| i + "net {".len()) else {
            eprintln!("error: {name}: no `net {{` to type into");
            return ExitCode::from(2);
        };
        let line = text[..at].matches('\n').count() as u32;
        let column = text[..at].rsplit('\n').next().map_or(0, |l| l.len()) as u32;
        let mut text = text;
        let mut times = Vec::with_capacity(args.runs.max(1));
        let mut diagnostics = 0;
        for i in 0..args.runs.max(1) {
            // Alternate typing a space and deleting it, so the text stays valid.
            let change = if i % 2 == 0 {
                edit(line, column, column, " ")
            } else {
                edit(line, column, column + 1, "")
            };
            let started = std::time::Instant::now();
            text = apply_changes(&text, &[change]);
            let analysis = Analysis::new(&name, &text, &crate::check::Disk);
            diagnostics = analysis.diagnostics().len();
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.3} ms per keystroke over {} (min {:.3}, max {:.3}; {diagnostics} diagnostics)",
            times[times.len() / 2],
            times.len(),
            times[0],
            times[times.len() - 1]
        );
    }
    ExitCode::SUCCESS
}

fn edit(line: u32, from: u32, to: u32, text: &str) -> TextDocumentContentChangeEvent {
    TextDocumentContentChangeEvent {
        range: Some(Range {
            start: Position {
                line,
                character: from,
            },
            end: Position {
                line,
                character: to,
            },
        }),
        range_length: None,
        text: text.to_string(),
    }
}

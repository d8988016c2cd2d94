//! `pnnc check`, `info`, `fmt`, `explain` and the hidden `bench-check`.

use super::{ColorChoice, Format};
use crate::check::{self, Checked, Code, Severity, render};
use crate::ir::Op;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Model files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// `text` for people, `json` for editors and CI (schema in docs/cli.md).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Colour the text output: auto (only on a terminal), always or never.
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorChoice,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The model file, or a circuit (`.json`, from `pnnc compile`): then its
    /// level table with the levels its bootstraps consume.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[arg(long, value_enum, default_value_t)]
    pub color: ColorChoice,
}

#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// Files to format in place.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Change nothing; exit 1 if a file is not formatted.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// A diagnostic code such as E0100 or W0001, or a topic such as
    /// `raw_power` (`pnnc explain topics` lists them).
    pub code: String,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    pub files: Vec<PathBuf>,
    /// Runs per file.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

fn io_error(e: &dyn std::fmt::Display, help: &str) -> ExitCode {
    eprintln!("error: {e}");
    eprintln!("help: {help}");
    ExitCode::from(2)
}

/// Check every file; print diagnostics; exit 0 (clean or warnings), 1 (errors), 2 (I/O).
pub fn check(args: &CheckArgs) -> ExitCode {
    let color = use_color(args.color);
    let mut results: Vec<Checked> = Vec::new();
    let mut io_failed = false;
    for f in &args.files {
        match check::check_path(f) {
            Ok(c) => results.push(c),
            Err(e) => {
                io_failed = true;
                eprintln!("error: {e}");
                eprintln!("help: {}", e.help());
            }
        }
    }
    let errors: usize = results.iter().map(|c| c.count(Severity::Error)).sum();
    let warnings: usize = results.iter().map(|c| c.count(Severity::Warning)).sum();
    match args.format {
        Format::Json => {
            let diagnostics: Vec<_> = results
                .iter()
                .flat_map(|c| render::json_diagnostics(&c.sources, &c.diagnostics))
                .collect();
            let doc = serde_json::json!({
                "schema": 1,
                "files": results.iter().map(|c| serde_json::json!({
                    "file": c.sources.path(0),
                    "errors": c.count(Severity::Error),
                    "warnings": c.count(Severity::Warning),
                })).collect::<Vec<_>>(),
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diagnostics,
            });
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        Format::Text => {
            let mut err = std::io::stderr().lock();
            for c in &results {
                let _ = err.write_all(render::text(&c.sources, &c.diagnostics, color).as_bytes());
            }
            let checked = results.len();
            let _ = writeln!(
                err,
                "{}: {checked} file(s) checked, {errors} error(s), {warnings} warning(s)",
                if errors > 0 || io_failed {
                    "failed"
                } else {
                    "ok"
                }
            );
        }
    }
    if io_failed {
        ExitCode::from(2)
    } else if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// One row of `pnnc info`.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    op: String,
    output: String,
    params: u64,
    levels: u32,
    level: u32,
    depth: usize,
}

fn rows(ops: &[Op], depth: usize, out: &mut Vec<Row>) {
    for op in ops {
        out.push(Row {
            name: op.name.clone(),
            op: op.summary(),
            output: op.output.to_string(),
            params: op.params,
            levels: op.levels,
            level: op.level,
            depth,
        });
        for seq in op.kind.nested() {
            rows(seq, depth + 1, out);
        }
    }
}

/// Print the per-layer table.
pub fn info(args: &InfoArgs) -> ExitCode {
    if args.file.extension().is_some_and(|e| e == "json") {
        return super::compile::circuit_info(&args.file, args.format);
    }
    let checked = match check::check_path(&args.file) {
        Ok(c) => c,
        Err(e) => return io_error(&e, e.help()),
    };
    let model = match (&checked.model, checked.has_errors()) {
        (Some(m), false) => m,
        _ => {
            eprint!(
                "{}",
                render::text(
                    &checked.sources,
                    &checked.diagnostics,
                    use_color(args.color)
                )
            );
            eprintln!(
                "error: {}: the model has errors; fix them to see its table",
                args.file.display()
            );
            return ExitCode::from(1);
        }
    };
    let mut table = Vec::new();
    rows(&model.net, 0, &mut table);
    if args.format == Format::Json {
        let doc = serde_json::json!({
            "schema": 1,
            "model": model.name,
            "input": model.input.to_string(),
            "classes": model.classes,
            "params": model.params,
            "depth": model.depth,
            "source_hash": model.source_hash,
            "layers": table,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let name_w = table
        .iter()
        .map(|r| r.name.len() + 2 * r.depth)
        .max()
        .unwrap_or(4)
        .max(5);
    let op_w = table.iter().map(|r| r.op.len()).max().unwrap_or(2).max(2);
    let shape_w = table
        .iter()
        .map(|r| r.output.len())
        .max()
        .unwrap_or(5)
        .max(6);
    let mut out = String::new();
    out.push_str(&format!(
        "model {}  input {}  classes {}\n\n",
        model.name, model.input, model.classes
    ));
    out.push_str(&format!(
        "{:<name_w$}  {:<op_w$}  {:<shape_w$}  {:>10}  {:>6}  {:>5}\n",
        "layer", "op", "output", "params", "levels", "level"
    ));
    for r in &table {
        let name = format!("{}{}", "  ".repeat(r.depth), r.name);
        out.push_str(&format!(
            "{name:<name_w$}  {:<op_w$}  {:<shape_w$}  {:>10}  {:>6}  {:>5}\n",
            r.op, r.output, r.params, r.levels, r.level
        ));
    }
    out.push_str(&format!(
        "\ntotal: {} parameters ({:.3} M), multiplicative depth {}\n",
        model.params,
        model.params as f64 / 1e6,
        model.depth
    ));
    if let Some(b) = model.he.depth_budget {
        out.push_str(&format!("depth budget: {b}\n"));
    }
    print!("{out}");
    let warnings = render::text(
        &checked.sources,
        &checked.diagnostics,
        use_color(args.color),
    );
    eprint!("{warnings}");
    ExitCode::SUCCESS
}

/// Format files in place, or check that they are formatted.
pub fn fmt(args: &FmtArgs) -> ExitCode {
    let mut unformatted = 0;
    let mut failed = false;
    for path in &args.files {
        let text = match std::fs::read(path) {
            Ok(b) => match String::from_utf8(b) {
                Ok(t) => t,
                Err(_) => {
                    eprintln!("error: {}: not UTF-8 text", path.display());
                    failed = true;
                    continue;
                }
            },
            Err(e) => {
                eprintln!("error: {}: cannot read: {e}", path.display());
                failed = true;
                continue;
            }
        };
        let formatted = match crate::syntax::format(&text) {
            Ok(f) => f,
            Err(e) => {
                let sources = {
                    let mut s = check::Sources::default();
                    s.add(path.display().to_string(), text.clone());
                    s
                };
                let d = check::Diagnostic::new(
                    Code::Syntax,
                    e.message,
                    check::Label::new(0, e.span, "here"),
                )
                .help(e.help);
                eprint!(
                    "{}",
                    render::text(&sources, &[d], use_color(ColorChoice::Auto))
                );
                failed = true;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        unformatted += 1;
        if args.check {
            eprintln!(
                "{}: not formatted (run `pnnc fmt {}`)",
                path.display(),
                path.display()
            );
        } else if let Err(e) = write_atomic(path, &formatted) {
            eprintln!("error: {}: cannot write: {e}", path.display());
            failed = true;
        }
    }
    if failed {
        ExitCode::from(2)
    } else if args.check && unformatted > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Write through a temporary file in the same folder, then rename.
fn write_atomic(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("pnn.fmt-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

pub fn explain(args: &ExplainArgs) -> ExitCode {
    if let Some(code) = Code::parse(&args.code) {
        print!("{}", code.explanation());
        return ExitCode::SUCCESS;
    }
    if let Some(topic) = check::topics::find(&args.code) {
        print!("{}", topic.text);
        return ExitCode::SUCCESS;
    }
    if args.code.trim().eq_ignore_ascii_case("topics") {
        for t in check::topics::ALL {
            println!("{:<12} {}", t.name, t.title);
        }
        return ExitCode::SUCCESS;
    }
    let codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    eprintln!(
        "error: `{}` is neither a diagnostic code nor a topic",
        args.code
    );
    eprintln!("help: {}", check::topics::suggestion(&args.code, &codes));
    ExitCode::from(2)
}

/// Median time to check each file (read once, checked `runs` times).
pub fn bench(args: &BenchArgs) -> ExitCode {
    for path in &args.files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return io_error(&format!("{}: {e}", path.display()), "give model files"),
        };
        let name = path.display().to_string();
        let mut times = Vec::with_capacity(args.runs.max(1));
        for _ in 0..args.runs.max(1) {
            let t = std::time::Instant::now();
            let c = check::check_source(&name, &text);
            times.push(t.elapsed().as_secs_f64() * 1e3);
            std::hint::black_box(c);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{name}: median {median:.3} ms over {} runs (min {:.3}, max {:.3})",
            times.len(),
            times[0],
            times[times.len() - 1]
        );
    }
    ExitCode::SUCCESS
}

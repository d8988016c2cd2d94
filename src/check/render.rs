//! Diagnostics for people (ariadne) and for tools (JSON, schema in docs/cli.md).

use super::diag::{Diagnostic, Label, Severity, Sources};
use serde::Serialize;
use std::ops::Range;

fn byte_range(sources: &Sources, label: &Label) -> Range<usize> {
    let len = sources.text(label.file).len();
    let start = label.span.start.min(len);
    let end = label.span.end.clamp(start, len);
    start..end
}

/// Longest line (bytes) and most lines per label drawn with the source.
const MAX_DRAWN_LINE: usize = 1000;
const MAX_DRAWN_LINES: usize = 50;

/// Whether every label's lines are short and few enough to draw: drawing
/// copies each label's lines, so a diagnostic on a huge line would make the
/// output grow with the line's length times the number of diagnostics.
fn drawable(sources: &Sources, d: &Diagnostic) -> bool {
    std::iter::once(&d.primary).chain(&d.secondary).all(|l| {
        let Some(file) = sources.files.get(l.file) else {
            return true;
        };
        let r = byte_range(sources, l);
        let (first, _) = file.line_start(r.start);
        let (last, _) = file.line_start(r.end);
        last - first < MAX_DRAWN_LINES
            && (first..=last)
                .all(|line| file.line_offset(line + 1) - file.line_offset(line) <= MAX_DRAWN_LINE)
    })
}

/// A diagnostic without the source drawn: code, message, each label's place
/// and message, help.
fn plain(sources: &Sources, d: &Diagnostic) -> String {
    let kind = match d.severity() {
        Severity::Error => "Error",
        Severity::Warning => "Warning",
    };
    let mut out = format!("[{}] {kind}: {}\n", d.code, d.message);
    for l in std::iter::once(&d.primary).chain(&d.secondary) {
        let (line, column) = sources.line_col(l.file, byte_range(sources, l).start);
        out.push_str(&format!(
            "   --> {}:{line}:{column}: {}\n",
            sources.path(l.file),
            l.message
        ));
    }
    if !d.help.is_empty() {
        out.push_str(&format!("   Help: {}\n", d.help));
    }
    out
}

/// The drawing order of a diagnostic's labels (primary first in the result):
/// the primary's file first, then by file and end position. ariadne starts a
/// new section, headed by the primary's location, whenever a label ends on a
/// line above the one before it in the same file; in this order each file is
/// one section.
fn label_order(d: &Diagnostic) -> Vec<i32> {
    let labels: Vec<&Label> = std::iter::once(&d.primary).chain(&d.secondary).collect();
    let mut by_place: Vec<usize> = (0..labels.len()).collect();
    by_place.sort_by_key(|&i| {
        let l = labels[i];
        (
            l.file != d.primary.file,
            l.file,
            l.span.end,
            l.span.start,
            i,
        )
    });
    let mut order = vec![0; labels.len()];
    for (rank, i) in by_place.into_iter().enumerate() {
        order[i] = rank as i32;
    }
    order
}

/// Render diagnostics as text, with ANSI colour when `color` is set.
pub fn text(sources: &Sources, diags: &[Diagnostic], color: bool) -> String {
    use ariadne::{Color, Config, IndexType, Report, ReportKind};
    let cache_entries: Vec<(String, String)> = sources
        .files
        .iter()
        .map(|f| (f.path.clone(), f.text.clone()))
        .collect();
    let mut cache = ariadne::sources(cache_entries);
    let mut out = Vec::new();
    for d in diags {
        if !drawable(sources, d) {
            out.extend_from_slice(plain(sources, d).as_bytes());
            continue;
        }
        let path = sources.path(d.primary.file).to_string();
        let kind = match d.severity() {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let main_color = if d.severity() == Severity::Error {
            Color::Red
        } else {
            Color::Yellow
        };
        let order = label_order(d);
        let mut report = Report::build(kind, (path.clone(), byte_range(sources, &d.primary)))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_index_type(IndexType::Byte),
            )
            .with_code(d.code.as_str())
            .with_message(&d.message)
            .with_label(
                ariadne::Label::new((path, byte_range(sources, &d.primary)))
                    .with_message(&d.primary.message)
                    .with_color(main_color)
                    .with_order(order[0]),
            );
        for (l, o) in d.secondary.iter().zip(&order[1..]) {
            report = report.with_label(
                ariadne::Label::new((sources.path(l.file).to_string(), byte_range(sources, l)))
                    .with_message(&l.message)
                    .with_color(Color::Blue)
                    .with_order(*o),
            );
        }
        if !d.help.is_empty() {
            report = report.with_help(&d.help);
        }
        // Writing into a Vec cannot fail for I/O reasons; a failure would be a
        // bad span, reported in place of the drawing.
        if let Err(e) = report.finish().write(&mut cache, &mut out) {
            out.extend_from_slice(
                format!(
                    "{}: {}: {} ({e})\n",
                    d.code,
                    sources.path(d.primary.file),
                    d.message
                )
                .as_bytes(),
            );
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One diagnostic in the JSON output. Field names are a stable interface.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    pub code: String,
    pub severity: Severity,
    pub message: String,
    pub file: String,
    /// 1-based line and column (in characters) of the primary span's start.
    pub line: u32,
    pub column: u32,
    pub end_line: u32,
    pub end_column: u32,
    /// Byte offsets `[start, end)` of the primary span in `file`.
    pub span: JsonSpan,
    pub help: String,
    /// The primary label first, then secondary labels.
    pub labels: Vec<JsonLabel>,
    /// Concrete replacements that resolve the diagnostic (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fixes: Vec<JsonFix>,
}

#[derive(Debug, Serialize)]
pub struct JsonFix {
    pub title: String,
    pub edits: Vec<JsonEdit>,
}

/// Replace the byte range `span` of `file` by `text`.
#[derive(Debug, Serialize)]
pub struct JsonEdit {
    pub file: String,
    pub span: JsonSpan,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct JsonSpan {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Serialize)]
pub struct JsonLabel {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub span: JsonSpan,
    pub message: String,
    pub primary: bool,
}

fn json_label(sources: &Sources, l: &Label, primary: bool) -> JsonLabel {
    let r = byte_range(sources, l);
    let (line, column) = sources.line_col(l.file, r.start);
    JsonLabel {
        file: sources.path(l.file).to_string(),
        line,
        column,
        span: JsonSpan {
            start: r.start,
            end: r.end,
        },
        message: l.message.clone(),
        primary,
    }
}

pub fn json_diagnostics(sources: &Sources, diags: &[Diagnostic]) -> Vec<JsonDiagnostic> {
    diags
        .iter()
        .map(|d| {
            let r = byte_range(sources, &d.primary);
            let (line, column) = sources.line_col(d.primary.file, r.start);
            let (end_line, end_column) = sources.line_col(d.primary.file, r.end);
            let mut labels = vec![json_label(sources, &d.primary, true)];
            labels.extend(d.secondary.iter().map(|l| json_label(sources, l, false)));
            JsonDiagnostic {
                code: d.code.as_str().to_string(),
                severity: d.severity(),
                message: d.message.clone(),
                file: sources.path(d.primary.file).to_string(),
                line,
                column,
                end_line,
                end_column,
                span: JsonSpan {
                    start: r.start,
                    end: r.end,
                },
                help: d.help.clone(),
                labels,
                fixes: d
                    .fixes
                    .iter()
                    .map(|f| JsonFix {
                        title: f.title.clone(),
                        edits: f
                            .edits
                            .iter()
                            .map(|e| JsonEdit {
                                file: sources.path(e.file).to_string(),
                                span: JsonSpan {
                                    start: e.span.start,
                                    end: e.span.end,
                                },
                                text: e.text.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            }
        })
        .collect()
}

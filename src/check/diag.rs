//! Diagnostics: stable codes, severities, located labels, and the source
//! files they point into.

use crate::syntax::Span;
use serde::Serialize;

/// Index of a file in [`Sources`].
pub type FileId = usize;

/// Every file the checker read: the model and its imports.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as the user gave it (or as an import resolved it).
    pub path: String,
    pub text: String,
    /// Byte offset of the start of each line (the first is 0), so that a
    /// location costs a binary search, not a scan from the file's start.
    line_starts: Vec<usize>,
    /// Characters and UTF-16 code units before every [`CHECKPOINT`]-th byte,
    /// so that columns cost at most that many bytes of counting even on one
    /// very long line. Empty for ASCII text (where both equal the offset).
    checkpoints: Vec<(u32, u32)>,
}

/// Bytes between two column checkpoints.
const CHECKPOINT: usize = 64;

/// Whether `b` starts a character (is not a UTF-8 continuation byte).
fn starts_char(b: u8) -> bool {
    b & 0xC0 != 0x80
}

/// UTF-16 code units of the character starting with byte `b` (0 for continuation bytes).
fn utf16_units(b: u8) -> u32 {
    match b {
        _ if !starts_char(b) => 0,
        0xF0.. => 2,
        _ => 1,
    }
}

impl SourceFile {
    pub fn new(path: String, text: String) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut checkpoints = Vec::new();
        if !text.is_ascii() {
            let (mut chars, mut units) = (0u32, 0u32);
            for block in text.as_bytes().chunks(CHECKPOINT) {
                checkpoints.push((chars, units));
                chars += block.iter().filter(|b| starts_char(**b)).count() as u32;
                units += block.iter().map(|b| utf16_units(*b)).sum::<u32>();
            }
            checkpoints.push((chars, units));
        }
        SourceFile {
            path,
            text,
            line_starts,
            checkpoints,
        }
    }

    /// 0-based line of a byte offset, and the byte offset where that line starts.
    pub fn line_start(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        (line, self.line_starts[line])
    }

    /// Byte offset where 0-based `line` starts (the text's end past the last line).
    pub fn line_offset(&self, line: usize) -> usize {
        self.line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len())
    }

    pub fn line_count(&self) -> usize {
        self.line_starts.len()
    }

    /// `offset` clamped to the text and moved back to a character boundary.
    pub fn clamp(&self, offset: usize) -> usize {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// Characters and UTF-16 code units in the text before byte `offset`
    /// (a character boundary).
    fn counts_before(&self, offset: usize) -> (usize, usize) {
        if self.checkpoints.is_empty() {
            return (offset, offset);
        }
        let block = offset / CHECKPOINT;
        let (chars, units) = self.checkpoints[block];
        let rest = &self.text.as_bytes()[block * CHECKPOINT..offset];
        (
            chars as usize + rest.iter().filter(|b| starts_char(**b)).count(),
            units as usize + rest.iter().map(|b| utf16_units(*b) as usize).sum::<usize>(),
        )
    }

    /// 0-based line and 0-based column in characters of a byte offset.
    pub fn line_char(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let (line, start) = self.line_start(offset);
        (
            line,
            self.counts_before(offset).0 - self.counts_before(start).0,
        )
    }

    /// 0-based line and 0-based column in UTF-16 code units (LSP positions).
    pub fn line_utf16(&self, offset: usize) -> (usize, usize) {
        let offset = self.clamp(offset);
        let (line, start) = self.line_start(offset);
        (
            line,
            self.counts_before(offset).1 - self.counts_before(start).1,
        )
    }

    /// The byte offset of 0-based `line` and UTF-16 column `units`; a column
    /// past the line's end gives the end, one inside a character its start.
    pub fn offset_of_utf16(&self, line: usize, units: usize) -> usize {
        if line >= self.line_count() {
            return self.text.len();
        }
        let start = self.line_offset(line);
        let end = self.line_offset(line + 1);
        let mut seen = 0;
        for (i, c) in self.text[start..end].char_indices() {
            if c == '\n' || seen + c.len_utf16() > units {
                return start + i;
            }
            seen += c.len_utf16();
        }
        end
    }
}

impl Sources {
    pub fn add(&mut self, path: String, text: String) -> FileId {
        self.files.push(SourceFile::new(path, text));
        self.files.len() - 1
    }

    pub fn path(&self, id: FileId) -> &str {
        self.files.get(id).map_or("<unknown>", |f| f.path.as_str())
    }

    pub fn text(&self, id: FileId) -> &str {
        self.files.get(id).map_or("", |f| f.text.as_str())
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (u32, u32) {
        let Some(file) = self.files.get(id) else {
            return (1, 1);
        };
        let (line, col) = file.line_char(offset);
        (line as u32 + 1, col as u32 + 1)
    }
}

/// `text` with characters a reader cannot see (controls, zero-width and
/// bidirectional marks, unusual spaces) written as `\u{..}` escapes, so a
/// message about them shows what is there.
pub fn escape_invisible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(invisible) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Messages quote what the user wrote; invisible characters in it are escaped.
fn visible(text: String) -> String {
    match escape_invisible(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(escaped) => escaped,
    }
}

/// Whether `c` prints as nothing or as plain space (a space itself does not count).
pub fn invisible(c: char) -> bool {
    c != ' '
        && (c.is_control()
            || c.is_whitespace()
            || matches!(c,
                '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
                | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
                | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}' | '\u{e0000}'..='\u{e0fff}'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A located message inside a diagnostic.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    pub file: FileId,
    pub span: Span,
    pub message: String,
}

impl Label {
    pub fn new(file: FileId, span: Span, message: impl Into<String>) -> Label {
        Label {
            file,
            span,
            message: visible(message.into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: String,
    /// Other diagnostics may follow from this one (a failed import, bad
    /// `classes`, a size limit): it is listed first.
    pub root_cause: bool,
    /// Concrete changes that resolve it (editors offer them as code actions).
    pub fixes: Vec<Fix>,
}

/// A change that resolves a diagnostic: the help's replacement, as edits.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    pub title: String,
    pub edits: Vec<Edit>,
}

/// Replace `span` of `file` by `text` (an insertion when the span is empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Edit {
    pub file: FileId,
    pub span: Span,
    pub text: String,
}

impl Fix {
    /// A fix made of one replacement.
    pub fn replace(
        title: impl Into<String>,
        file: FileId,
        span: Span,
        text: impl Into<String>,
    ) -> Fix {
        Fix {
            title: title.into(),
            edits: vec![Edit {
                file,
                span,
                text: text.into(),
            }],
        }
    }
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>, primary: Label) -> Diagnostic {
        Diagnostic {
            code,
            message: visible(message.into()),
            primary,
            secondary: Vec::new(),
            help: String::new(),
            root_cause: false,
            fixes: Vec::new(),
        }
    }

    pub fn fix(mut self, fix: Fix) -> Diagnostic {
        self.fixes.push(fix);
        self
    }

    /// Mark as a root cause: listed before the diagnostics it may explain.
    pub fn root_cause(mut self) -> Diagnostic {
        self.root_cause = true;
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = visible(help.into());
        self
    }

    pub fn with(mut self, label: Label) -> Diagnostic {
        self.secondary.push(label);
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }
}

macro_rules! codes {
    ($( $variant:ident = $code:literal, $title:literal; )*) => {
        /// Stable diagnostic codes. `E` codes are errors, `W` codes warnings.
        /// Each has a page in `docs/diagnostics/<CODE>.md` (`pnnc explain CODE`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code { $( $variant, )* }

        impl Code {
            pub const ALL: &'static [Code] = &[ $( Code::$variant, )* ];

            pub fn as_str(self) -> &'static str {
                match self { $( Code::$variant => $code, )* }
            }

            /// One-line summary.
            pub fn title(self) -> &'static str {
                match self { $( Code::$variant => $title, )* }
            }

            /// The full explanation page (the same text as `docs/diagnostics/`).
            pub fn explanation(self) -> &'static str {
                match self { $( Code::$variant => include_str!(concat!("../../docs/diagnostics/", $code, ".md")), )* }
            }
        }
    };
}

codes! {
    Syntax = "E0001", "syntax error";
    ImportFailed = "E0002", "imported file cannot be read";
    ImportCycle = "E0003", "import cycle";
    MissingSection = "E0004", "required section missing";
    Duplicate = "E0005", "defined twice";
    NotAllowedInImport = "E0006", "section not allowed in an imported file";
    NonHeOp = "E0100", "operation cannot run under HE";
    UnknownName = "E0101", "unknown name";
    UnknownArgument = "E0200", "unknown or extra argument";
    MissingArgument = "E0201", "missing argument";
    WrongType = "E0202", "wrong type";
    OutOfRange = "E0203", "value out of range";
    ShapeMismatch = "E0300", "shape mismatch";
    TooLarge = "E0301", "model too large";
    RecursiveBlock = "E0400", "recursive block";
    DepthBudget = "E0500", "depth budget exceeded";
    BadDataSet = "E0600", "invalid data set";
    HighDegreeNoBoundary = "W0001", "high degree without boundary loss";
    PenaltyAboveRange = "W0002", "penalty threshold above the fit range";
    UnfoldableBatchNorm = "W0003", "batchnorm cannot be folded";
    DropoutAtInference = "W0004", "dropout is ignored at inference";
}

impl Code {
    pub fn severity(self) -> Severity {
        if self.as_str().starts_with('W') {
            Severity::Warning
        } else {
            Severity::Error
        }
    }

    /// Look a code up by its text, case-insensitively (`e0100` works).
    pub fn parse(text: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_gives_lines_and_character_columns() {
        let mut sources = Sources::default();
        let text = "ab\nçé x\n\nlast";
        let id = sources.add("f.pnn".into(), text.into());
        assert_eq!(sources.line_col(id, 0), (1, 1));
        assert_eq!(sources.line_col(id, 2), (1, 3));
        assert_eq!(sources.line_col(id, 3), (2, 1));
        // `x` is after two 2-byte characters and a space: byte 8, column 4.
        assert_eq!(sources.line_col(id, text.find('x').unwrap()), (2, 4));
        // Inside a character: its start.
        assert_eq!(sources.line_col(id, 4), (2, 1));
        assert_eq!(sources.line_col(id, text.len()), (4, 5));
        assert_eq!(sources.line_col(id, text.len() + 10), (4, 5));
        assert_eq!(sources.files[id].line_count(), 4);
        assert_eq!(sources.files[id].line_offset(3), text.find("last").unwrap());
    }

    #[test]
    fn utf16_columns_count_astral_characters_twice() {
        // `𝒙` is 4 bytes, 1 character, 2 UTF-16 units; `é` 2 bytes, 1 unit.
        let long = "a".repeat(300);
        let text = format!("é𝒙 y\n{long}𝒙z\n");
        let f = SourceFile::new("f".into(), text.clone());
        let y = text.find('y').unwrap();
        assert_eq!(f.line_char(y), (0, 3));
        assert_eq!(f.line_utf16(y), (0, 4));
        assert_eq!(f.offset_of_utf16(0, 4), y);
        // Inside the surrogate pair: the character's start.
        assert_eq!(f.offset_of_utf16(0, 2), text.find('𝒙').unwrap());
        let z = text.find('z').unwrap();
        assert_eq!(f.line_utf16(z), (1, 302));
        assert_eq!(f.line_char(z), (1, 301));
        assert_eq!(f.offset_of_utf16(1, 302), z);
        // Past the line's end: the end of the line (before its newline).
        assert_eq!(f.offset_of_utf16(0, 99), text.find('\n').unwrap());
        assert_eq!(f.offset_of_utf16(9, 0), text.len());
        // Every offset agrees with a plain count.
        for (i, _) in text.char_indices() {
            let (line, start) = f.line_start(i);
            let units: usize = text[start..i].chars().map(char::len_utf16).sum();
            assert_eq!(f.line_utf16(i), (line, units), "offset {i}");
            assert_eq!(f.offset_of_utf16(line, units), i);
        }
    }

    #[test]
    fn invisible_characters_are_escaped_in_messages() {
        let d = Diagnostic::new(
            Code::Syntax,
            "unexpected `\u{200b}`",
            Label::new(0, Span::new(0, 1), "a\u{feff}b"),
        )
        .help("tab\there");
        assert_eq!(d.message, "unexpected `\\u{200b}`");
        assert_eq!(d.primary.message, "a\\u{feff}b");
        assert_eq!(d.help, "tab\\u{9}here");
        assert_eq!(escape_invisible("plain text, é"), "plain text, é");
    }
}

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
}

impl Sources {
    pub fn add(&mut self, path: String, text: String) -> FileId {
        self.files.push(SourceFile { path, text });
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
        let text = self.text(id);
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line as u32, col as u32)
    }
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
            message: message.into(),
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
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>, primary: Label) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            primary,
            secondary: Vec::new(),
            help: String::new(),
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = help.into();
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

//! Text -> AST. The grammar lives in `grammar/pnn.pest`.

pub mod ast;
mod fmt;
mod parser;

pub use ast::*;
pub use fmt::format;
pub use parser::{MAX_NESTING, SyntaxError, parse};

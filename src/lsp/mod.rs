//! `pnnc lsp`: a language server over stdio.
//!
//! [`analysis`] is the pure core (text in, diagnostics, hovers, definitions,
//! symbols, completions and code actions out; no I/O, no protocol), tested
//! on its own. [`server`] is the thin loop that keeps the open documents,
//! turns protocol messages into analysis calls and publishes diagnostics.
//! Positions are LSP's: lines and UTF-16 code units.

pub mod analysis;
pub mod server;
pub mod uri;

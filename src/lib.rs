//! pnnc: a compiler for polynomial neural networks that run under CKKS
//! homomorphic encryption.
//!
//! Pipeline (each stage reads the previous stage's output type):
//! `syntax` (text -> AST) -> `check` (AST -> [`ir::Model`] + diagnostics) ->
//! `train` (IR + data -> weights) / `he` (IR + weights -> circuit).
//! `data` loads data sets described by [`ir::DataSpec`]; `pipeline` runs the
//! stages in order (the library's train -> calibrate -> compile -> simulate,
//! recipes, tables and run folders); `lsp` serves the checker to editors;
//! `cli` parses arguments and prints.

pub mod check;
pub mod cli;
pub mod data;
pub mod export;
pub mod he;
pub mod ir;
pub mod lsp;
pub mod pipeline;
pub mod syntax;
pub mod train;

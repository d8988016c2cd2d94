//! The pipeline as a library: the paper's (B, P) tables, training recipes,
//! model transforms, run-folder rules, and the train -> calibrate -> compile
//! -> simulate sequence. `pnnc run`, `train`, `sweep` and `bench`, the
//! language server and the PyTorch export all call this module; `cli/` only
//! parses arguments and prints.

pub mod error;
pub mod evaluate;
pub mod folder;
pub mod limits;
pub mod ranges;
pub mod recipe;
pub mod run;
pub mod sweep;
pub mod train;
pub mod transform;

pub use error::Failure;

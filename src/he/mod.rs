//! HE compilation: checked IR + trained weights -> CKKS circuit.
//!
//! `reference` evaluates the unfolded IR (ground truth), `lower` folds it,
//! `build` assigns levels, ranges, parameters and rotations and emits the
//! `circuit` (format in docs/circuit-format.md), `simulate` evaluates a
//! circuit in plaintext, optionally with a CKKS noise model.

pub mod affine;
pub mod bootstrap;
pub mod build;
pub mod calibrate;
pub mod circuit;
pub mod io;
pub mod layout;
pub mod lower;
pub mod params;
pub mod poly;
pub mod reference;
pub mod samples;
pub mod simulate;
pub mod validate;

#[cfg(test)]
mod cli_tests;
#[cfg(test)]
mod tests;

pub use build::{CompileOptions, Compiled, Tuning, compile, compile_with};
pub use circuit::{Circuit, CircuitError, LoadedCircuit};

#[derive(Debug, thiserror::Error)]
pub enum HeError {
    #[error("weights for `{op}`: {message}")]
    Weights { op: String, message: String },
    #[error("model: {0}")]
    Model(String),
    #[error("data: {0}")]
    Data(String),
    #[error("activation `{op}`: {message}")]
    Range { op: String, message: String },
    #[error(
        "`{op}` produced a non-finite value (element {index}): the input is out of the range the network handles"
    )]
    NonFinite { op: String, index: usize },
    #[error("parameters: {0}")]
    Params(String),
    #[error(transparent)]
    Circuit(#[from] CircuitError),
}

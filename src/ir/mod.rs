//! The checked model IR: the only thing later stages (train, he, data) read.
//!
//! Plain data, serde-serializable. Produced by `check` from the AST; never refers
//! back to syntax. Source locations are kept only as [`SrcLoc`] so that later
//! stages can name where a layer came from in their own messages.

pub mod data_spec;
pub mod levels;
pub mod model;
pub mod value;
pub mod weights;

pub use data_spec::*;
pub use model::*;
pub use value::Value;
pub use weights::{Checkpoint, Normalization, Tensor, WeightsError};

//! Training: the network built from a checked model, its kernels, and the
//! initial polynomial fits. All tensor-library code lives in [`backend`].

pub mod backend;
pub mod bench;
pub mod error;
pub mod fit;
pub mod models;

pub use backend::network::{Network, NetworkOf, NetworkOptions, ParamGroup, ParamInfo, StepOutput};
pub use error::TrainError;

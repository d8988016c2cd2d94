//! Training: the network built from a checked model, its kernels, and the
//! initial polynomial fits (all tensor-library code lives in [`backend`]);
//! optimizers, schedules, clipping and the training loop above it.

mod adapter;
pub mod backend;
pub mod bench;
pub mod clip;
pub mod error;
pub mod fit;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod run;
pub mod schedule;

pub use backend::network::{Network, NetworkOf, NetworkOptions, ParamGroup, ParamInfo, StepOutput};
pub use error::TrainError;

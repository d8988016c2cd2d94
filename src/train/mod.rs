//! Training: lowering of checked models onto the tensor backend, optimizers,
//! schedules, clipping and the training loop.

pub mod clip;
pub mod metrics;
pub mod optim;
pub mod run;
pub mod schedule;

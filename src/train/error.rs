//! Errors of the training backend.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("layer `{op}`: {message}")]
    Shape { op: String, message: String },
    #[error("layer `{op}`: cannot fit the initial polynomial: {source}")]
    Fit {
        op: String,
        source: crate::train::fit::FitError,
    },
    #[error("input batch: {0}")]
    Input(String),
    #[error("weights: {0}")]
    Weights(String),
}

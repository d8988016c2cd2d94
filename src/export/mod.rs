//! Exports of a checked model to other engines.
//!
//! [`torch`]: a folder that trains the model with PyTorch (one GPU, several, or a
//! cluster under `torchrun`) with pnnc's semantics, and writes pnnc's run folder,
//! so that the weights come back to `pnnc eval`, `compile` and `he-run` unchanged.

pub mod torch;

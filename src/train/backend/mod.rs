//! The tensor backend: our differentiable kernels with hand-written backward
//! passes over plain row-major buffers, made dfdx ops in [`ops`] (dfdx holds
//! the tensors and the tape and runs the reverse pass), and the
//! [`network::Network`] that builds a training step from those ops. All dfdx
//! use stays in this module. Everything is generic over [`real::Real`] so
//! that gradient checks run in f64.

pub mod batchnorm;
pub mod boundary;
pub mod concat;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod network;
pub mod ops;
pub mod poly;
pub mod pool;
pub mod real;

#[cfg(test)]
mod gradcheck;

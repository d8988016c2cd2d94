//! The tensor backend: differentiable kernels with hand-written backward
//! passes over plain row-major buffers, and the [`network::Network`] that
//! chains them with an explicit reverse pass over the (static) layer graph.
//! Everything is generic over [`real::Real`] so that gradient checks run in f64.

pub mod batchnorm;
pub mod boundary;
pub mod conv;
pub mod dense;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod network;
pub mod poly;
pub mod pool;
pub mod real;

#[cfg(test)]
mod gradcheck;

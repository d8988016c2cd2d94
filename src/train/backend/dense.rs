//! Fully connected layer: y[b, o] = sum_i x[b, i] w[o, i] + bias[o].

use super::matmul::matmul;
use super::real::Real;

pub fn dense_forward<T: Real>(
    x: &[T],
    batch: usize,
    in_f: usize,
    out_f: usize,
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    matmul(batch, out_f, in_f, x, false, w, true, y, false, true);
    if let Some(b) = bias {
        for row in y.chunks_mut(out_f) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += *bv;
            }
        }
    }
}

/// Adds the gradients into `dx` (when given), `dw` and `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn dense_backward<T: Real>(
    x: &[T],
    batch: usize,
    in_f: usize,
    out_f: usize,
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    dbias: Option<&mut [T]>,
) {
    matmul(out_f, in_f, batch, dy, true, x, false, dw, true, true);
    if let Some(db) = dbias {
        for row in dy.chunks(out_f) {
            for (d, g) in db.iter_mut().zip(row) {
                *d += *g;
            }
        }
    }
    if let Some(dx) = dx {
        matmul(batch, in_f, out_f, dy, false, w, false, dx, true, true);
    }
}

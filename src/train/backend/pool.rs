//! Average pooling (no padding) and global average pooling, per plane.

use super::real::Real;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeom {
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
}

impl PoolGeom {
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        let [kh, kw] = self.kernel;
        let [sh, sw] = self.stride;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 || self.in_h < kh || self.in_w < kw {
            return None;
        }
        Some(((self.in_h - kh) / sh + 1, (self.in_w - kw) / sw + 1))
    }
}

pub fn avgpool_forward<T: Real>(g: &PoolGeom, x: &[T], y: &mut [T]) {
    let (oh, ow) = g.out_hw().expect("pool geometry validated at build time");
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let inv = T::from_f64(1.0 / (kh * kw) as f64);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(g.in_h * g.in_w))
        .for_each(|(yp, xp)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = T::ZERO;
                    for i in 0..kh {
                        let row = (oy * sh + i) * g.in_w + ox * sw;
                        for v in &xp[row..row + kw] {
                            s += *v;
                        }
                    }
                    yp[oy * ow + ox] = s * inv;
                }
            }
        });
}

/// Adds the input gradient into `dx`.
pub fn avgpool_backward<T: Real>(g: &PoolGeom, dy: &[T], dx: &mut [T]) {
    let (oh, ow) = g.out_hw().expect("pool geometry validated at build time");
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let inv = T::from_f64(1.0 / (kh * kw) as f64);
    dx.par_chunks_mut(g.in_h * g.in_w)
        .zip(dy.par_chunks(oh * ow))
        .for_each(|(dxp, dyp)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    let gv = dyp[oy * ow + ox] * inv;
                    for i in 0..kh {
                        let row = (oy * sh + i) * g.in_w + ox * sw;
                        for d in &mut dxp[row..row + kw] {
                            *d += gv;
                        }
                    }
                }
            }
        });
}

/// Mean of each plane of `spatial` elements.
pub fn global_avgpool_forward<T: Real>(x: &[T], spatial: usize, y: &mut [T]) {
    let inv = T::from_f64(1.0 / spatial as f64);
    for (o, plane) in y.iter_mut().zip(x.chunks(spatial)) {
        *o = plane.iter().copied().sum::<T>() * inv;
    }
}

pub fn global_avgpool_backward<T: Real>(dy: &[T], spatial: usize, dx: &mut [T]) {
    let inv = T::from_f64(1.0 / spatial as f64);
    for (g, plane) in dy.iter().zip(dx.chunks_mut(spatial)) {
        let v = *g * inv;
        for d in plane {
            *d += v;
        }
    }
}

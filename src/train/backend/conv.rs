//! 2-D convolution (NCHW) by im2col + gemm, threaded over samples.

use super::matmul::matmul;
use super::real::Real;
use rayon::prelude::*;

/// Shape of one convolution; all sizes exclude the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// Sample groups the weight gradient is split into: fixed, so the sum order
/// (and so the result) does not depend on the thread count.
const WEIGHT_GRAD_GROUPS: usize = 16;

impl ConvGeom {
    /// Output (height, width), or None when the kernel does not fit.
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        let h = self.in_h + 2 * self.padding[0];
        let w = self.in_w + 2 * self.padding[1];
        if self.kernel[0] == 0 || self.kernel[1] == 0 || self.stride[0] == 0 || self.stride[1] == 0
        {
            return None;
        }
        if h < self.kernel[0] || w < self.kernel[1] {
            return None;
        }
        Some((
            (h - self.kernel[0]) / self.stride[0] + 1,
            (w - self.kernel[1]) / self.stride[1] + 1,
        ))
    }
    fn out_hw_unchecked(&self) -> (usize, usize) {
        self.out_hw()
            .expect("conv geometry validated at build time")
    }
    pub fn in_len(&self) -> usize {
        self.in_c * self.in_h * self.in_w
    }
    pub fn out_len(&self) -> usize {
        let (h, w) = self.out_hw_unchecked();
        self.out_c * h * w
    }
    /// Rows of the im2col matrix: C * kh * kw.
    pub fn patch_len(&self) -> usize {
        self.in_c * self.kernel[0] * self.kernel[1]
    }
    pub fn weight_len(&self) -> usize {
        self.out_c * self.patch_len()
    }
}

/// Source index in the padded input for each (row, output position), or None for padding.
fn for_each_patch_entry(g: &ConvGeom, mut f: impl FnMut(usize, Option<usize>)) {
    let (oh, ow) = g.out_hw_unchecked();
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let mut dst = 0;
    for c in 0..g.in_c {
        for i in 0..kh {
            for j in 0..kw {
                for oy in 0..oh {
                    let y = (oy * sh + i) as isize - ph as isize;
                    for ox in 0..ow {
                        let x = (ox * sw + j) as isize - pw as isize;
                        let src =
                            if y >= 0 && x >= 0 && (y as usize) < g.in_h && (x as usize) < g.in_w {
                                Some((c * g.in_h + y as usize) * g.in_w + x as usize)
                            } else {
                                None
                            };
                        f(dst, src);
                        dst += 1;
                    }
                }
            }
        }
    }
}

fn im2col<T: Real>(g: &ConvGeom, x: &[T], cols: &mut [T]) {
    for_each_patch_entry(g, |dst, src| {
        cols[dst] = match src {
            Some(s) => x[s],
            None => T::ZERO,
        }
    });
}

fn col2im_add<T: Real>(g: &ConvGeom, cols: &[T], dx: &mut [T]) {
    for_each_patch_entry(g, |dst, src| {
        if let Some(s) = src {
            dx[s] += cols[dst];
        }
    });
}

pub fn conv_forward<T: Real>(
    g: &ConvGeom,
    x: &[T],
    batch: usize,
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    let (oh, ow) = g.out_hw_unchecked();
    let spatial = oh * ow;
    let patch = g.patch_len();
    assert_eq!(x.len(), batch * g.in_len());
    assert_eq!(y.len(), batch * g.out_len());
    y.par_chunks_mut(g.out_len())
        .zip(x.par_chunks(g.in_len()))
        .for_each_init(
            || vec![T::ZERO; patch * spatial],
            |cols, (yn, xn)| {
                im2col(g, xn, cols);
                matmul(
                    g.out_c, spatial, patch, w, false, cols, false, yn, false, false,
                );
                if let Some(b) = bias {
                    for (o, row) in yn.chunks_mut(spatial).enumerate() {
                        for v in row {
                            *v += b[o];
                        }
                    }
                }
            },
        );
}

/// Adds the gradients into `dx` (when given), `dw` and `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward<T: Real>(
    g: &ConvGeom,
    x: &[T],
    batch: usize,
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    dbias: Option<&mut [T]>,
) {
    let (oh, ow) = g.out_hw_unchecked();
    let spatial = oh * ow;
    let patch = g.patch_len();
    let (in_len, out_len) = (g.in_len(), g.out_len());
    if batch == 0 {
        return;
    }
    let group = batch.div_ceil(WEIGHT_GRAD_GROUPS);
    let work = |xs: &[T], dys: &[T], dxs: Option<&mut [T]>| -> Vec<T> {
        let mut dw_part = vec![T::ZERO; g.weight_len()];
        let mut cols = vec![T::ZERO; patch * spatial];
        let mut dcols = vec![T::ZERO; patch * spatial];
        let mut dxs = dxs;
        for n in 0..xs.len() / in_len {
            let xn = &xs[n * in_len..(n + 1) * in_len];
            let dyn_ = &dys[n * out_len..(n + 1) * out_len];
            im2col(g, xn, &mut cols);
            matmul(
                g.out_c,
                patch,
                spatial,
                dyn_,
                false,
                &cols,
                true,
                &mut dw_part,
                true,
                false,
            );
            if let Some(dxs) = dxs.as_deref_mut() {
                matmul(
                    patch, spatial, g.out_c, w, true, dyn_, false, &mut dcols, false, false,
                );
                col2im_add(g, &dcols, &mut dxs[n * in_len..(n + 1) * in_len]);
            }
        }
        dw_part
    };
    let partials: Vec<Vec<T>> = match dx {
        Some(dx) => dx
            .par_chunks_mut(group * in_len)
            .zip(x.par_chunks(group * in_len))
            .zip(dy.par_chunks(group * out_len))
            .map(|((dxs, xs), dys)| work(xs, dys, Some(dxs)))
            .collect(),
        None => x
            .par_chunks(group * in_len)
            .zip(dy.par_chunks(group * out_len))
            .map(|(xs, dys)| work(xs, dys, None))
            .collect(),
    };
    for part in partials {
        for (d, p) in dw.iter_mut().zip(part) {
            *d += p;
        }
    }
    if let Some(db) = dbias {
        for dyn_ in dy.chunks(out_len) {
            for (o, row) in dyn_.chunks(spatial).enumerate() {
                db[o] += row.iter().copied().sum::<T>();
            }
        }
    }
}

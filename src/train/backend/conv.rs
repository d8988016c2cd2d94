//! 2-D convolution (NCHW) by im2col + gemm over groups of samples: one
//! large product per group instead of one small one per sample.

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

/// Samples per forward group: the batch is split into groups of this many
/// samples. Each group runs one im2col over its samples and one GEMM, and
/// the groups run in parallel. Two samples keep a group's column matrix
/// small enough to stay in cache (measured on ResNet-20: 1, 2, 3, 4 and 8
/// samples; 2 was fastest). The backward works per sample within chunks of
/// [`BACKWARD_CHUNK`] samples.
const GROUP_SAMPLES: usize = 2;

fn group_size(_batch: usize) -> usize {
    GROUP_SAMPLES
}

/// For one kernel offset `k` and stride `s` with padding `p`: the output
/// positions `lo..hi` whose input index `o * s + k - p` falls inside `0..len`.
fn valid_range(out: usize, len: usize, k: usize, s: usize, p: usize) -> (usize, usize) {
    // o * s + k >= p  <=>  o >= ceil((p - k) / s)
    let lo = if k >= p { 0 } else { (p - k).div_ceil(s) };
    // o * s + k - p < len  <=>  o * s < len + p - k
    let hi = if len + p <= k {
        0
    } else {
        (len + p - k).div_ceil(s)
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// im2col of `n` samples into `cols[patch, n * spatial]` (column = sample,
/// output position), zeros for padding. Row by row, with contiguous copies
/// where the stride is 1.
fn im2col_group<T: Real>(g: &ConvGeom, xs: &[T], n: usize, cols: &mut [T]) {
    let (oh, ow) = g.out_hw_unchecked();
    let spatial = oh * ow;
    let width = n * spatial;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let in_plane = g.in_h * g.in_w;
    // Unit strides and output rows as wide as input rows: each kernel
    // offset's plane is the input plane shifted, one copy plus border fixes.
    let contiguous = sh == 1 && sw == 1 && ow == g.in_w;
    for c in 0..g.in_c {
        for i in 0..kh {
            let (y_lo, y_hi) = valid_range(oh, g.in_h, i, sh, ph);
            for j in 0..kw {
                let (x_lo, x_hi) = valid_range(ow, g.in_w, j, sw, pw);
                let row = &mut cols[((c * kh + i) * kw + j) * width..][..width];
                for s in 0..n {
                    let plane = &xs[s * g.in_len() + c * in_plane..][..in_plane];
                    let dst = &mut row[s * spatial..][..spatial];
                    if contiguous {
                        shifted_plane_copy(dst, plane, ow, (y_lo, y_hi), (x_lo, x_hi), i, j, g);
                        continue;
                    }
                    for oy in 0..oh {
                        let out_row = &mut dst[oy * ow..][..ow];
                        if oy < y_lo || oy >= y_hi {
                            out_row.fill(T::ZERO);
                            continue;
                        }
                        let src_row = &plane[(oy * sh + i - ph) * g.in_w..][..g.in_w];
                        out_row[..x_lo].fill(T::ZERO);
                        out_row[x_hi..].fill(T::ZERO);
                        if x_lo == x_hi {
                            continue;
                        }
                        let x0 = x_lo * sw + j - pw;
                        if sw == 1 {
                            out_row[x_lo..x_hi].copy_from_slice(&src_row[x0..x0 + (x_hi - x_lo)]);
                        } else {
                            for (o, v) in out_row[x_lo..x_hi]
                                .iter_mut()
                                .zip(src_row[x0..].iter().step_by(sw))
                            {
                                *o = *v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One im2col plane for unit strides with `ow == in_w`: output position
/// (oy, ox) reads input (oy + i - ph, ox + j - pw), zero outside. The valid
/// rows are one contiguous shifted copy; the columns that copy wrapped in
/// from neighbouring rows, and the invalid rows, are then zeroed.
#[allow(clippy::too_many_arguments)]
#[inline]
fn shifted_plane_copy<T: Real>(
    dst: &mut [T],
    plane: &[T],
    ow: usize,
    (y_lo, y_hi): (usize, usize),
    (x_lo, x_hi): (usize, usize),
    i: usize,
    j: usize,
    g: &ConvGeom,
) {
    if y_lo >= y_hi || x_lo >= x_hi {
        dst.fill(T::ZERO);
        return;
    }
    dst[..y_lo * ow + x_lo].fill(T::ZERO);
    let start = y_lo * ow + x_lo;
    let end = (y_hi - 1) * ow + x_hi;
    // Input index of output index `start` (row y_lo + i - ph, column x_lo + j - pw).
    let src_start = (y_lo + i - g.padding[0]) * g.in_w + x_lo + j - g.padding[1];
    dst[start..end].copy_from_slice(&plane[src_start..][..end - start]);
    for oy in y_lo..y_hi {
        let r = &mut dst[oy * ow..][..ow];
        r[..x_lo].fill(T::ZERO);
        r[x_hi..].fill(T::ZERO);
    }
    dst[end..].fill(T::ZERO);
}

/// The adjoint of [`im2col_group`]: adds each column entry into `dxs`.
fn col2im_group_add<T: Real>(g: &ConvGeom, dcols: &[T], n: usize, dxs: &mut [T]) {
    let (oh, ow) = g.out_hw_unchecked();
    let spatial = oh * ow;
    let width = n * spatial;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let in_plane = g.in_h * g.in_w;
    let in_len = g.in_len();
    for c in 0..g.in_c {
        for i in 0..kh {
            let (y_lo, y_hi) = valid_range(oh, g.in_h, i, sh, ph);
            for j in 0..kw {
                let (x_lo, x_hi) = valid_range(ow, g.in_w, j, sw, pw);
                if x_lo == x_hi {
                    continue;
                }
                let row = &dcols[((c * kh + i) * kw + j) * width..][..width];
                for s in 0..n {
                    let plane = &mut dxs[s * in_len + c * in_plane..][..in_plane];
                    let src = &row[s * spatial..][..spatial];
                    for oy in y_lo..y_hi {
                        let in_row = &src[oy * ow..][..ow];
                        let dst_row = &mut plane[(oy * sh + i - ph) * g.in_w..][..g.in_w];
                        let x0 = x_lo * sw + j - pw;
                        let src_part = &in_row[x_lo..x_hi];
                        if sw == 1 {
                            // Contiguous: the compiler vectorises this add.
                            for (d, v) in dst_row[x0..][..src_part.len()].iter_mut().zip(src_part) {
                                *d += *v;
                            }
                        } else {
                            for (v, d) in src_part.iter().zip(dst_row[x0..].iter_mut().step_by(sw))
                            {
                                *d += *v;
                            }
                        }
                    }
                }
            }
        }
    }
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
    let (in_len, out_len) = (g.in_len(), g.out_len());
    assert_eq!(x.len(), batch * in_len);
    assert_eq!(y.len(), batch * out_len);
    if batch == 0 {
        return;
    }
    let group = group_size(batch);
    y.par_chunks_mut(group * out_len)
        .zip(x.par_chunks(group * in_len))
        // Scratch buffers live per rayon split and are fully overwritten
        // for each group (im2col writes every entry, the product overwrites).
        .for_each_init(
            || (Vec::new(), Vec::new()),
            |(cols, prod): &mut (Vec<T>, Vec<T>), (ys, xs)| {
                let n = xs.len() / in_len;
                let width = n * spatial;
                cols.resize(patch * width, T::ZERO);
                im2col_group(g, xs, n, cols);
                // prod[o, (sample, position)] = W[o, :] . cols[:, (sample, position)]
                prod.resize(g.out_c * width, T::ZERO);
                matmul(
                    g.out_c, width, patch, w, false, cols, false, prod, false, false,
                );
                for (o, prod_row) in prod[..g.out_c * width].chunks(width).enumerate() {
                    let b = bias.map_or(T::ZERO, |b| b[o]);
                    for (s, src) in prod_row.chunks(spatial).enumerate() {
                        let dst = &mut ys[s * out_len + o * spatial..][..spatial];
                        for (d, v) in dst.iter_mut().zip(src) {
                            *d = *v + b;
                        }
                    }
                }
            },
        );
}

/// Samples per backward chunk: the batch is split into chunks of this many
/// samples (a constant, so the weight gradient is summed in the same order
/// for any thread count). Each chunk keeps one weight-gradient partial that
/// its samples' GEMMs accumulate into; the partials are summed in chunk
/// order. Within a chunk the work is per sample, so the column matrices stay
/// one sample large (cache-sized) however large the chunk.
const BACKWARD_CHUNK: usize = 8;

/// For stride-1 convolutions, the input gradient is itself a convolution:
/// dx[c, y, x] = sum over (o, i, j) of W[o, c, i, j] · dy[o, y + p - i, x + p - j],
/// i.e. dy convolved with the kernel flipped in space and transposed in
/// channels, with padding k - 1 - p. Returns that geometry and weight
/// (`[in_c, out_c * kh * kw]`), or None where the padding exceeds k - 1.
/// This replaces a GEMM with k = out_c and a col2im by an im2col of dy and
/// a GEMM with k = out_c * kh * kw whose output is dx itself.
fn transposed_conv<T: Real>(g: &ConvGeom, w: &[T]) -> Option<(ConvGeom, Vec<T>)> {
    let [kh, kw] = g.kernel;
    if g.stride != [1, 1] || g.padding[0] >= kh || g.padding[1] >= kw {
        return None;
    }
    let (oh, ow) = g.out_hw_unchecked();
    let gt = ConvGeom {
        in_c: g.out_c,
        in_h: oh,
        in_w: ow,
        out_c: g.in_c,
        kernel: [kh, kw],
        stride: [1, 1],
        padding: [kh - 1 - g.padding[0], kw - 1 - g.padding[1]],
    };
    let mut wt = vec![T::ZERO; w.len()];
    for o in 0..g.out_c {
        for c in 0..g.in_c {
            for i in 0..kh {
                for j in 0..kw {
                    let src = ((o * g.in_c + c) * kh + i) * kw + j;
                    let dst = ((c * g.out_c + o) * kh + (kh - 1 - i)) * kw + (kw - 1 - j);
                    wt[dst] = w[src];
                }
            }
        }
    }
    Some((gt, wt))
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
    assert_eq!(x.len(), batch * in_len);
    assert_eq!(dy.len(), batch * out_len);
    if batch == 0 {
        return;
    }
    let transposed = dx.as_ref().and_then(|_| transposed_conv(g, w));
    // Scratch column matrices live per rayon split; im2col overwrites every
    // entry and the non-accumulating GEMM overwrites its output.
    type Scratch<T> = (Vec<T>, Vec<T>);
    let work = |scratch: &mut Scratch<T>,
                xs: &[T],
                dys: &[T],
                dxs: Option<&mut [T]>|
     -> (Vec<T>, Vec<T>) {
        let (cols, tcols) = scratch;
        let mut dw_part = vec![T::ZERO; g.weight_len()];
        let mut db_part = vec![T::ZERO; g.out_c];
        cols.resize(patch * spatial, T::ZERO);
        for (xn, dyn_) in xs.chunks(in_len).zip(dys.chunks(out_len)) {
            for (d, row) in db_part.iter_mut().zip(dyn_.chunks(spatial)) {
                *d += row.iter().copied().sum::<T>();
            }
            im2col_group(g, xn, 1, cols);
            // dW[o, p] += sum over positions of dy[o, pos] * cols[p, pos]
            matmul(
                g.out_c,
                patch,
                spatial,
                dyn_,
                false,
                cols,
                true,
                &mut dw_part,
                true,
                false,
            );
        }
        let Some(dxs) = dxs else {
            return (dw_part, db_part);
        };
        let in_spatial = g.in_h * g.in_w;
        for (dxn, dyn_) in dxs.chunks_mut(in_len).zip(dys.chunks(out_len)) {
            match &transposed {
                Some((gt, wt)) => {
                    let tpatch = gt.patch_len();
                    tcols.resize(tpatch * in_spatial, T::ZERO);
                    im2col_group(gt, dyn_, 1, tcols);
                    // dx[c, pos] += sum_q Wt[c, q] * tcols[q, pos]
                    matmul(
                        g.in_c, in_spatial, tpatch, wt, false, tcols, false, dxn, true, false,
                    );
                }
                None => {
                    // dcols[p, pos] = sum_o W[o, p] * dy[o, pos]; reuses `cols`.
                    matmul(
                        patch, spatial, g.out_c, w, true, dyn_, false, cols, false, false,
                    );
                    col2im_group_add(g, cols, 1, dxn);
                }
            }
        }
        (dw_part, db_part)
    };
    let chunk = BACKWARD_CHUNK;
    let partials: Vec<(Vec<T>, Vec<T>)> = match dx {
        Some(dx) => dx
            .par_chunks_mut(chunk * in_len)
            .zip(x.par_chunks(chunk * in_len))
            .zip(dy.par_chunks(chunk * out_len))
            .map_init(Scratch::default, |s, ((dxs, xs), dys)| {
                work(s, xs, dys, Some(dxs))
            })
            .collect(),
        None => x
            .par_chunks(chunk * in_len)
            .zip(dy.par_chunks(chunk * out_len))
            .map_init(Scratch::default, |s, (xs, dys)| work(s, xs, dys, None))
            .collect(),
    };
    let mut dbias = dbias;
    for (dw_part, db_part) in partials {
        for (d, p) in dw.iter_mut().zip(dw_part) {
            *d += p;
        }
        if let Some(db) = dbias.as_deref_mut() {
            for (d, p) in db.iter_mut().zip(db_part) {
                *d += p;
            }
        }
    }
}

/// Grouped convolution: `g` is one group's geometry (`in_c` and `out_c` per
/// group) and `groups` groups run side by side. Output channels of group k
/// read input channels `k * g.in_c..(k + 1) * g.in_c` only; the weight is
/// `[groups * g.out_c, g.in_c, kh, kw]`, so each group's rows are contiguous.
/// One group is [`conv_forward`] itself.
pub fn grouped_forward<T: Real>(
    g: &ConvGeom,
    groups: usize,
    x: &[T],
    batch: usize,
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
) {
    if groups == 1 {
        return conv_forward(g, x, batch, w, bias, y);
    }
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let (wlen, mut xg, mut yg) = (g.weight_len(), Vec::new(), Vec::new());
    for k in 0..groups {
        gather(x, batch, groups * in_len, k * in_len, in_len, &mut xg);
        yg.resize(batch * out_len, T::ZERO);
        let b = bias.map(|b| &b[k * g.out_c..][..g.out_c]);
        conv_forward(g, &xg, batch, &w[k * wlen..][..wlen], b, &mut yg);
        scatter_add(&yg, batch, groups * out_len, k * out_len, out_len, y, false);
    }
}

/// The gradients of [`grouped_forward`], added into `dx` (when given), `dw`
/// and `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn grouped_backward<T: Real>(
    g: &ConvGeom,
    groups: usize,
    x: &[T],
    batch: usize,
    w: &[T],
    dy: &[T],
    mut dx: Option<&mut [T]>,
    dw: &mut [T],
    mut dbias: Option<&mut [T]>,
) {
    if groups == 1 {
        return conv_backward(g, x, batch, w, dy, dx, dw, dbias);
    }
    let (in_len, out_len, wlen) = (g.in_len(), g.out_len(), g.weight_len());
    let (mut xg, mut dyg, mut dxg) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..groups {
        gather(x, batch, groups * in_len, k * in_len, in_len, &mut xg);
        gather(dy, batch, groups * out_len, k * out_len, out_len, &mut dyg);
        dxg.clear();
        dxg.resize(batch * in_len, T::ZERO);
        let db = dbias
            .as_deref_mut()
            .map(|b| &mut b[k * g.out_c..][..g.out_c]);
        let dxs = dx.is_some().then_some(dxg.as_mut_slice());
        let (wk, dwk) = (&w[k * wlen..][..wlen], &mut dw[k * wlen..][..wlen]);
        conv_backward(g, &xg, batch, wk, &dyg, dxs, dwk, db);
        if let Some(dx) = dx.as_deref_mut() {
            scatter_add(&dxg, batch, groups * in_len, k * in_len, in_len, dx, true);
        }
    }
}

/// `out` = for each sample, `len` values at `offset` of its `stride`-long row.
fn gather<T: Real>(
    v: &[T],
    batch: usize,
    stride: usize,
    offset: usize,
    len: usize,
    out: &mut Vec<T>,
) {
    out.clear();
    for n in 0..batch {
        out.extend_from_slice(&v[n * stride + offset..][..len]);
    }
}

/// The inverse of [`gather`]: writes (or adds) each sample's `len` values.
fn scatter_add<T: Real>(
    part: &[T],
    batch: usize,
    stride: usize,
    offset: usize,
    len: usize,
    v: &mut [T],
    add: bool,
) {
    for n in 0..batch {
        let dst = &mut v[n * stride + offset..][..len];
        for (d, s) in dst.iter_mut().zip(&part[n * len..][..len]) {
            *d = if add { *d + *s } else { *s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (input index, weight index) of every in-bounds kernel tap of output
    /// (n, o, oy, ox), by the definition (zero padding = skipped taps).
    fn taps(
        g: &ConvGeom,
        n: usize,
        o: usize,
        oy: usize,
        ox: usize,
    ) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..g.in_c).flat_map(move |c| {
            (0..g.kernel[0]).flat_map(move |i| {
                (0..g.kernel[1]).filter_map(move |j| {
                    let iy = (oy * g.stride[0] + i).checked_sub(g.padding[0])?;
                    let ix = (ox * g.stride[1] + j).checked_sub(g.padding[1])?;
                    if iy >= g.in_h || ix >= g.in_w {
                        return None;
                    }
                    let xi = ((n * g.in_c + c) * g.in_h + iy) * g.in_w + ix;
                    let wi = ((o * g.in_c + c) * g.kernel[0] + i) * g.kernel[1] + j;
                    Some((xi, wi))
                })
            })
        })
    }

    /// Direct convolution by the definition, for comparison.
    fn direct(g: &ConvGeom, x: &[f64], batch: usize, w: &[f64]) -> Vec<f64> {
        let (oh, ow) = g.out_hw().unwrap();
        let mut y = vec![0.0; batch * g.out_len()];
        for n in 0..batch {
            for o in 0..g.out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let s: f64 = taps(g, n, o, oy, ox).map(|(xi, wi)| x[xi] * w[wi]).sum();
                        y[((n * g.out_c + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(n: usize, seed: f64) -> Vec<f64> {
        (0..n).map(|i| ((i as f64 + seed) * 0.713).sin()).collect()
    }

    fn geometries() -> Vec<ConvGeom> {
        let mut out = Vec::new();
        for (kernel, stride, padding) in [
            ([3, 3], [1, 1], [1, 1]),
            ([3, 2], [2, 1], [1, 1]),
            ([3, 3], [2, 2], [2, 0]),
            ([1, 1], [1, 1], [0, 0]),
            ([2, 3], [3, 2], [0, 2]),
            // Unit strides with output rows as wide as input rows (the
            // shifted-plane im2col), with invalid rows at one or both ends.
            ([3, 1], [1, 1], [0, 0]),
            ([2, 3], [1, 1], [2, 1]),
        ] {
            out.push(ConvGeom {
                in_c: 2,
                in_h: 5,
                in_w: 6,
                out_c: 3,
                kernel,
                stride,
                padding,
            });
        }
        out
    }

    #[test]
    fn grouped_forward_matches_direct_convolution() {
        // 37 samples: groups of 2 with a short last group.
        let batch = 37;
        for g in geometries() {
            let x = values(batch * g.in_len(), 1.0);
            let w = values(g.weight_len(), 2.0);
            let b = values(g.out_c, 3.0);
            let mut y = vec![0.0; batch * g.out_len()];
            conv_forward(&g, &x, batch, &w, Some(&b), &mut y);
            let want = direct(&g, &x, batch, &w);
            let (oh, ow) = g.out_hw().unwrap();
            for (i, (got, want)) in y.iter().zip(&want).enumerate() {
                let o = (i / (oh * ow)) % g.out_c;
                assert!(
                    (got - want - b[o]).abs() < 1e-12,
                    "{g:?} at {i}: {got} vs {want}"
                );
            }
        }
    }

    /// The adjoint by the definition: dx, dw and db of `sum(y * dy)`.
    fn direct_backward(
        g: &ConvGeom,
        x: &[f64],
        batch: usize,
        w: &[f64],
        dy: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (oh, ow) = g.out_hw().unwrap();
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; g.out_c]);
        for n in 0..batch {
            for o in 0..g.out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = dy[((n * g.out_c + o) * oh + oy) * ow + ox];
                        db[o] += d;
                        for (xi, wi) in taps(g, n, o, oy, ox) {
                            dx[xi] += w[wi] * d;
                            dw[wi] += x[xi] * d;
                        }
                    }
                }
            }
        }
        (dx, dw, db)
    }

    /// Both input-gradient paths (transposed convolution for stride 1 with
    /// padding below the kernel size, GEMM + col2im otherwise) and the
    /// chunked weight gradient, over a batch with a short last chunk.
    #[test]
    fn backward_matches_the_direct_adjoint() {
        let batch = 19;
        for g in geometries() {
            let x = values(batch * g.in_len(), 7.0);
            let w = values(g.weight_len(), 8.0);
            let dy = values(batch * g.out_len(), 9.0);
            // Start from non-zero gradients: the backward adds into them.
            let (mut dx, mut dw, mut db) =
                (vec![0.5; x.len()], vec![0.25; w.len()], vec![-1.0; g.out_c]);
            conv_backward(
                &g,
                &x,
                batch,
                &w,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            );
            let (want_dx, want_dw, want_db) = direct_backward(&g, &x, batch, &w, &dy);
            let close = |got: &[f64], want: &[f64], offset: f64, what: &str| {
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (a - b - offset).abs() < 1e-10,
                        "{g:?} {what}[{i}]: {a} vs {b}"
                    );
                }
            };
            close(&dx, &want_dx, 0.5, "dx");
            close(&dw, &want_dw, 0.25, "dw");
            close(&db, &want_db, -1.0, "db");
            assert_eq!(
                transposed_conv(&g, &w).is_some(),
                g.stride == [1, 1] && g.padding[0] < g.kernel[0] && g.padding[1] < g.kernel[1]
            );
        }
    }

    #[test]
    fn backward_is_the_same_for_any_thread_count() {
        // Stride 2 (GEMM + col2im) and stride 1 (transposed convolution).
        for g in [geometries()[1], geometries()[0]] {
            let batch = 37;
            let x: Vec<f32> = values(batch * g.in_len(), 4.0)
                .iter()
                .map(|v| *v as f32)
                .collect();
            let w: Vec<f32> = values(g.weight_len(), 5.0)
                .iter()
                .map(|v| *v as f32)
                .collect();
            let dy: Vec<f32> = values(batch * g.out_len(), 6.0)
                .iter()
                .map(|v| *v as f32)
                .collect();
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut dx = vec![0.0f32; x.len()];
                    let mut dw = vec![0.0f32; w.len()];
                    let mut db = vec![0.0f32; g.out_c];
                    conv_backward(
                        &g,
                        &x,
                        batch,
                        &w,
                        &dy,
                        Some(&mut dx),
                        &mut dw,
                        Some(&mut db),
                    );
                    (dx, dw, db)
                })
            };
            let one = run(1);
            for threads in [2, 3, 5] {
                assert_eq!(run(threads), one, "{threads} threads");
            }
        }
    }
}

//! Batch normalisation over the channel dimension of `[batch, C, S]` data
//! (S = product of the spatial dims, 1 for feature vectors).

use super::real::Real;
use rayon::prelude::*;

/// What the training forward leaves for the backward.
#[derive(Debug, Clone, Default)]
pub struct BnCache<T> {
    pub xhat: Vec<T>,
    pub inv_std: Vec<T>,
}

/// Independent f64 accumulators in the sums below: a single running sum is
/// one long dependency chain of adds (latency-bound); eight chains keep the
/// adder busy. The lanes are combined in a fixed order, so the result does
/// not depend on the thread count.
const LANES: usize = 8;

/// Sum over `r` of `f(value)`, in f64, with [`LANES`] accumulators.
#[inline]
fn lane_sum<T: Real>(r: &[T], f: impl Fn(f64) -> f64) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = r.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += f(v.to_f64());
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v.to_f64());
    }
    acc.iter().sum()
}

/// Sums over `r` of dy and of dy * xhat (the product taken in `T`, as the
/// single-chain version did), in f64, with [`LANES`] accumulators each.
#[inline]
fn lane_dy_sums<T: Real>(dy: &[T], xhat: &[T]) -> (f64, f64) {
    let (mut sdy, mut sdyx) = ([0.0f64; LANES], [0.0f64; LANES]);
    let mut gs = dy.chunks_exact(LANES);
    let mut hs = xhat.chunks_exact(LANES);
    for (g, h) in (&mut gs).zip(&mut hs) {
        for l in 0..LANES {
            sdy[l] += g[l].to_f64();
            sdyx[l] += (g[l] * h[l]).to_f64();
        }
    }
    for (l, (&g, &h)) in gs.remainder().iter().zip(hs.remainder()).enumerate() {
        sdy[l] += g.to_f64();
        sdyx[l] += (g * h).to_f64();
    }
    (sdy.iter().sum(), sdyx.iter().sum())
}

/// Channels per parallel task when each channel is one value per sample
/// (`s == 1`, the features of a dense layer).
const FEATURE_BLOCK: usize = 64;

/// Per-channel (mean, biased variance), in f64.
fn channel_stats<T: Real>(x: &[T], batch: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    if s == 1 {
        feature_stats(x, batch, c)
    } else {
        plane_stats(x, batch, c, s)
    }
}

/// [`channel_stats`] channel by channel (each channel a parallel task).
fn plane_stats<T: Real>(x: &[T], batch: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    let count = (batch * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let rows = || (0..batch).map(move |b| &x[(b * c + ch) * s..(b * c + ch + 1) * s]);
            let mean = rows().map(|r| lane_sum(r, |v| v)).sum::<f64>() / count;
            let var = rows()
                .map(|r| {
                    lane_sum(r, |v| {
                        let d = v - mean;
                        d * d
                    })
                })
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .collect()
}

/// [`channel_stats`] for `s == 1`. Walking one channel down the batch
/// touches one value per cache line (stride `c`); here a block of channels
/// is summed sample by sample, a contiguous (vectorised) add over the block.
/// Each channel's sums still run over the samples in order, the same adds
/// as the per-channel loop, so the statistics are unchanged (and do not
/// depend on the thread count).
fn feature_stats<T: Real>(x: &[T], batch: usize, c: usize) -> Vec<(f64, f64)> {
    let count = batch as f64;
    let blocks: Vec<Vec<(f64, f64)>> = (0..c.div_ceil(FEATURE_BLOCK))
        .into_par_iter()
        .map(|bi| {
            let cols = bi * FEATURE_BLOCK..((bi + 1) * FEATURE_BLOCK).min(c);
            let rows = || x.chunks_exact(c).take(batch).map(|row| &row[cols.clone()]);
            let mut sum = vec![0.0f64; cols.len()];
            for row in rows() {
                for (a, v) in sum.iter_mut().zip(row) {
                    *a += v.to_f64();
                }
            }
            let mean: Vec<f64> = sum.iter().map(|v| v / count).collect();
            let mut sq = vec![0.0f64; cols.len()];
            for row in rows() {
                for ((a, v), m) in sq.iter_mut().zip(row).zip(&mean) {
                    let d = v.to_f64() - m;
                    *a += d * d;
                }
            }
            mean.iter()
                .zip(&sq)
                .map(|(&m, &q)| (m, q / count))
                .collect()
        })
        .collect();
    blocks.concat()
}

/// Per-channel sums of dy and dy * xhat for `s == 1`, block by block as in
/// [`feature_stats`] (the same adds, in the same order, as the per-channel
/// loop of [`bn_backward`]).
fn feature_dy_sums<T: Real>(dy: &[T], xhat: &[T], batch: usize, c: usize) -> Vec<(f64, f64)> {
    let blocks: Vec<Vec<(f64, f64)>> = (0..c.div_ceil(FEATURE_BLOCK))
        .into_par_iter()
        .map(|bi| {
            let cols = bi * FEATURE_BLOCK..((bi + 1) * FEATURE_BLOCK).min(c);
            let mut sdy = vec![0.0f64; cols.len()];
            let mut sdyx = vec![0.0f64; cols.len()];
            for (g, h) in dy.chunks_exact(c).zip(xhat.chunks_exact(c)).take(batch) {
                let (g, h) = (&g[cols.clone()], &h[cols.clone()]);
                for (((a, p), &g), &h) in sdy.iter_mut().zip(sdyx.iter_mut()).zip(g).zip(h) {
                    *a += g.to_f64();
                    *p += (g * h).to_f64();
                }
            }
            sdy.into_iter().zip(sdyx).collect()
        })
        .collect();
    blocks.concat()
}

/// Training forward with batch statistics; updates the running statistics
/// as PyTorch does (momentum weights the new value; unbiased variance).
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_train<T: Real>(
    x: &[T],
    batch: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    eps: f64,
    momentum: f64,
    running_mean: &mut [T],
    running_var: &mut [T],
    y: &mut [T],
) -> BnCache<T> {
    let stats = channel_stats(x, batch, c, s);
    let count = batch * s;
    let inv_std: Vec<T> = stats
        .iter()
        .map(|&(_, v)| T::from_f64(1.0 / (v + eps).sqrt()))
        .collect();
    let mean: Vec<T> = stats.iter().map(|&(m, _)| T::from_f64(m)).collect();
    for (ch, &(m, v)) in stats.iter().enumerate() {
        let unbiased = if count > 1 {
            v * count as f64 / (count - 1) as f64
        } else {
            v
        };
        let rm = running_mean[ch].to_f64();
        let rv = running_var[ch].to_f64();
        running_mean[ch] = T::from_f64((1.0 - momentum) * rm + momentum * m);
        running_var[ch] = T::from_f64((1.0 - momentum) * rv + momentum * unbiased);
    }
    let mut xhat = vec![T::ZERO; x.len()];
    let per_sample = c * s;
    xhat.par_chunks_mut(per_sample)
        .zip(y.par_chunks_mut(per_sample))
        .zip(x.par_chunks(per_sample))
        .for_each(|((hs, ys), xs)| {
            if s == 1 {
                // One value per channel: the same arithmetic, vectorised across channels.
                let per_ch = mean.iter().zip(&inv_std).zip(gamma.iter().zip(beta));
                for (((h, yv), &xv), ((&m, &is), (&g, &b))) in
                    hs.iter_mut().zip(ys.iter_mut()).zip(xs).zip(per_ch)
                {
                    *h = (xv - m) * is;
                    *yv = g * *h + b;
                }
                return;
            }
            for ch in 0..c {
                let r = ch * s..(ch + 1) * s;
                let (m, is, g, b) = (mean[ch], inv_std[ch], gamma[ch], beta[ch]);
                for ((h, yv), &xv) in hs[r.clone()].iter_mut().zip(&mut ys[r.clone()]).zip(&xs[r]) {
                    *h = (xv - m) * is;
                    *yv = g * *h + b;
                }
            }
        });
    BnCache { xhat, inv_std }
}

/// Inference forward with the running statistics.
#[allow(clippy::too_many_arguments)]
pub fn bn_forward_eval<T: Real>(
    x: &[T],
    c: usize,
    s: usize,
    gamma: &[T],
    beta: &[T],
    eps: f64,
    running_mean: &[T],
    running_var: &[T],
    y: &mut [T],
) {
    let scale: Vec<T> = (0..c)
        .map(|ch| T::from_f64(gamma[ch].to_f64() / (running_var[ch].to_f64() + eps).sqrt()))
        .collect();
    let shift: Vec<T> = (0..c)
        .map(|ch| beta[ch] - scale[ch] * running_mean[ch])
        .collect();
    y.par_chunks_mut(c * s)
        .zip(x.par_chunks(c * s))
        .for_each(|(ys, xs)| {
            for ch in 0..c {
                let r = ch * s..(ch + 1) * s;
                for (yv, &xv) in ys[r.clone()].iter_mut().zip(&xs[r]) {
                    *yv = scale[ch] * xv + shift[ch];
                }
            }
        });
}

/// Per-channel sums of dy and dy * xhat, in f64, channel by channel.
fn channel_dy_sums<T: Real>(
    dy: &[T],
    xhat: &[T],
    batch: usize,
    c: usize,
    s: usize,
) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut sdy = 0.0;
            let mut sdyx = 0.0;
            for b in 0..batch {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                let (a, p) = lane_dy_sums(&dy[r.clone()], &xhat[r]);
                sdy += a;
                sdyx += p;
            }
            (sdy, sdyx)
        })
        .collect()
}

/// Training backward; adds into `dx` (when given), `dgamma`, `dbeta`.
#[allow(clippy::too_many_arguments)]
pub fn bn_backward<T: Real>(
    cache: &BnCache<T>,
    dy: &[T],
    batch: usize,
    c: usize,
    s: usize,
    gamma: &[T],
    dx: Option<&mut [T]>,
    dgamma: &mut [T],
    dbeta: &mut [T],
) {
    let xhat = &cache.xhat;
    // Per channel: sum dy and sum dy * xhat, in f64.
    let sums: Vec<(f64, f64)> = if s == 1 {
        feature_dy_sums(dy, xhat, batch, c)
    } else {
        channel_dy_sums(dy, xhat, batch, c, s)
    };
    for (ch, &(sdy, sdyx)) in sums.iter().enumerate() {
        dbeta[ch] += T::from_f64(sdy);
        dgamma[ch] += T::from_f64(sdyx);
    }
    let Some(dx) = dx else { return };
    let count = (batch * s) as f64;
    let mean_dy: Vec<T> = sums.iter().map(|&(a, _)| T::from_f64(a / count)).collect();
    let mean_dyx: Vec<T> = sums.iter().map(|&(_, b)| T::from_f64(b / count)).collect();
    let k: Vec<T> = (0..c).map(|ch| gamma[ch] * cache.inv_std[ch]).collect();
    dx.par_chunks_mut(c * s)
        .zip(dy.par_chunks(c * s))
        .zip(xhat.par_chunks(c * s))
        .for_each(|((dxs, dys), hs)| {
            if s == 1 {
                let per_ch = k.iter().zip(mean_dy.iter().zip(&mean_dyx));
                for (((d, &g), &h), (&k, (&mdy, &mdyx))) in
                    dxs.iter_mut().zip(dys).zip(hs).zip(per_ch)
                {
                    *d += k * (g - mdy - h * mdyx);
                }
                return;
            }
            for ch in 0..c {
                let r = ch * s..(ch + 1) * s;
                for ((d, &g), &h) in dxs[r.clone()].iter_mut().zip(&dys[r.clone()]).zip(&hs[r]) {
                    *d += k[ch] * (g - mean_dy[ch] - h * mean_dyx[ch]);
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lane sums against plain single-chain sums, with rows whose
    /// length is not a multiple of the lane count (the remainder path).
    #[test]
    fn lane_sums_match_plain_sums() {
        let (batch, c, s) = (3, 2, 13);
        let x: Vec<f64> = (0..batch * c * s)
            .map(|i| (i as f64 * 0.37).sin())
            .collect();
        let dy: Vec<f64> = (0..x.len()).map(|i| (i as f64 * 0.71).cos()).collect();
        for (ch, &(mean, var)) in channel_stats(&x, batch, c, s).iter().enumerate() {
            let vals: Vec<f64> = (0..batch)
                .flat_map(|b| x[(b * c + ch) * s..][..s].to_vec())
                .collect();
            let want_mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let want_var =
                vals.iter().map(|v| (v - want_mean).powi(2)).sum::<f64>() / vals.len() as f64;
            assert!(
                (mean - want_mean).abs() < 1e-14,
                "mean {mean} vs {want_mean}"
            );
            assert!((var - want_var).abs() < 1e-14, "var {var} vs {want_var}");
        }
        let (a, p) = lane_dy_sums(&dy[..s], &x[..s]);
        let want_a: f64 = dy[..s].iter().sum();
        let want_p: f64 = dy[..s].iter().zip(&x[..s]).map(|(g, h)| g * h).sum();
        assert!((a - want_a).abs() < 1e-14 && (p - want_p).abs() < 1e-14);
    }

    /// The block-wise paths for one value per channel (dense features) give
    /// exactly the per-channel loops' statistics and sums.
    #[test]
    fn feature_paths_match_the_per_channel_loops_exactly() {
        for (batch, c) in [(37, 3), (5, 64), (19, 130)] {
            let x: Vec<f32> = (0..batch * c)
                .map(|i| (i as f32 * 0.37).sin() * 3.0 + 0.5)
                .collect();
            let dy: Vec<f32> = (0..x.len()).map(|i| (i as f32 * 0.71).cos()).collect();
            assert_eq!(feature_stats(&x, batch, c), plane_stats(&x, batch, c, 1));
            assert_eq!(
                feature_dy_sums(&dy, &x, batch, c),
                channel_dy_sums(&dy, &x, batch, c, 1)
            );
        }
    }
}

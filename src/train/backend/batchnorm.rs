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

/// Per-channel (mean, biased variance), in f64.
fn channel_stats<T: Real>(x: &[T], batch: usize, c: usize, s: usize) -> Vec<(f64, f64)> {
    let count = (batch * s) as f64;
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let rows = || (0..batch).map(move |b| &x[(b * c + ch) * s..(b * c + ch + 1) * s]);
            let mean = rows()
                .map(|r| r.iter().map(|v| v.to_f64()).sum::<f64>())
                .sum::<f64>()
                / count;
            let var = rows()
                .map(|r| {
                    r.iter()
                        .map(|v| {
                            let d = v.to_f64() - mean;
                            d * d
                        })
                        .sum::<f64>()
                })
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .collect()
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
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut sdy = 0.0;
            let mut sdyx = 0.0;
            for b in 0..batch {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                for (&g, &h) in dy[r.clone()].iter().zip(&xhat[r]) {
                    sdy += g.to_f64();
                    sdyx += (g * h).to_f64();
                }
            }
            (sdy, sdyx)
        })
        .collect();
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
            for ch in 0..c {
                let r = ch * s..(ch + 1) * s;
                for ((d, &g), &h) in dxs[r.clone()].iter_mut().zip(&dys[r.clone()]).zip(&hs[r]) {
                    *d += k[ch] * (g - mean_dy[ch] - h * mean_dyx[ch]);
                }
            }
        });
}

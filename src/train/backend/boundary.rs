//! Boundary Loss (Al Hossain & Rahman): a penalty on activation inputs that
//! leave the polynomial's fit range, per site, then combined across sites.

use super::real::Real;
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SiteLoss {
    /// mean(exp(max(0, |x| - P)) - 1)
    Exp,
    /// mean(f(max(0, |x| - P))): exp(e) - 1 up to e = cap, then linear
    /// with the same value and slope (see `BoundaryKind::ExpCapped`).
    ExpCapped { cap: f64 },
    /// mean(max(0, |x| - P)^2)
    L2,
    /// max |x|
    MaxNorm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteReduce {
    Sum,
    Max,
    L1,
    L2,
}

const CHUNK: usize = 8192;

/// The term of one site, in f64.
pub fn site_term<T: Real>(x: &[T], kind: SiteLoss, penalty: f64) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    match kind {
        SiteLoss::MaxNorm => x
            .iter()
            .map(|v| v.to_f64().abs())
            .fold(0.0, |m, v| if v > m || v.is_nan() { v } else { m }),
        SiteLoss::Exp | SiteLoss::ExpCapped { .. } | SiteLoss::L2 => {
            let partials: Vec<f64> = x
                .par_chunks(CHUNK)
                .map(|xs| {
                    xs.iter()
                        .map(|v| {
                            let excess = v.to_f64().abs() - penalty;
                            // Inside the boundary the term is exactly 0 (skip the exp).
                            if excess <= 0.0 {
                                0.0
                            } else {
                                element_term(kind, excess)
                            }
                        })
                        .sum::<f64>()
                })
                .collect();
            partials.iter().sum::<f64>() / x.len() as f64
        }
    }
}

/// The penalty of one element `excess` = |x| - P > 0 above the boundary.
fn element_term(kind: SiteLoss, excess: f64) -> f64 {
    match kind {
        SiteLoss::Exp => excess.exp() - 1.0,
        SiteLoss::ExpCapped { cap } if excess > cap => {
            let e_cap = cap.exp();
            e_cap - 1.0 + e_cap * (excess - cap)
        }
        SiteLoss::ExpCapped { .. } => excess.exp() - 1.0,
        SiteLoss::L2 => excess * excess,
        SiteLoss::MaxNorm => excess,
    }
}

/// d(element_term)/d(excess).
fn element_slope(kind: SiteLoss, excess: f64) -> f64 {
    match kind {
        SiteLoss::Exp => excess.exp(),
        SiteLoss::ExpCapped { cap } => excess.min(cap).exp(),
        SiteLoss::L2 => 2.0 * excess,
        SiteLoss::MaxNorm => 1.0,
    }
}

/// Adds `weight * d(site_term)/dx` into `dx`.
pub fn site_backward<T: Real>(x: &[T], kind: SiteLoss, penalty: f64, weight: f64, dx: &mut [T]) {
    assert_eq!(x.len(), dx.len());
    if x.is_empty() || weight == 0.0 {
        return;
    }
    match kind {
        SiteLoss::MaxNorm => {
            // The (first) arg max takes the whole gradient, like torch.max.
            let mut best = 0;
            let mut best_v = f64::NEG_INFINITY;
            for (i, v) in x.iter().enumerate() {
                let a = v.to_f64().abs();
                if a > best_v {
                    best_v = a;
                    best = i;
                }
            }
            let sign = if x[best].to_f64() < 0.0 { -1.0 } else { 1.0 };
            dx[best] += T::from_f64(weight * sign);
        }
        SiteLoss::Exp | SiteLoss::ExpCapped { .. } | SiteLoss::L2 => {
            let scale = weight / x.len() as f64;
            dx.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(ds, xs)| {
                    for (d, v) in ds.iter_mut().zip(xs) {
                        let xv = v.to_f64();
                        let excess = xv.abs() - penalty;
                        if excess > 0.0 {
                            // Rounded to T here: in float32 the paper's exp form
                            // overflows once excess > ln(f32::MAX) + ln(n / weight).
                            let g = element_slope(kind, excess);
                            *d += T::from_f64(scale * g * xv.signum());
                        }
                    }
                });
        }
    }
}

/// Combines per-site terms; returns the value and d(value)/d(term_i).
pub fn reduce_sites(terms: &[f64], reduce: SiteReduce) -> (f64, Vec<f64>) {
    let mut grad = vec![0.0; terms.len()];
    if terms.is_empty() {
        return (0.0, grad);
    }
    let value = match reduce {
        SiteReduce::Sum => {
            grad.fill(1.0);
            terms.iter().sum()
        }
        SiteReduce::L1 => {
            for (g, t) in grad.iter_mut().zip(terms) {
                *g = if *t < 0.0 { -1.0 } else { 1.0 };
            }
            terms.iter().map(|t| t.abs()).sum()
        }
        SiteReduce::Max => {
            let mut best = 0;
            for (i, t) in terms.iter().enumerate() {
                if *t > terms[best] {
                    best = i;
                }
            }
            grad[best] = 1.0;
            terms[best]
        }
        SiteReduce::L2 => {
            let norm = terms.iter().map(|t| t * t).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (g, t) in grad.iter_mut().zip(terms) {
                    *g = t / norm;
                }
            }
            norm
        }
    };
    (value, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the paper's exp form overflows float32 in this trainer: not in
    /// the loss value (computed in f64, finite up to |x| - P ~ 709), but in
    /// the gradient, weight / n * exp(|x| - P) per element, rounded to
    /// float32 by `site_backward`: inf once |x| - P > ln(f32::MAX) +
    /// ln(n / weight) (99.6 for ResNet-20's last block at batch 128, n =
    /// 524,288 and weight 10; smaller excesses overflow later, in the
    /// backward of the layers below, which sum such gradients). The capped
    /// form's gradient stays weight / n * exp(cap).
    #[test]
    fn where_the_exp_form_overflows_float32() {
        let (n, weight, p) = (1000usize, 10.0, 12.0);
        let edge = f64::from(f32::MAX).ln() + (n as f64 / weight).ln();
        let input = |excess: f64| {
            let mut x = vec![0.0f32; n];
            x[0] = (p + excess) as f32;
            x
        };
        let grad = |kind, excess: f64| {
            let mut d = vec![0.0f32; n];
            site_backward(&input(excess), kind, p, weight, &mut d);
            d[0]
        };
        assert!(grad(SiteLoss::Exp, edge - 0.01).is_finite());
        assert_eq!(grad(SiteLoss::Exp, edge + 0.01), f32::INFINITY);
        assert!(site_term(&input(edge + 0.01), SiteLoss::Exp, p).is_finite());
        let cap = 10.0;
        let want = weight / n as f64 * f64::exp(cap);
        for excess in [edge + 0.01, 1e6] {
            let g = f64::from(grad(SiteLoss::ExpCapped { cap }, excess));
            assert!((g - want).abs() < 1e-6 * want, "{g} vs {want}");
        }
    }
}

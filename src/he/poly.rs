//! Activation polynomials: evaluation in every basis and the exact
//! power -> Chebyshev conversions (the power basis fails under CKKS at high
//! degree, so every circuit carries Chebyshev coefficients on [-B, B]).

use crate::ir::Basis;

/// sum_k c_k t^k by Horner.
pub fn eval_power(coeffs: &[f64], t: f64) -> f64 {
    coeffs.iter().rev().fold(0.0, |acc, &c| acc * t + c)
}

/// sum_k c_k T_k(t) by Clenshaw's recurrence.
pub fn eval_chebyshev(coeffs: &[f64], t: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &c in coeffs.iter().skip(1).rev() {
        let b0 = 2.0 * t * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    coeffs.first().copied().unwrap_or(0.0) + t * b1 - b2
}

/// The activation of fit range `range` at input `x`: the series in t = x / B,
/// or in x itself for the raw power basis.
pub fn eval_activation(basis: Basis, coeffs: &[f64], range: f64, x: f64) -> f64 {
    match basis {
        Basis::Chebyshev => eval_chebyshev(coeffs, x / range),
        Basis::Power => eval_power(coeffs, x / range),
        Basis::RawPower => eval_power(coeffs, x),
    }
}

/// Chebyshev coefficients of sum_k c_k t^k (same degree, exact up to rounding):
/// t^k is tracked in the T basis using t * T_j = (T_{j+1} + T_{|j-1|}) / 2.
pub fn power_to_chebyshev(power: &[f64]) -> Vec<f64> {
    let n = power.len();
    let mut out = vec![0.0; n];
    let mut t_pow = vec![0.0; n];
    if n == 0 {
        return out;
    }
    t_pow[0] = 1.0;
    for (k, &c) in power.iter().enumerate() {
        if k > 0 {
            let mut next = vec![0.0; n];
            for (j, &v) in t_pow.iter().enumerate().take(k) {
                if v == 0.0 {
                    continue;
                }
                if j == 0 {
                    next[1] += v;
                } else {
                    next[j + 1] += v / 2.0;
                    next[j - 1] += v / 2.0;
                }
            }
            t_pow = next;
        }
        for (o, &v) in out.iter_mut().zip(&t_pow) {
            *o += c * v;
        }
    }
    out
}

/// Chebyshev coefficients in t = x / B of sum_k a_k x^k: the power
/// coefficients of t are a_k B^k (the same polynomial), then as above.
pub fn raw_power_to_chebyshev(raw: &[f64], range: f64) -> Vec<f64> {
    let in_t: Vec<f64> = raw
        .iter()
        .zip(0i32..)
        .map(|(a, k)| a * range.powi(k))
        .collect();
    power_to_chebyshev(&in_t)
}

/// Chebyshev coefficients in t = x / B (on [-1, 1]) of the trained
/// activation of fit range `range`, given in its own basis.
pub fn to_chebyshev(basis: Basis, coeffs: &[f64], range: f64) -> Vec<f64> {
    match basis {
        Basis::Chebyshev => coeffs.to_vec(),
        Basis::Power => power_to_chebyshev(coeffs),
        Basis::RawPower => raw_power_to_chebyshev(coeffs, range),
    }
}

/// Sound bound of sum_k c_k T_k(t) over t in [lo, hi]: |T_k(t)| <= 1 on [-1, 1]
/// and |T_k(t)| <= T_k(m) = cosh(k acosh m) for |t| <= m with m >= 1.
pub fn chebyshev_interval(coeffs: &[f64], lo: f64, hi: f64) -> (f64, f64) {
    let m = lo.abs().max(hi.abs()).max(1.0);
    let c0 = coeffs.first().copied().unwrap_or(0.0);
    let spread: f64 = coeffs
        .iter()
        .enumerate()
        .skip(1)
        .map(|(k, c)| c.abs() * (k as f64 * m.acosh()).cosh())
        .sum();
    (c0 - spread, c0 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_to_chebyshev_evaluates_the_same_polynomial() {
        // Degree 22 with ReLU-fit-like magnitudes: both forms agree on [-1, 1].
        let power: Vec<f64> = (0..=22)
            .map(|k| ((k * 7 % 11) as f64 - 5.0) * 1.3f64.powi(k))
            .collect();
        let cheb = power_to_chebyshev(&power);
        assert_eq!(cheb.len(), power.len());
        for i in 0..=200 {
            let t = -1.0 + i as f64 / 100.0;
            let (p, c) = (eval_power(&power, t), eval_chebyshev(&cheb, t));
            assert!((p - c).abs() <= 1e-9 * (1.0 + p.abs()), "t={t}: {p} vs {c}");
        }
        // Known identities: t^2 = (T0 + T2)/2, t^3 = (3 T1 + T3)/4.
        assert_eq!(power_to_chebyshev(&[0.0, 0.0, 1.0]), vec![0.5, 0.0, 0.5]);
        assert_eq!(
            power_to_chebyshev(&[0.0, 0.0, 0.0, 1.0]),
            vec![0.0, 0.75, 0.0, 0.25]
        );
    }

    /// The raw power series of the ReLU fits the paper uses (degrees 2-22,
    /// its (B, P) table) and of random coefficients: the converted Chebyshev
    /// series equals the original at 2001 points of [-B, B] to 1e-9 of the
    /// series' scale. At degree 31 the power coefficients of t are so large
    /// that their cancellation costs more than that in f64 (in the
    /// conversion and in the evaluation alike), so there the bound adds
    /// their rounding error, n eps sum_k |a_k| B^k. On dyadic data the
    /// conversion is exact.
    #[test]
    fn raw_power_to_chebyshev_evaluates_the_same_polynomial() {
        use crate::ir::{FitMethod, FitTarget};
        use crate::train::fit::fit_activation;
        let ls = FitMethod::LeastSquares { points: 100 };
        let mut cases: Vec<(Vec<f64>, f64)> = [(2, 12.0), (4, 20.0), (8, 35.0), (16, 40.0)]
            .into_iter()
            .chain([(22, 47.0), (22, 1.0), (31, 10.0)])
            .map(|(d, b)| {
                let fit = fit_activation(FitTarget::Relu, d, b, ls, Basis::RawPower).unwrap();
                (fit.coeffs, b)
            })
            .collect();
        let random: Vec<f64> = (0..=22)
            .map(|k| ((k * 7 % 11) as f64 - 5.0) / 3.0f64.powi(k))
            .collect();
        cases.push((random, 3.0));
        for (raw, range) in &cases {
            let degree = raw.len() - 1;
            let cheb = raw_power_to_chebyshev(raw, *range);
            assert_eq!(cheb.len(), raw.len());
            let points: Vec<f64> = (0..=2000)
                .map(|i| range * (-1.0 + i as f64 / 1000.0))
                .collect();
            let scale = points
                .iter()
                .map(|&x| eval_power(raw, x).abs())
                .fold(1e-300, f64::max);
            let magnitudes: Vec<f64> = raw.iter().map(|a| a.abs()).collect();
            for &x in &points {
                let want = eval_activation(Basis::RawPower, raw, *range, x);
                let got = eval_activation(Basis::Chebyshev, &cheb, *range, x);
                let rounding = if degree > 22 {
                    4.0 * degree as f64 * f64::EPSILON * eval_power(&magnitudes, *range)
                } else {
                    0.0
                };
                assert!(
                    (want - got).abs() <= 1e-9 * scale + rounding,
                    "degree {degree} B={range} x={x}: {want} vs {got}"
                );
            }
        }
        // 3/8 + x/16 + x^2/64 on [-4, 4] = 1/2 T0 + 1/4 T1 + 1/8 T2, exactly.
        assert_eq!(
            to_chebyshev(Basis::RawPower, &[0.375, 0.0625, 0.015625], 4.0),
            vec![0.5, 0.25, 0.125]
        );
    }

    #[test]
    fn chebyshev_interval_contains_sampled_values() {
        let c = [0.3, -1.0, 0.5, 0.25];
        for (lo, hi) in [(-1.0, 1.0), (-0.2, 0.4), (-1.5, 0.5)] {
            let (a, b) = chebyshev_interval(&c, lo, hi);
            for i in 0..=100 {
                let t = lo + (hi - lo) * i as f64 / 100.0;
                let y = eval_chebyshev(&c, t);
                assert!(a <= y && y <= b, "{y} not in [{a}, {b}] at t={t}");
            }
        }
    }
}

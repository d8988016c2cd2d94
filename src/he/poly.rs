//! Activation polynomials: evaluation in either basis and the exact
//! power -> Chebyshev conversion (the power basis fails under CKKS at high degree).

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

pub fn eval_basis(basis: Basis, coeffs: &[f64], t: f64) -> f64 {
    match basis {
        Basis::Chebyshev => eval_chebyshev(coeffs, t),
        Basis::Power => eval_power(coeffs, t),
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

/// Chebyshev coefficients on [-1, 1] of the trained activation, in its own basis.
pub fn to_chebyshev(basis: Basis, coeffs: &[f64]) -> Vec<f64> {
    match basis {
        Basis::Chebyshev => coeffs.to_vec(),
        Basis::Power => power_to_chebyshev(coeffs),
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

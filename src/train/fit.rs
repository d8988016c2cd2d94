//! Initial coefficients of a polynomial activation: a fit of ReLU, SiLU or
//! GELU on [-B, B], in f64, returned for t = x / B in the requested basis
//! (for the raw power basis: for x itself, the same polynomial).
//!
//! Least squares runs in the Chebyshev basis with a Householder QR (well
//! conditioned at every degree up to 31). Minimax uses the Remez exchange on
//! the even part: all three targets are x/2 plus an even function, so the
//! best polynomial is B t / 2 plus the best even polynomial, which makes the
//! exchange well posed at every degree (odd degrees included).

use crate::ir::{Basis, FitMethod, FitTarget};

/// Largest degree the activation supports.
pub const MAX_DEGREE: u32 = 31;
/// Points of the grid the reported error is measured on.
const ERROR_GRID: usize = 20_001;

#[derive(Debug, Clone, PartialEq)]
pub struct PolyFit {
    /// Coefficients of p(t), t = x / B, lowest degree first (of p(x) for
    /// [`Basis::RawPower`]).
    pub coeffs: Vec<f64>,
    /// max |f(x) - p(x / B)| over a dense grid on [-B, B].
    pub max_error: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error("polynomial degree {0} is outside 1..={MAX_DEGREE}")]
    Degree(u32),
    #[error("fit range {0} must be positive and finite")]
    Range(f64),
    #[error("a least-squares fit of degree {degree} needs more than {degree} points, got {points}")]
    TooFewPoints { degree: u32, points: usize },
}

/// The target as a function of x.
pub fn target_value(target: FitTarget, x: f64) -> f64 {
    match target {
        FitTarget::Relu => x.max(0.0),
        FitTarget::Silu => x / (1.0 + (-x).exp()),
        FitTarget::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
    }
}

/// erf to ~1e-15: Taylor series near 0, continued fraction for erfc beyond.
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let v = if a < 2.5 {
        // erf(a) = 2/sqrt(pi) * sum (-1)^n a^(2n+1) / (n! (2n+1))
        let mut term = a;
        let mut sum = a;
        let a2 = a * a;
        for n in 1..200 {
            term *= -a2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if a > 6.0 {
        1.0
    } else {
        // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...))))
        let mut frac = a;
        for k in (1..120).rev() {
            frac = a + (k as f64 / 2.0) / frac;
        }
        1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / frac
    };
    v.copysign(x)
}

pub fn fit_activation(
    target: FitTarget,
    degree: u32,
    range: f64,
    method: FitMethod,
    basis: Basis,
) -> Result<PolyFit, FitError> {
    if degree == 0 || degree > MAX_DEGREE {
        return Err(FitError::Degree(degree));
    }
    if !(range > 0.0 && range.is_finite()) {
        return Err(FitError::Range(range));
    }
    let g = |t: f64| target_value(target, range * t);
    let cheb = match method {
        FitMethod::LeastSquares { points } => least_squares_chebyshev(&g, degree as usize, points)
            .ok_or(FitError::TooFewPoints { degree, points })?,
        FitMethod::Minimax => minimax_chebyshev(&g, degree as usize, range),
    };
    let (coeffs, max_error) = match basis {
        Basis::Chebyshev => {
            let e = max_error_on_grid(&g, &cheb, basis);
            (cheb, e)
        }
        Basis::Power | Basis::RawPower => {
            let power = chebyshev_to_power(&cheb);
            let e = max_error_on_grid(&g, &power, Basis::Power);
            if basis == Basis::RawPower {
                (power_to_raw(&power, range), e)
            } else {
                (power, e)
            }
        }
    };
    Ok(PolyFit { coeffs, max_error })
}

/// Coefficients of p(x) = sum_k a_k x^k from those of p(t), t = x / B:
/// a_k = c_k / B^k (the same polynomial; f64 rounding only).
pub fn power_to_raw(power: &[f64], range: f64) -> Vec<f64> {
    power
        .iter()
        .zip(0i32..)
        .map(|(c, k)| c / range.powi(k))
        .collect()
}

/// T_0(t) .. T_n(t).
pub fn chebyshev_values(t: f64, n: usize) -> Vec<f64> {
    let mut v = vec![1.0; n + 1];
    if n >= 1 {
        v[1] = t;
    }
    for k in 2..=n {
        v[k] = 2.0 * t * v[k - 1] - v[k - 2];
    }
    v
}

/// p at t = x / B in the `Power` and `Chebyshev` bases; `RawPower`
/// coefficients are in x, so there the argument is x.
pub fn evaluate(coeffs: &[f64], basis: Basis, t: f64) -> f64 {
    match basis {
        Basis::Power | Basis::RawPower => coeffs.iter().rev().fold(0.0, |acc, c| acc * t + c),
        Basis::Chebyshev => chebyshev_values(t, coeffs.len() - 1)
            .iter()
            .zip(coeffs)
            .map(|(v, c)| v * c)
            .sum(),
    }
}

fn max_error_on_grid(g: &dyn Fn(f64) -> f64, coeffs: &[f64], basis: Basis) -> f64 {
    (0..ERROR_GRID)
        .map(|i| {
            let t = -1.0 + 2.0 * i as f64 / (ERROR_GRID - 1) as f64;
            (g(t) - evaluate(coeffs, basis, t)).abs()
        })
        .fold(0.0, f64::max)
}

/// Evenly spaced points on [-1, 1].
pub fn even_points(points: usize) -> Vec<f64> {
    if points == 1 {
        return vec![0.0];
    }
    (0..points)
        .map(|i| -1.0 + 2.0 * i as f64 / (points - 1) as f64)
        .collect()
}

/// Least squares in the Chebyshev basis by Householder QR; None when the
/// system is underdetermined.
fn least_squares_chebyshev(g: &dyn Fn(f64) -> f64, n: usize, points: usize) -> Option<Vec<f64>> {
    if points <= n {
        return None;
    }
    let ts = even_points(points);
    let cols = n + 1;
    // Row-major A [points, cols] and right-hand side.
    let mut a: Vec<f64> = ts.iter().flat_map(|&t| chebyshev_values(t, n)).collect();
    let mut b: Vec<f64> = ts.iter().map(|&t| g(t)).collect();
    let m = points;
    for k in 0..cols {
        let norm = (k..m).map(|i| a[i * cols + k].powi(2)).sum::<f64>().sqrt();
        if norm == 0.0 {
            return None;
        }
        let alpha = if a[k * cols + k] > 0.0 { -norm } else { norm };
        // v = a[k.., k] - alpha e_1
        let mut v: Vec<f64> = (k..m).map(|i| a[i * cols + k]).collect();
        v[0] -= alpha;
        let vnorm2: f64 = v.iter().map(|x| x * x).sum();
        if vnorm2 == 0.0 {
            continue;
        }
        for j in k..cols {
            let dot: f64 = (k..m).map(|i| v[i - k] * a[i * cols + j]).sum();
            let f = 2.0 * dot / vnorm2;
            for i in k..m {
                a[i * cols + j] -= f * v[i - k];
            }
        }
        let dot: f64 = (k..m).map(|i| v[i - k] * b[i]).sum();
        let f = 2.0 * dot / vnorm2;
        for i in k..m {
            b[i] -= f * v[i - k];
        }
    }
    // Back substitution R c = (Q^T b)[..cols].
    let mut c = vec![0.0; cols];
    for k in (0..cols).rev() {
        let s: f64 = ((k + 1)..cols).map(|j| a[k * cols + j] * c[j]).sum();
        c[k] = (b[k] - s) / a[k * cols + k];
    }
    Some(c)
}

/// Solves a small dense system by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for k in 0..n {
        let p = (k..n)
            .max_by(|&i, &j| a[i][k].abs().total_cmp(&a[j][k].abs()))
            .unwrap_or(k);
        a.swap(k, p);
        b.swap(k, p);
        let (top, rest) = a.split_at_mut(k + 1);
        let pivot = &top[k];
        for (off, row) in rest.iter_mut().enumerate() {
            let f = row[k] / pivot[k];
            for (r, p) in row[k..].iter_mut().zip(&pivot[k..]) {
                *r -= f * p;
            }
            b[k + 1 + off] -= f * b[k];
        }
    }
    let mut x = vec![0.0; n];
    for k in (0..n).rev() {
        let s: f64 = ((k + 1)..n).map(|j| a[k][j] * x[j]).sum();
        x[k] = (b[k] - s) / a[k][k];
    }
    x
}

/// The even part's minimax fit by Remez exchange over T_0, T_2, .., T_2m on [0, 1]; the reference set and the
/// levelled error of the last iteration are returned for tests.
pub struct RemezResult {
    pub even_coeffs: Vec<f64>,
    pub reference: Vec<f64>,
    pub level: f64,
}

const REMEZ_GRID: usize = 20_001;

fn even_basis(t: f64, m: usize) -> Vec<f64> {
    let v = chebyshev_values(t, 2 * m);
    (0..=m).map(|j| v[2 * j]).collect()
}

pub fn remez_even(h: &dyn Fn(f64) -> f64, m: usize) -> RemezResult {
    let count = m + 2;
    // Start from the Chebyshev extrema in s = t^2 on [0, 1].
    let mut reference: Vec<f64> = (0..count)
        .map(|i| {
            let s = (1.0 - (std::f64::consts::PI * i as f64 / (count - 1) as f64).cos()) / 2.0;
            s.sqrt()
        })
        .collect();
    let grid: Vec<f64> = (0..REMEZ_GRID)
        .map(|i| i as f64 / (REMEZ_GRID - 1) as f64)
        .collect();
    let mut coeffs = vec![0.0; m + 1];
    let mut level = 0.0;
    for _ in 0..60 {
        let a: Vec<Vec<f64>> = reference
            .iter()
            .enumerate()
            .map(|(i, &t)| {
                let mut row = even_basis(t, m);
                row.push(if i % 2 == 0 { 1.0 } else { -1.0 });
                row
            })
            .collect();
        let b: Vec<f64> = reference.iter().map(|&t| h(t)).collect();
        let sol = solve(a, b);
        coeffs = sol[..=m].to_vec();
        level = sol[m + 1];
        let err = |t: f64| -> f64 {
            h(t) - even_basis(t, m)
                .iter()
                .zip(&coeffs)
                .map(|(v, c)| v * c)
                .sum::<f64>()
        };
        let e: Vec<f64> = grid.iter().map(|&t| err(t)).collect();
        // Local extrema of the error (end points included), then one per sign run.
        let mut extrema: Vec<usize> = Vec::new();
        for i in 0..e.len() {
            let left = if i == 0 {
                f64::NEG_INFINITY
            } else {
                e[i - 1].abs()
            };
            let right = if i + 1 == e.len() {
                f64::NEG_INFINITY
            } else {
                e[i + 1].abs()
            };
            if e[i].abs() >= left && e[i].abs() >= right && e[i] != 0.0 {
                extrema.push(i);
            }
        }
        let mut runs: Vec<usize> = Vec::new();
        for i in extrema {
            match runs.last_mut() {
                Some(last) if e[*last].signum() == e[i].signum() => {
                    if e[i].abs() > e[*last].abs() {
                        *last = i;
                    }
                }
                _ => runs.push(i),
            }
        }
        while runs.len() > count {
            // Drop the smaller end: keeps alternation and the largest error.
            if e[runs[0]].abs() < e[runs[runs.len() - 1]].abs() {
                runs.remove(0);
            } else {
                runs.pop();
            }
        }
        let max_err = e.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if runs.len() < count {
            break;
        }
        reference = runs.iter().map(|&i| grid[i]).collect();
        if max_err - level.abs() <= 1e-12 * max_err.max(1e-300) + 1e-15 {
            break;
        }
    }
    RemezResult {
        even_coeffs: coeffs,
        reference,
        level,
    }
}

fn minimax_chebyshev(g: &dyn Fn(f64) -> f64, n: usize, range: f64) -> Vec<f64> {
    // g(t) = B t / 2 + h(t), h even (see the module comment).
    let h = |t: f64| g(t) - range * t / 2.0;
    let m = n / 2;
    let r = remez_even(&h, m);
    let mut c = vec![0.0; n + 1];
    for (j, a) in r.even_coeffs.iter().enumerate() {
        c[2 * j] = *a;
    }
    c[1] += range / 2.0;
    c
}

/// Monomial coefficients of T_0 .. T_n (exact integers in f64 up to n = 31).
fn chebyshev_monomials(n: usize) -> Vec<Vec<f64>> {
    let mut rows: Vec<Vec<f64>> = vec![vec![0.0; n + 1]; n + 1];
    rows[0][0] = 1.0;
    if n >= 1 {
        rows[1][1] = 1.0;
    }
    for k in 2..=n {
        for j in 0..=n {
            let shifted = if j > 0 { 2.0 * rows[k - 1][j - 1] } else { 0.0 };
            rows[k][j] = shifted - rows[k - 2][j];
        }
    }
    rows
}

pub fn chebyshev_to_power(cheb: &[f64]) -> Vec<f64> {
    let n = cheb.len() - 1;
    let mono = chebyshev_monomials(n);
    let mut out = vec![0.0; n + 1];
    for (k, c) in cheb.iter().enumerate() {
        for j in 0..=n {
            out[j] += c * mono[k][j];
        }
    }
    out
}

/// Coefficients of p(t), t = x / B, in Chebyshev form from its power form:
/// the inverse of [`chebyshev_to_power`], by back-substitution (the
/// monomials of T_k are upper triangular with leading 2^(k-1)).
pub fn power_to_chebyshev(power: &[f64]) -> Vec<f64> {
    let n = power.len().saturating_sub(1);
    let mono = chebyshev_monomials(n);
    let mut cheb = vec![0.0; power.len()];
    for j in (0..power.len()).rev() {
        let above: f64 = (j + 1..=n).map(|k| cheb[k] * mono[k][j]).sum();
        cheb[j] = (power[j] - above) / mono[j][j];
    }
    cheb
}

/// The coefficients an activation site starts from, in its basis: the
/// given polynomial converted exactly, or the least-squares fit. One place,
/// so that pnnc's trainer and the PyTorch export start from the same values.
pub fn initial_coeffs(act: &crate::ir::PolyAct) -> Result<Vec<f64>, FitError> {
    match &act.coeffs {
        Some(raw) => Ok(from_raw_power(raw, act.range, act.basis)),
        None => {
            Ok(fit_activation(act.fit, act.degree, act.range, act.fit_method, act.basis)?.coeffs)
        }
    }
}

/// A polynomial given as p(x) = sum a_k x^k on the raw input (`poly(coeffs:
/// [...])`), as the coefficients `basis` evaluates with fit range B: the
/// same polynomial, converted exactly (f64 rounding only).
pub fn from_raw_power(raw: &[f64], range: f64, basis: Basis) -> Vec<f64> {
    let power: Vec<f64> = raw
        .iter()
        .zip(0i32..)
        .map(|(a, k)| a * range.powi(k))
        .collect();
    match basis {
        Basis::RawPower => raw.to_vec(),
        Basis::Power => power,
        Basis::Chebyshev => power_to_chebyshev(&power),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_polynomials_are_the_same_in_every_basis() {
        let raw = [0.25, -0.5, 0.125, 0.0, 0.01];
        let range = 6.0;
        for basis in Basis::ALL {
            let c = from_raw_power(&raw, range, basis);
            for i in 0..=40 {
                let x = range * (i as f64 / 20.0 - 1.0);
                let want: f64 = raw.iter().zip(0i32..).map(|(a, k)| a * x.powi(k)).sum();
                let t = if basis == Basis::RawPower {
                    x
                } else {
                    x / range
                };
                let got = evaluate(&c, basis, t);
                assert!(
                    (got - want).abs() < 1e-12 * want.abs().max(1.0),
                    "{basis:?} at {x}: {got} vs {want}"
                );
            }
        }
        // x^2 on [-2, 2] is (T_0 + T_2) * 2 in t = x / 2.
        assert_eq!(
            from_raw_power(&[0.0, 0.0, 1.0], 2.0, Basis::Chebyshev),
            [2.0, 0.0, 2.0]
        );
    }

    #[test]
    fn erf_matches_known_values() {
        // Values from tables of erf.
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!((erf(x) - want).abs() < 1e-14, "erf({x}) = {}", erf(x));
        }
    }

    /// Degree-2 least squares of ReLU on [-1, 1] at 100 points, power basis,
    /// solved independently from the normal equations.
    #[test]
    fn least_squares_relu_degree2_matches_normal_equations() {
        let fit = fit_activation(
            FitTarget::Relu,
            2,
            1.0,
            FitMethod::LeastSquares { points: 100 },
            Basis::Power,
        )
        .unwrap();
        let ts = even_points(100);
        let mut ata = vec![vec![0.0; 3]; 3];
        let mut atb = vec![0.0; 3];
        for &t in &ts {
            let phi = [1.0, t, t * t];
            for i in 0..3 {
                for j in 0..3 {
                    ata[i][j] += phi[i] * phi[j];
                }
                atb[i] += phi[i] * t.max(0.0);
            }
        }
        let want = solve(ata, atb);
        for (c, w) in fit.coeffs.iter().zip(&want) {
            assert!((c - w).abs() < 1e-12, "{:?} vs {:?}", fit.coeffs, want);
        }
        // Odd part of ReLU is x/2, so c1 = 1/2 exactly; the even part is |x|/2.
        assert!((fit.coeffs[1] - 0.5).abs() < 1e-12);
        assert!(fit.max_error > 0.05 && fit.max_error < 0.2);
    }

    #[test]
    fn least_squares_residual_is_orthogonal_to_the_basis_at_high_degree() {
        for target in [FitTarget::Relu, FitTarget::Silu, FitTarget::Gelu] {
            let range = 47.0;
            let fit = fit_activation(
                target,
                22,
                range,
                FitMethod::LeastSquares { points: 100 },
                Basis::Chebyshev,
            )
            .unwrap();
            let ts = even_points(100);
            let scale: f64 = ts
                .iter()
                .map(|&t| target_value(target, range * t).abs())
                .sum();
            for k in 0..=22 {
                let dot: f64 = ts
                    .iter()
                    .map(|&t| {
                        let r = target_value(target, range * t)
                            - evaluate(&fit.coeffs, Basis::Chebyshev, t);
                        r * chebyshev_values(t, 22)[k]
                    })
                    .sum();
                assert!(dot.abs() < 1e-10 * scale, "{target:?} k={k} dot={dot}");
            }
        }
    }

    #[test]
    fn power_and_chebyshev_fits_agree() {
        let method = FitMethod::LeastSquares { points: 100 };
        let c = fit_activation(FitTarget::Gelu, 8, 35.0, method, Basis::Chebyshev).unwrap();
        let p = fit_activation(FitTarget::Gelu, 8, 35.0, method, Basis::Power).unwrap();
        for t in even_points(41) {
            let a = evaluate(&c.coeffs, Basis::Chebyshev, t);
            let b = evaluate(&p.coeffs, Basis::Power, t);
            assert!((a - b).abs() < 1e-9 * 35.0);
        }
        assert!((c.max_error - p.max_error).abs() < 1e-8);
    }

    /// The raw power fit is the same ReLU fit as a polynomial of x: equal to
    /// the Chebyshev fit at x = B t, with a_k = c_k / B^k exactly.
    #[test]
    fn raw_power_fit_is_the_same_polynomial_of_x() {
        let method = FitMethod::LeastSquares { points: 100 };
        for (degree, range) in [(2, 12.0), (8, 35.0), (22, 47.0)] {
            let c =
                fit_activation(FitTarget::Relu, degree, range, method, Basis::Chebyshev).unwrap();
            let p = fit_activation(FitTarget::Relu, degree, range, method, Basis::Power).unwrap();
            let raw =
                fit_activation(FitTarget::Relu, degree, range, method, Basis::RawPower).unwrap();
            assert_eq!(raw.max_error, p.max_error);
            for (k, (a, pk)) in raw.coeffs.iter().zip(&p.coeffs).enumerate() {
                assert_eq!(*a, pk / range.powi(k as i32), "degree {degree} k={k}");
            }
            for t in even_points(41) {
                let want = evaluate(&c.coeffs, Basis::Chebyshev, t);
                let got = evaluate(&raw.coeffs, Basis::RawPower, range * t);
                assert!(
                    (want - got).abs() < 1e-9 * range,
                    "degree {degree} t={t}: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn remez_error_equioscillates_and_beats_least_squares() {
        for (target, degree) in [
            (FitTarget::Relu, 2),
            (FitTarget::Relu, 8),
            (FitTarget::Silu, 7),
            (FitTarget::Gelu, 22),
        ] {
            let range = 10.0;
            let g = |t: f64| target_value(target, range * t);
            let h = |t: f64| g(t) - range * t / 2.0;
            let r = remez_even(&h, degree / 2);
            assert_eq!(r.reference.len(), degree / 2 + 2);
            let mm = fit_activation(
                target,
                degree as u32,
                range,
                FitMethod::Minimax,
                Basis::Chebyshev,
            )
            .unwrap();
            let ls = fit_activation(
                target,
                degree as u32,
                range,
                FitMethod::LeastSquares { points: 100 },
                Basis::Chebyshev,
            )
            .unwrap();
            // Equioscillation: the error at the reference points alternates in sign
            // with magnitude |level|, and |level| is the max error.
            let mut prev_sign = 0.0;
            for &t in &r.reference {
                let e = g(t) - evaluate(&mm.coeffs, Basis::Chebyshev, t);
                assert!(
                    (e.abs() - r.level.abs()).abs() < 1e-6 * r.level.abs(),
                    "{target:?} {degree}"
                );
                assert!(e.signum() != prev_sign);
                prev_sign = e.signum();
            }
            assert!(
                (mm.max_error - r.level.abs()).abs() < 1e-3 * r.level.abs(),
                "{target:?} {degree}: {} vs {}",
                mm.max_error,
                r.level
            );
            assert!(
                mm.max_error <= ls.max_error * (1.0 + 1e-9),
                "{target:?} {degree}"
            );
        }
        // Known value: best uniform approximation of |t| by a quadratic on [-1, 1]
        // is t^2 + 1/8 with error 1/8; ReLU = t/2 + |t|/2 gives error 1/16.
        let fit =
            fit_activation(FitTarget::Relu, 2, 1.0, FitMethod::Minimax, Basis::Power).unwrap();
        assert!(
            (fit.max_error - 1.0 / 16.0).abs() < 1e-9,
            "{}",
            fit.max_error
        );
        assert!((fit.coeffs[0] - 1.0 / 16.0).abs() < 1e-9);
        assert!((fit.coeffs[2] - 0.5).abs() < 1e-9);
    }

    #[test]
    fn bad_requests_are_errors() {
        let ls = FitMethod::LeastSquares { points: 5 };
        assert_eq!(
            fit_activation(FitTarget::Relu, 0, 1.0, ls, Basis::Power),
            Err(FitError::Degree(0))
        );
        assert_eq!(
            fit_activation(FitTarget::Relu, 32, 1.0, ls, Basis::Power),
            Err(FitError::Degree(32))
        );
        assert_eq!(
            fit_activation(FitTarget::Relu, 2, -1.0, ls, Basis::Power),
            Err(FitError::Range(-1.0))
        );
        assert_eq!(
            fit_activation(FitTarget::Relu, 8, 1.0, ls, Basis::Power),
            Err(FitError::TooFewPoints {
                degree: 8,
                points: 5
            })
        );
    }
}

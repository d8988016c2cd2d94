//! The fused polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B).
//!
//! The forward pass computes p(t) and p'(t) together in one sweep over the
//! degree (Chebyshev: the T and U recurrences, since T_k' = k U_{k-1}; power:
//! Horner with its derivative), so the backward needs only x and dy/dx per
//! element; the coefficient gradients recompute the basis values on the fly
//! instead of keeping degree-many tensors.

use super::real::Real;
use rayon::prelude::*;

/// Elements per work item: fixed, so sums come out in the same order for
/// any thread count (determinism).
const CHUNK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolyBasis {
    Chebyshev,
    Power,
}

/// p(t) and p'(t) at one point.
#[inline]
fn eval_with_derivative<T: Real>(t: T, coeffs: &[T], k_coeffs: &[T], basis: PolyBasis) -> (T, T) {
    let n = coeffs.len() - 1;
    match basis {
        PolyBasis::Power => {
            let mut p = coeffs[n];
            let mut d = T::ZERO;
            for k in (0..n).rev() {
                d = d * t + p;
                p = p * t + coeffs[k];
            }
            (p, d)
        }
        PolyBasis::Chebyshev => {
            if n == 0 {
                return (coeffs[0], T::ZERO);
            }
            let two_t = t + t;
            // t_prev = T_{k-2}, t_cur = T_{k-1}; u_prev = U_{k-3}, u_cur = U_{k-2}.
            let (mut t_prev, mut t_cur) = (T::ONE, t);
            let (mut u_prev, mut u_cur) = (T::ZERO, T::ONE);
            let mut p = coeffs[0] + coeffs[1] * t;
            let mut d = coeffs[1];
            for k in 2..=n {
                let t_next = two_t * t_cur - t_prev;
                let u_next = two_t * u_cur - u_prev; // U_{k-1}
                p += coeffs[k] * t_next;
                d += k_coeffs[k] * u_next;
                t_prev = t_cur;
                t_cur = t_next;
                u_prev = u_cur;
                u_cur = u_next;
            }
            (p, d)
        }
    }
}

/// p(t) alone (inference).
#[inline]
fn eval<T: Real>(t: T, coeffs: &[T], basis: PolyBasis) -> T {
    let n = coeffs.len() - 1;
    match basis {
        PolyBasis::Power => {
            let mut p = coeffs[n];
            for k in (0..n).rev() {
                p = p * t + coeffs[k];
            }
            p
        }
        PolyBasis::Chebyshev => {
            if n == 0 {
                return coeffs[0];
            }
            let two_t = t + t;
            let (mut t_prev, mut t_cur) = (T::ONE, t);
            let mut p = coeffs[0] + coeffs[1] * t;
            for &c in &coeffs[2..] {
                let t_next = two_t * t_cur - t_prev;
                p += c * t_next;
                t_prev = t_cur;
                t_cur = t_next;
            }
            p
        }
    }
}

/// Forward: `y = p(x / range)`; when `dydx` is given it receives p'(x/B)/B.
pub fn poly_forward<T: Real>(
    x: &[T],
    coeffs: &[T],
    range: T,
    basis: PolyBasis,
    y: &mut [T],
    dydx: Option<&mut [T]>,
) {
    assert!(!coeffs.is_empty() && y.len() == x.len());
    let inv_b = T::ONE / range;
    match dydx {
        Some(dydx) => {
            assert_eq!(dydx.len(), x.len());
            let k_coeffs: Vec<T> = coeffs
                .iter()
                .enumerate()
                .map(|(k, &c)| T::from_f64(k as f64) * c)
                .collect();
            x.par_chunks(CHUNK)
                .zip(y.par_chunks_mut(CHUNK))
                .zip(dydx.par_chunks_mut(CHUNK))
                .for_each(|((xs, ys), ds)| {
                    for ((&xv, yv), dv) in xs.iter().zip(ys).zip(ds) {
                        let (p, d) = eval_with_derivative(xv * inv_b, coeffs, &k_coeffs, basis);
                        *yv = p;
                        *dv = d * inv_b;
                    }
                });
        }
        None => {
            x.par_chunks(CHUNK)
                .zip(y.par_chunks_mut(CHUNK))
                .for_each(|(xs, ys)| {
                    for (&xv, yv) in xs.iter().zip(ys) {
                        *yv = eval(xv * inv_b, coeffs, basis);
                    }
                });
        }
    }
}

/// Adds sum_k dy * phi_k(t) of one chunk into `acc`.
fn accumulate_basis<T: Real>(xs: &[T], dys: &[T], inv_b: T, basis: PolyBasis, acc: &mut [T]) {
    let n = acc.len() - 1;
    for (&xv, &g) in xs.iter().zip(dys) {
        let t = xv * inv_b;
        match basis {
            PolyBasis::Power => {
                let mut phi = g;
                acc[0] += phi;
                for a in &mut acc[1..] {
                    phi = phi * t;
                    *a += phi;
                }
            }
            PolyBasis::Chebyshev => {
                acc[0] += g;
                if n == 0 {
                    continue;
                }
                let two_t = t + t;
                let (mut t_prev, mut t_cur) = (T::ONE, t);
                acc[1] += g * t;
                for a in &mut acc[2..] {
                    let t_next = two_t * t_cur - t_prev;
                    *a += g * t_next;
                    t_prev = t_cur;
                    t_cur = t_next;
                }
            }
        }
    }
}

/// Backward: adds `dy * dydx` into `dx` (when given) and
/// `sum_i dy_i phi_k(x_i / B)` into `dcoeffs` (when given).
pub fn poly_backward<T: Real>(
    x: &[T],
    dydx: &[T],
    dy: &[T],
    range: T,
    basis: PolyBasis,
    dx: Option<&mut [T]>,
    dcoeffs: Option<&mut [T]>,
) {
    assert!(x.len() == dydx.len() && x.len() == dy.len());
    if let Some(dx) = dx {
        assert_eq!(dx.len(), x.len());
        dx.par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .zip(dydx.par_chunks(CHUNK))
            .for_each(|((dxs, dys), ds)| {
                for ((o, &g), &d) in dxs.iter_mut().zip(dys).zip(ds) {
                    *o += g * d;
                }
            });
    }
    if let Some(dcoeffs) = dcoeffs {
        let inv_b = T::ONE / range;
        let n1 = dcoeffs.len();
        let partials: Vec<Vec<T>> = x
            .par_chunks(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .map(|(xs, dys)| {
                let mut acc = vec![T::ZERO; n1];
                accumulate_basis(xs, dys, inv_b, basis, &mut acc);
                acc
            })
            .collect();
        for part in partials {
            for (d, p) in dcoeffs.iter_mut().zip(part) {
                *d += p;
            }
        }
    }
}

/// p(t) in f64 for one point (fit reports, tests).
pub fn poly_eval_f64(t: f64, coeffs: &[f64], basis: PolyBasis) -> f64 {
    eval(t, coeffs, basis)
}

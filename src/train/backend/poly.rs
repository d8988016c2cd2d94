//! The fused polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B).
//!
//! The forward pass computes p(t) and p'(t) together in one sweep over the
//! degree (Chebyshev: the T and U recurrences, since T_k' = k U_{k-1}; power:
//! Horner with its derivative), so the backward needs only x and dy/dx per
//! element; the backward computes dx and the coefficient gradients
//! sum_i dy_i phi_k(t_i) in one pass, recomputing the basis on the fly
//! instead of keeping degree-many tensors.
//!
//! Speed: the recurrences are sequential in the degree, so each kernel runs
//! them for `LANES` elements side by side (plain arrays that the compiler
//! turns into SIMD registers), with per-lane coefficient-gradient
//! accumulators that are summed once per chunk. On x86-64 the same code is
//! also compiled with AVX2 and chosen at run time; no fused multiply-adds
//! are formed, so both versions give bit-identical results.

use super::real::Real;
use rayon::prelude::*;

/// Elements per work item: fixed, so sums come out in the same order for
/// any thread count (determinism).
const CHUNK: usize = 4096;

/// Elements evaluated side by side (two AVX2 registers of f32).
const LANES: usize = 16;

type Lanes<T> = [T; LANES];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolyBasis {
    Chebyshev,
    Power,
}

/// p(t) at one point (inference, fit reports).
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

/// p(t) (and p'(t) when `WITH_D`) for `LANES` points; the same operations
/// in the same order as [`eval`] for p.
#[inline(always)]
fn eval_lanes<T: Real, const WITH_D: bool>(
    t: &Lanes<T>,
    coeffs: &[T],
    k_coeffs: &[T],
    basis: PolyBasis,
) -> (Lanes<T>, Lanes<T>) {
    let n = coeffs.len() - 1;
    let mut p = [coeffs[n]; LANES];
    let mut d = [T::ZERO; LANES];
    match basis {
        PolyBasis::Power => {
            for k in (0..n).rev() {
                let c = coeffs[k];
                for l in 0..LANES {
                    if WITH_D {
                        d[l] = d[l] * t[l] + p[l];
                    }
                    p[l] = p[l] * t[l] + c;
                }
            }
        }
        PolyBasis::Chebyshev => {
            if n == 0 {
                return (p, d);
            }
            let (c0, c1) = (coeffs[0], coeffs[1]);
            let mut two_t = [T::ZERO; LANES];
            let mut t_prev = [T::ONE; LANES];
            let mut t_cur = *t;
            // u_prev = U_{k-3}, u_cur = U_{k-2} before step k.
            let mut u_prev = [T::ZERO; LANES];
            let mut u_cur = [T::ONE; LANES];
            for l in 0..LANES {
                two_t[l] = t[l] + t[l];
                p[l] = c0 + c1 * t[l];
                d[l] = c1;
            }
            for k in 2..=n {
                let (c, kc) = (coeffs[k], k_coeffs[k]);
                for l in 0..LANES {
                    let t_next = two_t[l] * t_cur[l] - t_prev[l];
                    p[l] += c * t_next;
                    t_prev[l] = t_cur[l];
                    t_cur[l] = t_next;
                    if WITH_D {
                        let u_next = two_t[l] * u_cur[l] - u_prev[l];
                        d[l] += kc * u_next;
                        u_prev[l] = u_cur[l];
                        u_cur[l] = u_next;
                    }
                }
            }
        }
    }
    (p, d)
}

/// Adds g_l * phi_k(t_l) into `acc[k][l]` for `LANES` points.
#[inline(always)]
fn accumulate_lanes<T: Real>(t: &Lanes<T>, g: &Lanes<T>, basis: PolyBasis, acc: &mut [Lanes<T>]) {
    let n = acc.len() - 1;
    for l in 0..LANES {
        acc[0][l] += g[l];
    }
    if n == 0 {
        return;
    }
    match basis {
        PolyBasis::Power => {
            let mut phi = *g;
            for a in &mut acc[1..] {
                for l in 0..LANES {
                    phi[l] *= t[l];
                    a[l] += phi[l];
                }
            }
        }
        PolyBasis::Chebyshev => {
            let mut two_t = [T::ZERO; LANES];
            let mut t_prev = [T::ONE; LANES];
            let mut t_cur = *t;
            for l in 0..LANES {
                two_t[l] = t[l] + t[l];
                acc[1][l] += g[l] * t[l];
            }
            for a in &mut acc[2..] {
                for l in 0..LANES {
                    let t_next = two_t[l] * t_cur[l] - t_prev[l];
                    a[l] += g[l] * t_next;
                    t_prev[l] = t_cur[l];
                    t_cur[l] = t_next;
                }
            }
        }
    }
}

/// Copies up to `LANES` values into a lane array, padding with zeros.
#[inline(always)]
fn load<T: Real>(src: &[T]) -> Lanes<T> {
    let mut out = [T::ZERO; LANES];
    out[..src.len()].copy_from_slice(src);
    out
}

/// t = x / B for up to `LANES` values (x * (1/B), as [`eval`]'s callers).
#[inline(always)]
fn load_scaled<T: Real>(src: &[T], inv_b: T) -> Lanes<T> {
    let mut t = load(src);
    for v in &mut t {
        *v *= inv_b;
    }
    t
}

/// Forward over one chunk: y = p(x/B), and dydx = p'(x/B)/B when given.
#[inline(always)]
fn forward_chunk<T: Real>(
    xs: &[T],
    coeffs: &[T],
    k_coeffs: &[T],
    inv_b: T,
    basis: PolyBasis,
    ys: &mut [T],
    dydx: Option<&mut [T]>,
) {
    match dydx {
        Some(ds) => {
            for ((xb, yb), db) in xs
                .chunks(LANES)
                .zip(ys.chunks_mut(LANES))
                .zip(ds.chunks_mut(LANES))
            {
                let (p, d) =
                    eval_lanes::<T, true>(&load_scaled(xb, inv_b), coeffs, k_coeffs, basis);
                yb.copy_from_slice(&p[..yb.len()]);
                for (o, v) in db.iter_mut().zip(d) {
                    *o = v * inv_b;
                }
            }
        }
        None => {
            for (xb, yb) in xs.chunks(LANES).zip(ys.chunks_mut(LANES)) {
                let (p, _) =
                    eval_lanes::<T, false>(&load_scaled(xb, inv_b), coeffs, k_coeffs, basis);
                yb.copy_from_slice(&p[..yb.len()]);
            }
        }
    }
}

/// Backward over one chunk: dx += dy * dydx (when given) and the chunk's
/// coefficient gradients into `acc` (when given; lanes summed in order).
#[inline(always)]
fn backward_chunk<T: Real>(
    xs: &[T],
    dys: &[T],
    dydx: &[T],
    inv_b: T,
    basis: PolyBasis,
    dx: Option<&mut [T]>,
    acc: Option<&mut [T]>,
) {
    if let Some(dx) = dx {
        for ((o, &g), &d) in dx.iter_mut().zip(dys).zip(dydx) {
            *o += g * d;
        }
    }
    if let Some(acc) = acc {
        let mut lanes = vec![[T::ZERO; LANES]; acc.len()];
        for (xb, gb) in xs.chunks(LANES).zip(dys.chunks(LANES)) {
            let t = load_scaled(xb, inv_b);
            // Padding lanes have g = 0 and add nothing.
            accumulate_lanes(&t, &load(gb), basis, &mut lanes);
        }
        for (a, lane) in acc.iter_mut().zip(&lanes) {
            *a = lane.iter().copied().sum();
        }
    }
}

/// The chunk kernels compiled with AVX2 (chosen at run time); the code is
/// the same, so the results are too.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub fn forward_chunk<T: Real>(
        xs: &[T],
        coeffs: &[T],
        k_coeffs: &[T],
        inv_b: T,
        basis: PolyBasis,
        ys: &mut [T],
        dydx: Option<&mut [T]>,
    ) {
        super::forward_chunk(xs, coeffs, k_coeffs, inv_b, basis, ys, dydx)
    }

    #[target_feature(enable = "avx2")]
    pub fn backward_chunk<T: Real>(
        xs: &[T],
        dys: &[T],
        dydx: &[T],
        inv_b: T,
        basis: PolyBasis,
        dx: Option<&mut [T]>,
        acc: Option<&mut [T]>,
    ) {
        super::backward_chunk(xs, dys, dydx, inv_b, basis, dx, acc)
    }

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
    }
}

fn forward_chunk_fastest<T: Real>(
    xs: &[T],
    coeffs: &[T],
    k_coeffs: &[T],
    inv_b: T,
    basis: PolyBasis,
    ys: &mut [T],
    dydx: Option<&mut [T]>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { avx2::forward_chunk(xs, coeffs, k_coeffs, inv_b, basis, ys, dydx) };
        return;
    }
    forward_chunk(xs, coeffs, k_coeffs, inv_b, basis, ys, dydx)
}

fn backward_chunk_fastest<T: Real>(
    xs: &[T],
    dys: &[T],
    dydx: &[T],
    inv_b: T,
    basis: PolyBasis,
    dx: Option<&mut [T]>,
    acc: Option<&mut [T]>,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { avx2::backward_chunk(xs, dys, dydx, inv_b, basis, dx, acc) };
        return;
    }
    backward_chunk(xs, dys, dydx, inv_b, basis, dx, acc)
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
    let k_coeffs: Vec<T> = coeffs
        .iter()
        .enumerate()
        .map(|(k, &c)| T::from_f64(k as f64) * c)
        .collect();
    match dydx {
        Some(dydx) => {
            assert_eq!(dydx.len(), x.len());
            x.par_chunks(CHUNK)
                .zip(y.par_chunks_mut(CHUNK))
                .zip(dydx.par_chunks_mut(CHUNK))
                .for_each(|((xs, ys), ds)| {
                    forward_chunk_fastest(xs, coeffs, &k_coeffs, inv_b, basis, ys, Some(ds))
                });
        }
        None => {
            x.par_chunks(CHUNK)
                .zip(y.par_chunks_mut(CHUNK))
                .for_each(|(xs, ys)| {
                    forward_chunk_fastest(xs, coeffs, &k_coeffs, inv_b, basis, ys, None)
                });
        }
    }
}

/// Backward: adds `dy * dydx` into `dx` (when given) and
/// `sum_i dy_i phi_k(x_i / B)` into `dcoeffs` (when given), in one pass.
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
    let inv_b = T::ONE / range;
    let n1 = dcoeffs.as_ref().map_or(0, |d| d.len());
    let want_coeffs = dcoeffs.is_some();
    let chunk = |xs: &[T], dys: &[T], ds: &[T], dxs: Option<&mut [T]>| -> Vec<T> {
        let mut acc = vec![T::ZERO; n1];
        let acc_out = want_coeffs.then_some(acc.as_mut_slice());
        backward_chunk_fastest(xs, dys, ds, inv_b, basis, dxs, acc_out);
        acc
    };
    let inputs = x
        .par_chunks(CHUNK)
        .zip(dy.par_chunks(CHUNK))
        .zip(dydx.par_chunks(CHUNK));
    let partials: Vec<Vec<T>> = match dx {
        Some(dx) => {
            assert_eq!(dx.len(), x.len());
            inputs
                .zip(dx.par_chunks_mut(CHUNK))
                .map(|(((xs, dys), ds), dxs)| chunk(xs, dys, ds, Some(dxs)))
                .collect()
        }
        None => inputs
            .map(|((xs, dys), ds)| chunk(xs, dys, ds, None))
            .collect(),
    };
    if let Some(dcoeffs) = dcoeffs {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: f64, scale: f64) -> Vec<f64> {
        (0..n)
            .map(|i| scale * ((i as f64 + seed) * 0.613).sin())
            .collect()
    }

    /// The lane kernels over several chunks and a ragged tail against
    /// per-element scalar evaluation: p, p' (by central differences of the
    /// scalar p) and the coefficient gradients (by direct sums).
    #[test]
    fn lane_kernels_match_scalar_evaluation_over_chunks() {
        let len = 2 * CHUNK + 37;
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power] {
            for degree in [0usize, 1, 2, 8, 22, 31] {
                let range = 2.5;
                let x = values(len, degree as f64, 3.0);
                let c = values(degree + 1, 7.0, 1.0 / (degree as f64 + 1.0));
                let dy = values(len, 11.0, 1.0);
                let mut y = vec![0.0; len];
                let mut dydx = vec![0.0; len];
                poly_forward(&x, &c, range, basis, &mut y, Some(&mut dydx));
                let mut dx = vec![0.5; len];
                let mut dc = vec![0.25; c.len()];
                poly_backward(&x, &dydx, &dy, range, basis, Some(&mut dx), Some(&mut dc));
                let mut want_dc = vec![0.25; c.len()];
                for i in 0..len {
                    let t = x[i] / range;
                    let want_y = eval(t, &c, basis);
                    assert!(
                        (y[i] - want_y).abs() < 1e-9 * (1.0 + want_y.abs()),
                        "{basis:?} {degree} y[{i}]"
                    );
                    let h = 1e-6;
                    let slope =
                        (eval(t + h, &c, basis) - eval(t - h, &c, basis)) / (2.0 * h) / range;
                    assert!(
                        (dydx[i] - slope).abs() < 1e-5 * (1.0 + slope.abs()),
                        "{basis:?} {degree} dydx[{i}]"
                    );
                    assert_eq!(dx[i], 0.5 + dy[i] * dydx[i]);
                    for (k, w) in want_dc.iter_mut().enumerate() {
                        let mut unit = vec![0.0; c.len()];
                        unit[k] = 1.0;
                        *w += dy[i] * eval(t, &unit, basis);
                    }
                }
                for (k, (got, want)) in dc.iter().zip(&want_dc).enumerate() {
                    assert!(
                        (got - want).abs() < 1e-8 * (1.0 + want.abs()),
                        "{basis:?} {degree} dc[{k}]: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let len = 5 * CHUNK + 3;
        let x: Vec<f32> = values(len, 1.0, 40.0).iter().map(|v| *v as f32).collect();
        let dy: Vec<f32> = values(len, 2.0, 1.0).iter().map(|v| *v as f32).collect();
        let c: Vec<f32> = values(9, 3.0, 0.3).iter().map(|v| *v as f32).collect();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut y = vec![0.0f32; len];
                let mut dydx = vec![0.0f32; len];
                poly_forward(&x, &c, 35.0, PolyBasis::Chebyshev, &mut y, Some(&mut dydx));
                let mut dx = vec![0.0f32; len];
                let mut dc = vec![0.0f32; c.len()];
                poly_backward(
                    &x,
                    &dydx,
                    &dy,
                    35.0,
                    PolyBasis::Chebyshev,
                    Some(&mut dx),
                    Some(&mut dc),
                );
                (y, dx, dc)
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    /// The AVX2 build of the kernels gives bit-identical results to the
    /// baseline build (no fused multiply-adds), so results do not depend on the CPU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_build_is_bit_identical() {
        if !avx2::available() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let len = CHUNK;
        let x: Vec<f32> = values(len, 5.0, 40.0).iter().map(|v| *v as f32).collect();
        let dy: Vec<f32> = values(len, 6.0, 1.0).iter().map(|v| *v as f32).collect();
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power] {
            let c: Vec<f32> = values(23, 7.0, 0.05).iter().map(|v| *v as f32).collect();
            let kc: Vec<f32> = c.iter().enumerate().map(|(k, v)| k as f32 * v).collect();
            let inv_b = 1.0 / 35.0f32;
            let (mut y1, mut d1, mut y2, mut d2) = (
                vec![0.0; len],
                vec![0.0; len],
                vec![0.0; len],
                vec![0.0; len],
            );
            forward_chunk(&x, &c, &kc, inv_b, basis, &mut y1, Some(&mut d1));
            // SAFETY: AVX2 checked above.
            unsafe { avx2::forward_chunk(&x, &c, &kc, inv_b, basis, &mut y2, Some(&mut d2)) };
            assert_eq!((&y1, &d1), (&y2, &d2), "{basis:?} forward");
            let (mut dx1, mut dx2) = (vec![0.0; len], vec![0.0; len]);
            let (mut a1, mut a2) = (vec![0.0; c.len()], vec![0.0; c.len()]);
            backward_chunk(&x, &dy, &d1, inv_b, basis, Some(&mut dx1), Some(&mut a1));
            // SAFETY: AVX2 checked above.
            unsafe {
                avx2::backward_chunk(&x, &dy, &d1, inv_b, basis, Some(&mut dx2), Some(&mut a2))
            };
            assert_eq!((&dx1, &a1), (&dx2, &a2), "{basis:?} backward");
        }
    }
}

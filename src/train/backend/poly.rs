//! The polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B).
//!
//! The forward pass computes only p(t) (Chebyshev: the T recurrence; power:
//! Horner), so it keeps nothing but x for the backward. The backward
//! computes dx and the coefficient gradients sum_i dy_i phi_k(t_i) in one
//! sweep over the degree that recomputes the basis values phi_k(t) on the
//! fly: the same values give the coefficient gradients and, against the
//! derivative's coefficients (p' written in the same basis, computed once
//! per call), p'(t). No second recurrence, no degree-many tensors and no
//! stored p'(x) tensor.
//!
//! Speed: the recurrences are sequential in the degree, so each kernel runs
//! them for a block of `W` elements side by side (plain arrays that the
//! compiler turns into SIMD registers; enough independent chains to hide the
//! multiply and add latencies). `W` is 64 with AVX-512, 32 with AVX2 (both
//! chosen at run time) and 16 otherwise. No fused multiply-adds are formed
//! and the per-lane coefficient-gradient accumulators are laid out by the
//! element's index modulo `GROUP` whatever `W` is, so every build gives
//! bit-identical results.

use super::real::Real;
use rayon::prelude::*;

/// Elements per work item: fixed, so sums come out in the same order for
/// any thread count (determinism). A multiple of `GROUP`.
const CHUNK: usize = 4096;

/// Width of the coefficient-gradient accumulators: element i of a chunk adds
/// into lane i % GROUP. Every block width divides it.
const GROUP: usize = 64;

type Acc<T> = [T; GROUP];

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

/// The coefficients of p'(t) / B in the same basis, one fewer than `coeffs`
/// (none for a constant), computed in f64. Chebyshev: d_{k-1} = d_{k+1} +
/// 2k c_k from the top, then d_0 halved; power: d_k = (k+1) c_{k+1}.
fn derivative_coeffs<T: Real>(coeffs: &[T], inv_b: f64, basis: PolyBasis) -> Vec<T> {
    let n = coeffs.len() - 1;
    let c: Vec<f64> = coeffs.iter().map(|v| v.to_f64()).collect();
    let mut d = vec![0.0f64; n];
    match basis {
        PolyBasis::Power => {
            for (k, dk) in d.iter_mut().enumerate() {
                *dk = (k + 1) as f64 * c[k + 1];
            }
        }
        PolyBasis::Chebyshev => {
            let (mut above, mut above2) = (0.0, 0.0); // d_k, d_{k+1}
            for k in (1..=n).rev() {
                let v = above2 + 2.0 * k as f64 * c[k];
                d[k - 1] = v;
                above2 = above;
                above = v;
            }
            if n > 0 {
                d[0] *= 0.5;
            }
        }
    }
    d.into_iter().map(|v| T::from_f64(v * inv_b)).collect()
}

/// Copies up to `W` values into a lane array, padding with zeros.
#[inline(always)]
fn load<T: Real, const W: usize>(src: &[T]) -> [T; W] {
    let mut out = [T::ZERO; W];
    out[..src.len()].copy_from_slice(src);
    out
}

/// t = x / B for up to `W` values (x * (1/B), as [`eval`]'s callers).
#[inline(always)]
fn load_scaled<T: Real, const W: usize>(src: &[T], inv_b: T) -> [T; W] {
    let mut t = load::<T, W>(src);
    for v in &mut t {
        *v *= inv_b;
    }
    t
}

/// p(t) for `W` points; the same operations in the same order as [`eval`].
#[inline(always)]
fn eval_block<T: Real, const W: usize>(t: &[T; W], coeffs: &[T], basis: PolyBasis) -> [T; W] {
    let n = coeffs.len() - 1;
    let mut p = [coeffs[n]; W];
    match basis {
        PolyBasis::Power => {
            for &c in coeffs[..n].iter().rev() {
                for l in 0..W {
                    p[l] = p[l] * t[l] + c;
                }
            }
        }
        PolyBasis::Chebyshev => {
            if n == 0 {
                return p;
            }
            let (c0, c1) = (coeffs[0], coeffs[1]);
            let mut two_t = [T::ZERO; W];
            let mut t_prev = [T::ONE; W];
            let mut t_cur = *t;
            for l in 0..W {
                two_t[l] = t[l] + t[l];
                p[l] = c0 + c1 * t[l];
            }
            for &c in &coeffs[2..] {
                for l in 0..W {
                    let t_next = two_t[l] * t_cur[l] - t_prev[l];
                    p[l] += c * t_next;
                    t_prev[l] = t_cur[l];
                    t_cur[l] = t_next;
                }
            }
        }
    }
    p
}

/// For `W` points with output gradients `g`: adds g * phi_k(t) into
/// `acc[k][lane0 + l]` (when `ACC`) and returns p'(t) / B from the
/// derivative coefficients `dc` (when `DX`; zeros otherwise). `n` is the
/// degree; the basis values are computed once for both.
#[inline(always)]
fn backward_block<T: Real, const W: usize, const DX: bool, const ACC: bool>(
    t: &[T; W],
    g: &[T; W],
    n: usize,
    dc: &[T],
    basis: PolyBasis,
    acc: &mut [Acc<T>],
    lane0: usize,
) -> [T; W] {
    let mut slope = [T::ZERO; W];
    if ACC {
        let a = &mut acc[0][lane0..lane0 + W];
        for l in 0..W {
            a[l] += g[l];
        }
    }
    if n == 0 {
        return slope;
    }
    if DX {
        slope = [dc[0]; W];
    }
    match basis {
        PolyBasis::Power => {
            let mut pw = [T::ONE; W];
            for k in 1..=n {
                let d = if k < n { dc[k] } else { T::ZERO };
                for l in 0..W {
                    pw[l] *= t[l];
                }
                if ACC {
                    let a = &mut acc[k][lane0..lane0 + W];
                    for l in 0..W {
                        a[l] += g[l] * pw[l];
                    }
                }
                if DX && k < n {
                    for l in 0..W {
                        slope[l] += d * pw[l];
                    }
                }
            }
        }
        PolyBasis::Chebyshev => {
            let mut two_t = [T::ZERO; W];
            let mut t_prev = [T::ONE; W];
            let mut t_cur = *t;
            for l in 0..W {
                two_t[l] = t[l] + t[l];
            }
            if ACC {
                let a = &mut acc[1][lane0..lane0 + W];
                for l in 0..W {
                    a[l] += g[l] * t[l];
                }
            }
            if DX && n > 1 {
                for l in 0..W {
                    slope[l] += dc[1] * t[l];
                }
            }
            for k in 2..=n {
                let d = if k < n { dc[k] } else { T::ZERO };
                for l in 0..W {
                    let t_next = two_t[l] * t_cur[l] - t_prev[l];
                    t_prev[l] = t_cur[l];
                    t_cur[l] = t_next;
                }
                if ACC {
                    let a = &mut acc[k][lane0..lane0 + W];
                    for l in 0..W {
                        a[l] += g[l] * t_cur[l];
                    }
                }
                if DX && k < n {
                    for l in 0..W {
                        slope[l] += d * t_cur[l];
                    }
                }
            }
        }
    }
    slope
}

/// Forward over one chunk: y = p(x/B).
#[inline(always)]
fn forward_chunk<T: Real, const W: usize>(
    xs: &[T],
    coeffs: &[T],
    inv_b: T,
    basis: PolyBasis,
    ys: &mut [T],
) {
    for (xb, yb) in xs.chunks(W).zip(ys.chunks_mut(W)) {
        let p = eval_block::<T, W>(&load_scaled(xb, inv_b), coeffs, basis);
        yb.copy_from_slice(&p[..yb.len()]);
    }
}

/// Backward over one chunk: dx += dy * p'(x/B)/B (when `DX`) and the
/// chunk's per-lane coefficient gradients into `acc` (when `ACC`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn backward_chunk<T: Real, const W: usize, const DX: bool, const ACC: bool>(
    xs: &[T],
    dys: &[T],
    n: usize,
    dc: &[T],
    inv_b: T,
    basis: PolyBasis,
    dx: &mut [T],
    acc: &mut [Acc<T>],
) {
    for (b, (xb, gb)) in xs.chunks(W).zip(dys.chunks(W)).enumerate() {
        let t = load_scaled::<T, W>(xb, inv_b);
        // Padding lanes have g = 0 and add nothing.
        let g = load::<T, W>(gb);
        let slope = backward_block::<T, W, DX, ACC>(&t, &g, n, dc, basis, acc, (b * W) % GROUP);
        if DX {
            let o = &mut dx[b * W..][..xb.len()];
            for l in 0..xb.len() {
                o[l] += g[l] * slope[l];
            }
        }
    }
}

/// Which build of the chunk kernels this CPU runs.
#[derive(Clone, Copy)]
enum Isa {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

fn fastest_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The chunk kernels compiled for AVX2 and AVX-512 (chosen at run time);
/// the code is the same, so the results are too.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub fn forward_avx2<T: Real>(xs: &[T], c: &[T], inv_b: T, basis: PolyBasis, ys: &mut [T]) {
        forward_chunk::<T, 32>(xs, c, inv_b, basis, ys)
    }

    #[target_feature(enable = "avx512f")]
    pub fn forward_avx512<T: Real>(xs: &[T], c: &[T], inv_b: T, basis: PolyBasis, ys: &mut [T]) {
        forward_chunk::<T, 64>(xs, c, inv_b, basis, ys)
    }

    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub fn backward_avx2<T: Real, const DX: bool, const ACC: bool>(
        xs: &[T],
        dys: &[T],
        n: usize,
        dc: &[T],
        inv_b: T,
        basis: PolyBasis,
        dx: &mut [T],
        acc: &mut [Acc<T>],
    ) {
        backward_chunk::<T, 32, DX, ACC>(xs, dys, n, dc, inv_b, basis, dx, acc)
    }

    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub fn backward_avx512<T: Real, const DX: bool, const ACC: bool>(
        xs: &[T],
        dys: &[T],
        n: usize,
        dc: &[T],
        inv_b: T,
        basis: PolyBasis,
        dx: &mut [T],
        acc: &mut [Acc<T>],
    ) {
        backward_chunk::<T, 64, DX, ACC>(xs, dys, n, dc, inv_b, basis, dx, acc)
    }
}

fn forward_chunk_on<T: Real>(
    isa: Isa,
    xs: &[T],
    coeffs: &[T],
    inv_b: T,
    basis: PolyBasis,
    ys: &mut [T],
) {
    match isa {
        Isa::Baseline => forward_chunk::<T, 16>(xs, coeffs, inv_b, basis, ys),
        // SAFETY: `fastest_isa` saw the CPU support these features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { simd::forward_avx2(xs, coeffs, inv_b, basis, ys) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { simd::forward_avx512(xs, coeffs, inv_b, basis, ys) },
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_chunk_on<T: Real, const DX: bool, const ACC: bool>(
    isa: Isa,
    xs: &[T],
    dys: &[T],
    n: usize,
    dc: &[T],
    inv_b: T,
    basis: PolyBasis,
    dx: &mut [T],
    acc: &mut [Acc<T>],
) {
    match isa {
        Isa::Baseline => backward_chunk::<T, 16, DX, ACC>(xs, dys, n, dc, inv_b, basis, dx, acc),
        // SAFETY: `fastest_isa` saw the CPU support these features.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe {
            simd::backward_avx2::<T, DX, ACC>(xs, dys, n, dc, inv_b, basis, dx, acc)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            simd::backward_avx512::<T, DX, ACC>(xs, dys, n, dc, inv_b, basis, dx, acc)
        },
    }
}

/// Forward: `y = p(x / range)`.
pub fn poly_forward<T: Real>(x: &[T], coeffs: &[T], range: T, basis: PolyBasis, y: &mut [T]) {
    poly_forward_on(fastest_isa(), x, coeffs, range, basis, y)
}

fn poly_forward_on<T: Real>(
    isa: Isa,
    x: &[T],
    coeffs: &[T],
    range: T,
    basis: PolyBasis,
    y: &mut [T],
) {
    assert!(!coeffs.is_empty() && y.len() == x.len());
    let inv_b = T::ONE / range;
    x.par_chunks(CHUNK)
        .zip(y.par_chunks_mut(CHUNK))
        .for_each(|(xs, ys)| forward_chunk_on(isa, xs, coeffs, inv_b, basis, ys));
}

/// Backward: adds `dy * p'(x/B)/B` into `dx` (when given) and
/// `sum_i dy_i phi_k(x_i / B)` into `dcoeffs` (when given), in one pass.
pub fn poly_backward<T: Real>(
    x: &[T],
    dy: &[T],
    coeffs: &[T],
    range: T,
    basis: PolyBasis,
    dx: Option<&mut [T]>,
    dcoeffs: Option<&mut [T]>,
) {
    poly_backward_on(fastest_isa(), x, dy, coeffs, range, basis, dx, dcoeffs)
}

#[allow(clippy::too_many_arguments)]
fn poly_backward_on<T: Real>(
    isa: Isa,
    x: &[T],
    dy: &[T],
    coeffs: &[T],
    range: T,
    basis: PolyBasis,
    dx: Option<&mut [T]>,
    dcoeffs: Option<&mut [T]>,
) {
    assert!(!coeffs.is_empty() && x.len() == dy.len());
    let n = coeffs.len() - 1;
    let inv_b = T::ONE / range;
    let dc = derivative_coeffs(coeffs, inv_b.to_f64(), basis);
    if let Some(d) = &dcoeffs {
        assert_eq!(d.len(), coeffs.len());
    }
    let inputs = x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK));
    // Per chunk: the lane accumulators summed over the lanes in order.
    let lanes_summed = |acc: Vec<Acc<T>>| -> Vec<T> {
        acc.iter().map(|lane| lane.iter().copied().sum()).collect()
    };
    let partials: Vec<Vec<T>> = match (dx, dcoeffs.is_some()) {
        (Some(dx), true) => {
            assert_eq!(dx.len(), x.len());
            inputs
                .zip(dx.par_chunks_mut(CHUNK))
                .map(|((xs, dys), dxs)| {
                    let mut acc = vec![[T::ZERO; GROUP]; n + 1];
                    backward_chunk_on::<T, true, true>(
                        isa, xs, dys, n, &dc, inv_b, basis, dxs, &mut acc,
                    );
                    lanes_summed(acc)
                })
                .collect()
        }
        (Some(dx), false) => {
            assert_eq!(dx.len(), x.len());
            inputs
                .zip(dx.par_chunks_mut(CHUNK))
                .for_each(|((xs, dys), dxs)| {
                    backward_chunk_on::<T, true, false>(
                        isa,
                        xs,
                        dys,
                        n,
                        &dc,
                        inv_b,
                        basis,
                        dxs,
                        &mut [],
                    );
                });
            Vec::new()
        }
        (None, true) => inputs
            .map(|(xs, dys)| {
                let mut acc = vec![[T::ZERO; GROUP]; n + 1];
                backward_chunk_on::<T, false, true>(
                    isa,
                    xs,
                    dys,
                    n,
                    &dc,
                    inv_b,
                    basis,
                    &mut [],
                    &mut acc,
                );
                lanes_summed(acc)
            })
            .collect(),
        (None, false) => Vec::new(),
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

    /// The block kernels over several chunks and a ragged tail against
    /// per-element scalar evaluation: p, dx (by central differences of the
    /// scalar p) and the coefficient gradients (by direct sums).
    #[test]
    fn block_kernels_match_scalar_evaluation_over_chunks() {
        let len = 2 * CHUNK + 37;
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power] {
            for degree in [0usize, 1, 2, 3, 8, 22, 31] {
                let range = 2.5;
                let x = values(len, degree as f64, 3.0);
                let c = values(degree + 1, 7.0, 1.0 / (degree as f64 + 1.0));
                let dy = values(len, 11.0, 1.0);
                let mut y = vec![0.0; len];
                poly_forward(&x, &c, range, basis, &mut y);
                let mut dx = vec![0.5; len];
                let mut dc = vec![0.25; c.len()];
                poly_backward(&x, &dy, &c, range, basis, Some(&mut dx), Some(&mut dc));
                let mut want_dc = vec![0.25; c.len()];
                for i in 0..len {
                    let t = x[i] * (1.0 / range);
                    let want_y = eval(t, &c, basis);
                    assert_eq!(y[i], want_y, "{basis:?} {degree} y[{i}]");
                    let h = 1e-6;
                    let slope =
                        (eval(t + h, &c, basis) - eval(t - h, &c, basis)) / (2.0 * h) / range;
                    let want_dx = 0.5 + dy[i] * slope;
                    assert!(
                        (dx[i] - want_dx).abs() < 1e-5 * (1.0 + want_dx.abs()),
                        "{basis:?} {degree} dx[{i}]: {} vs {want_dx}",
                        dx[i]
                    );
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
                // Each gradient alone equals its part of the fused pass.
                let mut dx_only = vec![0.5; len];
                poly_backward(&x, &dy, &c, range, basis, Some(&mut dx_only), None);
                assert_eq!(dx_only, dx, "{basis:?} {degree} dx alone");
                let mut dc_only = vec![0.25; c.len()];
                poly_backward(&x, &dy, &c, range, basis, None, Some(&mut dc_only));
                assert_eq!(dc_only, dc, "{basis:?} {degree} dc alone");
            }
        }
    }

    #[test]
    fn derivative_coefficients_match_known_derivatives() {
        // T_3 = 4t^3 - 3t: T_3' = 12t^2 - 3 = 6 T_2 + 3 T_0.
        let d = derivative_coeffs(&[0.0, 0.0, 0.0, 1.0], 1.0, PolyBasis::Chebyshev);
        assert_eq!(d, vec![3.0, 0.0, 6.0]);
        // 1 + 2t + 3t^2 over B = 2: (2 + 6t) / 2.
        let d = derivative_coeffs(&[1.0, 2.0, 3.0], 0.5, PolyBasis::Power);
        assert_eq!(d, vec![1.0, 3.0]);
        assert!(derivative_coeffs(&[5.0], 1.0, PolyBasis::Chebyshev).is_empty());
    }

    fn run_f32(isa: Isa, basis: PolyBasis, len: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let x: Vec<f32> = values(len, 1.0, 40.0).iter().map(|v| *v as f32).collect();
        let dy: Vec<f32> = values(len, 2.0, 1.0).iter().map(|v| *v as f32).collect();
        let c: Vec<f32> = values(23, 3.0, 0.05).iter().map(|v| *v as f32).collect();
        let mut y = vec![0.0f32; len];
        poly_forward_on(isa, &x, &c, 35.0, basis, &mut y);
        let mut dx = vec![0.0f32; len];
        let mut dc = vec![0.0f32; c.len()];
        poly_backward_on(isa, &x, &dy, &c, 35.0, basis, Some(&mut dx), Some(&mut dc));
        (y, dx, dc)
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| run_f32(fastest_isa(), PolyBasis::Chebyshev, 5 * CHUNK + 3))
        };
        let one = run(1);
        for threads in [2, 3] {
            assert_eq!(run(threads), one, "{threads} threads");
        }
    }

    /// The AVX2 and AVX-512 builds (other block widths) give bit-identical
    /// results to the baseline build, so results do not depend on the CPU.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_builds_are_bit_identical() {
        let mut builds = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            builds.push(Isa::Avx2);
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            builds.push(Isa::Avx512);
        }
        if builds.is_empty() {
            eprintln!("skipped: this CPU has neither AVX2 nor AVX-512");
        }
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power] {
            let base = run_f32(Isa::Baseline, basis, 2 * CHUNK + 45);
            for isa in &builds {
                assert_eq!(run_f32(*isa, basis, 2 * CHUNK + 45), base, "{basis:?}");
            }
        }
    }
}

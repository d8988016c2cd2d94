//! The polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B), and the
//! paper's raw power form y = sum_k c_k x^k (see [`PolyBasis::RawPower`]).
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
    /// sum_k c_k x^k on the raw input (the range is not used), in the form
    /// of the paper's official code: every power x^k is the input's power
    /// rounded to the scalar type (in float32: inf once |x|^k > f32::MAX),
    /// multiplied by c_k and summed (ascending k); the backward adds
    /// (dy c_k) (k x^(k-1)) per term and dy x^k to c_k, as PyTorch's
    /// autograd of `(c * x.unsqueeze(-1).pow(k)).sum(-1)` does. So it
    /// overflows where that code overflows, and inf - inf gives NaN.
    RawPower,
}

/// p(t) at one point (inference, fit reports).
#[inline]
fn eval<T: Real>(t: T, coeffs: &[T], basis: PolyBasis) -> T {
    let n = coeffs.len() - 1;
    match basis {
        PolyBasis::RawPower => raw_eval_block::<T, 1>(&[t], coeffs)[0],
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
/// (none for a constant), computed in f64; for the raw power form, the
/// coefficients unchanged. Chebyshev: d_{k-1} = d_{k+1} +
/// 2k c_k from the top, then d_0 halved; power: d_k = (k+1) c_{k+1}.
fn derivative_coeffs<T: Real>(coeffs: &[T], inv_b: f64, basis: PolyBasis) -> Vec<T> {
    let n = coeffs.len() - 1;
    let c: Vec<f64> = coeffs.iter().map(|v| v.to_f64()).collect();
    let mut d = vec![0.0f64; n];
    match basis {
        // The raw form's backward works per term from the coefficients
        // themselves (see `raw_backward_block`).
        PolyBasis::RawPower => return coeffs.to_vec(),
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
        PolyBasis::RawPower => return raw_eval_block(t, coeffs),
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

/// The powers of `W` inputs are carried in f64 and rounded to `T` for use:
/// each x^k is then the correctly rounded power (f64 is exact to ~1e-15
/// relative up to degree 31, and overflows only past |x| ~ 1e9), so in
/// float32 it is inf exactly where float32's x^k is.
#[inline(always)]
fn widen<T: Real, const W: usize>(x: &[T; W]) -> [f64; W] {
    let mut out = [0.0f64; W];
    for l in 0..W {
        out[l] = x[l].to_f64();
    }
    out
}

/// sum_k c_k x^k for `W` raw inputs (see [`PolyBasis::RawPower`]).
#[inline(always)]
fn raw_eval_block<T: Real, const W: usize>(x: &[T; W], coeffs: &[T]) -> [T; W] {
    let xs = widen(x);
    let mut pw = [1.0f64; W];
    // x^0 = 1 for every x, as torch.pow (also for inf and NaN).
    let mut p = [coeffs[0]; W];
    for &c in &coeffs[1..] {
        for l in 0..W {
            pw[l] *= xs[l];
            p[l] += c * T::from_f64(pw[l]);
        }
    }
    p
}

/// The raw form's backward for `W` inputs with output gradients `g`: adds
/// g x^k into `acc[k][lane0 + l]` (when `ACC`) and returns
/// sum_k (g c_k) (k x^(k-1)) (when `DX`; zeros otherwise).
#[inline(always)]
fn raw_backward_block<T: Real, const W: usize, const DX: bool, const ACC: bool>(
    x: &[T; W],
    g: &[T; W],
    coeffs: &[T],
    acc: &mut [Acc<T>],
    lane0: usize,
) -> [T; W] {
    let xs = widen(x);
    let mut pw = [1.0f64; W];
    let mut dx = [T::ZERO; W];
    if ACC {
        let a = &mut acc[0][lane0..lane0 + W];
        for l in 0..W {
            a[l] += g[l];
        }
    }
    for (k, &c) in coeffs.iter().enumerate().skip(1) {
        let kt = T::from_f64(k as f64);
        for l in 0..W {
            // pw = x^(k-1) here.
            if DX {
                dx[l] += (g[l] * c) * (kt * T::from_f64(pw[l]));
            }
            pw[l] *= xs[l];
        }
        if ACC {
            let a = &mut acc[k][lane0..lane0 + W];
            for l in 0..W {
                a[l] += g[l] * T::from_f64(pw[l]);
            }
        }
    }
    dx
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
        PolyBasis::RawPower => unreachable!("the raw power form has its own backward"),
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
        // Padding lanes have x = g = 0 and add nothing.
        let g = load::<T, W>(gb);
        let lane0 = (b * W) % GROUP;
        let add = if basis == PolyBasis::RawPower {
            raw_backward_block::<T, W, DX, ACC>(&t, &g, dc, acc, lane0)
        } else {
            let slope = backward_block::<T, W, DX, ACC>(&t, &g, n, dc, basis, acc, lane0);
            std::array::from_fn(|l| g[l] * slope[l])
        };
        if DX {
            let o = &mut dx[b * W..][..xb.len()];
            for l in 0..xb.len() {
                o[l] += add[l];
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

/// 1 / B, the factor that maps x to the basis' argument (1 for the raw form).
fn input_scale<T: Real>(range: T, basis: PolyBasis) -> T {
    if basis == PolyBasis::RawPower {
        T::ONE
    } else {
        T::ONE / range
    }
}

/// Forward: `y = p(x / range)` (`p(x)` for the raw power form).
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
    let inv_b = input_scale(range, basis);
    x.par_chunks(CHUNK)
        .zip(y.par_chunks_mut(CHUNK))
        .for_each(|(xs, ys)| forward_chunk_on(isa, xs, coeffs, inv_b, basis, ys));
}

/// Backward: adds `dy * p'(x/B)/B` into `dx` (when given) and
/// `sum_i dy_i phi_k(x_i / B)` into `dcoeffs` (when given), in one pass
/// (for the raw power form: at x, per term, see [`PolyBasis::RawPower`]).
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
    let inv_b = input_scale(range, basis);
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
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power, PolyBasis::RawPower] {
            for degree in [0usize, 1, 2, 3, 8, 22, 31] {
                let range = 2.5;
                let inv_b = input_scale(range, basis);
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
                    let t = x[i] * inv_b;
                    let want_y = eval(t, &c, basis);
                    assert_eq!(y[i], want_y, "{basis:?} {degree} y[{i}]");
                    let h = 1e-6;
                    let slope =
                        (eval(t + h, &c, basis) - eval(t - h, &c, basis)) / (2.0 * h) * inv_b;
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

    /// float32's x^d: the exact power rounded once (inf past f32::MAX).
    fn f32_pow(x: f32, d: usize) -> f32 {
        f64::from(x).powi(d as i32) as f32
    }

    /// The raw power form overflows exactly where float32's x^d does: at
    /// every degree, the largest float32 whose d-th power is finite gives
    /// that power, the next float32 gives inf (NaN once an overflowed power
    /// meets a zero coefficient or an inf of the other sign).
    #[test]
    fn raw_power_overflows_exactly_where_float32_powers_do() {
        for degree in [2usize, 8, 16, 22, 31] {
            // The largest float32 with a finite d-th power, by bisection on the bits.
            let (mut lo, mut hi) = (1.0f32.to_bits(), f32::MAX.to_bits());
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if f32_pow(f32::from_bits(mid), degree).is_finite() {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let (edge, past) = (f32::from_bits(lo), f32::from_bits(hi));
            let analytic = (f64::from(f32::MAX).ln() / degree as f64).exp();
            assert!((f64::from(edge) / analytic - 1.0).abs() < 1e-6, "{degree}");
            // Only c_d = 1: y = x^d while it is finite.
            let mut c = vec![0.0f32; degree + 1];
            c[degree] = 1.0;
            let x = [edge, past, -edge, -past];
            let mut y = [0.0f32; 4];
            poly_forward(&x, &c, 1.0, PolyBasis::RawPower, &mut y);
            let sign = if degree % 2 == 0 { 1.0 } else { -1.0 };
            assert_eq!(
                y,
                [
                    f32_pow(edge, degree),
                    f32::INFINITY,
                    sign * f32_pow(edge, degree),
                    sign * f32::INFINITY
                ],
                "degree {degree}"
            );
            assert!(y[0].is_finite());
        }
        // The paper's degree-22 setting (ReLU fit on B = 47) in float32:
        // finite up to 56.4, not beyond, in the output and in the gradients.
        let fit = crate::train::fit::fit_activation(
            crate::ir::FitTarget::Relu,
            22,
            47.0,
            crate::ir::FitMethod::LeastSquares { points: 100 },
            crate::ir::Basis::RawPower,
        )
        .unwrap();
        let c: Vec<f32> = fit.coeffs.iter().map(|&v| v as f32).collect();
        assert!(c.iter().all(|v| v.is_finite()) && c[22] != 0.0);
        let x = [47.0f32, 56.0, -56.0, 57.0, -57.0, 80.0];
        let mut y = [0.0f32; 6];
        poly_forward(&x, &c, 47.0, PolyBasis::RawPower, &mut y);
        assert!(y[..3].iter().all(|v| v.is_finite()), "{y:?}");
        assert!(y[3..].iter().all(|v| !v.is_finite()), "{y:?}");
        // Near ReLU inside the range, as the fit: p(47) ~ 47.
        assert!((y[0] - 47.0).abs() < 2.0, "{y:?}");
        // The gradients at one input (two inputs of 56 already overflow the
        // float32 sum of x^22 in c_22's gradient, as PyTorch's would).
        let grads = |x: f32| {
            let (mut dx, mut dc) = ([0.0f32], vec![0.0f32; 23]);
            let b = PolyBasis::RawPower;
            poly_backward(&[x], &[1.0], &c, 47.0, b, Some(&mut dx), Some(&mut dc));
            (dx[0], dc)
        };
        let (dx, dc) = grads(-56.0);
        assert!(
            dx.is_finite() && dc.iter().all(|v| v.is_finite()),
            "{dx} {dc:?}"
        );
        // At 57 only x^22 (in c_22's gradient) overflows; 22 x^21 does past
        // (f32::MAX / 22)^(1/21) = 59.0.
        let (dx, dc) = grads(57.0);
        assert!(dx.is_finite() && dc[22] == f32::INFINITY, "{dx} {dc:?}");
        assert!(dc[..22].iter().all(|v| v.is_finite()), "{dc:?}");
        let (dx, _) = grads(60.0);
        assert!(!dx.is_finite(), "{dx}");
    }

    /// The ReLU fits of the paper's image table evaluated in float32 at 9401
    /// points of [-B, B]: the raw power form's rounding error against the
    /// exact fit grows with the degree (its terms reach 3.4e6 x^k / B^k at
    /// degree 22 and cancel) to 0.43 at degree 22, two thirds of the fit's
    /// own error; the Chebyshev form stays below 1e-4. Prints the table
    /// (`cargo test --lib float32_error_of_the_raw_form -- --nocapture`).
    #[test]
    fn float32_error_of_the_raw_form() {
        use crate::ir::{Basis, FitMethod, FitTarget};
        use crate::train::fit::{evaluate, fit_activation};
        let ls = FitMethod::LeastSquares { points: 100 };
        for (degree, range) in [(2u32, 12.0), (4, 20.0), (8, 35.0), (16, 40.0), (22, 47.0)] {
            let fit = |basis| fit_activation(FitTarget::Relu, degree, range, ls, basis).unwrap();
            let (cheb, raw) = (fit(Basis::Chebyshev), fit(Basis::RawPower));
            let x: Vec<f32> = (0..=9400)
                .map(|i| (range * (i as f64 / 4700.0 - 1.0)) as f32)
                .collect();
            let error = |coeffs: &[f64], basis| {
                let c: Vec<f32> = coeffs.iter().map(|&v| v as f32).collect();
                let mut y = vec![0.0f32; x.len()];
                poly_forward(&x, &c, range as f32, basis, &mut y);
                x.iter().zip(&y).fold(0.0f64, |m, (&xi, &yi)| {
                    let exact = evaluate(&cheb.coeffs, Basis::Chebyshev, f64::from(xi) / range);
                    m.max((f64::from(yi) - exact).abs())
                })
            };
            let (e_cheb, e_raw) = (
                error(&cheb.coeffs, PolyBasis::Chebyshev),
                error(&raw.coeffs, PolyBasis::RawPower),
            );
            eprintln!(
                "degree {degree:2} B = {range}: float32 error raw_power {e_raw:.2e}, chebyshev {e_cheb:.2e}; fit error {:.3}",
                cheb.max_error
            );
            assert!(e_cheb < 1e-4, "degree {degree}: {e_cheb}");
            if degree == 22 {
                assert!(e_raw > 0.1 && e_raw < 1.0, "{e_raw}");
            }
        }
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
        for basis in [PolyBasis::Chebyshev, PolyBasis::Power, PolyBasis::RawPower] {
            let base = run_f32(Isa::Baseline, basis, 2 * CHUNK + 45);
            for isa in &builds {
                assert_eq!(run_f32(*isa, basis, 2 * CHUNK + 45), base, "{basis:?}");
            }
        }
    }
}

//! Row-major matrix products through the `gemm` crate.

use super::real::Real;
use gemm::Parallelism;

/// Work (m·n·k) below which threading costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// `c[m,n] (+)= op(a)[m,k] · op(b)[k,n]`, all row-major; `a_t` means `a` is
/// stored as `[k,m]`, `b_t` means `b` is stored as `[n,k]`. With `accumulate`
/// the product is added to `c`, else `c` is overwritten. `parallel` lets gemm
/// use the current rayon pool (never inside an already parallel loop).
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_t: bool,
    b: &[T],
    b_t: bool,
    c: &mut [T],
    accumulate: bool,
    parallel: bool,
) {
    assert!(a.len() >= m * k, "matmul: lhs too short");
    assert!(b.len() >= k * n, "matmul: rhs too short");
    assert!(c.len() >= m * n, "matmul: dst too short");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::ZERO);
        }
        return;
    }
    let (a_rs, a_cs) = if a_t {
        (1, m as isize)
    } else {
        (k as isize, 1)
    };
    let (b_rs, b_cs) = if b_t {
        (1, k as isize)
    } else {
        (n as isize, 1)
    };
    let threads = rayon::current_num_threads();
    let par = if parallel && threads > 1 && m * n * k >= PARALLEL_MIN_WORK {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm forms from these
    // strides inside the slices; `c` does not alias `a` or `b` (borrow rules).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], at: bool, b: &[f64], bt: bool) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    let av = if at { a[l * m + i] } else { a[i * k + l] };
                    let bv = if bt { b[j * k + l] } else { b[l * n + j] };
                    c[i * n + j] += av * bv;
                }
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_for_all_transposes() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        for at in [false, true] {
            for bt in [false, true] {
                let want = naive(m, n, k, &a, at, &b, bt);
                let mut c = vec![1.0; m * n];
                matmul(m, n, k, &a, at, &b, bt, &mut c, true, false);
                for (got, w) in c.iter().zip(&want) {
                    assert!((got - (w + 1.0)).abs() < 1e-12);
                }
                matmul(m, n, k, &a, at, &b, bt, &mut c, false, false);
                for (got, w) in c.iter().zip(&want) {
                    assert!((got - w).abs() < 1e-12);
                }
            }
        }
    }
}

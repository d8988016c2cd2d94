//! Multiplicative-depth rules (DESIGN.md section 5), in one place so that
//! `pnnc info` (checker) and `pnnc compile` (he) can never disagree.

/// Levels consumed by a dense or conv layer once BatchNorm, the next
/// activation's input scaling and pooling factors are folded into it.
pub const LINEAR: u32 = 1;
/// Levels consumed by a BatchNorm that cannot be folded (per-channel affine).
pub const UNFOLDED_BATCHNORM: u32 = 1;
/// Additions, rotations, average pooling (its 1/k folds forward), flatten.
pub const FREE: u32 = 0;

/// Levels of a degree-`degree` polynomial evaluated in the Chebyshev basis
/// on inputs already scaled to [-1, 1]: ceil(log2(d + 1)).
pub fn poly(degree: u32) -> u32 {
    // Smallest k with 2^k >= d + 1, without floating point.
    let n = u64::from(degree) + 1;
    let mut k = 0;
    while (1u64 << k) < n {
        k += 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poly_levels_match_ceil_log2() {
        let expected = [
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 3),
            (7, 3),
            (8, 4),
            (15, 4),
            (16, 5),
            (22, 5),
            (31, 5),
        ];
        for (degree, levels) in expected {
            assert_eq!(poly(degree), levels, "degree {degree}");
            let float = ((f64::from(degree) + 1.0).log2()).ceil() as u32;
            assert_eq!(poly(degree), float, "degree {degree} vs float formula");
        }
    }
}

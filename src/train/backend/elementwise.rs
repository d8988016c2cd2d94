//! Element-wise ops: ReLU (baseline only), dropout, scaling.

use super::real::Real;

pub fn relu_forward<T: Real>(x: &[T], y: &mut [T]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = if v > T::ZERO { v } else { T::ZERO };
    }
}

/// Adds dy where x > 0 into dx.
pub fn relu_backward<T: Real>(x: &[T], dy: &[T], dx: &mut [T]) {
    for ((d, &g), &v) in dx.iter_mut().zip(dy).zip(x) {
        if v > T::ZERO {
            *d += g;
        }
    }
}

/// SplitMix64: a fixed, well-mixed hash so that dropout masks depend only
/// on (seed, site, element), not on threads or call order.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Inverted-dropout multipliers: 0 with probability p, else 1/(1-p).
pub fn dropout_mask<T: Real>(len: usize, p: f64, seed: u64, site: u64) -> Vec<T> {
    let keep = T::from_f64(1.0 / (1.0 - p));
    let base = splitmix64(seed ^ splitmix64(site.wrapping_add(0x5851_f42d_4c95_7f2d)));
    (0..len)
        .map(|i| {
            let u = (splitmix64(base ^ i as u64) >> 11) as f64 / (1u64 << 53) as f64;
            if u < p { T::ZERO } else { keep }
        })
        .collect()
}

//! CKKS parameter choice (docs/he.md, "Parameters").

use super::HeError;

/// HomomorphicEncryption.org standard (2018), ternary secret, classical
/// attacks: maximum log2(Q*P) per ring dimension; 2^16 from OpenFHE's table.
const HE_STANDARD: &[(u64, [u32; 3])] = &[
    (1024, [27, 19, 14]),
    (2048, [54, 37, 29]),
    (4096, [109, 75, 58]),
    (8192, [218, 152, 118]),
    (16384, [438, 305, 237]),
    (32768, [881, 611, 476]),
    (65536, [1761, 1197, 932]),
];

/// Largest ring dimension used without bootstrapping.
pub const MAX_RING_DIM: u64 = 65536;
/// Bits of q0: holds the decrypted result (|value| < 2^(q0 - scale) = 2^20)
/// with the scale on top.
pub const FIRST_MOD_BITS: u32 = 60;
/// log2 of the scale: CKKS error after rescaling is ~2^-(scale_bits - 14) for
/// these depths, i.e. ~1e-7, far below the 1e-3 logit tolerance, while
/// leaving each level cheap. 50 would buy precision the task does not need.
pub const SCALE_BITS: u32 = 40;
/// Key switching (OpenFHE HYBRID, 3 digits) adds special primes of about
/// log Q / 3 bits, rounded up to 60-bit primes.
const KEY_SWITCH_DIGITS: u32 = 3;
const SPECIAL_PRIME_BITS: u32 = 60;
/// Levels consumed by a CKKS bootstrap (OpenFHE, level budget {3, 3}); an
/// assumption recorded in the plan, to be confirmed by the runner.
pub const BOOTSTRAP_LEVELS: u32 = 14;

pub fn max_log_qp(ring_dim: u64, security: u32) -> Result<u32, HeError> {
    let col = match security {
        128 => 0,
        192 => 1,
        256 => 2,
        s => {
            return Err(HeError::Params(format!(
                "security {s} is not 128, 192 or 256"
            )));
        }
    };
    HE_STANDARD
        .iter()
        .find(|(n, _)| *n == ring_dim)
        .map(|(_, m)| m[col])
        .ok_or_else(|| HeError::Params(format!("no HE-standard entry for N = {ring_dim}")))
}

/// log Q and log(Q*P) of a chain with `levels` scaling primes.
pub fn log_q(levels: u32) -> (u32, u32) {
    let q = FIRST_MOD_BITS + levels * SCALE_BITS;
    let special = q.div_ceil(KEY_SWITCH_DIGITS).div_ceil(SPECIAL_PRIME_BITS) * SPECIAL_PRIME_BITS;
    (q, q + special)
}

/// Smallest ring dimension that is secure for `levels` and holds `slots_needed`.
pub fn ring_dim_for(levels: u32, slots_needed: u64, security: u32) -> Result<Option<u64>, HeError> {
    let (_, qp) = log_q(levels);
    for &(n, _) in HE_STANDARD {
        if n / 2 >= slots_needed && max_log_qp(n, security)? >= qp {
            return Ok(Some(n));
        }
    }
    Ok(None)
}

/// Most levels a chain can have at N = 2^16 and `security`.
pub fn max_levels(security: u32) -> Result<u32, HeError> {
    let max = max_log_qp(MAX_RING_DIM, security)?;
    let mut l = 0;
    while log_q(l + 1).1 <= max {
        l += 1;
    }
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_depths_get_the_expected_ring_dimension() {
        // depth 3: 60+120=180 bits, +60 special = 240 > 218 -> 16384.
        assert_eq!(ring_dim_for(3, 1024, 128).unwrap(), Some(16384));
        // depth 1: 100 + 60 = 160 <= 218 -> 8192.
        assert_eq!(ring_dim_for(1, 16, 128).unwrap(), Some(8192));
        // depth 8: 380 + 180 = 560 > 438 -> 32768.
        assert_eq!(ring_dim_for(8, 1024, 128).unwrap(), Some(32768));
        // Many slots force a larger ring even at small depth.
        assert_eq!(ring_dim_for(1, 16384, 128).unwrap(), Some(32768));
        // 192-bit security needs a larger ring for the same depth.
        // depth 6: 300 + 120 = 420 > 305 at 192 bits (438 would do at 128).
        assert_eq!(ring_dim_for(6, 1024, 128).unwrap(), Some(16384));
        assert_eq!(ring_dim_for(6, 1024, 192).unwrap(), Some(32768));
        // Too deep for 2^16.
        let l = max_levels(128).unwrap();
        assert_eq!(ring_dim_for(l, 16, 128).unwrap(), Some(65536));
        assert_eq!(ring_dim_for(l + 1, 16, 128).unwrap(), None);
        assert!(max_log_qp(65536, 100).is_err());
    }
}

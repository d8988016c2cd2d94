//! CKKS parameter choice (docs/he.md, "Parameters").

use super::HeError;

/// HomomorphicEncryption.org standard (2018), ternary secret, classical
/// attacks: maximum log2(Q*P) per ring dimension. At 2^16 and 128 bits
/// OpenFHE 1.6 rejects log QP = 1750 (N = 2^16, q0 60, 22 levels of 55 bits,
/// 3 digits: measured), so 1747, the bound of the standard's 2^16 row as
/// other OpenFHE-targeting compilers use it, not 1761.
const HE_STANDARD: &[(u64, [u32; 3])] = &[
    (1024, [27, 19, 14]),
    (2048, [54, 37, 29]),
    (4096, [109, 75, 58]),
    (8192, [218, 152, 118]),
    (16384, [438, 305, 237]),
    (32768, [881, 611, 476]),
    (65536, [1747, 1197, 932]),
];

/// Largest ring dimension used without bootstrapping.
pub const MAX_RING_DIM: u64 = 65536;
/// log2 of the scale, most precise first. CKKS error after rescaling is about
/// 2^-(scale_bits - 14) at these depths: 1e-7 at 40 bits, 1e-6 at 34, both
/// far below the 1e-3 logit tolerance. A smaller scale is taken only when it
/// lets the chain fit a smaller ring (2x faster, half the key memory).
pub const MAX_SCALE_BITS: u32 = 40;
pub const MIN_SCALE_BITS: u32 = 34;
/// Bits of q0 above the scale: the decrypted result must satisfy
/// |value| < 2^HEADROOM_BITS.
pub const HEADROOM_BITS: u32 = 20;
/// OpenFHE's special primes for HYBRID key switching are 60-bit.
const SPECIAL_PRIME_BITS: u32 = 60;
/// Fewest key-switching digits tried (OpenFHE's default); more digits mean a
/// smaller P (and a chain that fits a smaller ring) but larger keys.
const MIN_DIGITS: u32 = 3;
/// First modulus of a bootstrapped chain: OpenFHE's bootstrapping wants q0
/// as large as a 64-bit word allows.
pub const BOOT_FIRST_MOD_BITS: u32 = 60;
/// Largest scale of a bootstrapped chain (q0 - 1).
pub const BOOT_MAX_SCALE_BITS: u32 = 59;

/// A CKKS modulus chain: q0, `levels` scaling primes, and the HYBRID
/// key-switching decomposition into `digits` digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub first_mod_bits: u32,
    pub scale_bits: u32,
    pub levels: u32,
    pub digits: u32,
}

impl Chain {
    pub fn new(scale_bits: u32, levels: u32, digits: u32) -> Self {
        Chain {
            first_mod_bits: scale_bits + HEADROOM_BITS,
            scale_bits,
            levels,
            digits,
        }
    }

    /// log2 Q (without the special primes).
    pub fn log_q(&self) -> u32 {
        self.first_mod_bits + self.levels * self.scale_bits
    }

    /// log2 P the way OpenFHE sizes it, or None when the towers cannot be
    /// split into `digits` non-empty digits (OpenFHE rejects those).
    /// P has one more bit than the largest digit, in 60-bit primes (checked
    /// against OpenFHE 1.6 on 59 chains, runners/openfhe/tests).
    pub fn log_p(&self) -> Option<u32> {
        let towers = self.levels + 1;
        if self.digits == 0 || self.digits > towers {
            return None;
        }
        let per_digit = towers.div_ceil(self.digits);
        if towers.div_ceil(per_digit) != self.digits {
            return None;
        }
        let largest = self.first_mod_bits + (per_digit - 1) * self.scale_bits;
        Some((largest / SPECIAL_PRIME_BITS + 1) * SPECIAL_PRIME_BITS)
    }

    pub fn log_qp(&self) -> Option<u32> {
        self.log_p().map(|p| self.log_q() + p)
    }
}

pub fn max_log_qp(ring_dim: u64, security: u32) -> Result<u32, HeError> {
    if security == 0 {
        // Toy parameters for tests (OpenFHE HEStd_NotSet): no bound.
        return Ok(u32::MAX);
    }
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

/// The chain with `levels` levels, secure at `ring_dim`, whose key material
/// is smallest: key-switching keys hold digits x (towers + special primes)
/// ring elements, and key switching costs in proportion. Ties go to the
/// larger scale (more precision).
pub fn chain_for(levels: u32, ring_dim: u64, security: u32) -> Result<Option<Chain>, HeError> {
    let max = max_log_qp(ring_dim, security)?;
    let mut best: Option<(u32, Chain)> = None;
    for scale in (MIN_SCALE_BITS..=MAX_SCALE_BITS).rev() {
        for digits in MIN_DIGITS.min(levels + 1)..=levels + 1 {
            let chain = Chain::new(scale, levels, digits);
            let (Some(p), Some(qp)) = (chain.log_p(), chain.log_qp()) else {
                continue;
            };
            if qp > max {
                continue;
            }
            let cost = digits * (levels + 1 + p / SPECIAL_PRIME_BITS);
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, chain));
            }
        }
    }
    Ok(best.map(|(_, c)| c))
}

/// Smallest ring dimension that is secure for `levels` and holds
/// `slots_needed`, with its chain.
pub fn ring_dim_for(
    levels: u32,
    slots_needed: u64,
    security: u32,
) -> Result<Option<(u64, Chain)>, HeError> {
    for &(n, _) in HE_STANDARD {
        if n / 2 >= slots_needed
            && let Some(chain) = chain_for(levels, n, security)?
        {
            return Ok(Some((n, chain)));
        }
    }
    Ok(None)
}

/// Most levels a chain can have at N = 2^16 and `security`.
pub fn max_levels(security: u32) -> Result<u32, HeError> {
    let mut l = 0;
    while chain_for(l + 1, MAX_RING_DIM, security)?.is_some() {
        l += 1;
    }
    Ok(l)
}

/// Secret key distribution of the CKKS context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKey {
    /// OpenFHE's default; the HE-standard tables assume it.
    UniformTernary,
    /// Hamming weight 64 (OpenFHE SPARSE_TERNARY): bootstrapping needs 4
    /// levels fewer; a smaller security margin than the standard's tables.
    SparseTernary,
}

/// Levels OpenFHE 1.6's `EvalBootstrap` consumes (`GetBootstrapDepth`,
/// measured): level budget [CoeffsToSlots, SlotsToCoeffs] and secret.
pub fn bootstrap_depth(level_budget: [u32; 2], secret: SecretKey) -> Option<u32> {
    let uniform = match level_budget {
        [1, 1] => 16,
        [2, 2] => 18,
        [3, 2] | [2, 3] => 19,
        [3, 3] => 20,
        [4, 3] => 21,
        [4, 4] => 22,
        _ => return None,
    };
    Some(match secret {
        SecretKey::UniformTernary => uniform,
        SecretKey::SparseTernary => uniform - 4,
    })
}

/// OpenFHE's default bootstrapping correction factor for this ring and slot
/// count; with FLEXIBLEAUTO it requires q0 - scale <= the factor.
pub fn boot_correction(ring_dim: u64, slots: u64) -> u32 {
    let x = -0.265 * (2.0 * (ring_dim as f64).log2() + (slots as f64).log2()) + 19.1;
    (x.round() as i64).clamp(7, 13) as u32
}

/// Chains for bootstrapped circuits at `ring_dim`: q0 = 60 bits, scale from
/// the largest correction-compatible down... each with the most levels that
/// fit, for every digit count (at most `max_levels` levels).
pub fn boot_chains(ring_dim: u64, security: u32, max_levels: u32) -> Result<Vec<Chain>, HeError> {
    let max = max_log_qp(ring_dim, security)?;
    let lowest = BOOT_FIRST_MOD_BITS - boot_correction(ring_dim, ring_dim / 2);
    let mut out = Vec::new();
    for scale in lowest..=BOOT_MAX_SCALE_BITS {
        for digits in MIN_DIGITS..=12 {
            let fits = |levels: u32| {
                let chain = Chain {
                    first_mod_bits: BOOT_FIRST_MOD_BITS,
                    scale_bits: scale,
                    levels,
                    digits,
                };
                chain.log_qp().is_some_and(|qp| qp <= max).then_some(chain)
            };
            // The most levels that fit (towers must split into the digits).
            let best = (digits.saturating_sub(1)..=max_levels).rev().find_map(fits);
            if let Some(chain) = best {
                out.push(chain);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(levels: u32, slots: u64, security: u32) -> Option<u64> {
        ring_dim_for(levels, slots, security)
            .unwrap()
            .map(|(n, _)| n)
    }

    #[test]
    fn special_primes_follow_openfhe() {
        // Cases measured against OpenFHE 1.6 GenCryptoContext (accepted or
        // rejected at 128-bit security), including the boundary ones.
        // N = 2^15, 19 levels, scale 34: 5 digits fit (880 <= 881), 4 do not.
        assert_eq!(Chain::new(34, 19, 5).log_qp(), Some(880));
        assert_eq!(Chain::new(34, 19, 4).log_qp(), Some(940));
        // A digit of exactly 60 bits needs two special primes.
        assert_eq!(Chain::new(40, 7, 8).log_p(), Some(120));
        // 17 towers in 5 digits of 4: the largest is 180 bits -> 240.
        assert_eq!(Chain::new(40, 16, 5).log_p(), Some(240));
        // 20 towers cannot be split into 6 non-empty digits of 4.
        assert_eq!(Chain::new(34, 19, 6).log_p(), None);
    }

    #[test]
    fn known_depths_get_the_expected_ring_dimension() {
        // depth 1: 100 + 120 = 220 > 218 at 40 bits; 39 bits fit 2^13.
        assert_eq!(ring(1, 16, 128), Some(8192));
        assert_eq!(
            chain_for(1, 8192, 128).unwrap().map(|c| c.scale_bits),
            Some(39)
        );
        // depth 7 fits 2^14: 4 digits of 2 towers at scale 37 (436 bits)
        // make smaller keys than 8 digits of one tower at scale 39.
        assert_eq!(ring(7, 1024, 128), Some(16384));
        let c = chain_for(7, 16384, 128).unwrap().unwrap();
        assert_eq!((c.scale_bits, c.digits, c.log_qp()), (37, 4, Some(436)));
        // The HAR MLP (degree 2, depth 19) fits 2^15 at scale 34 with 5
        // digits (scale 39 would need 20 digits: keys 4x larger).
        let (n, c) = ring_dim_for(19, 1024, 128).unwrap().unwrap();
        assert_eq!((n, c.scale_bits, c.digits), (32768, 34, 5));
        // Many slots force a larger ring even at small depth.
        assert_eq!(ring(1, 16384, 128), Some(32768));
        // 192-bit security needs a larger ring for the same depth.
        assert_eq!(ring(6, 1024, 128), Some(16384));
        assert_eq!(ring(6, 1024, 192), Some(32768));
        // Depth 31 (HAR MLP degree 8) fits 2^16 without bootstrapping.
        assert_eq!(ring(31, 1024, 128), Some(65536));
        // Too deep for 2^16.
        let l = max_levels(128).unwrap();
        assert_eq!(ring(l, 16, 128), Some(65536));
        assert_eq!(ring(l + 1, 16, 128), None);
        assert!(max_log_qp(65536, 100).is_err());
    }
}

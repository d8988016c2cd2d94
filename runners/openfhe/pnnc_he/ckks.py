"""CKKS primitives on OpenFHE with the level accounting pnnc's circuits predict.

Levels are counted as rescalings since the fresh ciphertext. We run OpenFHE
with FLEXIBLEAUTO rescaling (best precision), which rescales lazily: a product
is rescaled just before it is used next. `levels_consumed` therefore counts
the pending rescale too: GetLevel() + GetNoiseScaleDeg() - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import openfhe as fhe

SECURITY_LEVELS = {
    128: fhe.SecurityLevel.HEStd_128_classic,
    192: fhe.SecurityLevel.HEStd_192_classic,
    256: fhe.SecurityLevel.HEStd_256_classic,
    # Only for unit tests of the primitives at toy ring dimensions.
    0: fhe.SecurityLevel.HEStd_NotSet,
}


class HeError(Exception):
    """A homomorphic evaluation failed (the message says where and why)."""


class MissingRotationKey(HeError):
    """An op needs a rotation the circuit did not declare: a compiler bug."""


@dataclass
class Keys:
    public: object
    secret: object


SECRET_KEYS = {
    "uniform_ternary": fhe.SecretKeyDist.UNIFORM_TERNARY,
    "sparse_ternary": fhe.SecretKeyDist.SPARSE_TERNARY,
}


def _params(ring_dim, mult_depth, scale_bits, first_mod_bits, security, batch_size, digits, secret="uniform_ternary"):
    params = fhe.CCParamsCKKSRNS()
    params.SetSecretKeyDist(SECRET_KEYS[secret])
    params.SetMultiplicativeDepth(mult_depth)
    params.SetScalingModSize(scale_bits)
    params.SetFirstModSize(first_mod_bits)
    params.SetRingDim(ring_dim)
    params.SetBatchSize(batch_size)
    params.SetSecurityLevel(SECURITY_LEVELS[security])
    params.SetScalingTechnique(fhe.ScalingTechnique.FLEXIBLEAUTO)
    if digits:
        params.SetNumLargeDigits(digits)
    return params


def make_context(
    ring_dim: int,
    mult_depth: int,
    scale_bits: int,
    first_mod_bits: int,
    security: int,
    batch_size: int,
    digits_hint: int = 3,
    secret: str = "uniform_ternary",
    bootstrapping: dict | None = None,
):
    """Build a CKKS context with exactly these parameters (no key material);
    with `bootstrapping` ({level_budget, slots}) also its precomputations.

    The circuit fixes Q (first modulus + depth x scale) and names the number
    of HYBRID key-switching digits it sized P for; if OpenFHE rejects that
    (it should not), more digits are tried. Returns (context, digits used).
    """
    if security not in SECURITY_LEVELS:
        raise HeError(f"unsupported security level {security} (use 128, 192 or 256)")
    if secret not in SECRET_KEYS:
        raise HeError(f"unknown secret key distribution {secret!r} (use {', '.join(SECRET_KEYS)})")
    cc, digits, last_error = None, 0, None
    for digits in range(max(1, min(digits_hint, mult_depth + 1)), mult_depth + 2):
        try:
            cc = fhe.GenCryptoContext(
                _params(ring_dim, mult_depth, scale_bits, first_mod_bits, security, batch_size, digits, secret)
            )
            break
        except Exception as e:  # OpenFHE raises plain RuntimeError
            last_error = e
            # Too large Q*P for the security level, or digits that do not
            # divide the towers: try more digits; anything else is final.
            if "comply with HE standards" not in str(e) and "digits" not in str(e):
                break
    if cc is None:
        raise HeError(
            f"OpenFHE rejected the parameters (ring_dim={ring_dim}, mult_depth={mult_depth}, "
            f"scale_bits={scale_bits}, first_mod_bits={first_mod_bits}, security={security}): "
            f"{last_error}"
        )
    features = [fhe.PKESchemeFeature.PKE, fhe.PKESchemeFeature.KEYSWITCH, fhe.PKESchemeFeature.LEVELEDSHE]
    if bootstrapping:
        features += [fhe.PKESchemeFeature.ADVANCEDSHE, fhe.PKESchemeFeature.FHE]
    for feature in features:
        cc.Enable(feature)
    if cc.GetRingDimension() != ring_dim:
        raise HeError(
            f"OpenFHE chose ring dimension {cc.GetRingDimension()} instead of {ring_dim}"
        )
    if bootstrapping:
        budget = [int(b) for b in bootstrapping["level_budget"]]
        depth = cc.GetBootstrapDepth(budget, SECRET_KEYS[secret])
        if depth != int(bootstrapping["bootstrap_levels"]):
            raise HeError(
                f"OpenFHE's bootstrapping with level budget {budget} consumes {depth} levels, "
                f"the circuit planned {bootstrapping['bootstrap_levels']} (recompile with this OpenFHE)"
            )
        cc.EvalBootstrapSetup(budget, [0, 0], int(bootstrapping["slots"]))
    return cc, digits


def bootstrap(cc, ct):
    """A refreshed ciphertext: OpenFHE EvalBootstrap (levels: the plan's bootstrap_levels)."""
    return cc.EvalBootstrap(ct)


def generate_keys(cc, rotations) -> Keys:
    """Key pair, relinearisation key and exactly the listed rotation keys."""
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    steps = sorted({int(s) for s in rotations})
    if steps:
        cc.EvalRotateKeyGen(kp.secretKey, steps)
    return Keys(public=kp.publicKey, secret=kp.secretKey)


def levels_consumed(ct) -> int:
    """Rescalings since the fresh ciphertext, including a pending one."""
    return ct.GetLevel() + ct.GetNoiseScaleDeg() - 1


def blocked(values_per_sample, dim: int, slots: int) -> np.ndarray:
    """Slots vector with sample s's values at [s * dim, s * dim + len)."""
    out = np.zeros(slots)
    for s, values in enumerate(values_per_sample):
        out[s * dim : s * dim + len(values)] = values
    return out


def tiled(values: np.ndarray, dim: int, slots: int) -> np.ndarray:
    """The same per-sample vector in every block (weights, biases)."""
    return blocked([values] * (slots // dim), dim, slots)


def encrypt(cc, keys: Keys, samples, dim: int, slots: int):
    """Encrypt up to slots/dim samples, sample s in block s."""
    pt = cc.MakeCKKSPackedPlaintext(blocked(samples, dim, slots).tolist(), 1, 0, None, slots)
    return cc.Encrypt(keys.public, pt)


def decrypt(cc, keys: Keys, ct, length: int, dim: int, count: int) -> list[np.ndarray]:
    """The first `length` values of each of the first `count` blocks."""
    pt = cc.Decrypt(ct, keys.secret)
    pt.SetLength(count * dim)
    values = np.array(pt.GetRealPackedValue()[: count * dim])
    return [values[s * dim : s * dim + length] for s in range(count)]


def rotate_plain(v: np.ndarray, step: int) -> np.ndarray:
    """rot(v, s)[r] = v[(r + s) mod len(v)]: the left rotation EvalRotate does."""
    return np.roll(v, -step)


def diagonals_of(matrix_rows, matrix_cols, matrix_values, dim: int) -> dict[int, np.ndarray]:
    """Signed diagonals diag_k[r] = M[r, r + k] (k = col - row) of a COO matrix."""
    diags: dict[int, np.ndarray] = {}
    for r, c, v in zip(matrix_rows, matrix_cols, matrix_values):
        k = int(c) - int(r)
        diag = diags.get(k)
        if diag is None:
            diag = diags[k] = np.zeros(dim)
        diag[int(r)] += v
    return diags


def bsgs_rotations(diagonal_ids, baby_step: int) -> set[int]:
    """The rotation steps the BSGS evaluation of these diagonals uses.

    k = giant + baby with baby = k mod g in [0, g) (Python's % on a
    positive modulus), so giant steps may be negative (right rotations).
    """
    steps = set()
    for k in diagonal_ids:
        steps.add(k % baby_step)
        steps.add(k - k % baby_step)
    steps.discard(0)
    return steps


class PlaintextCache:
    """Encoded diagonals reused across samples, within a memory budget.

    Encoding dominates a linear layer's cost when done per sample; a server
    would encode its weights once. Entries beyond the budget are encoded on
    the fly instead (slower, same result).
    """

    def __init__(self, budget_bytes: int, ring_dim: int, mult_depth: int):
        self.budget = budget_bytes
        self.ring_dim, self.mult_depth = ring_dim, mult_depth
        self.used = 0
        self.entries: dict = {}

    def get(self, key, level: int, encode):
        # One 64-bit word per coefficient per remaining RNS tower.
        size_bytes = self.ring_dim * 8 * (self.mult_depth + 1 - level)
        pt = self.entries.get(key)
        if pt is None:
            pt = encode()
            if self.used + size_bytes <= self.budget:
                self.entries[key] = pt
                self.used += size_bytes
        return pt


def bsgs_matvec(
    cc,
    ct,
    diags: dict[int, np.ndarray],
    baby_step: int,
    dim: int,
    slots: int,
    available_rotations,
    cache: PlaintextCache | None = None,
    cache_key=None,
    keys=None,
):
    """y = sum_k diag_k * rot(x, k) in every block, by baby-step giant-step; one level.

    y = sum_j rot( sum_i rot(D_{g j + i}, -g j) * rot(x, i), g j ) where D_k is
    diag_k tiled over the blocks. Signed diagonals only read x[r + k] with
    0 <= r + k < in_len, inside the sample's own block, so a rotation over all
    slots never mixes samples. Baby rotations of x are hoisted (one key-switch
    decomposition, many automorphisms). `keys` (a `keys.KeyStore`) is told
    each step before it is used, so that it can read that step's key group.
    """
    use = keys.use if keys is not None else (lambda _step: None)
    needed = bsgs_rotations(diags.keys(), baby_step)
    missing = sorted(needed - set(available_rotations))
    if missing:
        raise MissingRotationKey(
            f"needs rotation steps {missing} that the circuit does not declare "
            "(compiler bug: the circuit's rotation list is incomplete)"
        )
    level = ct.GetLevel()
    if ct.GetNoiseScaleDeg() > 1:
        ct = cc.Rescale(ct)
        level = ct.GetLevel()
    groups: dict[int, list[int]] = {}
    for k in sorted(diags):
        groups.setdefault(k - k % baby_step, []).append(k)
    baby_ids = sorted({k % baby_step for k in diags} - {0})
    rotated = {0: ct}
    if baby_ids:
        digits = cc.EvalFastRotationPrecompute(ct)
        order = cc.GetCyclotomicOrder()
        for i in baby_ids:
            use(i)
            rotated[i] = cc.EvalFastRotation(ct, i, order, digits)
    result = None
    for giant, ks in groups.items():
        inner = None
        for k in ks:
            def encode(k=k, giant=giant):
                diag = rotate_plain(tiled(diags[k], dim, slots), -giant)
                return cc.MakeCKKSPackedPlaintext(diag.tolist(), 1, level, None, slots)

            if cache is None:
                pt = encode()
            else:
                pt = cache.get((cache_key, k, level), level, encode)
            term = cc.EvalMult(rotated[k - giant], pt)
            # Products are fresh ciphertexts: accumulate in place (no copies).
            if inner is None:
                inner = term
            else:
                cc.EvalAddInPlace(inner, term)
        if giant:
            use(giant)
            inner = cc.EvalRotate(inner, giant)
        if result is None:
            result = inner
        else:
            cc.EvalAddInPlace(result, inner)
    if result is None:  # an all-zero matrix: y = 0 at the expected level
        result = cc.EvalMult(ct, 0.0)
    return result


def sum_rotations(stride: int, count: int) -> set[int]:
    """The rotation steps `rotate_sum` uses (docs/circuit-format.md, `sum`)."""
    steps, h = set(), count.bit_length() - 1
    for i in range(h):
        steps.add((1 << i) * stride)
    offset = 1 << h
    for i in reversed(range(h)):
        if count >> i & 1:
            steps.add(offset * stride)
            offset += 1 << i
    return steps


def rotate_sum(cc, ct, stride: int, count: int, available_rotations, keys=None):
    """sum_{q < count} rot(ct, q * stride), in at most 2 log2(count) rotations; no level.

    P_i = sum_{q < 2^i} rot(x, q stride) by doubling up to h = floor(log2 count),
    then rot(P_i, offset stride) for every lower set bit of count, highest first.
    """
    missing = sorted(sum_rotations(stride, count) - set(available_rotations))
    if missing:
        raise MissingRotationKey(
            f"needs rotation steps {missing} that the circuit does not declare "
            "(compiler bug: the circuit's rotation list is incomplete)"
        )
    use = keys.use if keys is not None else (lambda _step: None)
    if ct.GetNoiseScaleDeg() > 1:
        ct = cc.Rescale(ct)
    h = count.bit_length() - 1
    powers = [ct]
    for i in range(h):
        use((1 << i) * stride)
        powers.append(cc.EvalAdd(powers[i], cc.EvalRotate(powers[i], (1 << i) * stride)))
    result, offset = powers[h], 1 << h
    for i in reversed(range(h)):
        if count >> i & 1:
            use(offset * stride)
            result = cc.EvalAdd(result, cc.EvalRotate(powers[i], offset * stride))
            offset += 1 << i
    return result


def chebyshev_depth(degree: int) -> int:
    """ceil(log2(degree + 1)): the levels `eval_chebyshev` consumes."""
    return 0 if degree <= 0 else math.ceil(math.log2(degree + 1))


def _split(coeffs: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray]:
    """p = q0 + T_half * q1 with deg q0, deg q1 < half (Chebyshev division).

    Uses T_{h+i} = 2 T_h T_i - T_{h-i} for i >= 1 (and T_h = T_h T_0).
    """
    degree = len(coeffs) - 1
    q1 = np.zeros(degree - half + 1)
    q0 = coeffs[:half].astype(float).copy()
    q1[0] = coeffs[half]
    for i in range(1, degree - half + 1):
        q1[i] = 2.0 * coeffs[half + i]
        q0[half - i] -= coeffs[half + i]
    return q0, q1


def eval_chebyshev(cc, ct, coeffs) -> object:
    """sum_k coeffs[k] T_k(x) for x in [-1, 1], in exactly ceil(log2(d+1)) levels.

    OpenFHE's EvalChebyshevSeries spends one level more than that for some
    degrees (3, 6, 7, 14, 15, 28..31 measured), so we evaluate ourselves:
    powers T_{2^i} by doubling (T_2k = 2 T_k^2 - 1, the 2 by an addition),
    then p = q0 + T_h q1 recursively with h the largest power of two <= d.
    The coefficients land in degree-<=1 leaves (one scalar product, one level)
    or multiply T_h directly, so no level is spent on coefficients alone.
    """
    coeffs = np.asarray(coeffs, dtype=float)
    degree = len(coeffs) - 1
    if degree < 1:
        raise HeError("a polynomial activation needs degree >= 1")
    powers = {1: ct}
    h = 1
    while 2 * h <= degree:
        sq = cc.EvalSquare(powers[h])
        powers[2 * h] = cc.EvalSub(cc.EvalAdd(sq, sq), 1.0)
        h *= 2

    def rec(c: np.ndarray):
        d = len(c) - 1
        if d == 0:
            return float(c[0])
        if d == 1:
            return cc.EvalAdd(cc.EvalMult(powers[1], float(c[1])), float(c[0]))
        half = 1 << (chebyshev_depth(d) - 1)
        q0, q1 = _split(c, half)
        # EvalMult / EvalAdd take a ciphertext or a float as second operand.
        return cc.EvalAdd(cc.EvalMult(powers[half], rec(q1)), rec(q0))

    return rec(coeffs)

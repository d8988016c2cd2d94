"""HE primitives against numpy: values and the levels they consume."""

import os
import unittest

# OpenMP threads spin badly on a loaded machine; one thread is faster there.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from pnnc_he import ckks

DIM = 64
SLOTS = 1 << 11


def toy_context(depth: int, rotations=()):
    # Ring 2^12 without a security level: fast, only for testing arithmetic.
    cc, _ = ckks.make_context(1 << 12, depth, 50, 60, 0, SLOTS)
    return cc, ckks.generate_keys(cc, rotations)


class ChebyshevTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cc, cls.keys = toy_context(6)
        cls.x = np.linspace(-1.0, 1.0, DIM)
        cls.ct = ckks.encrypt(cls.cc, cls.keys, [cls.x], DIM, SLOTS)

    def test_split_is_exact(self):
        rng = np.random.default_rng(3)
        for degree in range(2, 32):
            c = rng.normal(size=degree + 1)
            half = 1 << (ckks.chebyshev_depth(degree) - 1)
            q0, q1 = ckks._split(c, half)
            t = np.zeros(half + 1)
            t[half] = 1.0
            x = np.linspace(-1, 1, 101)
            cheb = np.polynomial.chebyshev.chebval
            np.testing.assert_allclose(
                cheb(x, q0) + cheb(x, t) * cheb(x, q1), cheb(x, c), atol=1e-12
            )

    def test_values_and_exact_depth_for_degrees_1_to_31(self):
        rng = np.random.default_rng(1)
        for degree in range(1, 32):
            with self.subTest(degree=degree):
                c = rng.normal(size=degree + 1)
                out = ckks.eval_chebyshev(self.cc, self.ct, c)
                (got,) = ckks.decrypt(self.cc, self.keys, out, DIM, DIM, 1)
                want = np.polynomial.chebyshev.chebval(self.x, c)
                self.assertLess(np.abs(got - want).max(), 1e-6)
                self.assertEqual(ckks.levels_consumed(out), ckks.chebyshev_depth(degree))

    def test_depth_is_relative_to_input_level(self):
        # An input that already consumed one level (as after a linear layer).
        scaled = self.cc.EvalMult(self.ct, 0.5)
        out = ckks.eval_chebyshev(self.cc, scaled, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        self.assertEqual(ckks.levels_consumed(out), 1 + 4)
        want = np.polynomial.chebyshev.chebval(0.5 * self.x, np.arange(1, 10) / 10)
        (got,) = ckks.decrypt(self.cc, self.keys, out, DIM, DIM, 1)
        self.assertLess(np.abs(got - want).max(), 1e-6)


class BsgsTest(unittest.TestCase):
    def run_matvec(self, dense: np.ndarray, baby_step: int, declared=None, samples: int = 1):
        rows, cols = np.nonzero(dense)
        diags = ckks.diagonals_of(rows, cols, dense[rows, cols], DIM)
        needed = ckks.bsgs_rotations(diags.keys(), baby_step)
        cc, keys = toy_context(2, needed if declared is None else declared)
        xs = np.random.default_rng(5).uniform(-1, 1, (samples, dense.shape[1]))
        ct = ckks.encrypt(cc, keys, list(xs), DIM, SLOTS)
        out = ckks.bsgs_matvec(
            cc, ct, diags, baby_step, DIM, SLOTS, needed if declared is None else declared
        )
        got = ckks.decrypt(cc, keys, out, dense.shape[0], DIM, samples)
        if samples == 1:
            return got[0], dense @ xs[0], ckks.levels_consumed(out)
        return np.array(got), xs @ dense.T, ckks.levels_consumed(out)

    def test_samples_in_one_ciphertext_do_not_mix(self):
        # Every block of the ciphertext is a full sample; signed diagonals
        # never read across a block border, also for the last block.
        rng = np.random.default_rng(7)
        dense = rng.normal(size=(DIM, DIM))
        for baby_step in (1, 8):
            with self.subTest(baby_step=baby_step):
                got, want, level = self.run_matvec(dense, baby_step, samples=SLOTS // DIM)
                np.testing.assert_allclose(got, want, atol=1e-5)
                self.assertEqual(level, 1)

    def test_signed_diagonals(self):
        diags = ckks.diagonals_of([0, 2, 1], [2, 0, 1], [1.0, 2.0, 3.0], 4)
        self.assertEqual(sorted(diags), [-2, 0, 2])
        np.testing.assert_array_equal(diags[-2], [0, 0, 2.0, 0])

    def test_rectangular_matrix_matches_numpy_in_one_level(self):
        rng = np.random.default_rng(0)
        dense = rng.normal(size=(10, 40)) * (rng.uniform(size=(10, 40)) < 0.5)
        for baby_step in (1, 4, 8, 64):
            with self.subTest(baby_step=baby_step):
                got, want, level = self.run_matvec(dense, baby_step)
                np.testing.assert_allclose(got, want, atol=1e-6)
                self.assertEqual(level, 1)

    def test_tall_matrix(self):
        dense = np.random.default_rng(2).normal(size=(50, 7))
        got, want, _ = self.run_matvec(dense, 8)
        np.testing.assert_allclose(got, want, atol=1e-6)

    def test_undeclared_rotation_is_reported_as_compiler_bug(self):
        dense = np.random.default_rng(2).normal(size=(8, 8))
        with self.assertRaisesRegex(ckks.MissingRotationKey, "compiler bug"):
            self.run_matvec(dense, 4, declared=[1, 2])

    def test_rotation_sets(self):
        self.assertEqual(ckks.bsgs_rotations([0, 1, 5, 9, 12], 4), {1, 4, 8, 12})
        # Negative diagonals: -3 = -4 + 1, -5 = -8 + 3.
        self.assertEqual(ckks.bsgs_rotations([-3, -5, 2], 4), {-4, 1, -8, 3, 2})


if __name__ == "__main__":
    unittest.main()

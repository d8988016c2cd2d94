"""Finite-difference checks of the fused polynomial activation (every basis, with and
without the fused boundary term), and its agreement with the plain formula."""

import unittest

import numpy as np
import torch

from pnnc_torch import poly


def apply(x, c, basis, kind, inv_b=0.5, penalty=2.0, cap=1.5):
    n = c.numel() - 1
    b = poly.BASES[basis]
    m = torch.tensor(poly.slope_matrix(b, n, inv_b), dtype=torch.float64)
    signs = torch.tensor(b.signs(n), dtype=x.dtype)
    return poly.PolyFunction.apply(x, c, inv_b, basis, m, signs, kind, penalty, cap)


def reference(x, c, basis, inv_b=0.5):
    """p(t) from the definition: sum c_k t^k, or sum c_k T_k(t) with T_k = cos(k acos t)
    extended by the recurrence (t outside [-1, 1] too)."""
    t = x if basis == "RawPower" else x * inv_b
    if basis in ("Power", "RawPower"):
        return sum(c[k] * t**k for k in range(c.numel()))
    prev, cur = torch.ones_like(t), t
    y = c[0] * prev + (c[1] * cur if c.numel() > 1 else 0)
    for k in range(2, c.numel()):
        prev, cur = cur, 2 * t * cur - prev
        y = y + c[k] * cur
    return y


def edge_of(degree, fmax):
    """The largest float32 whose degree-th power (exact, rounded once) is finite."""
    edge = np.float32(np.exp(np.log(float(fmax)) / degree))
    while np.isfinite(np.float32(float(edge) ** degree)):
        edge = np.nextafter(edge, np.float32(np.inf))
    while not np.isfinite(np.float32(float(edge) ** degree)):
        edge = np.nextafter(edge, np.float32(0))
    return edge


class PolyTest(unittest.TestCase):
    def test_gradients_match_finite_differences(self):
        torch.manual_seed(0)
        for basis in poly.BASES:
            for n in (1, 2, 5, 8):
                for kind in (None, "Exp", "ExpCapped", "L2"):
                    # t = x / 2 in [-2.2, 2.2] (x itself for the raw form): past the fit range,
                    # where phi_8 is still small enough for finite differences in f64.
                    scale = 1.0 if basis == "RawPower" else 2.0
                    x = (torch.randn(2, 40, dtype=torch.float64).clamp(-2.2, 2.2) * scale)
                    x.requires_grad_()
                    c = torch.randn(n + 1, dtype=torch.float64, requires_grad=True)
                    f = lambda x, c: apply(x, c, basis, kind)[:2]  # noqa: E731
                    self.assertTrue(
                        torch.autograd.gradcheck(f, (x, c), eps=1e-6, atol=1e-5, rtol=1e-4),
                        f"{basis} degree {n} {kind}",
                    )

    def test_forward_is_the_polynomial_and_the_boundary_sums(self):
        torch.manual_seed(1)
        x = torch.randn(1000, dtype=torch.float64) * 4
        for basis in poly.BASES:
            c = torch.randn(7, dtype=torch.float64)
            y, term, amax = apply(x, c, basis, "Exp")
            torch.testing.assert_close(y, reference(x, c, basis))
            want = torch.expm1(torch.clamp(x.abs() - 2.0, min=0)).sum()
            torch.testing.assert_close(term, want)
            self.assertEqual(float(amax), float(x.abs().max()))
            _, term, _ = apply(x, c, basis, "L2")
            torch.testing.assert_close(term, (torch.clamp(x.abs() - 2.0, min=0) ** 2).sum())
            # exp(cap: 1.5): the exp form up to an excess of 1.5, linear beyond.
            _, term, _ = apply(x, c, basis, "ExpCapped", cap=1.5)
            e = torch.clamp(x.abs() - 2.0, min=0)
            lin = np.expm1(1.5) + np.exp(1.5) * (e - 1.5)
            torch.testing.assert_close(term, torch.where(e > 1.5, lin, torch.expm1(e)).sum())

    def test_capped_exp_gradient_is_bounded_where_exp_overflows(self):
        x = torch.tensor([0.5, 5.0, 200.0, -1e6], requires_grad=True)
        c = torch.tensor([0.0, 1.0])
        _, term, _ = apply(x, c, "Power", "ExpCapped", penalty=2.0, cap=10.0)
        (gx,) = torch.autograd.grad(term, x)
        e10 = float(np.float32(np.exp(10.0)))
        self.assertEqual(gx.tolist(), [0.0, float(np.float32(np.exp(3.0))), e10, -e10])
        self.assertTrue(torch.isfinite(term))
        # The paper's form: its value is f64 (finite), its gradient float32, inf once
        # exp(excess) / n passes f32::MAX (pnnc's `where_the_exp_form_overflows_float32`).
        _, term, _ = apply(x, c, "Power", "Exp", penalty=2.0)
        self.assertFalse(torch.isfinite(term))  # exp(1e6) overflows f64 too
        n, p = 1000, 12.0
        edge = float(np.log(np.finfo(np.float32).max)) + np.log(n)
        for excess, finite in ((edge - 0.01, True), (edge + 0.01, False)):
            x = torch.zeros(n)
            x[0] = p + excess
            x.requires_grad_()
            _, term, _ = apply(x, c, "Power", "Exp", penalty=p)
            (gx,) = torch.autograd.grad(term / n, x)
            self.assertEqual(bool(torch.isfinite(gx[0])), finite, excess)

    def test_raw_power_overflows_where_float32_powers_do(self):
        """pnnc's `raw_power_overflows_exactly_where_float32_powers_do`: the largest
        float32 with a finite d-th power gives that power, the next float32 gives inf."""
        fmax = np.finfo(np.float32).max
        for degree in (2, 8, 22, 31):
            with np.errstate(over="ignore"):
                edge = edge_of(degree, fmax)
            past = np.nextafter(edge, np.float32(np.inf))
            c = torch.zeros(degree + 1)
            c[degree] = 1.0
            x = torch.tensor([edge, past, -edge, -past])
            y, _, _ = apply(x, c, "RawPower", None)
            sign = 1.0 if degree % 2 == 0 else -1.0
            power = float(np.float32(float(edge) ** degree))
            self.assertEqual(y.tolist(), [power, np.inf, sign * power, sign * np.inf], degree)
        # The slope of x^22 at 60: 22 x^21 overflows float32 (past 59.0), as in pnnc.
        c = torch.zeros(23)
        c[22] = 1e-30
        x = torch.tensor([57.0, 60.0], requires_grad=True)
        y, _, _ = apply(x, c, "RawPower", None)
        (gx,) = torch.autograd.grad(y.sum(), x)
        self.assertTrue(np.isfinite(gx[0].item()) and not np.isfinite(gx[1].item()), gx)

    def test_cpu_chunks_give_the_same_result(self):
        torch.manual_seed(2)
        x = (torch.randn(3000) * 5).requires_grad_()
        c = torch.randn(9, requires_grad=True)
        saved = poly.CPU_CHUNK
        results = []
        try:
            for chunk in (256, 1 << 20):
                poly.CPU_CHUNK = chunk
                y, term, _ = apply(x, c, "Chebyshev", "Exp", inv_b=0.2, penalty=3.0)
                gx, gc = torch.autograd.grad((y.square().sum() + term), (x, c))
                results.append((y, gx, gc))
        finally:
            poly.CPU_CHUNK = saved
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)

    def test_module_keeps_float32_under_bfloat16_autocast(self):
        m = poly.Poly(4, "Chebyshev", 3.0, np.array([0.1, 0.5, 0.2, 0.0, -0.05]), True)
        x = torch.randn(10, dtype=torch.bfloat16)
        y, _, _ = m(x)
        self.assertEqual(y.dtype, torch.float32)

    def test_unknown_basis_is_refused(self):
        with self.assertRaises(ValueError):
            poly.Poly(2, "Legendre", 1.0, [0.0, 1.0, 0.0], True)


if __name__ == "__main__":
    unittest.main()

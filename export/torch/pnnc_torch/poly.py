"""The polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B), fused.

One autograd Function per site, as pnnc's kernel (`train/backend/poly.rs`): the forward
evaluates p by its basis' recurrence (Horner for powers, the three-term recurrence for
Chebyshev) and keeps nothing but x; the backward recomputes the basis values once and
uses them for both the coefficient gradients sum_i g_i phi_k(t_i) and the slope p'(t)
(from the derivative's coefficients in the same basis). No `x ** k`, no degree-many
saved tensors.

The same Function also returns the site's boundary-loss sum (exp or l2, over this
process' elements) and max |x|, computed from the same pass over x, like pnnc's
`ops::poly`.

On CPU the work runs in chunks that fit the cache: every recurrence step is a pass over
memory, and a chunk keeps those passes in L2. On GPUs the whole tensor is one chunk.

A basis is one entry of `BASES`: how to evaluate p, how to walk phi_0..phi_n, the
derivative's coefficients, and whether t is x / B (`scaled`) or x itself.
"""

import numpy as np
import torch

CPU_CHUNK = 1 << 15


class Basis:
    """One polynomial basis: subclasses give the recurrence and the derivative."""

    name = ""
    scaled = True  # t = x / B; False: t = x

    def evaluate(self, t, c, n):
        raise NotImplementedError

    def values(self, t, n):
        """Yields phi_1(t) .. phi_n(t) (phi_0 = 1); a yielded tensor may be overwritten
        by the next step."""
        raise NotImplementedError

    def derivative(self, c):
        """Coefficients (f64 list) of p'(t) in this basis, one fewer than `c`."""
        raise NotImplementedError


class Power(Basis):
    """sum c_k t^k, by Horner's rule."""

    name = "Power"

    def evaluate(self, t, c, n):
        y = c[n].expand_as(t).clone()
        for k in range(n - 1, -1, -1):
            y.mul_(t).add_(c[k])
        return y

    def values(self, t, n):
        if n == 0:
            return
        pw = t.clone()
        yield pw
        for _ in range(2, n + 1):
            pw.mul_(t)
            yield pw

    def derivative(self, c):
        return [(k + 1) * c[k + 1] for k in range(len(c) - 1)]


class Chebyshev(Basis):
    """sum c_k T_k(t), T_{k+1} = 2t T_k - T_{k-1} (the order of pnnc's kernel)."""

    name = "Chebyshev"

    def evaluate(self, t, c, n):
        if n == 0:
            return c[0].expand_as(t).clone()
        y = torch.mul(t, c[1]).add_(c[0])
        if n == 1:
            return y
        for k, tk in enumerate(self._from_two(t, n), start=2):
            y.addcmul_(tk, c[k])
        return y

    def _from_two(self, t, n):
        two_t = t + t
        prev, cur = torch.ones_like(t), t.clone()
        for _ in range(2, n + 1):
            prev.neg_().addcmul_(two_t, cur)  # T_{k+1} into the buffer of T_{k-1}
            prev, cur = cur, prev
            yield cur

    def values(self, t, n):
        if n == 0:
            return
        yield t
        yield from self._from_two(t, n)

    def derivative(self, c):
        n = len(c) - 1
        d = [0.0] * n
        above, above2 = 0.0, 0.0
        for k in range(n, 0, -1):
            v = above2 + 2.0 * k * c[k]
            d[k - 1] = v
            above2, above = above, v
        if n > 0:
            d[0] *= 0.5
        return d


BASES = {b.name: b for b in (Power(), Chebyshev())}


def derivative_matrix(basis, degree):
    """D (f64, [degree, degree + 1]) with d = D c: the derivative as a linear map, so that
    the backward forms p' on the device without reading the coefficients back."""
    eye = np.eye(degree + 1)
    return np.array([basis.derivative(list(eye[j])) for j in range(degree + 1)]).T.reshape(
        degree, degree + 1
    )


def _chunks(numel, device):
    step = numel if device.type != "cpu" else CPU_CHUNK
    for start in range(0, numel, max(step, 1)):
        yield start, min(start + step, numel)


class _SiteLoss:
    """The per-element boundary penalty of one site (exp or l2), summed."""

    EXP, L2 = "Exp", "L2"


def _penalty_sum(a, kind, penalty):
    """sum over elements of exp(max(0, |x| - P)) - 1 (exp) or max(0, |x| - P)^2 (l2); a = |x|."""
    excess = (a - penalty).clamp_min_(0.0)
    if kind == _SiteLoss.EXP:
        return excess.expm1_().sum(dtype=torch.float64)  # exactly 0 inside the boundary
    return excess.square_().sum(dtype=torch.float64)


def _penalty_grad(xc, kind, penalty):
    """d/dx of the per-element penalty."""
    excess = (xc.abs() - penalty).clamp_min_(0.0)
    if kind == _SiteLoss.EXP:
        outside = excess > 0
        g = excess.exp_().mul_(outside)
    else:
        g = excess.mul_(2.0)
    return g.mul_(torch.sign(xc))


class PolyFunction(torch.autograd.Function):
    """(x, coeffs) -> (p(x/B), boundary-penalty sum over x, max |x|)."""

    @staticmethod
    def forward(ctx, x, coeffs, inv_b, basis_name, deriv, loss_kind, penalty):
        basis = BASES[basis_name]
        n = coeffs.numel() - 1
        x = x.contiguous()
        flat = x.view(-1)
        y = torch.empty_like(flat)
        c = coeffs.to(x.dtype)
        term = torch.zeros((), dtype=torch.float64, device=x.device)
        amax = torch.zeros((), dtype=x.dtype, device=x.device)
        for s, e in _chunks(flat.numel(), x.device):
            xc = flat[s:e]
            t = xc * inv_b if basis.scaled else xc
            y[s:e] = basis.evaluate(t, c, n)
            a = xc.abs()
            amax = torch.maximum(amax, a.amax())
            if loss_kind is not None:
                term = term + _penalty_sum(a, loss_kind, penalty).double()
        ctx.save_for_backward(x, coeffs, deriv)
        ctx.inv_b, ctx.basis, ctx.loss_kind, ctx.penalty = inv_b, basis_name, loss_kind, penalty
        ctx.mark_non_differentiable(amax)
        return y.view_as(x), term, amax

    @staticmethod
    def backward(ctx, gy, gterm, _gmax):
        x, coeffs, deriv = ctx.saved_tensors
        basis = BASES[ctx.basis]
        n = coeffs.numel() - 1
        inv_b = ctx.inv_b if basis.scaled else 1.0
        need_x, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        flat, g = x.view(-1), gy.contiguous().view(-1)
        # p'(t) / B in the basis: d = D c (f64, like pnnc), then in x's dtype.
        d = (deriv @ coeffs.double() * inv_b).to(x.dtype) if n > 0 else None
        dx = torch.empty_like(flat) if need_x else None
        dc = torch.zeros(n + 1, dtype=torch.float64, device=x.device)
        with_loss = ctx.loss_kind is not None and gterm is not None
        for s, e in _chunks(flat.numel(), x.device):
            xc, gc = flat[s:e], g[s:e]
            t = xc * ctx.inv_b if basis.scaled else xc
            slope = d[0].expand_as(t).clone() if need_x and n > 0 else None
            parts = [gc.sum()] if need_c else []
            for k, phi in enumerate(basis.values(t, n), start=1):
                if need_c:
                    parts.append(torch.dot(gc, phi))
                if need_x and k < n:
                    slope.addcmul_(phi, d[k])
            if need_c:
                dc += torch.stack(parts).double()
            if need_x:
                dxc = slope.mul_(gc) if slope is not None else torch.zeros_like(gc)
                if with_loss:
                    dxc.addcmul_(_penalty_grad(xc, ctx.loss_kind, ctx.penalty), gterm.to(x.dtype))
                dx[s:e] = dxc
        return (
            dx.view_as(x) if need_x else None,
            dc.to(coeffs.dtype) if need_c else None,
            None,
            None,
            None,
            None,
            None,
        )


class Poly(torch.nn.Module):
    """One activation site: coefficients (a parameter when learnable, else a buffer)."""

    def __init__(self, degree, basis, fit_range, init_coeffs, learnable):
        super().__init__()
        if basis not in BASES:
            raise ValueError(f"polynomial basis `{basis}` is not known to pnnc_torch")
        self.basis = basis
        self.range = float(fit_range)
        self.inv_b = float(np.float32(1.0) / np.float32(fit_range))
        c = torch.tensor(np.asarray(init_coeffs, dtype=np.float32))
        if c.numel() != degree + 1:
            raise ValueError(f"{c.numel()} initial coefficients for degree {degree}")
        if learnable:
            self.coeffs = torch.nn.Parameter(c)
        else:
            self.register_buffer("coeffs", c)
        self.register_buffer(
            "deriv",
            torch.tensor(derivative_matrix(BASES[basis], degree), dtype=torch.float64),
            persistent=False,
        )

    def forward(self, x, loss_kind=None, penalty=0.0):
        """Returns (y, penalty sum (f64) or 0, max |x|). Always in float32 or wider:
        under mixed precision the polynomial still runs in float32."""
        if x.numel() == 0:
            zero = x.new_zeros(())
            return x * (self.coeffs.sum() * 0.0), zero.double(), zero
        with torch.autocast(device_type=x.device.type, enabled=False):
            return PolyFunction.apply(
                x.float() if x.dtype in (torch.float16, torch.bfloat16) else x,
                self.coeffs,
                self.inv_b,
                self.basis,
                self.deriv,
                loss_kind,
                float(penalty),
            )

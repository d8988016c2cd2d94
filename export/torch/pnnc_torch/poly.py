"""The polynomial activation y = p(x / B) = sum_k c_k phi_k(x / B), fused.

One autograd Function per site, as pnnc's kernel (`train/backend/poly.rs`): the forward
evaluates p by its basis' recurrence (Horner for powers, the three-term recurrence for
Chebyshev) and keeps nothing but x; the backward recomputes the basis values once and
uses them for both the coefficient gradients sum_i g_i phi_k(t_i) and the slope p'(t)
(from the derivative's coefficients in the same basis). No `x ** k`, no degree-many
saved tensors, one fused multiply-add pass over memory per degree and step.

The same Function returns the site's boundary-loss sum (exp or l2, over this process'
elements) and max |x|, from the same pass over x, like pnnc's `ops::poly`.

Large tensors run in chunks (`CPU_CHUNK` elements on CPUs, `GPU_CHUNK` on GPUs) so that
a recurrence's working set stays in cache and its memory stays bounded.

A basis is one entry of `BASES`: its forward evaluation, its walk over phi_1..phi_n,
the derivative's coefficients, and whether t is x / B (`scaled`) or x itself; a basis
whose float32 rounding must follow pnnc's kernel term by term (`RawPower`) overrides
`backward_chunk` too.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

CPU_CHUNK = 1 << 21
GPU_CHUNK = 1 << 24


class Basis:
    """One polynomial basis. `walk` may yield phi_k up to a sign (`signs`), so that a
    three-term recurrence is one in-place fused multiply-add per step."""

    name = ""
    scaled = True  # t = x / B; False: t = x

    def signs(self, n):
        """s_k with walk()'s k-th tensor = s_k phi_k (k = 0..n)."""
        return np.ones(n + 1)

    def evaluate(self, t, c, n):
        raise NotImplementedError

    def walk(self, t, n):
        """Yields s_k phi_k(t) for k = 1..n; a yielded tensor may be overwritten by the
        next step, and t itself must not be written."""
        raise NotImplementedError

    def derivative(self, c):
        """Coefficients (f64 list) of p'(t) in this basis, one fewer than `c`."""
        raise NotImplementedError

    def backward_chunk(self, t, g, n, c, ds, need_x, need_c):
        """(g p'(t) / B or None, [sum g s_k phi_k(t)] or None) of one chunk: one walk serves
        both. `ds`: the slope's coefficients against the walk (`slope_matrix` c)."""
        slope = None
        sums = [g.sum()] if need_c else None
        for k, a in enumerate(self.walk(t, n), start=1):
            if need_c:
                sums.append(torch.dot(g, a))
            if need_x and k < n:
                slope = torch.addcmul(ds[0], a, ds[k]) if slope is None else slope.addcmul_(a, ds[k])
        dx = None
        if need_x:
            if slope is None:  # degree 0 or 1: a constant slope
                dx = g * ds[0] if n > 0 else torch.zeros_like(g)
            else:
                dx = slope.mul_(g)
        return dx, sums


class Power(Basis):
    """sum c_k t^k, by Horner's rule."""

    name = "Power"

    def evaluate(self, t, c, n):
        if n == 0:
            return c[0].expand_as(t).clone()
        y = torch.addcmul(c[n - 1], t, c[n])
        for k in range(n - 2, -1, -1):
            torch.addcmul(c[k], y, t, out=y)
        return y

    def walk(self, t, n):
        if n == 0:
            return
        yield t
        if n == 1:
            return
        pw = t * t
        yield pw
        for _ in range(3, n + 1):
            yield pw.mul_(t)

    def derivative(self, c):
        return [(k + 1) * c[k + 1] for k in range(len(c) - 1)]


class Chebyshev(Basis):
    """sum c_k T_k(t), T_{k+1} = 2t T_k - T_{k-1}. The walk keeps a_k = s_k T_k with
    signs + + - - + + ...: then a_{k+1} = a_{k-1} - 2 s_{k-1} s_k t a_k, one addcmul."""

    name = "Chebyshev"

    def signs(self, n):
        return np.array([1.0 if k % 4 in (0, 1) else -1.0 for k in range(n + 1)])

    def evaluate(self, t, c, n):
        if n == 0:
            return c[0].expand_as(t).clone()
        y = torch.addcmul(c[0], t, c[1])
        cs = c * torch.tensor(self.signs(n), dtype=c.dtype, device=c.device)
        for k, a in enumerate(self.walk(t, n), start=1):
            if k >= 2:
                y.addcmul_(a, cs[k])
        return y

    def walk(self, t, n):
        if n == 0:
            return
        yield t
        if n == 1:
            return
        s = self.signs(n)
        one = torch.ones((), dtype=t.dtype, device=t.device)
        prev, cur = t, torch.addcmul(one, t, t, value=-2.0)  # a_2 = -T_2 = 1 - 2t^2
        yield cur
        for k in range(2, n):
            v = -2.0 * s[k - 1] * s[k]
            nxt = torch.addcmul(prev, t, cur, value=v) if prev is t else prev.addcmul_(t, cur, value=v)
            prev, cur = cur, nxt
            yield cur

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


class RawPower(Basis):
    """sum c_k x^k on the raw input (the paper's official parametrization), as pnnc's
    kernel rounds it (`train/backend/poly.rs` `raw_eval_block`): each power x^k is carried
    in float64 and rounded once to float32, so it is inf exactly where float32's x^k is
    (|x| > 56.4 at degree 22), and the terms are summed in float32 from k = 0 up. The
    backward forms sum_k (g c_k)(k x^(k-1)) and sum g x^k the same way, so its gradients
    overflow where pnnc's do."""

    name = "RawPower"
    scaled = False

    def evaluate(self, t, c, n):
        y = c[0].expand_as(t).clone()
        for pw in self._powers(t, n):
            y.add_(pw[1].mul_(c[pw[0]]))
        return y

    def walk(self, t, n):
        for _, pw in self._powers(t, n):
            yield pw

    @staticmethod
    def _powers(t, n):
        """(k, float32(x^k)) for k = 1..n, the powers multiplied up in float64."""
        if n == 0:
            return
        xd = t.double()
        pw = xd.clone()
        for k in range(1, n + 1):
            if k > 1:
                pw.mul_(xd)
            yield k, pw.to(t.dtype, copy=True)

    def derivative(self, c):
        return [(k + 1) * c[k + 1] for k in range(len(c) - 1)]

    def backward_chunk(self, t, g, n, c, ds, need_x, need_c):
        sums = [g.sum()] if need_c else None
        dx = torch.zeros_like(g) if need_x else None
        prev = torch.ones_like(t)  # float32(x^(k-1)), x^0 = 1
        for k, pw in self._powers(t, n):
            if need_x:
                dx.add_((g * c[k]).mul_(prev.mul_(float(k))))
            if need_c:
                sums.append(torch.dot(g, pw))
            prev = pw
        return dx, sums


BASES = {b.name: b for b in (Power(), Chebyshev(), RawPower())}


def derivative_matrix(basis, degree):
    """D (f64, [degree, degree + 1]) with d = D c: the derivative as a linear map, so that
    the backward forms p' on the device without reading the coefficients back."""
    if degree == 0:
        return np.zeros((0, 1))
    eye = np.eye(degree + 1)
    return np.array([basis.derivative(list(eye[j])) for j in range(degree + 1)]).T


def slope_matrix(basis, degree, inv_b):
    """The backward's map from coefficients to the slope's coefficients against the walk:
    diag(signs) D / B (f64), so that p'(t) / B = sum_k (M c)_k walk_k(t)."""
    scale = inv_b if basis.scaled else 1.0
    return basis.signs(degree)[:degree, None] * derivative_matrix(basis, degree) * scale


def _chunks(numel, device):
    step = CPU_CHUNK if device.type == "cpu" else GPU_CHUNK
    for start in range(0, numel, step):
        yield start, min(start + step, numel)


EXP, EXP_CAPPED, L2 = "Exp", "ExpCapped", "L2"


def _penalty_sum(x, kind, penalty, cap):
    """sum of f(max(0, |x| - P)) in f64: exp(e) - 1 (exp), exp(e) - 1 up to e = cap and
    linear beyond with the same value and slope (exp capped), e^2 (l2).
    softshrink(x, P) is sign(x) max(0, |x| - P), exactly 0 inside the boundary."""
    s = F.softshrink(x, penalty)
    if kind == EXP:
        # In f64 as pnnc (`boundary::site_term`): finite until an excess of ~709.
        return s.abs_().double().expm1_().sum()
    if kind == EXP_CAPPED:
        e = s.abs_().double()
        e_cap = math.exp(cap)
        linear = (e - cap).mul_(e_cap).add_(e_cap - 1.0)
        return torch.where(e > cap, linear, e.expm1()).sum()
    return torch.dot(s, s).double()


def _penalty_grad(x, kind, penalty, cap, scale):
    """`scale` (the upstream gradient of the site's sum, >= 0) times d/dx of the
    per-element penalty. The exp form's is exp(excess + ln scale), one rounding as pnnc's
    f64 `boundary::site_backward`, so it overflows float32 where pnnc's does: past an
    excess of ln(f32::MAX) + ln(1 / scale), not 88.7 (scale 0: exp(-inf) = 0)."""
    s = F.softshrink(x, penalty)
    if kind == EXP:
        return s.abs().add_(scale.log().to(x.dtype)).exp_().mul_(s.sign_())
    if kind == EXP_CAPPED:
        return s.abs().clamp_(max=cap).exp_().mul_(s.sign_()).mul_(scale.to(x.dtype))
    return s.mul_(2.0).mul_(scale.to(x.dtype))


class PolyFunction(torch.autograd.Function):
    """(x, coeffs) -> (p(x/B), boundary-penalty sum over x (f64), max |x|).

    `slope` is `slope_matrix(...)` (f64), `signs` the walk's signs (None: all +1)."""

    @staticmethod
    def forward(ctx, x, coeffs, inv_b, basis_name, slope, signs, loss_kind, penalty, cap):
        basis = BASES[basis_name]
        n = coeffs.numel() - 1
        x = x.contiguous()
        flat = x.view(-1)
        c = coeffs.to(x.dtype)
        parts, terms, amax = [], [], None
        for s, e in _chunks(flat.numel(), x.device):
            xc = flat[s:e]
            t = xc * inv_b if basis.scaled else xc
            parts.append(basis.evaluate(t, c, n))
            lo, hi = torch.aminmax(xc)
            m = torch.maximum(hi, -lo)
            amax = m if amax is None else torch.maximum(amax, m)
            if loss_kind is not None:
                terms.append(_penalty_sum(xc, loss_kind, penalty, cap))
        y = parts[0] if len(parts) == 1 else torch.cat(parts)
        if not terms:
            term = torch.zeros((), dtype=torch.float64, device=x.device)
        else:
            term = terms[0] if len(terms) == 1 else torch.stack(terms).sum()
        ctx.save_for_backward(x, coeffs, slope, signs)
        ctx.inv_b, ctx.basis, ctx.loss_kind, ctx.penalty = inv_b, basis_name, loss_kind, penalty
        ctx.cap = cap
        ctx.mark_non_differentiable(amax)
        return y.view_as(x), term, amax

    @staticmethod
    def backward(ctx, gy, gterm, _gmax):
        x, coeffs, slope_map, signs = ctx.saved_tensors
        basis = BASES[ctx.basis]
        n = coeffs.numel() - 1
        need_x, need_c = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        flat, g = x.view(-1), gy.contiguous().view(-1)
        # The slope's coefficients against the walk (pnnc: d = D c in f64, then / B).
        ds = (slope_map @ coeffs.double()).to(x.dtype) if n > 0 else None
        dx_parts, dc = [], None
        with_loss = ctx.loss_kind is not None and gterm is not None
        c = coeffs.to(x.dtype)
        for s, e in _chunks(flat.numel(), x.device):
            xc, gc = flat[s:e], g[s:e]
            t = xc * ctx.inv_b if basis.scaled else xc
            dxc, sums = basis.backward_chunk(t, gc, n, c, ds, need_x, need_c)
            if need_c:
                part = torch.stack(sums)
                dc = part if dc is None else dc + part
            if need_x:
                if with_loss:
                    dxc.add_(_penalty_grad(xc, ctx.loss_kind, ctx.penalty, ctx.cap, gterm))
                dx_parts.append(dxc)
        dx = None
        if need_x:
            dx = (dx_parts[0] if len(dx_parts) == 1 else torch.cat(dx_parts)).view_as(x)
        if need_c:
            dc = (dc * signs if signs is not None else dc).to(coeffs.dtype)
        return dx, dc, None, None, None, None, None, None, None


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
        b = BASES[basis]
        self.register_buffer(
            "slope",
            torch.tensor(slope_matrix(b, degree, self.inv_b), dtype=torch.float64),
            persistent=False,
        )
        signs = b.signs(degree)
        self.register_buffer(
            "signs",
            None if (signs == 1).all() else torch.tensor(signs, dtype=torch.float32),
            persistent=False,
        )

    def forward(self, x, loss_kind=None, penalty=0.0, cap=0.0):
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
                self.slope,
                self.signs,
                loss_kind,
                float(penalty),
                float(cap),
            )

"""The training recipe of a model's `train { }` section, with pnnc's semantics:
Boundary Loss and its reductions (`train/backend/boundary.rs`), Selective Gradient
Clipping (`train/clip.rs`), the optimizers with the polynomial learning-rate group
(`train/optim.rs`, which follows PyTorch's own update rules) and the schedules
(`train/schedule.rs`, kept in pnnc's serialised form so that resume files are shared).
"""

import math

import torch

from .net import BATCHNORM_AFFINE, POLY_COEFFS, all_reduce_sum

NORM_EPS = 1e-6  # clip_grad_norm_'s guard, as pnnc
# A plateau schedule serialised before its `threshold` existed meant PyTorch's default.
PLATEAU_THRESHOLD_BEFORE = 1e-4
PLATEAU_EPS = 1e-8


def variant(value):
    """(name, fields) of a serde enum value ("Constant" or {"Plateau": {...}})."""
    if isinstance(value, str):
        return value, {}
    (name, fields), = value.items()
    return name, fields


# --- Boundary loss ------------------------------------------------------------------


class Boundary:
    """lambda * reduce(per-site terms); exp / l2 terms are means over the site's inputs
    of the whole (global) batch, maxnorm terms the max |x|."""

    def __init__(self, cfg):
        # "Exp", "L2", "MaxNorm" or {"ExpCapped": {"cap": C}} (serde's forms).
        self.kind, fields = variant(cfg["kind"])
        self.cap = float(fields.get("cap", 0.0))
        self.penalty = cfg["penalty"]
        self.weight = float(cfg["weight"])
        self.reduce = cfg["reduce"]

    def pass_spec(self):
        return (self.kind, self.penalty, self.cap)

    def loss(self, terms, global_batch, dist):
        """(differentiable f64 loss, its value). `terms`: site -> (local sum or max, inputs
        per sample), in forward order. With several processes every process returns the
        same value, and gradients are scaled so that DDP's mean is pnnc's gradient."""
        world = 1 if dist is None else dist.world
        values = []
        for term, per_sample in terms.values():
            if self.kind == "MaxNorm":
                values.append(self._global_max(term, dist, world))
            else:
                count = max(per_sample * global_batch, 1)
                values.append(all_reduce_sum(term, dist) / count)
        if not values:
            zero = torch.zeros((), dtype=torch.float64)
            return zero, zero
        t = torch.stack([v.double() for v in values])
        if self.reduce == "Sum":
            r = t.sum()
        elif self.reduce == "L1":
            r = t.abs().sum()
        elif self.reduce == "Max":
            r = t[torch.argmax(t.detach())]  # the first arg max takes the gradient
        else:
            r = torch.linalg.vector_norm(t)
        loss = self.weight * r
        return loss, loss.detach()

    @staticmethod
    def _global_max(m, dist, world):
        if world == 1:
            return m.double()
        g = m.detach().clone()
        torch.distributed.all_reduce(g, op=torch.distributed.ReduceOp.MAX, group=dist.stats_group)
        holds = (m.detach() == g).to(m.dtype)
        # The value is the global max; the gradient reaches the process that holds it,
        # scaled by the world size because DDP averages over processes.
        return (g + world * holds * (m - m.detach())).double()


# --- Clipping -------------------------------------------------------------------------


class Clipper:
    """Global L2 norm over the clipped set (all trainable tensors, or all but BatchNorm
    gamma and beta with `except: batchnorm`), scaled by min(1, max / (norm + 1e-6))."""

    def __init__(self, cfg, trainable):
        self.max_norm = None if cfg is None else float(cfg["max_norm"])
        skip_bn = cfg is not None and cfg["except"] == "BatchNorm"
        self.names = [n for n, _, _ in trainable]
        self.params = [p for _, p, _ in trainable]
        self.chosen = [not (skip_bn and r == BATCHNORM_AFFINE) for _, _, r in trainable]

    def squares(self):
        """Per-tensor squared gradient norms (f64, on the device)."""
        grads = [p.grad for p in self.params]
        norms = torch._foreach_norm(grads)
        return torch.stack(norms).double().square()

    def apply(self, squares):
        """Scale the clipped set's gradients; returns the pre-clipping norm (device, f64)."""
        mask = torch.tensor(self.chosen, device=squares.device)
        norm = squares[mask].sum().sqrt()
        if self.max_norm is not None:
            scale = (self.max_norm / (norm + NORM_EPS)).clamp(max=1.0).float()
            grads = [p.grad for p, c in zip(self.params, self.chosen) if c]
            if grads:
                torch._foreach_mul_(grads, scale)
        return norm


# --- Optimizers -----------------------------------------------------------------------


class Optimizer:
    """torch.optim.AdamW or SGD over two groups: plain tensors and polynomial
    coefficients (rate x poly_lr_scale). pnnc's optimizer follows these update rules."""

    def __init__(self, cfg, trainable):
        name, f = variant(cfg)
        self.name = name
        self.trainable = trainable
        plain = [p for _, p, r in trainable if r != POLY_COEFFS]
        poly = [p for _, p, r in trainable if r == POLY_COEFFS]
        groups = [{"params": plain, "group": 0}]
        if poly:
            groups.append({"params": poly, "group": 1})
        lr = float(f["lr"])
        if name == "AdamW":
            self.opt = torch.optim.AdamW(
                groups,
                lr=lr,
                betas=(float(f["beta1"]), float(f["beta2"])),
                eps=float(f["eps"]),
                weight_decay=float(f["weight_decay"]),
            )
        elif name == "Sgd":
            momentum = float(f["momentum"])
            self.opt = torch.optim.SGD(
                groups,
                lr=lr,
                momentum=momentum,
                weight_decay=float(f["weight_decay"]),
                nesterov=bool(f["nesterov"]) and momentum > 0,
            )
        else:
            raise ValueError(f"optimizer `{name}` is not known to pnnc_torch")
        self.steps = 0

    def set_rates(self, plain_lr, poly_lr):
        for g in self.opt.param_groups:
            g["lr"] = plain_lr if g["group"] == 0 else poly_lr

    def step(self):
        self.opt.step()
        self.steps += 1

    def zero_grad(self):
        self.opt.zero_grad(set_to_none=False)

    def export_state(self):
        """pnnc's per-tensor state: (first, second, steps) lists by trainable order."""
        out = []
        for _, p, _ in self.trainable:
            st = self.opt.state.get(p, {})
            if self.name == "AdamW":
                first = st.get("exp_avg")
                second = st.get("exp_avg_sq")
            else:
                first, second = st.get("momentum_buffer"), None
            out.append((first, second, self.steps))
        return out

    def import_state(self, states):
        """Restore from pnnc's per-tensor state (first/second may be None)."""
        for (_, p, _), (first, second, steps) in zip(self.trainable, states):
            st = {}
            if self.name == "AdamW":
                st["step"] = torch.tensor(float(steps))
                st["exp_avg"] = (first if first is not None else torch.zeros_like(p)).to(p.device)
                st["exp_avg_sq"] = (second if second is not None else torch.zeros_like(p)).to(
                    p.device
                )
            elif first is not None:
                st["momentum_buffer"] = first.to(p.device)
            self.opt.state[p] = st
        self.steps = max((s for _, _, s in states), default=0)


# --- Schedules --------------------------------------------------------------------------


class LrSchedule:
    """train/schedule.rs `LrSchedule`, stepped once per epoch, in its serde form."""

    def __init__(self, schedule, initial, epochs):
        self.schedule = schedule
        self.initial = list(initial)
        self.current = list(initial)
        self.epochs = epochs
        self.epoch = 0
        self.best = None
        self.bad_epochs = 0

    def to_json(self):
        return {
            "schedule": self.schedule,
            "initial": self.initial,
            "current": self.current,
            "epochs": self.epochs,
            "epoch": self.epoch,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
        }

    @classmethod
    def from_json(cls, j):
        s = cls(j["schedule"], j["initial"], j["epochs"])
        s.current = list(j["current"])
        s.epoch, s.best, s.bad_epochs = j["epoch"], j["best"], j["bad_epochs"]
        return s

    def lr(self, group):
        return self.current[group]

    def step(self, val_loss):
        self.epoch += 1
        name, f = variant(self.schedule)
        if name == "Plateau":
            if self.best is None:
                improved = math.isfinite(val_loss)
            else:
                threshold = f.get("threshold", PLATEAU_THRESHOLD_BEFORE)
                improved = val_loss < self.best * (1.0 - threshold)
            if improved:
                self.best = val_loss
                self.bad_epochs = 0
            else:
                self.bad_epochs += 1
            if self.bad_epochs > f["patience"]:
                for i, lr in enumerate(self.current):
                    reduced = max(lr * f["factor"], f["min_lr"])
                    if lr - reduced > PLATEAU_EPS:
                        self.current[i] = reduced
                self.bad_epochs = 0
        elif name in ("Cosine", "MultiStep"):
            self._recompute()

    def set_total_epochs(self, epochs):
        self.epochs = epochs
        if variant(self.schedule)[0] in ("Cosine", "MultiStep"):
            self._recompute()

    def _recompute(self):
        name, f = variant(self.schedule)
        e = self.epoch
        if name == "Cosine":
            t = min(e, self.epochs) / max(self.epochs, 1)
            c = (1.0 + math.cos(math.pi * t)) / 2.0
            self.current = [f["min_lr"] + (b - f["min_lr"]) * c for b in self.initial]
        elif name == "MultiStep":
            passed = sum(1 for m in f["milestones"] if m <= e)
            self.current = [b * powi(f["gamma"], passed) for b in self.initial]


def powi(x, n):
    """Rust's `f64::powi` (compiler-rt `__powidf2`: square and multiply), so that rates
    equal pnnc's to the last bit."""
    r, a, b = 1.0, x, abs(n)
    while True:
        if b & 1:
            r *= a
        b //= 2
        if b == 0:
            break
        a *= a
    return 1.0 / r if n < 0 else r

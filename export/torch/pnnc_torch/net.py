"""The network of a checked model, built op by op from `model.json`.

One small module per `ir::OpKind`. Tensors keep pnnc's names (`<op name>.<param>`, in
`Op::param_shapes` order) through `PnnNet.tensors()` / `load_tensors()`, and the initial
weights are pnnc's own draws (`rng.InitStream`, in `Network::new`'s order), so a fresh
network equals pnnc's for the same seed, bit for bit.

A forward pass takes a `Pass`: training or evaluation, the boundary loss to compute at
each polynomial site, the step seed of dropout masks, and the distributed context
(global batch statistics for BatchNorm, global element indices for dropout).
"""

import numpy as np
import torch
import torch.nn.functional as F

from . import rng
from .ir import op_kind
from .poly import Poly

PLAIN, BATCHNORM_AFFINE, POLY_COEFFS = "Plain", "BatchNormAffine", "PolyCoeffs"


class Pass:
    """Per-forward state shared by every layer."""

    def __init__(self, training, boundary=None, step_seed=0, dist=None, sample_offset=0):
        self.training = training
        # (kind "Exp"/"ExpCapped"/"L2"/"MaxNorm", penalty or None for each site's range,
        # cap) or None; in evaluation too when the caller wants the terms (validation).
        self.boundary = boundary
        self.step_seed = step_seed
        self.dist = dist
        self.sample_offset = sample_offset  # first global sample of this process' slice
        self.terms = {}  # site -> (penalty sum (f64, differentiable) or max |x|, elements)
        self.act_max = {}  # site -> max |x| (0-dim, detached)
        self.overflow = None  # {} to record sites whose finite inputs gave non-finite outputs


class Layer(torch.nn.Module):
    def __init__(self, op):
        super().__init__()
        self.op_name = op["name"]
        self.in_shape = list(op["input"])
        self.out_shape = list(op["output"])

    def entries(self):
        """(pnnc name, tensor, role or None for state) in `Op::param_shapes` order."""
        return []


class Dense(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)
        i, o = f["in_features"], f["out_features"]
        self.weight = torch.nn.Parameter(init.tensor(init.stream.uniform(o * i, i), [o, i]))
        self.bias = (
            torch.nn.Parameter(init.tensor(init.stream.uniform(o, i), [o])) if f["bias"] else None
        )

    def forward(self, x, p):
        return F.linear(x.reshape(x.shape[0], -1), self.weight, self.bias)

    def entries(self):
        out = [(f"{self.op_name}.weight", self.weight, PLAIN)]
        if self.bias is not None:
            out.append((f"{self.op_name}.bias", self.bias, PLAIN))
        return out


class Conv(Layer):
    """2-D convolution, or 1-D on a sequence [C, T] (pnnc stores it as a 2-D one over a
    height of 1: kernel [1, k], stride [1, s], padding [0, p]; its weight is
    [out, in / groups, k], as `Conv1d`'s). `groups` as PyTorch's."""

    def __init__(self, op, f, init):
        super().__init__(op)
        ci, co = f["in_channels"], f["out_channels"]
        self.groups = int(f.get("groups", 1))
        kh, kw = f["kernel"]
        self.sequence = len(self.in_shape) == 2
        # PyTorch's (and pnnc's) fan-in: one group's input channels times the kernel.
        fan_in = ci // self.groups * kh * kw
        if self.sequence:
            shape = [co, ci // self.groups, kw]
            self.stride, self.padding = (f["stride"][1],), (f["padding"][1],)
        else:
            shape = [co, ci // self.groups, kh, kw]
            self.stride, self.padding = tuple(f["stride"]), tuple(f["padding"])
        w = init.stream.uniform(co * fan_in, fan_in)
        self.weight = torch.nn.Parameter(init.tensor(w, shape))
        self.bias = (
            torch.nn.Parameter(init.tensor(init.stream.uniform(co, fan_in), [co]))
            if f["bias"]
            else None
        )

    def forward(self, x, p):
        x = x.reshape(x.shape[0], *self.in_shape)
        conv = F.conv1d if self.sequence else F.conv2d
        return conv(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)

    def entries(self):
        out = [(f"{self.op_name}.weight", self.weight, PLAIN)]
        if self.bias is not None:
            out.append((f"{self.op_name}.bias", self.bias, PLAIN))
        return out


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process' input is the sum of the
    output gradients (each process' loss depends on every input)."""

    @staticmethod
    def forward(ctx, t, group):
        ctx.group = group
        out = t.clone(memory_format=torch.contiguous_format)
        torch.distributed.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, g):
        return _AllReduceSum.apply(g, ctx.group), None


def all_reduce_sum(t, dist):
    """Differentiable sum over processes (identity in one process)."""
    if dist is None or dist.world == 1:
        return t
    return _AllReduceSum.apply(t, dist.stats_group)


class BatchNorm(Layer):
    """Batch statistics over the whole (global) batch, as pnnc: over every process'
    slice when training with several (an all-reduce per statistic), unless `local_bn`."""

    def __init__(self, op, f, init):
        super().__init__(op)
        c = f["channels"]
        self.eps, self.momentum = float(f["eps"]), float(f["momentum"])
        self.gamma = torch.nn.Parameter(torch.ones(c))
        self.beta = torch.nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))

    def forward(self, x, p):
        n, c = x.shape[0], self.gamma.numel()
        x3 = x.reshape(n, c, -1)
        if not p.training:
            y = F.batch_norm(x3, self.running_mean, self.running_var, self.gamma, self.beta,
                             False, 0.0, self.eps)
            return y.reshape(x.shape)
        d = p.dist
        spread = d is not None and d.world > 1 and not d.local_bn
        count = (d.global_batch if spread else n) * x3.shape[2]
        if not spread and count > 1:
            y = F.batch_norm(x3, self.running_mean, self.running_var, self.gamma, self.beta,
                             True, self.momentum, self.eps)
            return y.reshape(x.shape)
        return self._global(x3, count, d if spread else None).reshape(x.shape)

    def _global(self, x3, count, dist):
        """Two-pass statistics summed over processes; running stats as PyTorch/pnnc."""
        mean = all_reduce_sum(x3.sum(dim=(0, 2)), dist) / count
        centred = x3 - mean[None, :, None]
        var = all_reduce_sum(centred.square().sum(dim=(0, 2)), dist) / count
        inv = torch.rsqrt(var + self.eps)
        y = centred * (inv * self.gamma)[None, :, None] + self.beta[None, :, None]
        with torch.no_grad():
            unbiased = var * (count / (count - 1)) if count > 1 else var
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        return y

    def entries(self):
        n = self.op_name
        return [
            (f"{n}.gamma", self.gamma, BATCHNORM_AFFINE),
            (f"{n}.beta", self.beta, BATCHNORM_AFFINE),
            (f"{n}.running_mean", self.running_mean, None),
            (f"{n}.running_var", self.running_var, None),
        ]


class PolySite(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)
        coeffs = init.coeffs[self.op_name]
        self.poly = Poly(f["degree"], f["basis"], f["range"], coeffs, f["learnable"])
        self.range = float(f["range"])
        self.per_sample = int(np.prod(self.in_shape))

    def forward(self, x, p):
        b = p.boundary
        if b is None or b[0] == "MaxNorm":
            y, _, amax = self.poly(x)
        else:
            penalty = b[1] if b[1] is not None else self.range
            y, term, amax = self.poly(x, b[0], penalty, b[2])
            p.terms[self.op_name] = (term, self.per_sample)
        if b is not None and b[0] == "MaxNorm":
            # max |x| with the gradient on the arg max (torch.max; pnnc: the first arg max).
            m = x.abs().amax() if x.numel() else x.new_zeros(())
            p.terms[self.op_name] = (m, self.per_sample)
        p.act_max[self.op_name] = amax
        if p.overflow is not None and bool(torch.isfinite(x).all()) and not bool(torch.isfinite(y).all()):
            p.overflow[self.op_name] = True
        return y

    def entries(self):
        role = POLY_COEFFS if isinstance(self.poly.coeffs, torch.nn.Parameter) else None
        return [(f"{self.op_name}.coeffs", self.poly.coeffs, role)]


class Relu(Layer):
    """The ReLU baseline at a polynomial site (not HE-compatible); keeps the fitted
    coefficients for checkpoints, as pnnc does."""

    def __init__(self, op, f, init):
        super().__init__(op)
        c = np.asarray(init.coeffs[self.op_name], dtype=np.float32)
        self.register_buffer("coeffs", torch.tensor(c))

    def forward(self, x, p):
        p.act_max[self.op_name] = x.detach().abs().amax() if x.numel() else x.new_zeros(())
        return F.relu(x)

    def entries(self):
        return [(f"{self.op_name}.coeffs", self.coeffs, None)]


class AvgPool(Layer):
    """2-D average pooling, or 1-D on a sequence [C, T] (stored as a 2-D one over a
    height of 1)."""

    def __init__(self, op, f, init):
        super().__init__(op)
        self.kernel, self.stride = tuple(f["kernel"]), tuple(f["stride"])
        self.sequence = len(self.in_shape) == 2

    def forward(self, x, p):
        x = x.reshape(x.shape[0], *self.in_shape)
        if self.sequence:
            return F.avg_pool1d(x, self.kernel[1], self.stride[1])
        return F.avg_pool2d(x, self.kernel, self.stride)


class GlobalAvgPool(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)

    def forward(self, x, p):
        return x.reshape(x.shape[0], self.in_shape[0], -1).mean(dim=2)


class Flatten(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)

    def forward(self, x, p):
        return x.reshape(x.shape[0], -1)


class Dropout(Layer):
    """Inverted dropout with pnnc's masks: a SplitMix64 hash of (step seed, site, element)."""

    def __init__(self, op, f, init):
        super().__init__(op)
        self.p = float(f["p"])
        init.dropouts += 1
        self.site = init.dropouts

    def forward(self, x, p):
        if not p.training or self.p == 0.0 or x.numel() == 0:
            return x
        per_sample = x[0].numel()
        first = p.sample_offset * per_sample
        mask = dropout_mask(x.numel(), self.p, p.step_seed, self.site, first)
        return x * torch.from_numpy(mask).to(x.device).reshape(x.shape)


def dropout_mask(count, prob, seed, site, first=0):
    """train/backend/elementwise.rs `dropout_mask` for elements first .. first + count."""
    keep = np.float32(1.0 / (1.0 - prob))
    base = rng.splitmix64(seed ^ rng.splitmix64((site + 0x5851_F42D_4C95_7F2D) & rng.MASK64))
    z = np.arange(first, first + count, dtype=np.uint64) ^ np.uint64(base)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E37_79B9_7F4A_7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58_476D_1CE4_E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D0_49BB_1331_11EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.where(u < prob, np.float32(0.0), keep).astype(np.float32)


class Scale(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)
        self.factor = float(np.float32(f["factor"]))

    def forward(self, x, p):
        return x * self.factor


class Residual(Layer):
    def __init__(self, op, f, init):
        super().__init__(op)
        self.body = torch.nn.ModuleList(build_layers(f["body"], init))
        self.shortcut = torch.nn.ModuleList(build_layers(f["shortcut"], init))

    def forward(self, x, p):
        b = x
        for layer in self.body:
            b = layer(b, p)
        s = x
        for layer in self.shortcut:
            s = layer(s, p)
        n = x.shape[0]
        return b.reshape(n, *self.out_shape) + s.reshape(n, *self.out_shape)

    def entries(self):
        out = []
        for layer in list(self.body) + list(self.shortcut):
            out.extend(layer.entries())
        return out


class Concat(Layer):
    """The branches' outputs joined along the first axis of a sample (channels); an
    empty branch passes the input through."""

    def __init__(self, op, f, init):
        super().__init__(op)
        self.branches = torch.nn.ModuleList(
            torch.nn.ModuleList(build_layers(b, init)) for b in f["branches"]
        )

    def forward(self, x, p):
        n = x.shape[0]
        outs = []
        for branch in self.branches:
            y = x
            for layer in branch:
                y = layer(y, p)
            # Each branch's own output shape, then channels joined (dim 1 after the batch).
            outs.append(y.reshape(n, -1, *self.out_shape[1:]))
        return torch.cat(outs, dim=1)

    def entries(self):
        out = []
        for branch in self.branches:
            for layer in branch:
                out.extend(layer.entries())
        return out


LAYERS = {
    "Dense": Dense,
    "Conv": Conv,
    "BatchNorm": BatchNorm,
    "Poly": PolySite,
    "AvgPool": AvgPool,
    "GlobalAvgPool": GlobalAvgPool,
    "Flatten": Flatten,
    "Dropout": Dropout,
    "Scale": Scale,
    "Residual": Residual,
    "Concat": Concat,
}


class _Init:
    """Initialisation state threaded through the build (pnnc's `Builder`)."""

    def __init__(self, seed, coeffs, baseline_relu):
        self.stream = rng.InitStream(seed)
        self.coeffs = coeffs
        self.baseline_relu = baseline_relu
        self.dropouts = 0

    @staticmethod
    def tensor(values, shape):
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32).reshape(shape))


def build_layers(ops, init):
    layers = []
    for op in ops:
        name, f = op_kind(op)
        cls = LAYERS[name]
        if name == "Poly" and init.baseline_relu:
            cls = Relu
        layers.append(cls(op, f, init))
    return layers


class PnnNet(torch.nn.Module):
    """The whole network; `forward(x, pass)` returns the logits."""

    def __init__(self, export, seed):
        super().__init__()
        init = _Init(seed, export.init_coeffs, export.baseline_relu)
        self.layers = torch.nn.ModuleList(build_layers(export.model["net"], init))
        self.input_shape = export.input_shape
        self.classes = export.classes
        self.sites = [e[0].rsplit(".", 1)[0] for e in self._entries() if e[0].endswith(".coeffs")]

    def forward(self, x, p):
        x = x.reshape(x.shape[0], *self.input_shape)
        for layer in self.layers:
            x = layer(x, p)
        return x.reshape(x.shape[0], -1)

    def empty_terms(self, device):
        """Boundary terms of an empty slice: a zero for every site (collectives need them)."""
        zero = torch.zeros((), dtype=torch.float64, device=device)
        return {m.op_name: (zero, m.per_sample) for m in self.modules() if isinstance(m, PolySite)}

    def _entries(self):
        out = []
        for layer in self.layers:
            out.extend(layer.entries())
        return out

    def trainable(self):
        """(pnnc name, parameter, role) in pnnc's optimizer order (`Network::params`)."""
        return [(n, t, r) for n, t, r in self._entries() if r is not None]

    def tensors(self):
        """Every checkpoint tensor by pnnc name (detached, on the CPU, float32)."""
        return {n: t.detach().to("cpu", torch.float32).contiguous() for n, t, _ in self._entries()}

    def load_tensors(self, tensors, path):
        """Copy pnnc-named tensors in; every one must be there with its shape, and no other."""
        from .ir import ExportError

        entries = self._entries()
        names = {n for n, _, _ in entries}
        for n, t, _ in entries:
            if n not in tensors:
                raise ExportError(f"{path}: missing tensor `{n}` (expected shape {list(t.shape)})")
            if list(tensors[n].shape) != list(t.shape):
                raise ExportError(
                    f"{path}: tensor `{n}` has shape {list(tensors[n].shape)}, "
                    f"the model needs {list(t.shape)}"
                )
        extra = sorted(set(tensors) - names)
        if extra:
            raise ExportError(f"{path}: tensor `{extra[0]}` belongs to no layer of this model")
        with torch.no_grad():
            for n, t, _ in entries:
                t.copy_(tensors[n].to(t.device, t.dtype))

"""Small random circuits in the pnnc circuit format, for tests and CI.

The real circuits come from `pnnc compile`; these follow the same format
(docs/circuit-format.md), including its normative diagonal/baby-step rules, so
that the runner can be tested without the compiler.

    python -m pnnc_he.fixture OUT.json [--kind mlp|affine|bootstrap] [--seed 0] [--inputs IN.json -n 4]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from . import circuit
from .ckks import bsgs_rotations, chebyshev_depth, sum_rotations


def key_switch_digits(first_mod_bits: int, scale_bits: int, depth: int, max_log_qp: int) -> tuple[int, int]:
    """Fewest HYBRID digits (from 3) whose special primes keep Q*P within
    `max_log_qp`, with log2(Q*P): the rule of src/he/params.rs (OpenFHE's P
    is one bit more than the largest digit, in 60-bit primes)."""
    towers = depth + 1
    log_q = first_mod_bits + depth * scale_bits
    for digits in range(min(3, towers), towers + 1):
        per = -(-towers // digits)
        if -(-towers // per) != digits:
            continue
        log_qp = log_q + (first_mod_bits + (per - 1) * scale_bits) // 60 * 60 + 60
        if max_log_qp == 0 or log_qp <= max_log_qp:
            return digits, log_qp
    raise ValueError("no key-switching digits fit")


def choose_baby_step(diagonals: list[int], dim: int) -> int:
    """The format's rule: the g in 1..min(dim, span) minimising |B(g)| + |G(g)|, smallest on ties."""
    span = max(diagonals) - min(diagonals) + 1 if diagonals else 1
    best, best_cost = 1, None
    for g in range(1, max(1, min(dim, span)) + 1):
        baby = {k % g for k in diagonals} - {0}
        giant = {k - k % g for k in diagonals} - {0}
        cost = len(baby) + len(giant)
        if best_cost is None or cost < best_cost:
            best, best_cost = g, cost
    return best


class Builder:
    def __init__(self, input_len: int, dim: int, rng: np.random.Generator):
        self.dim, self.rng = dim, rng
        self.ops: list[dict] = []
        self.tensors: dict[str, dict] = {}
        self.lengths = [input_len]
        self.levels = [0]

    def _push(self, inputs, kind, length, level_out, source):
        vid = len(self.ops) + 1
        self.ops.append(
            {
                "id": vid,
                "inputs": inputs,
                "source": [source],
                "in_shape": [self.lengths[inputs[0]]],
                "out_shape": [length],
                "layout": None,
                "level_in": max(self.levels[i] for i in inputs),
                "level_out": level_out,
                "kind": kind,
            }
        )
        self.lengths.append(length)
        self.levels.append(level_out)
        return vid

    def _tensor(self, name, dtype, data):
        self.tensors[name] = {"dtype": dtype, "data": [int(v) if dtype == "i64" else float(v) for v in data]}
        return name

    def linear(self, src: int, out_len: int, density: float = 0.6, gain: float = 1.0, fold: bool = False) -> int:
        """A random out_len x in_len matrix; with `fold`, as pnnc compiles a wide
        one: entry (j, c) at row j + (c // out_len) * out_len of a longer
        vector, then a `sum` op adds its out_len-long pieces."""
        in_len = self.lengths[src]
        mask = self.rng.uniform(size=(out_len, in_len)) < density
        m = self.rng.normal(size=(out_len, in_len)) * mask * gain / math.sqrt(in_len * density)
        if fold:
            count = -(-in_len // out_len)
            long = np.zeros((count * out_len, in_len))
            for j, c in zip(*np.nonzero(m)):
                long[j + (c // out_len) * out_len, c] = m[j, c]
            bias = np.concatenate([self.rng.normal(size=out_len) * 0.1, np.zeros((count - 1) * out_len)])
            t = self._matrix(src, long, bias)
            kind = {
                "op": "sum",
                "in_len": count * out_len,
                "out_len": out_len,
                "stride": out_len,
                "count": count,
                "rotations": sorted(sum_rotations(out_len, count)),
            }
            return self._push([t], kind, out_len, self.levels[t], f"op{len(self.ops) + 1}.fold")
        return self._matrix(src, m, self.rng.normal(size=out_len) * 0.1)

    def _matrix(self, src: int, m: np.ndarray, bias: np.ndarray) -> int:
        in_len, out_len = self.lengths[src], m.shape[0]
        rows, cols = np.nonzero(m)
        diagonals = sorted({int(c) - int(r) for r, c in zip(rows, cols)})
        g = choose_baby_step(diagonals, self.dim)
        name = f"op{len(self.ops) + 1}"
        kind = {
            "op": "linear",
            "in_len": in_len,
            "out_len": out_len,
            "rows": self._tensor(f"{name}.rows", "i64", rows),
            "cols": self._tensor(f"{name}.cols", "i64", cols),
            "values": self._tensor(f"{name}.values", "f64", m[rows, cols]),
            "bias": self._tensor(f"{name}.bias", "f64", bias),
            "diagonals": diagonals,
            "baby_step": g,
            "rotations": sorted(bsgs_rotations(diagonals, g)),
        }
        return self._push([src], kind, out_len, self.levels[src] + 1, f"{name}.dense")

    def poly(self, src: int, degree: int) -> int:
        # A smooth activation-like series with decaying coefficients.
        coeffs = self.rng.normal(size=degree + 1) / (1.0 + np.arange(degree + 1)) ** 2
        kind = {
            "op": "poly",
            "len": self.lengths[src],
            "degree": degree,
            "coeffs": [float(c) for c in coeffs],
            "declared_range": 4.0,
            "interval_bound": 1.0,
        }
        level = self.levels[src] + chebyshev_depth(degree)
        return self._push([src], kind, self.lengths[src], level, f"op{len(self.ops) + 1}.poly")

    def affine(self, src: int) -> int:
        n = self.lengths[src]
        name = f"op{len(self.ops) + 1}"
        kind = {
            "op": "affine",
            "len": n,
            "scale": self._tensor(f"{name}.scale", "f64", self.rng.uniform(0.5, 1.5, n)),
            "shift": self._tensor(f"{name}.shift", "f64", self.rng.normal(size=n) * 0.1),
        }
        return self._push([src], kind, n, self.levels[src] + 1, f"{name}.batchnorm")

    def bootstrap(self, src: int, levels: int) -> int:
        kind = {"op": "bootstrap", "len": self.lengths[src]}
        return self._push([src], kind, self.lengths[src], levels, f"op{len(self.ops) + 1}.bootstrap")

    def add(self, a: int, b: int) -> int:
        kind = {"op": "add", "len": self.lengths[a]}
        return self._push([a, b], kind, self.lengths[a], max(self.levels[a], self.levels[b]), f"op{len(self.ops) + 1}.join")

    def circuit(
        self, name: str, classes: int, ring_dim: int, security: int, scale_bits: int, first_mod_bits: int,
        mult_depth: int | None = None, bootstrapping: dict | None = None,
    ) -> dict:
        depth = max(self.levels) if mult_depth is None else mult_depth
        max_log_qp = 438 if ring_dim == 16384 and security == 128 else 0
        digits, log_qp = key_switch_digits(first_mod_bits, scale_bits, depth, max_log_qp)
        rotations = sorted({r for op in self.ops for r in op["kind"].get("rotations", [])})
        return {
            "format": "pnnc-circuit",
            "version": circuit.VERSION,
            "model": {
                "name": name,
                "source_hash": "fixture",
                "input_shape": [self.lengths[0]],
                "classes": classes,
                "class_names": [f"c{i}" for i in range(classes)],
                "data": None,
                "normalization": {"mean": [], "std": []},  # none: the inputs are used as they are
            },
            "params": {
                "scheme": "ckks",
                "security": security,
                "ring_dim": ring_dim,
                "slots": ring_dim // 2,
                "first_mod_bits": first_mod_bits,
                "scale_bits": scale_bits,
                "mult_depth": depth,
                "key_switch_digits": digits,
                "log_q": first_mod_bits + depth * scale_bits,
                "log_qp": log_qp,
                "max_log_q": max_log_qp,
                "secret_key": "sparse_ternary" if bootstrapping else "uniform_ternary",
                "bootstrapping": bootstrapping,
            },
            "packing": {"layout": "blocked", "dim": self.dim, "samples_per_ciphertext": ring_dim // 2 // self.dim},
            "input": {"shape": [self.lengths[0]], "scale": None, "shift": None, "range": [-1.0, 1.0]},
            "ops": self.ops,
            "output": len(self.ops),
            "depth": self.levels[-1],
            "rotations": rotations,
            "tensors": {"storage": "inline", "tensors": self.tensors},
        }


def tiny_mlp(seed: int = 0, security: int = 128, ring_dim: int = 16384) -> dict:
    """12 inputs -> dense 16 -> poly 3 -> dense 16 -> poly 2 -> residual add -> dense 5.

    Depth 7: fits ring 2^14 at 128-bit security with 36-bit scales.
    """
    b = Builder(12, 16, np.random.default_rng(seed))
    h1 = b.poly(b.linear(0, 16, gain=0.5), 3)
    h2 = b.poly(b.linear(h1, 16, gain=0.5), 2)
    b.linear(b.add(h1, h2), 5)
    return b.circuit("tiny_mlp", 5, ring_dim, security, 36, 50)


def tiny_with_affine(seed: int = 1) -> dict:
    """Every op kind (incl. an unfolded batch norm) at a toy, insecure ring size."""
    b = Builder(10, 32, np.random.default_rng(seed))
    h1 = b.poly(b.linear(0, 20, gain=0.5), 5)
    h2 = b.affine(b.linear(h1, 20, gain=0.5))
    b.linear(b.add(h1, h2), 4, fold=True)
    return b.circuit("tiny_affine", 4, 1 << 12, 0, 50, 60)


def tiny_bootstrap(seed: int = 2) -> dict:
    """One bootstrap where the plan needs it, at toy insecure parameters
    (N = 2^12, security 0, sparse secret, level budget [3, 3]: a bootstrap
    leaves 16 of the 20 levels consumed): six dense -> poly 3 layers and a
    dense reach level 19, the next poly would need 21 > 20, so its input is
    bootstrapped (19 -> 16) -> poly 3 -> dense. A bootstrap's input must be
    past level 16: OpenFHE returns a ciphertext with more towers unchanged.
    The bootstrapped value is an activation input, small."""
    b = Builder(8, 8, np.random.default_rng(seed))
    h = 0
    for _ in range(6):
        h = b.poly(b.linear(h, 8, gain=0.5), 3)
    h = b.linear(h, 8, gain=0.5)
    h = b.linear(b.poly(b.bootstrap(h, 16), 3), 3)
    plan = {"bootstrap_levels": 16, "level_budget": [3, 3], "slots": 2048, "bootstraps": 1}
    return b.circuit("tiny_bootstrap", 3, 1 << 12, 0, 55, 60, mult_depth=20, bootstrapping=plan)


def random_inputs(n: int, length: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"samples": rng.uniform(-1, 1, size=(n, length)).tolist(), "labels": [None] * n}


KINDS = {"mlp": tiny_mlp, "affine": tiny_with_affine, "bootstrap": tiny_bootstrap}


def main() -> None:
    ap = argparse.ArgumentParser(description="write a small random pnnc circuit")
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=None, help="default: the kind's own (the committed fixtures)")
    ap.add_argument("--inputs", type=Path, help="also write N random input samples here")
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--kind", choices=sorted(KINDS), default="mlp")
    args = ap.parse_args()
    doc = KINDS[args.kind]() if args.seed is None else KINDS[args.kind](args.seed)
    args.out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    if args.inputs:
        length = doc["input"]["shape"][0]
        args.inputs.write_text(json.dumps(random_inputs(args.n, length, args.seed or 0)) + "\n")


if __name__ == "__main__":
    main()

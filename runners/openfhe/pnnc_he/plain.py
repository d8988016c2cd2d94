"""The circuit evaluated in numpy float64: the reference for the encrypted run."""

from __future__ import annotations

import numpy as np

from .circuit import Circuit


def prepare_input(circuit: Circuit, sample: np.ndarray) -> np.ndarray:
    """The client-side transform x * scale + shift (when the circuit has one)."""
    x = np.asarray(sample, dtype=float).reshape(-1)
    spec = circuit.doc["input"]
    if spec.get("scale"):
        x = x * circuit.tensor(spec["scale"], "input.scale")
    if spec.get("shift"):
        x = x + circuit.tensor(spec["shift"], "input.shift")
    return x


def matvec(circuit: Circuit, kind: dict, x: np.ndarray) -> np.ndarray:
    """M x from the COO matrix (a dense copy of a ResNet-20 conv at 16,384
    slots would take 2 GiB)."""
    rows = circuit.tensors[kind["rows"]].astype(np.int64)
    cols = circuit.tensors[kind["cols"]].astype(np.int64)
    products = circuit.tensors[kind["values"]] * x[cols]
    return np.bincount(rows, weights=products, minlength=int(kind["out_len"]))[: int(kind["out_len"])]


def evaluate(circuit: Circuit, x: np.ndarray) -> list[np.ndarray]:
    """Every value of the circuit (index = value id) for one prepared input."""
    values = [x]
    for op in circuit.ops:
        k = op["kind"]
        a = values[op["inputs"][0]]
        if k["op"] == "linear":
            y = matvec(circuit, k, a) + circuit.tensors[k["bias"]]
        elif k["op"] == "affine":
            y = a * circuit.tensors[k["scale"]] + circuit.tensors[k["shift"]]
        elif k["op"] == "poly":
            y = np.polynomial.chebyshev.chebval(a, k["coeffs"])
        elif k["op"] == "bootstrap":
            y = a.copy()
        elif k["op"] == "sum":
            stride, count, n = int(k["stride"]), int(k["count"]), int(k["out_len"])
            y = sum(a[q * stride : q * stride + n] for q in range(count))
        else:
            y = a + values[op["inputs"][1]]
        values.append(y)
    return values

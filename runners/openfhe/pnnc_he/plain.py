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


def dense_matrix(circuit: Circuit, kind: dict) -> np.ndarray:
    key = ("dense", kind["values"])
    if key in circuit.cache:
        return circuit.cache[key]
    m = circuit.cache[key] = np.zeros((kind["out_len"], kind["in_len"]))
    rows = circuit.tensors[kind["rows"]]
    cols = circuit.tensors[kind["cols"]]
    np.add.at(m, (rows, cols), circuit.tensors[kind["values"]])
    return m


def evaluate(circuit: Circuit, x: np.ndarray) -> list[np.ndarray]:
    """Every value of the circuit (index = value id) for one prepared input."""
    values = [x]
    for op in circuit.ops:
        k = op["kind"]
        a = values[op["inputs"][0]]
        if k["op"] == "linear":
            y = dense_matrix(circuit, k) @ a + circuit.tensors[k["bias"]]
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

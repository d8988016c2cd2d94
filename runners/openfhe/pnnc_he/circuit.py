"""Load a pnnc HE circuit (docs/circuit-format.md, version 4) and check it.

Every problem is a `CircuitError` naming the file and the place; the runner
turns it into exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FORMAT = "pnnc-circuit"
VERSION = 4
OP_KINDS = ("linear", "affine", "poly", "add", "sum", "bootstrap")


class CircuitError(Exception):
    pass


@dataclass
class Circuit:
    path: Path
    doc: dict
    tensors: dict[str, np.ndarray]
    # Derived data (dense matrices, diagonals) built once per circuit.
    cache: dict = field(default_factory=dict)

    @property
    def params(self) -> dict:
        return self.doc["params"]

    @property
    def ops(self) -> list[dict]:
        return self.doc["ops"]

    @property
    def dim(self) -> int:
        return int(self.doc["packing"]["dim"])

    @property
    def slots(self) -> int:
        return int(self.doc["params"]["slots"])

    @property
    def samples_per_ciphertext(self) -> int:
        return int(self.doc["packing"]["samples_per_ciphertext"])

    @property
    def classes(self) -> int:
        return int(self.doc["model"]["classes"])

    @property
    def input_len(self) -> int:
        return int(np.prod(self.doc["input"]["shape"]))

    def tensor(self, name: str, where: str) -> np.ndarray:
        if name not in self.tensors:
            raise CircuitError(f"{self.path}: {where}: tensor `{name}` is missing")
        return self.tensors[name]


def output_len(op: dict) -> int:
    kind = op["kind"]
    return int(kind["out_len"] if kind["op"] in ("linear", "sum") else kind["len"])


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = data[8 + header_len :]
    dtypes = {"F64": "<f8", "I64": "<i8"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in dtypes:
            raise CircuitError(f"{path}: tensor `{name}` has dtype {info['dtype']}, expected F64 or I64")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(body[start:end], dtype=dtypes[info["dtype"]]).copy()
    return out


def _load_tensors(path: Path, store: dict) -> dict[str, np.ndarray]:
    storage = store.get("storage")
    if storage == "inline":
        out = {}
        for name, t in store["tensors"].items():
            dtype = {"f64": np.float64, "i64": np.int64}.get(t.get("dtype"))
            if dtype is None:
                raise CircuitError(f"{path}: tensor `{name}`: unknown dtype {t.get('dtype')!r}")
            out[name] = np.asarray(t["data"], dtype=dtype)
        return out
    if storage == "sidecar":
        side = path.parent / store["file"]
        try:
            blob = side.read_bytes()
        except OSError as e:
            raise CircuitError(f"{path}: weights sidecar {side}: {e.strerror}") from e
        if hashlib.sha256(blob).hexdigest() != store["sha256"]:
            raise CircuitError(
                f"{path}: weights sidecar {side} does not match the circuit's sha256; "
                "recompile with `pnnc compile`"
            )
        return _read_safetensors(side)
    raise CircuitError(f"{path}: `tensors.storage` must be \"inline\" or \"sidecar\"")


def load(path: str | Path) -> Circuit:
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise CircuitError(f"{path}: cannot read: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise CircuitError(f"{path}: not JSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CircuitError(f"{path}: not a pnnc circuit (field `format` is not \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise CircuitError(
            f"{path}: circuit format version {doc.get('version')}, this runner reads version "
            f"{VERSION}; recompile the model with `pnnc compile`"
        )
    for key in ("model", "params", "packing", "input", "ops", "output", "depth", "rotations", "tensors"):
        if key not in doc:
            raise CircuitError(f"{path}: field `{key}` is missing")
    circuit = Circuit(path, doc, _load_tensors(path, doc["tensors"]))
    _check(circuit)
    return circuit


def _check(c: Circuit) -> None:
    """Structural checks the runner relies on (levels are checked by running)."""
    packing = c.doc["packing"]
    if packing.get("layout") != "blocked":
        raise CircuitError(f"{c.path}: packing.layout {packing.get('layout')!r} is unknown (expected \"blocked\")")
    if c.dim < 1 or c.slots % c.dim or c.samples_per_ciphertext != c.slots // c.dim:
        raise CircuitError(
            f"{c.path}: packing: dim {c.dim} and samples_per_ciphertext {c.samples_per_ciphertext} "
            f"do not fit {c.slots} slots"
        )
    lengths = {0: c.input_len}
    for index, op in enumerate(c.ops):
        where = f"op {index}"
        if op.get("id") != index + 1:
            raise CircuitError(f"{c.path}: {where}: id is {op.get('id')}, expected {index + 1}")
        kind = op["kind"].get("op")
        if kind not in OP_KINDS:
            raise CircuitError(f"{c.path}: {where}: unknown op kind {kind!r}")
        for value in op["inputs"]:
            if value not in lengths:
                raise CircuitError(f"{c.path}: {where}: reads value {value} before it is produced")
        expected_inputs = 2 if kind == "add" else 1
        if len(op["inputs"]) != expected_inputs:
            raise CircuitError(f"{c.path}: {where}: {kind} takes {expected_inputs} input(s)")
        in_len = lengths[op["inputs"][0]]
        k = op["kind"]
        if kind == "linear":
            if k["in_len"] != in_len:
                raise CircuitError(f"{c.path}: {where}: in_len {k['in_len']} but its input has {in_len} values")
            rows = c.tensor(k["rows"], where)
            cols = c.tensor(k["cols"], where)
            vals = c.tensor(k["values"], where)
            bias = c.tensor(k["bias"], where)
            if not (len(rows) == len(cols) == len(vals)) or len(bias) != k["out_len"]:
                raise CircuitError(f"{c.path}: {where}: matrix/bias tensor lengths do not match")
            if len(rows) and (rows.min() < 0 or rows.max() >= k["out_len"] or cols.min() < 0 or cols.max() >= in_len):
                raise CircuitError(f"{c.path}: {where}: matrix index out of range")
            if not (np.isfinite(vals).all() and np.isfinite(bias).all()):
                raise CircuitError(f"{c.path}: {where}: matrix or bias holds NaN/inf")
            if max(k["in_len"], k["out_len"]) > c.dim:
                raise CircuitError(f"{c.path}: {where}: vector longer than packing.dim {c.dim}")
        elif kind == "sum":
            if k["in_len"] != in_len or k["stride"] < 1 or k["count"] < 1 or k["out_len"] < 1:
                raise CircuitError(f"{c.path}: {where}: sum needs in_len = its input's {in_len} values and positive sizes")
            if k["out_len"] - 1 + (k["count"] - 1) * k["stride"] >= in_len:
                raise CircuitError(f"{c.path}: {where}: sum reads beyond its input")
        else:
            if k["len"] != in_len or any(lengths[v] != in_len for v in op["inputs"]):
                raise CircuitError(f"{c.path}: {where}: len {k['len']} but its input has {in_len} values")
        if kind == "affine":
            for name in (k["scale"], k["shift"]):
                if len(c.tensor(name, where)) != k["len"]:
                    raise CircuitError(f"{c.path}: {where}: tensor `{name}` has the wrong length")
        if kind == "poly":
            coeffs = k["coeffs"]
            if len(coeffs) != k["degree"] + 1 or not np.isfinite(coeffs).all():
                raise CircuitError(f"{c.path}: {where}: needs {k['degree'] + 1} finite Chebyshev coefficients")
        lengths[index + 1] = output_len(op)
    if c.doc["output"] not in lengths or lengths[c.doc["output"]] < c.classes:
        raise CircuitError(f"{c.path}: `output` {c.doc['output']} is not a value with {c.classes} logits")

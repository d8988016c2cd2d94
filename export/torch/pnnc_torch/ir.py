"""Reading what `pnnc export torch` wrote: the checked model (`model.json`, pnnc's
`ir::Model` as serde writes it) and the export configuration (`config.json`: the
effective `train::run::RunConfig` and the initial polynomial coefficients).

Nothing here interprets a layer: `net.py` does. This module checks that every op is one
this package can express and names the first one that is not.
"""

import json
import os

FORMAT = "pnnc-torch-1"

# ir::OpKind variants this package builds (net.py has one class per entry).
KNOWN_OPS = (
    "Dense",
    "Conv",
    "BatchNorm",
    "Poly",
    "AvgPool",
    "GlobalAvgPool",
    "Flatten",
    "Dropout",
    "Scale",
    "Residual",
    "Concat",
)


class ExportError(Exception):
    """A problem with the export folder, its data or a checkpoint; the message names the file."""


def op_kind(op):
    """(variant name, fields) of a serde-encoded `ir::OpKind`."""
    kind = op["kind"]
    if isinstance(kind, str):
        return kind, {}
    (name, fields), = kind.items()
    return name, fields


def walk(ops):
    """Every op in execution order, residual bodies before shortcuts, a concat's
    branches in order (`Model::ops`)."""
    for op in ops:
        yield op
        name, f = op_kind(op)
        if name == "Residual":
            yield from walk(f["body"])
            yield from walk(f["shortcut"])
        elif name == "Concat":
            for branch in f["branches"]:
                yield from walk(branch)


def _where(op):
    loc = op.get("loc") or {}
    if loc.get("file"):
        return f" ({loc['file']}:{loc.get('line', 0)}:{loc.get('column', 0)})"
    return ""


def check_expressible(model, path, bases):
    """Raise naming the first layer this package cannot build."""
    for op in walk(model["net"]):
        name, f = op_kind(op)
        if name not in KNOWN_OPS:
            raise ExportError(
                f"{path}: layer `{op['name']}`{_where(op)} is a `{name}`, which pnnc_torch cannot "
                f"express\n  help: update the export with the pnnc that wrote this model "
                f"(`pnnc export torch --overwrite`)"
            )
        if name == "Poly" and f["basis"] not in bases:
            raise ExportError(
                f"{path}: layer `{op['name']}`{_where(op)} uses the polynomial basis "
                f"`{f['basis']}`, which pnnc_torch cannot express (known: {', '.join(sorted(bases))})"
                f"\n  help: update the export with the pnnc that wrote this model"
            )


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ExportError(
            f"{path}: missing\n  help: write the folder with `pnnc export torch MODEL.pnn -o DIR`"
        ) from None
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: {e}") from None


class Export:
    """The export folder: model, run configuration and initial coefficients."""

    def __init__(self, folder):
        from .poly import BASES

        self.folder = folder
        self.model_path = os.path.join(folder, "model.json")
        self.config_path = os.path.join(folder, "config.json")
        self.model = _read_json(self.model_path)
        self.config = _read_json(self.config_path)
        if self.config.get("format") != FORMAT:
            raise ExportError(
                f"{self.config_path}: format `{self.config.get('format')}` is not `{FORMAT}`"
                "\n  help: re-export with this version: `pnnc export torch --overwrite`"
            )
        check_expressible(self.model, self.model_path, BASES)
        self.run = self.config["run"]
        self.baseline_relu = bool(self.config.get("baseline_relu", False))
        self.init_coeffs = self.config["init_coeffs"]
        if self.model["source_hash"] != self.run["model_hash"]:
            raise ExportError(
                f"{self.config_path}: configuration for model hash {self.run['model_hash'][:12]}, "
                f"but model.json has {self.model['source_hash'][:12]}\n  help: re-export the folder"
            )

    @property
    def name(self):
        return self.model["name"]

    @property
    def model_hash(self):
        return self.model["source_hash"]

    @property
    def input_shape(self):
        return list(self.model["input"])

    @property
    def classes(self):
        return int(self.model["classes"])

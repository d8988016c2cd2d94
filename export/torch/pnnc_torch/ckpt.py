"""pnnc's checkpoint format (`ir/weights.rs`): safetensors, F32 tensors named
`<op name>.<param>`, metadata `pnnc.model_name`, `pnnc.model_hash`,
`pnnc.normalization` (JSON) and `meta.<key>` for free-form entries. Files written here
are read unchanged by `pnnc eval`, `calibrate`, `compile`, `simulate` and `he-run`, and
resume files (`resume.safetensors`) are shared with `pnnc train --resume`.
"""

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .ir import ExportError

META_MODEL_NAME = "pnnc.model_name"
META_MODEL_HASH = "pnnc.model_hash"
META_NORM = "pnnc.normalization"
META_USER_PREFIX = "meta."

MODEL_PREFIX = "model/"
FIRST_PREFIX = "optim.first/"
SECOND_PREFIX = "optim.second/"
RESUME_META = "resume_state"

LAST, BEST, RESUME = "last.safetensors", "best.safetensors", "resume.safetensors"


class Checkpoint:
    def __init__(self, model_name, model_hash, normalization, tensors, metadata):
        self.model_name = model_name
        self.model_hash = model_hash
        self.normalization = normalization  # the JSON text, kept verbatim
        self.tensors = tensors  # name -> float32 CPU tensor
        self.metadata = metadata  # key -> str (without the `meta.` prefix)


def load(path):
    """Read a pnnc checkpoint; errors name the file."""
    try:
        with safe_open(path, framework="pt") as f:
            info = f.metadata() or {}
            tensors = {}
            for k in f.keys():
                t = f.get_tensor(k)
                if t.dtype != torch.float32:
                    raise ExportError(f"{path}: tensor `{k}` has dtype {t.dtype}, expected F32")
                tensors[k] = t
    except FileNotFoundError:
        raise ExportError(f"{path}: no such file") from None
    except ExportError:
        raise
    except Exception as e:  # safetensors raises its own error types
        raise ExportError(f"{path}: not a valid safetensors checkpoint: {e}") from None
    for key in (META_MODEL_NAME, META_MODEL_HASH, META_NORM):
        if key not in info:
            raise ExportError(f"{path}: metadata has no `{key}` (not written by pnnc?)")
    meta = {k[len(META_USER_PREFIX):]: v for k, v in info.items() if k.startswith(META_USER_PREFIX)}
    return Checkpoint(info[META_MODEL_NAME], info[META_MODEL_HASH], info[META_NORM], tensors, meta)


def check_model(ck, path, model_name, model_hash):
    """The message of pnnc's `WeightsError::WrongModel`, for a checkpoint of another model."""
    if ck.model_hash != model_hash:
        raise ExportError(
            f"{path}: these weights were trained for model `{ck.model_name}` "
            f"(hash {ck.model_hash[:12]}), not for `{model_name}` (hash {model_hash[:12]})"
            "\n  help: pass the checkpoint of this model, or export the model these weights "
            "came from (`pnnc export torch`)"
        )


def save(path, ck):
    """Write atomically (temporary sibling + rename), like pnnc's `write_atomic`."""
    info = {
        META_MODEL_NAME: ck.model_name,
        META_MODEL_HASH: ck.model_hash,
        META_NORM: ck.normalization,
    }
    for k, v in ck.metadata.items():
        info[META_USER_PREFIX + k] = str(v)
    for name, t in ck.tensors.items():
        if not torch.isfinite(t).all():
            raise ExportError(f"{path}: tensor `{name}` contains NaN or infinite values")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in ck.tensors.items()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=info))


def write_atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomic(path, w)


def write_json(path, value):
    write_text(path, json.dumps(value, indent=2) + "\n")

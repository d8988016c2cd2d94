"""The data file of `pnnc data export`, and pnnc's train-time augmentation.

The file holds the exact normalised tensors pnnc's trainer sees (`train.x`, `train.y`,
`val.*`, `test.*`), the class names, the normalisation (kept verbatim for checkpoints),
the data spec and the seed that chose the validation split.

Augmentation (`data/augment.rs`): random crop after zero padding and horizontal flips
of images, one time mask of spectrograms. The random draws are pnnc's own (a
`StdRng` seeded by `mix_seed(seed, 2, step)`, drawn sample by sample over the global
batch), so an augmented batch equals pnnc's element for element.
"""

import json

import numpy as np
import torch
from safetensors import safe_open

from . import rng
from .ir import ExportError

FORMAT = "pnnc-data-1"


class Split:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return int(self.y.shape[0])


class DataFile:
    def __init__(self, path):
        self.path = path
        try:
            with safe_open(path, framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise ExportError(
                f"{path}: no such data file\n  help: write it with `pnnc data export SPEC -o {path}`"
            ) from None
        except Exception as e:
            raise ExportError(f"{path}: not a safetensors data file: {e}") from None
        if meta.get("pnnc.format") != FORMAT:
            raise ExportError(
                f"{path}: not written by `pnnc data export` (format `{meta.get('pnnc.format')}`)"
                "\n  help: write it with `pnnc data export SPEC -o FILE`"
            )
        self.sample_shape = json.loads(meta["pnnc.sample_shape"])
        self.class_names = json.loads(meta["pnnc.class_names"])
        self.normalization = meta["pnnc.normalization"]
        self.spec = json.loads(meta["pnnc.data_spec"])
        self.seed = int(meta["pnnc.seed"])
        self.limit_train = json.loads(meta.get("pnnc.limit_train", "null"))
        self.augment = self.spec.get("augment", {})
        self.splits = {}
        for name in ("train", "val", "test"):
            if f"{name}.x" in tensors:
                x, y = tensors[f"{name}.x"], tensors[f"{name}.y"]
                if list(x.shape[1:]) != self.sample_shape or x.shape[0] != y.shape[0]:
                    raise ExportError(
                        f"{path}: `{name}.x` has shape {list(x.shape)} for {y.shape[0]} labels "
                        f"of samples {self.sample_shape}"
                    )
                self.splits[name] = Split(x.float(), y.long())
        if "train" not in self.splits or len(self.splits["train"]) == 0:
            raise ExportError(f"{path}: no training samples")

    def check_model(self, input_shape, classes):
        if list(input_shape) != self.sample_shape:
            raise ExportError(
                f"{self.path}: samples have shape {self.sample_shape}, the model's input is "
                f"{list(input_shape)}\n  help: export the data set the model names in its "
                "`train { data: ... }`"
            )
        for name, s in self.splits.items():
            if len(s) and int(s.y.max()) >= classes:
                raise ExportError(
                    f"{self.path}: `{name}.y` has label {int(s.y.max())}, the model has "
                    f"{classes} classes"
                )

    def get(self, name):
        s = self.splits.get(name)
        return s if s is not None and len(s) else None

    @property
    def has_augment(self):
        a = self.augment
        return bool(a.get("crop_padding", 0) or a.get("hflip", False) or a.get("time_mask", 0))


def augment_draws(seed, step, count, shape, aug):
    """pnnc's per-sample draws for the `count` samples of global step `step`:
    (dy, dx, flip, mask width, mask start) arrays (zeros where not configured)."""
    out = np.zeros((5, count), dtype=np.int64)
    crop, hflip, tmask = aug.get("crop_padding", 0), aug.get("hflip", False), aug.get("time_mask", 0)
    image = len(shape) == 3 and (crop > 0 or hflip)
    masked = tmask > 0 and len(shape) >= 2
    if not (image or masked):
        return out
    words_per_sample = (4 + 2 * hflip if image else 0) + (4 if masked else 0)
    r = rng.StdRng(
        rng.mix_seed(seed, rng.STREAM_AUGMENT, step),
        chunk_blocks=(count * words_per_sample) // 16 + 2,
    )
    frames = shape[-1]
    for j in range(count):
        if image:
            out[0, j] = r.range_inclusive_u64(-crop, crop)
            out[1, j] = r.range_inclusive_u64(-crop, crop)
            out[2, j] = hflip and r.gen_bool(0.5)
        if masked:
            width = r.range_inclusive_u64(0, min(tmask, frames))
            out[3, j] = width
            out[4, j] = r.range_inclusive_u64(0, frames - width)
    return out


def apply_augment(x, draws, shape, aug):
    """Augment a batch `x` [n, *shape] (on any device) with `draws` [5, n]."""
    n = x.shape[0]
    if n == 0:
        return x
    d = torch.from_numpy(draws).to(x.device)
    crop, hflip, tmask = aug.get("crop_padding", 0), aug.get("hflip", False), aug.get("time_mask", 0)
    if len(shape) == 3 and (crop > 0 or hflip):
        c, h, w = shape
        padded = torch.nn.functional.pad(x, (crop, crop, crop, crop))
        ys = torch.arange(h, device=x.device)[None, :] + d[0][:, None] + crop  # [n, h]
        xs = torch.arange(w, device=x.device)[None, :].expand(n, w)
        xs = torch.where(d[2][:, None] == 1, w - 1 - xs, xs) + d[1][:, None] + crop  # [n, w]
        rows = torch.arange(n, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        x = padded[rows, chans, ys[:, None, :, None], xs[:, None, None, :]]
    if tmask > 0 and len(shape) >= 2:
        t = torch.arange(shape[-1], device=x.device)[None, :]
        masked = (t >= d[4][:, None]) & (t < (d[4] + d[3])[:, None])  # [n, frames]
        x = x.masked_fill(masked.reshape(n, *([1] * (len(shape) - 1)), shape[-1]), 0.0)
    return x

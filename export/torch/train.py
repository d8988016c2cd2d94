#!/usr/bin/env python3
"""Train the exported pnnc model with PyTorch (written by `pnnc export torch`; README.md).

    python train.py --data data.safetensors --out runs/NAME
    torchrun --nproc_per_node 2 train.py --data data.safetensors --out runs/NAME
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

try:
    import numpy  # noqa: F401
    import safetensors  # noqa: F401
    import torch  # noqa: F401
except ImportError as e:
    sys.exit(f"error: the Python package `{e.name}` is not installed for {sys.executable}\n"
             "help: pip install torch numpy safetensors")

from pnnc_torch.trainer import main  # noqa: E402

sys.exit(main(HERE))

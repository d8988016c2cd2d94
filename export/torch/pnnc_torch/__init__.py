"""pnnc_torch: train a checked pnnc model with PyTorch, with pnnc's semantics.

Written into every folder of `pnnc export torch`. It interprets the checked model
(`model.json`) and the effective training configuration (`config.json`) instead of
generating per-model code, so that each layer, basis and recipe rule is written once
here and tested once against pnnc (tests/torch_export.rs). Needs only torch, numpy and
safetensors.
"""

__version__ = "0.1.0"

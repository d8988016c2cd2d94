"""Training-step benchmark of the exported model (a benchmark, never a test):

    python -m pnnc_torch.bench --export DIR [--batch 128] [--steps 12] [--threads 2] \
        [--reference ../shared/bench/torch_reference.py --ref-model mnist_cnn \
         --ref-degree 8 --ref-impl horner]

Times one full step (forward, boundary loss, backward, clipping, optimizer) on random
data, as the reference does. With `--reference`, the hand-written PyTorch reference of
the same network runs in the same process, its steps alternating with ours, so that
both see the same machine load. Prints one JSON line: medians (steps after the first
two), their ratio, and the load average before and after.
"""

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from .ir import Export
from .trainer import Dist, Engine


def reference_step(path, model, degree, batch, impl, lam):
    """A step closure of torch_reference.py's model (its own recipe, as its main())."""
    spec = importlib.util.spec_from_file_location("torch_reference", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    table = {2: (12, 12), 4: (20, 15), 8: (35, 17.5), 16: (40, 20), 22: (47, 23.5)}
    bound, penalty = table.get(degree, (35, 17.5))
    torch.manual_seed(0)
    net, shape, classes = ref.build(model, lambda: ref.Poly(degree, bound, penalty, impl))
    polys = [m for m in net.modules() if isinstance(m, ref.Poly)]
    bn = {id(p) for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
          for p in m.parameters()}
    poly_ids = {id(m.coeffs) for m in polys}
    params = list(net.parameters())
    opt = torch.optim.AdamW([
        {"params": [p for p in params if id(p) in poly_ids], "lr": 1e-4},
        {"params": [p for p in params if id(p) not in poly_ids], "lr": 1e-3}])
    clip = [p for p in params if id(p) not in bn]
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        if polys:
            loss = loss + lam * sum(m.boundary for m in polys)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
        opt.step()

    return step


def our_step(export_dir, batch):
    export = Export(export_dir)
    eng = Engine(export, Dist("cpu", local_bn=False), export.run)
    x = torch.randn(batch, *export.input_shape)
    y = torch.randint(0, export.classes, (batch,))
    state = {"step": 0}

    def step():
        eng.forward_backward(x, y, batch, state["step"], 0)
        squares = eng.clipper.squares()
        eng.clipper.apply(squares)
        eng.optim.step()
        state["step"] += 1

    return step


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reference")
    ap.add_argument("--ref-model")
    ap.add_argument("--ref-degree", type=int, default=8)
    ap.add_argument("--ref-impl", default="horner")
    ap.add_argument("--lam", type=float, default=10.0)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    runs = {"pnnc_torch": our_step(a.export, a.batch)}
    if a.reference:
        runs["reference"] = reference_step(a.reference, a.ref_model, a.ref_degree, a.batch,
                                           a.ref_impl, a.lam)
    load_before = os.getloadavg()
    times = {k: [] for k in runs}
    for _ in range(a.steps):
        for name, step in runs.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[2:] if len(v) > 3 else v) for k, v in times.items()}
    out = {
        "engine": f"torch {torch.__version__}",
        "export": os.path.basename(os.path.abspath(a.export)),
        "batch": a.batch,
        "threads": a.threads,
        "steps": a.steps,
        "median_step_ms": {k: round(v * 1e3, 2) for k, v in med.items()},
        "load_avg_before": [round(v, 2) for v in load_before],
        "load_avg_after": [round(v, 2) for v in os.getloadavg()],
    }
    if "reference" in med:
        out["reference"] = {"model": a.ref_model, "degree": a.ref_degree, "impl": a.ref_impl}
        out["ratio_ours_over_reference"] = round(med["pnnc_torch"] / med["reference"], 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One training step of the exported model on a given batch, dumped for comparison
with pnnc (tests/torch_export.rs) or for debugging:

    python -m pnnc_torch.dump --export DIR --weights CK.safetensors --batch BATCH.safetensors \
        --out OUT.safetensors [--step-seed S]

BATCH holds `x` [n, *input] (normalised) and `y` [n] (int64). OUT holds, by pnnc name:
`logits.eval` (eval mode, before the step), `grad/<param>` (before clipping),
`after/<tensor>` (every checkpoint tensor after clipping and one optimizer step at the
schedule's initial rates), and metadata `loss`, `ce_loss`, `boundary_loss`,
`correct`, `grad_norm` and `act_max_abs` (JSON). Runs under torchrun too: the batch is
split among the processes, and process 0 writes OUT.

`--grads FILE` takes the step with the gradients `grad/<param>` of FILE instead of the
computed ones (the optimizer and clipping alone, from identical gradients).
"""

import argparse
import json
import math
import sys

import torch
from safetensors.torch import load_file, save_file

from . import ckpt
from .ir import Export, ExportError
from .trainer import Dist, Engine


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--step-seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--grads", help="step with these gradients (grad/<param>)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dist = Dist("cpu", local_bn=False)
    try:
        export = Export(args.export)
        eng = Engine(export, dist, export.run)
        ck = ckpt.load(args.weights)
        ckpt.check_model(ck, args.weights, export.name, export.model_hash)
        eng.net.load_tensors(ck.tensors, args.weights)
        b = load_file(args.batch)
        x, y = b["x"].float(), b["y"].long()
        n = x.shape[0]
        lo, hi = dist.slice(n)
        logits_eval = _gather(eng.predict(x[lo:hi]), dist, n)
        ce, bval, correct, act = eng.forward_backward(x[lo:hi], y[lo:hi], n, args.step_seed, lo)
        grads = {f"grad/{name}": p.grad.detach().clone() for name, p, _ in eng.trainable}
        if args.grads:
            given = load_file(args.grads)
            with torch.no_grad():
                for name, p, _ in eng.trainable:
                    p.grad.copy_(given[f"grad/{name}"].reshape(p.shape))
        squares = eng.clipper.squares()
        stats = dist.sum_(torch.stack([ce, correct.double()])).tolist()
        act = dist.max_(act).tolist()
        base = float(next(iter(export.run["optimizer"].values()))["lr"])
        eng.optim.set_rates(base, base * export.run["poly_lr_scale"])
        norm = math.sqrt(sum(s for s, c in zip(squares.tolist(), eng.clipper.chosen) if c))
        eng.clipper.apply(squares)
        eng.optim.step()
        after = {f"after/{k}": v for k, v in eng.net.tensors().items()}
        with torch.no_grad():
            eng.net.train()
        if dist.main:
            out = {"logits.eval": logits_eval}
            out.update(grads)
            out.update(after)
            meta = {
                "ce_loss": repr(stats[0] / n),
                "boundary_loss": repr(float(bval)),
                "loss": repr(stats[0] / n + float(bval)),
                "correct": str(int(stats[1])),
                "grad_norm": repr(norm),
                "act_max_abs": json.dumps(dict(zip(eng.net.sites, act))),
                "world_size": str(dist.world),
            }
            out = {k: v.detach().cpu().float().contiguous() for k, v in out.items()}
            save_file(out, args.out, metadata=meta)
        return 0
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        dist.close()


def _gather(t, dist, n):
    """The whole batch's rows of a per-process tensor (zeros-padded all-reduce)."""
    if dist.world == 1:
        return t
    lo, hi = dist.slice(n)
    full = torch.zeros((n, *t.shape[1:]), dtype=t.dtype)
    full[lo:hi] = t
    torch.distributed.all_reduce(full)
    return full


if __name__ == "__main__":
    sys.exit(main())

"""The training loop of `train/run.rs`, on PyTorch, ready for `torchrun`.

    python train.py --data data.safetensors --out runs/m            # one process
    torchrun --nproc_per_node 4 train.py --data data.safetensors --out runs/m

Each step takes the next `batch` samples of pnnc's seeded epoch order (the global
batch), splits them into contiguous slices, one per process, and runs them under
DistributedDataParallel (NCCL on GPUs, gloo on CPUs). The loss is pnnc's loss over the
global batch: cross-entropy mean over all samples, BatchNorm statistics over all
samples (all-reduced; `--local-bn` turns that off), boundary terms over all samples.
Clipping, the optimizer step and the schedule follow pnnc; the run folder is pnnc's
(metrics.jsonl / .csv, best / last / resume safetensors, config.json, summary.json).
"""

import argparse
import inspect
import json
import math
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from . import ckpt, rng
from .data import DataFile, apply_augment, augment_draws
from .ir import Export, ExportError
from .net import Pass, PnnNet
from .recipe import Boundary, Clipper, LrSchedule, Optimizer

VERSION = "0.1.0"
# pipeline/folder.rs `RUN_FILES`, plus this trainer's engine.jsonl.
RUN_FILES = ["model.pnn", "model.json", "config.json", "summary.json", "metrics.jsonl", "metrics.csv",
             ckpt.LAST, ckpt.BEST, ckpt.RESUME, "run-summary.json", "circuit.json", "engine.jsonl",
             "diverged.json"]
# Written when training diverges: what pnnc's `RunError::Diverged` holds, for a sweep's cell.
DIVERGED = "diverged.json"
EVAL_CHUNK = 1000
EXP_OVERFLOW = 88.7


class Dist:
    """This process' place in the job (torchrun's environment), or a single process."""

    def __init__(self, device_arg, local_bn):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_bn = local_bn
        self.global_batch = 0
        want = device_arg
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want == "cuda":
            if not torch.cuda.is_available():
                raise ExportError("--device cuda: no CUDA device is visible to PyTorch")
            self.device = torch.device("cuda", self.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.stats_group = None
        if self.world > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend, device_id=self.device
                                                 if self.device.type == "cuda" else None)
            # BatchNorm statistics and boundary terms use their own group, so that their
            # collectives never interleave with DDP's gradient buckets.
            self.stats_group = torch.distributed.new_group(backend=backend)

    def slice(self, n):
        """This process' contiguous part [lo, hi) of n global items."""
        return n * self.rank // self.world, n * (self.rank + 1) // self.world

    @property
    def main(self):
        return self.rank == 0

    def sum_(self, t):
        if self.world > 1:
            torch.distributed.all_reduce(t, group=self.stats_group)
        return t

    def max_(self, t):
        if self.world > 1:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.stats_group)
        return t

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier(group=self.stats_group)

    def close(self):
        if self.world > 1:
            torch.distributed.destroy_process_group()


class Diverged(Exception):
    pass


class Engine:
    """The network, its recipe and one training step; shared by the loop, `dump` and
    `bench`."""

    def __init__(self, export, dist, run, amp=None):
        """`run`: the run's configuration (`RunConfig`: the export's, or a resumed run's)."""
        self.export = export
        self.dist = dist
        self.net = PnnNet(export, run["seed"]).to(dist.device)
        self.boundary = Boundary(run["boundary"]) if run["boundary"] else None
        if export.baseline_relu:
            self.boundary = None
        self.trainable = self.net.trainable()
        self.clipper = Clipper(run["clip"], self.trainable)
        self.optim = Optimizer(run["optimizer"], self.trainable)
        self.amp = amp
        self.model = self.net
        if dist.world > 1:
            # Buffers (running statistics, fixed coefficients) are computed identically
            # in every process: no per-step broadcast.
            ddp = torch.nn.parallel.DistributedDataParallel
            params = inspect.signature(ddp).parameters
            no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in params
                       else {"broadcast_buffers": False})
            self.model = ddp(
                self.net,
                device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
                **no_sync,
            )

    def forward_backward(self, x, y, global_batch, step_seed, offset):
        """Loss and gradients of this process' slice (x, y) of a global batch. Returns
        device tensors: (ce sum over the slice, boundary value, correct, act max [sites])."""
        self.dist.global_batch = global_batch
        p = Pass(True, self.boundary.pass_spec() if self.boundary else None, step_seed,
                 self.dist, offset)
        self.optim.zero_grad()
        with torch.autocast(self.dist.device.type, dtype=torch.bfloat16,
                            enabled=self.amp == "bf16"):
            logits = self.model(x, p).float()
        ce_sum = F.cross_entropy(logits, y, reduction="sum")
        loss = ce_sum * (self.dist.world / global_batch)
        bvalue = torch.zeros((), dtype=torch.float64, device=x.device)
        if self.boundary is not None and p.terms:
            bl, bvalue = self.boundary.loss(p.terms, global_batch, self.dist)
            loss = loss + bl
        loss.backward()
        for _, t, _ in self.trainable:
            if t.grad is None:
                t.grad = torch.zeros_like(t)
        correct = (logits.detach().argmax(1) == y).sum()
        act = torch.stack([p.act_max[s].float() for s in self.net.sites]) if self.net.sites \
            else torch.zeros(0, device=x.device)
        return ce_sum.detach().double(), bvalue.to(x.device), correct, act

    def predict(self, x):
        """Eval-mode logits of a batch."""
        with torch.no_grad(), torch.autocast(self.dist.device.type, dtype=torch.bfloat16,
                                             enabled=self.amp == "bf16"):
            return self.net(x, Pass(False)).float()

    def validate(self, split, batch):
        """run.rs `validate`: (cross-entropy, accuracy, weighted boundary term or None). With
        a boundary loss, in chunks of twice the training batch as the official code's
        validation loader (each process its part of a chunk), the term of each chunk
        weighted by its size; the term is what training computes, in eval mode."""
        if self.boundary is None:
            return (*self.evaluate(split), None)
        dev = self.dist.device
        chunk = 2 * max(batch, 1)
        loss = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.float64, device=dev)
        weighted = torch.zeros((), dtype=torch.float64, device=dev)
        self.net.eval()
        for start in range(0, len(split), chunk):
            end = min(start + chunk, len(split))
            lo, hi = self.dist.slice(end - start)
            p = Pass(False, self.boundary.pass_spec(), dist=self.dist)
            if hi > lo:
                x = split.x[start + lo:start + hi].to(dev, non_blocking=True)
                y = split.y[start + lo:start + hi].to(dev, non_blocking=True)
                with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16,
                                                     enabled=self.amp == "bf16"):
                    logits = self.net(x, p).double()
                loss += F.cross_entropy(logits, y, reduction="sum")
                correct += (logits.argmax(1) == y).sum()
            else:  # nothing here, but the chunk's collectives need this process
                p.terms = self.net.empty_terms(dev)
            if p.terms:
                with torch.no_grad():
                    _, value = self.boundary.loss(p.terms, end - start, self.dist)
                weighted += value.to(dev) * (end - start)
        self.net.train()
        both = self.dist.sum_(torch.stack([loss, correct])).tolist()
        n = max(len(split), 1)
        return both[0] / n, both[1] / n, weighted.item() / n

    def overflow_site(self, x, global_batch, step_seed, offset):
        """The first site (forward order, over all processes) whose finite inputs gave a
        non-finite output in this step's forward (pnnc's `overflow_site`), or None. Run
        again only after a divergence, so that healthy steps pay nothing for it."""
        self.dist.global_batch = global_batch
        p = Pass(True, self.boundary.pass_spec() if self.boundary else None, step_seed,
                 self.dist, offset)
        p.overflow = {}
        with torch.no_grad():
            self.net(x, p)
        flags = torch.tensor([float(p.overflow.get(s, False)) for s in self.net.sites],
                             device=x.device)
        flags = self.dist.max_(flags).tolist()
        return next((s for s, f in zip(self.net.sites, flags) if f), None)

    def evaluate(self, split):
        """(mean cross-entropy, accuracy) over a split, shared among processes."""
        lo, hi = self.dist.slice(len(split))
        loss = torch.zeros((), dtype=torch.float64, device=self.dist.device)
        correct = torch.zeros((), dtype=torch.float64, device=self.dist.device)
        self.net.eval()
        for s in range(lo, hi, EVAL_CHUNK):
            e = min(s + EVAL_CHUNK, hi)
            x = split.x[s:e].to(self.dist.device, non_blocking=True)
            y = split.y[s:e].to(self.dist.device, non_blocking=True)
            logits = self.predict(x).double()
            loss += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(1) == y).sum()
        self.net.train()
        both = self.dist.sum_(torch.stack([loss, correct])).tolist()
        n = max(len(split), 1)
        return both[0] / n, both[1] / n


def monitored_loss(row):
    """run.rs `monitored_loss`: what the plateau schedule watches, validation cross-entropy
    plus the weighted boundary term (the official `val_loss_epoch`), else the training loss."""
    if row["val_loss"] is None:
        return row["train_loss"]
    return row["val_loss"] + (row.get("val_boundary_loss") or 0.0)


def escaped_site(acts, ranges):
    """run.rs `worst_site`: the site whose max |x| is furthest outside its range."""
    best = None
    for name, v in acts:
        ratio = math.inf if not math.isfinite(v) else v / ranges.get(name, 1.0)
        if best is None or ratio > best[0]:
            best = (ratio, name, v, ranges.get(name))
    return None if best is None else best[1:]


def _fmt(v, f32=False):
    """Rust's `{}` of a float: the shortest digits that read back, never an exponent."""
    if isinstance(v, (float, np.floating)) and math.isfinite(v):
        v = np.float32(v) if f32 else float(v)
        return np.format_float_positional(v, unique=True, trim="-")
    return str(v)


def divergence_help(step, worst, boundary, poly_overflowed=False):
    """run.rs `divergence_help`; with `poly_overflowed`, `worst` is the site whose
    polynomial overflowed."""
    keep = "; the last good checkpoint is kept"
    overflow = None
    if worst is not None and poly_overflowed:
        name, x, _ = worst
        overflow = (
            f"the polynomial at `{name}` overflows float32 at |x| = {_rust_float(x, f32=True)}: "
            "in `basis: raw_power` x^degree overflows once |x| > f32::MAX^(1/degree) (56.4 at "
            "degree 22); use `basis: chebyshev` (evaluated on x / B), keep the boundary loss on, "
            "or lower the degree (`pnnc explain raw_power`)"
        )
    elif worst is not None and boundary is not None and boundary["kind"] == "Exp":
        name, x, b = worst
        p = boundary["penalty"] if boundary["penalty"] is not None else (b or 0.0)
        if x - p > EXP_OVERFLOW:
            overflow = (
                f"the exp boundary loss overflows float32 at `{name}`: exp(|x| - P) = "
                f"exp({_fmt(x, f32=True)} - {_fmt(p)}) exceeds exp({EXP_OVERFLOW}); use "
                "`boundary: exp(..., cap: 10)` (linear beyond an excess of 10: cannot overflow) "
                "or `boundary: l2(...)`, or a larger fit range B and penalty P"
            )
    if step == 0 and overflow:
        return f"at the initial weights, before any update: {overflow}{keep}"
    if step == 0:
        return ("at the initial weights, before any update: use a larger fit range B or a "
                f"lower polynomial degree{keep}")
    if overflow:
        return f"{overflow}; or lower the learning rate{keep}"
    return ("lower the learning rate, raise the boundary-loss weight or the fit range B, "
            f"or keep gradient clipping on{keep}")


class Trainer:
    def __init__(self, args, export_dir):
        self.args = args
        self.export = Export(export_dir)
        self.data = DataFile(args.data)
        self.data.check_model(self.export.input_shape, self.export.classes)
        self.out = args.out
        self.run = self.settings(args)
        run = self.run
        self.dist = Dist(args.device, args.local_bn)
        if args.threads:
            torch.set_num_threads(args.threads)
        if self.dist.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = args.tf32
            torch.backends.cudnn.allow_tf32 = args.tf32
        self.engine = Engine(self.export, self.dist, run, amp=args.amp)
        self.say = (lambda *a: None) if (args.quiet or not self.dist.main) else self._print
        self.train = self.data.get("train")
        self.val = self.data.get("val")
        self.test = self.data.get("test")
        if args.eval_limit is not None:
            from .data import Split

            cut = lambda s: None if s is None else Split(s.x[:args.eval_limit],  # noqa: E731
                                                         s.y[:args.eval_limit])
            self.val, self.test = cut(self.val), cut(self.test)
        # The whole data set on the device when it fits comfortably (GPU).
        if self.dist.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.dist.device)
            size = sum(s.x.numel() * 4 for s in self.data.splits.values())
            if size < free // 4:
                for s in self.data.splits.values():
                    s.x, s.y = s.x.to(self.dist.device), s.y.to(self.dist.device)
        if self.data.seed != run["seed"] and self.dist.main:
            print(
                f"warning: {args.data}: the validation split was drawn with seed {self.data.seed}, "
                f"this run uses seed {run['seed']}; pnnc would hold out other samples\n"
                f"  help: `pnnc data export ... --seed {run['seed']}` for pnnc's exact split",
                file=sys.stderr,
            )

    def settings(self, args):
        """The run's configuration: the export's with --epochs/--batch/--seed, or, when
        resuming, the run's own (config.json), where only --epochs may change (as pnnc)."""
        if not args.resume:
            run = dict(self.export.run)
            for key in ("epochs", "batch", "seed"):
                if getattr(args, key) is not None:
                    run[key] = getattr(args, key)
            run["batch"] = max(1, int(run["batch"]))
            return run
        path = os.path.join(self.out, "config.json")
        try:
            with open(path, encoding="utf-8") as f:
                recorded = json.load(f)
            run = dict(recorded["config"])
        except (OSError, ValueError, KeyError) as e:
            raise ExportError(f"{path}: not a run configuration ({e})\n  help: --resume needs "
                              "the run's config.json; start a new run instead") from None
        if recorded.get("model_hash") != self.export.model_hash:
            raise ExportError(
                f"{path}: cannot resume: the run was for model `{recorded.get('model_name')}` "
                f"(hash {str(recorded.get('model_hash'))[:12]}), not this export (hash "
                f"{self.export.model_hash[:12]})\n  help: start a fresh run without --resume, "
                "or pick another --out")
        conflicts = [f"--{k} {getattr(args, k)}: the run's {k} is {run[k]}"
                     for k in ("batch", "seed")
                     if getattr(args, k) is not None and getattr(args, k) != run[k]]
        if conflicts:
            raise ExportError(
                "a resumed run keeps the settings it was started with:\n  "
                + "\n  ".join(conflicts)
                + "\n  help: drop these flags (the run's config.json holds its settings), or "
                "start a new run in another --out")
        if args.epochs is not None:
            run["epochs"] = args.epochs
        return run

    def prepare_folder(self):
        """pipeline/folder.rs `prepare`: never write over another run unless asked."""
        out = self.out
        if os.path.exists(out) and not os.path.isdir(out):
            raise ExportError(f"{out}: not a folder\n  help: pass a folder for the run with --out")
        found = [f for f in RUN_FILES if os.path.exists(os.path.join(out, f))]
        if self.args.resume and not os.path.isfile(os.path.join(out, ckpt.RESUME)):
            raise ExportError(f"{out}: no run to resume (no {ckpt.RESUME})\n  help: start "
                              "the run without --resume, or pass its --out folder")
        if not self.args.resume and found and not self.args.overwrite:
            what = ("pass --resume to continue it, --overwrite to replace it, or another --out"
                    if ckpt.RESUME in found else "pass --overwrite to replace it, or another --out")
            raise ExportError(f"{out}: this folder already holds a run ({', '.join(found)})"
                              f"\n  help: {what}")
        # Every process has looked at the folder before the first one changes it.
        self.dist.barrier()
        if self.dist.main:
            if self.args.overwrite and not self.args.resume:
                for f in found:
                    os.remove(os.path.join(out, f))
            if os.path.exists(os.path.join(out, DIVERGED)):  # of the run being resumed
                os.remove(os.path.join(out, DIVERGED))
            os.makedirs(out, exist_ok=True)
            for name in os.listdir(out):  # temporary files of a killed write
                if any(name.startswith(f".{f}.tmp") for f in RUN_FILES):
                    os.remove(os.path.join(out, name))
        self.dist.barrier()

    def _print(self, *a):
        print(*a, file=sys.stderr if not self.args.json else sys.stdout, flush=True)

    # --- run folder -------------------------------------------------------------------

    def checkpoint(self, epoch):
        meta = dict(self.run.get("metadata", {}))
        meta["epoch"] = str(epoch)
        meta["trainer"] = f"pnnc_torch {VERSION} (torch {torch.__version__})"
        return ckpt.Checkpoint(self.export.name, self.export.model_hash, self.data.normalization,
                               self.engine.net.tensors(), meta)

    def save_resume(self, state):
        ck = self.checkpoint(state["epochs_done"])
        tensors = {ckpt.MODEL_PREFIX + k: v for k, v in ck.tensors.items()}
        for (name, _, _), (first, second, _) in zip(self.engine.trainable,
                                                    self.engine.optim.export_state()):
            if first is not None:
                tensors[ckpt.FIRST_PREFIX + name] = first.detach().cpu().reshape(-1)
            if second is not None:
                tensors[ckpt.SECOND_PREFIX + name] = second.detach().cpu().reshape(-1)
        ck.tensors = tensors
        ck.metadata[ckpt.RESUME_META] = json.dumps(state)
        ckpt.save(os.path.join(self.out, ckpt.RESUME), ck)

    def load_resume(self):
        path = os.path.join(self.out, ckpt.RESUME)
        ck = ckpt.load(path)
        if ck.model_hash != self.export.model_hash:
            raise ExportError(
                f"{path}: cannot resume: the run was for model `{ck.model_name}` (hash "
                f"{ck.model_hash[:12]}), not this export (hash {self.export.model_hash[:12]})"
                "\n  help: start a fresh run without --resume, or pick another --out"
            )
        state = json.loads(ck.metadata[ckpt.RESUME_META])
        model = {k[len(ckpt.MODEL_PREFIX):]: v for k, v in ck.tensors.items()
                 if k.startswith(ckpt.MODEL_PREFIX)}
        self.engine.net.load_tensors(model, path)
        states = []
        for (name, p, _), steps in zip(self.engine.trainable, state["steps_per_param"]):
            first = ck.tensors.get(ckpt.FIRST_PREFIX + name)
            second = ck.tensors.get(ckpt.SECOND_PREFIX + name)
            shape = lambda t: None if t is None else t.reshape(p.shape)  # noqa: E731
            states.append((shape(first), shape(second), steps))
        self.engine.optim.import_state(states)
        if state["epochs_done"] > self.run["epochs"]:
            raise ExportError(
                f"{path}: cannot resume: the run already has {state['epochs_done']} epochs, "
                f"more than --epochs {self.run['epochs']}"
            )
        return state

    def write_metrics(self, rows):
        jsonl = "".join(json.dumps(r) + "\n" for r in rows)
        ckpt.write_text(os.path.join(self.out, "metrics.jsonl"), jsonl)
        ckpt.write_text(os.path.join(self.out, "metrics.csv"), metrics_csv(rows))

    def write_engine_row(self, row, state):
        """engine.jsonl: speed and memory per epoch (not part of pnnc's metrics schema)."""
        steps = state["steps"] - self.steps_before_epoch
        entry = {
            "epoch": row["epoch"],
            "steps": steps,
            "seconds": row["seconds"],
            "train_seconds": self.train_seconds,
            "steps_per_s": steps / self.train_seconds if self.train_seconds else None,
            "samples_per_s": self.samples / self.train_seconds if self.train_seconds else None,
            "world_size": self.dist.world,
            "device": str(self.dist.device),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        if self.dist.device.type == "cuda":
            entry["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated(self.dist.device) / 2**30
            entry["gpu"] = torch.cuda.get_device_name(self.dist.device)
        path = os.path.join(self.out, "engine.jsonl")
        old = ""
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = "".join(line for line in f if json.loads(line)["epoch"] < row["epoch"])
        ckpt.write_text(path, old + json.dumps(entry) + "\n")

    def read_metrics(self):
        path = os.path.join(self.out, "metrics.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_config(self):
        cfg = {
            "command": [sys.executable] + sys.argv,
            "model_file": self.export.config.get("model_file", ""),
            "method": self.run.get("metadata", {}).get("method", "model"),
            "engine": f"pnnc_torch {VERSION} (torch {torch.__version__})",
            "export": os.path.abspath(self.export.folder),
            "data_file": os.path.abspath(self.args.data),
            "model_name": self.export.name,
            "model_hash": self.export.model_hash,
            "baseline": "relu" if self.export.baseline_relu else None,
            "he_compatible": not self.export.baseline_relu,
            "threads": torch.get_num_threads(),
            "world_size": self.dist.world,
            "device": str(self.dist.device),
            "amp": self.args.amp,
            "tf32": self.args.tf32,
            "local_bn": self.args.local_bn,
            "limit_train": self.data.limit_train,
            "config": self.run,
        }
        ckpt.write_json(os.path.join(self.out, "config.json"), cfg)
        # The checked model as trained (pipeline/folder.rs `MODEL_JSON`): `pnnc eval
        # RUN/model.json` reads it, and its hash is the checkpoints'.
        with open(self.export.model_path, encoding="utf-8") as f:
            ckpt.write_text(os.path.join(self.out, "model.json"), f.read())

    # --- the loop --------------------------------------------------------------------

    def fit(self):
        run = self.run
        self.prepare_folder()
        base_lr = float(next(iter(self.export.run["optimizer"].values()))["lr"])
        state = {
            "epochs_done": 0, "steps": 0,
            "schedule": LrSchedule(run["schedule"], [base_lr, base_lr * run["poly_lr_scale"]],
                                   run["epochs"]).to_json(),
            "best_val_acc": None, "best_epoch": None,
            "steps_per_param": [0] * len(self.engine.trainable), "seconds": 0.0,
        }
        rows = []
        if self.args.resume:
            state = self.load_resume()
            rows = [r for r in self.read_metrics() if r["epoch"] <= state["epochs_done"]]
        schedule = LrSchedule.from_json(state["schedule"])
        schedule.set_total_epochs(run["epochs"])
        if self.dist.main and not self.args.resume:
            self.write_config()
        started = time.monotonic()
        stopped = None
        last_val_acc = rows[-1]["val_acc"] if rows else None
        for epoch in range(state["epochs_done"], run["epochs"]):
            if self.args.max_steps and state["steps"] >= self.args.max_steps:
                stopped = f"--max-steps {self.args.max_steps} reached"
                break
            budget = self.args.time_budget
            if budget and rows and time.monotonic() - started + rows[-1]["seconds"] > budget:
                stopped = f"time budget of {budget:g} s reached"
                break
            row = self.epoch(epoch, schedule, state)
            last_val_acc = row["val_acc"]
            schedule.step(monitored_loss(row))
            state["schedule"] = schedule.to_json()
            state["epochs_done"] = epoch + 1
            state["seconds"] += row["seconds"]
            state["steps_per_param"] = [state["steps"]] * len(self.engine.trainable)
            score = row["val_acc"] if row["val_acc"] is not None else row["train_acc"]
            rows.append(row)
            if self.dist.main:
                ck = self.checkpoint(epoch + 1)
                if state["best_val_acc"] is None or score > state["best_val_acc"]:
                    ckpt.save(os.path.join(self.out, ckpt.BEST), ck)
                ckpt.save(os.path.join(self.out, ckpt.LAST), ck)
            if state["best_val_acc"] is None or score > state["best_val_acc"]:
                state["best_val_acc"], state["best_epoch"] = score, epoch + 1
            if self.dist.main:
                self.save_resume(state)
                self.write_metrics(rows)
                self.write_engine_row(row, state)
            self.report_epoch(row)
        test = self.engine.evaluate(self.test) if self.test is not None else None
        best_test = self.evaluate_best(test, state)
        summary = {
            "model_name": self.export.name,
            "he_compatible": not self.export.baseline_relu,
            "baseline": "relu" if self.export.baseline_relu else None,
            "train_samples": len(self.train),
            "val_samples": len(self.val) if self.val else 0,
            "test_samples": len(self.test) if self.test else 0,
            "epochs": state["epochs_done"],
            "steps": state["steps"],
            "best_epoch": state["best_epoch"],
            "best_val_acc": state["best_val_acc"],
            "final_val_acc": last_val_acc,
            "test_acc": test[1] if test else None,
            "test_loss": test[0] if test else None,
            "best_test_acc": best_test[1] if best_test else None,
            "best_test_loss": best_test[0] if best_test else None,
            "seconds": state["seconds"],
            "engine": f"pnnc_torch {VERSION} (torch {torch.__version__})",
            "world_size": self.dist.world,
            "device": str(self.dist.device),
            "stopped": stopped,
        }
        if self.dist.main:
            ckpt.write_json(os.path.join(self.out, "summary.json"), summary)
            if self.args.json:
                print(json.dumps({"event": "summary", "summary": summary, "out": self.out}),
                      flush=True)
            elif not self.args.quiet:
                pct = lambda a: "-" if a is None else f"{100 * a:.2f}%"  # noqa: E731
                print(f"done: {summary['epochs']} epochs in {summary['seconds']:.1f}s, best val acc "
                      f"{pct(summary['best_val_acc'])} (epoch {summary['best_epoch']}), test acc "
                      f"{pct(summary['test_acc'])}{'; ' + stopped if stopped else ''}\n"
                      f"  run folder: {self.out}", file=sys.stderr)
        return summary

    def evaluate_best(self, final_scores, state):
        """run.rs `evaluate_best`: (loss, accuracy) of best.safetensors on the test split
        (what the official code reports); the network keeps its final weights."""
        if final_scores is None or state["best_epoch"] is None:
            return None
        if state["best_epoch"] == state["epochs_done"]:
            return final_scores
        self.dist.barrier()  # rank 0 wrote best.safetensors
        path = os.path.join(self.out, ckpt.BEST)
        best = ckpt.load(path)
        net = self.engine.net
        final = net.tensors()
        net.load_tensors(best.tensors, path)
        scores = self.engine.evaluate(self.test)
        net.load_tensors(final, path)
        return scores

    def report_epoch(self, row):
        if self.args.json and self.dist.main:
            print(json.dumps({"event": "epoch", "metrics": row}), flush=True)
        else:
            val = "" if row["val_acc"] is None else f" val acc {100 * row['val_acc']:.2f}%"
            self.say(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
                     f"{100 * row['train_acc']:.2f}%{val} boundary {row['boundary_loss']:.4f} "
                     f"({row['seconds']:.1f}s)")

    def epoch(self, epoch, schedule, state):
        run, dist, eng = self.run, self.dist, self.engine
        t0 = time.monotonic()
        self.steps_before_epoch, self.samples = state["steps"], 0
        train = self.train
        order = rng.epoch_order(len(train), run["seed"], epoch)
        lrs = (schedule.lr(0), schedule.lr(1))
        eng.optim.set_rates(*lrs)
        sites = eng.net.sites
        sums = {"loss": 0.0, "ce": 0.0, "boundary": 0.0, "correct": 0, "seen": 0, "batches": 0,
                "grad_norm": 0.0, "grad_norm_max": 0.0}
        act_epoch = np.zeros(len(sites), dtype=np.float32)
        batch = run["batch"]
        shape = self.data.sample_shape
        for b, start in enumerate(range(0, len(order), batch)):
            idx = order[start:start + batch]
            n = len(idx)
            step = state["steps"]
            lo, hi = dist.slice(n)
            local = torch.tensor(idx[lo:hi], dtype=torch.long)
            x = train.x[local.to(train.x.device)].to(dist.device, non_blocking=True)
            y = train.y[local.to(train.y.device)].to(dist.device, non_blocking=True)
            if self.data.has_augment:
                draws = augment_draws(run["seed"], step, n, shape, self.data.augment)
                x = apply_augment(x, draws[:, lo:hi], shape, self.data.augment)
            seed = rng.mix_seed(run["seed"], rng.STREAM_STEP, step)
            ce, bval, correct, act = eng.forward_backward(x, y, n, seed, lo)
            squares = eng.clipper.squares()
            stats = dist.sum_(torch.stack([ce, correct.double()]))
            act = dist.max_(act)
            # One read-back per step: the loss, the per-site max |x| and the squared norms.
            host = torch.cat([stats, bval.reshape(1), act.double(), squares]).tolist()
            act_h, norms = host[3:3 + len(sites)], host[3 + len(sites):]
            ce_mean, correct_n, bv = host[0] / n, int(host[1]), host[2]
            loss = ce_mean + bv
            bad = [i for i, s in enumerate(norms) if not math.isfinite(s)]
            if not math.isfinite(loss) or bad:
                what = (f"the loss is {_rust_float(loss)}" if not math.isfinite(loss) else
                        f"the gradient of `{eng.trainable[bad[0]][0]}` is not finite")
                overflow = eng.overflow_site(x, n, seed, lo)
                raise self.diverged(step, epoch, b, what, list(zip(sites, act_h)), overflow)
            eng.clipper.apply(squares)
            eng.optim.step()
            state["steps"] += 1
            gn = math.sqrt(sum(s for s, c in zip(norms, eng.clipper.chosen) if c))
            sums["loss"] += loss
            sums["ce"] += ce_mean
            sums["boundary"] += bv
            sums["correct"] += correct_n
            sums["seen"] += n
            sums["batches"] += 1
            sums["grad_norm"] += gn
            sums["grad_norm_max"] = max(sums["grad_norm_max"], gn)
            act_epoch = np.maximum(act_epoch, np.asarray(act_h, dtype=np.float32))
            if self.args.max_steps and state["steps"] >= self.args.max_steps:
                break
        if dist.device.type == "cuda":
            torch.cuda.synchronize(dist.device)
        self.train_seconds, self.samples = time.monotonic() - t0, sums["seen"]
        val = eng.validate(self.val, batch) if self.val is not None else None
        nb = max(sums["batches"], 1)
        return {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / nb,
            "train_ce_loss": sums["ce"] / nb,
            "train_acc": sums["correct"] / max(sums["seen"], 1),
            "boundary_loss": sums["boundary"] / nb,
            "val_loss": val[0] if val else None,
            "val_acc": val[1] if val else None,
            "val_boundary_loss": val[2] if val else None,
            "grad_norm": sums["grad_norm"] / nb,
            "grad_norm_max": sums["grad_norm_max"],
            "lr": lrs[0],
            "poly_lr": lrs[1],
            "act_max_abs": {s: float(v) for s, v in sorted(zip(sites, act_epoch))},
            "seconds": time.monotonic() - t0,
        }

    def diverged(self, step, epoch, batch, what, acts, overflow=None):
        ranges = self.run["site_ranges"]
        worst = escaped_site(acts, ranges)
        where = ""
        if overflow is not None:
            v = dict(acts).get(overflow, math.nan)
            worst = (overflow, v, ranges.get(overflow))
            rng_txt = "" if worst[2] is None else f", fit range B = {_fmt(worst[2])}"
            where = (f"; the polynomial at poly site `{overflow}` overflowed: finite inputs "
                     f"(max |x| = {_rust_float(v, f32=True)}{rng_txt}) gave a non-finite output")
        elif worst is not None:
            name, v, b = worst
            rng_txt = "" if b is None else f", fit range B = {_fmt(b)}"
            where = (f"; activations escaped at poly site `{name}` "
                     f"(max |x| = {_rust_float(v, f32=True)}{rng_txt})")
        last = os.path.join(self.out, ckpt.LAST)
        help_ = divergence_help(step, worst, self.run["boundary"], overflow is not None)
        if self.dist.main:
            ckpt.write_json(os.path.join(self.out, DIVERGED), {
                "step": step, "epoch": epoch + 1, "batch": batch, "what": what + where,
                "help": help_, "site": None if worst is None else worst[0],
                # Rust's spelling, so that inf and NaN survive JSON.
                "site_max_abs": None if worst is None else _rust_float(worst[1], f32=True),
                "train_samples": len(self.train),
            })
        return Diverged(
            f"training diverged at step {step} (epoch {epoch + 1}, batch {batch}): {what}{where}\n"
            f"  help: {help_}\n"
            f"  (last good checkpoint: {last})"
        )


def _rust_float(v, f32=False):
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return _fmt(v, f32)


# Columns added later come last (metrics.rs), so that older readers keep their positions.
FIXED_COLUMNS = ["epoch", "train_loss", "train_ce_loss", "train_acc", "boundary_loss", "val_loss",
                 "val_acc", "grad_norm", "grad_norm_max", "lr", "poly_lr", "seconds",
                 "val_boundary_loss"]


def metrics_csv(rows):
    """train/metrics.rs `to_csv`."""
    sites = list(rows[0]["act_max_abs"].keys()) if rows else []
    sites.sort()
    out = ",".join(FIXED_COLUMNS + [f"act_max_abs.{s}" for s in sites]) + "\n"
    for r in rows:
        f = [(f"{r[c]:.3f}" if c == "seconds" else _fmt(r[c])) if r.get(c) is not None else ""
             for c in FIXED_COLUMNS]
        f += [_fmt(r["act_max_abs"][s], f32=True) if s in r["act_max_abs"] else "" for s in sites]
        out += ",".join(f) + "\n"
    return out


def parser():
    ap = argparse.ArgumentParser(
        description="Train this exported pnnc model with PyTorch (one process, or under torchrun).")
    ap.add_argument("--data", required=True, help="data file of `pnnc data export`")
    ap.add_argument("--out", required=True, help="run folder (pnnc's layout)")
    ap.add_argument("--epochs", type=int, help="default: the model's train { epochs }")
    ap.add_argument("--batch", type=int, help="global batch size (default: the model's)")
    ap.add_argument("--seed", type=int, help="default: the model's train { seed }")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its own settings (--epochs may change)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run files of an earlier run in --out")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--threads", type=int, help="CPU threads per process (torch.set_num_threads)")
    ap.add_argument("--amp", choices=["bf16"], default=None,
                    help="mixed precision (off by default, so that results match pnnc)")
    ap.add_argument("--tf32", action="store_true",
                    help="allow TF32 matrix products on GPUs (off by default)")
    ap.add_argument("--local-bn", action="store_true",
                    help="BatchNorm statistics per process, not over the global batch")
    ap.add_argument("--time-budget", type=float,
                    help="stop before an epoch that would end past this many seconds")
    ap.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    ap.add_argument("--eval-limit", type=int,
                    help="evaluate on the first N validation and test samples only (smoke tests)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quiet", action="store_true")
    g.add_argument("--json", action="store_true", help="JSON lines on stdout")
    return ap


def main(export_dir, argv=None):
    args = parser().parse_args(argv)
    trainer = None
    try:
        trainer = Trainer(args, export_dir)
        trainer.fit()
        return 0
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: the completed epochs are saved in {args.out}\n"
              "  help: continue with --resume", file=sys.stderr)
        return 130
    finally:
        if trainer is not None:
            trainer.dist.close()

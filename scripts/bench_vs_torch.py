#!/usr/bin/env python3
"""Training step of pnnc against the PyTorch reference, alternating the two engines.

For each benchmark network and thread count, runs ROUNDS rounds of `pnnc bench` and
`torch_reference.py --impl horner` back to back (the order flips every round, so neither engine
always runs on a cache or a machine the other just warmed or loaded), takes the median of each
engine's per-run medians and prints one markdown table of the ratios pnnc / PyTorch, with each
engine's peak memory and the machine's load (/proc/loadavg) before and after every run.

    scripts/bench_vs_torch.py                      # every row, 1 and 2 threads, 3 rounds
    scripts/bench_vs_torch.py --rows har-mlp-d2 --threads 1 --rounds 5

Environment (each also a flag):
    PNNC_TORCH_PYTHON     python with torch and numpy (default: python3)
    PNNC_TORCH_REFERENCE  torch_reference.py (default: ../shared/bench/torch_reference.py
                          next to the repository)
    PNNC_BIN              the pnnc binary (default: target/release/pnnc)

Only the standard library; a benchmark, never a test.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, pnnc --model, reference --model, degree, batch
ROWS = [
    ("mnist-cnn-d8", "mnist-cnn", "mnist_cnn", 8, 128),
    ("mnist-cnn-d22", "mnist-cnn", "mnist_cnn", 22, 128),
    ("mnist-cnn-d2", "mnist-cnn", "mnist_cnn", 2, 128),
    ("har-mlp-d2", "har-mlp", "har_mlp", 2, 800),
    ("resnet20-d8", "resnet20", "resnet20", 8, 128),
]

# Timed steps per run: enough for a stable median, few for the slow network.
STEPS = {"resnet20-d8": 6}
DEFAULT_STEPS = 12


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return float("nan")


def run_json(cmd):
    """Runs one benchmark process; returns its JSON line and the load before and after."""
    before = loadavg()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    after = loadavg()
    if proc.returncode != 0:
        sys.exit(f"error: `{shlex.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"error: `{shlex.join(cmd)}` printed no JSON line:\n{proc.stdout}{proc.stderr}")
    out = json.loads(lines[-1])
    out["load"] = (before, after)
    return out


def commands(args, row, threads):
    _, pnnc_model, torch_model, degree, batch = row
    steps = args.steps or STEPS.get(row[0], DEFAULT_STEPS)
    pnnc = [args.pnnc, "bench", "--model", pnnc_model, "--degree", str(degree),
            "--batch", str(batch), "--threads", str(threads), "--steps", str(steps)]
    # The reference times every step and takes the median after its first 2: give it
    # the same 2 warm-up steps that pnnc runs before its timed ones.
    torch = [args.python, args.reference, "--model", torch_model, "--degree", str(degree),
             "--batch", str(batch), "--threads", str(threads), "--steps", str(steps + 2),
             "--impl", "horner"]
    return pnnc, torch


def measure(args, row, threads):
    pnnc_cmd, torch_cmd = commands(args, row, threads)
    runs = {"pnnc": [], "torch": []}
    for r in range(args.rounds):
        order = [("pnnc", pnnc_cmd), ("torch", torch_cmd)]
        if r % 2 == 1:
            order.reverse()
        for engine, cmd in order:
            out = run_json(cmd)
            runs[engine].append(out)
            print(f"  {row[0]} t{threads} round {r + 1} {engine}: {out['median_step_ms']} ms, "
                  f"peak {out.get('peak_rss_mb')} MB, load {out['load'][0]:.2f}->{out['load'][1]:.2f}",
                  file=sys.stderr, flush=True)
    return runs


def fmt_ms(v):
    return f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def table_row(row, threads, runs):
    med = {e: statistics.median(o["median_step_ms"] for o in runs[e]) for e in runs}
    peak = {e: max(o.get("peak_rss_mb") or 0 for o in runs[e]) for e in runs}
    loads = [x for e in runs for o in runs[e] for x in o["load"]]
    per_round = [p["median_step_ms"] / t["median_step_ms"] for p, t in zip(runs["pnnc"], runs["torch"])]
    cells = [
        row[0], str(row[4]), str(threads),
        ", ".join(fmt_ms(o["median_step_ms"]) for o in runs["pnnc"]),
        ", ".join(fmt_ms(o["median_step_ms"]) for o in runs["torch"]),
        f"{fmt_ms(med['pnnc'])} / {fmt_ms(med['torch'])} ms = **{med['pnnc'] / med['torch']:.2f}x** "
        f"({', '.join(f'{x:.2f}' for x in per_round)})",
        f"{peak['pnnc']:.0f} / {peak['torch']:.0f} MB",
        f"{min(loads):.1f}-{max(loads):.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pnnc", default=os.environ.get("PNNC_BIN", os.path.join(REPO, "target/release/pnnc")))
    ap.add_argument("--python", default=os.environ.get("PNNC_TORCH_PYTHON", "python3"))
    ap.add_argument("--reference", default=os.environ.get(
        "PNNC_TORCH_REFERENCE", os.path.join(REPO, "..", "shared", "bench", "torch_reference.py")))
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS),
                    help="comma-separated: " + ", ".join(r[0] for r in ROWS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None,
                    help=f"timed steps per run (default {DEFAULT_STEPS}, ResNet-20 {STEPS['resnet20-d8']})")
    args = ap.parse_args()

    names = {r[0]: r for r in ROWS}
    rows = []
    for name in args.rows.split(","):
        if name not in names:
            sys.exit(f"error: --rows: unknown row `{name}`\n  help: use some of {', '.join(names)}")
        rows.append(names[name])
    try:
        thread_counts = [int(t) for t in args.threads.split(",")]
    except ValueError:
        sys.exit(f"error: --threads `{args.threads}`: expected numbers like 1,2")
    if args.rounds < 1 or any(t < 1 for t in thread_counts):
        sys.exit("error: --rounds and --threads must be at least 1")
    if not os.path.isfile(args.pnnc):
        sys.exit(f"error: pnnc binary {args.pnnc} not found\n  help: cargo build --release, or pass --pnnc")
    if not os.path.isfile(args.reference):
        sys.exit(f"error: reference {args.reference} not found\n"
                 "  help: pass --reference or set PNNC_TORCH_REFERENCE to shared/bench/torch_reference.py")

    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_start = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "?"
    lines = []
    for row in rows:
        for threads in thread_counts:
            lines.append(table_row(row, threads, measure(args, row, threads)))
    load_end = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else "?"
    end = time.strftime("%H:%M UTC", time.gmtime())

    print(f"{start} - {end}, {args.rounds} rounds alternating pnnc and PyTorch (--impl horner), "
          f"{os.cpu_count()} CPUs; /proc/loadavg before: {load_start}; after: {load_end}")
    print()
    print("| network | batch | threads | pnnc runs (ms) | PyTorch runs (ms) | medians pnnc / PyTorch (ratio per round) "
          "| peak memory pnnc / PyTorch | load during runs |")
    print("|---|---|---|---|---|---|---|---|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# The paper's headline configuration through the exported PyTorch trainer: ResNet-18 on
# CIFAR-10 at degree 8 (B = 35, P = 17.5) with the paper's recipe (std-models/resnet18.pnn:
# exp boundary loss, clipping except BatchNorm, AdamW 1e-3 with poly rate 0.1x, plateau
# schedule, crop 4 + flip), for a fixed wall-clock budget. Writes OUT/results.md and
# OUT/results.json (steps/s, memory, accuracy per epoch, the commands), the run folder
# OUT/run (pnnc's layout) and OUT/train.log.
#
#   export/torch/gpu_paper_run.sh [OUT]                     # default OUT: gpu-paper-run
#
# Run from the repository root. Environment (all optional):
#   BUDGET=480      training seconds; the trainer stops before an epoch that would end later
#   EPOCHS=30       epochs of the schedule (the official notebook's 30)
#   PNNC            pnnc binary (default `cargo run --release --`, else target/release/pnnc;
#                   it embeds the trainer, so build it from this checkout)
#   PYTHON=python3  a Python with torch, numpy and safetensors
#   PNN_DATA        folder holding cifar10/ (../shared/data here), unless DATA_FILE is set
#   DATA_FILE       an existing `pnnc data export std-models/resnet18.pnn` file
#   TF32=1          TF32 convolutions and matrix products on GPUs (the official notebooks ran
#                   with PyTorch's default of TF32 convolutions); TF32=0: full float32
#   NPROC           processes (default: the number of GPUs, at least 1)
#   Smoke test on a CPU: MAX_STEPS=2 LIMIT_TRAIN=256 EVAL_LIMIT=64 THREADS=2 BUDGET=60
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT="${1:-gpu-paper-run}"
BUDGET="${BUDGET:-480}"
EPOCHS="${EPOCHS:-30}"
PYTHON="${PYTHON:-python3}"
TF32="${TF32:-1}"
MODEL=std-models/resnet18.pnn
mkdir -p "$OUT"

# The package is embedded in the binary: a stale binary exports a stale trainer.
if [ -n "${PNNC:-}" ]; then
    pnnc=("$PNNC")
elif command -v cargo >/dev/null; then
    pnnc=(cargo run --quiet --release --)
else
    pnnc=(target/release/pnnc)
fi
if ! "$PYTHON" -c "import torch, numpy, safetensors" 2>/dev/null; then
    echo "error: $PYTHON cannot import torch, numpy and safetensors" >&2
    echo "help: $PYTHON -m pip install torch numpy safetensors, or set PYTHON" >&2
    exit 2
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "host: $(uname -srm), $(nproc) cores"
    "$PYTHON" -c "import torch; print('torch', torch.__version__, '| cuda', torch.version.cuda, '|', ', '.join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or 'no GPU')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

export_cmd=("${pnnc[@]}" export torch "$MODEL" -o "$OUT/export" --overwrite --epochs "$EPOCHS")
"${export_cmd[@]}"
data="${DATA_FILE:-$OUT/cifar10.safetensors}"
data_cmd=()
if [ -z "${DATA_FILE:-}" ]; then
    data_cmd=("${pnnc[@]}" data export "$MODEL" -o "$data" --overwrite)
    [ -n "${LIMIT_TRAIN:-}" ] && data_cmd+=(--limit-train "$LIMIT_TRAIN")
    "${data_cmd[@]}"
fi

nproc_run="${NPROC:-$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')}"
launcher=("$PYTHON")
if [ "$nproc_run" -gt 1 ]; then
    launcher=("$PYTHON" -m torch.distributed.run --standalone "--nproc_per_node=$nproc_run")
fi
train_cmd=("${launcher[@]}" "$OUT/export/train.py" --data "$data" --out "$OUT/run"
    --time-budget "$BUDGET" --json)
[ "$TF32" = 1 ] && train_cmd+=(--tf32)
[ -n "${MAX_STEPS:-}" ] && train_cmd+=(--max-steps "$MAX_STEPS")
[ -n "${EVAL_LIMIT:-}" ] && train_cmd+=(--eval-limit "$EVAL_LIMIT")
[ -n "${THREADS:-}" ] && train_cmd+=(--threads "$THREADS")
rm -rf "$OUT/run"
echo "+ ${train_cmd[*]}"
start=$(date +%s)
"${train_cmd[@]}" | tee "$OUT/train.log"
wall=$(( $(date +%s) - start ))

"$PYTHON" - "$OUT" "$wall" "${export_cmd[*]}" "${data_cmd[*]:-DATA_FILE=$data}" "${train_cmd[*]}" <<'PY'
import json, os, sys
out, wall, export_cmd, data_cmd, train_cmd = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
run = os.path.join(out, "run")
read = lambda name: [json.loads(l) for l in open(os.path.join(run, name)) if l.strip()]
metrics, engine = read("metrics.jsonl"), read("engine.jsonl")
summary = json.load(open(os.path.join(run, "summary.json")))
machine = open(os.path.join(out, "machine.txt")).read().strip()
steady = engine[1:] or engine
rate = lambda k: sum(e[k] for e in steady) / len(steady)
mem = max((e.get("peak_gpu_memory_gb") or 0) for e in engine)
res = {"model": "std-models/resnet18.pnn (degree 8, B 35, P 17.5)", "machine": machine,
       "wall_seconds": wall, "epochs": summary["epochs"], "steps": summary["steps"],
       "steps_per_s": rate("steps_per_s"), "samples_per_s": rate("samples_per_s"),
       "peak_gpu_memory_gb": mem, "peak_rss_mb": max(e["peak_rss_mb"] for e in engine),
       "test_acc": summary["test_acc"], "best_val_acc": summary["best_val_acc"],
       "stopped": summary.get("stopped"), "per_epoch": [
           {**m, **{k: e[k] for k in ("steps_per_s", "samples_per_s", "train_seconds")}}
           for m, e in zip(metrics, engine)],
       "commands": [export_cmd, data_cmd, train_cmd],
       "reference": "official notebook: 90.33 % test accuracy after 30 epochs"}
json.dump(res, open(os.path.join(out, "results.json"), "w"), indent=2)
pct = lambda a: "-" if a is None else f"{100 * a:.2f} %"
lines = [f"ResNet-18, CIFAR-10, degree 8, paper recipe, exported PyTorch trainer",
         "", "```", machine, "```", "",
         f"{summary['epochs']} epochs ({summary['steps']} steps) in {wall} s wall; "
         f"{res['steps_per_s']:.2f} steps/s, {res['samples_per_s']:.0f} samples/s "
         f"(epochs after the first); peak GPU memory {mem:.2f} GB; test accuracy "
         f"{pct(summary['test_acc'])} (official notebook: 90.33 % at 30 epochs)"
         + (f"; stopped: {res['stopped']}" if res["stopped"] else ""), "",
         "| epoch | train loss | train acc | val acc | boundary | s | steps/s |",
         "|---|---|---|---|---|---|---|"]
for r in res["per_epoch"]:
    lines.append(f"| {r['epoch']} | {r['train_loss']:.4f} | {pct(r['train_acc'])} | "
                 f"{pct(r['val_acc'])} | {r['boundary_loss']:.4f} | {r['seconds']:.1f} | "
                 f"{r['steps_per_s']:.2f} |")
lines += ["", "Commands:", "", "```"] + [export_cmd, data_cmd, train_cmd] + ["```"]
open(os.path.join(out, "results.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY

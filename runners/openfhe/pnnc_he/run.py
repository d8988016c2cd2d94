"""Run a pnnc circuit on encrypted inputs and compare with the plaintext circuit.

    python -m pnnc_he CIRCUIT --inputs INPUTS.json [--report REPORT.json] [--tolerance 1e-3]

INPUTS.json: {"samples": [[raw values...], ...], "labels": [int or null, ...] (optional),
"reference_logits": [[...], ...] (optional, e.g. from `pnnc simulate`),
"escapes": [[{"op", "source", "outside", "values", "max_ratio"}, ...], ...] (optional: per
sample, the activations whose plaintext inputs left [-B, B], computed by `pnnc he-run`),
"test_indices": [...] (optional)}.
Exit codes: 0 all checks passed; 1 a check failed or OpenFHE failed (the op is
named); 2 unreadable or invalid circuit/inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import ckks, keys as keystore, plain
from .circuit import Circuit, CircuitError, load, output_len


class InputError(Exception):
    pass


def load_inputs(path: Path, circuit: Circuit) -> dict:
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON: {e}") from e
    samples = doc.get("samples") if isinstance(doc, dict) else None
    if not isinstance(samples, list) or not samples:
        raise InputError(f"{path}: needs a non-empty list `samples`")
    want = circuit.input_len
    out = []
    for i, s in enumerate(samples):
        x = np.asarray(s, dtype=float).reshape(-1)
        if x.size != want:
            raise InputError(
                f"{path}: sample {i} has {x.size} values, the circuit's input "
                f"{circuit.doc['input']['shape']} needs {want}"
            )
        if not np.isfinite(x).all():
            raise InputError(f"{path}: sample {i} holds NaN/inf")
        out.append(x)
    labels = doc.get("labels") or [None] * len(out)
    refs = doc.get("reference_logits")
    escapes = doc.get("escapes")
    indices = doc.get("test_indices")
    for name, v in (("labels", labels), ("reference_logits", refs), ("escapes", escapes), ("test_indices", indices)):
        if v is not None and (not isinstance(v, list) or len(v) != len(out)):
            raise InputError(f"{path}: `{name}` must have one entry per sample")
    return {"samples": out, "labels": labels, "reference_logits": refs, "escapes": escapes, "test_indices": indices}


def linear_diagonals(circuit: Circuit, op: dict, keep: bool = True) -> dict[int, np.ndarray]:
    """The op's diagonals, checked against what the circuit declares; kept
    for later calls unless `keep` is false (ResNet-20's take 1.8 GiB)."""
    k = op["kind"]
    key = ("diags", op["id"])
    if key not in circuit.cache:
        diags = ckks.diagonals_of(
            circuit.tensors[k["rows"]], circuit.tensors[k["cols"]], circuit.tensors[k["values"]], circuit.dim
        )
        if sorted(diags) != sorted(int(d) for d in k["diagonals"]):
            raise CircuitError(
                f"{circuit.path}: op {op['id']} ({', '.join(op['source'])}): declared `diagonals` "
                "differ from the matrix's; recompile with `pnnc compile`"
            )
        if not keep:
            return diags
        circuit.cache[key] = diags
    return circuit.cache[key]


def add_plain(cc, circuit: Circuit, ct, values: np.ndarray):
    """ct + values in every block, the plaintext at the ciphertext's level and scale."""
    tiled = ckks.tiled(values, circuit.dim, circuit.slots).tolist()
    pt = cc.MakeCKKSPackedPlaintext(tiled, ct.GetNoiseScaleDeg(), ct.GetLevel(), None, circuit.slots)
    return cc.EvalAdd(ct, pt)


def eval_op(cc, circuit: Circuit, op: dict, values: list, cache: ckks.PlaintextCache | None = None, store=None):
    k = op["kind"]
    dim, slots = circuit.dim, circuit.slots
    a = values[op["inputs"][0]]
    if k["op"] == "linear":
        declared = set(int(r) for r in circuit.doc["rotations"])
        keep = circuit.cache.get("keep_diagonals", True)
        y = ckks.bsgs_matvec(
            cc, a, linear_diagonals(circuit, op, keep), int(k["baby_step"]), dim, slots, declared, cache, op["id"], store
        )
        return add_plain(cc, circuit, y, circuit.tensors[k["bias"]])
    if k["op"] == "affine":
        if a.GetNoiseScaleDeg() > 1:
            a = cc.Rescale(a)
        tiled = ckks.tiled(circuit.tensors[k["scale"]], dim, slots).tolist()
        scale = cc.MakeCKKSPackedPlaintext(tiled, 1, a.GetLevel(), None, slots)
        return add_plain(cc, circuit, cc.EvalMult(a, scale), circuit.tensors[k["shift"]])
    if k["op"] == "poly":
        return ckks.eval_chebyshev(cc, a, k["coeffs"])
    if k["op"] == "bootstrap":
        return ckks.bootstrap(cc, a)
    if k["op"] == "sum":
        declared = set(int(r) for r in circuit.doc["rotations"])
        return ckks.rotate_sum(cc, a, int(k["stride"]), int(k["count"]), declared, store)
    return cc.EvalAdd(a, values[op["inputs"][1]])


def run_batch(cc, keys, circuit: Circuit, xs: list[np.ndarray], cache: ckks.PlaintextCache, progress, store=None) -> dict:
    """Encrypt up to samples_per_ciphertext prepared inputs into one ciphertext,
    evaluate every op once, decrypt each value for every sample."""
    count = len(xs)
    references = [plain.evaluate(circuit, x) for x in xs]
    t = time.perf_counter()
    values = [ckks.encrypt(cc, keys, xs, circuit.dim, circuit.slots)]
    encrypt_s = time.perf_counter() - t
    ops, eval_s, eval_cpu_s, decrypt_s, failure = [], 0.0, 0.0, 0.0, None
    # A value is freed after its last use (ResNet-20: 73 ciphertexts of up
    # to 23 MiB otherwise stay alive to the end).
    last_use = {}
    for op in circuit.ops:
        for j in op["inputs"]:
            last_use[j] = op["id"]
    for op in circuit.ops:
        t, cpu = time.perf_counter(), time.process_time()
        try:
            if store is not None:
                store.before(op)
            ct = eval_op(cc, circuit, op, values, cache, store)
            if store is not None:
                store.after(op)
        except ckks.MissingRotationKey as e:
            failure = {"op": op["id"], "source": op["source"], "message": str(e)}
            break
        except Exception as e:  # OpenFHE raises RuntimeError for parameter/level problems
            failure = {"op": op["id"], "source": op["source"], "message": f"OpenFHE failed: {e}"}
            break
        op_s, op_cpu = time.perf_counter() - t, time.process_time() - cpu
        eval_s += op_s
        eval_cpu_s += op_cpu
        progress(
            f"op {op['id']}/{len(circuit.ops)} {op['kind']['op']} ({', '.join(op['source'])}): "
            f"{op_s:.1f}s (CPU {op_cpu:.1f}s)"
        )
        values.append(ct)
        for j in set(op["inputs"]):
            if last_use.get(j) == op["id"] and j != circuit.doc["output"]:
                values[j] = None
        t = time.perf_counter()
        n = output_len(op)
        try:
            got = ckks.decrypt(cc, keys, ct, n, circuit.dim, count)
        except Exception as e:  # e.g. "approximation error is too high"
            failure = {"op": op["id"], "source": op["source"], "message": f"decryption failed: {e}"}
            break
        decrypt_s += time.perf_counter() - t
        ops.append(
            {
                "id": op["id"],
                "level_predicted": op["level_out"],
                "level_measured": ckks.levels_consumed(ct),
                "max_error": [float(np.abs(g - r[op["id"]][:n]).max()) for g, r in zip(got, references)],
                "decrypted": got,
                "seconds": op_s,
                "cpu_seconds": op_cpu,
            }
        )
    results = []
    out_index = circuit.doc["output"] - 1
    for s in range(count):
        r = {
            "plain_logits": references[s][circuit.doc["output"]][: circuit.classes],
            "ops": [
                {"id": o["id"], "level_predicted": o["level_predicted"], "level_measured": o["level_measured"],
                 "max_error": o["max_error"][s]}
                for o in ops
            ],
            "failure": failure,
        }
        if failure is None:
            r["he_logits"] = ops[out_index]["decrypted"][s][: circuit.classes] if out_index >= 0 else None
        results.append(r)
    return {
        "op_seconds": [{"id": o["id"], "seconds": o["seconds"], "cpu_seconds": o["cpu_seconds"]} for o in ops],
        "encrypt_seconds": encrypt_s,
        "eval_seconds": eval_s,
        "eval_cpu_seconds": eval_cpu_s,
        "decrypt_seconds": decrypt_s,
        "samples": results,
    }


def run(
    circuit: Circuit,
    inputs: dict,
    tolerance: float,
    per_ciphertext: int | None = None,
    progress=None,
    keys_mode: str = "auto",
    memory_bytes: int | None = None,
    key_group: int = 0,
) -> dict:
    progress = progress or (lambda _msg: None)
    params = circuit.params
    batch = circuit.samples_per_ciphertext if per_ciphertext is None else per_ciphertext
    if not 1 <= batch <= circuit.samples_per_ciphertext:
        raise ckks.HeError(
            f"samples per ciphertext must be 1..{circuit.samples_per_ciphertext} for this circuit, not {batch}"
        )
    # Diagonals and encoded plaintexts are kept only when a later ciphertext
    # reuses them; every op's diagonals are checked before key generation.
    reused = len(inputs["samples"]) > batch
    circuit.cache["keep_diagonals"] = reused
    for op in circuit.ops:
        if op["kind"]["op"] == "linear":
            linear_diagonals(circuit, op, reused)
    budget = keystore.available_memory() * 9 // 10 if memory_bytes is None else memory_bytes
    try:
        mode, estimate = keystore.choose_mode(circuit, keys_mode, budget, key_group, reused)
    except keystore.KeyBudgetError as e:
        raise ckks.HeError(str(e)) from e
    group = f", groups of at most {estimate['group']} keys" if mode == "per-op" else ""
    progress(
        f"keys: mode {mode}{group}, about {keystore.gib(estimate[mode])} "
        f"({estimate['key_bytes'] / (1 << 20):.0f} MiB per key; budget {keystore.gib(budget)})"
    )
    t = time.perf_counter()
    cc, digits = ckks.make_context(
        int(params["ring_dim"]),
        int(params["mult_depth"]),
        int(params["scale_bits"]),
        int(params["first_mod_bits"]),
        int(params["security"]),
        circuit.slots,
        int(params.get("key_switch_digits", 3)),
        params.get("secret_key", "uniform_ternary"),
        params.get("bootstrapping"),
    )
    store = keystore.KeyStore(cc, circuit, mode, estimate["group"])
    try:
        kp = cc.KeyGen()
        store.generate(kp.secretKey)
        keys = ckks.Keys(public=kp.publicKey, secret=kp.secretKey)
        keygen_s = time.perf_counter() - t
        progress(f"keys: {len(circuit.doc['rotations'])} rotation keys, {keygen_s:.1f}s")
        # Encoded diagonals are cached (reused by later ciphertexts) in at most
        # 2 GiB of what the keys leave of the budget (less 1 GiB for Python and
        # the plaintext reference), none when one ciphertext holds every
        # sample (nothing would reuse them); PNNC_HE_CACHE_MB sets it.
        default_mb = min(2048, max(0, budget - estimate[mode] - (1 << 30)) >> 20) if reused else 0
        budget_mb = int(os.environ.get("PNNC_HE_CACHE_MB", str(default_mb)))
        cache = ckks.PlaintextCache(budget_mb << 20, int(params["ring_dim"]), int(params["mult_depth"]))
        samples, batches = run_batches(cc, keys, circuit, inputs, batch, cache, progress, store)
    finally:
        store.close()
    report = summarise(circuit, samples, batches, keygen_s, tolerance)
    report["params"]["key_switching_digits"] = digits
    report["keys"] = {
        "mode": mode,
        "group": estimate["group"] if mode == "per-op" else None,
        "group_loads": store.loads,
        "estimate_bytes": estimate[mode],
        "budget_bytes": budget,
        "cache_mb": budget_mb,
    }
    return report


def run_batches(cc, keys, circuit: Circuit, inputs: dict, batch: int, cache, progress, store) -> tuple[list, list]:
    """Every ciphertext of `batch` samples: its report entries and timings."""
    samples, batches = [], []
    raw = inputs["samples"]
    for start in range(0, len(raw), batch):
        xs = [plain.prepare_input(circuit, x) for x in raw[start : start + batch]]
        progress(f"ciphertext {len(batches) + 1}: samples {start}..{start + len(xs) - 1}")
        b = run_batch(cc, keys, circuit, xs, cache, progress, store)
        batches.append(
            {
                "first_sample": start,
                "samples": len(xs),
                "latency_seconds": b["eval_seconds"],
                "latency_cpu_seconds": b["eval_cpu_seconds"],
                "encrypt_seconds": b["encrypt_seconds"],
                "decrypt_seconds": b["decrypt_seconds"],
                "ops": b["op_seconds"],
            }
        )
        for offset, r in enumerate(b["samples"]):
            i = start + offset
            entry = {
                "index": i,
                "ciphertext": len(batches) - 1,
                "label": inputs["labels"][i],
                "test_index": None if inputs.get("test_indices") is None else inputs["test_indices"][i],
                "escapes": None if inputs.get("escapes") is None else inputs["escapes"][i],
                "plain_class": int(np.argmax(r["plain_logits"])),
                "he_class": None,
                "max_logit_error": None,
                "failure": r["failure"],
                "ops": r["ops"],
            }
            if r["failure"] is None:
                he = r["he_logits"]
                entry["he_class"] = int(np.argmax(he))
                entry["max_logit_error"] = float(np.abs(he - r["plain_logits"]).max())
                entry["he_logits"] = he.tolist()
            entry["plain_logits"] = r["plain_logits"].tolist()
            refs = inputs["reference_logits"]
            if refs is not None:
                entry["reference_vs_plain"] = float(np.abs(np.asarray(refs[i])[: circuit.classes] - r["plain_logits"]).max())
            samples.append(entry)
    return samples, batches


def summarise(circuit: Circuit, samples: list[dict], batches: list[dict], keygen_s: float, tolerance: float) -> dict:
    ops = []
    for index, op in enumerate(circuit.ops):
        seen = [s["ops"][index] for s in samples if index < len(s["ops"])]
        ops.append(
            {
                "id": op["id"],
                "op": op["kind"]["op"],
                "source": op["source"],
                "len": output_len(op),
                "level_predicted": op["level_out"],
                "level_measured": sorted({o["level_measured"] for o in seen}),
                "max_error": max((o["max_error"] for o in seen), default=None),
            }
        )
    ok_samples = [s for s in samples if s["failure"] is None]
    failures = [dict(s["failure"], sample=s["index"]) for s in samples if s["failure"]]
    level_mismatches = [
        {"op": o["id"], "source": o["source"], "predicted": o["level_predicted"], "measured": o["level_measured"]}
        for o in ops
        if o["level_measured"] and o["level_measured"] != [o["level_predicted"]]
    ]
    prediction_mismatches = [s["index"] for s in ok_samples if s["he_class"] != s["plain_class"]]
    # Samples whose plaintext activation inputs left [-B, B] (None: not measured).
    measured = all(s.get("escapes") is not None for s in samples)
    escaped = [s["index"] for s in samples if s.get("escapes")] if measured else None
    max_err = max((s["max_logit_error"] for s in ok_samples), default=None)
    # One evaluation per ciphertext; a ciphertext carries up to
    # samples_per_ciphertext samples at the cost of one. The first also
    # encodes the weights (cached for the others): it is reported apart as
    # the cold latency when there are warm ones.
    ok_batches = [b for b in batches if not any(s["failure"] for s in samples[b["first_sample"] : b["first_sample"] + b["samples"]])]
    warm = ok_batches[1:] if len(ok_batches) > 1 else ok_batches
    latencies = [b["latency_seconds"] for b in warm]
    cpu = [b["latency_cpu_seconds"] for b in warm]
    cold = ok_batches[0]["latency_seconds"] if ok_batches else None
    evaluated = sum(b["samples"] for b in ok_batches)
    amortized = sum(b["latency_seconds"] for b in ok_batches) / evaluated if evaluated else None
    params = circuit.params
    checks = {
        "no_failures": not failures,
        "levels_match": not level_mismatches,
        "predictions_match": not prediction_mismatches,
        "logit_error_below_tolerance": max_err is not None and max_err < tolerance,
    }
    return {
        "circuit": str(circuit.path),
        "model": circuit.doc["model"]["name"],
        "params": {
            "ring_dim": params["ring_dim"],
            "mult_depth": params["mult_depth"],
            "scale_bits": params["scale_bits"],
            "first_mod_bits": params["first_mod_bits"],
            "security": params["security"],
            "depth": circuit.doc["depth"],
            "rotation_keys": len(circuit.doc["rotations"]),
            "packing_dim": circuit.dim,
            "samples_per_ciphertext": circuit.samples_per_ciphertext,
            "key_switch_digits_circuit": params.get("key_switch_digits"),
            "scaling": "FLEXIBLEAUTO",
        },
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "keygen_seconds": keygen_s,
        "mean_latency_seconds": float(np.mean(latencies)) if latencies else None,
        "mean_latency_cpu_seconds": float(np.mean(cpu)) if cpu else None,
        "cold_latency_seconds": cold,
        "amortized_seconds_per_sample": amortized,
        "ciphertexts": batches,
        "tolerance": tolerance,
        "max_logit_error": max_err,
        "checks": checks,
        "passed": all(checks.values()),
        "failures": failures,
        "level_mismatches": level_mismatches,
        "prediction_mismatches": prediction_mismatches,
        "escaped_samples": escaped,
        "ops": ops,
        "samples": samples,
    }


def fmt(x, spec=".2e") -> str:
    return "-" if x is None else format(x, spec)


def print_table(report: dict, out=None) -> None:
    out = out or sys.stdout
    p = report["params"]
    print(
        f"model {report['model']}: ring_dim {p['ring_dim']}, mult_depth {p['mult_depth']}, "
        f"scale 2^{p['scale_bits']}, first modulus {p['first_mod_bits']} bits, "
        f"security {p['security'] or 'NONE (toy parameters, not secure)'}, "
        f"{p['rotation_keys']} rotation keys, depth {p['depth']}, "
        f"{p['samples_per_ciphertext']} samples per ciphertext (dim {p['packing_dim']})",
        file=out,
    )
    last = {t["id"]: t for t in report["ciphertexts"][-1]["ops"]} if report["ciphertexts"] else {}
    print(f"{'op':>3}  {'kind':<9} {'len':>6}  {'level':>5}  {'measured':>8}  {'max error':>9}  {'time (CPU) s':>13}  source", file=out)
    for o in report["ops"]:
        t = last.get(o["id"])
        timing = "-" if t is None else f"{t['seconds']:.2f} ({t['cpu_seconds']:.2f})"
        measured = ",".join(str(v) for v in o["level_measured"]) or "-"
        mark = "" if o["level_measured"] in ([], [o["level_predicted"]]) else "  <-- level mismatch"
        print(
            f"{o['id']:>3}  {o['op']:<9} {o['len']:>6}  {o['level_predicted']:>5}  {measured:>8}  "
            f"{fmt(o['max_error']):>9}  {timing:>13}  {', '.join(o['source'])}{mark}",
            file=out,
        )
    print(f"{'sample':>6}  {'label':>5}  {'plain':>5}  {'he':>5}  {'logit err':>9}  {'ciphertext':>10}  escaped", file=out)
    for s in report["samples"]:
        label = "-" if s["label"] is None else s["label"]
        he = "FAIL" if s["he_class"] is None else s["he_class"]
        escapes = s.get("escapes")
        escaped = "-" if escapes is None else (
            ", ".join(f"op {e['op']} ({e['outside']}/{e['values']}, max |x|/B {e['max_ratio']:.2f})" for e in escapes)
            or "no"
        )
        print(
            f"{s['index']:>6}  {label:>5}  {s['plain_class']:>5}  {he:>5}  {fmt(s['max_logit_error']):>9}  "
            f"{s['ciphertext']:>10}  {escaped}",
            file=out,
        )
    for i, b in enumerate(report["ciphertexts"]):
        print(
            f"ciphertext {i}: {b['samples']} samples, evaluation {b['latency_seconds']:.3f}s "
            f"(CPU {b['latency_cpu_seconds']:.3f}s), encrypt {b['encrypt_seconds']:.3f}s, "
            f"decrypt (all ops) {b['decrypt_seconds']:.3f}s",
            file=out,
        )
    for f in report["failures"]:
        print(f"failure: sample {f['sample']}, op {f['op']} ({', '.join(f['source'])}): {f['message']}", file=out)
    for m in report["level_mismatches"]:
        print(f"level mismatch: op {m['op']} ({', '.join(m['source'])}): predicted {m['predicted']}, OpenFHE {m['measured']}", file=out)
    if report["prediction_mismatches"]:
        print(f"prediction mismatch on samples {report['prediction_mismatches']}", file=out)
    if report.get("escaped_samples"):
        print(
            f"warning: plaintext activation inputs left [-B, B] on samples {report['escaped_samples']}: "
            "the polynomial was extrapolated there, so their results (plaintext and encrypted) may be wrong",
            file=out,
        )
    print(
        f"keygen {report['keygen_seconds']:.2f}s, latency per inference (one ciphertext) "
        f"{fmt(report['mean_latency_seconds'], '.3f')}s "
        f"(CPU {fmt(report['mean_latency_cpu_seconds'], '.3f')}s; first ciphertext, encoding the weights: "
        f"{fmt(report['cold_latency_seconds'], '.3f')}s), "
        f"amortized {fmt(report['amortized_seconds_per_sample'], '.3f')}s per sample, "
        f"max logit error {fmt(report['max_logit_error'])} (tolerance {report['tolerance']:.0e})",
        file=out,
    )
    print("encrypted check: " + ("PASSED" if report["passed"] else "FAILED"), file=out)


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="pnnc he-run (runner)", description=__doc__.split("\n")[0])
    ap.add_argument("circuit", type=Path)
    ap.add_argument("--inputs", type=Path, required=True)
    ap.add_argument("--report", type=Path)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    ap.add_argument(
        "--per-ciphertext", type=int, default=None,
        help="samples packed into one ciphertext (default: all the circuit allows)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    ap.add_argument(
        "--keys", choices=keystore.MODES, default=os.environ.get("PNNC_HE_KEYS", "auto"),
        help="rotation keys all in memory, or per op from disk (default $PNNC_HE_KEYS, else auto: "
        "all when they fit the memory budget)",
    )
    ap.add_argument(
        "--memory-gb", type=float, default=float(os.environ.get("PNNC_HE_MEMORY_GB", "0")) or None,
        help="memory budget for keys and cached plaintexts in GiB (default $PNNC_HE_MEMORY_GB, else "
        "90%% of the available memory)",
    )
    ap.add_argument(
        "--key-group", type=int, default=int(os.environ.get("PNNC_HE_KEY_GROUP", "0")),
        help="in per-op key mode, read at most this many rotation keys at once (default $PNNC_HE_KEY_GROUP, "
        "else 0: the largest group the memory budget allows)",
    )
    args = ap.parse_args(argv)
    try:
        circuit = load(args.circuit)
        inputs = load_inputs(args.inputs, circuit)
    except (CircuitError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        def progress(msg: str) -> None:
            if not args.quiet:
                print(f"[he-run {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

        memory = None if args.memory_gb is None else int(args.memory_gb * (1 << 30))
        report = run(circuit, inputs, args.tolerance, args.per_ciphertext, progress, args.keys, memory, args.key_group)
    except CircuitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ckks.HeError as e:
        print(f"error: {args.circuit}: {e}", file=sys.stderr)
        return 1
    print_table(report)
    if args.report:
        write_atomic(args.report, json.dumps(report, indent=2) + "\n")
    return 0 if report["passed"] else 1

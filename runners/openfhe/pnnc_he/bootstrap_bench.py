"""One OpenFHE bootstrap at a circuit's CKKS parameters: setup, key
generation and bootstrap time, error and peak memory, before committing to
a full encrypted run of a bootstrapped circuit.

    python -m pnnc_he.bootstrap_bench CIRCUIT.json [--repeat 2] [--level-budget 4,4]

A random vector in [-1, 1] on every slot is brought to level mult_depth - 1
(where the compiler's plan bootstraps at the latest), bootstrapped, decrypted
and compared. Prints one line per stage: the memory the precomputations and
the keys add (resident set), how many automorphism keys the bootstrapping
made (their serialized size over one key's), and per bootstrap its time,
levels and error; peak memory is the process's maximum resident set.
`--level-budget` measures another OpenFHE level budget at the circuit's chain
(its depth is then OpenFHE's, not the plan's).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import openfhe as fhe

from . import ckks, keys
from .circuit import CircuitError, load


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def resident_gib() -> float:
    """The current resident set (VmRSS), 0 where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def automorphism_keys(cc, secret_key, params: dict) -> float:
    """Automorphism keys of this key pair: their serialized size over one key's."""
    with tempfile.TemporaryDirectory(prefix="pnnc-boot-keys-") as d:
        path = os.path.join(d, "keys")
        if not cc.SerializeEvalAutomorphismKey(path, fhe.BINARY, secret_key.GetKeyTag()):
            raise ckks.HeError(f"cannot serialize the bootstrapping keys to {path}")
        return os.path.getsize(path) / keys.key_bytes(params)


def bench(circuit, repeat: int, out=sys.stdout, level_budget: list[int] | None = None) -> list[dict]:
    p = circuit.params
    plan = p.get("bootstrapping")
    if not plan:
        raise ckks.HeError(f"{circuit.path}: the circuit does not bootstrap (params.bootstrapping is null)")
    if level_budget is not None:
        plan = dict(plan, level_budget=level_budget)
        probe, _ = ckks.make_context(
            int(p["ring_dim"]), int(p["mult_depth"]), int(p["scale_bits"]), int(p["first_mod_bits"]),
            int(p["security"]), circuit.slots, int(p.get("key_switch_digits", 3)),
            p.get("secret_key", "uniform_ternary"),
        )
        probe.Enable(fhe.PKESchemeFeature.ADVANCEDSHE)
        probe.Enable(fhe.PKESchemeFeature.FHE)
        plan["bootstrap_levels"] = probe.GetBootstrapDepth(level_budget, ckks.SECRET_KEYS[p.get("secret_key", "uniform_ternary")])
        del probe
    slots = int(plan["slots"])
    base = resident_gib()
    t = time.time()
    cc, digits = ckks.make_context(
        int(p["ring_dim"]), int(p["mult_depth"]), int(p["scale_bits"]), int(p["first_mod_bits"]),
        int(p["security"]), circuit.slots, int(p.get("key_switch_digits", 3)),
        p.get("secret_key", "uniform_ternary"), plan,
    )
    setup_gib = resident_gib() - base
    print(f"level budget {plan['level_budget']}: {plan['bootstrap_levels']} levels; context + EvalBootstrapSetup: "
          f"{time.time() - t:.1f} s, {digits} key-switching digits (circuit: {p.get('key_switch_digits')}), "
          f"+{setup_gib:.2f} GiB resident, peak {peak_gib():.2f} GiB", file=out, flush=True)
    t = time.time()
    before = resident_gib()
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalBootstrapKeyGen(kp.secretKey, slots)
    print(f"keygen (relinearisation + bootstrapping): {time.time() - t:.1f} s, +{resident_gib() - before:.2f} GiB "
          f"resident, {automorphism_keys(cc, kp.secretKey, p):.1f} automorphism keys of "
          f"{keys.key_bytes(p) / 2**20:.0f} MiB, peak {peak_gib():.2f} GiB", file=out, flush=True)
    x = np.random.default_rng(0).uniform(-1, 1, slots)
    ct = cc.Encrypt(kp.publicKey, cc.MakeCKKSPackedPlaintext(list(x), 1, 0, None, slots))
    while ckks.levels_consumed(ct) < int(p["mult_depth"]) - 1:
        ct = cc.EvalMult(ct, 1.0)
    level_in = ckks.levels_consumed(ct)
    rows = []
    for i in range(repeat):
        t, c0 = time.time(), time.process_time()
        b = ckks.bootstrap(cc, ct)
        wall, cpu = time.time() - t, time.process_time() - c0
        pt = cc.Decrypt(kp.secretKey, b)
        pt.SetLength(slots)
        err = float(np.abs(np.array(pt.GetRealPackedValue()) - x).max())
        row = {"wall_s": wall, "cpu_s": cpu, "level_in": level_in, "level_out": ckks.levels_consumed(b),
               "level_planned": int(plan["bootstrap_levels"]),
               "max_error": err, "peak_gib": peak_gib()}
        rows.append(row)
        print(f"bootstrap {i + 1}: {wall:.1f} s wall ({cpu:.1f} s CPU), level {level_in} -> {row['level_out']} "
              f"(plan: {plan['bootstrap_levels']}), max error {err:.2e}, peak {row['peak_gib']:.2f} GiB",
              file=out, flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pnnc_he.bootstrap_bench", description=__doc__.split("\n")[0])
    ap.add_argument("circuit", type=Path)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--level-budget", help="another OpenFHE level budget, e.g. 4,4 (default: the circuit's)")
    args = ap.parse_args(argv)
    budget = None
    if args.level_budget:
        try:
            budget = [int(b) for b in args.level_budget.split(",")]
        except ValueError:
            budget = []
        if len(budget) != 2 or min(budget) < 1:
            print(f"error: --level-budget takes two positive integers like 3,3, not {args.level_budget!r}", file=sys.stderr)
            return 2
    try:
        circuit = load(args.circuit)
    except CircuitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        rows = bench(circuit, max(1, args.repeat), level_budget=budget)
    except ckks.HeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0 if all(r["level_out"] == r["level_planned"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

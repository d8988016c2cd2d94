"""One OpenFHE bootstrap at a circuit's CKKS parameters: setup, key
generation and bootstrap time, error and peak memory, before committing to
a full encrypted run of a bootstrapped circuit.

    python -m pnnc_he.bootstrap_bench CIRCUIT.json [--repeat 2]

A random vector in [-1, 1] on every slot is brought to level mult_depth - 1
(where the compiler's plan bootstraps at the latest), bootstrapped, decrypted
and compared. Prints one line per stage; peak memory is the process's
maximum resident set.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from . import ckks
from .circuit import CircuitError, load


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def bench(circuit, repeat: int, out=sys.stdout) -> list[dict]:
    p = circuit.params
    plan = p.get("bootstrapping")
    if not plan:
        raise ckks.HeError(f"{circuit.path}: the circuit does not bootstrap (params.bootstrapping is null)")
    slots = int(plan["slots"])
    t = time.time()
    cc, digits = ckks.make_context(
        int(p["ring_dim"]), int(p["mult_depth"]), int(p["scale_bits"]), int(p["first_mod_bits"]),
        int(p["security"]), circuit.slots, int(p.get("key_switch_digits", 3)),
        p.get("secret_key", "uniform_ternary"), plan,
    )
    print(f"context + EvalBootstrapSetup: {time.time() - t:.1f} s, {digits} key-switching digits "
          f"(circuit: {p.get('key_switch_digits')}), peak {peak_gib():.2f} GiB", file=out, flush=True)
    t = time.time()
    kp = cc.KeyGen()
    cc.EvalMultKeyGen(kp.secretKey)
    cc.EvalBootstrapKeyGen(kp.secretKey, slots)
    print(f"keygen (relinearisation + bootstrapping): {time.time() - t:.1f} s, peak {peak_gib():.2f} GiB",
          file=out, flush=True)
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
    args = ap.parse_args(argv)
    try:
        circuit = load(args.circuit)
    except CircuitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        rows = bench(circuit, max(1, args.repeat))
    except ckks.HeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    planned = int(circuit.params["bootstrapping"]["bootstrap_levels"])
    return 0 if all(r["level_out"] == planned for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Evaluation keys within a memory budget.

A rotation (automorphism) key under HYBRID key switching holds `digits` pairs
of ring elements over all RNS towers of Q and P: digits x 2 x (L + 1 + #P) x N
words. At N = 2^16 with 30 levels that is over 100 MB per key, so a circuit
with a hundred rotations does not fit a laptop. Two modes:

- `all`: every rotation key in memory for the whole run (fastest);
- `per-op`: each op's keys are generated once, serialized to a temporary
  folder and cleared (`ClearEvalAutomorphismKeys`); before an op runs its keys
  are read back, after it they are cleared, so the peak is one op's keys.
  Reading keys back costs time (about 0.1-0.5 s per key here).

`auto` takes `all` when it fits the budget, else `per-op`. When even `per-op`
does not fit, the run is refused before any key is generated, with the
estimate and the fix.

Bootstrapping keys (CoeffsToSlots / SlotsToCoeffs rotations and the
conjugation) stay in memory in both modes: a circuit bootstraps many times.
In `per-op` mode their key map is kept aside and put back
(`InsertEvalAutomorphismKey`, no copy) before each bootstrap.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import openfhe as fhe

from .circuit import Circuit

SPECIAL_PRIME_BITS = 60
MODES = ("auto", "all", "per-op")


class KeyBudgetError(Exception):
    """The keys cannot fit the memory budget (the message has the fix)."""


def special_towers(params: dict) -> int:
    """Towers of P as OpenFHE sizes it: one bit more than the largest digit, in 60-bit primes."""
    towers = int(params["mult_depth"]) + 1
    digits = int(params["key_switch_digits"])
    per_digit = -(-towers // digits)
    largest = int(params["first_mod_bits"]) + (per_digit - 1) * int(params["scale_bits"])
    return largest // SPECIAL_PRIME_BITS + 1


def key_bytes(params: dict) -> int:
    """Bytes of one key-switching key (rotation or relinearisation)."""
    towers = int(params["mult_depth"]) + 1 + special_towers(params)
    return int(params["key_switch_digits"]) * 2 * towers * int(params["ring_dim"]) * 8


def ciphertext_bytes(params: dict) -> int:
    return 2 * (int(params["mult_depth"]) + 1) * int(params["ring_dim"]) * 8


def op_rotations(op: dict) -> list[int]:
    return sorted(int(r) for r in op["kind"].get("rotations", []))


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes); 8 GiB when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


# Rotation keys OpenFHE 1.6's EvalBootstrapKeyGen makes per level budget
# (measured at N = 2^16 with 2^15 slots; a little fewer at smaller rings),
# plus the conjugation key; its precomputed CoeffsToSlots / SlotsToCoeffs
# plaintexts take about as much again (measured: 7.1 GB resident for 49 keys
# of 69 MB at 18 towers).
BOOTSTRAP_KEYS = {(3, 3): 52, (4, 4): 76, (2, 2): 90, (1, 1): 256}


def bootstrap_bytes(params: dict) -> int:
    """Bytes of the bootstrapping keys and precomputations (0 without bootstrapping)."""
    plan = params.get("bootstrapping")
    if not plan:
        return 0
    keys = BOOTSTRAP_KEYS.get(tuple(int(b) for b in plan["level_budget"]), 128)
    return 2 * keys * key_bytes(params)


def estimate(circuit: Circuit) -> dict:
    """Bytes the keys and working ciphertexts need in each mode."""
    p = circuit.params
    key, ct = key_bytes(p), ciphertext_bytes(p)
    per_op = max((len(op_rotations(op)) for op in circuit.ops), default=0)
    # A linear op keeps its rotated inputs (baby steps) and a few partial sums.
    working = (per_op + 8) * ct
    boot = bootstrap_bytes(p)
    return {
        "key_bytes": key,
        "rotation_keys": len(circuit.doc["rotations"]),
        "largest_op_keys": per_op,
        "bootstrap_bytes": boot,
        "all": (len(circuit.doc["rotations"]) + 1) * key + working + boot,
        "per-op": (per_op + 1) * key + working + boot,
    }


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def choose_mode(circuit: Circuit, mode: str, budget: int) -> tuple[str, dict]:
    """The key mode to use, or KeyBudgetError before any key exists."""
    est = estimate(circuit)
    if mode not in MODES:
        raise KeyBudgetError(f"unknown key mode {mode!r} (use {', '.join(MODES)})")
    if mode == "auto":
        mode = "all" if est["all"] <= budget else "per-op"
    if est[mode] > budget:
        p = circuit.params
        fixes = []
        if mode == "all":
            fixes.append(f"--keys per-op needs about {gib(est['per-op'])}")
        fixes.append(
            f"recompile with fewer key-switching digits (now {p['key_switch_digits']}; a key is "
            f"{est['key_bytes'] / (1 << 20):.0f} MiB at N = {p['ring_dim']} with {int(p['mult_depth']) + 1} towers)"
        )
        fixes.append("raise the budget (--memory-gb) on a machine with more memory")
        boot = f", bootstrapping {gib(est['bootstrap_bytes'])}" if est["bootstrap_bytes"] else ""
        raise KeyBudgetError(
            f"the keys need about {gib(est[mode])} in mode {mode} ({est['rotation_keys']} rotation keys, "
            f"at most {est['largest_op_keys']} for one op, {est['key_bytes'] / (1 << 20):.0f} MiB each{boot}), "
            f"more than the {gib(budget)} budget; fix: " + "; or ".join(fixes)
        )
    return mode, est


class KeyStore:
    """Generates the circuit's keys and makes each op's rotation keys available."""

    def __init__(self, cc, circuit: Circuit, mode: str):
        self.cc, self.circuit, self.mode = cc, circuit, mode
        self.folder = tempfile.mkdtemp(prefix="pnnc-he-keys-") if mode == "per-op" else None
        self.files: dict[int, str] = {}
        self.loaded: int | str | None = None
        self.boot_map = None
        self.tag = ""

    def generate(self, secret_key) -> None:
        self.cc.EvalMultKeyGen(secret_key)
        plan = self.circuit.params.get("bootstrapping")
        if plan:
            self.cc.EvalBootstrapKeyGen(secret_key, int(plan["slots"]))
        if self.mode == "all":
            steps = sorted({int(s) for s in self.circuit.doc["rotations"]})
            if steps:
                self.cc.EvalRotateKeyGen(secret_key, steps)
            return
        if plan:
            # Kept by reference; cleared from the context until a bootstrap.
            self.tag = secret_key.GetKeyTag()
            self.boot_map = self.cc.GetEvalAutomorphismKeyMap(self.tag)
            self.cc.ClearEvalAutomorphismKeys()
        for op in self.circuit.ops:
            steps = op_rotations(op)
            if not steps:
                continue
            self.cc.EvalRotateKeyGen(secret_key, steps)
            path = os.path.join(self.folder, f"op{op['id']}.keys")
            if not self.cc.SerializeEvalAutomorphismKey(path, fhe.BINARY):
                raise OSError(f"cannot write the keys of op {op['id']} to {path}")
            self.cc.ClearEvalAutomorphismKeys()
            self.files[op["id"]] = path

    def before(self, op: dict) -> None:
        if op["kind"]["op"] == "bootstrap" and self.boot_map is not None:
            if self.loaded != "bootstrap":
                # Clear first: deserializing into a live map would add to it.
                self.cc.ClearEvalAutomorphismKeys()
                self.cc.InsertEvalAutomorphismKey(self.boot_map, self.tag)
                self.loaded = "bootstrap"
            return
        path = self.files.get(op["id"])
        if path is None or self.loaded == op["id"]:
            return
        self.cc.ClearEvalAutomorphismKeys()
        if not self.cc.DeserializeEvalAutomorphismKey(path, fhe.BINARY):
            raise OSError(f"cannot read the keys of op {op['id']} from {path}")
        self.loaded = op["id"]

    def after(self, op: dict) -> None:
        # An op's own keys are freed at once; the bootstrapping map stays
        # referenced here (clearing the context does not free it).
        if self.mode == "per-op" and self.loaded is not None and self.loaded != "bootstrap":
            self.cc.ClearEvalAutomorphismKeys()
            self.loaded = None

    def close(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

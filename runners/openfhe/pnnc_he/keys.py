"""Evaluation keys within a memory budget.

A rotation (automorphism) key under HYBRID key switching holds `digits` pairs
of ring elements over all RNS towers of Q and P: digits x 2 x (L + 1 + #P) x N
words. At N = 2^16 with 23 towers that is 93 MiB per key, so a circuit with a
hundred rotations does not fit a laptop. Two modes:

- `all`: every rotation key in memory for the whole run (fastest);
- `per-op`: each distinct rotation key is generated once, serialized to its
  own file in a temporary folder and cleared (`ClearEvalAutomorphismKeys`).
  An op reads its keys back in groups of at most `group` keys, in the order
  it uses them (a linear op's baby steps, then its giant steps), and clears
  each group before reading the next, so the peak is one group's keys, not
  one op's (84 for ResNet-20's largest conv) or the circuit's. Every key an
  op uses is read once per op whatever the group size; reading costs about
  0.1-0.5 s per key here.

`auto` takes `all` when it fits the budget, else `per-op` with the largest
group that fits (the whole op when it does). When even one key at a time
does not fit, the run is refused before any key is generated, with the
estimate and the fix.

Bootstrapping keys (CoeffsToSlots / SlotsToCoeffs rotations and the
conjugation) and OpenFHE's bootstrapping precomputations stay in memory in
both modes: a circuit bootstraps many times. In `per-op` mode their key map
is kept aside and put back (`InsertEvalAutomorphismKey`, no copy) for each
bootstrap.
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


def use_order(op: dict) -> list[int]:
    """An op's rotation steps in the order its evaluation uses them.

    A linear op (`ckks.bsgs_matvec`) first rotates its input by the baby
    steps (0 < step < baby_step, ascending), then each partial sum by a giant
    step (multiples of baby_step, ascending); `ckks.rotate_sum` uses its
    steps in ascending order.
    """
    steps = op_rotations(op)
    g = int(op["kind"].get("baby_step", 0))
    if op["kind"]["op"] != "linear" or g <= 1:
        return steps
    babies = [s for s in steps if 0 < s < g]
    return babies + [s for s in steps if not 0 < s < g]


def op_groups(op: dict, group: int) -> list[list[int]]:
    """The op's steps in use order, in consecutive groups of at most `group`."""
    order = use_order(op)
    size = max(1, group) if group else max(1, len(order))
    return [order[i : i + size] for i in range(0, len(order), size)]


def live_values(circuit: Circuit) -> int:
    """Most ciphertext values alive at once when each is freed after its last use."""
    last = {0: 0}
    for op in circuit.ops:
        for j in op["inputs"]:
            last[j] = op["id"]
    out = circuit.doc["output"]
    alive, most = {0}, 1
    for op in circuit.ops:
        alive.add(op["id"])
        most = max(most, len(alive))
        alive = {j for j in alive if j == out or last.get(j, -1) > op["id"]}
    return most


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


# Automorphism keys OpenFHE 1.6's EvalBootstrapKeyGen makes per level budget
# at N = 2^16 with 2^15 slots, the conjugation key included (a little fewer at
# smaller rings); its precomputed CoeffsToSlots / SlotsToCoeffs plaintexts
# take about as much again. Measured for [3, 3] at ResNet-20's chain (sparse
# secret, 23 towers, 3 digits; docs/performance.md): [3, 3] 49 keys = 4.45 GiB
# serialized, 4.54 GiB resident, precomputations 4.53 GiB; [4, 4] 74 keys,
# 6.85 GiB resident, precomputations 2.51 GiB. [2, 2] and [1, 1]: earlier
# counts, not remeasured.
BOOTSTRAP_KEYS = {(3, 3): 49, (4, 4): 74, (2, 2): 90, (1, 1): 256}
# Temporaries of one EvalBootstrap, in ciphertexts of the full chain
# (measured at N = 2^16: 0.7 GiB above the keys and precomputations).
BOOTSTRAP_WORKING_CIPHERTEXTS = 32


def bootstrap_bytes(params: dict) -> int:
    """Bytes of the bootstrapping keys, precomputations and temporaries (0 without bootstrapping)."""
    plan = params.get("bootstrapping")
    if not plan:
        return 0
    keys = BOOTSTRAP_KEYS.get(tuple(int(b) for b in plan["level_budget"]), 128)
    return 2 * keys * key_bytes(params) + BOOTSTRAP_WORKING_CIPHERTEXTS * ciphertext_bytes(params)


def largest_baby_count(circuit: Circuit) -> int:
    """Most baby-step rotations of one linear op (ciphertexts held at once)."""
    most = 0
    for op in circuit.ops:
        g = int(op["kind"].get("baby_step", 0))
        most = max(most, sum(1 for s in op_rotations(op) if 0 < s < g))
    return most


# Python, numpy and OpenFHE's context before any key (measured ~0.2 GiB).
INTERPRETER_BYTES = 256 << 20


def process_bytes(circuit: Circuit) -> int:
    """The interpreter and the circuit's tensors in memory (ResNet-20's: 0.84 GiB)."""
    return INTERPRETER_BYTES + sum(int(getattr(t, "nbytes", 0)) for t in circuit.tensors.values())


def diagonal_bytes(circuit: Circuit, largest: bool = False) -> int:
    """The float64 diagonals of every linear op, or of the largest (one packing block each)."""
    counts = [len(op["kind"].get("diagonals", [])) for op in circuit.ops if op["kind"]["op"] == "linear"]
    return (max(counts, default=0) if largest else sum(counts)) * circuit.dim * 8


def estimate(circuit: Circuit, group: int = 0, keep_diagonals: bool = True) -> dict:
    """Bytes the keys and working ciphertexts need in each mode.

    `per-op` holds one group of `group` keys (0: an op's keys all at once);
    `per-key` is `per-op` with one key at a time, the least any mode needs.
    """
    p = circuit.params
    key, ct = key_bytes(p), ciphertext_bytes(p)
    per_op = max((len(op_rotations(op)) for op in circuit.ops), default=0)
    held = per_op if not group else min(group, per_op)
    # Live values, a linear op's rotated inputs (baby steps) and a few partial
    # sums; and the float64 diagonals: every linear op's when they are kept
    # for later ciphertexts (`run.linear_diagonals`), else the largest op's.
    diagonals = diagonal_bytes(circuit) if keep_diagonals else diagonal_bytes(circuit, largest=True)
    working = (live_values(circuit) + largest_baby_count(circuit) + 4) * ct + diagonals + process_bytes(circuit)
    boot = bootstrap_bytes(p)
    # +1: the relinearisation key.
    return {
        "key_bytes": key,
        "ciphertext_bytes": ct,
        "working_bytes": working,
        "rotation_keys": len(circuit.doc["rotations"]),
        "largest_op_keys": per_op,
        "group": held,
        "bootstrap_bytes": boot,
        "all": (len(circuit.doc["rotations"]) + 1) * key + working + boot,
        "per-op": (held + 1) * key + working + boot,
        "per-key": (min(1, per_op) + 1) * key + working + boot,
    }


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def largest_group(circuit: Circuit, budget: int, keep_diagonals: bool = True) -> int:
    """The most keys per group (at most the largest op's) that keep `per-op` within budget; 0 if none."""
    est = estimate(circuit, 0, keep_diagonals)
    room = budget - est["working_bytes"] - est["bootstrap_bytes"]
    # The group and the relinearisation key.
    return max(0, min(est["largest_op_keys"], room // est["key_bytes"] - 1))


def choose_mode(
    circuit: Circuit, mode: str, budget: int, group: int = 0, keep_diagonals: bool = True
) -> tuple[str, dict]:
    """The key mode (and, for `per-op`, the group size in est["group"]), or
    KeyBudgetError before any key exists. `group` 0 picks the largest group
    that fits; a positive `group` is used as given."""
    if mode not in MODES:
        raise KeyBudgetError(f"unknown key mode {mode!r} (use {', '.join(MODES)})")
    if group < 0:
        raise KeyBudgetError(f"the key group size must be at least 1 (0: chosen by the budget), not {group}")
    if mode == "auto":
        mode = "all" if not group and estimate(circuit, 0, keep_diagonals)["all"] <= budget else "per-op"
    if mode == "per-op" and not group:
        group = max(1, largest_group(circuit, budget, keep_diagonals))
    est = estimate(circuit, group, keep_diagonals)
    if est[mode] > budget:
        p = circuit.params
        fixes = []
        if mode == "all":
            fixes.append(f"--keys per-op needs about {gib(est['per-key'])} with one key at a time")
        elif est["group"] > 1:
            fixes.append(f"a smaller key group (PNNC_HE_KEY_GROUP=1 needs about {gib(est['per-key'])})")
        fixes.append(
            f"recompile with fewer key-switching digits (now {p['key_switch_digits']}; a key is "
            f"{est['key_bytes'] / (1 << 20):.0f} MiB at N = {p['ring_dim']} with {int(p['mult_depth']) + 1} towers)"
        )
        fixes.append("raise the budget (--memory-gb) on a machine with more memory")
        boot = f", bootstrapping {gib(est['bootstrap_bytes'])}" if est["bootstrap_bytes"] else ""
        held = f", {est['group']} at a time" if mode == "per-op" else ""
        raise KeyBudgetError(
            f"the keys need about {gib(est[mode])} in mode {mode} ({est['rotation_keys']} rotation keys, "
            f"at most {est['largest_op_keys']} for one op{held}, {est['key_bytes'] / (1 << 20):.0f} MiB each{boot}), "
            f"more than the {gib(budget)} budget; fix: " + "; or ".join(fixes)
        )
    return mode, est


class KeyStore:
    """Generates the circuit's keys and makes each op's rotation keys available.

    `before(op)` / `after(op)` frame an op; the evaluation calls `use(step)`
    before each rotation, which reads the step's group when it is not loaded.
    """

    def __init__(self, cc, circuit: Circuit, mode: str, group: int = 0):
        self.cc, self.circuit, self.mode = cc, circuit, mode
        self.folder = tempfile.mkdtemp(prefix="pnnc-he-keys-") if mode == "per-op" else None
        self.files: dict[int, str] = {}
        self.groups = {op["id"]: op_groups(op, group) for op in circuit.ops} if mode == "per-op" else {}
        self.op = None
        self.loaded: frozenset[int] = frozenset()
        self.loads = 0
        self.boot_map = None
        self.tag = ""

    def generate(self, secret_key) -> None:
        self.cc.EvalMultKeyGen(secret_key)
        self.tag = secret_key.GetKeyTag()
        plan = self.circuit.params.get("bootstrapping")
        if plan:
            self.cc.EvalBootstrapKeyGen(secret_key, int(plan["slots"]))
        steps = sorted({int(s) for s in self.circuit.doc["rotations"]})
        if self.mode == "all":
            if steps:
                self.cc.EvalRotateKeyGen(secret_key, steps)
            return
        if plan:
            # Kept by reference; cleared from the context until a bootstrap.
            self.boot_map = self.cc.GetEvalAutomorphismKeyMap(self.tag)
        self.cc.ClearEvalAutomorphismKeys()
        for step in steps:
            # One file per key: a group is any set of steps, read file by file
            # (deserializing into a live map adds to it), and no key is written twice.
            self.cc.EvalRotateKeyGen(secret_key, [step])
            path = os.path.join(self.folder, f"rotation{step}.key")
            if not self.cc.SerializeEvalAutomorphismKey(path, fhe.BINARY, self.tag):
                raise OSError(f"cannot write the rotation key {step} to {path}")
            self.cc.ClearEvalAutomorphismKeys()
            self.files[step] = path

    def before(self, op: dict) -> None:
        self.op = op
        if op["kind"]["op"] == "bootstrap" and self.boot_map is not None:
            # Clear first: inserting into a live map would add the circuit's keys to it.
            self.cc.ClearEvalAutomorphismKeys()
            self.cc.InsertEvalAutomorphismKey(self.boot_map, self.tag)
            self.loaded = frozenset()

    def use(self, step: int) -> None:
        """Make the rotation key of `step` available (reads its group if needed)."""
        if self.mode != "per-op" or step in self.loaded or self.op is None:
            return
        group = next((g for g in self.groups.get(self.op["id"], []) if step in g), None)
        if group is None:
            if step not in self.files:
                return  # undeclared: the evaluation reports it (MissingRotationKey)
            group = [step]  # declared by the circuit but not by this op
        self.cc.ClearEvalAutomorphismKeys()
        self.loaded = frozenset()
        for s in group:
            path = self.files[s]
            if not self.cc.DeserializeEvalAutomorphismKey(path, fhe.BINARY):
                raise OSError(f"cannot read the rotation key {s} of op {self.op['id']} from {path}")
        self.loaded = frozenset(group)
        self.loads += 1

    def after(self, op: dict) -> None:
        # An op's keys are freed at once; the bootstrapping map stays
        # referenced here (clearing the context does not free it).
        if self.mode == "per-op":
            self.cc.ClearEvalAutomorphismKeys()
            self.loaded = frozenset()
        self.op = None

    def close(self) -> None:
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

"""The runner end to end on small circuits in the pnnc circuit format."""

import copy
import io
import json
import os
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pnnc_he import circuit as circuit_mod  # noqa: E402
from pnnc_he import fixture, run  # noqa: E402


def write(tmp: Path, name: str, doc: dict) -> Path:
    path = tmp / name
    path.write_text(json.dumps(doc))
    return path


def run_main(circuit_doc: dict, inputs: dict, extra=()):
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        c = write(tmp, "c.json", circuit_doc)
        i = write(tmp, "in.json", inputs)
        report_path = tmp / "report.json"
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = run.main([str(c), "--inputs", str(i), "--report", str(report_path), *extra])
        report = json.loads(report_path.read_text()) if report_path.exists() else None
        return code, report, out.getvalue(), err.getvalue()


class EndToEndTest(unittest.TestCase):
    def test_every_op_kind_matches_plaintext_with_predicted_levels(self):
        doc = fixture.tiny_with_affine()
        code, report, out, _ = run_main(doc, fixture.random_inputs(2, 10))
        self.assertEqual(code, 0, out)
        self.assertTrue(report["passed"])
        self.assertEqual(
            [o["level_measured"] for o in report["ops"]], [[op["level_out"]] for op in doc["ops"]]
        )
        self.assertEqual({o["op"] for o in report["ops"]}, {"linear", "poly", "affine", "add", "sum"})
        self.assertLess(report["max_logit_error"], 1e-6)
        for s in report["samples"]:
            self.assertEqual(s["he_class"], s["plain_class"])
        self.assertIn("encrypted check: PASSED", out)

    def test_undeclared_rotation_names_the_op(self):
        doc = fixture.tiny_with_affine()
        dropped = doc["ops"][2]["kind"]["rotations"][-1]
        doc["rotations"].remove(dropped)
        code, report, out, _ = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 1)
        self.assertFalse(report["passed"])
        first_user = next(
            op["id"] for op in doc["ops"] if dropped in op["kind"].get("rotations", [])
        )
        self.assertEqual(report["failures"][0]["op"], first_user)
        self.assertIn("compiler bug", report["failures"][0]["message"])
        self.assertIn(f"failure: sample 0, op {first_user}", out)

    def test_wrong_predicted_level_is_a_mismatch(self):
        doc = fixture.tiny_with_affine()
        doc["ops"][1]["level_out"] += 1
        code, report, out, _ = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 1)
        self.assertEqual(report["level_mismatches"][0]["op"], 2)
        self.assertIn("level mismatch: op 2", out)

    def test_too_few_levels_fail_at_the_op_that_runs_out(self):
        doc = fixture.tiny_with_affine()
        doc["params"]["mult_depth"] = 5  # the circuit needs 7
        code, report, out, _ = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 1, out)
        self.assertEqual(report["failures"][0]["op"], 4)
        self.assertIn("approximation error is too high", report["failures"][0]["message"])
        self.assertIsNone(report["samples"][0]["he_class"])
        self.assertIn("encrypted check: FAILED", out)


class PackingTest(unittest.TestCase):
    def test_many_samples_share_one_ciphertext_and_match_one_per_ciphertext(self):
        doc = fixture.tiny_with_affine()
        inputs = fixture.random_inputs(5, 10, seed=4)
        code, packed, out, _ = run_main(doc, inputs)
        self.assertEqual(code, 0, out)
        self.assertEqual(len(packed["ciphertexts"]), 1)
        self.assertEqual(packed["ciphertexts"][0]["samples"], 5)
        code, single, out, _ = run_main(doc, inputs, ["--per-ciphertext", "2"])
        self.assertEqual(code, 0, out)
        self.assertEqual([b["samples"] for b in single["ciphertexts"]], [2, 2, 1])
        for a, b in zip(packed["samples"], single["samples"]):
            self.assertEqual(a["he_class"], b["he_class"])
            self.assertEqual(a["plain_class"], a["he_class"])
            self.assertLess(max(abs(x - y) for x, y in zip(a["he_logits"], b["he_logits"])), 1e-6)

    def test_too_many_per_ciphertext_is_an_error(self):
        doc = fixture.tiny_with_affine()
        spc = doc["packing"]["samples_per_ciphertext"]
        code, _, _, err = run_main(doc, fixture.random_inputs(1, 10), ["--per-ciphertext", str(spc + 1)])
        self.assertEqual(code, 1)
        self.assertIn(f"must be 1..{spc}", err)

    def test_inconsistent_packing_is_rejected(self):
        doc = fixture.tiny_with_affine()
        doc["packing"]["samples_per_ciphertext"] += 1
        code, _, _, err = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 2)
        self.assertIn("do not fit", err)


class KeysTest(unittest.TestCase):
    def test_per_op_keys_give_the_same_result_as_all_keys(self):
        doc = fixture.tiny_with_affine()
        inputs = fixture.random_inputs(2, 10, seed=3)
        code, every, out, _ = run_main(doc, inputs, ["--keys", "all"])
        self.assertEqual(code, 0, out)
        code, per_op, out, err = run_main(doc, inputs, ["--keys", "per-op"])
        self.assertEqual(code, 0, out + err)
        self.assertEqual(per_op["keys"]["mode"], "per-op")
        self.assertTrue(per_op["passed"])
        for a, b in zip(every["samples"], per_op["samples"]):
            self.assertEqual(a["he_class"], b["he_class"])
            self.assertLess(max(abs(x - y) for x, y in zip(a["he_logits"], b["he_logits"])), 1e-6)

    def test_keys_read_in_groups_give_the_same_result_as_all_keys(self):
        doc = fixture.tiny_with_affine()
        inputs = fixture.random_inputs(2, 10, seed=3)
        code, every, out, _ = run_main(doc, inputs, ["--keys", "all"])
        self.assertEqual(code, 0, out)
        with_keys = [op for op in doc["ops"] if op["kind"].get("rotations")]
        for group in (1, 2):
            code, grouped, out, err = run_main(doc, inputs, ["--keys", "per-op", "--key-group", str(group)])
            self.assertEqual(code, 0, out + err)
            self.assertEqual(grouped["keys"]["group"], group)
            # One read per group of every op with rotations: more reads than ops.
            expected = sum(-(-len(op["kind"]["rotations"]) // group) for op in with_keys)
            self.assertEqual(grouped["keys"]["group_loads"], expected)
            self.assertGreater(expected, len(with_keys))
            for a, b in zip(every["samples"], grouped["samples"]):
                self.assertEqual(a["he_class"], b["he_class"])
                self.assertLess(max(abs(x - y) for x, y in zip(a["he_logits"], b["he_logits"])), 1e-6)

    def test_a_linear_op_reads_its_baby_steps_before_its_giant_steps(self):
        from pnnc_he import keys

        op = {"kind": {"op": "linear", "baby_step": 4, "rotations": [-8, 1, 2, 3, 4, 8, 12]}}
        self.assertEqual(keys.use_order(op), [1, 2, 3, -8, 4, 8, 12])
        self.assertEqual(keys.op_groups(op, 3), [[1, 2, 3], [-8, 4, 8], [12]])
        self.assertEqual(keys.op_groups(op, 0), [[1, 2, 3, -8, 4, 8, 12]])
        summed = {"kind": {"op": "sum", "rotations": [16, 4, 8]}}
        self.assertEqual(keys.op_groups(summed, 2), [[4, 8], [16]])

    def test_the_group_estimate_holds_one_group_of_keys(self):
        from pnnc_he import keys

        c = circuit_mod.Circuit(Path("c.json"), fixture.tiny_with_affine(), {})
        whole, one = keys.estimate(c), keys.estimate(c, 1)
        self.assertEqual(whole["per-op"] - one["per-op"], (whole["largest_op_keys"] - 1) * whole["key_bytes"])
        self.assertEqual(one["per-op"], one["per-key"])
        # The budget picks the largest group that fits, and per-op over all keys when all do not fit.
        for g in range(1, whole["largest_op_keys"] + 1):
            budget = keys.estimate(c, g)["per-op"]
            self.assertEqual(keys.largest_group(c, budget), g)
            mode, est = keys.choose_mode(c, "auto", budget)
            self.assertEqual((mode, est["group"]), ("per-op", g))
            self.assertLessEqual(est["per-op"], budget)
        with self.assertRaises(keys.KeyBudgetError) as e:
            keys.choose_mode(c, "per-op", one["per-key"] - 1)
        self.assertIn("1 at a time", str(e.exception))
        with self.assertRaises(keys.KeyBudgetError) as e:
            keys.choose_mode(c, "per-op", whole["per-op"] - 1, whole["largest_op_keys"])
        self.assertIn("PNNC_HE_KEY_GROUP=1", str(e.exception))

    def test_the_estimate_counts_the_circuits_tensors(self):
        import numpy as np
        from pnnc_he import keys

        doc = fixture.tiny_with_affine()
        small = keys.estimate(circuit_mod.Circuit(Path("c.json"), doc, {}))
        big = keys.estimate(circuit_mod.Circuit(Path("c.json"), doc, {"w": np.zeros(1 << 20)}))
        self.assertEqual(big["working_bytes"] - small["working_bytes"], 8 << 20)
        self.assertEqual(big["per-op"] - small["per-op"], 8 << 20)

    def test_the_estimate_counts_the_values_alive_at_once(self):
        from pnnc_he import keys

        doc = fixture.tiny_with_affine()
        c = circuit_mod.Circuit(Path("c.json"), doc, {})
        # A chain keeps at most the value being computed and its input; a
        # residual add keeps its skip input alive too.
        has_skip = any(op["kind"]["op"] == "add" for op in doc["ops"])
        self.assertEqual(keys.live_values(c), 3 if has_skip else 2)

    def test_a_bootstrap_refreshes_levels_and_matches_plaintext(self):
        # Toy insecure parameters (N = 2^12, security 0): a real OpenFHE bootstrap.
        doc = fixture.tiny_bootstrap()
        inputs = fixture.random_inputs(2, 8, seed=5)
        code, report, out, err = run_main(doc, inputs, ["--keys", "all"])
        self.assertEqual(code, 0, out + err)
        self.assertTrue(report["passed"], out)
        boot = next(o for o in report["ops"] if o["op"] == "bootstrap")
        self.assertEqual(boot["level_measured"], [16])
        before = next(o for o in report["ops"] if o["id"] == doc["ops"][boot["id"] - 1]["inputs"][0])
        self.assertEqual(before["level_measured"], [19])
        self.assertLess(report["max_logit_error"], 1e-3)
        # Per-op keys (one at a time) keep the bootstrapping keys aside: the same result.
        code, per_op, out, err = run_main(doc, inputs, ["--keys", "per-op", "--key-group", "1"])
        self.assertEqual(code, 0, out + err)
        self.assertEqual(per_op["keys"]["mode"], "per-op")
        for a, b in zip(report["samples"], per_op["samples"]):
            self.assertEqual(a["he_class"], b["he_class"])
            self.assertLess(max(abs(x - y) for x, y in zip(a["he_logits"], b["he_logits"])), 1e-3)

    def test_the_bootstrap_bench_measures_the_planned_level(self):
        from pnnc_he import bootstrap_bench

        c = circuit_mod.Circuit(Path("c.json"), fixture.tiny_bootstrap(), {})
        out = io.StringIO()
        rows = bootstrap_bench.bench(c, 1, out)
        self.assertEqual([r["level_out"] for r in rows], [16])
        self.assertEqual(rows[0]["level_in"], 19)
        self.assertLess(rows[0]["max_error"], 1e-2)
        self.assertIn("keygen", out.getvalue())

    def test_the_bootstrap_bench_measures_another_level_budget(self):
        from pnnc_he import bootstrap_bench

        c = circuit_mod.Circuit(Path("c.json"), fixture.tiny_bootstrap(), {})
        out = io.StringIO()
        rows = bootstrap_bench.bench(c, 1, out, level_budget=[4, 4])
        # Sparse secret: [4, 4] takes 18 levels (the plan's [3, 3] 16).
        self.assertEqual([(r["level_planned"], r["level_out"]) for r in rows], [(18, 18)])
        self.assertLess(rows[0]["max_error"], 1e-2)
        self.assertRegex(out.getvalue(), r"level budget \[4, 4\]: 18 levels")
        self.assertRegex(out.getvalue(), r"\d+\.\d automorphism keys")

    def test_bootstrapping_keys_count_in_the_estimate_and_the_refusal(self):
        from pnnc_he import keys

        c = circuit_mod.Circuit(Path("c.json"), fixture.tiny_bootstrap(), {})
        est = keys.estimate(c)
        self.assertGreater(est["bootstrap_bytes"], 0)
        self.assertGreaterEqual(est["per-op"], est["bootstrap_bytes"])
        with self.assertRaises(keys.KeyBudgetError) as e:
            keys.choose_mode(c, "auto", est["bootstrap_bytes"])
        self.assertIn("bootstrapping", str(e.exception))
        self.assertIn("fix:", str(e.exception))

    def test_a_bootstrap_depth_other_than_openfhes_is_refused(self):
        doc = fixture.tiny_bootstrap()
        doc["params"]["bootstrapping"]["bootstrap_levels"] = 15
        code, report, out, err = run_main(doc, fixture.random_inputs(1, 8))
        self.assertEqual(code, 1, out + err)
        self.assertIn("consumes 16 levels, the circuit planned 15", out + err)

    def test_auto_takes_per_op_keys_when_all_do_not_fit(self):
        from pnnc_he import keys

        c = circuit_mod.Circuit(Path("c.json"), fixture.tiny_with_affine(), {})
        est = keys.estimate(c)
        self.assertLess(est["per-op"], est["all"])
        self.assertEqual(keys.choose_mode(c, "auto", est["all"])[0], "all")
        self.assertEqual(keys.choose_mode(c, "auto", est["per-op"])[0], "per-op")
        # The estimate follows the key size: digits x 2 x (towers + special primes) x N words.
        p = c.params
        self.assertEqual(
            est["key_bytes"],
            p["key_switch_digits"] * 2 * (p["mult_depth"] + 1 + keys.special_towers(p)) * p["ring_dim"] * 8,
        )

    def test_keys_that_do_not_fit_are_refused_before_key_generation(self):
        doc = fixture.tiny_with_affine()
        code, report, _, err = run_main(doc, fixture.random_inputs(1, 10), ["--memory-gb", "0.0001"])
        self.assertEqual(code, 1)
        self.assertIsNone(report)
        self.assertIn("the keys need about", err)
        self.assertIn("fix:", err)
        self.assertIn("fewer key-switching digits", err)
        self.assertNotRegex(err, r"keys: \d+ rotation keys")

    def test_the_key_size_estimate_matches_openfhe(self):
        import openfhe as fhe
        from pnnc_he import ckks, keys

        params = {"ring_dim": 1 << 12, "mult_depth": 7, "scale_bits": 40, "first_mod_bits": 50, "key_switch_digits": 3}
        cc, _ = ckks.make_context(1 << 12, 7, 40, 50, 0, 1 << 11, 3)
        kp = cc.KeyGen()
        cc.EvalRotateKeyGen(kp.secretKey, [1])
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "k")
            # Only this key pair's tag: keys left in OpenFHE's process-wide map by
            # other tests (bootstrapping's) must not count.
            self.assertTrue(cc.SerializeEvalAutomorphismKey(path, fhe.BINARY, kp.secretKey.GetKeyTag()))
            size = os.path.getsize(path)
        cc.ClearEvalAutomorphismKeys()
        self.assertLess(abs(size - keys.key_bytes(params)) / size, 0.05, (size, keys.key_bytes(params)))


class BadInputTest(unittest.TestCase):
    def test_other_version_is_rejected(self):
        doc = fixture.tiny_with_affine()
        doc["version"] = 1
        code, report, _, err = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 2)
        self.assertIsNone(report)
        self.assertIn("version 1", err)

    def test_wrong_sample_length(self):
        code, _, _, err = run_main(fixture.tiny_with_affine(), fixture.random_inputs(1, 9))
        self.assertEqual(code, 2)
        self.assertIn("sample 0 has 9 values", err)

    def test_nan_weight_and_bad_reference(self):
        doc = fixture.tiny_with_affine()
        doc["tensors"]["tensors"]["op1.bias"]["data"][0] = float("nan")
        with tempfile.TemporaryDirectory() as d:
            path = write(Path(d), "c.json", doc)
            with self.assertRaisesRegex(circuit_mod.CircuitError, "op 0: matrix or bias holds NaN"):
                circuit_mod.load(path)

    def test_edited_diagonals_are_rejected(self):
        doc = copy.deepcopy(fixture.tiny_with_affine())
        doc["ops"][0]["kind"]["diagonals"].pop()
        code, _, _, err = run_main(doc, fixture.random_inputs(1, 10))
        self.assertEqual(code, 2)
        self.assertIn("declared `diagonals` differ", err)


if __name__ == "__main__":
    unittest.main()

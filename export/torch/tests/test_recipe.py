"""Schedules, boundary reductions and clipping with pnnc's semantics (the values of
train/schedule.rs's own tests), and the error naming a layer this package cannot build."""

import json
import os
import tempfile
import unittest

import torch

from pnnc_torch import ir, recipe


def rates(schedule, epochs, losses):
    s = recipe.LrSchedule(schedule, [1e-3, 1e-4], epochs)
    out = [list(s.current)]
    for loss in losses:
        s.step(loss)
        out.append(list(s.current))
    return out


class ScheduleTest(unittest.TestCase):
    def test_plateau_reduces_after_patience_and_clamps_per_group(self):
        r = rates({"Plateau": {"factor": 0.1, "patience": 1, "min_lr": 5e-6}}, 10,
                  [1.0, 0.5, 0.5, 0.49999, 0.6, 0.7])
        for got, want in zip(r[3:], [[1e-3, 1e-4], [1e-4, 1e-5], [1e-4, 1e-5], [1e-5, 5e-6]]):
            for a, b in zip(got, want):
                self.assertAlmostEqual(a, b, delta=1e-15)

    def test_plateau_threshold_is_relative_to_the_best_loss(self):
        """schedule.rs's own cases: with the official 0.1 a 5 % improvement is a bad epoch;
        a schedule without `threshold` (older files) means PyTorch's 1e-4."""
        plateau = lambda t: {"Plateau": dict({"factor": 0.1, "patience": 1, "min_lr": 0.0},  # noqa: E731
                                             **({} if t is None else {"threshold": t}))}
        self.assertEqual(rates(plateau(0.1), 10, [1.0, 0.95, 0.9])[3][0], 1e-4)
        self.assertEqual(rates(plateau(1e-4), 10, [1.0, 0.95, 0.9])[3][0], 1e-3)
        self.assertEqual(rates(plateau(None), 10, [1.0, 0.95, 0.9])[3][0], 1e-3)
        self.assertEqual(rates(plateau(0.1), 10, [1.0, 0.88, 0.85])[3][0], 1e-3)

    def test_cosine_and_multistep(self):
        r = rates({"Cosine": {"min_lr": 0.0}}, 4, [0.0] * 4)
        for g, w in zip(r, [1.0, 0.853553390593, 0.5, 0.146446609407, 0.0]):
            self.assertAlmostEqual(g[0], 1e-3 * w, delta=1e-12)
        r = rates({"MultiStep": {"milestones": [2, 4], "gamma": 0.5}}, 5, [0.0] * 5)
        self.assertEqual([g[0] for g in r], [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])

    def test_round_trips_through_pnnc_json(self):
        s = recipe.LrSchedule("Constant", [0.1, 0.01], 3)
        s.step(1.0)
        back = recipe.LrSchedule.from_json(json.loads(json.dumps(s.to_json())))
        self.assertEqual(back.to_json(), s.to_json())


class BoundaryTest(unittest.TestCase):
    def terms(self):
        a = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
        b = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
        return a, b, {"s1": (a, 2), "s2": (b, 1)}  # per-sample sizes 2 and 1

    def test_reductions_and_their_gradients(self):
        # batch 3: site means 6/6 = 1 and 2/3.
        cases = {"Sum": (1 + 2 / 3, [1 / 6, 1 / 3]), "L1": (1 + 2 / 3, [1 / 6, 1 / 3]),
                 "Max": (1.0, [1 / 6, 0.0])}
        for reduce, (value, grads) in cases.items():
            a, b, terms = self.terms()
            bl = recipe.Boundary({"kind": "Exp", "penalty": None, "weight": 2.0, "reduce": reduce})
            loss, v = bl.loss(terms, 3, None)
            loss.backward()
            self.assertAlmostEqual(float(v), 2 * value)
            self.assertAlmostEqual(float(a.grad), 2 * grads[0])
            self.assertAlmostEqual(float(b.grad), 2 * grads[1])
        a, b, terms = self.terms()
        bl = recipe.Boundary({"kind": "L2", "penalty": 1.0, "weight": 1.0, "reduce": "L2"})
        loss, v = bl.loss(terms, 3, None)
        self.assertAlmostEqual(float(v), (1 + (2 / 3) ** 2) ** 0.5)

    def test_selective_clipping_leaves_batchnorm_out(self):
        w = torch.nn.Parameter(torch.zeros(2))
        g = torch.nn.Parameter(torch.zeros(2))
        c = torch.nn.Parameter(torch.zeros(1))
        w.grad, g.grad, c.grad = torch.tensor([3.0, 4.0]), torch.tensor([100.0, -100.0]), \
            torch.tensor([12.0])
        trainable = [("w", w, "Plain"), ("bn.gamma", g, "BatchNormAffine"), ("p", c, "PolyCoeffs")]
        clip = recipe.Clipper({"max_norm": 1.0, "except": "BatchNorm"}, trainable)
        norm = clip.apply(clip.squares())
        self.assertAlmostEqual(float(norm), 13.0, places=5)
        self.assertEqual(g.grad.tolist(), [100.0, -100.0])
        self.assertAlmostEqual(float(torch.cat([w.grad, c.grad]).norm()), 1.0, places=5)
        clip_all = recipe.Clipper({"max_norm": 1.0, "except": "None"}, trainable)
        self.assertTrue(all(clip_all.chosen))


class ExpressibleTest(unittest.TestCase):
    def test_an_unknown_layer_is_named(self):
        model = {"name": "m", "source_hash": "h", "input": [4], "classes": 2, "net": [
            {"name": "fc", "kind": {"Dense": {"in_features": 4, "out_features": 2, "bias": True}},
             "input": [4], "output": [2]},
            {"name": "att", "kind": {"Attention": {"heads": 2}}, "input": [2], "output": [2],
             "loc": {"file": "m.pnn", "line": 7, "column": 3}}]}
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model.json"), "w") as f:
                json.dump(model, f)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump({"format": ir.FORMAT, "run": {"model_hash": "h"}, "init_coeffs": {}}, f)
            with self.assertRaises(ir.ExportError) as e:
                ir.Export(d)
        self.assertIn("layer `att` (m.pnn:7:3) is a `Attention`", str(e.exception))

    def test_an_unknown_basis_is_named(self):
        op = {"name": "p1", "kind": {"Poly": {"basis": "Hermite"}}}
        with self.assertRaises(ir.ExportError) as e:
            ir.check_expressible({"net": [op]}, "model.json", {"Power", "Chebyshev"})
        self.assertIn("layer `p1` uses the polynomial basis `Hermite`", str(e.exception))


if __name__ == "__main__":
    unittest.main()


class DivergenceTest(unittest.TestCase):
    """The messages of train/run.rs `divergence_help` (its own test's cases)."""

    def test_help_names_the_cause(self):
        from pnnc_torch.trainer import divergence_help, escaped_site

        exp = {"kind": "Exp", "penalty": 12.0, "weight": 10.0, "reduce": "Sum"}
        far = ("stage3.poly1", 113.7, 12.0)
        near = ("stage3.poly1", 30.0, 12.0)
        h = divergence_help(0, far, exp)
        self.assertTrue(h.startswith("at the initial weights, before any update"), h)
        self.assertIn("exp(113.7 - 12)", h)
        self.assertNotIn("learning rate", h)
        h = divergence_help(5, far, exp)
        self.assertIn("overflows float32", h)
        self.assertIn("learning rate", h)
        self.assertTrue(divergence_help(5, near, exp).startswith("lower the learning rate"))
        self.assertNotIn("overflows", divergence_help(5, far, dict(exp, kind="L2")))
        self.assertIn("cap: 10", divergence_help(0, far, exp))
        capped = dict(exp, kind={"ExpCapped": {"cap": 10.0}})
        self.assertNotIn("overflows", divergence_help(0, far, capped))
        h = divergence_help(0, ("raw", 57.0, 47.0), None, poly_overflowed=True)
        self.assertIn("the polynomial at `raw` overflows float32 at |x| = 57", h)
        self.assertIn("basis: chebyshev", h)
        self.assertIn("larger fit range B", divergence_help(0, near, None))
        own = dict(exp, penalty=None)
        self.assertIn("exp(113.7 - 12)", divergence_help(0, far, own))
        worst = escaped_site([("a", 2.0), ("b", float("nan")), ("c", 50.0)], {"a": 1.0, "c": 12.0})
        self.assertEqual(worst[0], "b")

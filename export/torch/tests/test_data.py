"""pnnc's augmentation applied with tensor ops equals the per-pixel rule of
data/augment.rs (pnnc's own output is compared in tests/torch_export.rs)."""

import unittest

import numpy as np
import torch

from pnnc_torch import data


def naive(x, draws, shape, aug):
    out = x.clone()
    c, h, w = shape
    for j in range(x.shape[0]):
        dy, dx, flip, width, start = (int(v) for v in draws[:, j])
        if aug.get("crop_padding", 0) or aug.get("hflip"):
            for ch in range(c):
                for yy in range(h):
                    for xx in range(w):
                        sx = (w - 1 - xx if flip else xx) + dx
                        sy = yy + dy
                        inside = 0 <= sy < h and 0 <= sx < w
                        out[j, ch, yy, xx] = x[j, ch, sy, sx] if inside else 0.0
        if aug.get("time_mask", 0):
            out[j, ..., start:start + width] = 0.0
    return out


class AugmentTest(unittest.TestCase):
    def test_crop_flip_and_time_mask_follow_the_rule(self):
        shape = [2, 5, 6]
        x = torch.arange(7 * 60, dtype=torch.float32).reshape(7, *shape) + 1
        for aug in ({"crop_padding": 2, "hflip": True}, {"hflip": True},
                    {"crop_padding": 1, "time_mask": 3}, {"time_mask": 6}):
            draws = data.augment_draws(5, 3, 7, shape, aug)
            self.assertTrue((draws == data.augment_draws(5, 3, 7, shape, aug)).all())
            got = data.apply_augment(x, draws, shape, aug)
            torch.testing.assert_close(got, naive(x, draws, shape, aug), msg=str(aug))

    def test_no_augmentation_draws_nothing(self):
        draws = data.augment_draws(1, 0, 4, [3, 4, 4], {"crop_padding": 0, "hflip": False})
        self.assertTrue((draws == 0).all())
        x = torch.randn(4, 3, 4, 4)
        self.assertTrue(torch.equal(data.apply_augment(x, draws, [3, 4, 4], {}), x))

    def test_draws_stay_in_range(self):
        d = data.augment_draws(9, 1, 500, [1, 4, 10], {"crop_padding": 3, "hflip": True,
                                                       "time_mask": 4})
        self.assertTrue(((d[0] >= -3) & (d[0] <= 3)).all() and ((d[1] >= -3) & (d[1] <= 3)).all())
        self.assertTrue(set(np.unique(d[2]).tolist()) == {0, 1})
        self.assertTrue(((d[3] >= 0) & (d[3] <= 4) & (d[4] + d[3] <= 10)).all())


if __name__ == "__main__":
    unittest.main()

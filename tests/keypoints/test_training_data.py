"""The training images drawn SynthSeg-style: the same anatomy on another grid and look."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from vfs_utils.keypoints import _data, training  # noqa: E402


def test_a_variant_keeps_the_anatomy_in_mm_and_draws_a_new_grid():
    truth = _data.synthetic_truth(_data.SYNTH_SEED, 3)
    sp0 = np.asarray(truth.geometry.spacing)
    mm0 = np.stack([v.points for v in truth.vertebrae]) * sp0
    seen = set()
    for seed in range(4):
        var, appearance = _data.variant(truth, np.random.default_rng(seed))
        sp = np.asarray(var.geometry.spacing)
        mm = np.stack([v.points for v in var.vertebrae]) * sp
        np.testing.assert_allclose(mm, mm0, atol=1e-6)
        # the grid still holds the whole spine, and its spacing lies in the drawn ranges
        extent = (np.asarray(var.geometry.shape) - 1) * sp
        assert np.all(extent >= mm0.reshape(-1, 3).max(axis=0))
        assert _data.PIXEL_MM[0] <= sp[0] == sp[1] <= _data.PIXEL_MM[1]
        assert _data.SLICE_MM[0] <= sp[2] <= _data.SLICE_MM[1]
        assert {"tissue_hu", "noise"} <= set(appearance)
        seen.add(round(float(sp[2]), 3))
    assert len(seen) == 4          # each draw its own grid


def test_augment_keeps_shape_and_changes_the_look_within_bounds():
    rng = np.random.default_rng(0)
    img = np.zeros((96, 128), np.float32)
    img[30:60, 40:80] = 1.0
    outs = [training.augment(img, rng) for _ in range(20)]
    assert all(o.shape == img.shape and o.dtype == np.float32 for o in outs)
    # the bright block stays brighter than the background (contrast 0.8-1.25 keeps sign)
    assert all(o[40:50, 50:70].mean() > o[:10, :10].mean() + 0.5 for o in outs)
    assert len({round(float(o.mean()), 4) for o in outs}) == 20


def test_deformed_vertebrae_are_found_from_their_heights():
    truth = _data.synthetic_truth(_data.SYNTH_SEED, 3)
    ex = _data.render_example(truth)
    sp = np.asarray(truth.geometry.spacing)
    h = truth.heights_mm()
    loss = 1 - np.minimum(h[:, 0], h[:, 1]) / h[:, 2]
    np.testing.assert_array_equal(training._deformed(ex), np.nonzero(loss >= 0.2)[0])
    assert sp.shape == (3,)

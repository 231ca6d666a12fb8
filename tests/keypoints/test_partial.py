"""Vertebrae cut by the field of view are reported as partial and not graded."""
from __future__ import annotations

import numpy as np

from vfs_utils.keypoints import detect


def test_a_vertebra_cut_by_the_top_of_the_volume_is_partial():
    from vfs_utils.phantom import render_volume, sample_spine

    truth = sample_spine(np.random.default_rng(3), shape=(256, 256))
    vol = render_volume(truth, rng=np.random.default_rng(0))
    sp = truth.geometry.spacing
    pts = np.stack([v.points for v in truth.vertebrae]).astype(float)
    j = 5                                              # cut a third of the way down its body
    lo, hi = pts[j, :, 2].min(), pts[j, :, 2].max()
    start = int(lo + (hi - lo) / 3)
    crop = vol[:, :, start:]
    det = detect(crop, sp)
    whole = np.stack([v.points for v in det.annotation.experts["model"]])
    # no point of a graded vertebra lies outside the volume (and none was clipped onto
    # its edge: the cut one is not among them)
    assert (whole >= -0.5).all() and (whole <= np.array(crop.shape) - 0.5).all()
    cut_centre = pts[j, :, 2].mean() - start
    assert np.abs(whole[:, :, 2].mean(axis=1) - cut_centre).min() * sp[2] > 10
    assert det.partial, "the cut vertebra is listed as partial"
    near = [v for v in det.partial
            if abs(v.points[:, 2].mean() - cut_centre) * sp[2] < 10]
    assert near and (near[0].points[:, 2] < -0.5).any()
    assert len(det.partial_scores) == len(det.partial)
    # the graded vertebrae keep the names of the truth (counted from the ribs)
    assert det.level_source == "ribs"
    centres = pts.mean(axis=1)[:, 2] - start
    for v in det.annotation.experts["model"]:
        k = int(np.argmin(np.abs(centres - v.points[:, 2].mean())))
        assert v.level == truth.vertebrae[k].level

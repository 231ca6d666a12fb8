"""The decoder on hand-made heatmaps: expected points worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from vfs_utils.keypoints import decode


def _offsets(h, w, value_rows, value_cols):
    off = np.zeros((12, h, w))
    off[0::2] = value_rows
    off[1::2] = value_cols
    return off


def test_single_peak_reads_cell_centre_plus_offsets():
    heat = np.zeros((6, 8))
    heat[2, 3] = 0.9
    off = np.zeros((12, 6, 8))
    # keypoint k: row offset k/16, col offset -k/16 (units of 16 px)
    for k in range(6):
        off[2 * k, 2, 3] = k / 16
        off[2 * k + 1, 2, 3] = -k / 16
    pts, scores = decode(heat, off, threshold=0.5, stride=4, offset_scale=16)
    # cell (2, 3) centre: row 2*4 + 1.5 = 9.5, col 3*4 + 1.5 = 13.5; offsets k px
    assert pts.shape == (1, 6, 2)
    assert scores.tolist() == [0.9]
    for k in range(6):
        assert pts[0, k].tolist() == pytest.approx([9.5 + k, 13.5 - k])


def test_neighbours_are_averaged_by_heat():
    heat = np.zeros((5, 5))
    heat[2, 2] = 0.8
    heat[2, 3] = 0.4            # a shoulder of the same peak, not a peak itself
    off = np.zeros((12, 5, 5))
    # both cells point at the same place except the shoulder, which says 3 px lower rows
    off[0::2, 2, 2] = 0.0
    off[0::2, 2, 3] = 3 / 16
    off[1::2, 2, 2] = 0.0
    off[1::2, 2, 3] = -4 / 16    # cell (2,3) is 4 px to the right: -4 px lands on col 9.5
    pts, _ = decode(heat, off, threshold=0.5)
    # rows: (0.8 * 9.5 + 0.4 * 12.5) / 1.2 = 10.5; cols: 9.5 from both
    assert pts[0, :, 0] == pytest.approx([10.5] * 6)
    assert pts[0, :, 1] == pytest.approx([9.5] * 6)


def test_threshold_nms_and_order():
    heat = np.zeros((4, 20))
    heat[1, 15] = 0.95          # col centre 61.5
    heat[1, 4] = 0.6            # col centre 17.5
    heat[1, 5] = 0.7            # neighbour of (1, 4): it is the local maximum
    heat[3, 10] = 0.2           # below the threshold
    heat[2, 16] = 0.5           # 4.1 px from the strongest peak: suppressed (min_dist 10)
    heat[3, 16] = 0.4
    off = _offsets(4, 20, 0.0, 0.0)
    pts, scores = decode(heat, off, threshold=0.3, min_dist=10)
    # two vertebrae, head -> feet (by column): the 0.7 peak at col 21.5, then 0.95 at 61.5
    assert scores.tolist() == [0.7, 0.95]
    assert pts[:, :, 1].mean(axis=1).tolist() == pytest.approx(
        [(0.6 * 17.5 + 0.7 * 21.5) / 1.3, (0.95 * 61.5 + 0.5 * 65.5) / 1.45])


def test_empty_and_bad_shapes():
    pts, scores = decode(np.zeros((3, 3)), np.zeros((12, 3, 3)))
    assert pts.shape == (0, 6, 2) and scores.shape == (0,)
    with pytest.raises(ValueError, match="offsets"):
        decode(np.zeros((3, 3)), np.zeros((10, 3, 3)))


def test_one_vertebra_seen_twice_keeps_the_stronger_detection():
    from vfs_utils.keypoints.predict import CROWDED, _uncrowd

    centres = [10.0, 35.0, 60.0, 64.0, 85.0, 110.0]        # 60 and 64: one vertebra twice
    pix = np.zeros((6, 6, 2))
    pix[:, :, 1] = np.array(centres)[:, None]
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.9, 0.8])
    kept, kept_scores = _uncrowd(pix, scores)
    assert kept[:, 0, 1].tolist() == [10.0, 35.0, 64.0, 85.0, 110.0]
    assert kept_scores.tolist() == [0.9, 0.8, 0.7, 0.9, 0.8]
    # a gap of 0.6 of the median is two vertebrae (a short one): all kept
    even = np.zeros((6, 6, 2))
    even[:, :, 1] = np.array([0.0, 25.0, 50.0, 65.0, 90.0, 115.0])[:, None]
    assert 15.0 / 25.0 > CROWDED
    assert len(_uncrowd(even, scores)[0]) == 6

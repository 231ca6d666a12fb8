"""The phantom's normal vertebrae have the real data's shape (issue 12).

Sampled phantom readings of normal vertebrae against the real v2 annotations, both
measured at unit spacing (voxels), "normal" = within-vertebra QM grade 0
(:mod:`vfs_utils.morphometry`), per level where both have at least 20 normal
readings: the medians of Ha/Hp and Hm/Hp agree within 0.03 and their interquartile
ranges within a factor 1.5. The real targets are computed here from the annotation
files, not taken from the phantom's table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfs_utils import annotation, morphometry, phantom
from vfs_utils.annotation import LEVELS, Annotation

MIN_READINGS = 20
MEDIAN_TOLERANCE = 0.03
IQR_FACTOR = 1.5
RATIOS = ("wedge_index", "biconcave_index")     # Ha/Hp, Hm/Hp


def normal_stats(table: pd.DataFrame) -> dict[str, dict[str, tuple[int, float, float]]]:
    """level -> ratio -> (n, median, IQR) over the grade-0 readings."""
    normal = table[table["grade"] == 0]
    out = {}
    for level, x in normal.groupby("level"):
        out[level] = {r: (len(x), float(np.median(x[r])),
                          float(np.subtract(*np.percentile(x[r], [75, 25])))) for r in RATIOS}
    return out


@pytest.fixture(scope="module")
def real(v2_dir):
    frame = annotation.read_annotations(v2_dir)
    return normal_stats(morphometry.morphometry_table(frame, spacing=(1.0, 1.0, 1.0)))


@pytest.fixture(scope="module")
def sampled():
    anns = []
    for i in range(250):
        uid = f"1.2.826.0.1.3680043.10.99.{i}"
        truth = phantom.sample_spine(np.random.default_rng([12, i]), shape=(256, 256),
                                     series_uid=uid)
        readings = phantom.sample_readings(truth, np.random.default_rng([12, i, 1]))
        anns.append(Annotation(f"SHAPE{i:04d}", uid, "v2", readings))
    table = morphometry.morphometry_table(annotation.read_annotations(anns),
                                          spacing=(1.0, 1.0, 1.0))
    return normal_stats(table)


def test_normal_shape_matches_the_real_annotations_per_level(real, sampled):
    levels = [lv for lv in LEVELS if lv in real and lv in sampled
              and real[lv][RATIOS[0]][0] >= MIN_READINGS
              and sampled[lv][RATIOS[0]][0] >= MIN_READINGS]
    assert len(levels) >= 12, levels        # C7/Th1 to L1/L2 at least
    failures = []
    for lv in levels:
        for r in RATIOS:
            _, med_r, iqr_r = real[lv][r]
            _, med_p, iqr_p = sampled[lv][r]
            if abs(med_p - med_r) > MEDIAN_TOLERANCE:
                failures.append(f"{lv} {r}: median {med_p:.3f} vs real {med_r:.3f}")
            if not 1 / IQR_FACTOR <= iqr_p / iqr_r <= IQR_FACTOR:
                failures.append(f"{lv} {r}: IQR {iqr_p:.3f} vs real {iqr_r:.3f}")
    assert failures == []


def test_real_wedging_varies_by_level_and_the_phantom_follows(real, sampled):
    # physiological kyphosis: mid-thoracic bodies are the most wedged, in both
    mid = [lv for lv in ("Th6", "Th7")]
    ends = [lv for lv in ("Th2", "L1")]
    for stats in (real, sampled):
        assert max(stats[lv]["wedge_index"][1] for lv in mid) + 0.03 < \
            min(stats[lv]["wedge_index"][1] for lv in ends)

"""Tests of vfs_utils.phantom.spine: sampled spines and the spine of a real annotation."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from vfs_utils import phantom
from vfs_utils.annotation import load_annotation

BONE_HU = 150.0      # threshold separating bone from disc and soft tissue


def test_sampled_spine_is_anatomical(fractured_spine):
    truth = fractured_spine
    assert len(truth.vertebrae) == 14
    # three fractures; the other eleven are grade 0: normal or a non-fracture deformity
    assert sorted(v.deformity for v in truth.vertebrae if v.grade) == ["biconcave", "crush",
                                                                      "wedge"]
    assert all(v.deformity in ("normal", *phantom.NON_FRACTURE_DEFORMITIES)
               for v in truth.vertebrae if v.grade == 0)
    assert sum(v.grade == 0 for v in truth.vertebrae) == 11
    heights = truth.heights_mm()
    normal = [i for i, v in enumerate(truth.vertebrae) if v.grade == 0]
    # heights grow towards the feet; thoracic bodies 12-30 mm
    assert np.corrcoef(normal, heights[normal, 2])[0, 1] > 0.9
    assert 12 < heights[normal].min() and heights[normal].max() < 32
    for v, (ha, hm, hp) in zip(truth.vertebrae, heights):
        ref = max(ha, hp)
        if v.deformity == "wedge":
            assert 1 - ha / hp > 0.2 * (v.grade > 0)
        if v.deformity == "biconcave":
            assert 1 - hm / ref >= 0.25
        p = v.points
        assert np.all(np.diff(p[0::2, 0]) > 0), "pairs must be ordered anterior -> posterior"
        assert np.all(p[0::2, 2] < p[1::2, 2]), "each pair: upper endplate first"


def test_spine_from_v2_annotation_puts_points_on_bone(v2_dir, shortest_files):
    f = shortest_files(v2_dir, 1)[0]
    ann = load_annotation(f)
    truth = phantom.spine_from_annotation(ann)
    assert truth.series_uid == ann.series_uid and truth.folder == ann.folder
    annotated = [v for v in truth.vertebrae if v.annotated]
    levels = {v.level for vs in ann.experts.values() for v in vs}
    assert {v.level for v in annotated} == levels
    slab, box = phantom.render_sagittal_slab(truth, noise=0)
    offset = np.array([box[0][0], box[1][0], box[2][0]])
    # the centre of every expert's vertebra reading is inside bone
    centres = np.array([v.points.mean(axis=0) for vs in ann.experts.values() for v in vs])
    hu = ndimage.map_coordinates(slab.astype(np.float32), (centres - offset).T, order=1)
    assert (hu > BONE_HU).mean() > 0.95, hu

"""Non-fracture deformities, patient bone density and per-study acquisition of the phantom."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from vfs_utils import morphometry, phantom


@pytest.fixture(scope="module")
def many_spines():
    return [phantom.sample_spine(np.random.default_rng([21, i]), shape=(256, 256))
            for i in range(200)]


def test_non_fracture_deformities_are_grade_0_with_normal_ratios(many_spines):
    kinds = Counter(v.deformity for t in many_spines for v in t.vertebrae)
    for name in phantom.NON_FRACTURE_DEFORMITIES:
        assert kinds[name] > 10, kinds
    for t in many_spines:
        heights = t.heights_mm()
        for i, v in enumerate(t.vertebrae):
            if v.deformity in phantom.NON_FRACTURE_DEFORMITIES:
                assert v.grade == 0 and v.detail
                # QM grade of the true heights: still 0
                ha, hm, hp = heights[i]
                assert min(ha, hm, hp) / max(ha, hm, hp) > 0.8
            else:
                assert not v.detail
            if (v.deformity == "short_vertebra" and 0 < i < len(t.vertebrae) - 1
                    and all(t.vertebrae[j].deformity == "normal" for j in (i - 1, i + 1))):
                # uniformly lower than its normal neighbours (their mean): factor <= 0.88
                ref = 0.5 * (heights[i - 1, 2] + heights[i + 1, 2])
                assert heights[i, 2] < 0.95 * ref


def test_bone_density_is_per_patient_and_lower_with_fractures(many_spines):
    fractured = np.array([any(v.grade for v in t.vertebrae) for t in many_spines])
    bone = np.array([t.bone_hu for t in many_spines])
    assert 0.3 < fractured.mean() < 0.7
    assert np.median(bone[fractured]) < np.median(bone[~fractured]) - 30
    osteo = np.array([t.osteoporotic for t in many_spines])
    assert bone[osteo].max() <= 150 <= bone[~osteo].min()
    assert osteo[fractured].mean() > osteo[~fractured].mean() + 0.2


def test_acquisition_is_drawn_per_study_and_rendered(many_spines, fractured_spine):
    noise = np.array([t.noise_hu for t in many_spines])
    blur = np.array([t.blur_px for t in many_spines])
    offset = np.array([t.hu_offset for t in many_spines])
    assert noise.min() >= 10 and noise.max() <= 28 and noise.std() > 3
    assert blur.min() >= 0.4 and blur.max() <= 1.1
    assert np.abs(offset).max() <= 15 and offset.std() > 2
    base = fractured_spine                          # 512 x 512: air in the corners
    small = phantom.Geometry((512, 512, 6), base.geometry.spacing, base.geometry.origin)
    truth = dataclasses.replace(base, geometry=small, noise_hu=25.0, hu_offset=12.0)
    vol = phantom.render_volume(truth, rng=np.random.default_rng(0))
    corner = vol[:12, :12, :].astype(float)        # air outside the torso
    assert abs(corner.mean() - (-1000 + 12)) < 2
    assert abs(corner.std() - 25) < 2.5
    # explicit arguments override the study's values
    vol0 = phantom.render_volume(truth, noise=0, hu_offset=0)
    assert np.all(vol0[:12, :12, :] == -1000)


def _with(truth, index, deformity, detail):
    vs = list(truth.vertebrae)
    v = vs[index]
    vs[index] = phantom.VertebraTruth(v.points, v.level, 0, deformity,
                                      detail=dict(detail))
    return dataclasses.replace(truth, vertebrae=tuple(vs))


@pytest.fixture(scope="module")
def plain_spine():
    truth = phantom.sample_spine(np.random.default_rng(4), n_vertebrae=12, fractures=[],
                                 non_fracture=False)
    return dataclasses.replace(truth, bone_hu=220.0)     # not osteoporotic: bone vs disc


def _render(truth):
    slab, box = phantom.render_sagittal_slab(truth, noise=0, hu_offset=0, blur=0)
    return slab.astype(float), box


def test_schmorl_node_is_a_disc_filled_pit_in_the_named_endplate(plain_spine):
    i = 6
    plain, box = _render(plain_spine)
    detail = {"endplate": "lower", "position": 0.7, "offset_mm": 0.0, "radius_mm": 3.0,
              "depth_mm": 3.5}
    pitted, _ = _render(_with(plain_spine, i, "schmorl_node", detail))
    changed = np.argwhere(np.abs(pitted - plain) > 100)
    assert len(changed) > 20
    v = plain_spine.vertebrae[i]
    offset = np.array([box[0][0], box[1][0], box[2][0]])
    pts = v.points - offset
    # within the body, in its lower half (slices), posterior to the middle keypoints
    centre_slice = pts[:, 2].mean()
    assert np.all(changed[:, 2] > centre_slice)
    assert np.all(changed[:, 2] <= pts[1::2, 2].max() + 1)
    assert np.median(changed[:, 0]) > pts[2:4, 0].mean()
    # the pit holds disc-like HU where the plain body was bone
    pit = tuple(changed[pitted[tuple(changed.T)] < 150].T)
    assert len(pit[0]) > 5
    assert plain[pit].min() > 150 and 60 < pitted[pit].min() and np.median(pitted[pit]) < 110
    # the keypoints' heights are untouched: the measured-back helper of test_render
    from test_render import measured_heights, true_heights  # tests/phantom (rootdir mode)
    sp = plain_spine.geometry.spacing
    err = measured_heights(pitted, pts, sp) - true_heights(v.points, sp)
    assert np.abs(err).max() < 1.5


def test_osteophytes_are_anterior_spurs(plain_spine):
    i = 7
    plain, box = _render(plain_spine)
    spurs, _ = _render(_with(plain_spine, i, "osteophyte", {"upper_mm": 5.0, "lower_mm": 5.0}))
    changed = np.argwhere(spurs - plain > 150)
    assert len(changed) > 20
    pts = plain_spine.vertebrae[i].points - [box[0][0], box[1][0], box[2][0]]
    # anterior to the anterior keypoints (smaller row), near the two endplates
    assert np.all(changed[:, 0] < pts[0:2, 0].max())
    near_top = np.abs(changed[:, 2] - pts[0, 2]) < 5
    near_bottom = np.abs(changed[:, 2] - pts[1, 2]) < 5
    assert near_top.any() and near_bottom.any() and np.all(near_top | near_bottom)


def test_readings_of_a_short_vertebra_are_normal_within_but_low_against_neighbours(
        plain_spine):
    i = 6
    v = plain_spine.vertebrae[i]
    centre = v.points[[0, 2, 4]].mean(axis=0)
    short_pts = v.points.copy()
    # as sample_spine builds it: every height x 0.8 (here about the body's centre)
    short_pts[1::2] = centre + 0.8 * (v.points[1::2] - v.points[0::2]) + \
        (v.points[0::2] - centre)
    h = morphometry.heights(np.stack([plain_spine.vertebrae[i - 1].points, short_pts,
                                      plain_spine.vertebrae[i + 1].points]),
                            plain_spine.geometry.spacing)
    assert morphometry.genant_grade(1 - h[1].min() / h[1].max()) == 0
    assert h[1, 2] / h[[0, 2], 2].mean() < 0.85


def test_bone_density_of_an_annotation_phantom_follows_its_rendered_reading(v2_dir):
    # the image of a real annotation is rendered from one expert's reading; the patient's bone
    # is osteoporotic more often when that reading itself has a QM grade >= 2 vertebra at T4-L4
    from vfs_utils import annotation, baseline
    files = sorted(v2_dir.glob("*.json"))
    deformed, bone, osteo = [], [], []
    for path in files:
        ann = annotation.load_annotation(path)
        expert = baseline.image_expert(ann)
        truth = phantom.spine_from_annotation(ann, expert=expert)
        frame = annotation.read_annotations([path])
        frame = frame[frame["expert"] == expert]
        table = morphometry.morphometry_table(frame, spacing=truth.geometry.spacing)
        labelled = table[table["level"].isin(morphometry.LABEL_LEVELS)]
        deformed.append(bool((labelled["grade"] >= 2).any()))
        bone.append(truth.bone_hu)
        osteo.append(truth.osteoporotic)
    deformed, bone, osteo = np.array(deformed), np.array(bone), np.array(osteo)
    assert 0.25 < deformed.mean() < 0.75
    assert bone[osteo].max() <= 150 <= bone[~osteo].min()
    assert osteo[deformed].mean() > osteo[~deformed].mean() + 0.2
    assert np.median(bone[deformed]) < np.median(bone[~deformed]) - 30


def test_bone_density_of_an_annotation_phantom_ignores_the_other_readings(v2_dir):
    # crushing every vertebra of the readings that are NOT rendered (the label's readers)
    # must not change the image's patient: its density comes from the rendered reading only
    from vfs_utils import baseline
    from vfs_utils.annotation import Annotation, load_annotation
    changed = 0
    for path in sorted(v2_dir.glob("*.json"))[:30]:
        ann = load_annotation(path)
        expert = baseline.image_expert(ann)
        truth = phantom.spine_from_annotation(ann, expert=expert)
        crushed = {}
        for name, vs in ann.experts.items():
            if name == expert:
                crushed[name] = vs
                continue
            out = []
            for v in vs:
                pts = v.points.copy()                  # three pairs of (top, bottom) points
                mid = pts[0:2].mean(axis=0)
                pts[0:2] = mid + 0.3 * (pts[0:2] - mid)  # one pair 70 % shorter: grade 3
                out.append(type(v)(pts, v.level))
            crushed[name] = tuple(out)
        other = phantom.spine_from_annotation(
            Annotation(ann.folder, ann.series_uid, ann.version, crushed), expert=expert)
        assert (other.bone_hu, other.osteoporotic) == (truth.bone_hu, truth.osteoporotic)
        # while a crushed RENDERED reading does decide the density (a control)
        mine = {**ann.experts, expert: crushed[next(e for e in crushed if e != expert)]}
        changed += phantom.spine_from_annotation(
            Annotation(ann.folder, ann.series_uid, ann.version, mine),
            expert=expert).bone_hu != truth.bone_hu
    assert changed > 0

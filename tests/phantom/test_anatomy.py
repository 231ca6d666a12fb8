"""Anatomy and appearance of the phantom, measured from the rendered HU: ribs beside the
rib-bearing vertebrae only, the lung base, tissue HU overrides, random appearance."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vfs_utils import phantom
from vfs_utils.annotation import LEVELS
from vfs_utils.errors import UsageError

RIB_HU = 250.0      # bone threshold
LATERAL_MM = 45.0   # beyond the transverse processes


@pytest.fixture(scope="module")
def spine():
    """Th1 (or C7/Th2) down to about L3, Th12 the lowest rib-bearing vertebra."""
    truth = phantom.sample_spine(np.random.default_rng(3), n_vertebrae=16, fractures=[])
    return dataclasses.replace(truth, lowest_rib="Th12", lung_base="Th12")


def _render_slices(truth, slices, **kw):
    """Noise-free render of whole axial slices ``slices`` (sorted ints)."""
    box = ((0, truth.geometry.shape[0]), (0, truth.geometry.shape[1]),
           (min(slices), max(slices) + 1))
    vol = phantom.render_volume(truth, noise=0, blur=0, box=box, **kw)
    return {k: vol[:, :, k - box[2][0]] for k in slices}


def _lateral_bone(truth, images):
    """Level -> whether its centre slice has bone more than 45 mm lateral of its centre."""
    sp = truth.geometry.spacing
    out = {}
    for v in truth.vertebrae:
        r, c, s = v.points.mean(axis=0)
        img = images[int(round(s))]
        cols = np.abs(np.arange(img.shape[1]) - c) * sp[1]
        out[v.level] = bool((img[:, cols > LATERAL_MM] > RIB_HU).any())
    return out


def _centre_slices(truth):
    return sorted({int(round(v.points[:, 2].mean())) for v in truth.vertebrae})


def test_ribs_beside_th1_to_th12_only(spine):
    found = _lateral_bone(spine, _render_slices(spine, _centre_slices(spine)))
    for level, has_rib in found.items():
        k = LEVELS.index(level)
        if LEVELS.index("Th1") <= k <= LEVELS.index("Th12"):
            assert has_rib, f"no rib beside {level}: {found}"
        elif k > LEVELS.index("Th12"):
            assert not has_rib, f"bone lateral of {level}: {found}"
    assert any(LEVELS.index(lv) > LEVELS.index("Th12") for lv in found)


def test_lowest_rib_th11_removes_the_12th_ribs(spine):
    truth = dataclasses.replace(spine, lowest_rib="Th11")
    found = _lateral_bone(truth, _render_slices(truth, _centre_slices(truth)))
    assert found["Th11"] and found["Th10"]
    assert not found["Th12"], found


def _lowest_lung_slice(truth):
    """The lowest slice with lung (< -500 HU) within 100 mm of the spine, inside the body."""
    sp = truth.geometry.spacing
    th9 = next(v for v in truth.vertebrae if v.level == "Th9")
    r, c, _ = np.mean([v.points.mean(axis=0) for v in truth.vertebrae], axis=0)
    half_c, half_r = int(100 / sp[1]), int(60 / sp[0])
    box = ((int(r) - half_r, int(r) + half_r), (int(c) - half_c, int(c) + half_c),
           (int(th9.points[:, 2].min()), truth.geometry.shape[2]))
    vol = phantom.render_volume(truth, noise=0, blur=0, box=box)
    counts = (vol < -500).sum(axis=(0, 1))
    return box[2][0] + int(np.nonzero(counts >= 20)[0].max())


@pytest.mark.parametrize("base", ["Th11", "L1"])
def test_lung_base_sets_the_lowest_lung_slice(spine, base):
    truth = dataclasses.replace(spine, lung_base=base)
    v = next(v for v in truth.vertebrae if v.level == base)
    lowest = _lowest_lung_slice(truth)
    # within the level's vertebra (from its upper to its lower endplate)
    assert v.points[:, 2].min() <= lowest <= v.points[:, 2].max() + 2, (lowest, v.points[:, 2])


def test_tissue_hu_sets_the_blood(spine):
    v = next(v for v in spine.vertebrae if v.level == "Th11")
    k = int(round(v.points[:, 2].mean()))
    clean = _render_slices(spine, [k], tissue_hu={"blood": 400.0})[k].astype(float)
    other = _render_slices(spine, [k], tissue_hu={"blood": -200.0})[k].astype(float)
    blood = (clean - other) == 600          # fully blood voxels
    assert blood.sum() > 100
    rows, cols = np.nonzero(blood)
    r, c, _ = v.points.mean(axis=0)
    # the descending aorta: anterior of the vertebral body and on the patient's left
    assert rows.mean() < r and cols.mean() > c
    box = ((0, spine.geometry.shape[0]), (0, spine.geometry.shape[1]), (k, k + 1))
    noisy = phantom.render_volume(spine, rng=np.random.default_rng(1), noise=20.0, blur=0,
                                  box=box, tissue_hu={"blood": 400.0})[:, :, 0]
    values = noisy[blood].astype(float)
    assert abs(values.mean() - 400) < 3 * 20 / np.sqrt(blood.sum()) + 1
    assert 15 < values.std() < 25


def test_unknown_tissue_is_refused(spine):
    with pytest.raises(UsageError, match="bloood"):
        phantom.render_volume(spine, box=((0, 2), (0, 2), (0, 1)), tissue_hu={"bloood": 1.0})


def test_bias_field_is_smooth_and_bounded(spine):
    box = ((0, spine.geometry.shape[0]), (0, spine.geometry.shape[1]), (40, 42))
    plain = phantom.render_volume(spine, noise=0, blur=0, box=box).astype(float)
    biased = phantom.render_volume(spine, rng=np.random.default_rng(4), noise=0, blur=0,
                                   box=box, bias_hu=30.0).astype(float)
    diff = biased - plain
    assert np.abs(diff).max() <= 30.5 and diff.std() > 2
    # low-frequency: neighbouring pixels differ by rounding only
    assert np.abs(np.diff(diff, axis=0)).max() <= 1.5


def test_random_appearance_in_its_ranges_and_deterministic():
    draws = [phantom.random_appearance(np.random.default_rng([9, i])) for i in range(300)]
    table = {"noise": (5, 60), "blur": (0.3, 2.0), "hu_offset": (-80, 80), "bias_hu": (0, 40)}
    tissues = {"blood": (20, 450), "cancellous": (60, 350), "cortical": (350, 1500),
               "fat": (-160, -50), "lung": (-950, -650), "muscle": (10, 90)}
    for key, (lo, hi) in table.items():
        x = np.array([d[key] for d in draws])
        assert lo <= x.min() and x.max() <= hi and x.max() - x.min() > 0.8 * (hi - lo)
    for key, (lo, hi) in tissues.items():
        x = np.array([d["tissue_hu"][key] for d in draws])
        assert lo <= x.min() and x.max() <= hi and x.max() - x.min() > 0.8 * (hi - lo)
    assert set(draws[0]["tissue_hu"]) <= set(phantom.HU)
    assert phantom.random_appearance(np.random.default_rng([9, 0])) == draws[0]


def test_patient_fields_are_drawn_per_study():
    spines = [phantom.sample_spine(np.random.default_rng([31, i]))
              for i in range(300)]
    contrast = np.array([t.contrast for t in spines])
    assert 0.12 < contrast.mean() < 0.28
    blood = np.array([t.blood_hu for t in spines])
    assert blood[contrast].min() >= 150 and blood[contrast].max() <= 300
    assert blood[~contrast].max() < 60
    bases = {t.lung_base for t in spines}
    assert bases <= {"Th10", "Th11", "Th12", "L1"} and {"Th12", "L1"} <= bases
    ribs = [t.lowest_rib for t in spines]
    assert ribs.count("Th12") / len(ribs) > 0.9
    shift = np.array([t.shift_mm for t in spines])
    assert np.abs(shift).max() <= 30 and shift.std(axis=0).min() > 5

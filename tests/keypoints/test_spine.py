"""The spine search: HU offsets, contrast blood, a calcified aorta, soft bone, an
off-centre body, and inputs without a spine."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vfs_utils.cli import main
from vfs_utils.errors import NoSpineError, SeriesError
from vfs_utils.keypoints._spine import find_spine, hu_offset


@pytest.fixture(scope="module")
def phantom():
    """A sampled spine rendered on a small grid: (float32 volume, truth, interior centres)."""
    from vfs_utils.phantom import render_volume, sample_spine

    truth = sample_spine(np.random.default_rng(3), shape=(256, 256))
    vol = render_volume(truth, rng=np.random.default_rng(0)).astype(np.float32)
    centres = np.stack([v.points for v in truth.vertebrae]).astype(float).mean(axis=1)
    inside = (centres[:, 2] > 0) & (centres[:, 2] < vol.shape[2] - 1)
    return vol, truth, centres[inside][1:-1]       # not the two at the field's edges


def _errors_mm(vol, truth, centres, col_shift=0.0):
    sp = truth.geometry.spacing
    path = find_spine(vol, sp)
    s = np.round(centres[:, 2]).astype(int)
    return (np.abs(path.rows[s] - centres[:, 0]) * sp[0],
            np.abs(path.cols[s] - centres[:, 1] - col_shift) * sp[1], path)


def test_the_search_follows_the_vertebral_bodies(phantom):
    vol, truth, centres = phantom
    d_row, d_col, path = _errors_mm(vol, truth, centres)
    assert d_row.max() < 8 and d_col.max() < 5
    assert path.found.any() and 0 <= path.confidence.min() <= path.confidence.max() <= 1


@pytest.mark.parametrize("offset", [-60.0, 60.0])
def test_a_constant_hu_offset_changes_nothing(phantom, offset):
    vol, truth, centres = phantom
    base = hu_offset(vol)
    assert hu_offset(vol + offset) == pytest.approx(base + offset, abs=5)
    d_row, d_col, _ = _errors_mm(vol + np.float32(offset), truth, centres)
    assert d_row.max() < 8 and d_col.max() < 5


def _tube(vol, truth, centres, fill):
    """Paint a tube 28 mm in front of and 22 mm left of each vertebra (the aorta's place)."""
    sp = truth.geometry.spacing
    out = vol.copy()
    rr, cc = np.mgrid[:vol.shape[0], :vol.shape[1]]
    for k in range(vol.shape[2]):
        j = np.argmin(np.abs(centres[:, 2] - k))
        d = np.hypot((rr - centres[j, 0]) * sp[0] + 28, (cc - centres[j, 1]) * sp[1] - 22)
        fill(out[:, :, k], d)
    return out


def test_contrast_blood_and_a_calcified_aorta_do_not_fool_it(phantom):
    vol, truth, centres = phantom

    def contrast(sl, d):
        sl[d < 12] = 350.0

    def calcified(sl, d):
        sl[d < 11] = 40.0
        sl[(d >= 11) & (d < 13.5)] = 600.0

    for fill in (contrast, calcified):
        d_row, d_col, _ = _errors_mm(_tube(vol, truth, centres, fill), truth, centres)
        assert d_row.max() < 8 and d_col.max() < 5, fill.__name__


def test_an_off_centre_body_and_soft_bone(phantom):
    from vfs_utils.phantom import render_volume

    vol, truth, centres = phantom
    shift = int(round(30.0 / truth.geometry.spacing[1]))
    moved = np.full_like(vol, -1000.0)
    moved[:, shift:] = vol[:, :-shift]
    d_row, d_col, _ = _errors_mm(moved, truth, centres, col_shift=shift)
    assert d_row.max() < 8 and d_col.max() < 8
    soft = render_volume(dataclasses.replace(truth, bone_hu=80.0),
                         rng=np.random.default_rng(1)).astype(np.float32)
    d_row, d_col, _ = _errors_mm(soft, truth, centres)
    assert d_row.max() < 10 and d_col.max() < 8


def _water(shape=(200, 200, 120)):
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    vol = np.full(shape, -1000.0, np.float32)
    vol[np.hypot(rr - shape[0] / 2, cc - shape[1] / 2) < 80] = 0.0
    return vol + np.random.default_rng(0).normal(0, 15, shape).astype(np.float32)


def test_no_spine_raises_a_project_error():
    sp = (1.0, 1.0, 2.0)
    noise = np.random.default_rng(1).normal(0, 500, (200, 200, 60)).astype(np.float32)
    head = _water()
    rr, cc = np.mgrid[:200, :200]
    skull = np.abs(np.hypot(rr - 100, cc - 100) - 76) < 4          # bone around a brain
    head[np.broadcast_to(skull[:, :, None], head.shape)] = 900.0
    for vol in (_water(), noise, head, np.zeros((8, 8, 8), np.float32)):
        with pytest.raises(NoSpineError, match="the volume"):
            find_spine(vol, sp)
    assert issubclass(NoSpineError, SeriesError)


def test_cli_predict_without_a_spine_is_one_line_and_writes_nothing(tmp_path, capsys):
    from vfs_utils.dicom._writer import write_series

    vol = _water((128, 128, 40))
    write_series(tmp_path / "ds" / "dicom" / "WATER" / "series-001", vol, spacing=(1.5, 1.5, 2.5),
                 series_uid="1.2.826.0.1.3680043.8.498.1", study_uid="1.2.826.0.1.3680043.8.498.2",
                 frame_of_reference_uid="1.2.826.0.1.3680043.8.498.3")
    out = tmp_path / "pred.json"
    assert main(["predict", "--root", str(tmp_path / "ds"), "--folder", "WATER",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "NoSpineError" in err and "WATER" in err
    assert not out.exists()

"""Vertebrae cut by the field of view are reported as partial and not graded."""
from __future__ import annotations

import numpy as np
import pytest

from vfs_utils.cli import main
from vfs_utils.keypoints import detect


@pytest.fixture(scope="module")
def cropped():
    """A phantom cut a third of the way down vertebra 5's body: (crop, truth, start)."""
    from vfs_utils.phantom import render_volume, sample_spine

    truth = sample_spine(np.random.default_rng(3), shape=(256, 256))
    vol = render_volume(truth, rng=np.random.default_rng(0))
    pts = np.stack([v.points for v in truth.vertebrae]).astype(float)
    lo, hi = pts[5, :, 2].min(), pts[5, :, 2].max()
    start = int(lo + (hi - lo) / 3)
    return np.ascontiguousarray(vol[:, :, start:]), truth, start


def test_a_vertebra_cut_by_the_top_of_the_volume_is_partial(cropped):
    crop, truth, start = cropped
    sp = truth.geometry.spacing
    pts = np.stack([v.points for v in truth.vertebrae]).astype(float)
    j = 5
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


def test_cli_predict_lists_the_partial_vertebra_and_explains_its_columns(cropped, tmp_path,
                                                                          capsys):
    from vfs_utils.dicom._writer import write_series

    crop, truth, _ = cropped
    write_series(tmp_path / "ds" / "dicom" / "CUT" / "series-001", crop,
                 spacing=truth.geometry.spacing, series_uid="1.2.826.0.1.3680043.8.498.11",
                 study_uid="1.2.826.0.1.3680043.8.498.12",
                 frame_of_reference_uid="1.2.826.0.1.3680043.8.498.13")
    out = tmp_path / "pred.json"
    assert main(["predict", "--root", str(tmp_path / "ds"), "--folder", "CUT",
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    partial = [ln for ln in lines if "partial, not graded" in ln]
    assert len(partial) >= 1
    assert "cut by the field of view" in captured.out and "levels named by: ribs" in captured.out
    assert lines[-1].startswith("columns:") and "QM" in lines[-1] and "classifier" in lines[-1]
    # the written file holds the graded vertebrae only
    from vfs_utils.annotation import load_annotation

    graded = [ln for ln in lines if " graded " in ln and "partial" not in ln]
    assert len(load_annotation(out).experts["model"]) == len(graded)
    for ln in captured.err.splitlines():
        assert ln.startswith("vfs predict: warning: ")

"""The real development CT (TotalSegmentator's example): orientation, the spine search
and the ribs rule against its reference vertebra centres; the NIfTI reader's errors."""
from __future__ import annotations

import gzip
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from vfs_utils.errors import DataNotFoundError, DownloadError, SeriesError
from vfs_utils.realct import ENV_REAL_CT, fetch_real_ct, load_nifti

_PATH = os.environ.get(ENV_REAL_CT, "")
needs_real_ct = pytest.mark.skipif(
    not (_PATH and Path(_PATH).is_file()),
    reason=f"{ENV_REAL_CT} does not point at the real example CT (the Makefile sets it when "
           "the shared copy exists; `vfs fetch --real-ct` downloads it)")


@pytest.fixture(scope="module")
def real():
    return fetch_real_ct(download=False)


@needs_real_ct
def test_orientation_agrees_with_the_nifti_affine(real):
    import nibabel as nib

    vol, centres = real
    img = nib.load(_PATH)
    data = np.asarray(img.dataobj, np.float32)
    ni, nj, nk = data.shape
    assert vol.shape == (nj, ni, nk) and vol.spacing == (3.0, 3.0, 3.0)
    # the file is RAS: row r <-> j = nj-1-r (anterior first), col c <-> i = ni-1-c (right
    # first), slice s <-> k = nk-1-s (head first)
    assert vol.array[10, 20, 30] == data[ni - 1 - 20, nj - 1 - 10, nk - 1 - 30]
    z0 = img.affine[2, 3]
    order = ["T12", "L1", "L2", "L3", "L4", "L5"]
    slices = [centres[lv][2] for lv in order]
    assert slices == sorted(slices)                     # head -> feet
    ras = json.loads(resources.files("vfs_utils").joinpath(
        "registry", "real-ct-vertebrae.json").read_text())["centres_ras_mm"]
    for lv in order:
        assert centres[lv][2] == pytest.approx(nk - 1 - (ras[lv][2] - z0) / 3.0, abs=1e-6)
    # the LPS affine maps a voxel to minus the RAS x and y of the same voxel
    lps = vol.affine @ np.array([10.0, 20.0, 30.0, 1.0])
    ras_xyz = img.affine @ np.array([ni - 1 - 20, nj - 1 - 10, nk - 1 - 30, 1.0])
    np.testing.assert_allclose(lps[:3], ras_xyz[:3] * [-1, -1, 1])


@needs_real_ct
def test_the_spine_search_finds_the_lumbar_column(real):
    from vfs_utils.keypoints._spine import find_spine

    vol, centres = real
    path = find_spine(vol.array, vol.spacing)
    # The reference centres are of whole-vertebra masks (posterior elements included):
    # they lie behind the body's centre; about 10 mm in this scan. Tolerance 10 mm on
    # top of that (3.3 voxels of 3 mm); L5 is left out (the search stops above the sacrum).
    posterior_mm = 10.0
    for lv in ("T12", "L1", "L2", "L3", "L4"):
        r, c, s = centres[lv]
        k = int(round(s))
        assert abs(path.rows[k] * 3 - (r * 3 - posterior_mm)) < 10, lv
        assert abs(path.cols[k] - c) * 3 < 10, lv
    assert path.found[int(centres["L3"][2])] or path.found[int(centres["L4"][2])]


@needs_real_ct
def test_the_ribs_rule_names_t12_near_the_reference(real):
    from vfs_utils.keypoints._levels import _th12_from_ribs, rib_slices
    from vfs_utils.keypoints._spine import find_spine

    vol, centres = real
    path = find_spine(vol.array, vol.spacing)
    ribs = rib_slices(vol.array, vol.spacing, path.rows, path.cols, hu_offset=path.hu_offset)
    th12 = _th12_from_ribs(ribs, float(np.nonzero(path.found)[0][0]), 3.0)
    assert th12 is not None
    assert abs(th12 - centres["T12"][2]) * 3 < 12     # within half a vertebra


@needs_real_ct
def test_detect_on_the_real_ct_reports_what_it_found(real):
    from vfs_utils.keypoints import detect

    vol, _ = real
    det = detect(vol)
    assert det.level_source == "ribs"
    assert any("pixel spacing 3.00 mm" in w for w in det.warnings)   # 3 mm: outside training
    assert det.span_mm > 100 and det.expected[0] >= 3
    for v in det.annotation.experts["model"]:
        assert (v.points >= -0.5).all() and (v.points <= np.array(vol.shape) - 0.5).all()


@needs_real_ct
def test_the_shipped_model_finds_and_names_t12_to_l4_on_the_real_ct(real):
    """T12-L4 of the reference masks each have a detection (whole or partial) within 10 mm
    head-feet, named as the reference names it; nothing is found outside the body."""
    from vfs_utils.keypoints import detect

    vol, ref = real
    det = detect(vol)
    found = list(det.annotation.experts["model"]) + list(det.partial)
    z = np.array([v.points[:, 2].mean() for v in found])
    for level in ("T12", "L1", "L2", "L3", "L4"):
        k = int(np.argmin(np.abs(z - ref[level][2])))
        assert abs(z[k] - ref[level][2]) * vol.spacing[2] <= 10, level
        assert found[k].level == level.replace("T", "Th"), (level, found[k].level)
    body = vol.array > -500                        # every detection lies inside the body
    for v in found:
        r, c, s = np.clip(np.round(v.points.mean(axis=0)).astype(int), 0,
                          np.array(vol.shape) - 1)
        assert body[r, c, s]


@needs_real_ct
def test_a_copy_that_differs_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "copy.nii.gz"
    bad.write_bytes(Path(_PATH).read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv(ENV_REAL_CT, str(bad))
    with pytest.raises(DownloadError, match=ENV_REAL_CT):
        fetch_real_ct(download=False)


def test_load_nifti_errors_name_the_file(tmp_path):
    import nibabel as nib

    with pytest.raises(DataNotFoundError, match="missing.nii.gz"):
        load_nifti(tmp_path / "missing.nii.gz")
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"not a nifti file"))
    with pytest.raises(SeriesError, match="junk.nii.gz"):
        load_nifti(junk)
    flat = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.int16), np.eye(4)), flat)
    with pytest.raises(SeriesError, match="3D"):
        load_nifti(flat)


def test_load_nifti_reorients_any_orientation(tmp_path):
    import nibabel as nib

    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    ras = np.diag([2.0, 3.0, 4.0, 1.0])
    nib.save(nib.Nifti1Image(data, ras), tmp_path / "ras.nii")
    # the same image stored LPS-first (i flipped and j flipped)
    lps = ras.copy()
    lps[0, 0], lps[1, 1] = -2.0, -3.0
    lps[0, 3], lps[1, 3] = 2.0 * 3, 3.0 * 4
    nib.save(nib.Nifti1Image(data[::-1, ::-1].copy(), lps), tmp_path / "lps.nii")
    a, b = load_nifti(tmp_path / "ras.nii"), load_nifti(tmp_path / "lps.nii")
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine)
    assert a.spacing == (3.0, 2.0, 4.0)
    # row 0 is the most anterior: the largest RAS y, i.e. j = 4
    assert a.array[0, 0, 0] == data[3, 4, 5]


@needs_real_ct
def test_cli_fetch_real_ct_uses_the_local_copy(capsys):
    from vfs_utils.cli import main

    assert main(["fetch", "--real-ct"]) == 0
    assert capsys.readouterr().out.strip() == f"real-ct: {_PATH}"


def test_cli_fetch_real_ct_offline_without_a_copy_is_one_line(tmp_path, monkeypatch, capsys):
    from vfs_utils.cli import main

    monkeypatch.delenv(ENV_REAL_CT, raising=False)
    monkeypatch.setenv("VFS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("VFS_OFFLINE", "1")
    assert main(["fetch", "--real-ct"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ENV_REAL_CT in err and "DataNotFoundError" in err

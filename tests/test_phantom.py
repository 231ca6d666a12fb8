"""Tests of vfs_utils.phantom: anatomy, heights measured back, datasets on disk."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from vfs_utils import phantom
from vfs_utils.annotation import load_annotation
from vfs_utils.errors import DatasetExistsError

SMALL = 192          # rows and cols of the quick test datasets
BONE_HU = 150.0      # threshold separating bone from disc and soft tissue


def measured_heights(volume: np.ndarray, points: np.ndarray, spacing, *, extend_mm: float = 2.5,
                     step_mm: float = 0.05) -> np.ndarray:
    """Bone extent (mm) along the line through each keypoint pair, from the image alone.

    Samples the HU (trilinear) along the line through the pair, extended by
    ``extend_mm`` beyond both points; bone is where HU > 150. Each end of the
    bone run is then located at half maximum between the soft tissue just
    outside (median of the outer 1 mm) and the bone peak within 2 mm inside, the
    usual edge definition; a fixed low threshold would add about half a slice
    spacing per end on 1.25 mm slices.
    """
    sp = np.asarray(spacing, float)
    out = []
    for k in range(3):
        p0, p1 = points[2 * k] * sp, points[2 * k + 1] * sp
        length = np.linalg.norm(p1 - p0)
        direction = (p1 - p0) / length
        t = np.arange(-extend_mm, length + extend_mm + step_mm / 2, step_mm)
        coords = ((p0[None, :] + t[:, None] * direction[None, :]) / sp).T
        hu = ndimage.map_coordinates(volume.astype(np.float32), coords, order=1)
        above = np.nonzero(hu > BONE_HU)[0]
        assert above.size, "no bone along a keypoint segment"
        n1 = int(round(1.0 / step_mm))
        n2 = int(round(2.0 / step_mm))
        ends = []
        for idx, outward in ((above[0], -1), (above[-1], 1)):
            outside = hu[:idx][-n1:] if outward < 0 else hu[idx + 1:][:n1]
            inside = hu[idx:idx + n2] if outward < 0 else hu[max(idx - n2, 0):idx + 1]
            level = 0.5 * (np.median(outside) + inside.max())
            j = idx
            if outward < 0:
                while hu[j] < level:
                    j += 1
                frac = (hu[j] - level) / max(hu[j] - hu[j - 1], 1e-6)
                ends.append(t[j] - frac * step_mm)
            else:
                while hu[j] < level:
                    j -= 1
                frac = (hu[j] - level) / max(hu[j] - hu[j + 1], 1e-6)
                ends.append(t[j] + frac * step_mm)
        out.append(ends[1] - ends[0])
    return np.array(out)


def true_heights(points: np.ndarray, spacing) -> np.ndarray:
    sp = np.asarray(spacing, float)
    return np.array([np.linalg.norm((points[2 * k + 1] - points[2 * k]) * sp) for k in range(3)])


@pytest.fixture(scope="module")
def fractured_spine():
    rng = np.random.default_rng(7)
    return phantom.sample_spine(rng, n_vertebrae=14, fractures=[("wedge", 3), ("biconcave", 2),
                                                                 ("crush", 2)])


@pytest.fixture(scope="module")
def slab(fractured_spine):
    return phantom.render_sagittal_slab(fractured_spine, rng=np.random.default_rng(1))


def test_sampled_spine_is_anatomical(fractured_spine):
    truth = fractured_spine
    assert len(truth.vertebrae) == 14
    assert [v.deformity for v in truth.vertebrae].count("normal") == 11
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


def test_heights_measured_back_agree(fractured_spine, slab):
    volume, box = slab
    sp = fractured_spine.geometry.spacing
    offset = np.array([box[0][0], box[1][0], box[2][0]])
    errors = []
    for v in fractured_spine.vertebrae:
        pts = v.points - offset
        errors.append(measured_heights(volume, pts, sp) - true_heights(v.points, sp))
    errors = np.array(errors)
    assert np.abs(errors).max() < 1.5, errors


def test_rendered_tissues(fractured_spine, slab):
    volume, box = slab
    v = fractured_spine.vertebrae[5]
    centre = np.round(v.points.mean(axis=0) - [box[0][0], box[1][0], box[2][0]]).astype(int)
    r, c, s = centre
    cancellous = volume[r - 2:r + 3, c - 2:c + 3, s - 1:s + 2].mean()
    assert abs(cancellous - fractured_spine.bone_hu) < 25
    # cortex brighter than cancellous bone at the upper endplate
    upper = np.round(v.points[2] - [box[0][0], box[1][0], box[2][0]]).astype(int)
    column = volume[upper[0], upper[1], upper[2] - 2:upper[2] + 3]
    assert column.max() > fractured_spine.bone_hu + 150
    # the disc between two bodies is soft tissue
    nxt = fractured_spine.vertebrae[6]
    disc = np.round(0.5 * (v.points[3] + nxt.points[2]) - [box[0][0], box[1][0], box[2][0]])
    d = volume[int(disc[0]) - 1:int(disc[0]) + 2, int(disc[1]), int(disc[2])].mean()
    assert 20 < d < 140


def test_full_volume_background(fractured_spine):
    small = phantom.Geometry((512, 512, 40), fractured_spine.geometry.spacing,
                             fractured_spine.geometry.origin)
    truth = phantom.SpineTruth(fractured_spine.vertebrae, small, 250.0)
    vol = phantom.render_volume(truth, rng=np.random.default_rng(0))
    assert vol.shape == (512, 512, 40) and vol.dtype == np.int16
    assert abs(vol[:20, :20, :].mean() + 1000) < 5, "air outside the torso"
    assert (vol < -700).mean() > 0.3, "lungs and air"
    assert abs(vol[:5, :5].std() - 15) < 3, "noise of about 15 HU"


def test_box_render_equals_full_render_without_noise(fractured_spine):
    truth = phantom.SpineTruth(fractured_spine.vertebrae[:3], fractured_spine.geometry, 250.0)
    full = phantom.render_volume(truth, noise=0, blur=0, box=((0, 512), (200, 320), (0, 80)))
    part = phantom.render_volume(truth, noise=0, blur=0, box=((100, 400), (230, 290), (10, 70)))
    assert full.shape == (512, 120, 80) and part.shape == (300, 60, 60)
    np.testing.assert_array_equal(part, full[100:400, 30:90, 10:70])


# --------------------------------------------------------------------------- datasets on disk
def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "ds"
    return phantom.build_dataset(out, studies=1, seed=3, image_size=SMALL)


def test_dataset_layout_and_series(small_dataset):
    from vfs_utils.dicom import scan

    root = small_dataset
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["synthetic"] is True and manifest["parameters"]["seed"] == 3
    study = manifest["studies"][0]
    folder = study["folder"]
    ann = load_annotation(root / "annotation" / f"{folder}.json")
    ann2 = load_annotation(root / "annotation_v2" / f"{folder}.json")
    assert ann.version == "v1" and ann2.version == "v2"
    assert 2 <= len(ann.experts) <= 3
    table = scan(root / "dicom" / folder)
    assert len(table) == 3
    assert (table["series_uid"] == ann.series_uid).sum() == 1
    thin = table[table["series_uid"] == ann.series_uid].iloc[0]
    others = table[table["series_uid"] != ann.series_uid]
    assert thin["n_slices"] == study["shape"][2]
    assert sorted(others["n_slices"]) == [1, thin["n_slices"] // round(5 / thin["slice_spacing"])]
    assert "LOCALIZER" in set(others["image_type"].str.split("\\").sum())
    assert 0.7 <= thin["pixel_spacing"][0] <= 0.8 and thin["slice_spacing"] in (1.0, 1.25)
    # every reading is the truth plus about 1 mm of noise
    truth = {v["level"]: np.array(v["points"]) for v in study["vertebrae"]}
    sp = np.array(study["spacing"])
    diffs = np.concatenate([((v.points - truth[v.level]) * sp)[:, [0, 2]].ravel()
                            for vs in ann2.experts.values() for v in vs])
    assert 0.6 < diffs.std() < 1.4


def test_inventory_of_synthetic_dataset(small_dataset):
    from vfs_utils.matching import inventory

    table = inventory(small_dataset, small_dataset / "annotation")
    assert table["ok"].all(), table
    table = inventory(small_dataset, small_dataset / "annotation_v2")
    assert table["ok"].all(), table


def test_simpleitk_reads_the_thin_series(small_dataset):
    sitk = pytest.importorskip("SimpleITK")
    from vfs_utils.dicom import load_series

    manifest = json.loads((small_dataset / "manifest.json").read_text())
    study = manifest["studies"][0]
    folder = small_dataset / "dicom" / study["folder"]
    vol = load_series(folder, study["series_uid"])
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder / "series-001"), study["series_uid"])
    reader.SetFileNames(names)
    image = reader.Execute()
    arr = sitk.GetArrayFromImage(image)          # (z, y, x) = (slice, row, col)
    spacing = image.GetSpacing()                 # (x, y, z) = (col, row, slice)
    np.testing.assert_allclose(spacing, (vol.spacing[1], vol.spacing[0], vol.spacing[2]),
                               rtol=1e-5)
    first = np.asarray(vol.headers[0].ImagePositionPatient, float)
    last = np.asarray(vol.headers[-1].ImagePositionPatient, float)
    origin = np.asarray(image.GetOrigin())
    expected = vol.array.transpose(2, 0, 1)
    if np.allclose(origin, last, atol=1e-3):
        expected = expected[::-1]
    else:
        np.testing.assert_allclose(origin, first, atol=1e-3)
    np.testing.assert_array_equal(arr, expected)


def test_same_seed_same_bytes(small_dataset, tmp_path):
    again = phantom.build_dataset(tmp_path / "again", studies=1, seed=3, image_size=SMALL)
    assert _hashes(again) == _hashes(small_dataset)


def test_idempotent_and_refuses_foreign_folders(small_dataset, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("must not rebuild")

    monkeypatch.setattr(phantom, "write_study", boom)
    assert phantom.build_dataset(small_dataset, studies=1, seed=3,
                                 image_size=SMALL) == small_dataset
    with pytest.raises(DatasetExistsError):
        phantom.build_dataset(small_dataset, studies=1, seed=4, image_size=SMALL)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match="notes|not a phantom"):
        phantom.build_dataset(foreign, studies=1, image_size=SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_stale_build_is_replaced_only_when_asked(tmp_path, monkeypatch):
    built = phantom.build_dataset(tmp_path / "ds", studies=1, seed=3, image_size=SMALL)
    fresh = _hashes(built)
    # pretend the dataset was made by other phantom code
    monkeypatch.setattr(phantom, "_code_fingerprint", lambda: "0123456789abcdef")
    with pytest.raises(DatasetExistsError, match="other parameters"):
        phantom.build_dataset(built, studies=1, seed=3, image_size=SMALL)
    assert _hashes(built) == fresh
    phantom.build_dataset(built, studies=1, seed=3, image_size=SMALL, replace_stale=True)
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["parameters"]["code"] == "0123456789abcdef"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no leftovers
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError):
        phantom.build_dataset(foreign, studies=1, image_size=SMALL, replace_stale=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    real = phantom.write_study
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(phantom, "write_study", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        phantom.build_dataset(tmp_path / "ds", studies=2, seed=1, image_size=128)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_default_dataset_has_several_fractures():
    truths = phantom._synthetic_truths(phantom.DEFAULT_STUDIES, 0)
    kinds = [v.deformity for t in truths for v in t.vertebrae if v.grade]
    assert len(kinds) >= 2 and {"wedge", "biconcave"} <= set(kinds)
    assert all(12 <= len(t.vertebrae) <= 17 for t in truths)


# --------------------------------------------------------------------------- real annotations
def _shortest(folder: Path, n: int) -> list[Path]:
    """The n files with the fewest slices (keeps the test quick)."""
    files = sorted(folder.glob("*.json"))
    extent = [max(np.concatenate([v.points[:, 2] for vs in load_annotation(f).experts.values()
                                  for v in vs])) for f in files]
    return [files[i] for i in np.argsort(extent, kind="stable")[:n]]


def test_spine_from_v2_annotation_puts_points_on_bone(v2_dir):
    f = _shortest(v2_dir, 1)[0]
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


@pytest.mark.slow
def test_real_annotations_match_phantom_dataset(v1_dir, v2_dir, tmp_path, monkeypatch):
    from vfs_utils.dicom import scan
    from vfs_utils.matching import inventory

    monkeypatch.setenv("VFS_ANNOTATION_DIR_V2", str(v2_dir))
    given = tmp_path / "given"
    given.mkdir()
    for f in _shortest(v1_dir, 5):
        shutil.copyfile(f, given / f.name)
    root = phantom.build_dataset(tmp_path / "ds", annotation_dir=given, seed=0)
    for sub, version in (("annotation", "v1"), ("annotation_v2", "v2")):
        files = sorted((root / sub).glob("*.json"))
        assert len(files) == 5
        assert {load_annotation(f).version for f in files} == {version}
        table = inventory(root, root / sub)
        assert table["ok"].all(), table[["file", "problem"]]
    for f in given.glob("*.json"):
        assert (root / "annotation" / f.name).read_bytes() == f.read_bytes()
        assert (root / "annotation_v2" / f.name).read_bytes() == (v2_dir / f.name).read_bytes()
    table = scan(root)
    assert len(table) == 15
    uids = {load_annotation(f).series_uid for f in given.glob("*.json")}
    assert set(table["series_uid"]) & uids == uids
    assert (table["series_uid"].isin(uids)).sum() == 5

"""Tests of vfs_utils.phantom.dataset: the dataset on disk, idempotence, stale and foreign
folders, atomic writes, the cache key."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vfs_utils import phantom
from vfs_utils.annotation import load_annotation
from vfs_utils.errors import DatasetExistsError
from vfs_utils.phantom import dataset

SMALL = 192          # rows and cols of the quick test datasets


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_and_series(tiny_dataset):
    from vfs_utils.dicom import scan

    root = tiny_dataset
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
    # every reading is the truth plus the real readers' noise: 0.6 mm (SD) along the
    # endplate, along the height 0.025 * Hp / 2 per point and 1.8 % of Hp per endplate
    # (about 0.4 mm at Hp = 20 mm): pooled over both axes about 0.5 mm
    truth = {v["level"]: np.array(v["points"]) for v in study["vertebrae"]}
    sp = np.array(study["spacing"])
    diffs = np.concatenate([((v.points - truth[v.level]) * sp)[:, [0, 2]].ravel()
                            for vs in ann2.experts.values() for v in vs])
    assert 0.35 < diffs.std() < 0.7


def test_inventory_of_synthetic_dataset(tiny_dataset):
    from vfs_utils.matching import inventory

    table = inventory(tiny_dataset, tiny_dataset / "annotation")
    assert table["ok"].all(), table
    table = inventory(tiny_dataset, tiny_dataset / "annotation_v2")
    assert table["ok"].all(), table


def test_simpleitk_reads_the_thin_series(tiny_dataset):
    sitk = pytest.importorskip("SimpleITK")
    from vfs_utils.dicom import load_series

    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    study = manifest["studies"][0]
    folder = tiny_dataset / "dicom" / study["folder"]
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


def test_same_seed_same_bytes(tiny_dataset, tmp_path):
    again = phantom.build_dataset(tmp_path / "again", studies=1, seed=3, image_size=SMALL)
    assert _hashes(again) == _hashes(tiny_dataset)


def test_idempotent_and_refuses_foreign_folders(tiny_dataset, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("must not rebuild")

    monkeypatch.setattr(dataset, "write_study", boom)
    assert phantom.build_dataset(tiny_dataset, studies=1, seed=3,
                                 image_size=SMALL) == tiny_dataset
    with pytest.raises(DatasetExistsError):
        phantom.build_dataset(tiny_dataset, studies=1, seed=4, image_size=SMALL)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetExistsError, match="notes|not a phantom"):
        phantom.build_dataset(foreign, studies=1, image_size=SMALL)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_stale_build_is_replaced_only_when_asked(tmp_path, monkeypatch):
    built = phantom.build_dataset(tmp_path / "ds", studies=1, seed=3, image_size=SMALL)
    fresh = _hashes(built)
    # pretend the dataset was made by other phantom code
    monkeypatch.setattr(dataset, "cache_key", lambda: "0123456789abcdef")
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

    monkeypatch.setattr(dataset, "write_study", fail_second)
    with pytest.raises(RuntimeError, match="simulated"):
        phantom.build_dataset(tmp_path / "ds", studies=2, seed=1, image_size=128)
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_default_dataset_has_several_fractures():
    truths = dataset._synthetic_truths(phantom.DEFAULT_STUDIES, 0)
    kinds = [v.deformity for t in truths for v in t.vertebrae if v.grade]
    assert len(kinds) >= 2 and {"wedge", "biconcave"} <= set(kinds)
    assert all(12 <= len(t.vertebrae) <= 17 for t in truths)


@pytest.mark.slow
def test_real_annotations_match_phantom_dataset(v1_dir, v2_dir, tmp_path, monkeypatch,
                                                shortest_files):
    from vfs_utils.dicom import scan
    from vfs_utils.matching import inventory

    monkeypatch.setenv("VFS_ANNOTATION_DIR_V2", str(v2_dir))
    given = tmp_path / "given"
    given.mkdir()
    for f in shortest_files(v1_dir, 5):
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


@pytest.mark.parametrize("content, why", [
    ("{not json", "not valid JSON"),
    (json.dumps({"parameters": {"format": "theirs"}, "generator": "another tool"}),
     "not the manifest of a vfs_utils phantom dataset"),
    (json.dumps(["a", "list"]), "not the manifest of a vfs_utils phantom dataset"),
])
def test_replace_stale_never_deletes_a_foreign_or_unparseable_manifest(tmp_path, content, why):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "manifest.json").write_text(content)
    (theirs / "data.bin").write_bytes(b"precious")
    with pytest.raises(DatasetExistsError) as info:
        phantom.build_dataset(theirs, studies=1, image_size=SMALL, replace_stale=True)
    message = str(info.value)
    assert str(theirs / "manifest.json") in message and why in message
    assert "--out" in message                                # says what to do
    assert sorted(p.name for p in theirs.iterdir()) == ["data.bin", "manifest.json"]
    assert (theirs / "data.bin").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def test_exception_inside_write_study_leaves_nothing_partial(tmp_path, monkeypatch):
    written = []

    def series_then_crash(folder, *args, **kwargs):
        if written:                       # the second of the three series
            raise RuntimeError("simulated crash")
        written.append(folder)
        Path(folder).mkdir(parents=True)
        (Path(folder) / "IM0001.dcm").write_bytes(b"half a study")

    monkeypatch.setattr(dataset, "write_series", series_then_crash)
    truth = phantom.sample_spine(np.random.default_rng(0), n_vertebrae=4, shape=(128, 128),
                                 folder="STUDY", series_uid="1.2.3")
    root = tmp_path / "root"
    with pytest.raises(RuntimeError, match="simulated"):
        phantom.write_study(root, truth, rng=np.random.default_rng(1))
    assert written, "the first series was written before the crash"
    assert not root.exists()  # no empty dicom/ (nor root) left behind


#: sha256 of the files of the tiny study below, per PHANTOM_VERSION.
TINY_STUDY_SHA256 = {
    1: "5ba72e9ba710a1640f1f80afe40fbd75d73e7bb8e1f08adcd832b585b0d059cd",
    2: "ae4278fbe7732edec8a5a8bf5bf4bdf196516d6c0fe1214b7fa90bd5d056ab21",  # one UID scheme
    3: "34108d8acf834394b36021cfe5732269d837b4d217c7368cc40d58586b176bef",  # ribs, diaphragm
}


def test_cache_key_changes_with_what_the_phantom_writes(tmp_path):
    """A tiny study rendered now must be the one recorded for this PHANTOM_VERSION: when the
    phantom writes other bytes, bump PHANTOM_VERSION in vfs_utils/phantom/dataset.py (so that
    cached demo datasets are rebuilt) and record the new digest here."""
    truth = phantom.sample_spine(np.random.default_rng(0), n_vertebrae=3, shape=(48, 48),
                                 folder="TINY", series_uid="1.2.826.0.1.3680043.10.9.1")
    truth = dataclasses.replace(truth, readings=phantom.sample_readings(
        truth, np.random.default_rng(1)))
    phantom.write_study(tmp_path, truth, rng=np.random.default_rng(2))
    h = hashlib.sha256()
    for path in sorted(p for p in tmp_path.rglob("*") if p.is_file()):
        h.update(path.relative_to(tmp_path).as_posix().encode() + b"\0" + path.read_bytes())
    assert h.hexdigest() == TINY_STUDY_SHA256.get(phantom.PHANTOM_VERSION), (
        "the phantom writes other bytes than those recorded for PHANTOM_VERSION "
        f"{phantom.PHANTOM_VERSION}: bump PHANTOM_VERSION and record {h.hexdigest()}")
    assert phantom.cache_key() == f"vfs-phantom-1.{phantom.PHANTOM_VERSION}"

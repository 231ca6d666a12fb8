"""Tests of the series index (vfs_utils.dicom.index).

The reference is always the index-free path (``index=False``: every header
parsed again) and, for the voxels, the upstream recipe (pydicom ``pixel_array`` of every
file, ``reference_volume`` in tests/dicom/conftest.py). Each test has its own cache folder.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest

from vfs_utils import dicom
from vfs_utils.dicom import index as dindex
from vfs_utils.dicom import load_series, scan, write_series

from .conftest import (
    FOR_UID,
    LOC_UID,
    STUDY_UID,
    THICK_UID,
    THIN_UID,
    edit_files,
    reference_volume,
    small_series,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test starts without an index, in its own cache folder."""
    monkeypatch.setenv("VFS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VFS_NO_INDEX", raising=False)
    return tmp_path / "cache"


def assert_same_volume(a, b):
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == pytest.approx(b.spacing, nan_ok=True)
    np.testing.assert_array_equal(a.affine, b.affine)
    assert a.series_uid == b.series_uid and a.study_folder == b.study_folder
    assert [p.name for p in a.headers.paths] == [p.name for p in b.headers.paths]


def assert_index_agrees(folder, uids):
    """Cold (index built) and warm (index used) results equal the index-free ones."""
    free_scan = scan(folder, index=False)
    for _ in range(2):  # the first call builds or refreshes the index, the second uses it
        built = scan(folder, index=True)
        pd.testing.assert_frame_equal(built, free_scan)
        assert built.attrs == free_scan.attrs
    for uid in uids:
        free = load_series(folder, uid, index=False)
        assert_same_volume(load_series(folder, uid), free)
        assert_same_volume(load_series(folder, uid), free)
        np.testing.assert_array_equal(free.array, reference_volume(folder, uid))


def test_index_agrees_on_a_three_series_study(study):
    assert not dindex.index_path().exists()
    assert_index_agrees(study, [THIN_UID, THICK_UID, LOC_UID])
    assert dindex.entry_path(study).is_file()


def age(folder, seconds=3600):
    """Set every file's mtime ``seconds`` into the past: a file modified within 2 s of
    indexing is "racy" and read again (as git does), which is not what is tested here."""
    for path in folder.rglob("*"):
        st = path.lstat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 10**9),
                 follow_symlinks=False)


def test_warm_path_parses_no_header(study, monkeypatch):
    age(study)
    expected = load_series(study, THIN_UID)  # builds the index
    table = scan(study)

    def refuse(*args, **kwargs):
        raise AssertionError("pydicom.dcmread called on the warm path")

    monkeypatch.setattr(pydicom, "dcmread", refuse)
    monkeypatch.setattr(dicom._files.pydicom, "dcmread", refuse)
    assert_same_volume(load_series(study, THIN_UID), expected)
    pd.testing.assert_frame_equal(scan(study), table)


def test_index_agrees_when_positions_run_the_other_way(tmp_path):
    folder = tmp_path / "study"
    small_series(folder / "s", n=5)
    paths = sorted((folder / "s").glob("*.dcm"))
    # InstanceNumber 1..5 now walks feet to head (write_series goes head to feet)
    edit_files(paths, lambda k, ds: setattr(ds, "ImagePositionPatient", [0, 0, -10.0 + 2 * k]))
    assert_index_agrees(folder, ["1.2.3.4.5"])
    vol = load_series(folder, "1.2.3.4.5")
    assert vol.affine[2, 2] == pytest.approx(2.0)  # the slice axis points to the head


@pytest.mark.parametrize("change", ["replaced in place", "replaced by a new file", "added",
                                    "removed", "renamed"])
def test_index_picks_up_changed_files(tmp_path, change):
    folder = tmp_path / "study"
    small_series(folder / "s", n=5)
    small_series(folder / "t", uid="1.2.3.4.6", n=3, origin=(0, 0, 50.0))
    assert_index_agrees(folder, ["1.2.3.4.5", "1.2.3.4.6"])
    paths = sorted((folder / "s").glob("*.dcm"))
    if change == "replaced in place":  # same inode, same size
        edit_files(paths[2:3], lambda k, ds: setattr(
            ds, "PixelData", (np.frombuffer(ds.PixelData, "<i2") + 7).astype("<i2").tobytes()))
    elif change == "replaced by a new file":
        ds = pydicom.dcmread(paths[1])
        ds.RescaleIntercept = "-1000"
        ds.save_as(folder / "new.tmp", enforce_file_format=True)
        os.replace(folder / "new.tmp", paths[1])
    elif change == "added":
        small_series(folder / "u", uid="1.2.3.4.7", n=2, origin=(0, 0, 90.0))
        ds = pydicom.dcmread(paths[-1])
        ds.InstanceNumber = 6
        ds.ImagePositionPatient = [0, 0, -10.0]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.6"
        ds.save_as(folder / "s" / "extra.dcm", enforce_file_format=True)
    elif change == "removed":
        paths[-1].unlink()
        shutil.rmtree(folder / "t")
    else:
        paths[0].rename(paths[0].with_name("zzz.dcm"))
    before = pd.DataFrame(scan(folder, index=False))
    assert_index_agrees(folder, sorted(set(before["series_uid"])))
    if change == "added":
        assert sorted(before["n_slices"]) == [2, 3, 6]
    if change == "removed":
        assert before["n_slices"].tolist() == [4]


def test_bypass_switches(study, monkeypatch):
    load_series(study, LOC_UID, index=False)
    scan(study, index=False)
    assert not dindex.index_path().exists()
    monkeypatch.setenv("VFS_NO_INDEX", "1")
    load_series(study, LOC_UID)
    scan(study)
    assert not dindex.index_path().exists()
    assert not dindex.index_enabled() and dindex.index_enabled(True)


def _stored(folder):
    """The listing the index holds for `folder`."""
    return json.loads(dindex.entry_path(folder).read_text(encoding="utf-8"))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign json", "tampered listing",
                                    "old record version"])
def test_corrupt_or_foreign_index_is_rebuilt(study, damage):
    expected = load_series(study, THICK_UID, index=False)
    load_series(study, THICK_UID)
    path = dindex.entry_path(study)
    good = _stored(study)
    if damage == "garbage":
        path.write_bytes(b"this is not json" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
    elif damage == "foreign json":
        path.write_text(json.dumps({"format": "someone else"}))
    elif damage == "tampered listing":
        path.write_text(json.dumps({**good, "records": 3}))
    else:
        path.write_text(json.dumps({**good, "version": good["version"] - 1}))
    assert_same_volume(load_series(study, THICK_UID), expected)
    listing = _stored(study)
    assert listing["folder"] == str(study.absolute())
    assert listing["records"] == good["records"]
    assert_same_volume(load_series(study, THICK_UID), expected)


def test_deleting_the_index_is_safe(study):
    expected = load_series(study, THIN_UID)
    shutil.rmtree(dindex.index_path())
    assert_same_volume(load_series(study, THIN_UID), expected)


def test_unwritable_cache_goes_without_index(study, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("VFS_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    assert_same_volume(load_series(study, LOC_UID), load_series(study, LOC_UID, index=False))


def _build_in_process(folders, barrier, cache):
    os.environ["VFS_CACHE_DIR"] = cache
    barrier.wait()
    for _ in range(3):
        for folder in folders:
            dindex.folder_listing(folder, index=True)


def test_two_processes_building_at_once_leave_a_valid_index(tmp_path, private_cache):
    folders = []
    for k in range(4):
        folder = tmp_path / f"study{k}"
        small_series(folder / "s", uid=f"1.2.3.4.{k}", n=8)
        folders.append(str(folder))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_build_in_process, args=(order, barrier, str(private_cache)))
             for order in (folders, folders[::-1])]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    stored = {f: _stored(f) for f in folders}
    assert len(list(dindex.index_path().iterdir())) == len(folders)  # no temporary left
    for folder in folders:
        fresh = dindex.folder_listing(folder, index=False)
        assert stored[folder]["folder"] == os.path.abspath(folder)
        assert stored[folder]["records"] == fresh["records"]
        assert stored[folder]["signature"] == fresh["signature"]


def test_build_index_for_a_dataset_root(tmp_path):
    root = tmp_path / "root"
    for k in range(3):
        small_series(root / "dicom" / f"S{k}" / "a", uid=f"1.2.3.9.{k}", study_uid=f"1.2.3.{k}",
                     n=2 + k)
    calls = []
    table = dindex.build_index(root, progress=calls.append)
    assert table["folder"].tolist() == ["S0", "S1", "S2"]
    assert table["images"].tolist() == [2, 3, 4] and table["series"].tolist() == [1, 1, 1]
    assert sum(calls) == 3
    assert len(list(dindex.index_path().glob("*.json"))) == 3


def test_cli_index(tmp_path, capsys):
    from vfs_utils.cli import main

    root = tmp_path / "root"
    small_series(root / "dicom" / "S0" / "a", uid="1.2.3.9.1", n=3)
    assert main(["index", str(root), "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "S0" in out.out and "1 study folder" in out.err
    assert main(["index", str(tmp_path / "nowhere")]) == 2


def test_write_series_output_unchanged_by_the_index(tmp_path, arrays):  # noqa: F811
    files = write_series(tmp_path / "s", arrays["loc"], spacing=(1, 1, 1), series_uid="1.2.8",
                         study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID)
    assert load_series(tmp_path, "1.2.8").headers.paths == files


def test_header_reader_handles_sequences_and_character_sets(tmp_path):
    """Records read past sequences of undefined and defined length (nested), a Cyrillic
    character set, implicit VR and odd private elements; pixel offsets point at the pixels."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from vfs_utils.dicom import _files

    small_series(tmp_path / "s", n=4)
    paths = sorted((tmp_path / "s").glob("*.dcm"))
    plain = [_files.read_record(p, p.name, p.stat()) for p in paths]

    def edit(k, ds):
        inner = Dataset()
        inner.CodeValue, inner.CodeMeaning = "T-D3000", "Chest"
        item = Dataset()
        item.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
        item.AnatomicRegionSequence = Sequence([inner])
        ds.ReferencedImageSequence = Sequence([item, item])
        ds.add_new(0x00291010, "OB", bytes(range(40)))
        if k in (0, 2):  # undefined lengths: the sequence, its items, the nested sequence
            ds["ReferencedImageSequence"].is_undefined_length = True
            for it in ds.ReferencedImageSequence:
                it.is_undefined_length_sequence_item = True
                it["AnatomicRegionSequence"].is_undefined_length = True
        if k == 1:
            ds.SpecificCharacterSet = "ISO_IR 144"
            ds.SeriesDescription = "Грудная клетка"
        if k == 2:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        if k == 3:
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SeriesDescription = "Грудь 1.0 мм"

    edit_files(paths, edit)
    records = [_files.read_record(p, p.name, p.stat()) for p in paths]
    assert [r["description"] for r in records][1] == "Грудная клетка"
    assert records[3]["description"] == "Грудь 1.0 мм"
    assert records[2]["transfer_syntax"] == pydicom.uid.ImplicitVRLittleEndian
    keep = ("series_uid", "instance", "position", "orientation", "pixel_spacing", "rows", "cols")
    assert [{k: r[k] for k in keep} for r in records] == [{k: r[k] for k in keep} for r in plain]
    for path, rec in zip(paths, records):
        assert rec["status"] == "image"
        with open(path, "rb") as fh:
            fh.seek(rec["pixel_offset"])
            assert fh.read(rec["pixel_length"]) == pydicom.dcmread(path).PixelData

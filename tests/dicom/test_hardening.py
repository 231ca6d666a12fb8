"""Damaged and hostile DICOM input: every problem is a SeriesError naming the file and the field.

Headers are damaged at the byte level (the written files are explicit VR
little endian, so an element is found by its tag bytes), then read through
``scan`` (a counted, reported skip) and ``load_series`` (a SeriesError), with
and without the series index. A seeded fuzzer mutates small written series
and checks that only project exceptions or correct volumes come out, the
volumes compared with the upstream recipe (pydicom ``pixel_array``).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import warnings
import zlib  # noqa: F401  (the deflate case must raise no zlib.error)

import numpy as np
import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.uid import DeflatedExplicitVRLittleEndian

from vfs_utils.dicom import load_series, scan, write_series
from vfs_utils.errors import SeriesError, VfsError

from .conftest import FOR_UID, STUDY_UID, reference_volume, small_series

UID = "1.2.3.4.5"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VFS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VFS_NO_INDEX", raising=False)


def set_element(path, keyword, value: bytes) -> None:
    """Replace the value of a short explicit-VR element in the file's bytes."""
    tag = tag_for_keyword(keyword)
    data = path.read_bytes()
    i = data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 132 + 12)
    old = struct.unpack("<H", data[i + 6:i + 8])[0]
    if len(value) % 2:
        value += b" "
    path.write_bytes(data[:i + 6] + struct.pack("<H", len(value)) + value + data[i + 8 + old:])


@pytest.fixture
def series(tmp_path):
    folder = tmp_path / "study"
    small_series(folder / "s", n=4)
    return folder, sorted((folder / "s").glob("*.dcm"))


def expect_refused(folder, victim, *words):
    """load_series refuses with the file and `words` named; scan skips and reports the file."""
    for index in (False, True, True):
        with pytest.raises(SeriesError) as info:
            load_series(folder, UID, index=index)
        message = str(info.value)
        assert victim.name in message, message
        for word in words:
            assert word in message, message
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() in ([3], [])
        assert table.attrs["skipped_files"] == 1
        [problem] = table.attrs["problems"]
        assert str(victim) in problem
        for word in words:
            assert word in problem, problem


BAD_FIELDS = [
    ("InstanceNumber", b"abc"), ("InstanceNumber", b"1e400"), ("InstanceNumber", b"NaN"),
    ("InstanceNumber", b"2\\3"), ("InstanceNumber", b"2.5"), ("SeriesNumber", b"x1"),
    ("PixelSpacing", b"nan\\0.5"), ("PixelSpacing", b"0.5"), ("PixelSpacing", b"inf\\inf"),
    ("PixelSpacing", b"0\\0.5"), ("RescaleSlope", b"NaN"), ("RescaleIntercept", b"abc"),
    ("RescaleIntercept", b"1\\2"), ("SliceThickness", b"nan"),
    ("ImageOrientationPatient", b"1\\0\\0\\0\\1"), ("ImagePositionPatient", b"0\\0\\nan"),
    ("ImagePositionPatient", b"0\\0\\-inf"), ("Rows", struct.pack("<H", 0)),
    ("Columns", b"\x01"), ("Rows", b""),  # fuzz: an empty Rows was a TypeError
    ("RescaleSlope", b"1e308"), ("RescaleIntercept", b"-1e308"),  # fuzz: inf/NaN voxels
]


@pytest.mark.parametrize("keyword,value", BAD_FIELDS,
                         ids=[f"{k}={v!r}" for k, v in BAD_FIELDS])
def test_bad_header_field(series, keyword, value):
    folder, paths = series
    set_element(paths[1], keyword, value)
    expect_refused(folder, paths[1], keyword)


@pytest.mark.parametrize("keyword", ["InstanceNumber", "PixelSpacing", "ImagePositionPatient",
                                     "ImageOrientationPatient"])
def test_empty_geometry_field_refused_by_load_listed_by_scan(series, keyword):
    folder, paths = series
    set_element(paths[2], keyword, b"")
    for index in (False, True):
        with pytest.raises(SeriesError, match=keyword) as info:
            load_series(folder, UID, index=index)
        assert paths[2].name in str(info.value)
        assert scan(folder, index=index)["n_slices"].tolist() == [4]


def test_huge_rows_columns_with_small_pixel_data(series):
    folder, paths = series
    set_element(paths[0], "Rows", struct.pack("<H", 65535))
    set_element(paths[0], "Columns", struct.pack("<H", 65535))
    expect_refused(folder, paths[0], "PixelData", "Rows")


def test_truncated_header(series):
    folder, paths = series
    paths[3].write_bytes(paths[3].read_bytes()[:700])
    expect_refused(folder, paths[3])


def test_truncated_pixel_data(series):
    folder, paths = series
    paths[3].write_bytes(paths[3].read_bytes()[:-10])
    expect_refused(folder, paths[3], "PixelData")


@pytest.mark.parametrize("where", ["VR", "length"])
def test_flipped_header_bytes(series, where):
    folder, paths = series
    tag = tag_for_keyword("SeriesDescription")
    data = bytearray(paths[1].read_bytes())
    i = data.index(struct.pack("<HH", tag >> 16, tag & 0xFFFF), 144)
    if where == "VR":
        data[i + 4:i + 6] = b"\x07\xf1"
    else:
        data[i + 6:i + 8] = b"\xff\x7f"
    paths[1].write_bytes(bytes(data))
    expect_refused(folder, paths[1])


def test_unknown_transfer_syntax(series):
    folder, paths = series
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.8.498.99999"
        ds.save_as(path)
    for index in (False, True):
        with pytest.raises(SeriesError, match="TransferSyntaxUID") as info:
            load_series(folder, UID, index=index)
        assert paths[0].name in str(info.value)


def test_corrupt_deflate_stream(series):
    folder, paths = series
    ds = pydicom.dcmread(paths[2])
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(paths[2], enforce_file_format=True)
    np.testing.assert_array_equal(load_series(folder, UID, index=False).array,
                                  reference_volume(folder, UID))  # a sound deflated file loads
    data = bytearray(paths[2].read_bytes())
    meta_end = 132 + 12 + struct.unpack("<I", data[140:144])[0]
    data[meta_end + 10:meta_end + 40] = bytes(range(30))
    paths[2].write_bytes(bytes(data))
    expect_refused(folder, paths[2])


def test_symlink_loop_is_not_followed(series):
    folder, paths = series
    expected = reference_volume(folder, UID)
    os.symlink(folder, folder / "s" / "loop")
    os.symlink(folder / "s", folder / "again")
    for index in (False, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [4]
        np.testing.assert_array_equal(load_series(folder, UID, index=index).array, expected)


def test_unreadable_subfolder_is_counted_and_reported(series, monkeypatch):
    folder, paths = series
    small_series(folder / "locked", uid="1.2.3.4.6", n=2)
    real = os.scandir
    from vfs_utils.dicom import _files

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(_files.os, "scandir", scandir)
    for index in (False, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [4]
        assert table.attrs["skipped_files"] == 1
        [problem] = table.attrs["problems"]
        assert "locked" in problem and "Permission denied" in problem


def test_mosmed_quirks_still_work(tmp_path):
    """UIDs ending in '.', a series without ImageOrientationPatient, two thin series."""
    folder = tmp_path / "study"
    rng = np.random.default_rng(5)
    a = rng.integers(-1000, 1000, (8, 8, 5)).astype(np.int16)
    uids = ["1.2.643.5.1.13.13.12.2.77.8252.00.", "1.2.643.5.1.13.13.12.2.77.8252.01."]
    for k, uid in enumerate(uids):
        write_series(folder / f"thin{k}", a, spacing=(0.7, 0.7, 1.0 + k), series_uid=uid,
                     study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID, series_number=k + 1)
    write_series(folder / "noiop", a[:, :, :1], spacing=(1, 1, 1), series_uid="1.2.9.",
                 study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID, series_number=3)
    for path in (folder / "noiop").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.ImageOrientationPatient
        ds.save_as(path)
    for index in (False, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [5, 5, 1]
        assert table["orientation"].iloc[2] is None and table.attrs["problems"] == []
        for uid in table["series_uid"][:2]:
            np.testing.assert_array_equal(load_series(folder, uid + "  ", index=index).array, a)
        with pytest.raises(SeriesError, match="ImageOrientationPatient"):
            load_series(folder, "1.2.9.", index=index)


# --------------------------------------------------------------------------- dciodvfy


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy not installed")
@pytest.mark.parametrize("kind", ["thin", "5 mm", "localizer"])
def test_written_series_pass_dciodvfy(tmp_path, kind):
    shape, spacing, image_type = {
        "thin": ((16, 16, 3), (0.7, 0.7, 1.0), ("ORIGINAL", "PRIMARY", "AXIAL")),
        "5 mm": ((16, 16, 2), (0.7, 0.7, 5.0), ("ORIGINAL", "PRIMARY", "AXIAL")),
        "localizer": ((16, 16, 1), (1.0, 1.0, 1.0), ("ORIGINAL", "PRIMARY", "LOCALIZER")),
    }[kind]
    files = write_series(tmp_path / "s", np.zeros(shape), spacing=spacing,
                         series_uid="1.2.826.0.1.3680043.8.498.77", study_uid=STUDY_UID,
                         frame_of_reference_uid=FOR_UID, image_type=image_type,
                         series_description=kind)
    for path in files:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                                check=False)
        lines = (result.stdout + result.stderr).splitlines()
        assert [line for line in lines if line.startswith("Error")] == [], lines
        assert not [line for line in lines if "RescaleType" in line], lines


# --------------------------------------------------------------------------- fuzz


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One seeded mutation of a file: flipped bytes, a cut, an inserted or deleted run."""
    header_end = max(200, data.find(b"\xe0\x7f\x10\x00") + 12)
    kind = rng.integers(5)
    out = bytearray(data)
    if kind == 0:  # flip a few header bytes
        for _ in range(int(rng.integers(1, 4))):
            out[int(rng.integers(128, header_end))] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # random bytes over a header run
        at = int(rng.integers(132, header_end - 8))
        out[at:at + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    elif kind == 2:  # truncate anywhere
        del out[int(rng.integers(0, len(out))):]
    elif kind == 3:  # insert a run in the header
        at = int(rng.integers(132, header_end))
        out[at:at] = rng.integers(0, 256, int(rng.integers(1, 6)), dtype=np.uint8).tobytes()
    else:  # a digit of a decimal string changed (values stay parseable)
        digits = [i for i in range(132, header_end) if 48 <= out[i] <= 57]
        if digits:
            out[digits[int(rng.integers(len(digits)))]] = int(rng.integers(48, 58))
    return bytes(out)


@pytest.mark.slow
def test_fuzzed_series_give_project_errors_or_correct_volumes(tmp_path):
    pristine = tmp_path / "pristine"
    small_series(pristine / "s", n=3)
    originals = {p.name: p.read_bytes() for p in sorted((pristine / "s").glob("*.dcm"))}
    rng = np.random.default_rng(20261129)
    outcomes = {"loaded, equal to the reference": 0, "SeriesError": 0, "scan reported": 0}
    cases = 150
    for case in range(cases):
        folder = tmp_path / f"case{case:03d}"
        (folder / "s").mkdir(parents=True)
        victims = set(rng.choice(sorted(originals), size=int(rng.integers(1, 3)), replace=False))
        for name, data in originals.items():
            (folder / "s" / name).write_bytes(_mutate(data, rng) if name in victims else data)
        for index in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    table = scan(folder, index=index)
                except VfsError:
                    table = None
                if table is not None and table.attrs["problems"]:
                    outcomes["scan reported"] += 1
                for uid in sorted(set(table["series_uid"]) if table is not None else {UID}):
                    try:
                        vol = load_series(folder, uid, index=index)
                    except VfsError:
                        outcomes["SeriesError"] += 1
                        continue
                    try:
                        expected = reference_volume(folder, uid)
                    except Exception:  # the reference recipe fails on damage we accepted
                        expected = None
                    if expected is not None:
                        np.testing.assert_array_equal(vol.array, expected.astype(vol.array.dtype))
                    outcomes["loaded, equal to the reference"] += 1
    print(f"{cases} mutated studies x 2 (with and without the index): {outcomes}")
    assert outcomes["SeriesError"] > 0 and outcomes["loaded, equal to the reference"] > 0


# --------------------------------------------------------------------------- fuzz findings


def test_a_fifo_in_a_study_folder_is_reported_never_opened(series):
    folder, paths = series
    expected = reference_volume(folder, UID)
    os.mkfifo(folder / "s" / "pipe")     # opening it for reading would block forever
    os.mkfifo(folder / "top-pipe")
    for index in (False, True, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [4]
        assert table.attrs["skipped_files"] == 2
        assert [p.split(":")[0] for p in table.attrs["problems"]] == [
            str(folder / "s" / "pipe"), str(folder / "top-pipe")]
        assert all("FIFO" in p for p in table.attrs["problems"])
        np.testing.assert_array_equal(load_series(folder, UID, index=index).array, expected)


def test_a_slice_without_file_meta_is_read_not_dropped(series):
    folder, paths = series
    expected = reference_volume(folder, UID)
    ds = pydicom.dcmread(paths[2])
    del ds.file_meta
    ds.preamble = None
    ds.save_as(paths[2], implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert paths[2].read_bytes()[:2] == b"\x08\x00"  # no preamble, no DICM, no group 0002
    for index in (False, True, True):
        assert scan(folder, index=index)["n_slices"].tolist() == [4]
        np.testing.assert_array_equal(load_series(folder, UID, index=index).array, expected)


def test_a_loop_to_a_study_with_top_level_files_counts_nothing_twice(tmp_path):
    folder = tmp_path / "study"
    small_series(folder, n=4)                           # the slices lie in the study folder
    expected = reference_volume(folder, UID)
    (folder / "sub").mkdir()
    os.symlink(folder, folder / "sub" / "loop")         # back to the study: its files again
    os.symlink(tmp_path, folder / "sub" / "up")         # above it
    for index in (False, True, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [4]
        assert table.attrs["skipped_files"] == 2         # the two links, counted, not followed
        np.testing.assert_array_equal(load_series(folder, UID, index=index).array, expected)


def test_a_second_path_to_one_slice_is_counted_as_skipped(series):
    folder, paths = series
    expected = reference_volume(folder, UID)
    os.symlink(paths[0], folder / "s" / "alias.dcm")
    os.symlink(folder / "s", folder / "again")
    for index in (False, True, True):
        table = scan(folder, index=index)
        assert table["n_slices"].tolist() == [4]
        assert table.attrs["skipped_files"] == 2
        assert table.attrs["problems"] == []
        vol = load_series(folder, UID, index=index)
        np.testing.assert_array_equal(vol.array, expected)
        assert [p.name for p in vol.headers.paths] == [p.name for p in paths]


@pytest.mark.parametrize("value", [None, b""], ids=["missing", "empty"])
def test_series_spacing_without_pixel_spacing_names_the_field(tmp_path, value):
    from vfs_utils.matching import series_spacing

    root = tmp_path / "root"
    small_series(root / "dicom" / "STUDY" / "s", n=3)
    for path in sorted((root / "dicom" / "STUDY" / "s").glob("*.dcm")):
        if value is None:
            ds = pydicom.dcmread(path)
            del ds.PixelSpacing
            ds.save_as(path, enforce_file_format=True)
        else:
            set_element(path, "PixelSpacing", value)
    with pytest.raises(SeriesError, match="PixelSpacing") as info:
        series_spacing(root, "STUDY", UID)
    assert str(root / "dicom" / "STUDY") in str(info.value)

"""Tests of vfs_utils.dicom: scan, load_series and write_series.

Expected values come from the test's own inputs (the arrays, spacings and
orientation written) and from an independent reference loader that follows the
upstream recipe: read every file with pydicom, keep the series, sort by
InstanceNumber, stack ``pixel_array`` on the last axis, apply slope/intercept.
"""
from __future__ import annotations

import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    JPEGLSLossless,
)

from vfs_utils import dicom
from vfs_utils.dicom import SeriesWarning, load_series, scan, write_series
from vfs_utils.errors import DataNotFoundError, DatasetExistsError, SeriesError

from .conftest import (  # the shared helpers of the DICOM tests
    COL_COS,
    FOR_UID,
    LOC_UID,
    ROW_COS,
    SPEC_COLUMNS,
    STUDY_UID,
    THICK_UID,
    THIN_ORIGIN,
    THIN_SPACING,
    THIN_UID,
    edit_files,
    reference_volume,
    small_series,
)


@pytest.fixture(scope="module", autouse=True)
def _private_cache(private_cache_dir):
    """The series index of these tests lives in a temporary cache folder."""
    yield


# --------------------------------------------------------------------------- scan


def test_scan_study_folder(study):
    frame = scan(study)
    assert list(frame.columns) == SPEC_COLUMNS
    assert frame.attrs["skipped_files"] == 3
    assert list(frame["series_uid"]) == [THIN_UID, THICK_UID, LOC_UID]
    assert list(frame["n_slices"]) == [40, 8, 1]
    assert list(frame["series_number"]) == [1, 2, 3]
    assert set(frame["folder"]) == {"study"}
    assert set(frame["study_folder"]) == {str(study)}
    assert list(frame["description"]) == ["thin bone", "5 mm", "topogram"]
    assert frame["image_type"].iloc[2] == "ORIGINAL\\PRIMARY\\LOCALIZER"
    assert set(frame["modality"]) == {"CT"}
    # slice spacing from positions (1.25, not SliceThickness 2.0), NaN for one slice
    assert frame["slice_spacing"].iloc[0] == pytest.approx(1.25)
    assert frame["slice_spacing"].iloc[1] == pytest.approx(5.0)
    assert np.isnan(frame["slice_spacing"].iloc[2])
    assert frame["pixel_spacing"].iloc[0] == pytest.approx((0.8, 0.75))
    assert frame["orientation"].iloc[0] == pytest.approx((*ROW_COS, *COL_COS), abs=1e-9)
    assert list(frame["rows"]) == [64, 64, 64] and list(frame["cols"]) == [64, 64, 64]


def test_scan_dataset_root_and_folder_of_studies(tmp_path):
    root = tmp_path / "root"
    small_series(root / "dicom" / "B-study" / "s1", uid="1.2.3.2.1", study_uid="1.2.3.2")
    small_series(root / "dicom" / "A-study" / "s1", uid="1.2.3.1.1", study_uid="1.2.3.1")
    small_series(root / "dicom" / "A-study" / "s2", uid="1.2.3.1.2", study_uid="1.2.3.1",
                 series_number=2, n=1)
    (root / "dicom" / "A-study" / "notes.txt").write_text("x")
    frame = scan(root)
    assert list(frame["folder"]) == ["A-study", "A-study", "B-study"]
    assert list(frame["n_slices"]) == [6, 1, 6]
    assert frame["study_folder"].iloc[2] == str(root / "dicom" / "B-study")
    assert frame.attrs["skipped_files"] == 1
    pd.testing.assert_frame_equal(scan(root / "dicom"), frame)
    one = scan(root / "dicom" / "A-study")
    assert list(one["folder"]) == ["A-study", "A-study"]
    shutil.copytree(root / "dicom", tmp_path / "studies")
    other = scan(tmp_path / "studies")  # a folder of study folders (distinct StudyInstanceUIDs)
    assert list(other["folder"]) == ["A-study", "A-study", "B-study"]
    assert other["study_folder"].iloc[2] == str(tmp_path / "studies" / "B-study")


def test_scan_executor_gives_same_frame(tmp_path, study):
    root = tmp_path / "root"
    shutil.copytree(study, root / "dicom" / "S1")
    shutil.copytree(study, root / "dicom" / "S2")
    serial = scan(root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        threaded = scan(root, executor=pool)
    pd.testing.assert_frame_equal(threaded, serial)
    assert threaded.attrs == serial.attrs == {"skipped_files": 6, "problems": []}
    assert len(serial) == 6


def test_scan_missing_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere"):
        scan(tmp_path / "nowhere")


# --------------------------------------------------------------------------- load


@pytest.mark.parametrize("uid,key", [(THIN_UID, "thin"), (THICK_UID, "thick"), (LOC_UID, "loc")])
def test_load_series_matches_reference(study, arrays, uid, key):
    vol = load_series(study, uid)
    expected = reference_volume(study, uid)
    assert vol.array.shape == expected.shape == arrays[key].shape
    assert vol.array.dtype == np.int16
    np.testing.assert_array_equal(vol.array, expected)
    np.testing.assert_array_equal(vol.array, arrays[key])
    assert vol.series_uid == uid and vol.study_folder == study
    assert vol.shape == arrays[key].shape
    assert vol.nbytes == arrays[key].size * 2
    assert len(vol.headers) == arrays[key].shape[2]
    assert [int(h.InstanceNumber) for h in vol.headers] == list(range(1, len(vol.headers) + 1))
    assert all("PixelData" not in h for h in vol.headers)


def test_spacing_from_positions_not_slice_thickness(study):
    vol = load_series(study, THIN_UID)
    assert float(vol.headers[0].SliceThickness) == 2.0
    assert vol.spacing == pytest.approx(THIN_SPACING)
    assert np.isnan(load_series(study, LOC_UID).spacing[2])


def test_affine_maps_voxels_to_patient_mm(study):
    vol = load_series(study, THIN_UID)
    normal = np.cross(ROW_COS, COL_COS)
    for k, header in enumerate(vol.headers):
        ipp = np.array([float(v) for v in header.ImagePositionPatient])
        np.testing.assert_allclose(vol.affine @ [0, 0, k, 1], [*ipp, 1], atol=1e-6)
        np.testing.assert_allclose(ipp, THIN_ORIGIN - k * THIN_SPACING[2] * normal, atol=1e-6)
    for r, c in [(1, 0), (0, 1), (10, 37), (63, 63)]:
        expected = THIN_ORIGIN + r * 0.8 * COL_COS + c * 0.75 * ROW_COS
        np.testing.assert_allclose((vol.affine @ [r, c, 0, 1])[:3], expected, atol=1e-6)
    np.testing.assert_allclose(vol.origin, THIN_ORIGIN, atol=1e-6)
    assert vol.orientation == pytest.approx((*ROW_COS, *COL_COS), abs=1e-9)


def test_float_rescale_gives_float32(tmp_path):
    rng = np.random.default_rng(3)
    array = rng.integers(-2000, 2000, size=(8, 8, 3)) * 0.5 - 1000.25
    write_series(tmp_path / "s", array, spacing=(1, 1, 1), series_uid="1.2.9", study_uid="1.2",
                 frame_of_reference_uid="1.3", slope=0.5, intercept=-1000.25)
    vol = load_series(tmp_path, "1.2.9")
    assert vol.array.dtype == np.float32
    np.testing.assert_array_equal(vol.array, reference_volume(tmp_path, "1.2.9").astype(np.float32))
    np.testing.assert_allclose(vol.array, array)


@pytest.mark.parametrize("every,decoded_by_pydicom", [(1, False), (2, True)])
def test_bits_stored_12_and_implicit_vr_match_reference(tmp_path, monkeypatch, every,
                                                        decoded_by_pydicom):
    small_series(tmp_path / "s", intercept=0.0)
    paths = sorted((tmp_path / "s").glob("*.dcm"))

    def edit(k, ds):
        if k % 2:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        if k % every:
            return
        stored = np.clip(ds.pixel_array, -2048, 2047).astype(np.int16)
        high_bits_cleared = (stored.view(np.uint16) & 0x0FFF).astype(np.uint16)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelData = high_bits_cleared.tobytes()

    edit_files(paths, edit)
    calls = []
    decode = dicom._load._decode_pixels
    monkeypatch.setattr(dicom._load, "_decode_pixels", lambda p: calls.append(p) or decode(p))
    vol = load_series(tmp_path, "1.2.3.4.5")
    np.testing.assert_array_equal(vol.array, reference_volume(tmp_path, "1.2.3.4.5"))
    assert vol.array.min() < 0
    assert bool(calls) == decoded_by_pydicom  # mixed layouts fall back to pixel_array


def test_shuffled_file_names_do_not_matter(tmp_path, study):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    paths = sorted((copy / "series-001").glob("*.dcm"))
    rng = np.random.default_rng(7)
    for i, path in zip(rng.permutation(len(paths)), paths):
        path.rename(path.with_name(f"tmp{i:03d}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeriesWarning)
        vol = load_series(copy, THIN_UID)
    np.testing.assert_array_equal(vol.array, reference_volume(study, THIN_UID))


def test_instance_order_disagreeing_with_positions_warns(tmp_path, arrays):
    small_series(tmp_path / "s", n=6)
    paths = sorted((tmp_path / "s").glob("*.dcm"))
    new_numbers = [1, 2, 4, 3, 5, 6]
    edit_files(paths, lambda k, ds: setattr(ds, "InstanceNumber", new_numbers[k]))
    with pytest.warns(SeriesWarning, match="InstanceNumber order"):
        vol = load_series(tmp_path, "1.2.3.4.5")
    expected = reference_volume(tmp_path, "1.2.3.4.5")
    np.testing.assert_array_equal(vol.array, expected)
    assert [int(h.InstanceNumber) for h in vol.headers] == [1, 2, 3, 4, 5, 6]


def test_uneven_gaps_warn(tmp_path):
    small_series(tmp_path / "s", n=6)
    paths = sorted((tmp_path / "s").glob("*.dcm"))

    def edit(k, ds):
        if k == 3:
            ds.ImagePositionPatient = [0, 0, -2.0 * k - 0.3]

    edit_files(paths, edit)
    with pytest.warns(SeriesWarning, match="uneven slice gaps"):
        load_series(tmp_path, "1.2.3.4.5")


def test_unknown_uid_lists_series(study):
    with pytest.raises(SeriesError) as info:
        load_series(study, "1.2.3.999")
    message = str(info.value)
    for uid in (THIN_UID, THICK_UID, LOC_UID):
        assert uid in message
    assert "40 slice" in message and "thin bone" in message
    assert "February 2021" in message
    assert "1.2.3.999" in message


def test_missing_study_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match="no-such-study"):
        load_series(tmp_path / "no-such-study", THIN_UID)


def test_duplicate_positions(tmp_path):
    small_series(tmp_path / "s", n=4)
    src = tmp_path / "s" / "IM00002.dcm"
    ds = pydicom.dcmread(src)
    ds.InstanceNumber = 9
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.99"
    ds.save_as(tmp_path / "s" / "copy.dcm", enforce_file_format=True)
    with pytest.raises(SeriesError, match="duplicate slice positions"):
        load_series(tmp_path, "1.2.3.4.5")


def test_mixed_rows_columns(tmp_path):
    small_series(tmp_path / "a", n=3)
    write_series(tmp_path / "b", np.zeros((8, 8, 2)), spacing=(0.5, 0.5, 2.0),
                 series_uid="1.2.3.4.5", study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID,
                 origin=(0, 0, -20.0), file_prefix="X")
    paths = sorted((tmp_path / "b").glob("*.dcm"))
    edit_files(paths, lambda k, ds: setattr(ds, "InstanceNumber", 10 + k))
    with pytest.raises(SeriesError, match="Rows x Columns"):
        load_series(tmp_path, "1.2.3.4.5")


def test_mixed_orientations(tmp_path):
    small_series(tmp_path / "s", n=4)
    paths = sorted((tmp_path / "s").glob("*.dcm"))

    def edit(k, ds):
        if k == 2:
            ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]

    edit_files(paths, edit)
    with pytest.raises(SeriesError, match="orientation"):
        load_series(tmp_path, "1.2.3.4.5")


class _NoDecoder:
    is_available = False
    missing_dependencies = ["pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1",
                            "gdcm - requires gdcm>=3.0.10"]


def test_compressed_without_decoder(tmp_path, monkeypatch):
    small_series(tmp_path / "s", n=2)
    paths = sorted((tmp_path / "s").glob("*.dcm"))

    def edit(k, ds):
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS \xff\xd9"])
        ds["PixelData"].VR = "OB"

    edit_files(paths, edit)
    if pydicom.pixels.get_decoder(JPEGLSLossless).is_available:
        monkeypatch.setattr(dicom._load, "_get_decoder", lambda uid: _NoDecoder())
    with pytest.raises(SeriesError) as info:
        load_series(tmp_path, "1.2.3.4.5")
    message = str(info.value)
    assert "JPEG-LS" in message
    assert "pip install" in message
    assert "pylibjpeg-libjpeg" in message or "python-gdcm" in message


# --------------------------------------------------------------------------- write


def test_write_series_is_deterministic(tmp_path, arrays):
    kw = dict(spacing=(0.8, 0.75, 1.25), series_uid=THIN_UID, study_uid=STUDY_UID,
              frame_of_reference_uid=FOR_UID, origin=THIN_ORIGIN, series_description="x")
    first = write_series(tmp_path / "one", arrays["thick"], **kw)
    second = write_series(tmp_path / "two", arrays["thick"], **kw)
    assert [p.name for p in first] == [f"IM{k:05d}.dcm" for k in range(1, 9)]
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [p.name for p in first]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_write_series_refuses_to_overwrite(tmp_path):
    small_series(tmp_path / "s", n=2)
    before = sorted(p.read_bytes() for p in (tmp_path / "s").iterdir())
    with pytest.raises(DatasetExistsError, match=str(tmp_path / "s")):
        small_series(tmp_path / "s", n=3)
    assert sorted(p.read_bytes() for p in (tmp_path / "s").iterdir()) == before
    (tmp_path / "empty").mkdir()
    assert len(write_series(tmp_path / "empty", np.zeros((4, 4, 2)), spacing=(1, 1, 1),
                            series_uid="1.2.7", study_uid="1.2", frame_of_reference_uid="1.3",
                            file_prefix="CT")) == 2
    assert (tmp_path / "empty" / "CT00002.dcm").is_file()


def test_written_files_are_ct_image_storage(study):
    ds = pydicom.dcmread(study / "series-001" / "IM00003.dcm")
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.file_meta.ImplementationClassUID
    assert ds.preamble == bytes(128)
    assert ds.SOPClassUID == CTImageStorage
    assert ds.Modality == "CT" and ds.Manufacturer == "vfs-tutorials phantom"
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == (
        STUDY_UID, THIN_UID, FOR_UID)
    assert ds.PatientID == "VFS-PHANTOM" and str(ds.PatientName) == "Phantom^Synthetic"
    assert ds.PatientSex == "O" and ds.PatientBirthDate == ""
    assert ds.StudyDate == "20200101" and ds.AccessionNumber == ""
    assert ds.InstanceNumber == 3 and ds.SeriesNumber == 1
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert (ds.SamplesPerPixel, ds.PhotometricInterpretation) == (1, "MONOCHROME2")
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (16, 16, 15, 1)
    assert (ds.Rows, ds.Columns) == (64, 64)
    assert float(ds.RescaleSlope) == 1.0 and float(ds.RescaleIntercept) == -1024.0
    assert ds.RescaleType == "HU"
    for keyword in ("StudyTime", "ReferringPhysicianName", "StudyID", "KVP", "WindowCenter",
                    "WindowWidth", "SliceLocation"):
        assert keyword in ds
    assert [float(v) for v in ds.PixelSpacing] == [0.8, 0.75]
    normal = np.cross(ROW_COS, COL_COS)
    expected = THIN_ORIGIN - 2 * 1.25 * normal
    np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], expected, atol=1e-6)
    assert float(ds.SliceThickness) == 2.0


def test_write_2d_series(tmp_path):
    image = np.arange(-500, -500 + 12 * 10, dtype=np.int16).reshape(12, 10)
    files = write_series(tmp_path / "study" / "loc", image, spacing=(0.7, 0.6, 1.0),
                         series_uid="1.2.5", study_uid="1.2", frame_of_reference_uid="1.3",
                         image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    assert len(files) == 1
    frame = scan(tmp_path / "study")
    assert frame["n_slices"].tolist() == [1] and np.isnan(frame["slice_spacing"].iloc[0])
    vol = load_series(tmp_path / "study", "1.2.5")
    np.testing.assert_array_equal(vol.array[:, :, 0], image)


def test_write_series_rejects_values_outside_int16(tmp_path):
    with pytest.raises(SeriesError, match="int16"):
        write_series(tmp_path / "s", np.full((4, 4, 1), 40000.0), spacing=(1, 1, 1),
                     series_uid="1.2", study_uid="1.3", frame_of_reference_uid="1.4")
    assert not (tmp_path / "s").exists()


def test_write_series_extra_elements(tmp_path):
    files = write_series(tmp_path / "s", np.zeros((4, 4, 1)), spacing=(1, 1, 1),
                         series_uid="1.2", study_uid="1.3", frame_of_reference_uid="1.4",
                         extra={"KVP": "100", "BodyPartExamined": "CHEST"})
    ds = pydicom.dcmread(files[0])
    assert ds.KVP == "100" and ds.BodyPartExamined == "CHEST"
    with pytest.raises(SeriesError, match="NotAKeyword"):
        write_series(tmp_path / "t", np.zeros((4, 4, 1)), spacing=(1, 1, 1), series_uid="1.2",
                     study_uid="1.3", frame_of_reference_uid="1.4", extra={"NotAKeyword": 1})


def test_mosmed_quirks_trailing_dot_uids_no_orientation_two_thin_series(tmp_path):
    """What real MosMed study folders hold: SeriesInstanceUIDs with leading zeros and a
    trailing dot, two thin reconstructions of one acquisition, a series without
    ImageOrientationPatient."""
    folder = tmp_path / "study"
    mosmed = "1.2.643.5.1.13.13.12.2.77.8252.572573629130436.028237831627236."
    soft = "1.2.643.5.1.13.13.12.2.77.8252.572573629130436.028237831627237."
    small_series(folder / "bone", uid=mosmed, n=5, series_number=1)
    small_series(folder / "soft", uid=soft, n=5, series_number=2)
    small_series(folder / "report", uid="1.2.3.9", n=1, series_number=3)
    edit_files(sorted((folder / "report").glob("*.dcm")),
               lambda k, ds: delattr(ds, "ImageOrientationPatient"))
    for index in (False, True, True):
        table = scan(folder, index=index)
        assert table["series_uid"].tolist() == [mosmed, soft, "1.2.3.9"]
        assert table["n_slices"].tolist() == [5, 5, 1]
        assert table["orientation"].iloc[2] is None and np.isnan(table["slice_spacing"].iloc[2])
        assert table["slice_spacing"].iloc[:2].tolist() == pytest.approx([2.0, 2.0])
        vol = load_series(folder, mosmed, index=index)
        np.testing.assert_array_equal(vol.array, reference_volume(folder, mosmed))
        assert vol.series_uid == mosmed
        with pytest.raises(SeriesError, match="ImageOrientationPatient"):
            load_series(folder, "1.2.3.9", index=index)

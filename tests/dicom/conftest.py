"""Shared helpers of the DICOM tests: the UIDs and geometry of the three-series study, the
upstream reading recipe (:func:`reference_volume`), small series writers and editors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from vfs_utils.dicom import write_series

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
FOR_UID = "1.2.826.0.1.3680043.8.498.2"
THIN_UID = "1.2.826.0.1.3680043.8.498.11"
THICK_UID = "1.2.826.0.1.3680043.8.498.12"
LOC_UID = "1.2.826.0.1.3680043.8.498.13"

ANGLE = np.deg2rad(10.0)
ROW_COS = np.array([np.cos(ANGLE), np.sin(ANGLE), 0.0])
COL_COS = np.array([-np.sin(ANGLE), np.cos(ANGLE), 0.0])
THIN_ORIGIN = np.array([-25.5, -30.25, 100.0])
THIN_SPACING = (0.8, 0.75, 1.25)

SPEC_COLUMNS = ["folder", "study_folder", "series_uid", "n_slices", "modality", "description",
                "image_type", "orientation", "pixel_spacing", "slice_spacing", "rows", "cols",
                "series_number"]


def _hu(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(-1024, 3000, size=shape).astype(np.int16)


def reference_volume(folder: Path, uid: str) -> np.ndarray:
    """The upstream recipe, independent of vfs_utils: float64 HU (rows, cols, slices)."""
    slices = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            continue
        if ds.get("SeriesInstanceUID") != uid:
            continue
        slices.append(ds)
    slices.sort(key=lambda ds: int(ds.InstanceNumber))
    out = []
    for ds in slices:
        slope = float(ds.get("RescaleSlope", 1))
        intercept = float(ds.get("RescaleIntercept", 0))
        out.append(ds.pixel_array.astype(np.float64) * slope + intercept)
    return np.stack(out, axis=-1)


def write_junk(folder: Path) -> None:
    """A DICOMDIR, a README and a hidden file: three files scan must skip."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["dicomdir"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "VFS"
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = 0
    ds.FileSetConsistencyFlag = 0
    ds.DirectoryRecordSequence = []
    pydicom.dcmwrite(folder / "DICOMDIR", ds, enforce_file_format=True)
    (folder / "README.txt").write_text("study exported for the tests\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20210201)
    return {"thin": _hu(rng, (64, 64, 40)), "thick": _hu(rng, (64, 64, 8)),
            "loc": _hu(rng, (64, 64, 1))}


@pytest.fixture(scope="module")
def study(tmp_path_factory, arrays) -> Path:
    folder = tmp_path_factory.mktemp("data") / "study"
    orientation = (*ROW_COS, *COL_COS)
    write_series(folder / "series-001", arrays["thin"], spacing=THIN_SPACING, series_uid=THIN_UID,
                 study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID, origin=THIN_ORIGIN,
                 orientation=orientation, slice_thickness=2.0, series_number=1,
                 series_description="thin bone")
    write_series(folder / "series-002", arrays["thick"], spacing=(0.8, 0.8, 5.0),
                 series_uid=THICK_UID, study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID,
                 origin=(-25.0, -25.0, 110.0), series_number=2, series_description="5 mm")
    write_series(folder / "series-003", arrays["loc"], spacing=(1.0, 1.0, 1.0),
                 series_uid=LOC_UID, study_uid=STUDY_UID, frame_of_reference_uid=FOR_UID,
                 series_number=3, series_description="topogram",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    write_junk(folder)
    return folder


def small_series(folder: Path, uid: str = "1.2.3.4.5", n: int = 6, **kw) -> np.ndarray:
    rng = np.random.default_rng(len(folder.name))
    array = _hu(rng, (16, 12, n))
    kw.setdefault("spacing", (0.5, 0.5, 2.0))
    kw.setdefault("study_uid", STUDY_UID)
    write_series(folder, array, series_uid=uid, frame_of_reference_uid=FOR_UID, **kw)
    return array


def edit_files(paths, edit) -> None:
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        edit(k, ds)
        ds.save_as(path, enforce_file_format=True)

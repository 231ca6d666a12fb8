"""``write_series``: a volume as a valid, deterministic CT Image Storage series."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from .._fs import atomic_folder
from ..errors import DatasetExistsError, SeriesError
from ._common import GEOMETRY_TOL as _GEOMETRY_TOL
from ._common import derived_uid

__all__ = ["write_series"]

def _ds_number(value: float) -> str:
    """A DS string (at most 16 characters) for `value`."""
    text = f"{float(value):.10g}"
    if len(text) > 16:
        text = f"{float(value):.8g}"
    return "0" if text == "-0" else text


def _set_element(ds: Dataset, key: Any, value: Any, target: Path) -> None:
    """Set `key` (a keyword or a tag) to `value` on `ds`."""
    try:
        tag = Tag(tag_for_keyword(key) if isinstance(key, str) else key)
        if isinstance(key, str) and tag_for_keyword(key) is None:
            raise ValueError(key)
        vr = ds[tag].VR if tag in ds else dictionary_VR(tag)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        raise SeriesError(f"{target}: extra element {key!r} is not a DICOM keyword or known "
                          "tag; use a keyword such as 'KVP' or a (group, element) tag.") from exc
    ds[tag] = pydicom.DataElement(tag, vr, value)


def write_series(
    folder: str | os.PathLike,
    array: np.ndarray,
    *,
    spacing: Sequence[float],
    series_uid: str,
    study_uid: str,
    frame_of_reference_uid: str,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: Sequence[float] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    patient_id: str = "VFS-PHANTOM",
    patient_name: str = "Phantom^Synthetic",
    study_date: str = "20200101",
    series_number: int = 1,
    series_description: str = "",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    slice_thickness: float | None = None,
    file_prefix: str = "IM",
    extra: dict | None = None,
) -> list[Path]:
    """Write a volume as a CT Image Storage series, one file per slice, into `folder`.

    Built in a hidden sibling, then renamed. Deterministic: no clock time, UIDs derived
    from `series_uid` and the slice index.

    Parameters
    ----------
    folder : path-like
        The series folder to create; must not exist or be empty.
    array : numpy.ndarray
        ``(rows, cols, slices)`` in HU (2-D: one slice), stored as int16.
    spacing : sequence of 3 floats
        ``(row, col, slice)`` mm.
    series_uid, study_uid, frame_of_reference_uid : str
        SeriesInstanceUID, StudyInstanceUID, FrameOfReferenceUID.
    origin : sequence of 3 floats
        ImagePositionPatient (LPS mm) of the first slice.
    orientation : sequence of 6 floats
        ImageOrientationPatient: row then column direction cosines.
    slope, intercept : float
        RescaleSlope and RescaleIntercept.
    patient_id, patient_name, study_date, series_number, series_description, image_type
        The DICOM fields of these names (StudyDate ``YYYYMMDD``).
    slice_thickness : float, optional
        SliceThickness in mm; defaults to ``spacing[2]``.
    file_prefix : str
        File names are ``f"{file_prefix}{k + 1:05d}.dcm"``.
    extra : dict, optional
        More elements ``{keyword: value}``, set last on every slice (they override).

    Returns
    -------
    list of pathlib.Path
        The files written, in slice order.

    Notes
    -----
    The files pass dicom3tools' ``dciodvfy`` when the UIDs are valid. Slice ``k`` has
    InstanceNumber ``k + 1`` and ImagePositionPatient ``origin - k * spacing[2] *
    cross(row_cosine, col_cosine)`` (head to feet for the default orientation).

    Raises
    ------
    DatasetExistsError
        When `folder` exists and is not empty.
    SeriesError
        When an argument is unusable or the values do not fit int16.
    """
    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetExistsError(f"{target} already exists and is not empty; write_series does "
                                 "not overwrite. Choose a new folder or delete this one first.")
    values = np.asarray(array)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or 0 in values.shape:
        raise SeriesError(f"{target}: array must have shape (rows, cols, slices); "
                          f"got {values.shape}.")
    spacing_f = np.asarray(spacing, dtype=float)
    if spacing_f.shape != (3,) or not np.all(np.isfinite(spacing_f)) or np.any(spacing_f <= 0):
        raise SeriesError(f"{target}: spacing must be 3 positive mm values (row, col, slice); "
                          f"got {spacing!r}.")
    iop = np.asarray(orientation, dtype=float)
    if iop.shape != (6,):
        raise SeriesError(f"{target}: orientation must be 6 direction cosines; "
                          f"got {orientation!r}.")
    row_cos, col_cos = iop[:3], iop[3:]
    if (abs(np.linalg.norm(row_cos) - 1) > _GEOMETRY_TOL or abs(np.linalg.norm(col_cos) - 1)
            > _GEOMETRY_TOL or abs(row_cos @ col_cos) > _GEOMETRY_TOL):
        raise SeriesError(f"{target}: orientation {tuple(iop)} is not two orthogonal unit vectors.")
    if not slope or not np.isfinite(slope):
        raise SeriesError(f"{target}: slope must be a non-zero number; got {slope!r}.")
    origin_f = np.asarray(origin, dtype=float)
    if origin_f.shape != (3,):
        raise SeriesError(f"{target}: origin must be 3 LPS mm values; got {origin!r}.")
    # check the range on the extremes, then convert one slice at a time (no full-size copies)
    lo, hi = (float(np.min(values)), float(np.max(values))) if values.size else (0.0, 0.0)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SeriesError(f"{target}: array holds NaN or infinite values.")
    ends = np.round((np.array([lo, hi]) - float(intercept)) / float(slope))
    if ends.min() < -32768 or ends.max() > 32767:
        raise SeriesError(f"{target}: values {lo}..{hi} HU do not fit int16 with slope {slope} "
                          f"and intercept {intercept}; clip the array or change slope/intercept.")

    def stored_slice(k: int) -> np.ndarray:
        plane = values[:, :, k].astype(np.float64)
        return np.round((plane - float(intercept)) / float(slope)).astype("<i2")

    rows, cols, n = values.shape
    normal = np.cross(row_cos, col_cos)
    thickness = float(spacing_f[2] if slice_thickness is None else slice_thickness)
    localizer = "LOCALIZER" in [str(v).upper() for v in image_type]

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = derived_uid("vfs-tutorials", "vfs_utils.dicom")
    meta.ImplementationVersionName = "VFS_UTILS_1"

    names = []
    with atomic_folder(target) as tmp:  # all slices, or nothing
        for k in range(n):
            sop_uid = derived_uid(series_uid, "slice", k)
            position = origin_f - k * spacing_f[2] * normal
            ds = Dataset()
            ds.file_meta = FileMetaDataset(meta)
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = "O"
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = study_date
            ds.StudyTime = "000000"
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.AccessionNumber = ""
            ds.Modality = "CT"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.SeriesDescription = series_description
            ds.PatientPosition = "HFS"
            ds.Laterality = ""  # Type 2C in General Series: empty = not a paired structure
            ds.FrameOfReferenceUID = frame_of_reference_uid
            ds.PositionReferenceIndicator = ""
            ds.Manufacturer = "vfs-tutorials phantom"
            ds.InstanceNumber = k + 1
            ds.ImageType = list(image_type)
            ds.PixelSpacing = [_ds_number(spacing_f[0]), _ds_number(spacing_f[1])]
            ds.ImageOrientationPatient = [_ds_number(v) for v in iop]
            ds.ImagePositionPatient = [_ds_number(v) for v in position]
            ds.SliceThickness = _ds_number(thickness)
            ds.SliceLocation = _ds_number(float(position @ normal))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = rows
            ds.Columns = cols
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = _ds_number(intercept)
            ds.RescaleSlope = _ds_number(slope)
            if not localizer:  # a localizer's values are not HU (CT Image IOD)
                ds.RescaleType = "HU"
            ds.KVP = "120"
            ds.AcquisitionNumber = 1
            # VOI LUT: a bone window
            ds.WindowCenter = "400"
            ds.WindowWidth = "1800"
            for key, value in (extra or {}).items():
                _set_element(ds, key, value, target)
            ds.PixelData = stored_slice(k).tobytes()
            name = f"{file_prefix}{k + 1:05d}.dcm"
            pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
            names.append(name)
    return [target / name for name in names]

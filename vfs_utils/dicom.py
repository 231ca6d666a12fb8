"""DICOM series: header scan, ``load_series`` -> :class:`Volume`, ``write_series``.

The voxel convention is the annotation's: a volume array has shape
``(rows, cols, slices)``, the slices stacked in *InstanceNumber* order, values
in Hounsfield units (HU). Points and affines use ``(row, col, slice)`` voxel
indices; the affine maps them to patient coordinates in millimetres in the
DICOM LPS frame (x to the patient's left, y to posterior, z to head).

Three entry points:

``scan(path)``
    One row per series found under a study folder, a folder of study folders
    or a dataset root (``<root>/dicom/<Folder>/...``), from headers only.
``load_series(study_folder, series_uid)``
    The volume of one series of a study folder: headers of every file first,
    then the pixel data of the matching files only.
``write_series(folder, array, ...)``
    A valid, deterministic CT Image Storage series (used by the phantom).

A study folder may hold the files of several series, directly or in
subfolders (searched recursively). Hidden files and folders (names starting
with ``.``), DICOMDIR files and anything that is not a DICOM image are skipped.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder as _get_decoder
from pydicom.tag import Tag
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
    generate_uid,
)

from ._parallel import map_ordered
from .errors import DatasetExistsError, DataNotFoundError, SeriesError

__all__ = [
    "SCAN_COLUMNS",
    "SeriesWarning",
    "Volume",
    "load_series",
    "quiet_uid_warnings",
    "scan",
    "write_series",
]

LOGGER = logging.getLogger(__name__)

class _QuietUIDs(logging.Filter):
    """Drops pydicom's "Invalid value for VR UI" log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Invalid value for VR UI")


_UID_FILTER = _QuietUIDs()


def quiet_uid_warnings() -> None:
    """Silence pydicom's warning about the MosMed SeriesInstanceUIDs (idempotent).

    The MosMed SeriesInstanceUIDs (and so the annotations' and the phantom's copies of
    them) are not valid DICOM UIDs: components with leading zeros and a trailing dot.
    pydicom warns (and logs) on every access although the values are read exactly as
    stored. Importing this module changes no process-wide state; ``tutorial.setup()``
    and the ``vfs`` command call this function.
    """
    warnings.filterwarnings("ignore", message=r"Invalid value for VR UI", category=UserWarning)
    logger = logging.getLogger("pydicom")
    if _UID_FILTER not in logger.filters:
        logger.addFilter(_UID_FILTER)


#: Columns of the frame returned by :func:`scan`, in order.
SCAN_COLUMNS = [
    "folder",
    "study_folder",
    "series_uid",
    "n_slices",
    "modality",
    "description",
    "image_type",
    "orientation",
    "pixel_spacing",
    "slice_spacing",
    "rows",
    "cols",
    "series_number",
]

#: Header fields :func:`scan` reads (pydicom ``specific_tags``).
_SCAN_TAGS = [
    "SOPClassUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "ImageType",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
]

#: Elements longer than this many bytes are not read with the header (the
#: pixel data above all); their file offset is kept instead.
_DEFER_BYTES = 4096
_PIXEL_DATA_TAG = 0x7FE00010
#: Two slices closer than this along the slice normal (mm) share a position.
_POSITION_TOL_MM = 1e-3
#: Orientation cosines / pixel spacings that differ by more than this are "mixed".
_GEOMETRY_TOL = 1e-4
#: Relative deviation of a slice gap from the median gap that triggers a warning.
_GAP_TOLERANCE = 0.01
_NATIVE_LE = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
_REISSUE_NOTE = (
    "Note: upstream (MosMed CTLungCa-500) re-issued the SeriesInstanceUIDs in February 2021, "
    "so an annotation made before then may carry an old UID; match such an annotation by its "
    "folder and the series' slice count instead."
)
_PIP_NAMES = {"gdcm": "python-gdcm"}


class SeriesWarning(UserWarning):
    """A series loads, but something about its geometry deserves a look."""


@dataclass
class Volume:
    """One CT series as an array in the annotation's voxel convention.

    Attributes
    ----------
    array : numpy.ndarray
        Shape ``(rows, cols, slices)``, slices in InstanceNumber order, in HU.
        ``int16`` when the rescale keeps integers, else ``float32``. Each
        slice ``array[:, :, k]`` is contiguous in memory (the array is a
        transposed view of a ``(slices, rows, cols)`` buffer); use
        ``numpy.ascontiguousarray`` if C order is needed.
    spacing : tuple of float
        ``(row, col, slice)`` voxel spacing in mm: PixelSpacing and the slice
        gap measured from ImagePositionPatient along the slice normal (NaN for
        a single slice).
    affine : numpy.ndarray
        ``(4, 4)`` matrix mapping ``(row, col, slice, 1)`` to LPS mm.
    headers : list of pydicom.dataset.Dataset
        The headers of the slices, in slice order, without pixel data.
    series_uid : str
        SeriesInstanceUID.
    study_folder : pathlib.Path
        The folder the series was read from.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    headers: list[Dataset]
    series_uid: str
    study_folder: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(rows, cols, slices)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Size of the voxel array in bytes."""
        return int(self.array.nbytes)

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of voxel ``(0, 0, 0)``: ImagePositionPatient of the first slice."""
        return self.affine[:3, 3].copy()

    @property
    def orientation(self) -> tuple[float, ...]:
        """ImageOrientationPatient: the row then the column direction cosines (6 floats)."""
        return tuple(float(v) for v in self.headers[0].ImageOrientationPatient)


# --------------------------------------------------------------------------- files


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _list_files(folder: Path) -> tuple[list[Path], int]:
    """Regular files under `folder` (recursive, sorted) and the count of hidden ones."""
    files, hidden = [], 0
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if _is_hidden(path, folder):
            hidden += 1
        else:
            files.append(path)
    return files, hidden


def _read_image_header(path: Path | str, **kwargs: Any) -> Dataset | None:
    """The header of a DICOM image file, or None for anything else (text, DICOMDIR, ...)."""
    try:
        ds = pydicom.dcmread(path, **kwargs)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        LOGGER.debug("skipping %s: not a readable DICOM file (%s)", path, exc)
        return None
    meta_class = ds.file_meta.get("MediaStorageSOPClassUID") if ds.file_meta else None
    if meta_class == MediaStorageDirectoryStorage or "DirectoryRecordSequence" in ds:
        return None
    if "SeriesInstanceUID" not in ds or "Rows" not in ds or "Columns" not in ds:
        return None
    return ds


# --------------------------------------------------------------------------- geometry


def _floats(value: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in value)


def _normal(iop: Sequence[float]) -> np.ndarray:
    """Slice normal: cross product of the row and column direction cosines."""
    return np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:6], float))


def _slice_spacing(positions: np.ndarray, iop: Sequence[float]) -> float:
    """Mean gap (mm) between the first and last positions along the normal; NaN for < 2."""
    if len(positions) < 2:
        return float("nan")
    proj = positions @ _normal(iop)
    return float(abs(proj.max() - proj.min()) / (len(proj) - 1))


# --------------------------------------------------------------------------- scan


def _scan_files(paths: list[str]) -> tuple[list[dict], int]:
    """Header records of the DICOM images among `paths` and the count of skipped files."""
    records, skipped = [], 0
    for path in paths:
        ds = _read_image_header(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
        if ds is None:
            skipped += 1
            continue
        iop = ds.get("ImageOrientationPatient")
        ipp = ds.get("ImagePositionPatient")
        ps = ds.get("PixelSpacing")
        image_type = ds.get("ImageType")
        if image_type is None:
            image_type = ""
        elif isinstance(image_type, str):
            image_type = str(image_type)
        else:
            image_type = "\\".join(str(v) for v in image_type)
        number = ds.get("InstanceNumber")
        series_number = ds.get("SeriesNumber")
        records.append({
            "path": path,
            "study_uid": str(ds.get("StudyInstanceUID", "")),
            "series_uid": str(ds.SeriesInstanceUID),
            "instance": int(number) if number not in (None, "") else None,
            "modality": str(ds.get("Modality", "")),
            "description": str(ds.get("SeriesDescription", "")),
            "image_type": image_type,
            "orientation": _floats(iop) if iop and len(iop) == 6 else None,
            "position": _floats(ipp) if ipp and len(ipp) == 3 else None,
            "pixel_spacing": _floats(ps) if ps and len(ps) == 2 else None,
            "rows": int(ds.Rows),
            "cols": int(ds.Columns),
            "series_number": int(series_number) if series_number not in (None, "") else None,
        })
    return records, skipped


def _series_rows(records: list[dict], folder: str, study_folder: Path) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(rec["series_uid"], []).append(rec)
    rows = []
    for uid, recs in groups.items():
        recs.sort(key=lambda r: (r["instance"] is None, r["instance"] or 0, r["path"]))
        first = recs[0]
        spacing = float("nan")
        if first["orientation"] is not None and all(r["position"] is not None for r in recs):
            spacing = _slice_spacing(np.array([r["position"] for r in recs]), first["orientation"])
        rows.append({
            "folder": folder,
            "study_folder": str(study_folder),
            "series_uid": uid,
            "n_slices": len(recs),
            "modality": first["modality"],
            "description": first["description"],
            "image_type": first["image_type"],
            "orientation": first["orientation"],
            "pixel_spacing": first["pixel_spacing"],
            "slice_spacing": spacing,
            "rows": first["rows"],
            "cols": first["cols"],
            "series_number": first["series_number"],
        })
    return rows


def scan(path: str | os.PathLike, *, executor: Executor | None = None) -> pd.DataFrame:
    """List the DICOM series under a study folder, a folder of studies or a dataset root.

    Reads headers only (no pixel data). A *dataset root* holds
    ``dicom/<Folder>/...``; each ``<Folder>`` is a study folder. Otherwise
    `path` is taken as one study folder when it directly holds DICOM images or
    when every image below it shares one StudyInstanceUID, and as a folder of
    study folders (its subfolders) when not. Files are searched recursively.

    Parameters
    ----------
    path : path-like
        A dataset root, a folder of study folders or a study folder.
    executor : concurrent.futures.Executor, optional
        Used to map the header reads over study folders (e.g. a
        ``ThreadPoolExecutor``); None reads serially. The result is the same.

    Returns
    -------
    pandas.DataFrame
        One row per series, columns :data:`SCAN_COLUMNS`: ``folder`` (study
        folder name), ``study_folder`` (path), ``series_uid``, ``n_slices``,
        ``modality``, ``description``, ``image_type`` (values joined by
        ``\\``), ``orientation`` (ImageOrientationPatient, 6 floats),
        ``pixel_spacing`` ((row, col) mm), ``slice_spacing`` (mm along the
        slice normal from ImagePositionPatient, NaN for one slice), ``rows``,
        ``cols``, ``series_number``. Sorted by folder, series_number,
        series_uid. ``frame.attrs["skipped_files"]`` counts the files that are
        not DICOM images (text, DICOMDIR, hidden files, unreadable files).

    Raises
    ------
    DataNotFoundError
        When `path` is not an existing folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataNotFoundError(
            f"{root}: no such folder; scan() needs a study folder or a dataset root "
            "(a folder holding dicom/<Folder>/...). Check the path or VFS_DATA_ROOT."
        )
    if (root / "dicom").is_dir():
        base, top_files = root / "dicom", []
        units = [p for p in sorted(base.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        dataset_root = True
    else:
        base = root
        top_files = sorted(p for p in root.iterdir() if p.is_file())
        units = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        dataset_root = False

    skipped = sum(1 for p in top_files if p.name.startswith("."))
    hidden_dirs = [p for p in base.iterdir() if p.is_dir() and p.name.startswith(".")]
    skipped += sum(1 for d in hidden_dirs for p in d.rglob("*") if p.is_file())
    jobs = [[str(p) for p in top_files if not p.name.startswith(".")]]
    for unit in units:
        files, hidden = _list_files(unit)
        skipped += hidden
        jobs.append([str(p) for p in files])
    results = map_ordered(_scan_files, jobs, executor=executor)
    skipped += sum(n for _, n in results)
    top_records = results[0][0]
    unit_records = [recs for recs, _ in results[1:]]

    single_study = False
    if not dataset_root:
        study_uids = {r["study_uid"] for recs in unit_records for r in recs}
        single_study = bool(top_records) or (len(study_uids) <= 1 and root.name != "dicom")
    rows: list[dict] = []
    if single_study:
        every = top_records + [r for recs in unit_records for r in recs]
        rows = _series_rows(every, root.name, root)
    else:
        for unit, recs in zip(units, unit_records):
            rows.extend(_series_rows(recs, unit.name, unit))
    frame = pd.DataFrame(rows, columns=SCAN_COLUMNS)
    frame["n_slices"] = frame["n_slices"].astype("int64")
    frame["rows"] = frame["rows"].astype("int64")
    frame["cols"] = frame["cols"].astype("int64")
    frame["slice_spacing"] = frame["slice_spacing"].astype("float64")
    frame["series_number"] = frame["series_number"].astype("Int64")
    frame = frame.sort_values(["folder", "series_number", "series_uid"], na_position="last")
    frame = frame.reset_index(drop=True)
    frame.attrs["skipped_files"] = int(skipped)
    return frame


# --------------------------------------------------------------------------- load


def _series_listing(headers: Iterable[Dataset]) -> str:
    counts: dict[str, list] = {}
    for ds in headers:
        entry = counts.setdefault(str(ds.SeriesInstanceUID), [0, str(ds.get("SeriesDescription", ""))])
        entry[0] += 1
    if not counts:
        return "  (no DICOM image files at all)"
    return "\n".join(f"  {uid}: {n} slice(s), description {desc!r}"
                     for uid, (n, desc) in sorted(counts.items()))


def _require(ds: Dataset, path: Path, keyword: str, length: int | None = None) -> Any:
    value = ds.get(keyword)
    if value is None or value == "" or (length is not None and len(value) != length):
        raise SeriesError(
            f"{path}: field {keyword} is missing or malformed ({value!r}); load_series needs it "
            "to place the slice. Check the file or remove it from the study folder."
        )
    return value


def _decoder_problem(transfer_syntax: UID) -> str | None:
    """Why pixel data in `transfer_syntax` cannot be decoded here, or None when it can."""
    try:
        decoder = _get_decoder(transfer_syntax)
    except NotImplementedError:
        return (f"pydicom has no decoder at all for transfer syntax {transfer_syntax} "
                f"({transfer_syntax.name}); convert the files (e.g. with gdcmconv --raw)")
    if decoder.is_available:
        return None
    missing = getattr(decoder, "missing_dependencies", [])
    options = []
    for item in missing:
        plugin = item.split(" - ")[0].strip()
        packages = item.split("requires", 1)[-1].replace(" and ", ",").split(",")
        names = []
        for pkg in packages:
            pkg = pkg.strip()
            if not pkg or pkg == "numpy":
                continue
            bare = pkg.split(">")[0].split("=")[0].split("<")[0].strip()
            names.append(_PIP_NAMES.get(bare, bare))
        options.append(f"pip install {' '.join(names)}" if names else plugin)
    hint = " or ".join(f"`{o}`" for o in options) if options else "a pydicom pixel-data plugin"
    return (f"its pixel data are compressed with {transfer_syntax.name} ({transfer_syntax}) "
            f"and no decoder for it is installed: install one with {hint}")


_PIXEL_FIELDS = ("BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
                 "NumberOfFrames")


_TAGS = {kw: Tag(kw) for kw in (*_PIXEL_FIELDS, "Rows", "Columns", "RescaleSlope",
                                 "RescaleIntercept", "ImageOrientationPatient", "PixelSpacing")}


def _raw_key(ds: Dataset, keyword: str) -> Any:
    """A hashable stand-in for the value of `keyword` in `ds` without converting it."""
    elem = ds.get_item(_TAGS[keyword], keep_deferred=True)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        return elem.value
    return repr(elem.value)


def _field_groups(headers: list[Dataset], keywords: Sequence[str]) -> dict[Any, list[int]]:
    """Indices of `headers` grouped by the raw values of `keywords`.

    Lets a field that is the same in every slice be converted (by pydicom) once
    instead of once per slice.
    """
    groups: dict[Any, list[int]] = {}
    for i, ds in enumerate(headers):
        groups.setdefault(tuple(_raw_key(ds, k) for k in keywords), []).append(i)
    return groups


def _uniform(folder: Path, uid: str, paths: list[Path], headers: list[Dataset], keyword: str,
             length: int, what: str) -> tuple[float, ...]:
    """The value of a multi-valued DS field that must agree between slices."""
    groups = list(_field_groups(headers, (keyword,)).values())
    values = [_floats(_require(headers[idx[0]], paths[idx[0]], keyword, length)) for idx in groups]
    for value, idx in zip(values[1:], groups[1:]):
        if np.max(np.abs(np.subtract(value, values[0]))) > _GEOMETRY_TOL:
            raise SeriesError(
                f"{folder}: series {uid} mixes {what}: {paths[groups[0][0]].name} has "
                f"{values[0]} but {paths[idx[0]].name} has {value} ({len(idx)} file(s) like it). "
                "The slices do not form one volume; remove the odd files."
            )
    return values[0]


def _pixel_fast_path(ds: Dataset) -> bool:
    """True when the pixel data are native little-endian 16-bit single-frame grey values."""
    ts = ds.file_meta.get("TransferSyntaxUID") if ds.file_meta else None
    return (
        ts in _NATIVE_LE
        and int(ds.get("BitsAllocated", 0)) == 16
        and int(ds.get("SamplesPerPixel", 1)) == 1
        and int(ds.get("NumberOfFrames", 1) or 1) == 1
        and 1 <= int(ds.get("BitsStored", 16)) <= 16
        and int(ds.get("PixelRepresentation", 0)) in (0, 1)
    )


def _read_pixels(paths: list[Path], first: Dataset, raw: list[Any], rows: int,
                 cols: int) -> np.ndarray:
    """Native 16-bit stored values as a ``(slices, rows, cols)`` array, read straight
    from the files at the PixelData offsets found by the header pass."""
    dtype = np.dtype("<i2") if int(first.get("PixelRepresentation", 0)) == 1 else np.dtype("<u2")
    buf = np.empty((len(paths), rows, cols), dtype=dtype)
    nbytes = rows * cols * 2
    for k, (path, elem) in enumerate(zip(paths, raw)):
        length = -1 if elem is None else (elem.length if elem.value is None else len(elem.value))
        if length < nbytes:
            raise SeriesError(
                f"{path}: PixelData holds {max(length, 0)} bytes, fewer than Rows*Columns*2 = "
                f"{nbytes}; the file is truncated or damaged."
            )
        target = memoryview(buf[k]).cast("B")
        if elem.value is not None:
            target[:] = elem.value[:nbytes]
            continue
        with open(path, "rb", buffering=0) as fh:
            fh.seek(elem.value_tell)
            got = fh.readinto(target)
        if got != nbytes:
            raise SeriesError(
                f"{path}: PixelData ends after {got} of {nbytes} bytes; the file is truncated."
            )
    stored = int(first.get("BitsStored", 16))
    if stored < 16:  # ignore the unused high bits, as pydicom does
        shift = 16 - stored
        np.left_shift(buf, shift, out=buf)
        np.right_shift(buf, shift, out=buf)
    return buf


def _decode_pixels(paths: list[Path]) -> np.ndarray:
    """Stored values of any layout pydicom can decode, as ``(slices, rows, cols)``."""
    slices = []
    for path in paths:
        ds = pydicom.dcmread(path)
        try:
            slices.append(np.asarray(ds.pixel_array))
        except Exception as exc:  # pydicom raises several types for undecodable data
            raise SeriesError(f"{path}: cannot decode the pixel data ({exc}).") from exc
    return np.stack(slices, axis=0)


def _rescale(buf: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """HU from stored values, in place where possible; int16 when exact, else float32."""
    integral = (
        buf.dtype.kind in "iu"
        and np.all(slopes == 1.0)
        and np.all(intercepts == np.round(intercepts))
    )
    if integral and buf.size:
        lo = int(buf.min()) + int(intercepts.min())
        hi = int(buf.max()) + int(intercepts.max())
        integral = -32768 <= lo and hi <= 32767
    if integral:
        if buf.dtype == np.dtype("<u2") and int(buf.max(initial=0)) <= 32767:
            out = buf.view(np.int16)
        elif buf.dtype.kind in "iu" and buf.dtype.itemsize <= 2 and buf.dtype.kind == "i":
            out = buf.astype(np.int16, copy=False)
        else:
            out = buf.astype(np.int32)
            out += intercepts.astype(np.int32)[:, None, None]
            return out.astype(np.int16)
        icpt = intercepts.astype(np.int16)
        if np.all(icpt == icpt[0]):
            if icpt[0] != 0:
                out += icpt[0]
        else:
            out += icpt[:, None, None]
        return out
    out = np.empty(buf.shape, dtype=np.float32)
    for k in range(buf.shape[0]):
        out[k] = buf[k] * float(slopes[k]) + float(intercepts[k])
    return out


def load_series(study_folder: str | os.PathLike, series_uid: str) -> Volume:
    """Load one series of a study folder as a :class:`Volume`.

    The headers of every file under `study_folder` (recursively) are read
    without their pixel data; the files of `series_uid` are sorted by
    InstanceNumber, and only their pixel data are then read.

    Parameters
    ----------
    study_folder : path-like
        The study folder (``<dataset root>/dicom/<Folder>``).
    series_uid : str
        SeriesInstanceUID of the series to load.

    Returns
    -------
    Volume
        ``array`` (rows, cols, slices) in HU: stored value * RescaleSlope +
        RescaleIntercept (1 and 0 when absent), ``int16`` when slope is 1 and
        the intercept an integer and the values fit, else ``float32``;
        ``spacing`` (row, col, slice) mm, the slice spacing measured from
        ImagePositionPatient along the slice normal (SliceThickness is not
        used); ``affine`` (4, 4) voxel (row, col, slice) -> LPS mm, whose third
        column is the mean position step between consecutive slices (for a
        single slice: minus the slice normal times SliceThickness, or 1 mm);
        ``headers`` in slice order without pixel data.

    Raises
    ------
    DataNotFoundError
        When `study_folder` does not exist.
    SeriesError
        When no file has `series_uid` (the message lists the series present),
        or the series' slices have duplicate positions, mixed Rows/Columns,
        mixed orientations or pixel spacings, missing geometry fields, or
        compressed pixel data without an installed decoder.

    Warns
    -----
    SeriesWarning
        When the slice gaps are uneven (more than 1 % from the median gap) or
        the InstanceNumber order is not the order of the positions along the
        slice normal (the array keeps the InstanceNumber order).
    """
    folder = Path(study_folder)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"study folder {folder} does not exist (or is not a folder); check the dataset root "
            "(VFS_DATA_ROOT) and the annotation's Folder field."
        )
    series_uid = str(series_uid).strip()
    files, _ = _list_files(folder)
    present: list[Dataset] = []
    matches: list[tuple[Path, Dataset, Any]] = []
    for path in files:
        ds = _read_image_header(path, defer_size=_DEFER_BYTES)
        if ds is None:
            continue
        present.append(ds)
        if str(ds.SeriesInstanceUID) != series_uid:
            continue
        raw = ds.get_item(_PIXEL_DATA_TAG, keep_deferred=True) if _PIXEL_DATA_TAG in ds else None
        if _PIXEL_DATA_TAG in ds:
            del ds[_PIXEL_DATA_TAG]
        matches.append((path, ds, raw))
    if not matches:
        raise SeriesError(
            f"{folder}: no DICOM file has SeriesInstanceUID {series_uid}. Series present:\n"
            f"{_series_listing(present)}\n{_REISSUE_NOTE}"
        )

    for path, ds, _ in matches:
        _require(ds, path, "InstanceNumber")
    matches.sort(key=lambda m: (int(m[1].InstanceNumber), str(m[0])))
    paths = [m[0] for m in matches]
    headers = [m[1] for m in matches]
    raws = [m[2] for m in matches]
    n = len(paths)

    # Fields that are the same in every slice are converted once per distinct raw value.
    sizes = _field_groups(headers, ("Rows", "Columns"))
    if len(sizes) > 1:
        detail = "; ".join(
            f"{int(headers[idx[0]].Rows)}x{int(headers[idx[0]].Columns)} in {len(idx)} file(s), "
            f"e.g. {paths[idx[0]].name}" for idx in sizes.values())
        raise SeriesError(
            f"{folder}: series {series_uid} mixes image sizes (Rows x Columns): {detail}. "
            "The slices cannot be stacked; remove the odd files or pick another series."
        )
    rows, cols = int(headers[0].Rows), int(headers[0].Columns)

    iop = np.array(_uniform(folder, series_uid, paths, headers, "ImageOrientationPatient", 6,
                            "orientations (ImageOrientationPatient)"))
    pixel_spacing = _uniform(folder, series_uid, paths, headers, "PixelSpacing", 2, "PixelSpacing")
    positions = np.array([_floats(_require(ds, p, "ImagePositionPatient", 3))
                          for p, ds in zip(paths, headers)])
    row_cos, col_cos = iop[:3], iop[3:]
    normal = _normal(iop)
    proj = positions @ normal

    order = np.argsort(proj, kind="stable")
    gaps = np.diff(proj[order])
    dup = np.flatnonzero(gaps < _POSITION_TOL_MM)
    if dup.size:
        a, b = order[dup[0]], order[dup[0] + 1]
        raise SeriesError(
            f"{folder}: series {series_uid} has duplicate slice positions: {paths[a].name} "
            f"(InstanceNumber {headers[a].InstanceNumber}) and {paths[b].name} (InstanceNumber "
            f"{headers[b].InstanceNumber}) both lie at {proj[a]:.3f} mm along the slice normal "
            f"({dup.size} duplicate(s)). The folder may hold two copies or two acquisitions of "
            "the series; remove the duplicates."
        )
    steps = np.diff(proj)
    if n > 2 and not (np.all(steps > 0) or np.all(steps < 0)):
        warnings.warn(
            f"{folder}: series {series_uid}: the InstanceNumber order of the slices is not the "
            "order of their positions along the slice normal; the array follows InstanceNumber "
            "(the annotation's convention), so neighbouring slices may not be adjacent.",
            SeriesWarning, stacklevel=2,
        )
    if n > 2:
        median = float(np.median(gaps))
        deviation = float(np.max(np.abs(gaps - median)) / median)
        if deviation > _GAP_TOLERANCE:
            warnings.warn(
                f"{folder}: series {series_uid} has uneven slice gaps: from {gaps.min():.3f} to "
                f"{gaps.max():.3f} mm (median {median:.3f} mm, {deviation:.1%} deviation); the "
                "spacing is the mean gap and distances along the slices are approximate.",
                SeriesWarning, stacklevel=2,
            )

    syntaxes = {str(ds.file_meta.get("TransferSyntaxUID", "")) for ds in headers if ds.file_meta}
    for ts in sorted(syntaxes - {""}):
        if UID(ts).is_compressed:
            problem = _decoder_problem(UID(ts))
            if problem:
                raise SeriesError(f"{folder}: series {series_uid}: {problem}.")

    slopes, intercepts = np.ones(n), np.zeros(n)
    for idx in _field_groups(headers, ("RescaleSlope", "RescaleIntercept")).values():
        ds = headers[idx[0]]
        slopes[idx] = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercepts[idx] = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    layouts = _field_groups(headers, _PIXEL_FIELDS)
    fast = syntaxes <= set(_NATIVE_LE) and len(layouts) == 1 and _pixel_fast_path(headers[0])
    buf = _read_pixels(paths, headers[0], raws, rows, cols) if fast else _decode_pixels(paths)
    if buf.shape[1:] != (rows, cols):
        raise SeriesError(f"{folder}: series {series_uid}: decoded slices have shape "
                          f"{buf.shape[1:]}, not Rows x Columns = {(rows, cols)}.")
    array = _rescale(buf, slopes, intercepts).transpose(1, 2, 0)

    affine = np.eye(4)
    affine[:3, 0] = col_cos * pixel_spacing[0]
    affine[:3, 1] = row_cos * pixel_spacing[1]
    if n > 1:
        affine[:3, 2] = (positions[-1] - positions[0]) / (n - 1)
        slice_spacing = float(abs(proj[-1] - proj[0]) / (n - 1))
    else:
        thickness = headers[0].get("SliceThickness")
        affine[:3, 2] = -normal * (float(thickness) if thickness not in (None, "") else 1.0)
        slice_spacing = float("nan")
    affine[:3, 3] = positions[0]
    return Volume(
        array=array,
        spacing=(float(pixel_spacing[0]), float(pixel_spacing[1]), slice_spacing),
        affine=affine,
        headers=headers,
        series_uid=series_uid,
        study_folder=folder,
    )


# --------------------------------------------------------------------------- write


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
    """Write a volume as a CT Image Storage series, one file per slice.

    The files go into `folder` itself (the series' own folder, e.g.
    ``<study>/series-001``); several series of one study are several such
    folders. Everything is written to a hidden temporary sibling folder first,
    which is then renamed to `folder`. The output is deterministic: no clock
    time, UIDs derived from `series_uid` and the slice index, so the same
    input gives byte-identical files.

    Parameters
    ----------
    folder : path-like
        The series folder to create. Must not exist or be empty.
    array : numpy.ndarray
        ``(rows, cols, slices)`` in HU (a 2-D array is one slice). Stored as
        int16 ``round((value - intercept) / slope)``.
    spacing : sequence of 3 floats
        ``(row, col, slice)`` mm. PixelSpacing is ``(spacing[0], spacing[1])``.
    series_uid, study_uid, frame_of_reference_uid : str
        SeriesInstanceUID, StudyInstanceUID, FrameOfReferenceUID.
    origin : sequence of 3 floats
        ImagePositionPatient (LPS mm) of the first slice.
    orientation : sequence of 6 floats
        ImageOrientationPatient: row then column direction cosines.
    slope, intercept : float
        RescaleSlope and RescaleIntercept.
    patient_id, patient_name, study_date : str
        PatientID, PatientName, StudyDate (``YYYYMMDD``).
    series_number : int
        SeriesNumber.
    series_description : str
        SeriesDescription.
    image_type : sequence of str
        ImageType values.
    slice_thickness : float, optional
        SliceThickness in mm; defaults to ``spacing[2]``.
    file_prefix : str
        File names are ``f"{file_prefix}{k + 1:05d}.dcm"``.
    extra : dict, optional
        More elements ``{keyword: value}``, set on every slice last (they
        override the defaults).

    Returns
    -------
    list of pathlib.Path
        The files written, in slice order.

    Notes
    -----
    Slice ``k`` has InstanceNumber ``k + 1`` and ImagePositionPatient
    ``origin + k * spacing[2] * slice_dir`` with
    ``slice_dir = -cross(row_cosine, col_cosine)`` (head to feet for the
    default axial orientation).

    Raises
    ------
    DatasetExistsError
        When `folder` exists and is not empty.
    SeriesError
        When the array, spacing or orientation is unusable, or the values do
        not fit int16 with the given slope and intercept.
    """
    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DatasetExistsError(
            f"{target} already exists and is not empty; write_series does not overwrite. "
            "Choose a new folder or delete this one first."
        )
    values = np.asarray(array)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3 or 0 in values.shape:
        raise SeriesError(f"{target}: array must have shape (rows, cols, slices); got {values.shape}.")
    spacing_f = np.asarray(spacing, dtype=float)
    if spacing_f.shape != (3,) or not np.all(np.isfinite(spacing_f)) or np.any(spacing_f <= 0):
        raise SeriesError(f"{target}: spacing must be 3 positive mm values (row, col, slice); "
                          f"got {spacing!r}.")
    iop = np.asarray(orientation, dtype=float)
    if iop.shape != (6,):
        raise SeriesError(f"{target}: orientation must be 6 direction cosines; got {orientation!r}.")
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
        raise SeriesError(
            f"{target}: values {lo}..{hi} HU do not fit int16 with slope "
            f"{slope} and intercept {intercept}; clip the array or change slope/intercept."
        )

    def stored_slice(k: int) -> np.ndarray:
        plane = values[:, :, k].astype(np.float64)
        return np.round((plane - float(intercept)) / float(slope)).astype("<i2")

    rows, cols, n = values.shape
    normal = np.cross(row_cos, col_cos)
    slice_dir = -normal
    thickness = float(spacing_f[2] if slice_thickness is None else slice_thickness)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid(entropy_srcs=["vfs-tutorials", "vfs_utils.dicom"])
    meta.ImplementationVersionName = "VFS_UTILS_1"

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    names = []
    try:
        for k in range(n):
            sop_uid = generate_uid(entropy_srcs=[str(series_uid), "slice", str(k)])
            position = origin_f + k * spacing_f[2] * slice_dir
            ds = Dataset()
            ds.file_meta = FileMetaDataset(meta)
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            # SOP common
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            # patient
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.PatientBirthDate = ""
            ds.PatientSex = "O"
            # general study
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = study_date
            ds.StudyTime = "000000"
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.AccessionNumber = ""
            # general series
            ds.Modality = "CT"
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = int(series_number)
            ds.SeriesDescription = series_description
            ds.PatientPosition = "HFS"
            # frame of reference
            ds.FrameOfReferenceUID = frame_of_reference_uid
            ds.PositionReferenceIndicator = ""
            # general equipment
            ds.Manufacturer = "vfs-tutorials phantom"
            # general image
            ds.InstanceNumber = k + 1
            ds.ImageType = list(image_type)
            # image plane
            ds.PixelSpacing = [_ds_number(spacing_f[0]), _ds_number(spacing_f[1])]
            ds.ImageOrientationPatient = [_ds_number(v) for v in iop]
            ds.ImagePositionPatient = [_ds_number(v) for v in position]
            ds.SliceThickness = _ds_number(thickness)
            ds.SliceLocation = _ds_number(float(position @ normal))
            # image pixel
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = rows
            ds.Columns = cols
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            # CT image
            ds.RescaleIntercept = _ds_number(intercept)
            ds.RescaleSlope = _ds_number(slope)
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
        if target.exists():
            target.rmdir()
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [target / name for name in names]

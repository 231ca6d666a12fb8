"""``load_series``: one series of a study folder as a :class:`Volume`."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.pixels import get_decoder as _get_decoder
from pydicom.uid import UID

from ..errors import DataNotFoundError, SeriesError
from ._common import (
    GAP_TOLERANCE,
    GEOMETRY_TOL,
    POSITION_TOL_MM,
    REISSUE_NOTE,
    SeriesWarning,
    SliceHeaders,
    Volume,
    as_tuple,
    normal,
)
from ._files import NATIVE_LE
from .index import folder_listing

__all__ = ["load_series"]

#: A decoded pixel buffer larger than this is refused before it is allocated.
_MAX_BYTES = 16 * 2**30


def _series_listing(records: list[dict]) -> str:
    counts: dict[str, list] = {}
    for rec in records:
        entry = counts.setdefault(rec["series_uid"], [0, rec["description"]])
        entry[0] += 1
    if not counts:
        return "  (no DICOM image files at all)"
    return "\n".join(f"  {uid}: {n} slice(s), description {desc!r}"
                     for uid, (n, desc) in sorted(counts.items()))


def _require(rec: dict, path: Path, field: str, keyword: str) -> object:
    value = rec.get(field)
    if value is None:
        raise SeriesError(
            f"{path}: field {keyword} is missing or empty; load_series needs it to place the "
            "slice. Check the file or remove it from the study folder."
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
    missing = "; ".join(getattr(decoder, "missing_dependencies", [])) or "a pixel-data plugin"
    return (f"its pixel data are compressed with {transfer_syntax.name} ({transfer_syntax}) "
            f"and no decoder for it is installed; pydicom needs {missing}: pip install one "
            "(gdcm is pip's python-gdcm)")


def _uniform(folder: Path, uid: str, paths: list[Path], recs: list[dict], field: str,
             keyword: str, what: str) -> tuple[float, ...]:
    """The value of a multi-valued field that must agree between slices."""
    groups: dict[tuple, list[int]] = {}
    for i, rec in enumerate(recs):
        groups.setdefault(as_tuple(_require(rec, paths[i], field, keyword)), []).append(i)
    values = list(groups)
    idx = list(groups.values())
    for value, members in zip(values[1:], idx[1:]):
        if np.max(np.abs(np.subtract(value, values[0]))) > GEOMETRY_TOL:
            raise SeriesError(
                f"{folder}: series {uid} mixes {what}: {os.path.basename(paths[idx[0][0]])} has "
                f"{values[0]} but {os.path.basename(paths[members[0]])} has {value} "
                f"({len(members)} file(s) like it). The slices do not form one volume; remove "
                "the odd files."
            )
    return values[0]


def _read_pixels(paths: list[str], recs: list[dict], rows: int, cols: int,
                 intercepts: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """Native 16-bit stored values ``(slices, rows, cols)`` read at the recorded offsets.

    With `intercepts`, each slice is rescaled to int16 HU while in the CPU cache:
    ``(array, True)``, or ``(stored values, False)`` when a slice would not fit int16.
    """
    first = recs[0]
    signed = first["pixel_representation"] == 1
    buf = np.empty((len(paths), rows, cols), dtype="<i2" if signed else "<u2")
    as_int16 = buf.view(np.int16)
    nbytes = rows * cols * 2
    stored = first["bits_stored"]
    shift = 16 - stored
    done = intercepts is not None
    bounds = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    for k, (path, rec) in enumerate(zip(paths, recs)):
        plane = buf[k]
        try:
            with open(path, "rb", buffering=0) as fh:
                fh.seek(rec["pixel_offset"])
                got = fh.readinto(memoryview(plane).cast("B"))
        except OSError as exc:
            raise SeriesError(f"{path}: cannot read the pixel data ({exc}).") from exc
        if got != nbytes:
            raise SeriesError(
                f"{path}: PixelData ends after {got} of {nbytes} bytes; the file is truncated."
            )
        if shift:  # ignore the unused high bits, as pydicom does
            np.left_shift(plane, shift, out=plane)
            np.right_shift(plane, shift, out=plane)
        if done:
            icpt = int(intercepts[k])
            lo, hi = bounds  # the range BitsStored allows; the plane's own when that may overflow
            if lo + icpt < -32768:  # only the end the intercept moves towards can overflow
                lo = int(plane.min())
            if hi + icpt > 32767 or (not signed and hi > 32767):
                hi = int(plane.max())
            if lo + icpt < -32768 or hi + icpt > 32767 or (not signed and hi > 32767):
                for j in range(k):  # undo (int16 arithmetic wraps, so this is exact)
                    as_int16[j] -= np.int16(int(intercepts[j]))
                done = False
            elif icpt:
                as_int16[k] += np.int16(icpt)
    return (as_int16 if done else buf), done


def _decode_pixels(paths: list[Path]) -> np.ndarray:
    """Stored values of any layout pydicom can decode, as ``(slices, rows, cols)``."""
    slices = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path)
            slices.append(np.asarray(ds.pixel_array))
        except Exception as exc:  # pydicom raises many types for undecodable data
            raise SeriesError(f"{path}: cannot decode the pixel data "
                              f"({type(exc).__name__}: {exc}).") from exc
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise SeriesError(f"{paths[0].parent}: the decoded slices have different shapes "
                          f"{sorted(shapes)}; they do not form one volume.")
    return np.stack(slices, axis=0)


def _rescale(buf: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """HU from stored values: int16 when slope 1 and integral intercepts keep them in range,
    else float32."""
    if (buf.dtype.kind in "iu" and buf.size and np.all(slopes == 1.0)
            and np.all(intercepts == np.round(intercepts))):
        lo = int(buf.min()) + int(intercepts.min())
        if lo >= -32768 and int(buf.max()) + int(intercepts.max()) <= 32767:
            out = buf.astype(np.int16)  # int16 arithmetic wraps and the result fits: exact
            out += intercepts.astype(np.int16)[:, None, None]
            return out
    out = np.empty(buf.shape, dtype=np.float32)
    for k in range(buf.shape[0]):
        out[k] = buf[k] * float(slopes[k]) + float(intercepts[k])
    return out


def _broken_members(folder: Path, listing: dict, series_uid: str) -> None:
    """Raise for a damaged file of this series, or of a series that cannot be told."""
    for rec in listing["records"]:
        if rec["status"] != "broken":
            continue
        path = folder / rec["path"]
        uid = rec.get("series_uid")
        if uid is None:
            try:
                with open(path, "rb") as fh:
                    head = fh.read(1 << 16)
            except OSError:
                head = b""
            if series_uid.encode("ascii", "replace") not in head:
                raise SeriesError(
                    f"{path}: a damaged DICOM file whose series cannot be told: {rec['reason']}. "
                    f"If it belongs to series {series_uid} the volume would miss a slice; "
                    "replace or remove the file."
                )
            uid = series_uid
        if uid == series_uid:
            raise SeriesError(
                f"{path}: a file of series {series_uid} cannot be used: {rec['reason']}. "
                "The volume would have a gap; replace or remove the file."
            )


def load_series(study_folder: str | os.PathLike, series_uid: str, *,
                index: bool | None = None) -> Volume:
    """Load one series of a study folder as a :class:`Volume`, slices in InstanceNumber order.

    Parameters
    ----------
    study_folder : path-like
        The study folder (``<dataset root>/dicom/<Folder>``), searched recursively.
    series_uid : str
        SeriesInstanceUID of the series to load.
    index : bool, optional
        False bypasses the series index; None (default) uses it unless ``VFS_NO_INDEX=1``.

    Returns
    -------
    Volume
        HU (stored * RescaleSlope + RescaleIntercept); the slice spacing is measured from
        ImagePositionPatient along the normal; the affine's third column is the mean
        position step (one slice: minus the normal times SliceThickness, or 1 mm).

    Raises
    ------
    DataNotFoundError
        When `study_folder` does not exist.
    SeriesError
        When the series is absent (the series present are listed), a file of it is
        damaged (file and field named), or the slices do not form one volume.

    Warns
    -----
    SeriesWarning
        When the slice gaps are uneven (more than 1 %) or InstanceNumber order is not
        position order.
    """
    folder = Path(study_folder)
    if not folder.is_dir():
        raise DataNotFoundError(
            f"study folder {folder} does not exist (or is not a folder); check the dataset root "
            "(VFS_DATA_ROOT) and the annotation's Folder field."
        )
    series_uid = str(series_uid).strip()
    listing = folder_listing(folder, index=index)
    images = [r for r in listing["records"] if r["status"] == "image"]
    matches = [r for r in images if r["series_uid"] == series_uid]
    if not matches:
        _broken_members(folder, listing, series_uid)
        raise SeriesError(
            f"{folder}: no DICOM file has SeriesInstanceUID {series_uid}. Series present:\n"
            f"{_series_listing(images)}\n{REISSUE_NOTE}"
        )
    _broken_members(folder, listing, series_uid)
    for rec in matches:
        if rec["instance"] is None:
            _require(rec, folder / rec["path"], "instance", "InstanceNumber")
    matches.sort(key=lambda r: (r["instance"], r["path"]))
    folder_s = str(folder)
    paths = [os.path.join(folder_s, r["path"]) for r in matches]
    n = len(paths)

    sizes: dict[tuple[int, int], list[int]] = {}
    for i, rec in enumerate(matches):
        sizes.setdefault((rec["rows"], rec["cols"]), []).append(i)
    if len(sizes) > 1:
        detail = "; ".join(f"{r}x{c} in {len(idx)} file(s), e.g. {os.path.basename(paths[idx[0]])}"
                           for (r, c), idx in sizes.items())
        raise SeriesError(
            f"{folder}: series {series_uid} mixes image sizes (Rows x Columns): {detail}. "
            "The slices cannot be stacked; remove the odd files or pick another series."
        )
    rows, cols = matches[0]["rows"], matches[0]["cols"]

    iop = np.array(_uniform(folder, series_uid, paths, matches, "orientation",
                            "ImageOrientationPatient", "orientations (ImageOrientationPatient)"))
    pixel_spacing = _uniform(folder, series_uid, paths, matches, "pixel_spacing", "PixelSpacing",
                             "PixelSpacing")
    positions = np.array([_require(r, p, "position", "ImagePositionPatient")
                          for r, p in zip(matches, paths)], dtype=float)
    row_cos, col_cos = iop[:3], iop[3:]
    slice_normal = normal(iop)
    if not np.isfinite(slice_normal).all() or np.linalg.norm(slice_normal) < 0.5:
        raise SeriesError(
            f"{paths[0]}: field ImageOrientationPatient {tuple(iop)} is not two orthogonal unit "
            "vectors; the slices cannot be placed. Check the file."
        )
    proj = positions @ slice_normal

    order = np.argsort(proj, kind="stable")
    gaps = np.diff(proj[order])
    dup = np.flatnonzero(gaps < POSITION_TOL_MM)
    if dup.size:
        a, b = order[dup[0]], order[dup[0] + 1]
        raise SeriesError(
            f"{folder}: series {series_uid} has duplicate slice positions: "
            f"{os.path.basename(paths[a])} (InstanceNumber {matches[a]['instance']}) and "
            f"{os.path.basename(paths[b])} (InstanceNumber {matches[b]['instance']}) both lie "
            f"at {proj[a]:.3f} mm along the slice normal ({dup.size} duplicate(s)). The folder "
            "may hold two copies or two acquisitions of the series; remove the duplicates."
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
        if deviation > GAP_TOLERANCE:
            warnings.warn(
                f"{folder}: series {series_uid} has uneven slice gaps: from {gaps.min():.3f} to "
                f"{gaps.max():.3f} mm (median {median:.3f} mm, {deviation:.1%} deviation); the "
                "spacing is the mean gap and distances along the slices are approximate.",
                SeriesWarning, stacklevel=2,
            )

    syntaxes = {r["transfer_syntax"] for r in matches}
    for ts in sorted(syntaxes - {""}):
        if ts in NATIVE_LE:
            continue
        problem = None
        try:
            uid = UID(ts)
            if not uid.is_transfer_syntax:
                problem = (f"its transfer syntax UID {ts} is not a known transfer syntax; "
                           "the pixel data cannot be interpreted")
            elif uid.is_compressed:
                problem = _decoder_problem(uid)
        except ValueError as exc:
            problem = f"its transfer syntax {ts!r} is not usable ({exc})"
        if problem:
            culprit = next(p for p, r in zip(paths, matches) if r["transfer_syntax"] == ts)
            raise SeriesError(f"{culprit}: series {series_uid}: {problem} (TransferSyntaxUID).")

    layouts = {(r["bits_allocated"], r["bits_stored"], r["pixel_representation"], r["samples"],
                r["frames"]) for r in matches}
    first = matches[0]
    fast = (syntaxes <= set(NATIVE_LE) and len(layouts) == 1 and first["bits_allocated"] == 16
            and first["samples"] == 1 and first["frames"] == 1
            and all(r["pixel_offset"] is not None for r in matches))
    slopes = np.array([r["slope"] for r in matches], dtype=float)
    intercepts = np.array([r["intercept"] for r in matches], dtype=float)
    integral = bool(np.all(slopes == 1.0) and np.all(intercepts == np.round(intercepts))
                    and np.all(np.abs(intercepts) < 65536))
    rescaled = False
    if fast:
        buf, rescaled = _read_pixels(paths, matches, rows, cols,
                                     intercepts if integral else None)
    else:
        need = sum(r["rows"] * r["cols"] * r["samples"] * r["frames"]
                   * ((r["bits_allocated"] + 7) // 8) for r in matches)
        if need > _MAX_BYTES:
            raise SeriesError(f"{folder}: series {series_uid} would decode to {need / 2**30:.0f} "
                              "GiB (Rows x Columns x frames in the headers); the headers are "
                              "probably damaged.")
        buf = _decode_pixels(paths)
    if buf.shape[1:] != (rows, cols):
        raise SeriesError(f"{folder}: series {series_uid}: decoded slices have shape "
                          f"{buf.shape[1:]}, not Rows x Columns = {(rows, cols)}.")
    array = (buf if rescaled else _rescale(buf, slopes, intercepts)).transpose(1, 2, 0)

    affine = np.eye(4)
    affine[:3, 0] = col_cos * pixel_spacing[0]
    affine[:3, 1] = row_cos * pixel_spacing[1]
    if n > 1:
        affine[:3, 2] = (positions[-1] - positions[0]) / (n - 1)
        spacing_z = float(abs(proj[-1] - proj[0]) / (n - 1))
    else:
        thickness = first.get("thickness")
        affine[:3, 2] = -slice_normal * (thickness if thickness else 1.0)
        spacing_z = float("nan")
    affine[:3, 3] = positions[0]
    return Volume(
        array=array,
        spacing=(float(pixel_spacing[0]), float(pixel_spacing[1]), spacing_z),
        affine=affine,
        headers=SliceHeaders(paths),
        series_uid=series_uid,
        study_folder=folder,
    )


"""The cold path: list a study folder's files and read their headers into JSON-able records.

A record's ``status`` is ``"image"`` (checked fields, and the pixel data's offset and length
when stored natively), ``"broken"`` (``reason`` names the field at fault) or ``"other"``
(not a DICOM image). A file without file meta is read with ``force=True``.
"""
from __future__ import annotations

import hashlib
import math
import os
import stat
import struct
import time
import warnings
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from ._common import LOGGER

__all__ = ["NATIVE_LE", "RECORD_VERSION", "TAGS", "inside", "read_record", "refresh",
           "walk"]

#: Bumped whenever the record layout or the checks change (old index entries are rebuilt).
RECORD_VERSION = 2

#: The header fields a record holds (pydicom's ``specific_tags``).
TAGS = ["SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesDescription",
        "SeriesNumber", "ImageType", "InstanceNumber", "ImagePositionPatient",
        "ImageOrientationPatient", "PixelSpacing", "SliceThickness", "Rows", "Columns",
        "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel",
        "NumberOfFrames", "RescaleSlope", "RescaleIntercept", "SpecificCharacterSet"]
#: The transfer syntaxes whose pixel bytes are read straight from the file.
NATIVE_LE = (str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian))
#: Largest |RescaleSlope| x 2**BitsStored and |RescaleIntercept| whose voxels fit float32.
_MAX_HU = 1e37
_DEFLATED = str(DeflatedExplicitVRLittleEndian)
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UN", b"UR", b"UT"}


class _Bad(Exception):
    """A header field that cannot be used: ``tag`` and why."""

    def __init__(self, tag: str, why: str) -> None:
        super().__init__(f"{tag} {why}")
        self.tag = tag


def inside(path: str, other: str) -> bool:
    """Whether `path` is `other` or lies below it (both resolved)."""
    return path == other or path.startswith(other.rstrip(os.sep) + os.sep)


def walk(folder: Path) -> tuple[list[tuple[str, os.stat_result]], int, list[list[str]]]:
    """Files under `folder`: ``(relative posix path, stat)`` sorted, skipped count, problems.

    Skipped: hidden names and links back into `folder` or above it (other links are
    followed, each target once). Special files are never opened: they become a problem
    ``[path, reason]``, as do unreadable folders.
    """
    files: list[tuple[str, os.stat_result]] = []
    problems: list[list[str]] = []
    skipped = 0
    top = os.path.realpath(folder)
    seen: set[tuple[int, int]] = set()

    def count(path: str) -> int:
        """Files at or below `path` (no links followed)."""
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                with os.scandir(path) as it:
                    return sum(count(e.path) for e in it)
        except OSError:
            return 0
        return 1

    def visit(path: str, rel: str) -> None:
        nonlocal skipped
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append([path, f"cannot list the folder ({exc.strerror or exc}); its files "
                                   "are not read: check its permissions"])
            return
        for entry in entries:
            if entry.name.startswith("."):
                skipped += count(entry.path)
                continue
            try:
                if entry.is_symlink():
                    real = os.path.realpath(entry.path)
                    if inside(real, top) or inside(top, real):
                        skipped += 1  # a second path to something listed, or a loop
                        continue
                st = entry.stat()
            except OSError as exc:
                problems.append([entry.path, f"cannot stat ({exc.strerror or exc})"])
                continue
            if (st.st_dev, st.st_ino) in seen:  # one target reached through two links
                skipped += 1
                continue
            seen.add((st.st_dev, st.st_ino))
            if stat.S_ISDIR(st.st_mode):
                visit(entry.path, f"{rel}{entry.name}/")
            elif stat.S_ISREG(st.st_mode):
                files.append((f"{rel}{entry.name}", st))
            else:
                problems.append([entry.path, "not a regular file (a FIFO, socket or device); "
                                             "not read: remove it from the study folder"])

    visit(str(folder), "")
    files.sort(key=lambda item: item[0])
    return files, skipped, problems


def signature(files: list[tuple[str, os.stat_result]], skipped: int,
              problems: list[list[str]]) -> str:
    """A digest of the names, sizes, modification times and inodes of a folder's files."""
    h = hashlib.sha1(f"v{RECORD_VERSION}|{skipped}|".encode())
    for rel, st in files:
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode("utf-8",
                                                                                "surrogateescape"))
    for path, why in problems:
        h.update(f"!{path}\0{why}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _value(ds: Any, keyword: str) -> Any:
    try:
        value = ds.get(keyword)
    except Exception as exc:  # pydicom raises many types for damaged values
        raise _Bad(keyword, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if isinstance(value, (bytes, bytearray)):
        raise _Bad(keyword, f"holds undecodable bytes {bytes(value)[:16]!r}")
    return None if value is None or value == "" else value


def _text(ds: Any, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)
    try:
        return "\\".join(str(v) for v in value)
    except TypeError:
        return str(value)


def _floats(ds: Any, keyword: str, count: int, positive: bool = False) -> list[float] | None:
    value = _value(ds, keyword)
    if value is None:
        return None
    items = [value] if isinstance(value, (str, int, float)) else list(value)
    if len(items) != count:
        raise _Bad(keyword, f"has {len(items)} value(s) {value!r}, not {count}")
    out = []
    for v in items:
        try:
            number = float(v)
        except (TypeError, ValueError, OverflowError) as exc:
            raise _Bad(keyword, f"value {v!r} is not a number") from exc
        if not math.isfinite(number):
            raise _Bad(keyword, f"value {v!r} is not a finite number")
        out.append(number)
    if positive and any(v <= 0 for v in out):
        raise _Bad(keyword, f"value {out} is not positive")
    return out


def _scalar(ds: Any, keyword: str, default: float | None) -> float | None:
    out = _floats(ds, keyword, 1)
    return default if out is None else out[0]


def _integer(ds: Any, keyword: str, lo: int, hi: int, default: int | None = None) -> int | None:
    number = _scalar(ds, keyword, None)
    if number is None:
        return default
    if number != int(number) or not lo <= number <= hi:
        raise _Bad(keyword, f"value {number:g} is not an integer from {lo} to {hi}")
    return int(number)


def pixel_element(fh: Any, at: int, implicit: bool) -> tuple[int, int] | None:
    """``(value offset, value length)`` of the pixel data element starting at `at`, or None."""
    fh.seek(at)
    head = fh.read(12)
    if len(head) < 8:
        return None
    group, elem = struct.unpack("<HH", head[:4])
    if (group << 16 | elem) not in _PIXEL_TAGS:
        return None
    if implicit:
        return at + 8, struct.unpack("<I", head[4:8])[0]
    if head[4:6] in _LONG_VRS:
        return (at + 12, struct.unpack("<I", head[8:12])[0]) if len(head) == 12 else None
    return at + 8, struct.unpack("<H", head[6:8])[0]


def _dcmread(fh: Any) -> Any:
    """pydicom's read of the header; a file without file meta is read with ``force=True``."""
    try:
        return pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=TAGS)
    except InvalidDicomError:
        fh.seek(0)
        if fh.read(2) != b"\x08\x00":  # a data set without meta starts with group 0008
            raise
        fh.seek(0)
        ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=TAGS, force=True)
        if "SeriesInstanceUID" not in ds:  # text, or any other file: not DICOM
            raise
        return ds


def read_record(path: str | os.PathLike, rel: str, st: os.stat_result) -> dict:
    """The record of one file (see the module docstring); `rel` is its listed path."""
    with warnings.catch_warnings():
        # also in Dask workers, where no setup() ran quiet_uid_warnings
        warnings.filterwarnings("ignore", message=r"Invalid value for VR UI", category=UserWarning)
        return _read_record(path, rel, st)


def _read_record(path: str | os.PathLike, rel: str, st: os.stat_result) -> dict:
    base = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    try:
        with open(path, "rb") as fh:
            try:
                ds = _dcmread(fh)
            except InvalidDicomError:
                return {**base, "status": "other", "reason": "not a DICOM file"}
            except Exception as exc:  # damaged bytes raise many types  # noqa: BLE001
                return {**base, "status": "broken", "series_uid": None,
                        "reason": f"the header cannot be parsed ({type(exc).__name__}: {exc})"}
            stop = fh.tell()
            meta = ds.file_meta if ds.file_meta else {}
            sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
            if sop_class == MediaStorageDirectoryStorage:
                return {**base, "status": "other", "reason": "DICOMDIR"}
            ts = str(meta.get("TransferSyntaxUID", "") or "")
            implicit, little = ds.original_encoding
            if not ts and little:  # no file meta: what pydicom inferred
                ts = NATIVE_LE[1] if implicit else NATIVE_LE[0]
            pixel = pixel_element(fh, stop, ts == NATIVE_LE[1])
            if ts == _DEFLATED:  # the file position says nothing about the inflated data
                pixel = (-1, -1)
            elif pixel is not None and ts not in NATIVE_LE:
                pixel = (-1, -1)  # present, but decoded by pydicom
            return {**base, **_fields(ds, ts, sop_class, pixel, st.st_size)}
    except OSError as exc:
        return {**base, "status": "broken", "series_uid": None,
                "reason": f"cannot be read ({exc.strerror or exc})"}


def _fields(ds: Any, ts: str, sop_class: str, pixel: tuple[int, int] | None,
            size: int) -> dict:
    try:
        series_uid = _value(ds, "SeriesInstanceUID")
    except _Bad:
        series_uid = None
    series_uid = None if series_uid is None else str(series_uid)
    try:
        sop = _text(ds, "SOPClassUID") or sop_class
    except _Bad:
        sop = sop_class
    image_class = "Image Storage" in pydicom.uid.UID(sop).name if sop else False
    present = {"SeriesInstanceUID": series_uid, "Rows": "Rows" in ds,
               "Columns": "Columns" in ds, "PixelData": pixel is not None}
    if not all(present.values()):
        if image_class or (series_uid and any(list(present.values())[1:])):
            missing = ", ".join(k for k, ok in present.items() if not ok)
            return {"status": "broken", "series_uid": series_uid,
                    "reason": f"{missing} missing: the header is truncated or incomplete"}
        return {"status": "other", "reason": "not an image (no SeriesInstanceUID, Rows, "
                                             "Columns or PixelData)"}
    try:
        rows = _integer(ds, "Rows", 1, 65535)
        cols = _integer(ds, "Columns", 1, 65535)
        for keyword, value in (("Rows", rows), ("Columns", cols)):
            if value is None:
                raise _Bad(keyword, "is empty")
        bits = _integer(ds, "BitsAllocated", 1, 64, 16)
        bits_stored = _integer(ds, "BitsStored", 1, bits, bits)
        slope = _scalar(ds, "RescaleSlope", 1.0) or 1.0
        intercept = _scalar(ds, "RescaleIntercept", 0.0)
        if abs(slope) * 2.0 ** bits_stored > _MAX_HU:
            raise _Bad("RescaleSlope", f"value {slope:g} makes voxel values overflow")
        if abs(intercept) > _MAX_HU:
            raise _Bad("RescaleIntercept", f"value {intercept:g} makes voxel values overflow")
        rec = {
            "status": "image",
            "series_uid": series_uid,
            "study_uid": _text(ds, "StudyInstanceUID"),
            "modality": _text(ds, "Modality"),
            "description": _text(ds, "SeriesDescription"),
            "image_type": _text(ds, "ImageType"),
            "instance": _integer(ds, "InstanceNumber", -(2**31), 2**31 - 1),
            "series_number": _integer(ds, "SeriesNumber", -(2**31), 2**31 - 1),
            "orientation": _floats(ds, "ImageOrientationPatient", 6),
            "position": _floats(ds, "ImagePositionPatient", 3),
            "pixel_spacing": _floats(ds, "PixelSpacing", 2, positive=True),
            "thickness": _scalar(ds, "SliceThickness", None),
            "rows": rows,
            "cols": cols,
            "bits_allocated": bits,
            "bits_stored": bits_stored,
            "pixel_representation": _integer(ds, "PixelRepresentation", 0, 1, 0),
            "samples": _integer(ds, "SamplesPerPixel", 1, 4, 1),
            "frames": _integer(ds, "NumberOfFrames", 1, 1 << 31, 1),
            "slope": slope,
            "intercept": intercept,
            "transfer_syntax": ts,
            "pixel_offset": None,
            "pixel_length": None,
        }
    except _Bad as bad:
        return {"status": "broken", "series_uid": series_uid,
                "reason": f"header field {bad}; fix or remove the file"}
    if pixel[0] >= 0:
        offset, length = pixel
        need = rows * cols * rec["samples"] * rec["frames"] * ((bits + 7) // 8)
        if length == 0xFFFFFFFF:
            return {"status": "broken", "series_uid": series_uid,
                    "reason": f"PixelData has an undefined length in the native transfer syntax "
                              f"{ts or '(none)'}; the file is damaged"}
        if length < need or offset + need > size:
            have = min(length, max(size - offset, 0))
            return {"status": "broken", "series_uid": series_uid,
                    "reason": f"PixelData holds {have} bytes, fewer than the {need} that Rows x "
                              f"Columns x BitsAllocated ({rows} x {cols} x {bits}) need; the "
                              "file is truncated or its header is wrong"}
        rec["pixel_offset"], rec["pixel_length"] = offset, length
    return rec


#: Files modified this close (ns) before a listing may change within the mtime granularity.
_RACY_NS = 2_000_000_000


def refresh(folder: Path, old: dict | None) -> tuple[dict, bool]:
    """The listing of `folder` (``folder``, ``signature``, ``built_ns``, ``skipped``,
    ``problems``, ``records``), reusing `old` records of unchanged files; and whether it changed.

    Files modified within 2 s before `old` was made are read again (racy, as in git's index).
    """
    folder = Path(folder).absolute()
    built_ns = time.time_ns()
    files, skipped, problems = walk(folder)
    sig = signature(files, skipped, problems)
    reuse: dict[str, dict] = {}
    racy_after = -1
    if old is not None:
        racy_after = int(old.get("built_ns", 0)) - _RACY_NS
        reuse = {rec.get("path"): rec for rec in old.get("records", [])}
    records = []
    changed = old is None or old.get("signature") != sig
    for rel, st in files:
        prev = reuse.get(rel)
        if (prev is not None and prev.get("size") == st.st_size
                and prev.get("mtime_ns") == st.st_mtime_ns and prev.get("ino") == st.st_ino
                and st.st_mtime_ns < racy_after):
            records.append(prev)
            continue
        records.append(read_record(folder / rel, rel, st))
        changed = True  # new, changed or racy: stored again with the new built_ns
    if not changed:
        return old, False  # type: ignore[return-value]
    LOGGER.debug("read the headers of %s", folder)
    return ({"folder": str(folder), "signature": sig, "built_ns": built_ns, "skipped": skipped,
             "problems": problems, "records": records}, True)

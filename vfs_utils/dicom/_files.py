"""The cold path: list a study folder's files and read what their headers say.

``listing(folder)`` walks a folder (recursively, symlinked folders followed
once, never into a loop, hidden names skipped) and reads each file's header
up to the pixel data, keeping only the fields :mod:`vfs_utils.dicom` uses:
with the minimal native little-endian reader of :mod:`._fastheader` when it
can, otherwise (and whenever that reader is unsure) with pydicom. Each file
becomes one JSON-able *record*:

- ``status`` ``"image"``: a DICOM image; its fields, converted and checked
  (finite numbers, right multiplicity), and the offset and length of its
  pixel data when they are stored natively (uncompressed little endian);
- ``status`` ``"broken"``: a DICOM file that cannot be used (truncated or
  damaged header, a field that is not a valid number, pixel data shorter
  than the header's size); ``reason`` names the file's field at fault and
  ``series_uid`` is kept when it could be read;
- ``status`` ``"other"``: not a DICOM image (text, DICOMDIR, a report).

The series index (:mod:`vfs_utils.dicom.index`) stores these listings.
"""
from __future__ import annotations

import hashlib
import math
import os
import struct
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from ._common import LOGGER
from ._fastheader import _TAGS, NATIVE_LE, _fast_read, _NeedPydicom, _pixel_element

__all__ = ["RECORD_VERSION", "listing", "walk"]

#: Bumped whenever the record layout or the checks change (old index entries are rebuilt).
RECORD_VERSION = 1

_DEFLATED = str(DeflatedExplicitVRLittleEndian)
_PARSE_ERRORS = (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError,
                 IndexError, AttributeError, OverflowError, NotImplementedError, struct.error,
                 UnicodeError, RecursionError, MemoryError, LookupError, ArithmeticError)


class _Bad(Exception):
    """A header field that cannot be used: ``tag`` and why."""

    def __init__(self, tag: str, why: str) -> None:
        super().__init__(f"{tag} {why}")
        self.tag = tag


# --------------------------------------------------------------------------- walking


def walk(folder: Path) -> tuple[list[tuple[str, os.stat_result]], int, list[list[str]]]:
    """Files under `folder`: ``(relative posix path, stat)`` sorted, hidden count, problems.

    Hidden names (starting with ``.``) are not listed but their files are
    counted. Symlinked folders are followed unless they lead back into a
    folder already walked (a loop); unreadable folders become problems
    ``[path, reason]``, never a silent omission.
    """
    files: list[tuple[str, os.stat_result]] = []
    problems: list[list[str]] = []
    hidden = 0
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[tuple[int, int]] = set()

    def count_hidden(entry: os.DirEntry) -> int:
        """Files in a hidden entry: 1 for a file, all files below for a folder (no links)."""
        try:
            if entry.is_dir(follow_symlinks=False):
                with os.scandir(entry.path) as it:
                    return sum(count_hidden(e) for e in it)
            return int(entry.is_file(follow_symlinks=False))
        except OSError:
            return 0

    def visit(path: str, rel: str) -> None:
        nonlocal hidden
        try:
            st = os.stat(path)
        except OSError as exc:
            problems.append([path, f"cannot open the folder ({exc.strerror or exc})"])
            return
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:  # a symbolic link back into a folder already read: a loop
            LOGGER.debug("not following %s: it leads to a folder already read", path)
            return
        seen_dirs.add(key)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            problems.append([path, f"cannot list the folder ({exc.strerror or exc}); its files "
                                   "are not read: check its permissions"])
            return
        for entry in entries:
            sub = f"{rel}{entry.name}"
            if entry.name.startswith("."):
                hidden += count_hidden(entry)
                continue
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as exc:
                problems.append([entry.path, f"cannot stat ({exc})"])
                continue
            if is_dir:
                visit(entry.path, sub + "/")
            elif is_file:
                try:
                    fst = entry.stat()
                except OSError as exc:
                    problems.append([entry.path, f"cannot stat ({exc})"])
                    continue
                fkey = (fst.st_dev, fst.st_ino)
                if fkey in seen_files:  # the same file again through a link
                    continue
                seen_files.add(fkey)
                files.append((sub, fst))

    visit(str(folder), "")
    files.sort(key=lambda item: item[0])
    return files, hidden, problems


def signature(files: list[tuple[str, os.stat_result]], hidden: int,
              problems: list[list[str]]) -> str:
    """A digest of the names, sizes, modification times and inodes of a folder's files."""
    h = hashlib.sha1(f"v{RECORD_VERSION}|{hidden}|".encode())
    for rel, st in files:
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode("utf-8",
                                                                                "surrogateescape"))
    for path, why in problems:
        h.update(f"!{path}\0{why}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# --------------------------------------------------------------------------- fields


#: Value representations of the numeric and UID fields read straight from the raw bytes.
_RAW_VR = {
    "SeriesInstanceUID": "UI", "StudyInstanceUID": "UI", "SOPClassUID": "UI",
    "SeriesNumber": "IS", "InstanceNumber": "IS", "NumberOfFrames": "IS",
    "ImagePositionPatient": "DS", "ImageOrientationPatient": "DS", "PixelSpacing": "DS",
    "SliceThickness": "DS", "RescaleSlope": "DS", "RescaleIntercept": "DS",
    "Rows": "US", "Columns": "US", "BitsAllocated": "US", "BitsStored": "US",
    "PixelRepresentation": "US", "SamplesPerPixel": "US",
}
_RAW_TAGS = {kw: pydicom.datadict.tag_for_keyword(kw) for kw in _RAW_VR}


def _raw(ds: Any, keyword: str) -> Any:
    """The value of a numeric or UID field decoded from its raw bytes (pydicom's conversion
    costs more than the rest of the header read); ``NotImplemented`` when pydicom must do it."""
    elem = ds.get_item(_RAW_TAGS[keyword])
    if elem is None:
        return None
    if not isinstance(elem, pydicom.dataelem.RawDataElement) or not elem.is_little_endian:
        return NotImplemented
    vr = _RAW_VR[keyword]
    if elem.VR not in (None, vr):
        return NotImplemented
    data = elem.value or b""
    if vr == "US":
        if len(data) == 0:
            return ""
        if len(data) % 2:
            raise _Bad(keyword, f"has {len(data)} bytes, not a multiple of 2 (US)")
        values = struct.unpack(f"<{len(data) // 2}H", data)
        return values[0] if len(values) == 1 else list(values)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise _Bad(keyword, f"holds non-ASCII bytes {data[:16]!r}") from exc
    text = text.strip(" \0")
    if vr == "UI" or not text:
        return text
    parts = [p.strip(" \0") for p in text.split("\\")]
    return parts[0] if len(parts) == 1 else parts


def _value(ds: Any, keyword: str) -> Any:
    if keyword in _RAW_VR:
        value = _raw(ds, keyword)
        if value is not NotImplemented:
            return value
    try:
        value = ds.get(keyword)
    except _PARSE_ERRORS as exc:
        raise _Bad(keyword, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        raise _Bad(keyword, f"holds undecodable bytes {bytes(value)[:16]!r}")
    return value


def _text(ds: Any, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return "\\".join(str(v) for v in value)
    except TypeError:
        return str(value)


def _number(text: Any, keyword: str) -> float:
    try:
        number = float(text)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Bad(keyword, f"value {text!r} is not a number") from exc
    if not math.isfinite(number):
        raise _Bad(keyword, f"value {text!r} is not a finite number")
    return number


def _values(value: Any) -> list:
    if isinstance(value, (str, bytes, int, float)):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _floats(ds: Any, keyword: str, count: int, positive: bool = False) -> list[float] | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    items = _values(value)
    if len(items) != count:
        raise _Bad(keyword, f"has {len(items)} value(s) {value!r}, not {count}")
    out = [_number(v, keyword) for v in items]
    if positive and any(v <= 0 for v in out):
        raise _Bad(keyword, f"value {value!r} is not positive")
    return out


def _integer(ds: Any, keyword: str, lo: int, hi: int, default: int | None = None) -> int | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return default
    items = _values(value)
    if len(items) != 1:
        raise _Bad(keyword, f"has {len(items)} values {value!r}, not 1")
    number = _number(items[0], keyword)
    if number != int(number) or not lo <= number <= hi:
        raise _Bad(keyword, f"value {value!r} is not an integer from {lo} to {hi}")
    return int(number)


def _scalar(ds: Any, keyword: str, default: float) -> float:
    value = _value(ds, keyword)
    if value is None or value == "":
        return default
    items = _values(value)
    if len(items) != 1:
        raise _Bad(keyword, f"has {len(items)} values {value!r}, not 1")
    return _number(items[0], keyword)


# --------------------------------------------------------------------------- one file




def _record(path: Path, rel: str, st: os.stat_result) -> dict:
    base = {"path": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    try:
        with open(path, "rb") as fh:
            fast = None
            try:
                fast = _fast_read(fh, st.st_size)
            except (OSError, struct.error, ValueError):
                fast = None
            if fast is not None:
                header, ts, sop_class, stop = fast
                if sop_class == MediaStorageDirectoryStorage:
                    return {**base, "status": "other", "reason": "DICOMDIR"}
                pixel = None if stop is None else _pixel_element(fh, stop, ts == NATIVE_LE[1])
                try:
                    return {**base, **_fields(header, ts, sop_class, pixel, st.st_size,
                                              has_pixels=pixel is not None)}
                except _NeedPydicom:  # e.g. a character set the minimal reader does not decode
                    pass
            fh.seek(0)
            try:
                ds = pydicom.dcmread(fh, stop_before_pixels=True, specific_tags=_TAGS)
            except InvalidDicomError:
                return {**base, "status": "other", "reason": "not a DICOM file"}
            except _PARSE_ERRORS + (Exception,) as exc:  # damaged bytes raise many types
                return {**base, "status": "broken", "series_uid": None,
                        "reason": f"the header cannot be parsed ({type(exc).__name__}: {exc})"}
            stop = fh.tell()
            meta = ds.file_meta if ds.file_meta else {}
            sop_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
            if sop_class == MediaStorageDirectoryStorage:
                return {**base, "status": "other", "reason": "DICOMDIR"}
            ts = str(meta.get("TransferSyntaxUID", "") or "")
            if ts == _DEFLATED:  # the file position says nothing about the inflated data
                pixel: tuple[int, int] | None = (-1, -1)
            else:
                implicit = ts == NATIVE_LE[1] or (not ts and bool(ds.original_encoding[0]))
                pixel = _pixel_element(fh, stop, implicit)
                if pixel is not None and ts not in NATIVE_LE:
                    pixel = (-1, -1)  # present, but decoded by pydicom
            return {**base, **_fields(ds, ts, sop_class, pixel, st.st_size,
                                      has_pixels=pixel is not None)}
    except OSError as exc:
        return {**base, "status": "broken", "series_uid": None,
                "reason": f"cannot be read ({exc.strerror or exc})"}


def _fields(ds: Any, ts: str, sop_class: str, pixel: tuple[int, int] | None, size: int,
            has_pixels: bool) -> dict:
    try:
        series_uid = _value(ds, "SeriesInstanceUID")
    except _Bad:
        series_uid = None
    series_uid = None if series_uid in (None, "") else str(series_uid)
    try:
        sop = _text(ds, "SOPClassUID") or sop_class
    except _Bad:
        sop = sop_class
    image_class = "Image Storage" in pydicom.uid.UID(sop).name if sop else False
    has_size = "Rows" in ds and "Columns" in ds
    if series_uid is None or not has_size or not has_pixels:
        if image_class or (series_uid and (has_size or has_pixels)):
            missing = [k for k, ok in (("SeriesInstanceUID", series_uid), ("Rows", "Rows" in ds),
                                       ("Columns", "Columns" in ds), ("PixelData", has_pixels))
                       if not ok]
            return {"status": "broken", "series_uid": series_uid,
                    "reason": f"{', '.join(missing)} missing: the header is truncated or "
                              "incomplete"}
        return {"status": "other", "reason": "not an image (no SeriesInstanceUID, Rows, "
                                             "Columns or PixelData)"}
    try:
        rows = _integer(ds, "Rows", 1, 65535)
        cols = _integer(ds, "Columns", 1, 65535)
        bits = _integer(ds, "BitsAllocated", 1, 64, 16)
        samples = _integer(ds, "SamplesPerPixel", 1, 4, 1)
        frames = _integer(ds, "NumberOfFrames", 1, 1 << 31, 1)
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
            "thickness": _scalar(ds, "SliceThickness", float("nan")),
            "rows": rows,
            "cols": cols,
            "bits_allocated": bits,
            "bits_stored": _integer(ds, "BitsStored", 1, bits, bits),
            "pixel_representation": _integer(ds, "PixelRepresentation", 0, 1, 0),
            "samples": samples,
            "frames": frames,
            "slope": _scalar(ds, "RescaleSlope", 1.0) or 1.0,
            "intercept": _scalar(ds, "RescaleIntercept", 0.0),
            "transfer_syntax": ts,
            "pixel_offset": None,
            "pixel_length": None,
        }
    except _Bad as bad:
        return {"status": "broken", "series_uid": series_uid,
                "reason": f"header field {bad}; fix or remove the file"}
    if rec["thickness"] is not None and math.isnan(rec["thickness"]):
        rec["thickness"] = None
    if pixel is not None and pixel[0] >= 0:
        offset, length = pixel
        need = rows * cols * samples * frames * ((bits + 7) // 8)
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


#: A file modified this close (ns) before its listing was made may have changed again within
#: the file system's timestamp granularity without its mtime changing: its header is re-read.
_RACY_NS = 2_000_000_000


def listing(folder: str | os.PathLike) -> dict:
    """Walk `folder` and read every file's header: the listing the index stores.

    Returns
    -------
    dict
        ``folder`` (absolute path), ``signature`` (see :func:`signature`),
        ``built_ns`` (when the folder was walked), ``hidden`` (count of hidden
        files), ``problems`` (``[path, reason]`` for folders that could not be
        read) and ``records`` (one per file, ``path`` relative to the folder,
        in path order).
    """
    return refresh(Path(folder), None)[0]


def refresh(folder: Path, old: dict | None) -> tuple[dict, bool]:
    """The listing of `folder`, reusing `old` where files are unchanged; and whether it changed.

    A file is unchanged when its size, modification time and inode are those
    recorded, and it was not modified within 2 s before `old` was made (such
    "racy" files are read again, as git does with its index).
    """
    folder = Path(folder).absolute()
    built_ns = time.time_ns()
    files, hidden, problems = walk(folder)
    sig = signature(files, hidden, problems)
    reuse: dict[str, dict] = {}
    racy_after = -1
    if old is not None:
        racy_after = int(old.get("built_ns", 0)) - _RACY_NS
        for rec in old.get("records", []):
            reuse[rec.get("path")] = rec
    records = []
    changed = old is None or old.get("signature") != sig
    for rel, st in files:
        prev = reuse.get(rel)
        if (prev is not None and prev.get("size") == st.st_size
                and prev.get("mtime_ns") == st.st_mtime_ns and prev.get("ino") == st.st_ino
                and st.st_mtime_ns < racy_after):
            records.append(prev)
            continue
        rec = _record(folder / rel, rel, st)
        if rec != prev:
            changed = True
        records.append(rec)
    if not changed:
        return old, False  # type: ignore[return-value]
    LOGGER.debug("read the headers of %s", folder)
    return ({"folder": str(folder), "signature": sig, "built_ns": built_ns, "hidden": hidden,
             "problems": problems, "records": records}, True)

"""The two annotation schemas: JSON -> typed objects -> a tidy DataFrame.

Both sets store ``{"Folder", "SeriesInstanceUID", "Annotation": {expert: [...]}}``. A
vertebra is six ``[row, col, slice]`` voxel indices (slices in InstanceNumber order): the
anterior, middle and posterior height pairs, upper endplate first. v1 lists six points per
vertebra; v2 lists ``{"segments": [[p, p], [p, p], [p, p]], "type": "Th7"}``.

Faults raise :class:`~vfs_utils.errors.AnnotationError` naming the file and JSON path
(``Annotation.expert3[4][2]``). Absurd files are refused, not half-read: only regular
UTF-8 files of at most :data:`MAX_FILE_BYTES`, nesting at most :data:`MAX_DEPTH`, no
duplicate keys, coordinates in ``[0, MAX_COORDINATE]``, no vertebra twice per expert.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ._fs import folder_name_problem, write_text_atomic
from .errors import AnnotationError, DataNotFoundError

__all__ = ["LEVELS", "MAX_COORDINATE", "MAX_DEPTH", "MAX_FILE_BYTES", "POINT_COLUMNS",
           "Annotation", "Vertebra", "load_annotation", "points", "read_annotations",
           "write_annotation"]

#: Vertebral level names in head -> feet order, as the v2 files spell them.
LEVELS: tuple[str, ...] = (
    tuple(f"C{i}" for i in range(1, 8))
    + tuple(f"Th{i}" for i in range(1, 13))
    + tuple(f"L{i}" for i in range(1, 6))
    + ("S1",)
)

_AXES = ("row", "col", "slice")
#: The 18 point columns of :func:`read_annotations`: row0, col0, slice0, ..., slice5.
POINT_COLUMNS: list[str] = [f"{axis}{i}" for i in range(6) for axis in _AXES]

Version = Literal["v1", "v2"]

#: Largest accepted voxel coordinate (a sanity bound: 1e5 voxels is 10 m at 0.1 mm).
MAX_COORDINATE: float = 1e5
#: Deepest accepted JSON nesting (the v2 schema needs 7 levels).
MAX_DEPTH: int = 32
#: Largest accepted annotation file (the real ones are below 60 kB).
MAX_FILE_BYTES: int = 16 * 1024 * 1024
#: Longest accepted SeriesInstanceUID or expert name.
_MAX_NAME = 128


@dataclass(frozen=True, eq=False)
class Vertebra:
    """One expert's reading of one vertebra: ``points`` (6, 3), ``level`` (v2 only: "Th7")."""

    points: np.ndarray
    level: str | None = None


@dataclass(frozen=True, eq=False)
class Annotation:
    """One annotation file: the expert readings of one CT series.

    Attributes
    ----------
    folder : str
        Study folder under ``<dataset root>/dicom/``.
    series_uid : str
        SeriesInstanceUID of the annotated series within that folder.
    version : {"v1", "v2"}
    experts : dict
        Expert name -> tuple of :class:`Vertebra`, in file order.
    path : Path or None
    """

    folder: str
    series_uid: str
    version: Version
    experts: dict[str, tuple[Vertebra, ...]] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n_vertebrae(self) -> dict[str, int]:
        """Number of vertebrae each expert marked."""
        return {expert: len(vertebrae) for expert, vertebrae in self.experts.items()}

    def to_dict(self, version: Version | None = None) -> dict:
        """The upstream JSON structure of ``version`` (default: the file's own)."""
        version = version or self.version
        if version not in ("v1", "v2"):
            raise ValueError(f"unknown annotation version {version!r}: use 'v1' or 'v2'")
        readings = {}
        for expert, vertebrae in self.experts.items():
            items = []
            for v in vertebrae:
                pts = [[float(x) for x in p] for p in v.points]
                if version == "v1":
                    items.append(pts)
                else:
                    if v.level is None:
                        raise AnnotationError(
                            f"{self.path or self.folder}: Annotation.{expert} has a vertebra "
                            "without a level; v2 needs a level name on every vertebra.")
                    items.append({"segments": [pts[0:2], pts[2:4], pts[4:6]], "type": v.level})
            readings[expert] = items
        return {"Folder": self.folder, "SeriesInstanceUID": self.series_uid,
                "Annotation": readings}


class _Checker:
    """Raises AnnotationError naming the file and the JSON path of a fault."""

    def __init__(self, path: Path | str):
        self.path = path

    def fail(self, where: str, problem: str, fix: str = "") -> AnnotationError:
        hint = f" {fix}" if fix else ""
        return AnnotationError(f"{self.path}: {where}: {problem}.{hint}")

    def point(self, value, where: str) -> list[float]:
        if type(value) is not list or len(value) != 3:
            raise self.fail(where, f"expected a point [row, col, slice] of 3 numbers, got "
                            f"{_short(value)}")
        if all(type(x) is float or type(x) is int for x in value):    # the common case
            try:
                out = [float(x) for x in value]
            except OverflowError:       # an integer too large for a float
                out = None
            if out is not None and all(0 <= v <= MAX_COORDINATE for v in out):   # NaN: False
                return out
        for axis, x in enumerate(value):    # find the axis at fault, for the message
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise self.fail(f"{where}[{axis}]", f"expected a number, got {_short(x)}")
            try:
                value_f = float(x)
            except OverflowError:
                value_f = math.inf
            if not math.isfinite(value_f) or not 0 <= value_f <= MAX_COORDINATE:
                raise self.fail(f"{where}[{axis}]", f"{_AXES[axis]} index {_short(x, 24)} is not "
                                f"a finite voxel index in [0, {MAX_COORDINATE:g}]",
                                "Fix the file or re-download it with `vfs fetch`.")
        raise AssertionError("unreachable")  # pragma: no cover

    def six_points(self, value, where: str) -> np.ndarray:
        if not isinstance(value, list) or len(value) != 6:
            raise self.fail(where, f"expected 6 points (3 height segments), got {_short(value)}")
        return np.array([self.point(p, f"{where}[{i}]") for i, p in enumerate(value)])

    def segments(self, value, where: str) -> np.ndarray:
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(where, f"expected 3 segments [[p, p], [p, p], [p, p]], got "
                            f"{_short(value)}")
        pts = []
        for i, seg in enumerate(value):
            if not isinstance(seg, list) or len(seg) != 2:
                raise self.fail(f"{where}[{i}]", f"expected a segment of 2 points, got "
                                f"{_short(seg)}")
            pts += [self.point(p, f"{where}[{i}][{j}]") for j, p in enumerate(seg)]
        return np.array(pts)


def _short(value, limit: int = 60) -> str:
    kind = type(value).__name__
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return f"{kind} with {len(str(abs(value)))} digits"
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value[:limit + 1])
    except (ValueError, RecursionError):
        text = "..."
    return f"{kind} {text[:limit]}{'...' if len(text) > limit else ''}"


def _check_folder_name(check: _Checker, folder) -> str:
    if isinstance(folder, str):
        problem = folder_name_problem(folder)
    else:
        problem = f"expected a non-empty folder name, got {_short(folder)}"
    if problem is None and not folder.isprintable():
        problem = f"{folder[:80]!r} holds control characters"
    if problem is not None:
        raise check.fail("Folder", problem, "Fix the file or re-download it with `vfs fetch`.")
    return folder


def _check_name(check: _Checker, value, where: str, what: str) -> str:
    if (not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME
            or not value.isprintable()):
        raise check.fail(where, f"expected {what} (printable, 1 to {_MAX_NAME} characters), got "
                         f"{_short(value)}", "Fix the file or re-download it with `vfs fetch`.")
    return value


def _detect_version(check: _Checker, readings: dict) -> Version:
    for expert, items in readings.items():
        if isinstance(items, list) and items:
            first = items[0]
            if isinstance(first, dict):
                return "v2"
            if isinstance(first, list):
                return "v1"
            raise check.fail(f"Annotation.{expert}[0]", "expected a list of 6 points (v1) or an "
                             f"object with 'segments' and 'type' (v2), got {_short(first)}")
    raise check.fail("Annotation", "no expert has any vertebra")


def _check_unique(check: _Checker, vertebrae: list[Vertebra], where: str) -> None:
    """One expert marks each vertebra once: no level twice (v2), no identical points (v1)."""
    seen: dict[object, int] = {}
    for i, v in enumerate(vertebrae):
        key = v.level if v.level is not None else v.points.tobytes()
        if key in seen:
            what = f"level {v.level}" if v.level is not None else "the same six points"
            raise check.fail(f"{where}[{i}]", f"{what} again (already at {where}[{seen[key]}]); "
                             "an expert marks each vertebra once",
                             "Remove the duplicate or re-download the file with `vfs fetch`.")
        seen[key] = i


def _parse(data, path: Path | str) -> Annotation:
    check = _Checker(path)
    keys = ("Folder", "SeriesInstanceUID", "Annotation")
    if not isinstance(data, dict) or not any(key in data for key in keys):
        found = (f"keys {_short(sorted(map(str, data)))}" if isinstance(data, dict)
                 else _short(data))
        raise check.fail("(top level)", f"not an annotation file (an annotation is an object "
                         f"with the keys Folder, SeriesInstanceUID and Annotation; found "
                         f"{found})", "Pass an annotation file, or move this file out of the "
                         "annotation folder.")
    for key in keys:
        if key not in data:
            raise check.fail(key, "missing key", "A file has Folder, SeriesInstanceUID and "
                             "Annotation; re-download it with `vfs fetch`.")
    folder = _check_folder_name(check, data["Folder"])
    uid = _check_name(check, data["SeriesInstanceUID"], "SeriesInstanceUID", "a UID string")
    readings = data["Annotation"]
    if not isinstance(readings, dict) or not readings:
        raise check.fail("Annotation", f"expected an object of expert readings, got "
                         f"{_short(readings)}")
    version = _detect_version(check, readings)
    experts: dict[str, tuple[Vertebra, ...]] = {}
    for expert, items in readings.items():
        where = f"Annotation.{expert[:40]}"
        _check_name(check, expert, where, "an expert name")
        if not isinstance(items, list):
            raise check.fail(where, f"expected a list of vertebrae, got {_short(items)}")
        if not items:
            raise check.fail(where, "this expert has no vertebrae")
        vertebrae = []
        for i, item in enumerate(items):
            w = f"{where}[{i}]"
            if version == "v1":
                if not isinstance(item, list):
                    raise check.fail(w, f"expected a list of 6 points (v1, like the rest of the "
                                     f"file), got {_short(item)}")
                vertebrae.append(Vertebra(check.six_points(item, w)))
            else:
                if not isinstance(item, dict):
                    raise check.fail(w, "expected an object with 'segments' and 'type' (v2, like "
                                     f"the rest of the file), got {_short(item)}")
                for key in ("segments", "type"):
                    if key not in item:
                        raise check.fail(f"{w}.{key}", "missing key")
                level = item["type"]
                if level not in LEVELS:
                    raise check.fail(f"{w}.type", f"unknown level name {_short(level)}; expected "
                                     "one of C1..C7, Th1..Th12, L1..L5, S1")
                vertebrae.append(Vertebra(check.segments(item["segments"], f"{w}.segments"),
                                          level))
        _check_unique(check, vertebrae, where)
        experts[str(expert)] = tuple(vertebrae)
    return Annotation(folder, uid, version, experts, Path(path) if path is not None else None)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _constant(name: str) -> float:
    # NaN / Infinity / -Infinity are not JSON; let the checker name the field
    return float(name.lower().replace("infinity", "inf"))


def _read_bytes(path: Path) -> bytes:
    """The bytes of a regular annotation file; special files are refused before opening."""
    try:
        info = os.stat(path)        # follows symlinks; a loop gives ELOOP
    except FileNotFoundError:
        hint = " (a symlink to a missing file)" if os.path.islink(path) else ""
        raise DataNotFoundError(f"{path}: no such annotation file{hint}. Check the path, or run "
                                "`vfs fetch` to download the annotation sets.") from None
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot be read ({_os_reason(exc)}). Point at a readable "
                              ".json file.") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataNotFoundError(f"{path} is a folder: pass a .json file to load_annotation, or "
                                "the folder to read_annotations.")
    if not stat.S_ISREG(info.st_mode):
        raise AnnotationError(f"{path}: not a regular file ({_file_kind(info.st_mode)}); it is "
                              "not opened. Annotation files are plain .json files.")
    if info.st_size > MAX_FILE_BYTES:
        raise AnnotationError(f"{path}: {info.st_size} bytes, more than the {MAX_FILE_BYTES} an "
                              "annotation file can reasonably hold. Re-download it with "
                              "`vfs fetch`.")
    try:
        # O_NONBLOCK: should the file be swapped for a FIFO after stat, open does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise AnnotationError(f"{path}: not a regular file; annotation files are plain "
                                      ".json files.")
            return fh.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES + 1]
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot be read ({_os_reason(exc)}). Check its "
                              "permissions or point at a readable .json file.") from None


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink loop"
    return exc.strerror or type(exc).__name__


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
         (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


def _decode(raw: bytes, path: Path) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise AnnotationError(f"{path}: larger than {MAX_FILE_BYTES} bytes; not an annotation "
                              "file. Re-download it with `vfs fetch`.")
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise AnnotationError(f"{path}: encoded as {name}; annotation files are UTF-8. Save "
                                  "it as UTF-8 or re-download it with `vfs fetch`.")
    if b"\x00" in raw:
        raise AnnotationError(f"{path}: holds NUL bytes (UTF-16/UTF-32 text, or binary data); "
                              "annotation files are UTF-8 JSON. Re-download it with `vfs fetch`.")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise AnnotationError(f"{path}: not UTF-8 (byte {raw[exc.start]:#04x} at offset "
                              f"{exc.start}, line {line}); annotation files are UTF-8 JSON. Save "
                              "it as UTF-8 or re-download it with `vfs fetch`.") from None


def _depth(value: object) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(_depth, value), default=0) if isinstance(value, list) else 0


def load_annotation(path: str | os.PathLike) -> Annotation:
    """Read one annotation file of either schema (detected from its content).

    Raises
    ------
    DataNotFoundError
        When the file does not exist.
    AnnotationError
        When it is not JSON or does not follow the schema (file and JSON path named).
    """
    path = Path(path)
    raw = _read_bytes(path)
    text = _decode(raw, path)
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_constant)
        if _depth(data) > MAX_DEPTH:
            raise RecursionError
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}). If it is an upstream annotation file, re-download "
                              "it with `vfs fetch`; any other file does not belong in an "
                              "annotation folder.") from None
    except _DuplicateKey as exc:
        raise AnnotationError(f"{path}: key {exc.args[0][:60]!r} appears twice in one object; "
                              "JSON readers disagree on which one counts. Remove the duplicate "
                              "or re-download the file with `vfs fetch`.") from None
    except RecursionError:
        raise AnnotationError(f"{path}: JSON nested deeper than {MAX_DEPTH} levels; the schemas "
                              "need 7. Re-download it with `vfs fetch`.") from None
    except ValueError as exc:   # e.g. an integer of 5,000 digits
        raise AnnotationError(f"{path}: unreadable JSON value ({str(exc)[:120]}). Re-download "
                              "it with `vfs fetch`.") from None
    return _parse(data, path)


def write_annotation(annotation: Annotation, path: str | os.PathLike,
                     version: Version | None = None) -> Path:
    """Write an annotation in the upstream schema of ``version``, atomically.

    Parameters
    ----------
    annotation : Annotation
    path : path-like
        Target file.
    version : {"v1", "v2"}, optional
        Schema to write (default: the annotation's own); v2 needs every level.

    Returns
    -------
    Path
    """
    return write_text_atomic(path, json.dumps(annotation.to_dict(version)))


def _sources(source) -> list[Annotation]:
    if isinstance(source, Annotation):
        return [source]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
            if not files:
                raise DataNotFoundError(f"{path}: no *.json annotation files in this folder. "
                                        "Run `vfs fetch` or point at the annotation folder.")
            return [load_annotation(p) for p in files]
        return [load_annotation(path)]
    if isinstance(source, Iterable) and not isinstance(source, Mapping):
        out: list[Annotation] = []
        for item in source:
            out += _sources(item)
        return out
    raise TypeError(f"read_annotations takes a folder, a file, Annotation objects or a list of "
                    f"them, not {type(source).__name__}")


def read_annotations(source) -> pd.DataFrame:
    """A tidy table of vertebra readings: one row per expert per vertebra.

    Parameters
    ----------
    source : path-like, Annotation, or iterable of them
        A folder of ``*.json`` files (name order), one file, or loaded annotations.

    Returns
    -------
    DataFrame
        Columns ``file, folder, series_uid, version, expert, vertebra`` (index in the
        expert's list), ``level`` (None in v1), ``column`` (mean of the six ``col``) and
        the 18 :data:`POINT_COLUMNS`.
    """
    records, blocks = [], []
    for ann in _sources(source):
        name = ann.path.name if ann.path is not None else f"{ann.folder}.json"
        for expert, vertebrae in ann.experts.items():
            records += [(name, ann.folder, ann.series_uid, ann.version, expert, i, v.level)
                        for i, v in enumerate(vertebrae)]
            if vertebrae:
                blocks.append(np.stack([v.points for v in vertebrae]))
    pts = np.concatenate(blocks) if blocks else np.zeros((0, 6, 3))
    cols = [list(c) for c in zip(*records)] or [[]] * 7
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in
                          zip(("file", "folder", "series_uid", "version", "expert"), cols)})
    frame["vertebra"] = np.asarray(cols[5], dtype=np.int64)
    frame["level"] = pd.Series(cols[6], dtype=object)
    frame["column"] = pts[:, :, 1].mean(axis=1)
    flat = pts.reshape(len(pts), 18)
    for j, name in enumerate(POINT_COLUMNS):
        frame[name] = flat[:, j]
    return frame


def points(frame: pd.DataFrame) -> np.ndarray:
    """The keypoints of a :func:`read_annotations` frame as an array of shape (n, 6, 3)."""
    missing = [c for c in POINT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the frame lacks point columns {missing[:3]}...: build it with "
                       "read_annotations()")
    return frame[POINT_COLUMNS].to_numpy(dtype=float).reshape(len(frame), 6, 3)

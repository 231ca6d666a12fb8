"""The two annotation schemas: JSON -> typed objects -> a tidy DataFrame.

Both upstream sets store, per CT series, ``{"Folder", "SeriesInstanceUID",
"Annotation": {expert: [...]}}``. A vertebra is six points ``[row, col, slice]``
in voxel indices of the volume ``stack(slices sorted by InstanceNumber,
axis=-1)``: three pairs (anterior, middle, posterior height), ordered by row,
the first point of a pair on the upper endplate (smaller slice index).

- v1 (vertebral-fractures-severity): ``Annotation[expert]`` is a list of
  vertebrae, each a list of six points; no level names.
- v2 (anchor-free-genant): ``Annotation[expert]`` is a list of
  ``{"segments": [[p, p], [p, p], [p, p]], "type": "Th7"}``.

Every fault is reported as an :class:`~vfs_utils.errors.AnnotationError` that
names the file and the JSON path, such as ``Annotation.expert3[4][2]``.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
import pandas as pd

from .errors import AnnotationError, DataNotFoundError

__all__ = [
    "LEVELS",
    "POINT_COLUMNS",
    "Annotation",
    "Vertebra",
    "load_annotation",
    "points",
    "read_annotations",
    "write_annotation",
]

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


@dataclass(frozen=True, eq=False)
class Vertebra:
    """One expert's reading of one vertebra.

    Attributes
    ----------
    points : ndarray, shape (6, 3)
        ``[row, col, slice]`` voxel indices: anterior, middle, posterior pairs,
        each pair upper endplate first.
    level : str or None
        Level name such as ``"Th7"`` (v2 only).
    """

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
        The schema the file follows.
    experts : dict
        Expert name -> tuple of :class:`Vertebra`, in file order.
    path : Path or None
        The file it was read from.
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


# --------------------------------------------------------------------------- validation
class _Checker:
    """Raises AnnotationError naming the file and the JSON path of a fault."""

    def __init__(self, path: Path | str):
        self.path = path

    def fail(self, where: str, problem: str, fix: str = "") -> AnnotationError:
        hint = f" {fix}" if fix else ""
        return AnnotationError(f"{self.path}: {where}: {problem}.{hint}")

    def point(self, value, where: str) -> list[float]:
        if not isinstance(value, list) or len(value) != 3:
            raise self.fail(where, f"expected a point [row, col, slice] of 3 numbers, got "
                            f"{_short(value)}")
        out = []
        for axis, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                raise self.fail(f"{where}[{axis}]", f"expected a number, got {_short(x)}")
            if not math.isfinite(x) or x < 0:
                raise self.fail(f"{where}[{axis}]", f"{_AXES[axis]} index {x} is not a finite "
                                "non-negative voxel index")
            out.append(float(x))
        return out

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
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    kind = type(value).__name__
    return f"{kind} {text[:limit]}{'...' if len(text) > limit else ''}"


def _check_folder_name(check: _Checker, folder) -> str:
    if not isinstance(folder, str) or not folder.strip():
        raise check.fail("Folder", f"expected a non-empty folder name, got {_short(folder)}")
    bad = ("/" in folder or "\\" in folder or "\0" in folder or folder in (".", "..")
           or PurePosixPath(folder).is_absolute() or PureWindowsPath(folder).is_absolute()
           or PureWindowsPath(folder).drive)
    if bad:
        raise check.fail("Folder", f"{folder!r} is not a plain folder name (no path separators, "
                         "'..' or absolute paths: it is joined to <root>/dicom/)",
                         "Fix the file or re-download it with `vfs fetch`.")
    return folder


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


def _parse(data, path: Path | str) -> Annotation:
    check = _Checker(path)
    if not isinstance(data, dict):
        raise check.fail("(top level)", f"expected an object, got {_short(data)}")
    for key in ("Folder", "SeriesInstanceUID", "Annotation"):
        if key not in data:
            raise check.fail(key, "missing key", "A file has Folder, SeriesInstanceUID and "
                             "Annotation; re-download it with `vfs fetch`.")
    folder = _check_folder_name(check, data["Folder"])
    uid = data["SeriesInstanceUID"]
    if not isinstance(uid, str) or not uid.strip():
        raise check.fail("SeriesInstanceUID", f"expected a non-empty UID string, got {_short(uid)}")
    readings = data["Annotation"]
    if not isinstance(readings, dict) or not readings:
        raise check.fail("Annotation", f"expected an object of expert readings, got "
                         f"{_short(readings)}")
    version = _detect_version(check, readings)
    experts: dict[str, tuple[Vertebra, ...]] = {}
    for expert, items in readings.items():
        where = f"Annotation.{expert}"
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
        experts[str(expert)] = tuple(vertebrae)
    return Annotation(folder, uid, version, experts, Path(path) if path is not None else None)


# --------------------------------------------------------------------------- public API
def load_annotation(path: str | os.PathLike) -> Annotation:
    """Read one annotation file of either schema (detected from its content).

    Parameters
    ----------
    path : path-like
        A ``<Folder>.json`` file of the v1 or v2 set.

    Returns
    -------
    Annotation

    Raises
    ------
    DataNotFoundError
        When the file does not exist.
    AnnotationError
        When it is not JSON or does not follow the schema; the message names
        the file and the JSON path of the fault.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataNotFoundError(f"{path}: no such annotation file. Check the path, or run "
                                "`vfs fetch` to download the annotation sets.") from None
    except IsADirectoryError:
        raise DataNotFoundError(f"{path} is a folder: pass a .json file to load_annotation, or "
                                "the folder to read_annotations.") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                              f"{exc.msg}). Re-download it with `vfs fetch`.") from None
    return _parse(data, path)


def write_annotation(annotation: Annotation, path: str | os.PathLike,
                     version: Version | None = None) -> Path:
    """Write an annotation in the upstream schema of ``version``, atomically.

    Parameters
    ----------
    annotation : Annotation
    path : path-like
        Target file; written to a temporary file in the same folder, then renamed.
    version : {"v1", "v2"}, optional
        Schema to write (default: the annotation's own). v2 needs a level on
        every vertebra.

    Returns
    -------
    Path
        The file written.
    """
    path = Path(path)
    text = json.dumps(annotation.to_dict(version))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
        A folder of ``*.json`` files (read in name order), one file, or
        already-loaded annotations.

    Returns
    -------
    DataFrame
        Columns ``file, folder, series_uid, version, expert, vertebra, level,
        column`` and the 18 :data:`POINT_COLUMNS` (voxel indices). ``vertebra``
        is the index in the expert's list (file order, head to feet);
        ``level`` is None in v1; ``column`` is the sagittal column the
        vertebra was drawn on (mean of its six ``col`` values).
    """
    annotations = _sources(source)
    meta: dict[str, list] = {k: [] for k in ("file", "folder", "series_uid", "version",
                                             "expert", "vertebra", "level")}
    blocks = []
    for ann in annotations:
        name = ann.path.name if ann.path is not None else f"{ann.folder}.json"
        for expert, vertebrae in ann.experts.items():
            for i, v in enumerate(vertebrae):
                meta["file"].append(name)
                meta["folder"].append(ann.folder)
                meta["series_uid"].append(ann.series_uid)
                meta["version"].append(ann.version)
                meta["expert"].append(expert)
                meta["vertebra"].append(i)
                meta["level"].append(v.level)
            if vertebrae:
                blocks.append(np.stack([v.points for v in vertebrae]))
    pts = np.concatenate(blocks) if blocks else np.zeros((0, 6, 3))
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in meta.items()
                          if k not in ("vertebra", "level")})
    frame.insert(5, "vertebra", np.asarray(meta["vertebra"], dtype=np.int64))
    frame.insert(6, "level", pd.Series(meta["level"], dtype=object))
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

"""Input checks shared by the morphometry modules (private)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..annotation import points

__all__: list[str] = []  # private: used by the other morphometry modules

#: Columns that identify one annotation file (one study's series in one round).
_STUDY_KEYS: tuple[str, ...] = ("version", "file", "folder", "series_uid")


def as_points(frame_or_points) -> np.ndarray:
    """(n, 6, 3) float keypoints from a frame or an array of shape (6, 3) / (n, 6, 3)."""
    if isinstance(frame_or_points, pd.DataFrame):
        return points(frame_or_points)
    pts = np.asarray(frame_or_points, dtype=float)
    if pts.shape[-2:] != (6, 3) or pts.ndim not in (2, 3):
        raise ValueError(f"keypoints must have shape (6, 3) or (n, 6, 3) [row, col, slice], not "
                         f"{pts.shape}")
    return pts.reshape(-1, 6, 3)


def _per_row(value, n: int, width: int, name: str, frame: pd.DataFrame | None) -> np.ndarray:
    """Broadcast one value, an (n, width) array or a {folder: value} mapping to (n, width)."""
    if isinstance(value, Mapping):
        if frame is None or "folder" not in getattr(frame, "columns", ()):
            raise TypeError(f"a mapping of {name} by folder needs a frame with a 'folder' column")
        folders = frame["folder"].to_numpy(dtype=object)
        absent = sorted({str(f) for f in folders} - {str(k) for k in value})
        if absent:
            raise ValueError(f"{name}: no entry for folder {absent[0]!r} "
                             f"({len(absent)} folders missing); give one per folder")
        uniq, inverse = np.unique(folders.astype(str), return_inverse=True)
        table = np.array([np.asarray(value[f], dtype=float).reshape(width) for f in uniq])
        return table.reshape(-1, width)[inverse.reshape(-1)]
    arr = np.asarray(value, dtype=float)
    if arr.shape == (width,):
        return np.broadcast_to(arr, (n, width))
    if arr.shape == (n, width):
        return arr
    raise ValueError(f"{name} must be {width} numbers, an array of shape ({n}, {width}) or a "
                     f"mapping folder -> {width} numbers, not shape {arr.shape}")


def spacing_rows(spacing, n: int, frame: pd.DataFrame | None = None) -> np.ndarray:
    sp = _per_row(spacing, n, 3, "spacing", frame)
    bad = ~(np.isfinite(sp) & (sp > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"spacing (row, col, slice) must be positive finite mm; row {i} has "
                         f"{tuple(sp[i])}")
    return sp


def rows_flipped(orientation, n: int, frame: pd.DataFrame | None = None) -> np.ndarray:
    """True where rows grow towards anterior (y of the column direction cosine < 0)."""
    if orientation is None:
        return np.zeros(n, dtype=bool)
    iop = _per_row(orientation, n, 6, "orientation", frame)
    if not np.isfinite(iop).all():
        raise ValueError("orientation (ImageOrientationPatient) must be 6 finite numbers")
    # IOP[3:6] is the LPS direction in which the row index grows; LPS y grows posterior.
    return iop[:, 4] < 0


def require_columns(frame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} takes a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame lacks the column(s) {missing}; build it with "
                         "vfs_utils.annotation.read_annotations()"
                         + (" and vfs_utils.readings.match_vertebrae()"
                            if "vertebra_id" in missing else ""))


def study_keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in _STUDY_KEYS if k in frame.columns]

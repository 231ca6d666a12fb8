"""Heights in mm and within-vertebra QM deformity grades (Genant's bands on keypoint
heights: a QM grade, not an SQ grade), with the loss and deformity-type helpers of
:mod:`.table`, :mod:`.reference` and :mod:`.sensitivity`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ._inputs import as_points, rows_flipped, spacing_rows

__all__ = [
    "DEFORMITIES",
    "GRADES",
    "GRADE_THRESHOLDS",
    "GRADE_TOLERANCE",
    "genant_grade",
    "heights",
]


#: Lower bounds of Genant's grades 1, 2 and 3 as a fraction of height lost (Genant et al. 1993).
GRADE_THRESHOLDS: tuple[float, float, float] = (0.20, 0.25, 0.40)

#: A loss this close below a threshold reaches it (``1 - 8/10`` is 0.19999999999999996).
GRADE_TOLERANCE: float = 1e-9

#: The grades, in order.
GRADES: tuple[int, ...] = (0, 1, 2, 3)

#: Deformity type named by the smallest of (Ha, Hm, Hp); "normal" is used for grade 0.
DEFORMITIES: tuple[str, str, str] = ("wedge", "biconcave", "crush")


def pair_heights(pts: np.ndarray, sp: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """(n, 3) heights (anterior, middle, posterior) in mm."""
    pairs = pts.reshape(-1, 3, 2, 3)
    diff = (pairs[:, :, 1, :] - pairs[:, :, 0, :]) * sp[:, None, :]
    h = np.sqrt(np.sum(diff * diff, axis=2))
    order = np.argsort(pairs[:, :, :, 0].mean(axis=2), axis=1, kind="stable")
    order[flipped] = order[flipped, ::-1]
    return np.take_along_axis(h, order, axis=1)


def heights(frame_or_points, spacing=(1.0, 1.0, 1.0), *, orientation=None):
    """Anterior, middle and posterior vertebral-body heights in mm.

    The pair of smallest mean row is anterior (supine), the largest when
    ``orientation`` says rows grow towards anterior (prone or flipped).

    Parameters
    ----------
    frame_or_points : DataFrame or array_like
        A :func:`~vfs_utils.annotation.read_annotations` frame, or keypoints
        [row, col, slice] in voxels of shape (6, 3) or (n, 6, 3).
    spacing : sequence of 3 floats, array of shape (n, 3), or mapping folder -> 3 floats
        Voxel spacing (row, col, slice) in mm; default (1, 1, 1): voxels.
    orientation : sequence of 6 floats, array of shape (n, 6), mapping, or None
        ImageOrientationPatient of the series (one, per row, or by folder).

    Returns
    -------
    DataFrame or ndarray
        Columns ``ha, hm, hp`` with the frame's index; for an array, shape (n, 3) or (3,).
    """
    pts = as_points(frame_or_points)
    frame = frame_or_points if isinstance(frame_or_points, pd.DataFrame) else None
    n = len(pts)
    h = pair_heights(pts, spacing_rows(spacing, n, frame), rows_flipped(orientation, n, frame))
    if frame is not None:
        return pd.DataFrame(h, index=frame.index, columns=["ha", "hm", "hp"])
    if np.ndim(frame_or_points) == 2:
        return h[0]
    return h


def grade_codes(loss: np.ndarray) -> np.ndarray:
    """Integer grades 0..3 (int8) of any-shaped loss; -1 where the loss is NaN."""
    loss = np.asarray(loss, dtype=float)
    limits = np.asarray(GRADE_THRESHOLDS) - GRADE_TOLERANCE
    codes = np.asarray((loss[..., None] >= limits).sum(axis=-1), dtype=np.int8)
    return np.where(np.isnan(loss), np.int8(-1), codes)


def to_int64(codes: np.ndarray) -> pd.arrays.IntegerArray:
    """Pandas ``Int64`` array of grade codes, <NA> where the code is -1."""
    codes = np.asarray(codes).reshape(-1)
    return pd.arrays.IntegerArray(np.where(codes < 0, 0, codes).astype(np.int64), codes < 0)


def genant_grade(loss):
    """Grade of a fractional height loss with Genant's bands (a QM deformity grade).

    Grade 0 below 20 %, 1 from 20 % (within :data:`GRADE_TOLERANCE`), 2 from 25 %, 3
    from 40 % (Genant et al. 1993). Unlike Genant's visual SQ grade it does not decide
    whether a deformity is a fracture: normal wedging counts too.

    Parameters
    ----------
    loss : float or array_like of float
        Fraction of height lost (0.2 = 20 %). NaN means unknown.

    Returns
    -------
    int, pandas.NA, Series or IntegerArray
        For a scalar an int (``pd.NA`` for NaN); for a Series an ``Int64`` Series with
        its index; otherwise an ``Int64`` array.
    """
    if isinstance(loss, pd.Series):
        codes = grade_codes(loss.to_numpy(dtype=float, na_value=np.nan))
        return pd.Series(to_int64(codes), index=loss.index, name=loss.name)
    arr = np.asarray(loss, dtype=float)
    if arr.ndim == 0:
        code = int(grade_codes(arr))
        return pd.NA if code < 0 else code
    if arr.ndim != 1:
        raise ValueError(f"genant_grade takes a scalar or a 1-D array, not shape {arr.shape}")
    return to_int64(grade_codes(arr))


def within_loss(h: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 1.0 - h.min(axis=-1) / h.max(axis=-1)
    return np.where(np.isfinite(loss), loss, np.nan)


def deformity_names(h: np.ndarray, codes: np.ndarray,
                    crush: np.ndarray | None = None) -> np.ndarray:
    names = np.asarray(DEFORMITIES, dtype=object)[np.argmin(np.nan_to_num(h, nan=np.inf), axis=1)]
    if crush is not None:
        names = np.where(crush, "crush", names)
    out = np.where(codes == 0, "normal", names).astype(object)
    out[codes < 0] = None
    return out

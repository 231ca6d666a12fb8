"""Vertebral morphometry: heights, indices, Genant grades, consensus and agreement.

Every vertebra reading of the annotation has six keypoints: three pairs that
span the anterior, middle and posterior height of the vertebral body. This
module turns them into heights in mm (Ha, Hm, Hp), shape indices, and a
Genant-style grade under two rules:

1. **within-vertebra** (``height_loss``, ``grade``, ``deformity``): the loss
   ``1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)`` graded with Genant's bands;
2. **neighbour-referenced** (``expected_height``, ``neighbour_loss``,
   ``neighbour_grade``, ``neighbour_deformity``): the smallest height against
   the posterior heights of the nearest within-vertebra-normal vertebrae above
   and below in the same reading.

On top of the per-reading table it builds a consensus across experts
(:func:`consensus`, :func:`study_labels`), inter-expert agreement
(:func:`agreement`, :func:`fleiss_kappa`, :func:`count_disagreement`), a
comparison of the two annotation rounds (:func:`compare_rounds`) and a Monte
Carlo sensitivity of the grades to keypoint noise (:func:`grade_flip_rate`).

Heights and grades are vectorised numpy over the whole frame; only the
per-study and per-expert-pair steps loop in Python.
"""
from __future__ import annotations

import itertools
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .annotation import POINT_COLUMNS
from ._parallel import map_ordered
from .errors import DataNotFoundError, SeriesError

__all__ = [
    "DEFORMITIES",
    "GRADES",
    "GRADE_THRESHOLDS",
    "GRADE_TOLERANCE",
    "Agreement",
    "CountDisagreement",
    "RoundComparison",
    "agreement",
    "compare_rounds",
    "consensus",
    "count_disagreement",
    "dataset_spacing",
    "fleiss_kappa",
    "genant_grade",
    "grade_flip_rate",
    "heights",
    "morphometry_table",
    "study_labels",
]

#: Lower bounds of Genant grades 1, 2 and 3 as a fraction of height lost
#: (Genant et al. 1993): grade 0 below 20 %, 1 from 20 %, 2 from 25 %, 3 from 40 %.
GRADE_THRESHOLDS: tuple[float, float, float] = (0.20, 0.25, 0.40)

#: A loss within this distance below a threshold counts as reaching it, so that a
#: reduction of exactly 20 % computed in floating point (``1 - 8/10`` is
#: 0.19999999999999996) is grade 1, not 0. Dimensionless.
GRADE_TOLERANCE: float = 1e-9

#: The grades, in order.
GRADES: tuple[int, ...] = (0, 1, 2, 3)

#: Deformity type named by the smallest of (Ha, Hm, Hp); "normal" is used for grade 0.
DEFORMITIES: tuple[str, str, str] = ("wedge", "biconcave", "crush")

#: Columns that identify one annotation file (one study's series in one round).
_STUDY_KEYS: tuple[str, ...] = ("version", "file", "folder", "series_uid")
#: Columns carried from the frame into the morphometry table, when present.
_CARRIED: tuple[str, ...] = ("file", "folder", "series_uid", "version", "expert", "vertebra",
                             "level", "vertebra_id")


# --------------------------------------------------------------------------- inputs
def _as_points(frame_or_points) -> np.ndarray:
    """(n, 6, 3) float keypoints from a frame or an array of shape (6, 3) / (n, 6, 3)."""
    if isinstance(frame_or_points, pd.DataFrame):
        missing = [c for c in POINT_COLUMNS if c not in frame_or_points.columns]
        if missing:
            raise ValueError(f"the frame lacks the point columns {missing[:3]}...: build it with "
                             "vfs_utils.annotation.read_annotations()")
        return frame_or_points[POINT_COLUMNS].to_numpy(dtype=float).reshape(-1, 6, 3)
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


def _spacing_rows(spacing, n: int, frame: pd.DataFrame | None = None) -> np.ndarray:
    sp = _per_row(spacing, n, 3, "spacing", frame)
    bad = ~(np.isfinite(sp) & (sp > 0))
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"spacing (row, col, slice) must be positive finite mm; row {i} has "
                         f"{tuple(sp[i])}")
    return sp


def _flipped(orientation, n: int, frame: pd.DataFrame | None = None) -> np.ndarray:
    """True where rows grow towards anterior (y of the column direction cosine < 0)."""
    if orientation is None:
        return np.zeros(n, dtype=bool)
    iop = _per_row(orientation, n, 6, "orientation", frame)
    if not np.isfinite(iop).all():
        raise ValueError("orientation (ImageOrientationPatient) must be 6 finite numbers")
    # IOP[3:6] is the LPS direction in which the row index grows; LPS y grows posterior.
    return iop[:, 4] < 0


# --------------------------------------------------------------------------- heights
def _pair_heights(pts: np.ndarray, sp: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """(n, 3) heights (anterior, middle, posterior) in mm."""
    pairs = pts.reshape(-1, 3, 2, 3)
    diff = (pairs[:, :, 1, :] - pairs[:, :, 0, :]) * sp[:, None, :]
    h = np.sqrt(np.sum(diff * diff, axis=2))
    order = np.argsort(pairs[:, :, :, 0].mean(axis=2), axis=1, kind="stable")
    order[flipped] = order[flipped, ::-1]
    return np.take_along_axis(h, order, axis=1)


def heights(frame_or_points, spacing=(1.0, 1.0, 1.0), *, orientation=None):
    """Anterior, middle and posterior vertebral-body heights in mm.

    The three keypoint pairs are ordered by their mean row; for a supine
    patient the smallest row is anterior, so the order is (Ha, Hm, Hp). Which
    end is anterior is decided from ImageOrientationPatient when given: its
    last three numbers are the LPS direction in which the row index grows, and
    when their y component is negative (rows grow towards anterior: a prone
    patient or a flipped image) the largest-row pair is anterior. Without an
    orientation the patient is taken to be supine (the CT default).

    The height of a pair is the Euclidean distance between its two points after
    multiplying the (row, col, slice) differences by the spacing.

    Parameters
    ----------
    frame_or_points : DataFrame or array_like
        A :func:`~vfs_utils.annotation.read_annotations` frame, or keypoints
        [row, col, slice] in voxels of shape (6, 3) or (n, 6, 3).
    spacing : sequence of 3 floats, array of shape (n, 3), or mapping
        Voxel spacing (row, col, slice) in mm: one for every vertebra, one per
        row, or (for a frame) a mapping folder -> spacing. Default (1, 1, 1)
        gives heights in voxels.
    orientation : sequence of 6 floats, array of shape (n, 6), mapping, or None
        ImageOrientationPatient of the series (one, per row, or by folder).

    Returns
    -------
    DataFrame or ndarray
        For a frame, a DataFrame with the frame's index and float columns
        ``ha, hm, hp`` (mm). For an array, an ndarray of shape (n, 3), or (3,)
        for one vertebra of shape (6, 3).
    """
    pts = _as_points(frame_or_points)
    frame = frame_or_points if isinstance(frame_or_points, pd.DataFrame) else None
    n = len(pts)
    h = _pair_heights(pts, _spacing_rows(spacing, n, frame), _flipped(orientation, n, frame))
    if frame is not None:
        return pd.DataFrame(h, index=frame.index, columns=["ha", "hm", "hp"])
    if np.ndim(frame_or_points) == 2:
        return h[0]
    return h


# --------------------------------------------------------------------------- grades
def _grade_codes(loss: np.ndarray) -> np.ndarray:
    """Integer grades 0..3 (int8) of any-shaped loss; -1 where the loss is NaN."""
    loss = np.asarray(loss, dtype=float)
    limits = np.asarray(GRADE_THRESHOLDS) - GRADE_TOLERANCE
    codes = np.asarray((loss[..., None] >= limits).sum(axis=-1), dtype=np.int8)
    return np.where(np.isnan(loss), np.int8(-1), codes)


def _to_int64(codes: np.ndarray) -> pd.arrays.IntegerArray:
    """Pandas ``Int64`` array of grade codes, <NA> where the code is -1."""
    codes = np.asarray(codes).reshape(-1)
    return pd.arrays.IntegerArray(np.where(codes < 0, 0, codes).astype(np.int64), codes < 0)


def genant_grade(loss):
    """Genant grade of a fractional height loss.

    Grade 0 below 20 %, 1 from 20 %, 2 from 25 %, 3 from 40 % (the bands of
    Genant HK, Wu CY, van Kuijk C, Nevitt MC (1993) Vertebral fracture
    assessment using a semiquantitative technique. J Bone Miner Res
    8(9):1137-1148); see :data:`GRADE_THRESHOLDS`. A loss of exactly 0.20 is
    grade 1, and so is one within :data:`GRADE_TOLERANCE` below it (floating
    point). A negative loss (taller than the reference) is grade 0.

    Parameters
    ----------
    loss : float or array_like of float
        Fraction of height lost (0.2 = 20 %). NaN means unknown.

    Returns
    -------
    int, pandas.NA, Series or IntegerArray
        An int (or ``pd.NA`` for NaN) for a scalar; a Series of dtype
        ``Int64`` with the same index for a Series; otherwise a 1-D pandas
        ``Int64`` array, with ``<NA>`` where the loss is NaN.
    """
    if isinstance(loss, pd.Series):
        codes = _grade_codes(loss.to_numpy(dtype=float, na_value=np.nan))
        return pd.Series(_to_int64(codes), index=loss.index, name=loss.name)
    arr = np.asarray(loss, dtype=float)
    if arr.ndim == 0:
        code = int(_grade_codes(arr))
        return pd.NA if code < 0 else code
    if arr.ndim != 1:
        raise ValueError(f"genant_grade takes a scalar or a 1-D array, not shape {arr.shape}")
    return _to_int64(_grade_codes(arr))


def _within_loss(h: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = 1.0 - h.min(axis=-1) / h.max(axis=-1)
    return np.where(np.isfinite(loss), loss, np.nan)


def _deformity(h: np.ndarray, codes: np.ndarray, crush: np.ndarray | None = None) -> np.ndarray:
    names = np.asarray(DEFORMITIES, dtype=object)[np.argmin(np.nan_to_num(h, nan=np.inf), axis=1)]
    if crush is not None:
        names = np.where(crush, "crush", names)
    out = np.where(codes == 0, "normal", names).astype(object)
    out[codes < 0] = None
    return out


# --------------------------------------------------------------------------- table
def _require(frame, columns: Sequence[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} takes a pandas DataFrame, not {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the frame lacks the column(s) {missing}; build it with "
                         "vfs_utils.annotation.read_annotations()"
                         + (" and vfs_utils.matching.match_vertebrae()"
                            if "vertebra_id" in missing else ""))


def _study_keys(frame: pd.DataFrame) -> list[str]:
    return [k for k in _STUDY_KEYS if k in frame.columns]


def _series_spacings(root, pairs, executor) -> np.ndarray:
    """(n, 3) header spacings of the (folder, series_uid) pairs, checked usable."""
    from .matching import series_spacing

    folders = [f for f, _ in pairs]
    uids = [u for _, u in pairs]
    roots = [root] * len(pairs)
    found = map_ordered(series_spacing, roots, folders, uids, executor=executor)
    table = np.asarray(found, dtype=float).reshape(len(pairs), 3)
    for (folder, uid), sp in zip(pairs, table):
        if not (np.isfinite(sp).all() and (sp > 0).all()):
            raise SeriesError(f"{os.fspath(root)}: series {uid} of folder {folder} has no usable "
                              f"spacing {tuple(sp)} (one slice, or missing PixelSpacing); remove "
                              "its readings from the frame or pass spacing= explicitly")
    return table


def _root_spacing(frame: pd.DataFrame, root, executor=None) -> np.ndarray:
    _require(frame, ["folder", "series_uid"], "morphometry_table(root=...)")
    pairs = pd.MultiIndex.from_frame(frame[["folder", "series_uid"]].astype(str))
    uniq = pairs.unique()
    table = _series_spacings(root, list(uniq), executor)
    return table[uniq.get_indexer(pairs)]


def dataset_spacing(frame: pd.DataFrame, root, *, default=None,
                    executor=None) -> dict[str, tuple[float, float, float]]:
    """Voxel spacing of every study of a frame, from the headers of the studies present.

    A dataset may hold images for only some of the annotated studies (a partial
    download, or the phantom demo, which renders a few of the 100). The
    spacing of each study folder under ``root/dicom`` is read from the headers
    of the annotated series (:func:`vfs_utils.matching.series_spacing`); a
    folder that is absent gets ``default``. The result is the mapping
    ``spacing=`` of :func:`morphometry_table` and :func:`heights` accept.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations`; needs ``folder``
        and ``series_uid``.
    root : path-like
        Dataset root holding ``dicom/<Folder>/...``.
    default : sequence of 3 floats, optional
        Spacing (row, col, slice) in mm for studies without images, e.g.
        ``(1, 1, 1)`` for heights in voxels (a ratio-only analysis). Without
        it an absent study is an error.
    executor : concurrent.futures.Executor, optional
        Runs the header scans in parallel (e.g. a ``ThreadPoolExecutor`` or a
        ``dask.distributed.Client``).

    Returns
    -------
    dict
        Folder name -> (row, col, slice) spacing in mm, for every folder of the frame.

    Raises
    ------
    DataNotFoundError
        ``root`` is not a dataset root, or a study folder is absent and no
        ``default`` is given.
    SeriesError
        A present study folder lacks the annotated series, or its spacing is unusable.
    ValueError
        The frame gives two series of different spacing for one folder, or
        ``default`` is not three positive numbers.
    """
    from pathlib import Path

    _require(frame, ["folder", "series_uid"], "dataset_spacing")
    base = Path(root)
    if not (base / "dicom").is_dir():
        raise DataNotFoundError(f"{base}: not a dataset root (no dicom/ folder inside). Point at "
                                "the folder that holds dicom/<Folder>/..., e.g. VFS_DATA_ROOT.")
    if default is not None:
        default = tuple(float(v) for v in _spacing_rows(default, 1)[0])
    pairs = list(dict.fromkeys(zip(frame["folder"].astype(str), frame["series_uid"].astype(str))))
    present = [p for p in pairs if (base / "dicom" / p[0]).is_dir()]
    absent = sorted({f for f, _ in pairs} - {f for f, _ in present})
    if absent and default is None:
        raise DataNotFoundError(
            f"{base / 'dicom' / absent[0]}: study folder {absent[0]!r} is not in this dataset "
            f"({len(absent)} of {len({f for f, _ in pairs})} annotated studies have no images). "
            "Download the missing studies, drop their readings from the frame, or pass "
            "default=(row, col, slice) mm, e.g. (1, 1, 1) for heights in voxels.")
    out: dict[str, tuple[float, float, float]] = {f: default for f in absent}
    for (folder, uid), sp in zip(present, _series_spacings(root, present, executor)):
        sp = tuple(float(v) for v in sp)
        if folder in out and not np.allclose(out[folder], sp):
            raise ValueError(f"dataset_spacing: folder {folder} has readings of two series with "
                             f"different spacings {out[folder]} and {sp}; split the frame by "
                             "series_uid")
        out[folder] = sp
    return out


def _neighbour_mean(values: pd.Series, codes: np.ndarray, skip_nan: bool) -> np.ndarray:
    """Mean of the previous and next value within a reading (rows already in reading order).

    With ``skip_nan`` the nearest non-NaN value on each side is used instead of
    the immediate neighbour.
    """
    grouped = values.groupby(codes, sort=False)
    prev, nxt = grouped.shift(1), grouped.shift(-1)
    if skip_nan:
        prev = prev.groupby(codes, sort=False).ffill()
        nxt = nxt.groupby(codes, sort=False).bfill()
    both = np.column_stack([prev.to_numpy(dtype=float), nxt.to_numpy(dtype=float)])
    count = np.isfinite(both).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.nansum(both, axis=1) / np.maximum(count, 1), np.nan)


def morphometry_table(frame: pd.DataFrame, *, root=None, spacing=None,
                      orientation=None, executor=None) -> pd.DataFrame:
    """Heights, shape indices and Genant grades of every vertebra reading.

    Within-vertebra rule (``height_loss``, ``grade``, ``deformity``)
        ``height_loss = 1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)``, graded with
        :func:`genant_grade`. Genant's semiquantitative method (Genant et al.
        1993, J Bone Miner Res 8:1137-1148) is a visual estimate of the
        reduction of the anterior, middle or posterior height; the ratio to the
        vertebra's own tallest height is the usual quantitative stand-in for
        it. It ignores Genant's area criterion and cannot see a vertebra that
        is uniformly flattened.
    Neighbour-referenced rule (``expected_height``, ``neighbour_loss``, ``neighbour_grade``, \
``neighbour_deformity``)
        The expected height of a vertebra is the mean posterior height Hp of
        the nearest vertebra above and the nearest below, in the same reading
        (vertebra index order), whose within-vertebra grade is 0 (one side
        only at the ends of the reading; NaN when there is none).
        ``neighbour_loss = 1 - min(Ha, Hm, Hp) / expected_height`` (negative
        when the vertebra is taller than expected), graded with the same
        bands. This follows the idea of predicting a vertebra's normal height
        from its neighbours used by the McCloskey-Kanis method in the European
        Vertebral Osteoporosis Study (O'Neill TW et al. 1996, J Bone Miner Res
        11(7):1010-1018) and by the reference to adjacent vertebrae in Wang's
        modified semi-quantitative (mSQ) grading (Wáng YXJ 2019, Quant
        Imaging Med Surg, doi:10.21037/qims.2019.02.04). It is a
        simplification for teaching, not a validated reimplementation of
        either scheme.

    Deformity type: ``"normal"`` at grade 0, otherwise the smallest of (Ha,
    Hm, Hp) names the type: ``"wedge"`` (Ha), ``"biconcave"`` (Hm),
    ``"crush"`` (Hp); ties go to the earlier name. Under the neighbour rule a
    vertebra whose three heights are all reduced by at least 20 % of the
    expected height is ``"crush"`` whatever the smallest height.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (optionally passed
        through :func:`vfs_utils.matching.match_vertebrae`, whose
        ``vertebra_id`` column is carried over for :func:`consensus`).
    root : path-like, optional
        A dataset root (holding ``dicom/<Folder>``): the spacing of each series
        is read from its DICOM headers with
        :func:`vfs_utils.matching.series_spacing`.
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats, optional
        Voxel spacing (row, col, slice) in mm instead of ``root``; (1, 1, 1)
        gives heights in voxels.
    orientation : see :func:`heights`, optional
        ImageOrientationPatient; without it the patient is taken to be supine.
    executor : concurrent.futures.Executor, optional
        With ``root``: runs the per-series header scans through
        ``executor.map`` (a ``ThreadPoolExecutor``, a ``dask.distributed.Client``...);
        the table is the same as without it. Ignored with ``spacing``.

    Returns
    -------
    DataFrame
        One row per vertebra reading, the frame's index, columns: the frame's
        ``file, folder, series_uid, version, expert, vertebra, level,
        vertebra_id`` (those present); ``ha, hm, hp`` (mm); ``wedge_index``
        (Ha/Hp), ``biconcave_index`` (Hm/Hp), ``biconcave_index_anterior``
        (Hm/Ha), ``crush_index`` (Hp over the mean Hp of the previous and next
        vertebra of the reading; NaN without neighbours); ``height_loss``,
        ``grade`` (Int64), ``deformity``; ``expected_height`` (mm),
        ``neighbour_loss``, ``neighbour_grade`` (Int64, <NA> without an
        expected height), ``neighbour_deformity``; ``centre_row, centre_col,
        centre_slice`` (voxels, mean of the six points).

    Raises
    ------
    TypeError
        Neither or both of ``root`` and ``spacing`` given.
    ValueError
        Missing columns or an unusable spacing/orientation.
    SeriesError, DataNotFoundError
        With ``root``: a series cannot be found or has no usable spacing.
    """
    _require(frame, ["folder", "expert", "vertebra", *POINT_COLUMNS], "morphometry_table")
    if (root is None) == (spacing is None):
        raise TypeError("morphometry_table needs exactly one of root= (a dataset root: spacing "
                        "from the DICOM headers) or spacing= (row, col, slice) in mm")
    n = len(frame)
    sp = (_root_spacing(frame, root, executor) if root is not None
          else _spacing_rows(spacing, n, frame))
    pts = _as_points(frame)
    h = _pair_heights(pts, sp, _flipped(orientation, n, frame))
    ha, hm, hp = h.T

    out = frame[[c for c in _CARRIED if c in frame.columns]].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ha"], out["hm"], out["hp"] = ha, hm, hp
        out["wedge_index"] = ha / hp
        out["biconcave_index"] = hm / hp
        out["biconcave_index_anterior"] = hm / ha

    # Reading order: rows of one (study, expert) sorted by vertebra index.
    reading = frame.groupby([*_study_keys(frame), "expert"], sort=False,
                            dropna=False).ngroup().to_numpy()
    order = np.lexsort((frame["vertebra"].to_numpy(), reading))
    codes_sorted = reading[order]
    hp_sorted = pd.Series(hp[order])

    loss = _within_loss(h)
    codes = _grade_codes(loss)
    crush_ref = np.empty(n)
    crush_ref[order] = _neighbour_mean(hp_sorted, codes_sorted, skip_nan=False)
    expected = np.empty(n)
    normal_hp = hp_sorted.where(codes[order] == 0)
    expected[order] = _neighbour_mean(normal_hp, codes_sorted, skip_nan=True)

    with np.errstate(divide="ignore", invalid="ignore"):
        out["crush_index"] = hp / crush_ref
        n_loss = 1.0 - h.min(axis=1) / expected
        all_reduced = 1.0 - h.max(axis=1) / expected >= GRADE_THRESHOLDS[0] - GRADE_TOLERANCE
    n_loss = np.where(np.isfinite(n_loss), n_loss, np.nan)
    n_codes = _grade_codes(n_loss)

    out["height_loss"] = loss
    out["grade"] = _to_int64(codes)
    out["deformity"] = pd.Series(_deformity(h, codes), index=out.index, dtype=object)
    out["expected_height"] = expected
    out["neighbour_loss"] = n_loss
    out["neighbour_grade"] = _to_int64(n_codes)
    out["neighbour_deformity"] = pd.Series(_deformity(h, n_codes, all_reduced),
                                           index=out.index, dtype=object)
    centre = pts.mean(axis=1)
    out["centre_row"], out["centre_col"], out["centre_slice"] = centre.T
    return out


# --------------------------------------------------------------------------- consensus
def _grade_column(rule: str) -> str:
    columns = {"genant": "grade", "within": "grade", "neighbour": "neighbour_grade"}
    if rule not in columns:
        raise ValueError(f"rule must be 'genant' (within-vertebra) or 'neighbour', not {rule!r}")
    return columns[rule]


def _check_unique(table: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = table.duplicated([*keys, "expert"], keep=False)
    if dup.any():
        row = table[dup].iloc[0]
        where = row.get("file", row.get("folder"))
        raise ValueError(f"{what}: expert {row['expert']} has two readings with vertebra_id "
                         f"{row['vertebra_id']} in {where}; vertebra_id must be unique per "
                         "expert within a file (use vfs_utils.matching.match_vertebrae)")


def _lower_median(table: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    values = table[keys].assign(_v=table[column].astype("Float64").astype(float))
    med = values.groupby(keys, sort=True, dropna=False)["_v"].quantile(0.5, interpolation="lower")
    return med.round().astype("Int64")


def consensus(table: pd.DataFrame) -> pd.DataFrame:
    """One consensus grade per vertebra across the experts who read it.

    Vertebrae are identified across experts by the ``vertebra_id`` column of
    :func:`vfs_utils.matching.match_vertebrae` (carried through
    :func:`morphometry_table`). The consensus grade is the **lower median** of
    the experts' grades: the middle grade for an odd number of experts, the
    smaller of the two middle grades for an even number. Equivalently, the
    largest grade that more than half of the experts give at least: with two
    experts grading 1 and 2 the consensus is 1; with (0, 0, 2, 2) it is 0.
    It is always a grade some expert gave, and it is conservative: with two
    experts a vertebra is called fractured only when both call it so.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.

    Returns
    -------
    DataFrame
        One row per (study, vertebra_id), sorted; columns: the study keys
        (``version, file, folder, series_uid``, those present),
        ``vertebra_id``, ``level`` (first non-null), ``n_experts``,
        ``experts`` (comma-joined), ``grade`` (consensus, Int64),
        ``grade_min``, ``grade_max``, ``neighbour_grade`` (consensus of the
        neighbour rule, Int64, ignoring <NA>), ``height_loss`` (median),
        ``centre_row``, ``centre_slice`` (mean, voxels) where present.
    """
    _require(table, ["expert", "vertebra_id", "grade"], "consensus")
    keys = [*_study_keys(table), "vertebra_id"]
    _check_unique(table, keys, "consensus")
    grouped = table.groupby(keys, sort=True, dropna=False)
    out = grouped["expert"].agg(n_experts="size",
                                experts=lambda s: ",".join(sorted(map(str, s))))
    if "level" in table.columns:
        out.insert(0, "level", grouped["level"].first())
    out["grade"] = _lower_median(table, keys, "grade")
    grades = table[keys].assign(_g=table["grade"].astype("Float64").astype(float)).groupby(
        keys, sort=True, dropna=False)["_g"]
    out["grade_min"] = grades.min().round().astype("Int64")
    out["grade_max"] = grades.max().round().astype("Int64")
    if "neighbour_grade" in table.columns:
        out["neighbour_grade"] = _lower_median(table, keys, "neighbour_grade")
    if "height_loss" in table.columns:
        out["height_loss"] = grouped["height_loss"].median()
    for c in ("centre_row", "centre_slice"):
        if c in table.columns:
            out[c] = grouped[c].mean()
    return out.reset_index()


def study_labels(table: pd.DataFrame, *, rule: str = "genant") -> pd.DataFrame:
    """Study-level fracture labels from the per-vertebra consensus.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour"}
        Grade column to use: the within-vertebra ``grade`` or ``neighbour_grade``.

    Returns
    -------
    DataFrame
        One row per study (study keys), columns ``n_vertebrae``,
        ``n_fractured`` (consensus grade >= 1), ``worst_grade`` (the highest
        consensus grade, Int64), ``label_any`` (worst >= 1) and
        ``label_moderate`` (worst >= 2), booleans (<NA> when no vertebra of
        the study has a grade).
    """
    column = _grade_column(rule)
    cons = consensus(table)
    keys = _study_keys(cons)
    g = cons[keys].assign(_g=cons[column].astype("Float64").astype(float)).groupby(
        keys, sort=True, dropna=False)["_g"]
    out = pd.DataFrame({"n_vertebrae": g.size(),
                        "n_fractured": g.agg(lambda s: int((s >= 1).sum())),
                        "worst_grade": g.max().round().astype("Int64")})
    worst = out["worst_grade"]
    out["label_any"] = (worst >= 1).astype("boolean")
    out["label_moderate"] = (worst >= 2).astype("boolean")
    return out.reset_index()


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """Inter-expert agreement on per-vertebra grades.

    Attributes
    ----------
    pairwise : DataFrame
        One row per expert pair that read common vertebrae: ``expert_a``,
        ``expert_b``, ``n_vertebrae``, ``kappa`` (Cohen's, linearly weighted
        over grades 0..3; NaN when undefined), ``exact`` (fraction with equal
        grades).
    fleiss_kappa : float
        Fleiss' kappa (nominal grades) over the vertebrae read by exactly
        ``fleiss_raters`` experts (the most common number of raters >= 2).
    fleiss_raters, fleiss_items : int
        That number of raters and the number of vertebrae used.
    exact : float
        Fraction of vertebrae read by >= 2 experts on which all of them give
        the same grade.
    n_vertebrae : int
        Number of vertebrae read by >= 2 experts.
    """

    pairwise: pd.DataFrame
    fleiss_kappa: float
    fleiss_raters: int
    fleiss_items: int
    exact: float
    n_vertebrae: int


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from a table of category counts per item.

    The textbook formula (Fleiss JL (1971) Measuring nominal scale agreement
    among many raters. Psychol Bull 76(5):378-382), which needs the same
    number of raters ``m >= 2`` for every item:
    ``P_i = (sum_j n_ij**2 - m) / (m (m - 1))``, ``p_j = sum_i n_ij / (N m)``,
    ``kappa = (mean(P_i) - sum_j p_j**2) / (1 - sum_j p_j**2)``.

    Parameters
    ----------
    counts : array_like of shape (N items, k categories)
        Number of raters who put item i in category j.

    Returns
    -------
    float
        Kappa; NaN for no items or when every rating is in one category.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or (c < 0).any():
        raise ValueError(f"counts must be a 2-D array of non-negative counts, not shape {c.shape}")
    if len(c) == 0:
        return float("nan")
    m = c.sum(axis=1)
    if not np.all(m == m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters for every item; "
                         f"got rater counts {sorted(set(m.astype(int).tolist()))}")
    m = m[0]
    p_i = (np.sum(c * c, axis=1) - m) / (m * (m - 1))
    p_j = c.sum(axis=0) / (len(c) * m)
    pe = float(np.sum(p_j * p_j))
    if np.isclose(pe, 1.0):
        return float("nan")
    return float((p_i.mean() - pe) / (1.0 - pe))


def agreement(table: pd.DataFrame, *, rule: str = "genant") -> Agreement:
    """Agreement of the experts' grades on the vertebrae they read in common.

    Pairwise Cohen's kappa uses linear weights over the grade scale 0..3
    (:func:`sklearn.metrics.cohen_kappa_score` with ``weights="linear"`` and
    ``labels=[0, 1, 2, 3]``, so that disagreeing by two grades weighs twice
    one grade even when a grade is unused). Fleiss' kappa (unweighted) needs a
    common number of raters per item, so it is computed over the vertebrae
    with the most common number of raters (>= 2); see :func:`fleiss_kappa`.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour"}
        Which grade column to compare.

    Returns
    -------
    Agreement
    """
    from sklearn.metrics import cohen_kappa_score

    column = _grade_column(rule)
    _require(table, ["expert", "vertebra_id", column], "agreement")
    keys = [*_study_keys(table), "vertebra_id"]
    _check_unique(table, keys, "agreement")
    graded = table[table[column].notna()]
    wide = graded.set_index([*keys, "expert"])[column].astype(float).unstack("expert")
    values = wide.to_numpy(dtype=float)
    experts = list(wide.columns)

    rows = []
    for a, b in itertools.combinations(range(len(experts)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        if not both.any():
            continue
        ga, gb = values[both, a].astype(int), values[both, b].astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kappa = cohen_kappa_score(ga, gb, labels=list(GRADES), weights="linear")
        rows.append({"expert_a": experts[a], "expert_b": experts[b], "n_vertebrae": int(both.sum()),
                     "kappa": float(kappa), "exact": float(np.mean(ga == gb))})
    pairwise = pd.DataFrame(rows, columns=["expert_a", "expert_b", "n_vertebrae", "kappa",
                                           "exact"])

    raters = np.sum(~np.isnan(values), axis=1)
    multi = raters >= 2
    counts = np.stack([np.sum(values == g, axis=1) for g in GRADES], axis=1)
    if multi.any():
        n_values, n_items = np.unique(raters[multi], return_counts=True)
        m = int(n_values[n_items == n_items.max()].max())
        kappa_f = fleiss_kappa(counts[raters == m])
        n_f = int(np.sum(raters == m))
        spread = np.nanmax(values[multi], axis=1) - np.nanmin(values[multi], axis=1)
        exact = float(np.mean(spread == 0))
    else:
        m, kappa_f, n_f, exact = 0, float("nan"), 0, float("nan")
    return Agreement(pairwise=pairwise, fleiss_kappa=kappa_f, fleiss_raters=m, fleiss_items=n_f,
                     exact=exact, n_vertebrae=int(multi.sum()))


@dataclass(frozen=True)
class CountDisagreement:
    """Files in which the experts drew different numbers of vertebrae.

    Attributes
    ----------
    files : DataFrame
        One row per file (study keys), ``counts`` (like ``"expert1:17
        expert2:16"``), ``n_experts``, ``n_min``, ``n_max``, ``disagree``.
    n_files, n_disagree : int
        Number of files, and of files with ``n_min != n_max``.
    fraction : float
        ``n_disagree / n_files``.
    """

    files: pd.DataFrame
    n_files: int
    n_disagree: int
    fraction: float


def count_disagreement(frame: pd.DataFrame) -> CountDisagreement:
    """How often the experts of one file disagree on the number of vertebrae.

    An expert who drew no vertebra in a file has no row in the frame and is
    not counted.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (or a morphometry table).

    Returns
    -------
    CountDisagreement
    """
    _require(frame, ["folder", "expert"], "count_disagreement")
    keys = _study_keys(frame)
    per = frame.groupby([*keys, "expert"], sort=True, dropna=False).size().rename("n")
    per = per.reset_index()
    g = per.groupby(keys, sort=True, dropna=False)
    files = pd.DataFrame({
        "counts": g.apply(lambda d: " ".join(f"{e}:{k}" for e, k in zip(d["expert"], d["n"])),
                          include_groups=False),
        "n_experts": g.size(),
        "n_min": g["n"].min(),
        "n_max": g["n"].max(),
    })
    files["disagree"] = files["n_min"] != files["n_max"]
    files = files.reset_index()
    n_files, n_dis = len(files), int(files["disagree"].sum())
    return CountDisagreement(files=files, n_files=n_files, n_disagree=n_dis,
                             fraction=n_dis / n_files if n_files else float("nan"))


# --------------------------------------------------------------------------- rounds
@dataclass(frozen=True)
class RoundComparison:
    """Consensus grades of the same vertebrae in two annotation rounds.

    Attributes
    ----------
    pairs : DataFrame
        One row per matched vertebra: ``folder``, ``vertebra_id_a``,
        ``vertebra_id_b``, ``level`` (from round b when it has one),
        ``centre_slice_a``, ``centre_slice_b``, ``grade_a``, ``grade_b``,
        ``changed``.
    crosstab : DataFrame
        Counts, rows = round-a consensus grade 0..3, columns = round-b grade 0..3.
    n_matched, n_unmatched_a, n_unmatched_b : int
        Matched consensus vertebrae, and those of each round left without a partner.
    changed : float
        Fraction of matched vertebrae whose consensus grade differs.
    """

    pairs: pd.DataFrame
    crosstab: pd.DataFrame
    n_matched: int
    n_unmatched_a: int
    n_unmatched_b: int
    changed: float


def compare_rounds(v1_table: pd.DataFrame, v2_table: pd.DataFrame, *, tolerance: float = 5.0,
                   rule: str = "genant") -> RoundComparison:
    """How often the consensus grade of a vertebra changes between two rounds.

    Both tables are reduced to consensus vertebrae (:func:`consensus`). Within
    each folder present in both, vertebrae are matched one-to-one by their
    centre slice (mean over experts of the six points' slice index): the
    assignment minimising the total slice distance
    (:func:`scipy.optimize.linear_sum_assignment`), keeping pairs closer than
    ``tolerance``. Both rounds annotate the same series, so voxel positions
    are comparable; a folder whose ``series_uid`` differs between the rounds
    is skipped with a warning.

    Parameters
    ----------
    v1_table, v2_table : DataFrame
        From :func:`morphometry_table` with ``vertebra_id`` (round a, round b).
    tolerance : float
        Largest accepted distance between matched centres, in slices (voxels).
    rule : {"genant", "neighbour"}
        Which grade to compare.

    Returns
    -------
    RoundComparison
    """
    from scipy.optimize import linear_sum_assignment

    column = _grade_column(rule)
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number of slices, not {tolerance!r}")
    a, b = consensus(v1_table), consensus(v2_table)
    for name, t in (("v1_table", a), ("v2_table", b)):
        if "centre_slice" not in t.columns:
            raise ValueError(f"compare_rounds: {name} lacks centre_slice; build it with "
                             "morphometry_table()")
    rows = []
    by_b = dict(tuple(b.groupby("folder", sort=False)))
    for folder, ga in a.groupby("folder", sort=True):
        gb = by_b.get(folder)
        if gb is None:
            continue
        if "series_uid" in ga.columns and "series_uid" in gb.columns and \
                set(ga["series_uid"]) != set(gb["series_uid"]):
            warnings.warn(f"compare_rounds: folder {folder} has different series in the two "
                          "rounds; skipped", stacklevel=2)
            continue
        sa, sb = ga["centre_slice"].to_numpy(float), gb["centre_slice"].to_numpy(float)
        cost = np.abs(sa[:, None] - sb[None, :])
        ia, ib = linear_sum_assignment(cost)
        keep = cost[ia, ib] <= tolerance
        for i, j in zip(ia[keep], ib[keep]):
            ra, rb = ga.iloc[i], gb.iloc[j]
            level = rb.get("level")
            if level is None or pd.isna(level):
                level = ra.get("level")
            rows.append({"folder": folder, "vertebra_id_a": ra["vertebra_id"],
                         "vertebra_id_b": rb["vertebra_id"],
                         "level": None if level is None or pd.isna(level) else level,
                         "centre_slice_a": sa[i], "centre_slice_b": sb[j],
                         "grade_a": ra[column], "grade_b": rb[column]})
    pairs = pd.DataFrame(rows, columns=["folder", "vertebra_id_a", "vertebra_id_b", "level",
                                        "centre_slice_a", "centre_slice_b", "grade_a", "grade_b"])
    pairs["level"] = pairs["level"].astype(object)
    pairs["grade_a"] = pairs["grade_a"].astype("Int64")
    pairs["grade_b"] = pairs["grade_b"].astype("Int64")
    pairs["changed"] = (pairs["grade_a"] != pairs["grade_b"]).astype("boolean")
    both = pairs.dropna(subset=["grade_a", "grade_b"])
    crosstab = pd.crosstab(both["grade_a"].astype(int), both["grade_b"].astype(int)).reindex(
        index=list(GRADES), columns=list(GRADES), fill_value=0)
    crosstab.index.name, crosstab.columns.name = "grade_a", "grade_b"
    n = len(pairs)
    return RoundComparison(pairs=pairs, crosstab=crosstab, n_matched=n,
                           n_unmatched_a=len(a) - n, n_unmatched_b=len(b) - n,
                           changed=float(both["grade_a"].ne(both["grade_b"]).mean())
                           if len(both) else float("nan"))


# --------------------------------------------------------------------------- sensitivity
def grade_flip_rate(frame, spacing, sigmas_mm: Sequence[float] = (0.5, 1.0, 2.0),
                    n_draws: int = 50, seed: int = 0) -> pd.DataFrame:
    """How often keypoint noise changes the within-vertebra Genant grade.

    Every keypoint is moved by independent Gaussian noise of standard
    deviation ``sigma`` mm along the row and the slice axis (the sagittal
    plane the points were drawn in; the column is left alone), the heights
    and grades are recomputed, and the grade is compared with the grade of
    the unperturbed points. The same standard-normal draws, scaled by each
    sigma, are used for every sigma (common random numbers), so the rates
    are comparable across sigmas and identical for the same seed. Only the
    within-vertebra rule is simulated; its grade does not depend on which
    pair is anterior, so no orientation is needed.

    Parameters
    ----------
    frame : DataFrame or array_like of shape (n, 6, 3)
        Vertebra readings (see :func:`heights`).
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats
        Voxel spacing (row, col, slice) in mm.
    sigmas_mm : sequence of float
        Noise standard deviations in mm (>= 0).
    n_draws : int
        Monte Carlo draws per sigma.
    seed : int
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    DataFrame
        One row per sigma: ``sigma_mm``, ``n_readings`` (readings with a
        grade), ``n_draws``, ``flip_rate`` (mean over draws of the fraction of
        readings whose grade changes), ``flip_rate_sd`` (its standard
        deviation across draws), ``up_rate`` and ``down_rate`` (grade higher /
        lower than unperturbed).
    """
    pts = _as_points(frame)
    n = len(pts)
    sp = _spacing_rows(spacing, n, frame if isinstance(frame, pd.DataFrame) else None)
    sigmas = np.asarray(sigmas_mm, dtype=float).reshape(-1)
    if not (np.isfinite(sigmas).all() and (sigmas >= 0).all()):
        raise ValueError(f"sigmas_mm must be finite and >= 0, not {sigmas_mm!r}")
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be at least 1, not {n_draws!r}")
    n_draws = int(n_draws)
    mm = pts * sp[:, None, :]
    pairs = mm.reshape(n, 3, 2, 3)
    base_diff = pairs[:, :, 1, :] - pairs[:, :, 0, :]               # (n, 3, 3) mm
    base = _grade_codes(_within_loss(np.sqrt(np.sum(base_diff ** 2, axis=-1))))
    valid = base >= 0
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_draws, n, 3, 2, 2))                  # pair, point, (row, slice)
    dz = z[:, :, :, 1, :] - z[:, :, :, 0, :]                         # noise of the differences
    rows = []
    n_valid = int(valid.sum())
    for sigma in sigmas:
        flips = np.empty(n_draws)
        up = np.empty(n_draws)
        down = np.empty(n_draws)
        chunk = max(1, 4_000_000 // max(1, n * 9))
        for start in range(0, n_draws, chunk):
            d = np.broadcast_to(base_diff, (min(chunk, n_draws - start), n, 3, 3)).copy()
            d[..., [0, 2]] += sigma * dz[start:start + len(d)]
            codes = _grade_codes(_within_loss(np.sqrt(np.sum(d * d, axis=-1))))
            with np.errstate(invalid="ignore"):
                sl = slice(start, start + len(d))
                denom = max(n_valid, 1)
                flips[sl] = np.sum((codes != base) & valid, axis=1) / denom
                up[sl] = np.sum((codes > base) & valid, axis=1) / denom
                down[sl] = np.sum((codes < base) & valid & (codes >= 0), axis=1) / denom
        rows.append({"sigma_mm": float(sigma), "n_readings": n_valid, "n_draws": n_draws,
                     "flip_rate": float(flips.mean()) if n_valid else float("nan"),
                     "flip_rate_sd": float(flips.std(ddof=1)) if n_draws > 1 else float("nan"),
                     "up_rate": float(up.mean()) if n_valid else float("nan"),
                     "down_rate": float(down.mean()) if n_valid else float("nan")})
    return pd.DataFrame(rows)

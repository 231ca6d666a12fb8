"""Vertebral morphometry: heights, QM deformity grades, level-normal references, consensus.

Every vertebra reading of the annotation has six keypoints: three pairs that
span the anterior, middle and posterior height of the vertebral body. This
module turns them into heights in mm (Ha, Hm, Hp), shape indices, and
**quantitative-morphometry (QM) deformity grades**. None of them is a
radiologist's fracture diagnosis: Genant's semi-quantitative method (SQ) is a
visual grade that excludes non-fracture deformity (normal wedging, Schmorl
nodes, developmental short vertebrae); the annotation holds no such visual
grade. Three QM rules:

1. **within-vertebra, Genant's bands** (``height_loss``, ``grade``,
   ``deformity``): ``1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)`` graded with
   Genant's 20/25/40 % height-reduction bands (:func:`genant_grade`);
2. **neighbour, Genant's bands** (``neighbour_loss``, ``neighbour_grade``,
   ``neighbour_deformity``): each height against the same height of the two
   adjacent vertebrae of the reading (both needed; none at the ends);
3. **SD scores against a level-normal reference** (:func:`level_reference`,
   :func:`sd_scores`; ``sd_score``, ``sd_grade``): Eastell et al. (1991),
   deformed when a ratio lies 3 SD or more below the level's normal mean.

Then a consensus across readers whose meaning does not depend on how many
experts read a study (:func:`consensus`: the grade of the mean over readers),
study labels (:func:`study_labels`), the readers' own keypoint scatter
(:func:`keypoint_scatter`), inter-expert agreement (:func:`agreement`,
:func:`agreement_statistics`, :func:`fleiss_kappa`, :func:`count_disagreement`),
a comparison of the two annotation rounds (:func:`compare_rounds`) and a Monte
Carlo sensitivity of the grades to keypoint noise (:func:`grade_flip_rate`).
The statistics themselves (Krippendorff's alpha, ICC, Bland-Altman,
bootstrap) are in :mod:`vfs_utils.agreement`.

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

from . import agreement as _stats
from ._fs import check_spacing, dicom_root
from ._parallel import map_ordered
from .annotation import LEVELS, POINT_COLUMNS, points
from .errors import DataNotFoundError, SeriesError

__all__ = [
    "DEFORMITIES",
    "GRADES",
    "GRADE_THRESHOLDS",
    "GRADE_TOLERANCE",
    "LABEL_LEVELS",
    "RATIOS",
    "SD_THRESHOLDS",
    "Agreement",
    "CountDisagreement",
    "RoundComparison",
    "agreement",
    "agreement_statistics",
    "compare_rounds",
    "consensus",
    "count_disagreement",
    "dataset_spacing",
    "fleiss_kappa",
    "genant_grade",
    "grade_flip_rate",
    "heights",
    "keypoint_scatter",
    "label_levels",
    "level_reference",
    "morphometry_table",
    "prevalence",
    "sd_scores",
    "study_labels",
]

#: Lower bounds of Genant's grades 1, 2 and 3 as a fraction of height lost
#: (Genant et al. 1993): grade 0 below 20 %, 1 from 20 %, 2 from 25 %, 3 from 40 %.
#: Applied here to keypoint heights, they give a QM deformity grade, not an SQ grade.
GRADE_THRESHOLDS: tuple[float, float, float] = (0.20, 0.25, 0.40)

#: A loss within this distance below a threshold counts as reaching it, so that a
#: reduction of exactly 20 % computed in floating point (``1 - 8/10`` is
#: 0.19999999999999996) is grade 1, not 0. Dimensionless.
GRADE_TOLERANCE: float = 1e-9

#: The grades, in order.
GRADES: tuple[int, ...] = (0, 1, 2, 3)

#: Deformity type named by the smallest of (Ha, Hm, Hp); "normal" is used for grade 0.
DEFORMITIES: tuple[str, str, str] = ("wedge", "biconcave", "crush")

#: Levels graded by default (T4-L4, as in most morphometry and SQ studies: above T4 the
#: shoulders hide the vertebrae on radiographs, and the published normal ranges start there).
LABEL_LEVELS: tuple[str, ...] = tuple(f"Th{i}" for i in range(4, 13)) + tuple(
    f"L{i}" for i in range(1, 5))

#: The three shape ratios of Eastell et al. (1991): wedge Ha/Hp, mid-wedge (biconcave)
#: Hm/Hp and compression Hp / mean Hp of the adjacent vertebrae (columns of the table).
RATIOS: tuple[str, str, str] = ("wedge_index", "biconcave_index", "crush_index")

#: SD-score bands (Eastell et al. 1991): grade 1 from 3 SD below the level's normal mean,
#: grade 2 from 4 SD.
SD_THRESHOLDS: tuple[float, float] = (3.0, 4.0)

#: Columns that identify one annotation file (one study's series in one round).
_STUDY_KEYS: tuple[str, ...] = ("version", "file", "folder", "series_uid")
#: Columns carried from the frame into the morphometry table, when present.
_CARRIED: tuple[str, ...] = ("file", "folder", "series_uid", "version", "expert", "vertebra",
                             "level", "vertebra_id")


# --------------------------------------------------------------------------- inputs
def _as_points(frame_or_points) -> np.ndarray:
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
    """Grade of a fractional height loss with Genant's bands (a QM deformity grade).

    Grade 0 below 20 %, 1 from 20 %, 2 from 25 %, 3 from 40 % (the bands of
    Genant HK, Wu CY, van Kuijk C, Nevitt MC (1993) Vertebral fracture
    assessment using a semiquantitative technique. J Bone Miner Res
    8(9):1137-1148); see :data:`GRADE_THRESHOLDS`. A loss of exactly 0.20 is
    grade 1, and so is one within :data:`GRADE_TOLERANCE` below it (floating
    point). A negative loss (taller than the reference) is grade 0.

    Genant's SQ grade is a radiologist's visual estimate that first decides
    whether a deformity is a fracture at all; applied to measured heights the
    same bands give a quantitative-morphometry (QM) *deformity* grade, which
    also counts normal wedging and endplate concavity.

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
    _require(frame, ["folder", "series_uid"], "dataset_spacing")
    dicom = dicom_root(root)
    base = dicom.parent
    if default is not None:
        default = check_spacing(default, "dataset_spacing(default=...)")
    pairs = list(dict.fromkeys(zip(frame["folder"].astype(str), frame["series_uid"].astype(str))))
    present = [p for p in pairs if (dicom / p[0]).is_dir()]
    absent = sorted({f for f, _ in pairs} - {f for f, _ in present})
    if absent and default is None:
        raise DataNotFoundError(
            f"{base / 'dicom' / absent[0]}: study folder {absent[0]!r} is not in this dataset "
            f"({len(absent)} of {len({f for f, _ in pairs})} annotated studies have no images). "
            "Download the missing studies, drop their readings from the frame, or pass "
            "default=(row, col, slice) mm, e.g. (1, 1, 1) for heights in voxels.")
    out: dict[str, tuple[float, float, float]] = {f: default for f in absent}
    for (folder, _uid), sp in zip(present, _series_spacings(root, present, executor)):
        sp = tuple(float(v) for v in sp)
        if folder in out and not np.allclose(out[folder], sp):
            raise ValueError(f"dataset_spacing: folder {folder} has readings of two series with "
                             f"different spacings {out[folder]} and {sp}; split the frame by "
                             "series_uid")
        out[folder] = sp
    return out


def _adjacent_mean(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Mean of the previous and next row of the same reading (rows in reading order).

    ``values`` is (n,) or (n, k); NaN where either neighbour is missing (the
    first and last vertebra of a reading): no one-sided reference.
    """
    v = np.asarray(values, dtype=float)
    flat = v.reshape(len(v), -1) if v.size else v.reshape(len(v), *(v.shape[1:] or (1,)))
    prev = np.full_like(flat, np.nan)
    nxt = np.full_like(flat, np.nan)
    same_prev = np.zeros(len(v), dtype=bool)
    same_prev[1:] = codes[1:] == codes[:-1]
    prev[same_prev] = flat[np.flatnonzero(same_prev) - 1]
    same_next = np.zeros(len(v), dtype=bool)
    same_next[:-1] = codes[:-1] == codes[1:]
    nxt[same_next] = flat[np.flatnonzero(same_next) + 1]
    return ((prev + nxt) / 2).reshape(v.shape)


def morphometry_table(frame: pd.DataFrame, *, root=None, spacing=None,
                      orientation=None, executor=None) -> pd.DataFrame:
    """Heights, shape indices and QM deformity grades of every vertebra reading.

    Every grade here is a quantitative-morphometry (QM) **deformity** grade
    computed from the expert keypoints, not a radiologist's (SQ) fracture
    grade: normal thoracic wedging and endplate concavity reach the bands too.

    Within-vertebra rule (``height_loss``, ``grade``, ``deformity``)
        ``height_loss = 1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)``, graded with
        Genant's bands (:func:`genant_grade`). Genant's semiquantitative
        method (Genant et al. 1993, J Bone Miner Res 8:1137-1148) is a visual
        estimate of the reduction of the anterior, middle or posterior height
        against the expected height; the ratio to the vertebra's own tallest
        height is the usual quantitative stand-in. It ignores Genant's area
        criterion, counts normal wedging and concavity, and cannot see a
        vertebra that is uniformly flattened.
    Neighbour rule (``expected_height``, ``neighbour_loss``, ``neighbour_grade``, \
``neighbour_deformity``)
        Each height of a vertebra is compared with the **same** height of the
        two adjacent vertebrae of the reading (mean of the vertebra above and
        below, in vertebra index order): ``neighbour_loss = 1 - min_k (H_k /
        mean(H_k of the neighbours))`` for k in (a, m, p), graded with the same
        bands. Both neighbours are needed: the first and last vertebra of a
        reading get NaN (no one-sided comparison with a single, differently
        sized neighbour), and the neighbours are taken as they are, not chosen
        with the rule being tested. A deformed neighbour lowers the reference
        (a limitation shared with every neighbour-based method).
        ``expected_height`` is the neighbours' mean Hp (mm). The idea of a
        neighbour-predicted height is that of McCloskey et al. (1993, Osteoporos
        Int 3:138-147); this is a simplification for teaching, not a
        validated reimplementation.
    SD-score rule
        Not in this table: it needs a reference; see :func:`level_reference`
        and :func:`sd_scores`.

    Deformity type: ``"normal"`` at grade 0, otherwise the smallest of (Ha,
    Hm, Hp) names the type: ``"wedge"`` (Ha), ``"biconcave"`` (Hm),
    ``"crush"`` (Hp); ties go to the earlier name. Under the neighbour rule the
    smallest of the three neighbour ratios names it, and a vertebra whose three
    heights are all reduced by at least 20 % is ``"crush"``.

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
        vertebra of the reading; NaN at the ends of a reading); ``height_loss``,
        ``grade`` (Int64), ``deformity``; ``expected_height`` (mm),
        ``neighbour_loss``, ``neighbour_grade`` (Int64, <NA> at the ends of a
        reading), ``neighbour_deformity``; ``centre_row, centre_col,
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
    ref = np.empty_like(h)
    ref[order] = _adjacent_mean(h[order], reading[order])

    loss = _within_loss(h)
    codes = _grade_codes(loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["crush_index"] = hp / ref[:, 2]
        rel = h / ref                                               # H_k / neighbours' H_k
        n_loss = 1.0 - rel.min(axis=1)
        all_reduced = 1.0 - rel.max(axis=1) >= GRADE_THRESHOLDS[0] - GRADE_TOLERANCE
    n_loss = np.where(np.isfinite(n_loss), n_loss, np.nan)
    n_codes = _grade_codes(n_loss)
    expected = ref[:, 2]

    out["height_loss"] = loss
    out["grade"] = _to_int64(codes)
    out["deformity"] = pd.Series(_deformity(h, codes), index=out.index, dtype=object)
    out["expected_height"] = expected
    out["neighbour_loss"] = n_loss
    out["neighbour_grade"] = _to_int64(n_codes)
    out["neighbour_deformity"] = pd.Series(_deformity(np.where(np.isfinite(rel), rel, np.nan),
                                                      n_codes, all_reduced),
                                           index=out.index, dtype=object)
    centre = pts.mean(axis=1)
    out["centre_row"], out["centre_col"], out["centre_slice"] = centre.T
    return out


# --------------------------------------------------------------------------- levels, reference
def label_levels(table: pd.DataFrame, levels: Sequence[str] | None = LABEL_LEVELS) -> pd.DataFrame:
    """The rows whose ``level`` is among ``levels`` (default T4-L4, :data:`LABEL_LEVELS`).

    v1 readings have no level: give them the v2 level first with
    :func:`vfs_utils.matching.carry_levels`. ``levels=None`` keeps every row.
    """
    _require(table, ["level"], "label_levels")
    if levels is None:
        return table
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"label_levels: unknown level names {unknown}; use names of "
                         "vfs_utils.annotation.LEVELS such as 'Th4' or 'L1'")
    return table[table["level"].isin(list(levels))]


def level_reference(table: pd.DataFrame, *, ratios: Sequence[str] = RATIOS, n_sd: float = 3.0,
                    max_iter: int = 50, min_n: int = 10) -> pd.DataFrame:
    """Per-level normal mean and SD of the shape ratios, from the data themselves.

    For each level, the mean and SD (ddof 1) of every ratio are estimated by
    iterative trimming: start from every reading with that level, drop the
    readings with any ratio more than ``n_sd`` SD from the current mean (in
    either direction), re-estimate, and repeat until no reading is dropped
    (or ``max_iter``). Readings are the units (each expert's reading counts
    once). This is the way population normal ranges were derived for the
    SD-score criteria of Eastell et al. (1991) and McCloskey et al. (1993):
    the deformed vertebrae, being few and far out, are excluded, and what is
    left estimates the level's normal shape, including its normal wedging
    and concavity. The crush ratio needs both neighbours, so it is missing at
    the ends of a reading and estimated from the readings that have it.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``level`` (v2, or v1 after
        :func:`vfs_utils.matching.carry_levels`).
    ratios : sequence of str
        Ratio columns (default :data:`RATIOS`).
    n_sd : float
        Trimming distance in SD.
    max_iter : int
        Maximum trimming rounds.
    min_n : int
        Levels with fewer retained readings get NaN (no reference).

    Returns
    -------
    DataFrame
        Index ``level`` (in :data:`~vfs_utils.annotation.LEVELS` order),
        columns ``n`` (readings of the level), ``n_normal`` (retained),
        ``iterations``, and ``mean_<ratio>``, ``sd_<ratio>`` per ratio.
    """
    _require(table, ["level", *ratios], "level_reference")
    rows = {}
    for level, group in table[table["level"].notna()].groupby("level", sort=False):
        x = group[list(ratios)].to_numpy(dtype=float)
        keep = np.isfinite(x).any(axis=1)
        n_iter = 0
        for n_iter in range(1, int(max_iter) + 1):  # noqa: B007 (reported after the loop)
            sub = np.where(keep[:, None], x, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, sd = np.nanmean(sub, axis=0), np.nanstd(sub, axis=0, ddof=1)
                z = np.abs(x - mean) / sd
            out = np.nan_to_num(z, nan=0.0).max(axis=1) > n_sd
            new = keep & ~out
            if (new == keep).all():
                break
            keep = new
        row = {"n": len(group), "n_normal": int(keep.sum()), "iterations": n_iter}
        for j, r in enumerate(ratios):
            ok = keep.sum() >= min_n
            row[f"mean_{r}"] = float(mean[j]) if ok else float("nan")
            row[f"sd_{r}"] = float(sd[j]) if ok else float("nan")
        rows[level] = row
    order = [lv for lv in LEVELS if lv in rows]
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(order)
    out.index.name = "level"
    return out


def _sd_codes(score: np.ndarray) -> np.ndarray:
    """SD grades 0..2 (int8) of SD scores (negative = below normal); -1 where NaN."""
    score = np.asarray(score, dtype=float)
    codes = np.asarray((-score[..., None] >= np.asarray(SD_THRESHOLDS) - GRADE_TOLERANCE).sum(
        axis=-1), dtype=np.int8)
    return np.where(np.isnan(score), np.int8(-1), codes)


def sd_scores(table: pd.DataFrame, reference: pd.DataFrame, *,
              ratios: Sequence[str] = RATIOS) -> pd.DataFrame:
    """SD scores of the shape ratios against a level-normal reference (Eastell et al. 1991).

    ``z_<ratio> = (ratio - mean_level) / sd_level``; ``sd_score`` is the
    smallest of them (the most deformed ratio), ``sd_grade`` its grade: 0
    above -3 SD, 1 from 3 SD below the normal mean, 2 from 4 SD
    (:data:`SD_THRESHOLDS`), ``sd_deformity`` the ratio that is lowest
    ("wedge" Ha/Hp, "biconcave" Hm/Hp, "crush" Hp/neighbours' Hp; "normal" at
    grade 0). The reference is level-specific, so normal thoracic wedging and
    endplate concavity are not counted. A ratio that is missing (crush at the
    ends of a reading) is left out of the minimum; a level without a
    reference gives NaN.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` with ``level``.
    reference : DataFrame
        From :func:`level_reference`.
    ratios : sequence of str

    Returns
    -------
    DataFrame
        A copy of ``table`` with ``z_<ratio>``, ``sd_score``, ``sd_grade``
        (Int64) and ``sd_deformity``.
    """
    _require(table, ["level", *ratios], "sd_scores")
    missing = [f"{k}_{r}" for r in ratios for k in ("mean", "sd")
               if f"{k}_{r}" not in reference.columns]
    if missing:
        raise ValueError(f"sd_scores: the reference lacks {missing}; build it with "
                         "level_reference()")
    out = table.copy()
    ref = reference.reindex(out["level"].astype(object).where(out["level"].notna(), None))
    z = np.column_stack([(out[r].to_numpy(float) - ref[f"mean_{r}"].to_numpy(float))
                         / ref[f"sd_{r}"].to_numpy(float) for r in ratios])
    for j, r in enumerate(ratios):
        out[f"z_{r}"] = z[:, j]
    any_z = np.isfinite(z).any(axis=1)
    score = np.where(any_z, np.nanmin(np.where(np.isfinite(z), z, np.inf), axis=1), np.nan)
    codes = _sd_codes(score)
    out["sd_score"] = score
    out["sd_grade"] = _to_int64(codes)
    names = np.asarray(DEFORMITIES, dtype=object)[np.argmin(np.where(np.isfinite(z), z, np.inf),
                                                            axis=1)]
    sd_def = np.where(codes == 0, "normal", names).astype(object)
    sd_def[codes < 0] = None
    out["sd_deformity"] = pd.Series(sd_def, index=out.index, dtype=object)
    return out


# --------------------------------------------------------------------------- consensus
_RULES = {"genant": "grade", "within": "grade", "qm": "grade", "neighbour": "neighbour_grade",
          "sd": "sd_grade"}
#: Grade column -> (continuous measure averaged over readers, grading function).
_MEASURES = {"grade": ("height_loss", _grade_codes),
             "neighbour_grade": ("neighbour_loss", _grade_codes),
             "sd_grade": ("sd_score", _sd_codes)}


def _grade_column(rule: str) -> str:
    if rule not in _RULES:
        raise ValueError(f"rule must be 'genant' (within-vertebra, also 'within' or 'qm'), "
                         f"'neighbour' or 'sd', not {rule!r}")
    return _RULES[rule]


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


_METHODS = ("mean", "lower_median")


def consensus(table: pd.DataFrame, *, method: str = "mean") -> pd.DataFrame:
    """One consensus grade per vertebra across the experts who read it.

    Vertebrae are identified across experts by the ``vertebra_id`` column of
    :func:`vfs_utils.matching.match_vertebrae` (carried through
    :func:`morphometry_table`).

    ``method="mean"`` (default): the grade of the **mean over readers** of the
    continuous measure behind each rule (``height_loss`` for ``grade``,
    ``neighbour_loss`` for ``neighbour_grade``, ``sd_score`` for ``sd_grade``;
    missing values ignored). Every reader weighs the same whether a study had
    two readers or three, so the consensus means the same thing for both; the
    mean of more readers is only less noisy.

    ``method="lower_median"``: the lower median of the readers' grades (the
    previous default, kept to show its artefact): the median of three readers
    but the *minimum* of two, so a vertebra read by two experts is called
    deformed only when both call it so, and the consensus rate depends on how
    many experts read a study.

    ``p_deformed`` is the fraction of the readers grading the vertebra >= 1
    (within-vertebra rule): its mean over vertebrae is the rate of the average
    single reader, which no number of readers changes.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` (optionally through :func:`sd_scores`),
        with ``vertebra_id``.
    method : {"mean", "lower_median"}

    Returns
    -------
    DataFrame
        One row per (study, vertebra_id), sorted; columns: the study keys
        (``version, file, folder, series_uid``, those present),
        ``vertebra_id``, ``level`` (first non-null), ``n_experts``,
        ``experts`` (comma-joined), ``grade`` (consensus, Int64),
        ``grade_min``, ``grade_max``, ``p_deformed``, and where present
        ``neighbour_grade`` and ``sd_grade`` (consensus, Int64, <NA> when no
        reader has a value), the means ``height_loss``, ``neighbour_loss``,
        ``sd_score``, and ``centre_row``, ``centre_slice`` (mean, voxels).
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, not {method!r}")
    _require(table, ["expert", "vertebra_id", "grade"], "consensus")
    keys = [*_study_keys(table), "vertebra_id"]
    _check_unique(table, keys, "consensus")
    grouped = table.groupby(keys, sort=True, dropna=False)
    names = table[keys].assign(_e=table["expert"].astype(str)).sort_values("_e", kind="stable")
    out = pd.DataFrame({"n_experts": grouped.size(),
                        "experts": names.groupby(keys, sort=True, dropna=False)["_e"].agg(
                            ",".join)})
    if "level" in table.columns:
        out.insert(0, "level", grouped["level"].first())
    g_float = table["grade"].astype("Float64").astype(float)
    grades = table[keys].assign(_g=g_float).groupby(keys, sort=True, dropna=False)["_g"]
    positive = table[keys].assign(_p=np.where(np.isnan(g_float), np.nan, g_float >= 1)).groupby(
        keys, sort=True, dropna=False)["_p"]
    for column, (measure, grade_fn) in _MEASURES.items():
        if column not in table.columns:
            continue
        if method == "mean":
            if measure not in table.columns:
                raise ValueError(f"consensus(method='mean') needs the column {measure!r} behind "
                                 f"{column!r}; pass a morphometry_table() table")
            mean = grouped[measure].mean()
            out[measure] = mean
            out[column] = _to_int64(grade_fn(mean.to_numpy(dtype=float)))
        else:
            out[column] = _lower_median(table, keys, column)
            if measure in table.columns:
                out[measure] = grouped[measure].mean()
    out["grade_min"] = grades.min().round().astype("Int64")
    out["grade_max"] = grades.max().round().astype("Int64")
    out["p_deformed"] = positive.mean()
    for c in ("centre_row", "centre_slice"):
        if c in table.columns:
            out[c] = grouped[c].mean()
    return out.reset_index()


def study_labels(table: pd.DataFrame, *, rule: str = "genant",
                 method: str = "mean") -> pd.DataFrame:
    """Study-level deformity labels from the per-vertebra consensus.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
        Grade column to use: the within-vertebra ``grade`` (QM, Genant's
        bands), ``neighbour_grade`` or ``sd_grade``.
    method : {"mean", "lower_median"}
        See :func:`consensus`.

    Returns
    -------
    DataFrame
        One row per study (study keys), columns ``n_vertebrae``,
        ``n_fractured`` (vertebrae with consensus grade >= 1; the name is kept
        for compatibility: these are QM deformities), ``worst_grade`` (the
        highest consensus grade, Int64), ``label_any`` (worst >= 1) and
        ``label_moderate`` (worst >= 2), booleans (<NA> when no vertebra of
        the study has a grade).
    """
    column = _grade_column(rule)
    cons = consensus(table, method=method)
    if column not in cons.columns:
        raise ValueError(f"study_labels(rule={rule!r}) needs the column {column!r}; for 'sd' "
                         "pass the table through sd_scores() first")
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


def prevalence(consensus_table: pd.DataFrame, columns: Mapping[str, str] | None = None
               ) -> pd.DataFrame:
    """Vertebra and patient prevalence of consensus grades >= 1 and >= 2, per rule.

    Parameters
    ----------
    consensus_table : DataFrame
        From :func:`consensus` (restrict the levels first, e.g. with
        :func:`label_levels`); a patient is a ``folder``.
    columns : mapping label -> grade column, optional
        Default: every one of ``grade``, ``neighbour_grade``, ``sd_grade`` present.

    Returns
    -------
    DataFrame
        One row per rule: ``vertebrae`` (with a grade), ``vertebrae_ge1``,
        ``vertebrae_ge2`` (fractions), ``patients`` (with a graded vertebra),
        ``patients_ge1``, ``patients_ge2`` (fractions with at least one).
    """
    _require(consensus_table, ["folder"], "prevalence")
    if columns is None:
        names = {"grade": "within-vertebra, Genant bands", "neighbour_grade":
                 "neighbour, Genant bands", "sd_grade": "SD score (Eastell, 3 SD)"}
        columns = {v: k for k, v in names.items() if k in consensus_table.columns}
    rows = {}
    for label, column in columns.items():
        t = consensus_table[consensus_table[column].notna()]
        g = t[column].astype(int)
        worst = g.groupby(t["folder"]).max()
        rows[label] = {"vertebrae": len(t), "vertebrae_ge1": float(np.mean(g >= 1)) if len(t)
                       else float("nan"),
                       "vertebrae_ge2": float(np.mean(g >= 2)) if len(t) else float("nan"),
                       "patients": len(worst),
                       "patients_ge1": float(np.mean(worst >= 1)) if len(worst) else float("nan"),
                       "patients_ge2": float(np.mean(worst >= 2)) if len(worst) else float("nan")}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "rule"
    return out


def keypoint_scatter(frame: pd.DataFrame, spacing) -> pd.DataFrame:
    """The experts' own scatter of corresponding keypoints, in mm, per axis.

    For every vertebra read by two or more experts (same ``vertebra_id``), the
    six points of each reading are put in a common order (pairs by row, as in
    :func:`heights`; within a pair the annotation puts the smaller slice
    first), converted to mm, and compared with the mean over the readers. The
    pooled within-vertebra SD per axis is ``sqrt(sum of squared deviations /
    (6 * (readings - vertebrae)))``: the SD of one expert's point around the
    experts' mean position, the sigma of :func:`grade_flip_rate`.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.matching.match_vertebrae` (points, ``vertebra_id``).
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats
        Voxel spacing (row, col, slice) in mm.

    Returns
    -------
    DataFrame
        One row per axis (``row``, ``col``, ``slice``): ``sd_mm``, and the
        ``vertebrae`` and ``readings`` used.
    """
    _require(frame, ["expert", "vertebra_id", *POINT_COLUMNS], "keypoint_scatter")
    pts = _as_points(frame)
    n = len(pts)
    sp = _spacing_rows(spacing, n, frame)
    pairs = pts.reshape(n, 3, 2, 3)
    order = np.argsort(pairs[:, :, :, 0].mean(axis=2), axis=1, kind="stable")
    pairs = np.take_along_axis(pairs, order[:, :, None, None], axis=1)
    mm = pairs.reshape(n, 6, 3) * sp[:, None, :]
    keys = [*_study_keys(frame), "vertebra_id"]
    group = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    size = np.bincount(group)
    multi = size[group] >= 2
    g = pd.factorize(group[multi])[0]
    x = mm[multi]
    sums = np.zeros((g.max() + 1 if len(g) else 0, 6, 3))
    np.add.at(sums, g, x)
    mean = sums / np.bincount(g)[:, None, None] if len(g) else sums
    dev = x - mean[g]
    n_v = len(np.unique(g))
    dof = 6 * (len(x) - n_v)
    sd = np.sqrt((dev ** 2).sum(axis=(0, 1)) / dof) if dof > 0 else np.full(3, np.nan)
    return pd.DataFrame({"sd_mm": sd, "vertebrae": n_v, "readings": len(x)},
                        index=pd.Index(["row", "col", "slice"], name="axis"))


# --------------------------------------------------------------------------- agreement
@dataclass(frozen=True)
class Agreement:
    """Inter-expert agreement on per-vertebra QM grades.

    Attributes
    ----------
    pairwise : DataFrame
        One row per expert pair that read common vertebrae: ``expert_a``,
        ``expert_b``, ``n_vertebrae``, ``n_studies``, ``kappa`` (Cohen's,
        linearly weighted over grades 0..3; NaN when undefined), ``exact``
        (fraction with equal grades), and with a bootstrap ``ci_low``,
        ``ci_high``.
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


def _wide(table: pd.DataFrame, column: str, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Units (study, vertebra_id) x experts table of ``column`` and the units' folders."""
    _require(table, ["expert", "vertebra_id", column], what)
    keys = [*_study_keys(table), "vertebra_id"]
    _check_unique(table, keys, what)
    values = table[[*keys, "expert"]].assign(_v=table[column].astype("Float64").astype(float)
                                             if str(table[column].dtype) == "Int64"
                                             else table[column].astype(float))
    values = values[values["_v"].notna()]
    wide = values.set_index([*keys, "expert"])["_v"].unstack("expert")
    folders = wide.index.get_level_values("folder").to_numpy() if "folder" in keys else \
        wide.index.get_level_values(keys[0]).to_numpy()
    return wide, folders


def agreement(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = 0,
              seed: int = 0) -> Agreement:
    """Agreement of the experts' QM grades on the vertebrae they read in common.

    What it measures: the reproducibility of the experts' *keypoints* as seen
    through a grading rule, not agreement of visual (SQ) fracture grades,
    which the annotation does not hold.

    Pairwise Cohen's kappa uses linear weights over the grade scale 0..3
    (:func:`vfs_utils.agreement.cohen_kappa`, equal to
    :func:`sklearn.metrics.cohen_kappa_score` with ``weights="linear"`` and
    ``labels=[0, 1, 2, 3]``). Fleiss' kappa (unweighted, nominal) needs a
    common number of raters per item, so it is computed over the vertebrae
    with the most common number of raters (>= 2) only; it is not comparable
    with the weighted pairwise kappas. Krippendorff's alpha
    (:func:`agreement_statistics`) has neither restriction.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
        Which grade column to compare.
    n_boot : int
        When > 0, add ``ci_low``, ``ci_high`` to the pairwise table: 95 %
        percentile bootstrap intervals of each kappa, resampling studies.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Agreement
    """
    column = _grade_column(rule)
    wide, folders = _wide(table, column, "agreement")
    values = wide.to_numpy(dtype=float)
    experts = list(wide.columns)

    rows = []
    for a, b in itertools.combinations(range(len(experts)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        if not both.any():
            continue
        ga, gb = values[both, a], values[both, b]

        def kappa(idx, ga=ga, gb=gb):
            return _stats.cohen_kappa(ga[idx], gb[idx], categories=GRADES if column != "sd_grade"
                                      else (0, 1, 2), weights="linear")

        row = {"expert_a": experts[a], "expert_b": experts[b], "n_vertebrae": int(both.sum()),
               "n_studies": int(len(np.unique(folders[both]))),
               "kappa": kappa(np.arange(len(ga))), "exact": float(np.mean(ga == gb))}
        if n_boot > 0:
            _, row["ci_low"], row["ci_high"] = _stats.bootstrap_groups(
                kappa, folders[both], n_boot=n_boot, seed=seed)
        rows.append(row)
    columns = ["expert_a", "expert_b", "n_vertebrae", "n_studies", "kappa", "exact"]
    pairwise = pd.DataFrame(rows, columns=columns + (["ci_low", "ci_high"] if n_boot > 0 else []))

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


def agreement_statistics(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = 200,
                         seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha of the grades and of the continuous measure, with intervals.

    Alpha uses every vertebra read by two or more experts, whatever their
    number (missing readers are allowed), so it needs no restriction to
    3-reader vertebrae. Three versions: the grades as ordinal and as nominal
    categories, and the continuous measure behind the rule (``height_loss``,
    ``neighbour_loss`` or ``sd_score``) with the interval metric. The 95 %
    intervals are percentile bootstraps over studies
    (:func:`vfs_utils.agreement.bootstrap_groups`).

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` (and :func:`sd_scores` for ``"sd"``),
        with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
    n_boot : int
        Bootstrap resamples (0: no interval).
    seed : int

    Returns
    -------
    DataFrame
        Index ``statistic``; columns ``estimate``, ``ci_low``, ``ci_high``,
        ``vertebrae`` (with >= 2 readers), ``studies``.
    """
    column = _grade_column(rule)
    measure = _MEASURES[column][0]
    cats = GRADES if column != "sd_grade" else (0, 1, 2)
    rows = {}
    for label, col, level in ((f"alpha, ordinal {column}", column, "ordinal"),
                              (f"alpha, nominal {column}", column, "nominal"),
                              (f"alpha, interval {measure}", measure, "interval")):
        wide, folders = _wide(table, col, "agreement_statistics")
        x = wide.to_numpy(dtype=float)
        keep = np.sum(~np.isnan(x), axis=1) >= 2
        x, folders = x[keep], folders[keep]

        def alpha(idx, x=x, level=level):
            return _stats.krippendorff_alpha(x[idx].T, level, categories=None
                                             if level == "interval" else cats)

        if n_boot > 0:
            est, low, high = _stats.bootstrap_groups(alpha, folders, n_boot=n_boot, seed=seed)
        else:
            est, low, high = alpha(np.arange(len(x))), float("nan"), float("nan")
        rows[label] = {"estimate": est, "ci_low": low, "ci_high": high, "vertebrae": len(x),
                       "studies": int(len(np.unique(folders)))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "statistic"
    return out


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
    """How often keypoint noise changes the within-vertebra QM grade (Genant's bands).

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

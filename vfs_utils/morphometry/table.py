"""The morphometry table (heights, indices and QM grades per reading) and the voxel
spacing of every study from its headers."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .. import matching
from .._fs import check_spacing, dicom_root
from .._parallel import map_ordered
from ..annotation import POINT_COLUMNS
from ..errors import DataNotFoundError, SeriesError
from ._inputs import as_points, require_columns, rows_flipped, spacing_rows, study_keys
from .grading import (
    GRADE_THRESHOLDS,
    GRADE_TOLERANCE,
    deformity_names,
    grade_codes,
    pair_heights,
    to_int64,
    within_loss,
)

__all__ = [
    "dataset_spacing",
    "morphometry_table",
]


#: Columns carried from the frame into the morphometry table, when present.
_CARRIED: tuple[str, ...] = ("file", "folder", "series_uid", "version", "expert", "vertebra",
                             "level", "vertebra_id")


def _series_spacings(root, pairs, executor) -> np.ndarray:
    """(n, 3) header spacings of the (folder, series_uid) pairs, checked usable."""
    folders = [f for f, _ in pairs]
    uids = [u for _, u in pairs]
    roots = [root] * len(pairs)
    found = map_ordered(matching.series_spacing, roots, folders, uids, executor=executor)
    table = np.asarray(found, dtype=float).reshape(len(pairs), 3)
    for (folder, uid), sp in zip(pairs, table):
        if not (np.isfinite(sp).all() and (sp > 0).all()):
            raise SeriesError(f"{os.fspath(root)}: series {uid} of folder {folder} has no usable "
                              f"spacing {tuple(sp)} (one slice, or missing PixelSpacing); remove "
                              "its readings from the frame or pass spacing= explicitly")
    return table


def _root_spacing(frame: pd.DataFrame, root, executor=None) -> np.ndarray:
    require_columns(frame, ["folder", "series_uid"], "morphometry_table(root=...)")
    pairs = pd.MultiIndex.from_frame(frame[["folder", "series_uid"]].astype(str))
    uniq = pairs.unique()
    table = _series_spacings(root, list(uniq), executor)
    return table[uniq.get_indexer(pairs)]


def dataset_spacing(frame: pd.DataFrame, root, *, default=None,
                    executor=None) -> dict[str, tuple[float, float, float]]:
    """Voxel spacing of every study of a frame, from the headers of the studies present.

    A folder without images (a partial download) gets ``default``. The result is the
    ``spacing=`` mapping of :func:`morphometry_table`.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (``folder``, ``series_uid``).
    root : path-like
        Dataset root holding ``dicom/<Folder>/...``.
    default : sequence of 3 floats, optional
        Spacing (row, col, slice) in mm for studies without images; without it an
        absent study is an error.
    executor : concurrent.futures.Executor, optional
        Runs the header scans in parallel.

    Returns
    -------
    dict
        Folder name -> (row, col, slice) spacing in mm.

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
    require_columns(frame, ["folder", "series_uid"], "dataset_spacing")
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
    """Mean of the previous and next row of the same reading; NaN without both."""
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

    QM **deformity** grades from the expert keypoints, not SQ fracture grades.

    Within-vertebra rule (``height_loss``, ``grade``, ``deformity``)
        ``1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)`` in Genant's bands (:func:`genant_grade`);
        blind to a uniformly flattened vertebra.
    Neighbour rule (``expected_height``, ``neighbour_loss``, ``neighbour_grade``, \
``neighbour_deformity``)
        ``1 - min_k (H_k / mean H_k of the vertebrae above and below)``, same bands; NaN
        at the ends of a reading. A teaching simplification of McCloskey et al. (1993).

    The smallest height (or neighbour ratio) names the deformity (``"wedge"``,
    ``"biconcave"``, ``"crush"``; ``"normal"`` at grade 0); all three heights reduced
    by >= 20 % against the neighbours is ``"crush"``. SD scores: :func:`sd_scores`.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (``vertebra_id`` is kept).
    root : path-like, optional
        A dataset root: spacing from each series' headers.
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats, optional
        Voxel spacing (row, col, slice) in mm instead of ``root``.
    orientation : see :func:`heights`, optional
    executor : concurrent.futures.Executor, optional
        With ``root``: runs the header scans in parallel.

    Returns
    -------
    DataFrame
        One row per reading, the frame's index: the frame's ``file, folder,
        series_uid, version, expert, vertebra, level, vertebra_id`` (those present);
        ``ha, hm, hp`` (mm); ``wedge_index`` (Ha/Hp), ``biconcave_index`` (Hm/Hp),
        ``biconcave_index_anterior`` (Hm/Ha), ``crush_index`` (Hp over the neighbours'
        mean Hp); ``height_loss``, ``grade``, ``deformity``; ``expected_height``,
        ``neighbour_loss``, ``neighbour_grade``, ``neighbour_deformity``;
        ``centre_row, centre_col, centre_slice`` (voxels).

    Raises
    ------
    TypeError
        Neither or both of ``root`` and ``spacing`` given.
    ValueError
        Missing columns or an unusable spacing/orientation.
    SeriesError, DataNotFoundError
        With ``root``: a series cannot be found or has no usable spacing.
    """
    require_columns(frame, ["folder", "expert", "vertebra", *POINT_COLUMNS], "morphometry_table")
    if (root is None) == (spacing is None):
        raise TypeError("morphometry_table needs exactly one of root= (a dataset root: spacing "
                        "from the DICOM headers) or spacing= (row, col, slice) in mm")
    n = len(frame)
    sp = (_root_spacing(frame, root, executor) if root is not None
          else spacing_rows(spacing, n, frame))
    pts = as_points(frame)
    h = pair_heights(pts, sp, rows_flipped(orientation, n, frame))
    ha, hm, hp = h.T

    out = frame[[c for c in _CARRIED if c in frame.columns]].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ha"], out["hm"], out["hp"] = ha, hm, hp
        out["wedge_index"] = ha / hp
        out["biconcave_index"] = hm / hp
        out["biconcave_index_anterior"] = hm / ha

    reading = frame.groupby([*study_keys(frame), "expert"], sort=False,
                            dropna=False).ngroup().to_numpy()
    order = np.lexsort((frame["vertebra"].to_numpy(), reading))
    ref = np.empty_like(h)
    ref[order] = _adjacent_mean(h[order], reading[order])

    loss = within_loss(h)
    codes = grade_codes(loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["crush_index"] = hp / ref[:, 2]
        rel = h / ref                                               # H_k / neighbours' H_k
        n_loss = 1.0 - rel.min(axis=1)
        all_reduced = 1.0 - rel.max(axis=1) >= GRADE_THRESHOLDS[0] - GRADE_TOLERANCE
    n_loss = np.where(np.isfinite(n_loss), n_loss, np.nan)
    n_codes = grade_codes(n_loss)
    expected = ref[:, 2]

    out["height_loss"] = loss
    out["grade"] = to_int64(codes)
    out["deformity"] = pd.Series(deformity_names(h, codes), index=out.index, dtype=object)
    out["expected_height"] = expected
    out["neighbour_loss"] = n_loss
    out["neighbour_grade"] = to_int64(n_codes)
    out["neighbour_deformity"] = pd.Series(deformity_names(np.where(np.isfinite(rel), rel, np.nan),
                                                      n_codes, all_reduced),
                                           index=out.index, dtype=object)
    centre = pts.mean(axis=1)
    out["centre_row"], out["centre_col"], out["centre_slice"] = centre.T
    return out

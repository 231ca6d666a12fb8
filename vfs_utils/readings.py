"""Readings across experts: which readings of different experts (or of the v1 and v2
rounds) are the same vertebra, where a file's vertebrae are (centres, sagittal columns).
Tables only: no image, no series."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from .annotation import LEVELS, MAX_COORDINATE, POINT_COLUMNS, points
from .errors import AnnotationError, UsageError

__all__ = ["carry_levels", "match_vertebrae", "sagittal_column", "vertebra_centres",
           "vertebra_columns"]


def _checked_points(frame: pd.DataFrame, what: str = "frame") -> np.ndarray:
    """The (n, 6, 3) points of a frame, checked to be voxel indices within the sanity bound."""
    if not isinstance(frame, pd.DataFrame):
        raise UsageError(f"{what}: expected a DataFrame from annotation.read_annotations, got "
                         f"{type(frame).__name__}")
    missing = [c for c in POINT_COLUMNS + ["file", "expert"] if c not in frame.columns]
    if missing:
        raise UsageError(f"{what}: lacks the columns {missing[:3]}; build it with "
                         "annotation.read_annotations().")
    try:
        pts = points(frame)
    except (TypeError, ValueError):
        pts = None
    ok = pts is not None and np.isfinite(pts) & (np.abs(pts) <= MAX_COORDINATE)
    if pts is None or not np.all(ok):
        bad = (frame.index[0] if pts is None
               else frame.index[int(np.flatnonzero(~np.all(ok, axis=(1, 2)))[0])])
        raise AnnotationError(f"{frame.at[bad, 'file']}: expert {frame.at[bad, 'expert']}: a "
                              f"point coordinate is not a number within +-{MAX_COORDINATE:g} "
                              f"voxels (row of the frame: {bad}). Fix the file or the frame.")
    return pts


def _check_levels(frame: pd.DataFrame) -> None:
    levels = frame["level"] if "level" in frame.columns else None
    if levels is None:
        return
    bad = levels.notna() & ~levels.isin(LEVELS)
    if bad.any():
        i = frame.index[bad.to_numpy()][0]
        raise AnnotationError(f"{frame.at[i, 'file']}: expert {frame.at[i, 'expert']}: unknown "
                              f"level {frame.at[i, 'level']!r}; expected one of C1..S1.")


def _centres(frame: pd.DataFrame) -> np.ndarray:
    """(n, 2) vertebral-body centres in (row, slice) voxel units."""
    return points(frame)[:, :, [0, 2]].mean(axis=1)


def _tolerance(frame: pd.DataFrame) -> float:
    """Half the median posterior height (voxels): centres closer than this are one vertebra."""
    pts = points(frame)
    hp = np.linalg.norm(pts[:, 5, [0, 2]] - pts[:, 4, [0, 2]], axis=1)
    return 0.5 * float(np.median(hp)) if len(hp) else 0.0


def _assign(ref: np.ndarray, new: np.ndarray, tol: float) -> np.ndarray:
    """Index into ``ref`` for each row of ``new`` (one-to-one), -1 where none is within tol."""
    out = np.full(len(new), -1)
    if len(ref) == 0 or len(new) == 0:
        return out
    cost = np.linalg.norm(new[:, None, :] - ref[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    keep = cost[rows, cols] <= tol
    out[rows[keep]] = cols[keep]
    return out


def _match_positions(group: pd.DataFrame) -> np.ndarray:
    """Cluster one file's readings by centre; returns a cluster label per row."""
    centres = _centres(group)
    tol = _tolerance(group)
    labels = np.full(len(group), -1)
    clusters: list[list[np.ndarray]] = []
    experts = group["expert"].to_numpy()
    order = sorted(pd.unique(experts), key=lambda e: (-(experts == e).sum(), e))
    for expert in order:
        idx = np.flatnonzero(experts == expert)
        ref = np.array([np.mean(c, axis=0) for c in clusters]).reshape(-1, 2)
        hit = _assign(ref, centres[idx], tol)
        for i, h in zip(idx, hit):
            if h < 0:
                clusters.append([centres[i]])
                labels[i] = len(clusters) - 1
            else:
                clusters[h].append(centres[i])
                labels[i] = h
    mean_slice = np.array([np.mean(c, axis=0)[1] for c in clusters])
    rank = np.empty(len(clusters), dtype=int)
    rank[np.argsort(mean_slice, kind="stable")] = np.arange(len(clusters))
    return rank[labels]


def match_vertebrae(frame: pd.DataFrame) -> pd.DataFrame:
    """Say which readings of different experts are the same vertebra.

    Within each file (and version), readings get a common ``vertebra_id``: the index in
    :data:`~vfs_utils.annotation.LEVELS` when every reading has a level (v2), else a
    position index head -> feet from one-to-one matching of body centres (row, slice)
    closer than half the median posterior height (v1).

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations`.

    Returns
    -------
    DataFrame
        A copy with an integer column ``vertebra_id``.
    """
    _checked_points(frame)
    _check_levels(frame)
    out = frame.copy()
    ids = np.zeros(len(out), dtype=np.int64)
    keys = ["file", "version"] if "version" in out.columns else ["file"]
    for _, idx in out.groupby(keys, sort=False).indices.items():
        group = out.iloc[idx]
        levels = group["level"]
        if levels.notna().all():
            ids[idx] = [LEVELS.index(level) for level in levels]
            twice = group.assign(_id=ids[idx]).duplicated(["expert", "_id"])
            if twice.any():
                row = group[twice.to_numpy()].iloc[0]
                raise AnnotationError(f"{row['file']}: expert {row['expert']} marks level "
                                      f"{row['level']} twice; an expert marks each vertebra once. "
                                      "Remove the duplicate reading.")
        else:
            ids[idx] = _match_positions(group)
    out["vertebra_id"] = ids
    return out


def carry_levels(v1_frame: pd.DataFrame, v2_frame: pd.DataFrame) -> pd.DataFrame:
    """Give v1 readings the level of the v2 vertebra at the same place.

    Per file and v1 expert, one-to-one matching of centres to the per-level v2 centres,
    within half the median posterior height; unmatched readings keep ``None``.

    Parameters
    ----------
    v1_frame, v2_frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations`.

    Returns
    -------
    DataFrame
        A copy of ``v1_frame`` with ``level`` filled in.
    """
    _checked_points(v1_frame, "v1_frame")
    _checked_points(v2_frame, "v2_frame")
    if "level" not in v2_frame.columns:
        raise UsageError("v2_frame: has no level column; pass a frame read from the v2 "
                         "annotation set with annotation.read_annotations().")
    _check_levels(v2_frame)
    out = v1_frame.copy()
    levels = out["level"].to_numpy(dtype=object).copy()
    v2_by_folder = dict(tuple(v2_frame.groupby("folder", sort=False)))
    for (folder, _), idx in out.groupby(["folder", "expert"], sort=False).indices.items():
        v2 = v2_by_folder.get(folder)
        if v2 is None:
            continue
        per_level = pd.DataFrame(_centres(v2), columns=["row", "slice"]).groupby(
            v2["level"].to_numpy()).mean()
        group = out.iloc[idx]
        tol = _tolerance(pd.concat([group, v2]))
        hit = _assign(per_level.to_numpy(), _centres(group), tol)
        names = per_level.index.to_numpy()
        levels[idx] = [names[h] if h >= 0 else None for h in hit]
    out["level"] = pd.Series(levels, index=out.index, dtype=object)
    return out


def one_file(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if len(frame) == 0:
        raise ValueError(f"{what}: the frame has no readings; select a file with readings, "
                         "e.g. frame[frame['file'] == name].")
    if "file" in frame.columns:
        files = pd.unique(frame["file"])
        if len(files) > 1:
            raise ValueError(f"{what}: the frame holds readings of {len(files)} files "
                             f"({', '.join(map(str, files[:3]))}...); the readings of one image "
                             "are drawn at a time: select one with frame[frame['file'] == name].")
    return frame


def sagittal_column(frame: pd.DataFrame) -> int:
    """The rounded mean ``column`` of one file's readings: one slice showing them all roughly.

    Each vertebra was drawn on its own column (:func:`vertebra_columns`).
    """
    one_file(frame, "sagittal_column")
    return int(round(float(frame["column"].mean())))


def vertebra_columns(frame: pd.DataFrame) -> pd.Series:
    """The sagittal column (rounded ``column``, int64) each reading was drawn on."""
    return frame["column"].round().astype("int64").rename("column")


def vertebra_centres(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per vertebra of a file: its centre averaged over the experts.

    Returns
    -------
    DataFrame
        ``vertebra_id`` (:func:`match_vertebrae`), ``level`` (None
        in v1), ``row``, ``col``, ``slice`` (voxels), ``n_readings``; head -> feet.
    """
    one_file(frame, "vertebra_centres")
    matched = match_vertebrae(frame)
    centre = points(matched).mean(axis=1)
    table = pd.DataFrame({"vertebra_id": matched["vertebra_id"].to_numpy(),
                          "level": matched["level"].to_numpy(dtype=object),
                          "row": centre[:, 0], "col": centre[:, 1], "slice": centre[:, 2]})
    out = table.groupby("vertebra_id", sort=True).agg(
        level=("level", lambda s: s.dropna().mode().iloc[0] if s.notna().any() else None),
        row=("row", "mean"), col=("col", "mean"), slice=("slice", "mean"),
        n_readings=("row", "size"))
    out = out.reset_index().sort_values("slice", kind="stable").reset_index(drop=True)
    out["level"] = out["level"].astype(object).where(out["level"].notna(), None)
    return out

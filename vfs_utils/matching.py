"""Annotations meet series: match, inventory, and vertebrae across readings.

An annotation file names a study folder (``Folder``) and one series in it
(``SeriesInstanceUID``); a study folder holds several series (the thin-slice
one that was annotated, thicker reconstructions, localizers). These functions
find that series, check a whole dataset at once, and say which readings of
different experts (or of the v1 and v2 rounds) are the same vertebra.
"""
from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from ._fs import dicom_root, folder_name_problem, study_dir
from ._parallel import map_ordered
from .annotation import LEVELS, MAX_COORDINATE, POINT_COLUMNS, Annotation, load_annotation, points
from .dicom import scan
from .errors import AnnotationError, DataNotFoundError, SeriesError, UsageError, VfsError

__all__ = [
    "carry_levels",
    "inventory",
    "match",
    "match_vertebrae",
    "series_spacing",
    "study_folder",
]

_REISSUE_NOTE = ("Upstream re-issued the SeriesInstanceUIDs in February 2021: an annotation "
                 "and an image download from different sides of that date do not match; "
                 "use current copies of both.")


def study_folder(dataset_root: str | os.PathLike, folder: str) -> Path:
    """``<dataset_root>/dicom/<folder>``, checked to exist.

    ``folder`` must be a plain folder name (no path separators, ``..``, absolute
    paths, or more than 255 bytes): it is joined to ``<dataset_root>/dicom/``.

    Raises
    ------
    DataNotFoundError
        When the dataset root or the study folder is missing.
    UsageError
        When ``folder`` is not a plain folder name.
    """
    _check_folder(folder, f"study folder name under {Path(dataset_root) / 'dicom'}")
    return study_dir(dataset_root, folder)


def _check_folder(folder, where: str) -> str:
    problem = folder_name_problem(folder)
    if problem is not None:
        raise UsageError(f"{where}: {problem}. Pass the Folder value of an annotation file.")
    return folder


def _scan(path: Path) -> pd.DataFrame:
    try:
        return scan(path)
    except (OSError, DataNotFoundError) as exc:
        raise SeriesError(f"{path}: the study folder cannot be read ({exc}). "
                          "Check its permissions.") from None


def _describe(table: pd.DataFrame) -> str:
    rows = [f"{r.series_uid} ({r.n_slices} slices, {r.description or 'no description'})"
            for r in table.itertuples()]
    return "; ".join(rows) if rows else "no DICOM series"


def _missing_series(source, uid: str, path: Path, table: pd.DataFrame) -> SeriesError:
    if table.empty:     # nothing to mismatch: the UID re-issue is not the story here
        return SeriesError(f"{source}: {path} holds no DICOM series, so SeriesInstanceUID {uid} "
                           "cannot be found there. The study download is incomplete or not "
                           "DICOM; download the study again.")
    return SeriesError(f"{source}: SeriesInstanceUID {uid} is not in {path}; the folder holds "
                       f"{_describe(table)}. {_REISSUE_NOTE}")


def match(annotation: Annotation | str | os.PathLike, dataset_root: str | os.PathLike
          ) -> pd.Series:
    """The series of a dataset that an annotation belongs to.

    Parameters
    ----------
    annotation : Annotation or path-like
    dataset_root : path-like
        Folder holding ``dicom/<Folder>/...``.

    Returns
    -------
    Series
        The :func:`vfs_utils.dicom.scan` row of the matching series (has
        ``study_folder``, ``n_slices``, ``pixel_spacing``, ``slice_spacing``...).

    Raises
    ------
    DataNotFoundError
        When the study folder is missing.
    SeriesError
        When no series of the folder has the annotation's SeriesInstanceUID.
    """
    ann = annotation if isinstance(annotation, Annotation) else load_annotation(annotation)
    source = ann.path or ann.folder
    problem = folder_name_problem(ann.folder)
    if problem is not None:
        raise AnnotationError(f"{source}: Folder: {problem}.")
    path = study_dir(dataset_root, ann.folder)     # its message names the missing folder
    table = _scan(path)
    hit = table[table["series_uid"] == ann.series_uid]
    if hit.empty:
        raise _missing_series(source, ann.series_uid, path, table)
    return hit.iloc[0]


def series_spacing(dataset_root: str | os.PathLike, folder: str, series_uid: str
                   ) -> tuple[float, float, float]:
    """Voxel spacing (row, col, slice) in mm of one series, from its headers only.

    Raises
    ------
    UsageError
        When ``folder`` is not a plain folder name or ``series_uid`` not a string.
    DataNotFoundError, SeriesError
        When the study folder or the series is missing.
    """
    path = study_folder(dataset_root, folder)
    if not isinstance(series_uid, str) or not series_uid.strip():
        raise UsageError(f"series_uid: expected a SeriesInstanceUID string, got {series_uid!r}")
    table = _scan(path)
    hit = table[table["series_uid"] == series_uid]
    if hit.empty:
        raise _missing_series(path, series_uid, path, table)
    row = hit.iloc[0]
    dr, dc = row["pixel_spacing"]
    return float(dr), float(dc), float(row["slice_spacing"])


def _inventory_row(file: Path, root: Path) -> dict:
    out = {"file": file.name, "folder": None, "series_uid": None, "folder_found": False,
           "series_found": False, "n_slices": 0, "points_inside": False, "experts": "",
           "vertebrae": "", "ok": False, "problem": ""}
    try:
        ann = load_annotation(file)
    except VfsError as exc:
        out["problem"] = str(exc)
        return out
    out.update(folder=ann.folder, series_uid=ann.series_uid, experts=" ".join(ann.experts),
               vertebrae=" ".join(f"{e}:{n}" for e, n in ann.n_vertebrae.items()))
    try:
        row = match(ann, root)
    except (DataNotFoundError, AnnotationError) as exc:
        out["problem"] = str(exc)
        return out
    except SeriesError as exc:
        out.update(folder_found=True, problem=str(exc))
        return out
    out.update(folder_found=True, series_found=True, n_slices=int(row["n_slices"]))
    shape = np.array([row["rows"], row["cols"], row["n_slices"]], dtype=float)
    pts = np.concatenate([np.stack([v.points for v in vs]) for vs in ann.experts.values()])
    outside = ~((pts >= 0) & (pts <= shape - 1)).all(axis=2)
    out["points_inside"] = not outside.any()
    if outside.any():
        out["problem"] = (f"{int(outside.sum())} points lie outside the volume of shape "
                          f"{tuple(int(s) for s in shape)} (rows, cols, slices)")
    out["ok"] = out["points_inside"]
    return out


def inventory(dataset_root: str | os.PathLike, annotation_dir: str | os.PathLike | None = None,
              *, executor: Executor | None = None) -> pd.DataFrame:
    """Check every annotation file against a dataset: one row per file.

    Parameters
    ----------
    dataset_root : path-like
        Folder holding ``dicom/<Folder>/...``.
    annotation_dir : path-like, optional
        Folder of annotation files. Default: ``<dataset_root>/annotation`` when
        it exists, else the configured v1 set (:func:`vfs_utils.data.annotation_dir`).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Runs the per-file checks (header scans) in parallel, e.g. a
        ``ThreadPoolExecutor`` or a Dask ``Client``.

    Returns
    -------
    DataFrame
        Columns ``file, folder, series_uid, folder_found, series_found,
        n_slices, points_inside, experts, vertebrae, ok, problem``; ``ok`` is
        True when the series is found and every annotated point lies inside it.
    """
    root = Path(dataset_root)
    dicom_root(root)
    if annotation_dir is None:
        from .data import annotation_dir as configured

        local = root / "annotation"
        annotation_dir = local if local.is_dir() else configured("v1")
    folder = Path(annotation_dir)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such annotation folder. Pass the folder of "
                                "<Folder>.json files (see `vfs fetch`).")
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise DataNotFoundError(f"{folder}: no *.json annotation files.")
    rows = map_ordered(_inventory_row, files, [root] * len(files), executor=executor)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- vertebrae
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
    pts = points(frame)
    return pts[:, :, [0, 2]].mean(axis=1)


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
    # renumber clusters head -> feet
    mean_slice = np.array([np.mean(c, axis=0)[1] for c in clusters])
    rank = np.empty(len(clusters), dtype=int)
    rank[np.argsort(mean_slice, kind="stable")] = np.arange(len(clusters))
    return rank[labels]


def match_vertebrae(frame: pd.DataFrame) -> pd.DataFrame:
    """Say which readings of different experts are the same vertebra.

    Within each annotation file (and version), readings get a common ``vertebra_id``: the
    index of the level in :data:`~vfs_utils.annotation.LEVELS` when every
    reading has a level (v2), otherwise a position index head -> feet found by
    one-to-one matching of vertebral-body centres (row, slice) across experts
    (v1), two centres being one vertebra when they are closer than half the
    median posterior height.

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

    For each file and each v1 expert, v1 vertebrae are matched one-to-one to
    the v2 vertebrae of the same file (centres averaged over the v2 experts per
    level) within half the median posterior height. Unmatched readings keep
    ``None``.

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

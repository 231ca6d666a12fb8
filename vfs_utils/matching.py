"""Annotations meet series: the series of a study folder an annotation belongs to (a study
holds several: the annotated thin series, thicker reconstructions, localizers), and a
check of a whole dataset."""
from __future__ import annotations

import os
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd

from ._fs import dicom_root, folder_name_problem, study_dir
from ._fs import study_dir as study_folder
from ._parallel import map_ordered
from .annotation import Annotation, load_annotation
from .data import annotation_dir as configured_annotation_dir
from .dicom import scan
from .dicom._common import REISSUE_NOTE
from .errors import AnnotationError, DataNotFoundError, SeriesError, UsageError, VfsError

__all__ = ["inventory", "match", "series_spacing", "study_folder"]


def _series_row(source, uid: str, path: Path) -> pd.Series:
    """The scan row of series `uid` in study folder `path`; errors name `source`."""
    try:
        table = scan(path)
    except (OSError, DataNotFoundError) as exc:
        raise SeriesError(f"{path}: the study folder cannot be read ({exc}). "
                          "Check its permissions.") from None
    hit = table[table["series_uid"] == uid]
    if not hit.empty:
        return hit.iloc[0]
    if table.empty:     # nothing to mismatch: the UID re-issue is not the story here
        raise SeriesError(f"{source}: {path} holds no DICOM series, so SeriesInstanceUID {uid} "
                          "cannot be found there. The study download is incomplete or not "
                          "DICOM; download the study again.")
    held = "; ".join(f"{r.series_uid} ({r.n_slices} slices, {r.description or 'no description'})"
                     for r in table.itertuples())
    raise SeriesError(f"{source}: SeriesInstanceUID {uid} is not in {path}; the folder holds "
                      f"{held}. {REISSUE_NOTE}")


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
        The :func:`vfs_utils.dicom.scan` row of the matching series.

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
    return _series_row(source, ann.series_uid, path)


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
    path = study_dir(dataset_root, folder)
    if not isinstance(series_uid, str) or not series_uid.strip():
        raise UsageError(f"series_uid: expected a SeriesInstanceUID string, got {series_uid!r}")
    row = _series_row(path, series_uid, path)
    if row["pixel_spacing"] is None:
        raise SeriesError(f"{path}: series {series_uid}: header field PixelSpacing is missing or "
                          "empty, so its voxel spacing is unknown. Check the files of the series.")
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
        Runs the per-file checks in parallel.

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
        local = root / "annotation"
        annotation_dir = local if local.is_dir() else configured_annotation_dir("v1")
    folder = Path(annotation_dir)
    if not folder.is_dir():
        raise DataNotFoundError(f"{folder}: no such annotation folder. Pass the folder of "
                                "<Folder>.json files (see `vfs fetch`).")
    files = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
    if not files:
        raise DataNotFoundError(f"{folder}: no *.json annotation files.")
    rows = map_ordered(_inventory_row, files, [root] * len(files), executor=executor)
    return pd.DataFrame(rows)

"""``scan``: one row per series under a study folder, a folder of studies or a dataset root."""
from __future__ import annotations

import os
import stat
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd

from .._parallel import map_ordered
from ..errors import DataNotFoundError
from ._common import SCAN_COLUMNS, as_tuple, slice_spacing
from ._files import inside, read_record, walk
from .index import folder_listing

__all__ = ["scan"]

_SCAN_FIELDS = ("path", "study_uid", "series_uid", "instance", "modality", "description",
                "image_type", "orientation", "position", "pixel_spacing", "rows", "cols",
                "series_number")


def _summary(records: list[dict], base: Path) -> tuple[list[dict], int, list[str]]:
    """Image records (scan's fields only), the count of skipped files and the problems."""
    images, skipped, problems = [], 0, []
    for rec in records:
        if rec["status"] == "image":
            images.append({k: rec[k] for k in _SCAN_FIELDS})
        else:
            skipped += 1
            if rec["status"] == "broken":
                problems.append(f"{base / rec['path']}: {rec['reason']}")
    return images, skipped, problems


def _study_task(folder: str, index: bool | None) -> tuple[list[dict], int, list[str]]:
    """The header summary of one study folder (one task of :func:`scan`)."""
    listing = folder_listing(folder, index=index)
    images, skipped, problems = _summary(listing["records"], Path(folder))
    problems += [f"{path}: {why}" for path, why in listing["problems"]]
    return images, skipped + listing["skipped"] + len(listing["problems"]), problems


def _series_rows(records: list[dict], folder: str, study_folder: Path) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for rec in records:
        groups.setdefault(rec["series_uid"], []).append(rec)
    rows = []
    for uid, recs in groups.items():
        recs.sort(key=lambda r: (r["instance"] is None, r["instance"] or 0, r["path"]))
        first = recs[0]
        spacing = float("nan")
        if first["orientation"] is not None and all(r["position"] is not None for r in recs):
            spacing = slice_spacing(np.array([r["position"] for r in recs]), first["orientation"])
        rows.append({
            "folder": folder,
            "study_folder": str(study_folder),
            "series_uid": uid,
            "n_slices": len(recs),
            "modality": first["modality"],
            "description": first["description"],
            "image_type": first["image_type"],
            "orientation": as_tuple(first["orientation"]),
            "pixel_spacing": as_tuple(first["pixel_spacing"]),
            "slice_spacing": spacing,
            "rows": first["rows"],
            "cols": first["cols"],
            "series_number": first["series_number"],
        })
    return rows


def _hidden_files(folder: Path) -> int:
    files, skipped, _ = walk(folder)
    return len(files) + skipped


def scan(path: str | os.PathLike, *, executor: Executor | None = None,
         index: bool | None = None) -> pd.DataFrame:
    """List the DICOM series under a study folder, a folder of studies or a dataset root.

    Headers only, through the series index. `path` is one study folder when it directly
    holds images or all images below it share one StudyInstanceUID, else a folder of
    study folders; a dataset root holds ``dicom/<Folder>/...``.

    Parameters
    ----------
    path : path-like
        A dataset root, a folder of study folders or a study folder.
    executor : concurrent.futures.Executor, optional
        Runs one task per study folder; None reads serially. The result is the same.
    index : bool, optional
        False bypasses the series index; None (default) uses it unless ``VFS_NO_INDEX=1``.

    Returns
    -------
    pandas.DataFrame
        One row per series, columns :data:`SCAN_COLUMNS` (``slice_spacing``: mm along the
        normal, NaN for one slice), sorted by folder, series_number, series_uid.
        ``attrs["skipped_files"]`` counts unusable files and unreadable folders;
        ``attrs["problems"]`` lists them as ``"<path>: <reason>"``.

    Raises
    ------
    DataNotFoundError
        When `path` is not an existing folder.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataNotFoundError(
            f"{root}: no such folder; scan() needs a study folder or a dataset root "
            "(a folder holding dicom/<Folder>/...). Check the path or VFS_DATA_ROOT."
        )
    dataset_root = (root / "dicom").is_dir()
    base = root / "dicom" if dataset_root else root
    try:
        entries = sorted(base.iterdir())
    except OSError as exc:
        raise DataNotFoundError(f"{base}: cannot list the folder ({exc}); check its "
                                "permissions.") from exc
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    real_base = os.path.realpath(base)  # a link to a folder under base was read there already
    units = [p for p in folders
             if not (p.is_symlink() and inside(os.path.realpath(p), real_base))]
    skipped = len(folders) - len(units)  # second paths to folders read anyway: counted once
    for p in entries:
        if p.name.startswith("."):
            skipped += _hidden_files(p) if p.is_dir() else 1
    top_files = [p for p in entries if not p.name.startswith(".") and not p.is_dir()]
    top_records: list[dict] = []
    problems: list[str] = []
    if dataset_root:
        skipped += len(top_files)  # files lying in dicom/ belong to no study folder
    else:
        for p in top_files:
            try:
                st = p.stat()
            except OSError:
                skipped += 1
                continue
            if not stat.S_ISREG(st.st_mode):  # never opened: a FIFO would block the scan
                skipped += 1
                problems.append(f"{p}: not a regular file (a FIFO, socket or device); not read: "
                                "remove it from the study folder")
                continue
            recs, n, probs = _summary([read_record(p, p.name, st)], root)
            top_records += recs
            skipped += n
            problems += probs

    results = map_ordered(_study_task, [str(u) for u in units], [index] * len(units),
                          executor=executor)
    for _, n, probs in results:
        skipped += n
        problems += probs
    unit_records = [recs for recs, _, _ in results]

    single_study = False
    if not dataset_root:
        study_uids = {r["study_uid"] for recs in unit_records for r in recs}
        single_study = bool(top_records) or (len(study_uids) <= 1 and root.name != "dicom")
    rows: list[dict] = []
    if single_study:
        every = list(top_records)
        for unit, recs in zip(units, unit_records):
            every += [{**r, "path": f"{unit.name}/{r['path']}"} for r in recs]
        rows = _series_rows(every, root.name, root)
    else:
        for unit, recs in zip(units, unit_records):
            rows.extend(_series_rows(recs, unit.name, unit))
    frame = pd.DataFrame(rows, columns=SCAN_COLUMNS).astype(
        {"n_slices": "int64", "rows": "int64", "cols": "int64", "slice_spacing": "float64",
         "series_number": "Int64"})
    frame = frame.sort_values(["folder", "series_number", "series_uid"], na_position="last")
    frame = frame.reset_index(drop=True)
    frame.attrs["skipped_files"] = int(skipped)
    frame.attrs["problems"] = sorted(problems)
    return frame

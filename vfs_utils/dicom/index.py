"""The series index: what the headers of a study folder say, read once and kept as JSON.

Reading a study is dominated by parsing hundreds of headers. The index keeps, per
study folder, one *listing* (:func:`vfs_utils.dicom._files.refresh`: per file its
series, geometry, rescale, transfer syntax and where its pixel data lie), so that
``load_series`` reads pixel data straight from those offsets and ``scan`` reads no header.

Where and how
-------------
- One JSON file per study folder under :func:`index_path`
  (``<cache>/dicom-index/<digest of the folder's absolute path>.json``), so
  read-only dataset roots work.
- A listing is used only while the folder's files are unchanged: the names,
  sizes, modification times and inodes of every file in the folder tree
  (nested series folders included). Otherwise it is rebuilt quietly,
  re-reading only the files that changed.
- Each file is written whole to a temporary sibling and renamed into place,
  so several processes (Dask workers, ``vfs index``) may share the folder:
  a reader sees an old listing or a new one, never half of one. A damaged or
  foreign file is ignored and replaced; deleting the folder is always safe.
  When the cache cannot be written the index is skipped (the results are the
  same, only slower).
- ``index=False`` on the functions, or the environment variable
  ``VFS_NO_INDEX=1``, bypasses it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd

from .._env import env_flag
from .._fs import write_text_atomic
from .._parallel import map_ordered
from ..data import cache_dir
from ..errors import DataNotFoundError
from ._common import LOGGER
from ._files import RECORD_VERSION, refresh

__all__ = ["ENV_NO_INDEX", "build_index", "count_folders", "entry_path", "folder_listing",
           "index_enabled", "index_path", "progress_bar"]

#: Set to 1 to bypass the index everywhere.
ENV_NO_INDEX = "VFS_NO_INDEX"


def index_path() -> Path:
    """The folder of the index: ``vfs_utils.data.cache_dir() / "dicom-index"``."""
    return cache_dir() / "dicom-index"


def entry_path(folder: str | os.PathLike) -> Path:
    """The index file of one study folder."""
    key = hashlib.sha1(str(Path(folder).absolute()).encode("utf-8", "surrogateescape"))
    return index_path() / f"{key.hexdigest()}.json"


def index_enabled(index: bool | None = None) -> bool:
    """Whether to use the index: `index` when given, else not when ``VFS_NO_INDEX=1``."""
    if index is not None:
        return bool(index)
    return not env_flag(ENV_NO_INDEX)


def _load(path: Path, folder: str) -> dict | None:
    """The stored listing of `folder`, or None when there is none or it is not usable."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(stored, dict) and stored.get("version") == RECORD_VERSION
          and stored.get("folder") == folder
          and all(k in stored for k in ("signature", "skipped", "problems", "records"))
          and isinstance(stored["records"], list)
          and all(isinstance(r, dict) and isinstance(r.get("path"), str) and "status" in r
                  for r in stored["records"]))
    return stored if ok else None


def folder_listing(folder: str | os.PathLike, *, index: bool | None = None) -> dict:
    """The header listing of one study folder, from the index when it is up to date.

    Parameters
    ----------
    folder : path-like
        A study folder (searched recursively).
    index : bool, optional
        False reads every header (and neither reads nor writes the index);
        None (default) uses the index unless ``VFS_NO_INDEX=1``.

    Returns
    -------
    dict
        ``folder``, ``signature``, ``skipped``, ``problems``, ``records`` (see
        :mod:`vfs_utils.dicom._files`). The same whether it came from the
        index or not.
    """
    folder_path = Path(folder).absolute()
    if not index_enabled(index):
        return refresh(folder_path, None)[0]
    path = entry_path(folder_path)
    listing, changed = refresh(folder_path, _load(path, str(folder_path)))
    if changed:
        try:
            write_text_atomic(path, json.dumps({**listing, "version": RECORD_VERSION},
                                               separators=(",", ":")))
        except OSError as exc:
            LOGGER.info("series index not updated (%s: %s)", type(exc).__name__, exc)
    return listing


def _index_one(folder: str) -> tuple[int, int, int]:
    """Index one study folder: ``(files, DICOM images, series)``."""
    listing = folder_listing(folder, index=True)
    images = [r for r in listing["records"] if r["status"] == "image"]
    return len(listing["records"]), len(images), len({r["series_uid"] for r in images})


def build_index(root: str | os.PathLike, *, executor: Executor | None = None,
                progress: Callable[[int], None] | None = None,
                chunk: int | None = None) -> pd.DataFrame:
    """Index every study folder of a dataset root (``<root>/dicom/<Folder>``) ahead of time.

    Parameters
    ----------
    root : path-like
        A dataset root, or a folder of study folders.
    executor : concurrent.futures.Executor, optional
        Runs one task per study folder (a ``ProcessPoolExecutor`` or a Dask
        client's executor parallelise the header parsing); None is serial.
    progress : callable, optional
        Called with the number of study folders just finished (see
        :func:`progress_bar`).
    chunk : int, optional
        Study folders per round of tasks between progress updates (default:
        8 per worker, at least 8).

    Returns
    -------
    pandas.DataFrame
        One row per study folder: ``folder``, ``files``, ``images``, ``series``.
    """
    if not Path(root).is_dir():
        raise DataNotFoundError(f"{root}: no such folder; `vfs index` needs a dataset root "
                                "(a folder holding dicom/<Folder>/...).")
    folders = _study_folders(root)
    if chunk is None:
        workers = getattr(executor, "_max_workers", None) or 2
        chunk = 1 if executor is None else max(8, 8 * workers)
    results: list[tuple[int, int, int]] = []
    for start in range(0, len(folders), chunk):
        part = folders[start:start + chunk]
        results.extend(map_ordered(_index_one, part, executor=executor))
        if progress is not None:
            progress(len(part))
    return pd.DataFrame(
        [(Path(f).name, *r) for f, r in zip(folders, results)],
        columns=["folder", "files", "images", "series"],
    ).astype({"files": "int64", "images": "int64", "series": "int64"})


class progress_bar:  # noqa: N801 - used like a function
    """A progress counter for :func:`build_index` on stderr ("indexing study folders: 3/50").

    Use as a context manager; the object is the ``progress`` callable.
    """

    def __init__(self, total: int, desc: str = "indexing study folders", stream=None) -> None:
        self.total, self.done, self.desc = total, 0, desc
        self.stream = stream if stream is not None else sys.stderr

    def __call__(self, n: int) -> None:
        self.done += n
        print(f"\r{self.desc}: {self.done}/{self.total}", end="", file=self.stream, flush=True)

    def __enter__(self) -> progress_bar:
        return self

    def __exit__(self, *exc: object) -> None:
        print(file=self.stream)


def _study_folders(root: str | os.PathLike) -> list[str]:
    base = Path(root) / "dicom" if (Path(root) / "dicom").is_dir() else Path(root)
    return [str(p.absolute()) for p in sorted(base.iterdir())
            if p.is_dir() and not p.name.startswith(".")]


def count_folders(root: str | os.PathLike) -> int:
    """The number of study folders :func:`build_index` will index under `root`."""
    return len(_study_folders(root))

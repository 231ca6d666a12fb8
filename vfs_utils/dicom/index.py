"""The series index: each study folder's header listing, read once and kept as JSON.

One file per study folder under :func:`index_path` (so read-only dataset roots work; a
folder inside ``VFS_SHARED_DIR`` reads the index the instructor's build left there and
writes none), used
while the folder's file names, sizes, mtimes and inodes are unchanged, else rebuilt
re-reading only changed files. Written atomically, so processes may share it; a damaged
entry is replaced, and an unwritable cache only makes reads slower. ``index=False`` or
``VFS_NO_INDEX=1`` bypasses it.
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
from ..data import cache_dir, shared_dir
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


def _shared_index(folder: Path) -> Path | None:
    """``<VFS_SHARED_DIR>/dicom-index`` when ``folder`` lies inside the shared folder."""
    shared = shared_dir()
    if shared is not None and folder.is_relative_to(shared.absolute()):
        return shared.absolute() / "dicom-index"
    return None


def entry_path(folder: str | os.PathLike) -> Path:
    """The index file of one study folder."""
    folder = Path(folder).absolute()
    key = hashlib.sha1(str(folder).encode("utf-8", "surrogateescape"))
    return (_shared_index(folder) or index_path()) / f"{key.hexdigest()}.json"


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
        False bypasses the index; None (default) uses it unless ``VFS_NO_INDEX=1``.

    Returns
    -------
    dict
        The listing of :func:`vfs_utils.dicom._files.refresh`, with or without the index.
    """
    folder_path = Path(folder).absolute()
    if not index_enabled(index):
        return refresh(folder_path, None)[0]
    path = entry_path(folder_path)
    listing, changed = refresh(folder_path, _load(path, str(folder_path)))
    if changed and _shared_index(folder_path) is None:
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
        Runs one task per study folder; None is serial.
    progress : callable, optional
        Called with the number of study folders just finished (see :func:`progress_bar`).
    chunk : int, optional
        Study folders per round between progress updates (default: 8 per worker).

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
    return pd.DataFrame([(Path(f).name, *r) for f, r in zip(folders, results)],
                        columns=["folder", "files", "images", "series"]
                        ).astype({"files": "int64", "images": "int64", "series": "int64"})


class progress_bar:  # noqa: N801 - used like a function
    """A stderr progress counter for :func:`build_index`; a context manager and the callable."""

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

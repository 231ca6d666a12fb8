"""The series index: what the headers of a study folder say, read once and kept in sqlite.

Reading a study is dominated by parsing the header of every file (hundreds
per study) with pydicom. The index keeps, per study folder, one *listing*
(see :func:`vfs_utils.dicom._files.listing`): per file its series and
instance, geometry, size, bit layout, rescale, transfer syntax and the offset
and length of its pixel data. :func:`vfs_utils.dicom.load_series` then reads
the pixel data straight from those offsets and :func:`vfs_utils.dicom.scan`
reads no header at all.

Where and how
-------------
- One sqlite file, :func:`index_path` (``<cache>/dicom-index.sqlite3``), so
  read-only dataset roots work; rows are keyed by the folder's absolute path.
- Several processes (Dask workers, ``vfs index``) may share it: WAL journal,
  a busy timeout, one upsert per folder in one transaction.
- An entry is used only while the folder's files are unchanged (names, sizes,
  modification times, inodes); otherwise it is rebuilt quietly, re-reading
  only the files that changed.
- A corrupt or foreign file at :func:`index_path` is replaced by a new index,
  never trusted; deleting it is always safe. When the cache cannot be
  written the index is skipped (the results are the same, only slower).
- ``index=False`` on the functions, or the environment variable
  ``VFS_NO_INDEX=1``, bypasses it.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd

try:
    import fcntl
except ImportError:  # Windows: no advisory lock; a repair race there only costs a rebuild
    fcntl = None  # type: ignore[assignment]

from .._parallel import map_ordered
from ..errors import DataNotFoundError
from ._common import LOGGER
from ._files import RECORD_VERSION, refresh

__all__ = ["ENV_NO_INDEX", "build_index", "count_folders", "folder_listing", "index_enabled",
           "index_path", "progress_bar"]

#: Set to 1 to bypass the index everywhere.
ENV_NO_INDEX = "VFS_NO_INDEX"
_FORMAT = "vfs-tutorials dicom series index"
_SCHEMA_VERSION = "1"
_BUSY_MS = 60_000


def index_path() -> Path:
    """Where the index lives: ``vfs_utils.data.cache_dir() / "dicom-index.sqlite3"``."""
    from ..data import cache_dir

    return cache_dir() / "dicom-index.sqlite3"


def index_enabled(index: bool | None = None) -> bool:
    """Whether to use the index: `index` when given, else not when ``VFS_NO_INDEX=1``."""
    if index is not None:
        return bool(index)
    from .._env import env_flag

    return not env_flag(ENV_NO_INDEX)


# --------------------------------------------------------------------------- the sqlite file


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute("CREATE TABLE folders (folder TEXT PRIMARY KEY, signature TEXT NOT NULL, "
                 "records_version INTEGER NOT NULL, listing TEXT NOT NULL, built REAL NOT NULL)")
    conn.executemany("INSERT INTO meta VALUES (?, ?)",
                     [("format", _FORMAT), ("schema", _SCHEMA_VERSION)])


def _is_ours(conn: sqlite3.Connection) -> bool:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables != {"meta", "folders"}:
        return False
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    return meta.get("format") == _FORMAT and meta.get("schema") == _SCHEMA_VERSION


def _fresh(path: Path) -> None:
    """Replace whatever is at `path` by an empty index (under a lock file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():  # another process may have repaired it meanwhile
                try:
                    conn = sqlite3.connect(path, timeout=_BUSY_MS / 1000)
                    try:
                        if _is_ours(conn):
                            return
                    finally:
                        conn.close()
                except sqlite3.OperationalError as exc:
                    if "not a database" not in str(exc) and "malformed" not in str(exc):
                        raise
                except sqlite3.DatabaseError:
                    pass
                LOGGER.info("the series index %s is damaged or not ours; starting a new one", path)
            tmp = path.with_name(f".{path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            conn = sqlite3.connect(tmp)
            try:
                with conn:
                    _schema(conn)
            finally:
                conn.close()
            for suffix in ("-wal", "-shm", "-journal"):
                try:
                    os.unlink(str(path) + suffix)
                except FileNotFoundError:
                    pass
            os.replace(tmp, path)
        finally:
            if fcntl is not None:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _connect() -> sqlite3.Connection:
    """A connection to a valid index, creating the file, or replacing a damaged one, as needed.

    Raises sqlite3.OperationalError when the index is busy beyond the timeout or
    cannot be written (callers then go without it).
    """
    path = index_path()
    for attempt in range(2):
        if attempt or not path.exists():
            _fresh(path)
        conn = sqlite3.connect(path, timeout=_BUSY_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            if _is_ours(conn):
                return conn
        except sqlite3.OperationalError as exc:
            conn.close()
            if "not a database" not in str(exc) and "malformed" not in str(exc):
                raise  # busy, locked, read-only: not damage
        except sqlite3.DatabaseError:  # "file is not a database", "malformed"
            conn.close()
            continue
        conn.close()
    raise sqlite3.DatabaseError(f"{path}: cannot open or repair the series index")


def _load(conn: sqlite3.Connection, folder: str) -> dict | None:
    row = conn.execute("SELECT signature, records_version, listing FROM folders WHERE folder = ?",
                       (folder,)).fetchone()
    if row is None or row[1] != RECORD_VERSION:
        return None
    try:
        listing = json.loads(row[2])
    except (TypeError, ValueError):
        return None
    if not _valid(listing) or listing["signature"] != row[0] or listing["folder"] != folder:
        return None
    return listing


def _valid(listing: object) -> bool:
    """A light structural check of a stored listing (the rest is checked where it is used)."""
    if not isinstance(listing, dict):
        return False
    if not all(k in listing for k in ("folder", "signature", "hidden", "problems", "records")):
        return False
    records = listing["records"]
    return isinstance(records, list) and all(
        isinstance(r, dict) and isinstance(r.get("path"), str) and "status" in r for r in records)


def _store(conn: sqlite3.Connection, listing: dict) -> None:
    with conn:  # one transaction: the folder's row is replaced whole or not at all
        conn.execute(
            "INSERT INTO folders (folder, signature, records_version, listing, built) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(folder) DO UPDATE SET "
            "signature = excluded.signature, records_version = excluded.records_version, "
            "listing = excluded.listing, built = excluded.built",
            (listing["folder"], listing["signature"], RECORD_VERSION,
             json.dumps(listing, separators=(",", ":")), time.time()))


# --------------------------------------------------------------------------- public


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
        ``folder``, ``signature``, ``hidden``, ``problems``, ``records`` (see
        :mod:`vfs_utils.dicom._files`). The same whether it came from the
        index or not.
    """
    folder_path = Path(folder).absolute()
    if not index_enabled(index):
        return refresh(folder_path, None)[0]
    key = str(folder_path)
    conn = None
    old = None
    for attempt in range(2):
        try:
            conn = _connection()
            old = _load(conn, key)
            break
        except sqlite3.OperationalError as exc:
            if attempt or ("not a database" not in str(exc) and "malformed" not in str(exc)):
                LOGGER.info("series index not used (%s)", exc)
                _drop_connection()
                conn = None
                break
            _drop_connection()  # the file was damaged after we opened it: repair, retry
        except (sqlite3.Error, OSError) as exc:
            _drop_connection()
            conn = None
            if attempt:
                LOGGER.info("series index not used (%s: %s)", type(exc).__name__, exc)
                break
    listing, changed = refresh(folder_path, old)
    if changed and conn is not None:
        try:
            _store(conn, listing)
        except (sqlite3.Error, OSError) as exc:
            LOGGER.info("series index not updated (%s: %s)", type(exc).__name__, exc)
            _drop_connection()
    return listing


_LOCAL = threading.local()


def _connection() -> sqlite3.Connection:
    """This thread's connection to the index (one per process, thread and index file).

    Reused across calls: opening and checking the file costs more than a lookup. A
    connection is reopened when the file has been deleted meanwhile.
    """
    path = index_path()
    key = (os.getpid(), str(path))
    cached = getattr(_LOCAL, "conn", None)
    if cached is not None and cached[0] == key and path.exists():
        return cached[1]
    _drop_connection()
    conn = _connect()
    _LOCAL.conn = (key, conn)
    return conn


def _drop_connection() -> None:
    cached = getattr(_LOCAL, "conn", None)
    _LOCAL.conn = None
    if cached is not None and cached[0][0] == os.getpid():
        try:
            cached[1].close()
        except sqlite3.Error:
            pass


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
    from .._fs import dicom_root

    base = Path(root)
    if not base.is_dir():
        raise DataNotFoundError(f"{base}: no such folder; `vfs index` needs a dataset root "
                                "(a folder holding dicom/<Folder>/...).")
    base = dicom_root(base) if (base / "dicom").is_dir() else base
    folders = [str(p.absolute()) for p in sorted(base.iterdir())
               if p.is_dir() and not p.name.startswith(".")]
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
    """A progress display for :func:`build_index`: tqdm when installed, else a stderr counter.

    Use as a context manager; the object is the ``progress`` callable.
    """

    def __init__(self, total: int, desc: str = "indexing study folders",
                 stream=None) -> None:
        import sys

        self.total, self.done, self.desc = total, 0, desc
        self.stream = stream if stream is not None else sys.stderr
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, desc=desc, unit="study", file=self.stream)

    def __call__(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        else:
            print(f"\r{self.desc}: {self.done}/{self.total}", end="", file=self.stream,
                  flush=True)

    def __enter__(self) -> progress_bar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            print(file=self.stream)


def count_folders(root: str | os.PathLike) -> int:
    """The number of study folders :func:`build_index` will index under `root`."""
    base = Path(root)
    base = base / "dicom" if (base / "dicom").is_dir() else base
    return sum(1 for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))

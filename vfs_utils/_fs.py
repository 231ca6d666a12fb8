"""Small private helpers with one home each: atomic writes of files and folders (built under
a temporary sibling, then renamed), the stop request of a long writer (SIGTERM, Ctrl-C), the
dataset layout ``<root>/dicom/<Folder>``, and the folder-name and spacing checks."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .errors import DataNotFoundError, UsageError

__all__ = ["Terminated", "atomic_file", "atomic_folder", "check_folder_name", "check_spacing",
           "check_stop", "dicom_root", "folder_name_problem", "partial_name",
           "remove_stale_partials", "request_stop", "study_dir", "write_text_atomic"]

_PARTIAL = ".partial-"


class Terminated(KeyboardInterrupt):
    """SIGTERM asked this process to stop (raised where it is, so that cleanups run)."""


_stop: list[int] = []       # the signal numbers received, until the process ends


def request_stop(signum: int, frame=None) -> None:
    """A signal handler: remember the request and raise it here; :func:`check_stop` raises
    it again wherever a long writer checks, in case the first raise was swallowed (in a
    ``__del__`` or a callback)."""
    _stop.append(signum)
    check_stop()


def check_stop() -> None:
    """Raise :class:`Terminated` (SIGTERM) or ``KeyboardInterrupt`` once a stop was asked."""
    if _stop:
        if _stop[0] == signal.SIGTERM:
            raise Terminated()
        raise KeyboardInterrupt()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (parents created); rename it over ``path`` on
    success, remove it on any exception."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def partial_name(target: Path, pid: int | None = None) -> Path:
    """The temporary sibling a folder ``target`` is built under by process ``pid``."""
    return target.parent / f".{target.name}{_PARTIAL}{os.getpid() if pid is None else pid}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def remove_stale_partials(target: str | os.PathLike) -> list[Path]:
    """Remove (and return) the ``.<name>.partial-<pid>`` siblings of ``target`` whose process
    has ended."""
    target = Path(target)
    removed: list[Path] = []
    prefix = f".{target.name}{_PARTIAL}"
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):]
        if not pid.isdigit() or _pid_alive(int(pid)):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; rename it to ``target`` on success,
    remove it on any exception. ``target`` must not exist or be empty."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target)
    tmp = partial_name(target)
    if tmp.exists():            # our own pid: a leftover of this very process
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            target.rmdir()      # empty (rmdir refuses otherwise: nothing is lost)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def folder_name_problem(folder: object) -> str | None:
    """Why ``folder`` is not a plain study folder name, or None when it is one."""
    if not isinstance(folder, str) or not folder.strip():
        return f"expected a non-empty folder name, got {type(folder).__name__} {folder!r}"
    if ("/" in folder or "\\" in folder or "\0" in folder or folder in (".", "..")
            or PurePosixPath(folder).is_absolute() or PureWindowsPath(folder).is_absolute()
            or PureWindowsPath(folder).drive):
        return (f"{folder[:80]!r} is not a plain folder name (no path separators, '..' or "
                "absolute paths: it is joined to <root>/dicom/)")
    if len(folder.encode("utf-8", "surrogatepass")) > 255:
        return f"{folder[:40]!r}... is {len(folder)} characters long: no file system allows it"
    return None


def check_folder_name(folder: object, where: str = "folder") -> str:
    """Return ``folder`` when it is a plain folder name, else raise ``UsageError``."""
    problem = folder_name_problem(folder)
    if problem is not None:
        raise UsageError(f"{where}: {problem}. Pass the Folder value of an annotation file.")
    return folder  # type: ignore[return-value]


def dicom_root(dataset_root: str | os.PathLike) -> Path:
    """``<dataset_root>/dicom``, checked to be a folder (else ``DataNotFoundError``)."""
    root = Path(dataset_root)
    base = root / "dicom"
    if not base.is_dir():
        if root.name in ("phantom", "synthetic") and root.parent.name == "demo":
            raise DataNotFoundError(f"{root}: this demo dataset is gone (deleted or moved). "
                                    "Re-run the lesson's setup cell (or `vfs prepare`): it builds "
                                    "the data again.")
        raise DataNotFoundError(f"{root}: not a dataset root (no dicom/ folder inside). Point at "
                                "the folder that holds dicom/<Folder>/..., e.g. VFS_DATA_ROOT.")
    return base


def study_dir(dataset_root: str | os.PathLike, folder: str, *, must_exist: bool = True) -> Path:
    """``<dataset_root>/dicom/<folder>``, checked to exist (public as
    :func:`vfs_utils.matching.study_folder`).

    Raises
    ------
    DataNotFoundError
        When the dataset root or (``must_exist``) the study folder is missing.
    UsageError
        When ``folder`` is not a plain folder name (a path, ``..``, too long).
    """
    check_folder_name(folder, f"study folder name under {Path(dataset_root) / 'dicom'}")
    path = dicom_root(dataset_root) / folder
    if must_exist and not path.is_dir():
        raise DataNotFoundError(f"{path}: study folder {folder!r} is not in this dataset. The "
                                "annotation belongs to a study that was not downloaded (or was "
                                "renamed); download it or leave this annotation out.")
    return path


def check_spacing(spacing, where: str = "spacing") -> tuple[float, float, float]:
    """Three positive finite mm values (row, col, slice), else ``ValueError`` naming ``where``."""
    try:
        values = np.asarray(spacing, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.shape != (3,) or not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"{where}: spacing must be 3 positive finite mm values (row, col, "
                         f"slice), not {spacing!r}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]

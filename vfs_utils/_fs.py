"""Small private helpers with one home each: atomic writes, the dataset layout, checks.

* :func:`atomic_file` / :func:`write_text_atomic`: a file is written to a temporary
  sibling and renamed over the target, so a reader never sees half a file.
* :func:`atomic_folder`: a folder is built under a temporary sibling name
  (``.<name>.partial-<pid>``) and renamed into place; on any exception it is removed.
  :func:`remove_stale_partials` removes such siblings left by processes that died.
* :func:`dicom_root` / :func:`study_dir`: the dataset layout ``<root>/dicom/<Folder>``,
  known here only, with the "not a dataset root" message written once.
* :func:`check_folder_name` and :func:`check_spacing`: one message each.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .errors import DataNotFoundError, UsageError

__all__ = [
    "atomic_file",
    "atomic_folder",
    "check_folder_name",
    "check_spacing",
    "dicom_root",
    "folder_name_problem",
    "partial_name",
    "remove_stale_partials",
    "study_dir",
    "write_text_atomic",
]

_PARTIAL = ".partial-"


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The caller writes the whole file to the yielded path. On any exception (including
    ``KeyboardInterrupt``) the temporary file is removed and ``path`` is untouched.
    Parent folders are created.
    """
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
    """Write ``text`` (UTF-8) to ``path`` atomically; return the path."""
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
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_partials(target: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.partial-<pid>`` siblings of ``target`` whose process has ended.

    Only names this package makes are touched (the exact prefix and a numeric pid);
    a partial folder of a live process is left alone. Returns what was removed.
    """
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
    """Yield an empty temporary folder beside ``target``; rename it to ``target`` on success.

    ``target`` must not exist, or be an empty folder (it is replaced). Deciding whether
    an existing non-empty ``target`` may go is the caller's business: move it away
    first. On any exception the temporary folder is removed and ``target`` untouched.
    """
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


# --------------------------------------------------------------------------- dataset layout
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
    """``<dataset_root>/dicom``, checked to be a folder.

    Raises
    ------
    DataNotFoundError
        When ``dataset_root`` holds no ``dicom/`` folder.
    """
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
    """``<dataset_root>/dicom/<folder>`` for a plain folder name, checked to exist: the one
    study-folder helper (public as :func:`vfs_utils.matching.study_folder`).

    ``folder`` must be a plain folder name (no path separators, ``..``, absolute paths,
    or more than 255 bytes): it is joined to ``<dataset_root>/dicom/``.

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


# --------------------------------------------------------------------------- checks
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

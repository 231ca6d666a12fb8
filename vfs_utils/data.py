"""Where the data lives: the pinned annotation download, the cache, environment variables.

The two annotation sets are fetched from their upstream repositories at pinned
commits, every file checked against a sha256 registry shipped in this package
(the idea of pydicom's data registry). Nothing here touches the network at
import time, and ``VFS_OFFLINE=1`` forbids downloads altogether.

Environment variables
---------------------
VFS_ANNOTATION_DIR
    A folder of v1 annotation files (vertebral-fractures-severity).
VFS_ANNOTATION_DIR_V2
    A folder of v2 annotation files (anchor-free-genant).
VFS_DATA_ROOT
    A CTLungCa-500 dataset root holding ``dicom/<Folder>/...`` (the real CT).
VFS_CACHE_DIR
    The cache folder (default: the user cache folder of ``vfs-tutorials``).
VFS_OFFLINE
    ``1`` forbids downloads; the lessons then run on the fully synthetic dataset.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import DataNotFoundError, DownloadError

__all__ = [
    "ENV_ANNOTATION_DIR",
    "ENV_ANNOTATION_DIR_V2",
    "ENV_DATA_ROOT",
    "ENV_CACHE_DIR",
    "ENV_OFFLINE",
    "SOURCES",
    "AnnotationSource",
    "annotation_dir",
    "cache_dir",
    "data_root",
    "demo_dir",
    "fetch",
    "offline",
    "registry",
]

log = logging.getLogger(__name__)

ENV_ANNOTATION_DIR = "VFS_ANNOTATION_DIR"
ENV_ANNOTATION_DIR_V2 = "VFS_ANNOTATION_DIR_V2"
ENV_DATA_ROOT = "VFS_DATA_ROOT"
ENV_CACHE_DIR = "VFS_CACHE_DIR"
ENV_OFFLINE = "VFS_OFFLINE"


@dataclass(frozen=True)
class AnnotationSource:
    """One upstream annotation set, pinned to a commit.

    Attributes
    ----------
    version : str
        ``"v1"`` or ``"v2"``.
    repository : str
        GitHub ``owner/name`` of the upstream repository.
    commit : str
        The pinned commit (40 hex digits).
    env : str
        The environment variable that points at a local copy.
    licence : str
        The data licence.
    """

    version: str
    repository: str
    commit: str
    env: str
    licence: str = "CC BY-NC 4.0"

    @property
    def base_url(self) -> str:
        """Raw-file URL of the pinned ``annotation/`` folder, ending in ``/``."""
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/annotation/"


SOURCES: dict[str, AnnotationSource] = {
    "v1": AnnotationSource("v1", "neuro-ml/vertebral-fractures-severity",
                           "5120fcb2592e808b95218c13cd0598f40fa90066", ENV_ANNOTATION_DIR),
    "v2": AnnotationSource("v2", "neuro-ml/anchor-free-genant",
                           "50eee55126b21f3ab4e6898aec1326d0e1e9899e", ENV_ANNOTATION_DIR_V2),
}


def _check_version(version: str) -> AnnotationSource:
    try:
        return SOURCES[version]
    except KeyError:
        raise ValueError(f"unknown annotation version {version!r}: use 'v1' or 'v2'") from None


def registry(version: str) -> dict[str, str]:
    """The sha256 of every file of one annotation set, as shipped in the package.

    Parameters
    ----------
    version : {"v1", "v2"}

    Returns
    -------
    dict
        File name -> sha256 hex digest (100 entries).
    """
    _check_version(version)
    text = resources.files("vfs_utils").joinpath("registry", f"{version}.txt").read_text()
    entries = (line.split() for line in text.splitlines() if line.strip())
    return {name: digest for name, digest in entries}


def offline() -> bool:
    """True when ``VFS_OFFLINE`` forbids downloads (any value but '', '0', 'false', 'no')."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def cache_dir() -> Path:
    """The cache folder: ``VFS_CACHE_DIR``, else the user cache folder of vfs-tutorials."""
    value = os.environ.get(ENV_CACHE_DIR)
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("vfs-tutorials"))


def demo_dir(name: str) -> Path:
    """Where a demo dataset called ``name`` lives: ``cache_dir() / "demo" / name``."""
    return cache_dir() / "demo" / name


def data_root() -> Path | None:
    """The real CTLungCa-500 root from ``VFS_DATA_ROOT``, or None when it is not set.

    Raises
    ------
    DataNotFoundError
        When the variable is set but the folder has no ``dicom/`` sub-folder.
    """
    value = os.environ.get(ENV_DATA_ROOT)
    if not value:
        return None
    root = Path(value).expanduser()
    if not (root / "dicom").is_dir():
        raise DataNotFoundError(
            f"{ENV_DATA_ROOT}={value}: no folder {root / 'dicom'}. Point {ENV_DATA_ROOT} at the "
            "CTLungCa-500 root that holds dicom/<Folder>/..., or unset it to use the phantom.")
    return root


def _has_json(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.json"))


def _cached(version: str) -> Path:
    return cache_dir() / "annotations" / version


def _cache_complete(folder: Path, files: dict[str, str]) -> bool:
    return folder.is_dir() and all((folder / name).is_file() for name in files)


def annotation_dir(version: str = "v1", path: str | os.PathLike | None = None, *,
                   download: bool | None = None) -> Path:
    """Find a folder holding one annotation set, downloading it when needed.

    Looks in this order: ``path``; the environment variable
    (``VFS_ANNOTATION_DIR`` for v1, ``VFS_ANNOTATION_DIR_V2`` for v2); the
    cache; a download of the pinned files (checked against the sha256 registry).

    Parameters
    ----------
    version : {"v1", "v2"}
    path : path-like, optional
        An explicit folder; it must exist and hold ``*.json`` files.
    download : bool, optional
        Allow the download step. Default: allowed unless ``VFS_OFFLINE`` is set.

    Returns
    -------
    Path
        The folder of ``<Folder>.json`` files.

    Raises
    ------
    DataNotFoundError
        When no copy is found and downloading is forbidden or impossible; the
        message names the variable to set and the command to run.
    DownloadError
        When a downloaded file does not match its pinned sha256.
    """
    source = _check_version(version)
    if path is not None:
        folder = Path(path).expanduser()
        if not _has_json(folder):
            raise DataNotFoundError(f"{folder}: no *.json annotation files there ({version}).")
        return folder
    value = os.environ.get(source.env)
    if value:
        folder = Path(value).expanduser()
        if not _has_json(folder):
            raise DataNotFoundError(
                f"{source.env}={value}: no *.json annotation files there. Point {source.env} at "
                f"the {version} annotation folder or unset it to use `vfs fetch --version {version}`.")
        return folder
    files = registry(version)
    cached = _cached(version)
    if _cache_complete(cached, files):
        return cached
    if download is None:
        download = not offline()
    if not download:
        raise DataNotFoundError(
            f"no copy of the {version} annotations ({source.repository}): not in {source.env}, "
            f"not in the cache {cached}, and downloads are off"
            f"{' (VFS_OFFLINE is set)' if offline() else ''}. Set {source.env} to a local copy, "
            f"or run `vfs fetch --version {version}` where there is network.")
    return _download(source, files, cached)


def _download(source: AnnotationSource, files: dict[str, str], target: Path,
              base_url: str | None = None) -> Path:
    """Download every file of ``files`` into ``target`` with pooch, checking sha256."""
    import pooch

    target.mkdir(parents=True, exist_ok=True)
    fetcher = pooch.create(path=target, base_url=base_url or source.base_url,
                           registry={name: f"sha256:{digest}" for name, digest in files.items()},
                           retry_if_failed=2)
    log.info("downloading %d %s annotation files into %s", len(files), source.version, target)
    for name in sorted(files):
        try:
            # pooch writes to a temporary file and moves it into place once the hash matches
            fetcher.fetch(name, progressbar=False)
        except ValueError as exc:
            raise DownloadError(
                f"{name} ({source.version}) does not match its pinned sha256: {exc}. The download "
                f"was corrupted or the file changed upstream; run `vfs fetch --version "
                f"{source.version}` again, and report it if it persists.") from exc
        except OSError as exc:  # requests' ConnectionError is an OSError
            raise DataNotFoundError(
                f"could not download {name} of the {source.version} annotations from "
                f"{base_url or source.base_url} ({type(exc).__name__}: {exc}). Without network, set "
                f"{source.env} to a local copy of {source.repository}/annotation.") from exc
    return target


def fetch(version: str = "all") -> dict[str, Path]:
    """Make sure the pinned annotation set(s) are available locally (downloads unless VFS_OFFLINE).

    Parameters
    ----------
    version : {"v1", "v2", "all"}

    Returns
    -------
    dict
        Version -> folder of the annotation files (an env-var copy, or the cache).
    """
    versions = list(SOURCES) if version == "all" else [_check_version(version).version]
    return {v: annotation_dir(v) for v in versions}

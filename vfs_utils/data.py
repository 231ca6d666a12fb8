"""Where the data lives: the pinned annotation download, the cache, environment variables.

The annotation sets are fetched at pinned upstream commits and checked against the sha256
registry shipped in the package; never at import time. ``VFS_ANNOTATION_DIR`` (v1) and
``VFS_ANNOTATION_DIR_V2`` (v2) point at local copies, ``VFS_DATA_ROOT`` at the real
CTLungCa-500 root, ``VFS_SHARED_DIR`` at a read-only folder laid out like the cache
(``annotations/<version>``, ``demo/<name>``), ``VFS_CACHE_DIR`` at the cache, and
``VFS_OFFLINE=1`` forbids downloads. A download is tried once per process; a failure is
remembered for :data:`RETRY_AFTER` seconds (``vfs fetch`` always tries).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ._env import env_flag
from ._fs import write_text_atomic
from .annotation import load_annotation
from .errors import AnnotationError, DataNotFoundError, DownloadError, UsageError

__all__ = ["ENV_ANNOTATION_DIR", "ENV_ANNOTATION_DIR_V2", "ENV_DATA_ROOT", "ENV_CACHE_DIR",
           "ENV_OFFLINE", "ENV_SHARED_DIR", "CONNECT_TIMEOUT", "READ_TIMEOUT", "RETRY_AFTER",
           "SOURCES", "AnnotationSource", "annotation_dir", "cache_dir", "checkout_settings",
           "data_root", "demo_dir",
           "fetch", "folder_schema", "offline", "registry", "shared_demo_dir", "shared_dir"]

log = logging.getLogger(__name__)

ENV_ANNOTATION_DIR = "VFS_ANNOTATION_DIR"
ENV_ANNOTATION_DIR_V2 = "VFS_ANNOTATION_DIR_V2"
ENV_DATA_ROOT = "VFS_DATA_ROOT"
ENV_CACHE_DIR = "VFS_CACHE_DIR"
ENV_OFFLINE = "VFS_OFFLINE"
ENV_SHARED_DIR = "VFS_SHARED_DIR"

#: Seconds to wait for a connection to the download server.
CONNECT_TIMEOUT: float = 5.0
#: Seconds to wait for the server to answer once connected.
READ_TIMEOUT: float = 10.0
#: Seconds a failed download is remembered (in the cache) before it is tried again.
RETRY_AFTER: float = 300.0
_FAILURE_FILE = ".download-failed"
#: This process's download failures: version -> message (one attempt per process).
_failed: dict[str, str] = {}


@dataclass(frozen=True)
class AnnotationSource:
    """One upstream annotation set (GitHub ``repository``) pinned to a ``commit``; ``env`` names
    the variable that points at a local copy."""

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
    """File name -> sha256 hex digest of every file of one annotation set (``"v1"``, ``"v2"``)."""
    _check_version(version)
    text = resources.files("vfs_utils").joinpath("registry", f"{version}.txt").read_text()
    entries = (line.split() for line in text.splitlines() if line.strip())
    return {name: digest for name, digest in entries}


def offline() -> bool:
    """True when ``VFS_OFFLINE`` forbids downloads (``UsageError`` when neither on nor off)."""
    return env_flag(ENV_OFFLINE)


def cache_dir() -> Path:
    """The cache folder: ``VFS_CACHE_DIR``, else the user cache folder of vfs-tutorials."""
    value = os.environ.get(ENV_CACHE_DIR)
    if value:
        return Path(value).expanduser()
    import pooch

    return Path(pooch.os_cache("vfs-tutorials"))


def shared_dir() -> Path | None:
    """The read-only shared data folder from ``VFS_SHARED_DIR``, or None when it is not set."""
    value = os.environ.get(ENV_SHARED_DIR, "").strip()
    return Path(value).expanduser() if value else None


def checkout_settings() -> dict[str, Path]:
    """The Makefile's data settings when this package runs from a checkout of vfs-tutorials
    (``VFS_CACHE_DIR``: its ``.cache``; the annotation copies in ``../shared/data`` when
    there), else ``{}``."""
    checkout = Path(__file__).resolve().parents[1]
    if not ((checkout / "Makefile").is_file() and (checkout / "notebooks").is_dir()):
        return {}
    found = {ENV_CACHE_DIR: checkout / ".cache"}
    shared = checkout.parent / "shared" / "data"
    for env, sub in ((ENV_ANNOTATION_DIR, "vertebral-fractures-severity"),
                     (ENV_ANNOTATION_DIR_V2, "anchor-free-genant")):
        if _has_json(shared / sub / "annotation"):
            found[env] = shared / sub / "annotation"
    return found


def demo_dir(name: str) -> Path:
    """Where a demo dataset called ``name`` is built: ``cache_dir() / "demo" / name``."""
    return cache_dir() / "demo" / name


def shared_demo_dir(name: str) -> Path | None:
    """A complete demo dataset ``name`` (with a ``manifest.json``) in the shared folder, or None."""
    shared = shared_dir()
    if shared is None:
        return None
    folder = shared / "demo" / name
    return folder if (folder / "manifest.json").is_file() else None


def data_root() -> Path | None:
    """The real CTLungCa-500 root from ``VFS_DATA_ROOT``, or None when it is not set.

    Raises
    ------
    DataNotFoundError
        When the folder has no ``dicom/`` sub-folder or no study folder in it.
    """
    value = os.environ.get(ENV_DATA_ROOT)
    if not value:
        return None
    root = Path(value).expanduser()
    fix = (f"Point {ENV_DATA_ROOT} at the CTLungCa-500 root that holds dicom/<Folder>/..., or "
           "unset it to use the phantom.")
    if not (root / "dicom").is_dir():
        raise DataNotFoundError(f"{ENV_DATA_ROOT}={value}: no folder {root / 'dicom'}. {fix}")
    try:
        has_study = any(p.is_dir() and not p.name.startswith(".")
                        for p in (root / "dicom").iterdir())
    except OSError as exc:
        raise DataNotFoundError(f"{ENV_DATA_ROOT}={value}: {root / 'dicom'} cannot be listed "
                                f"({exc.strerror or exc}). {fix}") from None
    if not has_study:
        raise DataNotFoundError(f"{ENV_DATA_ROOT}={value}: {root / 'dicom'} holds no study "
                                f"folder (the download is missing or incomplete). {fix}")
    return root


def _has_json(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.glob("*.json"))
    except OSError:
        return False


def _cached(version: str) -> Path:
    return cache_dir() / "annotations" / version


def _shared(version: str) -> Path | None:
    shared = shared_dir()
    return shared / "annotations" / version if shared is not None else None


def _cache_complete(folder: Path, files: dict[str, str]) -> bool:
    try:
        return folder.is_dir() and all((folder / name).is_file() for name in files)
    except OSError:
        return False


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _mismatches(folder: Path, files: dict[str, str]) -> list[str]:
    """Names of ``files`` that are missing from ``folder`` or differ from their sha256."""
    return [name for name, digest in sorted(files.items())
            if _sha256(folder / name) != digest]


def _no_network_hint(source: AnnotationSource) -> str:
    return (f"Without network, point {ENV_ANNOTATION_DIR} (v1) and {ENV_ANNOTATION_DIR_V2} (v2) "
            f"at local copies of the annotation folders (the lessons then use the phantom "
            f"mode), or set {ENV_OFFLINE}=1 to stop trying (without a copy the lessons use the "
            f"synthetic dataset)")


def _failure_file() -> Path:
    return cache_dir() / "annotations" / _FAILURE_FILE


def _remembered_failure(version: str) -> str | None:
    """The message of a download failure of this process, or of any within RETRY_AFTER s."""
    if version in _failed:
        return _failed[version]
    path = _failure_file()
    try:
        age = time.time() - path.stat().st_mtime
        if 0 <= age < RETRY_AFTER:
            reason = _shorten(path.read_text(encoding="utf-8").strip(), 800)
            return (f"{reason} (remembered {age:.0f} s ago; downloads are not tried again for "
                    f"{RETRY_AFTER:.0f} s: run `vfs fetch` to try now)")
    except (OSError, ValueError):
        pass
    return None


def _shorten(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to at most ``limit`` characters (then ending in "...")."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit - 3].rsplit(" ", 1)[0].rstrip(" ,;:(") + "..."


def _remember_failure(version: str, message: str) -> None:
    _failed[version] = message
    with contextlib.suppress(OSError):
        write_text_atomic(_failure_file(), message)


def _forget_failure() -> None:
    _failed.clear()
    with contextlib.suppress(OSError):
        _failure_file().unlink(missing_ok=True)


def annotation_dir(version: str = "v1", path: str | os.PathLike | None = None, *,
                   download: bool | None = None) -> Path:
    """Find a folder holding one annotation set, downloading it when needed.

    Looks in ``path``, the version's environment variable, ``VFS_SHARED_DIR``, the cache,
    then downloads the pinned files.

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
        When no copy is found and downloading is forbidden or impossible.
    DownloadError
        When a downloaded file does not match its pinned sha256.
    """
    return _find(version, path, download=download)


def _find(version: str, path=None, *, download: bool | None = None,
          retry: bool = False) -> Path:
    source = _check_version(version)
    if path is not None:
        folder = Path(path).expanduser()
        if not _has_json(folder):
            raise DataNotFoundError(f"{folder}: no *.json annotation files there ({version}).")
        _check_schema(folder, version, str(folder))
        return folder
    value = os.environ.get(source.env)
    if value:
        folder = Path(value).expanduser()
        if not _has_json(folder):
            raise DataNotFoundError(
                f"{source.env}={value}: no *.json annotation files there. Point {source.env} at "
                f"the {version} annotation folder or unset it to use "
                f"`vfs fetch --schema {version}`.")
        _check_schema(folder, version, f"{source.env}={value}")
        return folder
    files = registry(version)
    shared = _shared(version)
    if shared is not None and _cache_complete(shared, files):
        return shared
    cached = _cached(version)
    if _cache_complete(cached, files):
        return cached
    if download is None:
        download = not offline()
    if not download:
        raise DataNotFoundError(
            f"no copy of the {version} annotations ({source.repository}): not in {source.env}, "
            + (f"not in {ENV_SHARED_DIR} ({shared}), " if shared is not None else "")
            + f"not in the cache {cached}, and downloads are off"
            f"{' (VFS_OFFLINE is set)' if offline() else ''}. Set {source.env} to a local copy, "
            f"or run `vfs fetch --schema {version}` where there is network.")
    if not retry:
        remembered = _remembered_failure(version)
        if remembered is not None:
            raise DataNotFoundError(remembered)
    return _download(source, files, cached)


def folder_schema(folder: str | os.PathLike) -> str | None:
    """The schema version of the first readable annotation file of ``folder`` (of 5), or None."""
    for path in sorted(Path(folder).glob("*.json"))[:5]:
        try:
            return load_annotation(path).version
        except (AnnotationError, OSError):
            continue
    return None


def _check_schema(folder: Path, version: str, where: str) -> None:
    """Refuse a folder of the other schema (``VFS_ANNOTATION_DIR`` and ``_V2`` swapped)."""
    found = folder_schema(folder)
    if found is None or found == version:
        return
    other = SOURCES[found]
    raise UsageError(
        f"{where}: holds {found} annotation files ({other.repository}), not {version} "
        f"({SOURCES[version].repository}). Point {SOURCES[version].env} at the {version} folder "
        f"and {other.env} at the {found} one (are the two swapped?).")


@contextlib.contextmanager
def _quiet_pooch():
    """Silence pooch's per-file INFO lines and retry warnings; errors still raise."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _download(source: AnnotationSource, files: dict[str, str], target: Path,
              base_url: str | None = None) -> Path:
    """Download every file of ``files`` into ``target`` with pooch, checking sha256."""
    import pooch

    url = base_url or source.base_url
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataNotFoundError(
            f"{target}: the annotation cache cannot be created ({exc.strerror or exc}). Point "
            f"{ENV_CACHE_DIR} at a writable folder.") from None
    fetcher = pooch.create(path=target, base_url=url,
                           registry={name: f"sha256:{digest}" for name, digest in files.items()},
                           retry_if_failed=0)
    downloader = pooch.HTTPDownloader(progressbar=False, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    log.info("downloading %d %s annotation files into %s", len(files), source.version, target)
    with _quiet_pooch():
        for name in sorted(files):
            try:
                # pooch writes to a temporary file and moves it into place once the hash matches
                fetcher.fetch(name, downloader=downloader)
            except ValueError as exc:
                raise DownloadError(
                    f"{name} ({source.version}) does not match its pinned sha256: {exc}. The "
                    f"download was corrupted or the file changed upstream; run `vfs fetch "
                    f"--schema {source.version}` again, and report it if it persists.") from exc
            except OSError as exc:  # requests' errors (connection, timeout, HTTP) are OSErrors
                reason = _shorten(str(exc).splitlines()[0], 160) if str(exc) else ""
                message = (f"could not download the {source.version} annotations ({name} from "
                           f"{url}: {type(exc).__name__} {reason}). {_no_network_hint(source)}.")
                _remember_failure(source.version, message)
                raise DataNotFoundError(message) from None
    return target


def fetch(version: str = "all") -> dict[str, Path]:
    """Make sure the pinned annotation set(s) are available locally (downloads unless VFS_OFFLINE).

    Every file found is checked against its sha256; damaged cached files are downloaded
    again. A remembered download failure is forgotten.

    Parameters
    ----------
    version : {"v1", "v2", "all"}

    Returns
    -------
    dict
        Version -> folder of the annotation files.

    Raises
    ------
    DownloadError
        When a file differs from its pinned sha256 and cannot be repaired.
    DataNotFoundError
        When no copy is found and the download fails or is forbidden.
    """
    versions = list(SOURCES) if version == "all" else [_check_version(version).version]
    _forget_failure()       # an explicit fetch always tries the network again
    out = {}
    for v in versions:
        out[v] = _verify(v, _find(v, retry=True))
    return out


def _verify(version: str, folder: Path) -> Path:
    """Check every pinned file of ``folder`` against its sha256; repair the cache if it can."""
    source = SOURCES[version]
    files = registry(version)
    bad = _mismatches(folder, files)
    if not bad:
        return folder
    listed = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    if folder == _cached(version) and not offline():
        log.info("re-downloading %d cached %s files that fail their sha256", len(bad), version)
        # pooch re-downloads a file whose hash does not match, atomically
        _download(source, {name: files[name] for name in bad}, folder)
        if not _mismatches(folder, {name: files[name] for name in bad}):
            return folder
    if folder == _cached(version):
        where = "the cache"
    elif folder == _shared(version):
        where = ENV_SHARED_DIR
    else:
        where = source.env
    raise DownloadError(
        f"{folder}: {len(bad)} {version} annotation file(s) in {where} are missing or differ from "
        f"their pinned sha256: {listed}. "
        + ("Run `vfs fetch` with network to repair the cache." if where == "the cache" else
           f"Replace them with the pinned files ({source.repository} at {source.commit[:7]}) or "
           f"unset {ENV_SHARED_DIR if where == ENV_SHARED_DIR else source.env}."))

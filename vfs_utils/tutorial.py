"""The setup step every lesson opens with: find the data, say which data it is.

Three data modes, tried in this order: ``real`` (``VFS_DATA_ROOT`` points at a
CTLungCa-500 download); ``phantom`` (the real annotations over phantom images rendered to
match them; also offline when a copy is at hand); ``synthetic`` (images and annotations
simulated; when no annotation copy can be had). Demo studies are built in the cache on
demand (a lesson asks for the studies it reads; ``vfs prepare`` builds them all), once each,
and written again when the phantom changes or files are lost. Every error of the setup
step reaches a notebook as one line that says what to do.
"""
from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import data
from ._fs import dicom_root, study_dir
from ._modes import MODES
from .dicom import quiet_uid_warnings
from .errors import DataNotFoundError, UsageError, VfsError
from .phantom import build_dataset
from .phantom.dataset import DEFAULT_STUDIES, damage, missing_studies, read_manifest

__all__ = ["MODES", "DataSource", "PHANTOM_STUDIES", "SetupError", "damage", "lesson_demo_name",
           "setup"]

log = logging.getLogger(__name__)

#: Number of real annotation files rendered as phantom studies in the ``phantom`` mode.
PHANTOM_STUDIES = 4
#: Disk per rendered demo study in GB (512 x 512, about 300 thin slices, 5 mm series, scout).
STUDY_GB = 0.24

_DESCRIPTIONS = {
    "real": "the real CTLungCa-500 images (VFS_DATA_ROOT) with the real annotations",
    "phantom": ("the real expert annotations over synthetic phantom images rendered to match "
                "them (no real CT is available here)"),
    "synthetic": "a fully synthetic dataset: phantom images with simulated expert readings",
}


@dataclass(frozen=True)
class DataSource:
    """Where a lesson's data is: ``mode``, the dataset ``root`` and the v1 and v2 annotation
    folders."""

    mode: str
    root: Path
    annotation_dir: Path
    annotation_dir_v2: Path
    #: Why this mode (e.g. "VFS_OFFLINE is set, no annotation copy at hand"); may be empty.
    note: str = ""
    #: The demo study folders the lesson asked for (empty: every folder under ``root/dicom``).
    folders: tuple[str, ...] = ()

    def _check_demo(self) -> None:
        if self.mode != "real" and not (self.root / "dicom").is_dir():
            raise DataNotFoundError(
                f"{self.root}: the {self.mode} demo dataset is gone (deleted or moved since the "
                "setup cell ran). Re-run the lesson's setup cell (or `vfs prepare`): it builds "
                "the data again.")

    @property
    def studies(self) -> list[str]:
        """Names of the study folders under ``root/dicom`` (of a demo: those asked for)."""
        self._check_demo()
        if self.folders:
            return list(self.folders)
        return sorted(p.name for p in dicom_root(self.root).iterdir()
                      if p.is_dir() and not p.name.startswith("."))

    def study_dir(self, folder: str) -> Path:
        """The study folder ``root/dicom/<folder>``, checked to exist."""
        self._check_demo()
        try:
            return study_dir(self.root, folder)
        except DataNotFoundError:
            if self.mode == "real":
                raise
            raise DataNotFoundError(
                f"{self.root / 'dicom' / folder}: this study of the {self.mode} demo dataset is "
                "missing (deleted since the setup cell ran?). Re-run the lesson's setup cell "
                "(or `vfs prepare`): it rebuilds a damaged demo dataset.") from None

    @property
    def description(self) -> str:
        """One sentence on what this data is."""
        text = _DESCRIPTIONS[self.mode]
        if not self.note:
            return text
        if text.endswith(")"):          # one pair of parentheses: "(...; note)"
            return f"{text[:-1]}; {self.note})"
        return f"{text} ({self.note})"

    def __str__(self) -> str:
        n_v1 = len(list(self.annotation_dir.glob("*.json")))
        n_v2 = len(list(self.annotation_dir_v2.glob("*.json")))
        return (f"Data mode: {self.mode} - {self.description}.\n"
                f"{len(self.studies)} study folders with images; annotation files: "
                f"{n_v1} (v1), {n_v2} (v2).")


def _real_annotations() -> tuple[Path, Path] | None:
    """The two annotation folders (a copy at hand, or downloaded unless offline), else None."""
    try:
        return data.annotation_dir("v1"), data.annotation_dir("v2")
    except DataNotFoundError as exc:
        if not data.offline():
            log.info("no annotation copy: %s", exc)
            warnings.warn("no annotation copy at hand and the download failed (`vfs fetch` says "
                          "why): falling back to the fully synthetic dataset", stacklevel=4)
        return None


def lesson_demo_name(*, studies: int | None = None, seed: int = 0,
                     from_annotations: bool = False) -> str | None:
    """The lessons' name for the demo dataset of these parameters (``"synthetic"``), or None."""
    if not from_annotations and seed == 0 and studies in (None, DEFAULT_STUDIES):
        return "synthetic"
    return None


def _demo(name: str, only: int | None, **params) -> tuple[Path, tuple[str, ...]]:
    """A demo dataset holding (at least) its first ``only`` studies, and their folders: an
    intact build in VFS_SHARED_DIR, else built in the cache (damaged studies written again)."""
    shared = data.shared_demo_dir(name)
    if shared is not None:
        if not missing_studies(shared, only=only, **params):
            return shared, _folders(shared, only)
        lost = damage(shared)
        if lost:
            warnings.warn(f"{shared}: the shared demo dataset is damaged ({'; '.join(lost[:3])}); "
                          "using a copy in the cache. Tell whoever keeps the shared folder.",
                          stacklevel=4)
        else:
            log.info("%s lacks the studies asked for (or has other parameters); using the "
                     "cache", shared)
    out = data.demo_dir(name)
    with Progress() as bar:
        root = build_dataset(out, replace_stale=True, only=only, progress=bar, **params)
    return root, _folders(root, only)


def _folders(root: Path, only: int | None) -> tuple[str, ...]:
    try:
        manifest = read_manifest(root / "manifest.json")
    except (VfsError, OSError):
        return ()
    folders = manifest.get("folders") or [r.get("folder") for r in manifest.get("studies", [])]
    return tuple(folders if only is None else folders[:max(int(only), 1)])


class Progress:
    """A progress bar (tqdm, on stderr) over the studies a build writes, saying what, how
    many and where: the ``progress`` callback of :func:`~vfs_utils.phantom.build_dataset`,
    used as a context manager so the bar ends even when the build stops."""

    def __init__(self):
        self.bar = None

    def __call__(self, k: int, n: int, folder: str, out: Path) -> None:
        from tqdm import tqdm

        if k == 0 and self.bar is None:
            noun = "study" if n == 1 else "studies"
            self.bar = tqdm(total=n, unit="study", file=sys.stderr, mininterval=0,
                            desc=f"writing {n} demo {noun} ({n * STUDY_GB:.1f} GB) into {out}")
        elif self.bar is not None:
            self.bar.update(k - self.bar.n)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


class SetupError(VfsError, OSError):
    """The demo data could not be written (an unwritable or full cache): what to do."""


def _one_line(exc: BaseException) -> BaseException:
    """``exc`` (an OSError: as a :class:`SetupError`) shown by IPython as its one line."""
    if not isinstance(exc, VfsError):
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        exc = SetupError(f"{where}{getattr(exc, 'strerror', None) or exc}. Point "
                         f"{data.ENV_CACHE_DIR} at a writable folder with space (about "
                         f"{STUDY_GB:.2f} GB per demo study), then re-run this cell.")
    line = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    exc._render_traceback_ = lambda: [line]          # IPython shows these lines, no traceback
    return exc


def _in_kernel() -> bool:
    """Whether this runs in a Jupyter kernel (not in plain Python, pytest or the CLI)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _checkout_defaults() -> list[str]:
    """In a notebook kernel started outside the Makefile, from a checkout: the Makefile's data
    settings (the checkout's ``.cache``, ``../shared/data``) for the variables that are unset;
    the names of those set."""
    if not _in_kernel():
        return []
    set_now = []
    for name, value in data.checkout_settings().items():
        if name not in os.environ:
            os.environ[name] = str(value)
            set_now.append(name)
    return set_now


def setup(mode: str | None = None, *, studies: int | None = None) -> DataSource:
    """Find (and on first use build) the data a lesson runs on.

    Parameters
    ----------
    mode : {"real", "phantom", "synthetic"}, optional
        Force a mode; default: the first that is available (see the module doc).
    studies : int, optional
        The demo studies the lesson reads: the first ``studies`` (default all). Only those
        are built now; ``DataSource.studies`` lists them. No effect in the ``real`` mode.

    Returns
    -------
    DataSource

    Raises
    ------
    VfsError
        Any project error (a file-system one as :class:`SetupError`), shown in a notebook as
        one line that says what to do.
    """
    try:
        return _setup(mode, studies)
    except (VfsError, OSError) as exc:
        shown = _one_line(exc)
        if shown is exc:
            raise
        raise shown from None


def _setup(mode: str | None, studies: int | None) -> DataSource:
    quiet_uid_warnings()
    _checkout_defaults()
    if mode is not None and mode not in MODES:
        raise UsageError(f"unknown data mode {mode!r}: use one of {', '.join(map(repr, MODES))}")
    offline = data.offline()          # a bad VFS_OFFLINE value is refused here, first
    root = data.data_root()
    if mode == "real" or (mode is None and root is not None):
        if root is None:
            raise DataNotFoundError(f"mode 'real' needs {data.ENV_DATA_ROOT}: set it to the "
                                    "CTLungCa-500 root that holds dicom/<Folder>/...")
        return DataSource("real", root, data.annotation_dir("v1"), data.annotation_dir("v2"))
    if mode in (None, "phantom"):
        found = _real_annotations()
        if found is not None:
            v1, v2 = found
            demo, folders = _demo("phantom", studies, studies=PHANTOM_STUDIES, annotation_dir=v2)
            note = (f"{data.ENV_OFFLINE} is set: nothing downloaded, the annotation copy at hand "
                    "is used") if offline else ""
            return DataSource("phantom", demo, v1, v2, note, folders)
        if mode == "phantom":
            raise DataNotFoundError("mode 'phantom' needs the real annotations: run `vfs fetch` "
                                    f"or set {data.ENV_ANNOTATION_DIR} and "
                                    f"{data.ENV_ANNOTATION_DIR_V2}.")
    if mode == "synthetic":
        note = "asked for"
    elif offline:
        note = f"no annotation copy at hand, and {data.ENV_OFFLINE} is set"
    else:
        note = "no annotation copy at hand and the download failed"
    demo, folders = _demo("synthetic", studies, seed=0)
    return DataSource("synthetic", demo, demo / "annotation", demo / "annotation_v2", note,
                      folders)

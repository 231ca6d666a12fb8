"""The setup step every lesson opens with: find the data, say which data it is.

Three data modes, tried in this order: ``real`` (``VFS_DATA_ROOT`` points at a
CTLungCa-500 download); ``phantom`` (the real annotations over phantom images rendered to
match them; also offline when a copy is at hand); ``synthetic`` (images and annotations
simulated; when no annotation copy can be had). Demo datasets are built in the cache on
first use (or by ``vfs prepare``) and rebuilt when the phantom changes or files are lost.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import data
from ._fs import dicom_root, partial_name, study_dir
from ._modes import MODES
from .dicom import quiet_uid_warnings
from .errors import DataNotFoundError, DatasetExistsError, VfsError
from .phantom import build_dataset
from .phantom.dataset import DEFAULT_STUDIES, read_manifest

__all__ = ["MODES", "DataSource", "PHANTOM_STUDIES", "damage", "lesson_demo_name", "setup"]

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

    def _check_demo(self) -> None:
        if self.mode != "real" and not (self.root / "dicom").is_dir():
            raise DataNotFoundError(
                f"{self.root}: the {self.mode} demo dataset is gone (deleted or moved since the "
                "setup cell ran). Re-run the lesson's setup cell (or `vfs prepare`): it builds "
                "the data again.")

    @property
    def studies(self) -> list[str]:
        """Names of the study folders under ``root/dicom``."""
        self._check_demo()
        return sorted(p.name for p in dicom_root(self.root).iterdir() if p.is_dir())

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
            warnings.warn(f"falling back to the fully synthetic dataset: {exc}", stacklevel=3)
        return None


def lesson_demo_name(*, studies: int | None = None, seed: int = 0,
                     from_annotations: bool = False) -> str | None:
    """The lessons' name for the demo dataset of these parameters (``"synthetic"``), or None."""
    if not from_annotations and seed == 0 and studies in (None, DEFAULT_STUDIES):
        return "synthetic"
    return None


def damage(root: str | Path) -> list[str]:
    """What a demo dataset lost since it was written (file counts against ``manifest.json``):
    one line per damaged series."""
    root = Path(root)
    try:
        studies = read_manifest(root / "manifest.json").get("studies", [])
    except (VfsError, OSError):
        return []
    problems = []
    for rec in studies:
        counts = rec.get("files") if isinstance(rec, dict) else None
        if not isinstance(counts, dict):
            continue
        study = root / "dicom" / str(rec.get("folder"))
        for series, expected in sorted(counts.items()):
            folder = study / series
            try:
                found = sum(1 for p in folder.iterdir() if p.is_file())
            except OSError:
                found = 0
            if found != expected:
                problems.append(f"{study.name}/{series}: {found} of {expected} files")
    return problems


def _demo(name: str, **params) -> Path:
    """A demo dataset: a matching intact build in VFS_SHARED_DIR, else built in the cache
    (a damaged one there is written again, with a warning)."""
    shared = data.shared_demo_dir(name)
    if shared is not None:
        try:   # a complete build there: returned when its parameters match, else refused
            root = build_dataset(shared, replace_stale=False, **params)
        except DatasetExistsError:
            log.info("%s holds a demo build with other parameters; using the cache", shared)
        else:
            lost = damage(root)
            if not lost:
                return root
            warnings.warn(f"{root}: the shared demo dataset is damaged ({'; '.join(lost[:3])}); "
                          "using a copy in the cache. Tell whoever keeps the shared folder.",
                          stacklevel=3)
    out = data.demo_dir(name)
    lost = damage(out)
    if lost:
        warnings.warn(f"{out}: the demo dataset lost files since it was written "
                      f"({'; '.join(lost[:3])}{' ...' if len(lost) > 3 else ''}); "
                      "writing it again.", stacklevel=3)
        trash = partial_name(out.parent / f"{out.name}.damaged")
        out.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    with _announced(name, out):
        return build_dataset(out, replace_stale=True, **params)


class _FirstRender(logging.Handler):
    """Prints the progress line when the build starts rendering (not when it is reused)."""

    def __init__(self, what: str, out: Path, passed_on: int | None):
        super().__init__(logging.INFO)
        self.what, self.out, self.passed_on, self.done = what, out, passed_on, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.done and record.msg.startswith("rendering study"):
            self.done = True
            studies = record.args[1] if len(record.args or ()) >= 2 else "the"
            size = (f", about {studies * STUDY_GB:.1f} GB" if isinstance(studies, int) else "")
            noun = "study" if studies == 1 else "studies"
            print(f"Writing the {self.what} demo data ({studies} {noun}{size}) into "
                  f"{self.out}: once, up to a few minutes...", file=sys.stderr, flush=True)
        if (self.passed_on is not None and record.levelno >= self.passed_on
                and logging.getLogger(record.name).parent is not None):
            logging.getLogger(record.name).parent.handle(record)


@contextlib.contextmanager
def _announced(what: str, out: Path):
    """Say what is written where, and how big, once the phantom starts writing."""
    logger = logging.getLogger("vfs_utils.phantom.dataset")
    quiet = not logger.isEnabledFor(logging.INFO)
    handler = _FirstRender(what, out, logger.getEffectiveLevel() if quiet else None)
    saved = logger.level, logger.propagate
    if quiet:       # hear INFO here; pass on only what the user's handlers would have had
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved


def setup(mode: str | None = None) -> DataSource:
    """Find (and on first use build) the data a lesson runs on.

    Parameters
    ----------
    mode : {"real", "phantom", "synthetic"}, optional
        Force a mode; default: the first that is available (see the module doc).

    Returns
    -------
    DataSource
    """
    quiet_uid_warnings()
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown data mode {mode!r}: use one of {', '.join(map(repr, MODES))}")
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
            demo = _demo("phantom", studies=PHANTOM_STUDIES, annotation_dir=v2)
            note = (f"{data.ENV_OFFLINE} is set: nothing downloaded, the annotation copy at hand "
                    "is used") if offline else ""
            return DataSource("phantom", demo, v1, v2, note)
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
    demo = _demo("synthetic", seed=0)
    return DataSource("synthetic", demo, demo / "annotation", demo / "annotation_v2", note)

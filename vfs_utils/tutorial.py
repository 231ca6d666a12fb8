"""The setup step every lesson opens with: find the data, say which data it is.

Three data modes, tried in this order:

1. ``real``: ``VFS_DATA_ROOT`` points at a CTLungCa-500 download (``dicom/<Folder>/...``);
   the annotations come from the environment, the cache or the pinned download.
2. ``phantom``: the real annotations (environment, cache or download) over
   synthetic phantom images rendered so that the annotations match them. The
   default wherever the annotations can be had.
3. ``synthetic``: a fully synthetic dataset, images and annotations. Used
   offline with no annotation copy, and forced by ``VFS_OFFLINE=1``.

Demo datasets are built on first use into the cache (``VFS_CACHE_DIR``) and
reused afterwards, until the phantom code or its parameters change: then they are
rebuilt. ``vfs prepare`` builds them ahead of time.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import data
from ._fs import dicom_root, study_dir
from ._modes import MODES
from .dicom import quiet_uid_warnings
from .errors import DataNotFoundError, DatasetExistsError
from .phantom import build_dataset

__all__ = ["MODES", "DataSource", "PHANTOM_STUDIES", "setup"]

log = logging.getLogger(__name__)

#: Number of real annotation files rendered as phantom studies in the ``phantom`` mode.
PHANTOM_STUDIES = 4

_DESCRIPTIONS = {
    "real": "the real CTLungCa-500 images (VFS_DATA_ROOT) with the real annotations",
    "phantom": ("the real expert annotations over synthetic phantom images rendered to match "
                "them (no real CT is available here)"),
    "synthetic": ("a fully synthetic dataset: phantom images with simulated expert readings "
                  "(offline, no annotation copy)"),
}


@dataclass(frozen=True)
class DataSource:
    """Where a lesson's data is.

    Attributes
    ----------
    mode : {"real", "phantom", "synthetic"}
    root : Path
        Dataset root holding ``dicom/<Folder>/...``.
    annotation_dir : Path
        Folder of v1 annotation files.
    annotation_dir_v2 : Path
        Folder of v2 annotation files.
    """

    mode: str
    root: Path
    annotation_dir: Path
    annotation_dir_v2: Path

    @property
    def studies(self) -> list[str]:
        """Names of the study folders under ``root/dicom``."""
        return sorted(p.name for p in dicom_root(self.root).iterdir() if p.is_dir())

    def study_dir(self, folder: str) -> Path:
        """The study folder ``root/dicom/<folder>``, checked to exist."""
        return study_dir(self.root, folder)

    @property
    def description(self) -> str:
        """One sentence on what this data is."""
        return _DESCRIPTIONS[self.mode]

    def __str__(self) -> str:
        n_v1 = len(list(self.annotation_dir.glob("*.json")))
        n_v2 = len(list(self.annotation_dir_v2.glob("*.json")))
        return (f"Data mode: {self.mode} - {self.description}.\n"
                f"{len(self.studies)} study folders with images; annotation files: "
                f"{n_v1} (v1), {n_v2} (v2).")


def _real_annotations() -> tuple[Path, Path] | None:
    try:
        return data.annotation_dir("v1"), data.annotation_dir("v2")
    except DataNotFoundError as exc:
        if not data.offline():
            warnings.warn(f"falling back to the fully synthetic dataset: {exc}", stacklevel=3)
        return None


def _demo(name: str, **params) -> Path:
    """A demo dataset: a matching build in VFS_SHARED_DIR (only read), else built in the cache."""
    shared = data.shared_demo_dir(name)
    if shared is not None:
        try:   # a complete build there: returned when its parameters match, else refused
            return build_dataset(shared, replace_stale=False, **params)
        except DatasetExistsError:
            log.info("%s holds a demo build with other parameters; using the cache", shared)
    return build_dataset(data.demo_dir(name), replace_stale=True, **params)


def setup(mode: str | None = None) -> DataSource:
    """Find (and on first use build) the data a lesson runs on.

    Parameters
    ----------
    mode : {"real", "phantom", "synthetic"}, optional
        Force a mode; default: the first that is available (see the module doc).

    Returns
    -------
    DataSource
        ``print(source)`` says which data is used.
    """
    quiet_uid_warnings()
    if mode is not None and mode not in MODES:
        raise ValueError(f"unknown data mode {mode!r}: use one of {', '.join(map(repr, MODES))}")
    root = data.data_root()
    if mode == "real" or (mode is None and root is not None):
        if root is None:
            raise DataNotFoundError(f"mode 'real' needs {data.ENV_DATA_ROOT}: set it to the "
                                    "CTLungCa-500 root that holds dicom/<Folder>/...")
        return DataSource("real", root, data.annotation_dir("v1"), data.annotation_dir("v2"))
    if mode in (None, "phantom") and not (mode is None and data.offline()):
        found = _real_annotations()
        if found is not None:
            v1, v2 = found
            demo = _demo("phantom", studies=PHANTOM_STUDIES, annotation_dir=v2)
            return DataSource("phantom", demo, v1, v2)
        if mode == "phantom":
            raise DataNotFoundError("mode 'phantom' needs the real annotations: run `vfs fetch` "
                                    f"or set {data.ENV_ANNOTATION_DIR} and "
                                    f"{data.ENV_ANNOTATION_DIR_V2}.")
    demo = _demo("synthetic", seed=0)
    return DataSource("synthetic", demo, demo / "annotation", demo / "annotation_v2")

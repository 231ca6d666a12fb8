"""Shared fixtures: the real annotation copy, a headless matplotlib, and phantom data
(a tiny dataset on disk, a fractured spine) used by several test packages."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

try:
    # distributed binds its log handlers to sys.stderr when first imported. Imported inside a
    # test that uses capsys, that is a stream closed after the test, and a later record of a
    # scheduler thread fails with "ValueError: I/O operation on closed file". Import it here,
    # once, and let its handlers write to the real stderr, warnings and errors only.
    import distributed  # noqa: F401

    logging.getLogger("distributed").setLevel(logging.ERROR)
    for _handler in logging.getLogger("distributed").handlers:
        if type(_handler) is logging.StreamHandler:
            _handler.setStream(sys.__stderr__)
except ImportError:  # pragma: no cover - distributed is a core dependency
    pass

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _annotation_copy(version: str, env: str, sub: str) -> Path:
    """The first folder of *.json files among $env and ../shared/data/<sub>, else skip."""
    value = os.environ.get(env)
    candidates = [Path(value)] if value else []
    candidates.append(SHARED / sub / "annotation")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.json")):
            return path
    pytest.skip(f"no copy of the {version} annotations: set {env} or run `vfs fetch`")


@pytest.fixture(scope="session")
def v1_dir() -> Path:
    """The real v1 annotation folder (VFS_ANNOTATION_DIR, else ../shared/data)."""
    return _annotation_copy("v1", "VFS_ANNOTATION_DIR", "vertebral-fractures-severity")


@pytest.fixture(scope="session")
def v2_dir() -> Path:
    """The real v2 annotation folder (VFS_ANNOTATION_DIR_V2, else ../shared/data)."""
    return _annotation_copy("v2", "VFS_ANNOTATION_DIR_V2", "anchor-free-genant")


@pytest.fixture(scope="module")
def private_cache_dir(tmp_path_factory):
    """VFS_CACHE_DIR set to a fresh folder for one test module (e.g. its series index).

    Set in ``os.environ`` (not monkeypatch) so that worker processes started by the
    module inherit it; restored afterwards.
    """
    saved = os.environ.get("VFS_CACHE_DIR")
    path = tmp_path_factory.mktemp("cache")
    os.environ["VFS_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("VFS_CACHE_DIR", None)
    else:
        os.environ["VFS_CACHE_DIR"] = saved


# --------------------------------------------------------------------------- phantom data
#: Rows and columns of the quick test datasets.
TINY_SIZE = 192


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A one-study phantom dataset on disk (192 x 192 px, seed 3): DICOM series and
    annotations. Shared by every test module; treat it as read-only."""
    from vfs_utils import phantom

    return phantom.build_dataset(tmp_path_factory.mktemp("tiny") / "ds", studies=1, seed=3,
                                 image_size=TINY_SIZE)


@pytest.fixture(scope="session")
def fractured_spine():
    """A sampled 14-vertebra phantom spine with a wedge, a biconcave and a crush fracture."""
    import numpy as np

    from vfs_utils import phantom

    rng = np.random.default_rng(7)
    return phantom.sample_spine(rng, n_vertebrae=14, fractures=[("wedge", 3), ("biconcave", 2),
                                                                 ("crush", 2)])


@pytest.fixture(scope="session")
def shortest_files():
    """``f(folder, n)``: the n annotation files of a folder with the fewest slices (keeps
    tests on real annotations quick)."""
    import numpy as np

    from vfs_utils.annotation import load_annotation

    def shortest(folder: Path, n: int) -> list[Path]:
        files = sorted(folder.glob("*.json"))
        extent = [max(np.concatenate([v.points[:, 2]
                                      for vs in load_annotation(f).experts.values()
                                      for v in vs])) for f in files]
        return [files[i] for i in np.argsort(extent, kind="stable")[:n]]

    return shortest

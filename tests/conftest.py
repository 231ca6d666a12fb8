"""Shared fixtures: where the real annotation copy is, and a headless matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _annotation_copy(env: str, sub: str) -> Path | None:
    value = os.environ.get(env)
    candidates = [Path(value)] if value else []
    candidates.append(SHARED / sub / "annotation")
    for path in candidates:
        if path.is_dir() and any(path.glob("*.json")):
            return path
    return None


@pytest.fixture(scope="session")
def v1_dir() -> Path:
    """The real v1 annotation folder (VFS_ANNOTATION_DIR, else ../shared/data)."""
    path = _annotation_copy("VFS_ANNOTATION_DIR", "vertebral-fractures-severity")
    if path is None:
        pytest.skip("no copy of the v1 annotations: set VFS_ANNOTATION_DIR or run `vfs fetch`")
    return path


@pytest.fixture(scope="session")
def v2_dir() -> Path:
    """The real v2 annotation folder (VFS_ANNOTATION_DIR_V2, else ../shared/data)."""
    path = _annotation_copy("VFS_ANNOTATION_DIR_V2", "anchor-free-genant")
    if path is None:
        pytest.skip("no copy of the v2 annotations: set VFS_ANNOTATION_DIR_V2 or run `vfs fetch`")
    return path

"""Shared fixtures: where the real annotation copy is, and a headless matplotlib."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

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

"""vfs_utils: helpers for the vfs-tutorials notebooks.

Reading the vertebral-fracture annotations of MosMed CTLungCa-500 and the CT
series they belong to, a synthetic spine phantom that stands in for the
registration-gated images, vertebral morphometry and Genant grading, plots,
and a baseline deformity classifier. One module per concept::

    errors       exception types
    data         where annotations and datasets live; the pinned download
    annotation   the v1 and v2 annotation schemas -> objects and a tidy frame
    dicom        header scan, load_series -> Volume, write_series
    matching     annotation <-> series, inventory
    readings     vertebrae across readings (match_vertebrae, carry_levels)
    morphometry  heights, indices, Genant grades, agreement
    agreement    reader-agreement statistics
    phantom/     the synthetic spine CT phantom and demo dataset
                 (spine: geometry, truths, sampling; render; dataset: writer, manifest)
    plotting/    every figure of the lessons (_style, sagittal, reformation, browser,
                 morphometry, classifier, keypoints)
    baseline/    image features and a scikit-learn deformity classifier
                 (studies, features, models, evaluation)
    keypoints/   vertebrae and their six keypoints found in the image (a small network
                 shipped as ONNX; torch only to retrain)
    tutorial     the setup step every notebook opens with (data modes)

Private helpers: ``_fs`` (atomic writes, the dataset layout, checks), ``_parallel``
(the one ``executor=`` mechanism), ``_modes`` (the names of the data modes).

Submodules are imported on first use, so ``import vfs_utils`` stays fast; the list of
them is read from this folder (every public module or package), so it cannot drift.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from .errors import (
    AnnotationError,
    DataNotFoundError,
    DatasetExistsError,
    DownloadError,
    ModelFileError,
    SeriesError,
    VfsError,
)

__version__ = "0.1.0"

_SUBMODULES = tuple(sorted(
    p.stem for p in Path(__file__).parent.iterdir()
    if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").is_file())))

__all__ = [
    "AnnotationError",
    "DataNotFoundError",
    "DatasetExistsError",
    "DownloadError",
    "ModelFileError",
    "SeriesError",
    "VfsError",
    *_SUBMODULES,
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vfs_utils' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

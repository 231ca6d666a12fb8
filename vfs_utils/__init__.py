"""vfs_utils: helpers for the vfs-tutorials notebooks.

The vertebral-fracture annotations of MosMed CTLungCa-500 and their CT series, a synthetic
spine phantom standing in for the gated images, morphometry and Genant grading, plots, and a
baseline classifier. One module per concept::

    errors, data       exception types; where annotations and datasets live
    annotation, dicom  the v1/v2 schemas; header scan, load_series, write_series
    matching, readings annotation <-> series; vertebrae across readings, their centres
    reformation        the spine straightened along its centre line
    morphometry, agreement  heights, indices, Genant grades; all reader agreement, intervals
    quality            readings off the spine line, overlapping, or with levels out of order
    phantom/, plotting/     the synthetic CT and demo dataset; every figure
    baseline/, keypoints/   a deformity classifier; keypoints found in the image
    tutorial           the setup step every notebook opens with (data modes)

Submodules are imported on first use (``__getattr__``); ``__init__.pyi`` lists them for type
checkers and IDEs.
"""
from __future__ import annotations

import importlib

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

_SUBMODULES = ("agreement", "annotation", "baseline", "cli", "data", "dicom", "doctor", "errors",
               "keypoints", "matching", "morphometry", "phantom", "plotting", "quality",
               "readings", "realct", "reformation", "tutorial")

__all__ = ["AnnotationError", "DataNotFoundError", "DatasetExistsError", "DownloadError",
           "ModelFileError", "SeriesError", "VfsError", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vfs_utils' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)

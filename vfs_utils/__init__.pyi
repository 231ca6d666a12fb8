"""What type checkers and IDEs see of :mod:`vfs_utils`; at run time submodules load on first use."""

from . import (
    agreement,
    annotation,
    baseline,
    cli,
    data,
    dicom,
    doctor,
    errors,
    keypoints,
    matching,
    morphometry,
    phantom,
    plotting,
    quality,
    readings,
    realct,
    reformation,
    tutorial,
)
from .errors import (
    AnnotationError,
    DataNotFoundError,
    DatasetExistsError,
    DownloadError,
    ModelFileError,
    SeriesError,
    VfsError,
)

__version__: str
__all__ = ["AnnotationError", "DataNotFoundError", "DatasetExistsError", "DownloadError",
           "ModelFileError", "SeriesError", "VfsError", "agreement", "annotation", "baseline",
           "cli", "data", "dicom", "doctor", "errors", "keypoints", "matching", "morphometry",
           "phantom", "plotting", "quality", "readings", "realct", "reformation", "tutorial"]

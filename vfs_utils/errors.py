"""Exception types of vfs_utils, all derived from :class:`VfsError`. Every message names the
file (and field) at fault and says what to do about it."""
from __future__ import annotations

__all__ = ["VfsError", "AnnotationError", "SeriesError", "DataNotFoundError",
           "DatasetExistsError", "DownloadError", "ModelFileError", "NoSpineError",
           "UsageError"]


class VfsError(Exception):
    """Base class of every error raised by vfs_utils."""


class AnnotationError(VfsError, ValueError):
    """An annotation JSON file does not follow the v1 or v2 schema (the JSON path is named)."""


class SeriesError(VfsError, ValueError):
    """A DICOM series cannot be found or assembled into a volume."""


class NoSpineError(SeriesError):
    """A volume holds no bone column with a spinal canal (not a CT of the chest or spine)."""


class DataNotFoundError(VfsError, FileNotFoundError):
    """Data (annotations, a dataset root, a study folder) is not where it was looked for."""


class DatasetExistsError(VfsError, FileExistsError):
    """A writer refuses to overwrite a folder it did not make."""


class DownloadError(VfsError, OSError):
    """A downloaded file does not match its pinned sha256 hash."""


class ModelFileError(VfsError, ValueError):
    """A model file cannot be used: not a skops file, or it holds types outside the allow-list."""


class UsageError(VfsError, ValueError):
    """An argument of a function or command cannot be used as given (it is named)."""

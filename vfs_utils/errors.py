"""Exception types of vfs_utils.

Every message names the file (and, where there is one, the field) at fault and
says what to do about it. All of them derive from :class:`VfsError`, so a
caller can catch the whole family at once.
"""
from __future__ import annotations

__all__ = [
    "VfsError",
    "AnnotationError",
    "SeriesError",
    "DataNotFoundError",
    "DatasetExistsError",
    "DownloadError",
    "ModelFileError",
    "UsageError",
]


class VfsError(Exception):
    """Base class of every error raised by vfs_utils."""


class AnnotationError(VfsError, ValueError):
    """An annotation JSON file does not follow the v1 or v2 schema.

    The message names the file and the JSON path of the fault, for example
    ``Annotation.expert3[4][2]``.
    """


class SeriesError(VfsError, ValueError):
    """A DICOM series cannot be found or assembled into a volume."""


class DataNotFoundError(VfsError, FileNotFoundError):
    """Data (annotations, a dataset root, a study folder) is not where it was looked for.

    The message says which environment variable to set or which command to run.
    """


class DatasetExistsError(VfsError, FileExistsError):
    """A writer refuses to overwrite a folder it did not make."""


class DownloadError(VfsError, OSError):
    """A downloaded file does not match its pinned sha256 hash."""


class ModelFileError(VfsError, ValueError):
    """A model file cannot be used: not a skops file, or it holds types outside the allow-list."""


class UsageError(VfsError, ValueError):
    """An argument of a function or command cannot be used as given.

    For example a path where a plain study folder name belongs, or a negative
    voxel spacing. The message names the argument and the accepted values.
    """

"""What the parts of :mod:`vfs_utils.dicom` share: the Volume, the warning, constants, geometry."""
from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..errors import SeriesError

__all__ = ["SCAN_COLUMNS", "SeriesWarning", "SliceHeaders", "Volume", "derived_uid",
           "quiet_uid_warnings"]

LOGGER = logging.getLogger("vfs_utils.dicom")

#: Two slices closer than this along the slice normal (mm) share a position.
POSITION_TOL_MM = 1e-3
#: Orientation cosines / pixel spacings that differ by more than this are "mixed".
GEOMETRY_TOL = 1e-4
#: Relative deviation of a slice gap from the median gap that triggers a warning.
GAP_TOLERANCE = 0.01
#: Why an annotation's SeriesInstanceUID may be missing from its study folder.
REISSUE_NOTE = ("Upstream re-issued the SeriesInstanceUIDs in February 2021: an annotation and "
                "an image download from different sides of that date do not match; use current "
                "copies of both.")


class _QuietUIDs(logging.Filter):
    """Drops pydicom's "Invalid value for VR UI" log records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Invalid value for VR UI")


_UID_FILTER = _QuietUIDs()


def derived_uid(*parts: object) -> str:
    """The one UID scheme of the package: ``2.25.<integer>``, from the first 128 bits of the
    sha256 of `parts` (joined by ``\x1f``): the same parts always give the same UID."""
    text = "\x1f".join(map(str, parts))
    return f"2.25.{int.from_bytes(hashlib.sha256(text.encode('utf-8')).digest()[:16], 'big')}"


def quiet_uid_warnings() -> None:
    """Silence pydicom's warning about the invalid MosMed SeriesInstanceUIDs (idempotent).

    They are read exactly as stored; ``tutorial.setup()`` and the ``vfs`` command call this
    (importing the module changes no process-wide state).
    """
    warnings.filterwarnings("ignore", message=r"Invalid value for VR UI", category=UserWarning)
    logger = logging.getLogger("pydicom")
    if _UID_FILTER not in logger.filters:
        logger.addFilter(_UID_FILTER)


#: Columns of the frame returned by :func:`scan`, in order.
SCAN_COLUMNS = ["folder", "study_folder", "series_uid", "n_slices", "modality", "description",
                "image_type", "orientation", "pixel_spacing", "slice_spacing", "rows", "cols",
                "series_number"]


class SeriesWarning(UserWarning):
    """A series loads, but something about its geometry (or its folder) deserves a look."""


class SliceHeaders(Sequence):
    """A list-like of a series' full headers (no pixel data) in slice order, read on first use."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._cache: dict[int, Dataset] = {}

    @property
    def paths(self) -> list[Path]:
        """The files, in slice order."""
        return [Path(p) for p in self._paths]

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, item):  # type: ignore[override]
        if isinstance(item, slice):
            return [self[k] for k in range(*item.indices(len(self)))]
        k = range(len(self))[item]
        if k not in self._cache:
            try:
                self._cache[k] = pydicom.dcmread(self._paths[k], stop_before_pixels=True)
            except Exception as exc:  # any parse failure of a file that changed since loading
                raise SeriesError(f"{self._paths[k]}: cannot read the header any more "
                                  f"({type(exc).__name__}: {exc}); was the file changed?") from exc
        return self._cache[k]

    def __repr__(self) -> str:
        return f"SliceHeaders({len(self)} slices, {len(self._cache)} read)"


@dataclass
class Volume:
    """One CT series as an array in the annotation's voxel convention.

    Attributes
    ----------
    array : numpy.ndarray
        ``(rows, cols, slices)`` in HU, ``int16`` when the rescale keeps integers, else
        ``float32``; a transposed view of a ``(slices, rows, cols)`` buffer (each slice
        contiguous).
    spacing : tuple of float
        ``(row, col, slice)`` mm; the slice gap along the normal (NaN for one slice).
    affine : numpy.ndarray
        ``(4, 4)`` matrix mapping ``(row, col, slice, 1)`` to LPS mm.
    headers : sequence of pydicom.dataset.Dataset
        Slice headers without pixel data (a :class:`SliceHeaders`).
    series_uid : str
        SeriesInstanceUID.
    study_folder : pathlib.Path
        The folder the series was read from.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    headers: Sequence[Dataset]
    series_uid: str
    study_folder: Path

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(rows, cols, slices)``."""
        return tuple(self.array.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Size of the voxel array in bytes."""
        return int(self.array.nbytes)

    @property
    def origin(self) -> np.ndarray:
        """LPS position (mm) of voxel ``(0, 0, 0)``: ImagePositionPatient of the first slice."""
        return self.affine[:3, 3].copy()

    @property
    def orientation(self) -> tuple[float, ...]:
        """ImageOrientationPatient: the row then the column direction cosines (6 floats)."""
        row_cos = self.affine[:3, 1] / self.spacing[1]
        col_cos = self.affine[:3, 0] / self.spacing[0]
        return tuple(float(v) for v in (*row_cos, *col_cos))


def normal(iop: Sequence[float]) -> np.ndarray:
    """Slice normal: cross product of the row and column direction cosines."""
    return np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:6], float))


def slice_spacing(positions: np.ndarray, iop: Sequence[float]) -> float:
    """Mean gap (mm) between the first and last positions along the normal; NaN for < 2."""
    if len(positions) < 2:
        return float("nan")
    proj = positions @ normal(iop)
    return float(abs(proj.max() - proj.min()) / (len(proj) - 1))


def as_tuple(value: Any) -> tuple | None:
    """A JSON list back to a tuple (None stays None)."""
    return None if value is None else tuple(value)

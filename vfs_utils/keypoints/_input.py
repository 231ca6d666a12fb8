"""From a CT volume to the network's 2D input: a sagittal image that follows the spine.

:func:`~vfs_utils.keypoints._spine.find_spine` finds, on every axial slice, the row and
column of the spine from the image alone (a bone column with a spinal canal), and
:func:`sagittal_input` samples a straightened sagittal image on a fixed 1 mm grid along
that curve: image row ``u`` is the offset (mm) from the
centre line's row, image column ``v`` the position (mm) along the slices. A point of
that image maps back to ``(row, col, slice)`` voxel indices of the volume with
:meth:`SagittalInput.to_voxels`: the column comes from the centre line at that slice,
so a scoliotic spine keeps its left-right course.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._spine import SpinePath, find_spine

__all__ = ["GRID_MM", "HALF_ROWS_MM", "SEARCH_HALF_MM", "SagittalInput", "lung_profile",
           "normalise_hu", "sagittal_input", "spine_centreline"]

#: Pixel size of the 2D input (mm).
GRID_MM = 1.0
#: The input covers the centre line's row +- this many mm (anterior at the top).
HALF_ROWS_MM = 48.0
#: The network's input reaches this many mm beside the image's middle column (the
#: training renders only this block; the spine is searched in the body, see ``_spine``).
SEARCH_HALF_MM = 70.0
_SLAB_MM = (-2.0, 0.0, 2.0)   # the input averages these column offsets from the centre line


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """HU to the network's input scale: clip to [-300, 1200], then (HU - 200) / 400."""
    return ((np.clip(hu, -300.0, 1200.0) - 200.0) / 400.0).astype(np.float32)


def spine_centreline(array: np.ndarray, spacing, *, col_offset: float = 0.0,
                     full_cols: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The spine's row (vertebral body) and column (canal) on every slice: the ``rows``
    and ``cols`` of :func:`~vfs_utils.keypoints._spine.find_spine` (same parameters;
    raises NoSpineError without a spine)."""
    path = find_spine(array, spacing, col_offset=col_offset, full_cols=full_cols)
    return path.rows, path.cols


@dataclass
class SagittalInput:
    """The straightened sagittal image and how to map its pixels back to voxels.

    Attributes
    ----------
    image : ndarray float32 (n_rows, n_along)
        Normalised HU (:func:`normalise_hu`); row ``i`` is ``u = i * GRID_MM -
        HALF_ROWS_MM`` mm from the centre line (negative: anterior), column ``j`` is
        ``v = j * GRID_MM`` mm along the slices from slice 0.
    rows, cols : ndarray (slices,)
        The centre line (voxel indices) on every slice of the volume.
    spacing : (row, col, slice) mm
    """

    image: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    spacing: tuple[float, float, float]

    def to_voxels(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` = (i, j) of the image -> ``(..., 3)`` voxel
        ``(row, col, slice)``; the column is the centre line's at that slice."""
        uv = np.asarray(uv, float)
        sp = self.spacing
        s = uv[..., 1] * GRID_MM / sp[2]
        zi = np.arange(len(self.rows), dtype=float)
        rc = np.interp(s, zi, self.rows)
        cc = np.interp(s, zi, self.cols)
        r = rc + (uv[..., 0] * GRID_MM - HALF_ROWS_MM) / sp[0]
        return np.stack([r, cc, s], axis=-1)

    def to_pixels(self, rcs: np.ndarray) -> np.ndarray:
        """Voxel ``(..., 3)`` (row, col, slice) -> image pixel coordinates ``(..., 2)``."""
        rcs = np.asarray(rcs, float)
        sp = self.spacing
        zi = np.arange(len(self.rows), dtype=float)
        rc = np.interp(rcs[..., 2], zi, self.rows)
        i = ((rcs[..., 0] - rc) * sp[0] + HALF_ROWS_MM) / GRID_MM
        j = rcs[..., 2] * sp[2] / GRID_MM
        return np.stack([i, j], axis=-1)


def sagittal_input(array: np.ndarray, spacing, *, col_offset: float = 0.0,
                   full_cols: int | None = None, path: SpinePath | None = None
                   ) -> SagittalInput:
    """The network's input for one volume (see the module docstring), in HU corrected by
    the scan's estimated offset (:func:`~vfs_utils.keypoints._spine.hu_offset`).

    Parameters are those of :func:`spine_centreline`, and ``path``: an already found
    spine (default: found here); the returned centre-line columns are in the full image.
    """
    sp = tuple(float(s) for s in spacing)
    if path is None:
        path = find_spine(array, sp, col_offset=col_offset, full_cols=full_cols)
    rows, cols = path.rows, path.cols
    n_s = array.shape[2]
    n_u = int(round(2 * HALF_ROWS_MM / GRID_MM))
    n_v = int(np.floor((n_s - 1) * sp[2] / GRID_MM)) + 1
    v = np.arange(n_v) * GRID_MM
    s = v / sp[2]
    zi = np.arange(n_s, dtype=float)
    rc = np.interp(s, zi, rows)
    cc = np.interp(s, zi, cols) - col_offset
    u = np.arange(n_u) * GRID_MM - HALF_ROWS_MM
    r = rc[None, :] + u[:, None] / sp[0]
    img = np.zeros((n_u, n_v), np.float32)
    for dc in _SLAB_MM:
        c = np.broadcast_to(cc[None, :] + dc / sp[1], r.shape)
        ss = np.broadcast_to(s[None, :], r.shape)
        img += ndimage.map_coordinates(array, [r, c, ss], order=1, mode="nearest",
                                       prefilter=False).astype(np.float32)
    img /= len(_SLAB_MM)
    img -= np.float32(path.hu_offset)        # the scan's own calibration (see _spine)
    return SagittalInput(normalise_hu(img), rows, cols, sp)


def lung_profile(array: np.ndarray, spacing, rows: np.ndarray, cols: np.ndarray, *,
                 col_offset: float = 0.0, hu_offset: float = 0.0) -> np.ndarray:
    """Per slice, the area (mm2) of air-dense tissue (HU < -500, after subtracting the
    scan's ``hu_offset``) beside and in front of the spine: 20-110 mm to either side of
    the centre line, from 60 mm anterior to 20 mm posterior of it. Zero below the lungs."""
    sp = np.asarray(spacing, float)
    n_r, n_c, n_s = array.shape
    out = np.zeros(n_s)
    step = max(1, int(round(2.0 / sp[0])))
    for k in range(n_s):
        r0 = int(max(rows[k] - 60 / sp[0], 0))
        r1 = int(min(rows[k] + 20 / sp[0], n_r))
        c = cols[k] - col_offset
        area = 0
        for lo, hi in ((c - 110 / sp[1], c - 20 / sp[1]), (c + 20 / sp[1], c + 110 / sp[1])):
            a, b = int(max(lo, 0)), int(min(hi, n_c))
            if b > a and r1 > r0:
                area += int((array[r0:r1:step, a:b:step, k] < -500 + hu_offset).sum())
        out[k] = area * step * step * sp[0] * sp[1]
    return out

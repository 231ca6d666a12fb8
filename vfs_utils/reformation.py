"""The curved planar reformation: the spine straightened along a spline through the vertebra
centres (its figure: :func:`vfs_utils.plotting.plot_curved_reformation`)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.interpolate import CubicSpline

from ._fs import check_spacing

__all__ = ["CurvedReformation", "curved_reformation"]


class CurvedReformation(NamedTuple):
    """A straightened image along the spine.

    Attributes
    ----------
    image : ndarray, shape (n_along, n_across)
        HU (float32) across the centre line, head at row 0, anterior at column 0.
    extent : tuple of float
        ``imshow`` extent in mm: offset from the centre line, distance along it.
    centre_line : ndarray, shape (n_along, 3)
        The sampled centre line in voxel indices (row, col, slice).
    """

    image: np.ndarray
    extent: tuple[float, float, float, float]
    centre_line: np.ndarray


def _centres_array(centres: np.ndarray | pd.DataFrame) -> np.ndarray:
    if isinstance(centres, pd.DataFrame):
        centres = centres[["row", "col", "slice"]].to_numpy(dtype=float)
    arr = np.asarray(centres, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        raise ValueError(f"centres must be an (n, 3) array of finite [row, col, slice] voxel "
                         f"indices, got shape {arr.shape}")
    return arr


def _centre_line(centres_vox: np.ndarray, spacing: Sequence[float], step_mm: float,
                 margin_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spline centre line every ``step_mm`` of arc: points and unit tangents (n, 3) in mm,
    arc positions (n,) and each centre's arc position."""
    sp = np.asarray(spacing, dtype=float)
    mm = centres_vox[np.argsort(centres_vox[:, 2], kind="stable")] * sp
    keep = np.r_[True, np.linalg.norm(np.diff(mm, axis=0), axis=1) > 1e-6]
    mm = mm[keep]
    if len(mm) < 2:
        raise ValueError("a curved reformation needs at least 2 distinct vertebra centres")
    t = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(mm, axis=0), axis=1))]
    spline = CubicSpline(t, mm, bc_type="natural")
    dense_t = np.linspace(0.0, t[-1], max(200, 20 * len(t) * int(np.ceil(t[-1] / 10.0))))
    dense = spline(dense_t)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))]
    length = arc[-1]
    s = np.arange(-margin_mm, length + margin_mm + 1e-9, step_mm)
    inside = np.clip(s, 0.0, length)
    tt = np.interp(inside, arc, dense_t)
    pos = spline(tt)
    tangent = spline(tt, 1)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    # beyond the end centres: straight on along the end tangents
    before, after = s < 0, s > length
    pos[before] = pos[before] + (s[before] - 0.0)[:, None] * tangent[before]
    pos[after] = pos[after] + (s[after] - length)[:, None] * tangent[after]
    centre_arc = np.interp(t, dense_t, arc)
    return pos, tangent, s, centre_arc


def curved_reformation(volume: Any, centres_vox: np.ndarray | pd.DataFrame, *,
                       width_mm: float = 60.0, step_mm: float | None = None,
                       margin_mm: float = 15.0, order: int = 1) -> CurvedReformation:
    """Straighten the spine: a curved planar reformation through the vertebra centres.

    A natural cubic spline (chord length in mm) through the centres is sampled every
    ``step_mm`` of arc; at each sample a line perpendicular to it in the sagittal plane
    is interpolated, its column following the spline (-1024 HU outside the volume).

    Parameters
    ----------
    volume : Volume
    centres_vox : (n, 3) array or DataFrame
        At least 2 vertebra centres ``[row, col, slice]`` (voxels), e.g.
        :func:`vfs_utils.readings.vertebra_centres`.
    width_mm : float
        Length of the perpendicular lines (mm).
    step_mm : float, optional
        Sampling step (mm); default the smaller of the row and slice spacings.
    margin_mm : float
        How far the line continues straight on beyond the end centres (mm).
    order : int
        Spline order of the interpolation (1: linear).
    """
    spacing = check_spacing(volume.spacing, "volume spacing")
    centres = _centres_array(centres_vox)
    step = float(step_mm) if step_mm is not None else min(spacing[0], spacing[2])
    if step <= 0 or width_mm <= 0 or margin_mm < 0:
        raise ValueError("step_mm and width_mm must be positive and margin_mm not negative")
    pos, tangent, s, _ = _centre_line(centres, spacing, step, float(margin_mm))
    # normal in the sagittal plane, pointing posterior (growing row) for a head->feet tangent
    normal = np.stack([tangent[:, 2], np.zeros(len(s)), -tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    half = np.floor(width_mm / 2 / step)
    u = np.arange(-half, half + 1) * step
    coords_mm = pos[:, None, :] + u[None, :, None] * normal[:, None, :]
    coords = np.moveaxis(coords_mm / np.asarray(spacing), -1, 0)
    image = ndimage.map_coordinates(volume.array, coords, order=order, mode="constant",
                                    cval=-1024.0, output=np.float32)
    extent = (float(u[0] - step / 2), float(u[-1] + step / 2),
              float(s[-1] + step / 2), float(s[0] - step / 2))
    return CurvedReformation(image, extent, pos / np.asarray(spacing))

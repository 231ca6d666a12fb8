"""The curved planar reformation: the straightened image as numbers, and its figure."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import ndimage
from scipy.interpolate import CubicSpline

from ._style import (
    AIR_HU,
    OKABE_ITO,
    TITLE_SIZE,
    figure_size,
    sagittal_extent,
    vmin_vmax,
    volume_spacing,
    window_name,
)
from .sagittal import show_sagittal

__all__ = ["CurvedReformation", "curved_reformation", "show_curved_reformation"]


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
        :func:`vertebra_centres`.
    width_mm : float
        Length of the perpendicular lines (mm).
    step_mm : float, optional
        Sampling step (mm); default the smaller of the row and slice spacings.
    margin_mm : float
        How far the line continues straight on beyond the end centres (mm).
    order : int
        Spline order of the interpolation (1: linear).
    """
    spacing = volume_spacing(volume)
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
                                    cval=AIR_HU, output=np.float32)
    extent = (float(u[0] - step / 2), float(u[-1] + step / 2),
              float(s[-1] + step / 2), float(s[0] - step / 2))
    return CurvedReformation(image, extent, pos / np.asarray(spacing))


def show_curved_reformation(volume: Any, centres_vox: np.ndarray | pd.DataFrame, *,
                            window: str | tuple[float, float] = "bone", width_mm: float = 60.0,
                            step_mm: float | None = None, margin_mm: float = 15.0,
                            column: float | None = None) -> Figure:
    """The centre line on a sagittal slice beside the straightened spine.

    Parameters
    ----------
    volume : Volume
    centres_vox : (n, 3) array or DataFrame
        Vertebra centres (voxels); a :func:`vertebra_centres` frame also labels the levels.
    window : {"bone", "soft", "lung"} or (centre, width)
    width_mm, step_mm, margin_mm : float
        As in :func:`curved_reformation`.
    column : float, optional
        Sagittal column of the left panel; default the mean centre column.
    """
    spacing = volume_spacing(volume)
    centres = _centres_array(centres_vox)
    cpr = curved_reformation(volume, centres, width_mm=width_mm, step_mm=step_mm,
                             margin_mm=margin_mm)
    col = float(np.mean(centres[:, 1])) if column is None else float(column)
    extent = sagittal_extent(volume.array.shape, spacing)
    height = extent[2] - extent[3]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=figure_size(extent[1] - extent[0] + width_mm * 1.3, height, 9.0),
        layout="constrained", gridspec_kw={"width_ratios": [extent[1] - extent[0],
                                                            width_mm * 1.3]})
    show_sagittal(volume, col, window=window, ax=left,
                  title=f"Centre line on the sagittal slice at column {int(round(col))}")
    line_mm = cpr.centre_line * np.asarray(spacing)
    left.plot(line_mm[:, 0], line_mm[:, 2], color=OKABE_ITO["orange"], lw=1.5,
              label="spline centre line")
    left.plot(centres[:, 0] * spacing[0], centres[:, 2] * spacing[2], linestyle="none",
              marker="o", ms=4, mfc=OKABE_ITO["sky blue"], mec="black", mew=0.4,
              label="vertebra centres")
    tangent = np.gradient(line_mm, axis=0)
    normal = np.stack([tangent[:, 2], -tangent[:, 0]], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    for sign in (-1, 1):
        edge = line_mm[:, [0, 2]] + sign * (width_mm / 2) * normal
        left.plot(edge[:, 0], edge[:, 1], color=OKABE_ITO["orange"], lw=0.8, ls="--",
                  label="band sampled" if sign < 0 else None)
    left.set_xlim(extent[0], extent[1])
    left.set_ylim(extent[2], extent[3])
    left.legend(loc="upper right", fontsize=7)
    vmin, vmax = vmin_vmax(window)
    right.imshow(cpr.image, cmap="gray", vmin=vmin, vmax=vmax, extent=cpr.extent,
                 origin="upper", interpolation="nearest")
    right.set_aspect("equal")
    right.axvline(0.0, color=OKABE_ITO["orange"], lw=0.8, ls=":")
    right.set_xlabel("offset from the centre line (mm)\nanterior <- -> posterior")
    right.set_ylabel("distance along the spine (mm)")
    right.set_title("Curved planar reformation", fontsize=TITLE_SIZE)
    if isinstance(centres_vox, pd.DataFrame) and "level" in centres_vox:
        _, _, _, centre_arc = _centre_line(centres, spacing, 1.0, 0.0)
        order = np.argsort(centres[:, 2], kind="stable")
        for arc, level in zip(centre_arc, centres_vox["level"].to_numpy()[order]):
            if level is not None and not pd.isna(level):
                right.text(cpr.extent[0] + 1.0, arc, str(level), fontsize=7, va="center",
                           color="white", path_effects=[
                               path_effects.withStroke(linewidth=2, foreground="black")])
    fig.suptitle(f"Straightening the spine ({window_name(window)})", fontsize=TITLE_SIZE + 1)
    return fig

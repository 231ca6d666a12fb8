"""The figure of the curved planar reformation (:mod:`vfs_utils.reformation`)."""
from __future__ import annotations

from typing import Any

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..reformation import _centre_line, _centres_array, curved_reformation
from ._style import (
    OKABE_ITO,
    TITLE_SIZE,
    figure_size,
    sagittal_extent,
    vmin_vmax,
    volume_spacing,
    window_name,
)
from .sagittal import plot_sagittal

__all__ = ["plot_curved_reformation"]


def plot_curved_reformation(volume: Any, centres_vox: np.ndarray | pd.DataFrame, *,
                            window: str | tuple[float, float] = "bone", width_mm: float = 60.0,
                            step_mm: float | None = None, margin_mm: float = 15.0,
                            column: float | None = None) -> Figure:
    """The centre line on a sagittal slice beside the straightened spine.

    Parameters
    ----------
    volume : Volume
    centres_vox : (n, 3) array or DataFrame
        Vertebra centres (voxels); a ``readings.vertebra_centres`` frame also labels the levels.
    window : {"bone", "soft", "lung"} or (centre, width)
    width_mm, step_mm, margin_mm : float
        As in :func:`vfs_utils.reformation.curved_reformation`.
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
    plot_sagittal(volume, col, window=window, ax=left,
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

"""Sagittal views: the slice, expert readings over it, and one patch per vertebra."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..annotation import points
from ..readings import match_vertebrae, one_file, vertebra_centres
from ._style import (
    LABEL_X,
    LABEL_Y,
    TITLE_SIZE,
    column_index,
    expert_colors,
    figure_size,
    marker_for,
    sagittal_extent,
    vmin_vmax,
    volume_spacing,
    window_name,
)

__all__ = ["plot_readings", "plot_sagittal", "plot_vertebra_montage"]


def plot_sagittal(volume: Any, column: float, *, window: str | tuple[float, float] = "bone",
                  ax: Axes | None = None, title: str | None = None,
                  colorbar: bool = False) -> Axes:
    """Show one sagittal slice in millimetres, head at the top.

    Parameters
    ----------
    volume : Volume
    column : float
        Sagittal column (voxel index along ``cols``), rounded.
    window : {"bone", "soft", "lung"} or (centre, width)
        Display window in HU (see :data:`WINDOWS`).
    ax : Axes, optional
        Default: a new figure sized to the slice.
    title : str, optional
    colorbar : bool
        Add a colour bar in HU.
    """
    spacing = volume_spacing(volume)
    c = column_index(volume, column)
    extent = sagittal_extent(volume.array.shape, spacing)
    if ax is None:
        _, ax = plt.subplots(figsize=figure_size(extent[1] - extent[0], extent[2] - extent[3]),
                             layout="constrained")
    vmin, vmax = vmin_vmax(window)
    image = ax.imshow(volume.array[:, c, :].T, cmap="gray", vmin=vmin, vmax=vmax,
                      extent=extent, origin="upper", interpolation="nearest")
    ax.set_aspect("equal")
    ax.set_xlabel(LABEL_X)
    ax.set_ylabel(LABEL_Y)
    ax.set_title(title if title is not None else
                 f"Sagittal slice at column {c} ({window_name(window)})", fontsize=TITLE_SIZE)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="HU", shrink=0.8)
    return ax


def draw_readings(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float],
                   colors: Mapping[str, str], offset: tuple[float, float] = (0.0, 0.0),
                   markersize: float = 4.0, linewidth: float = 1.5) -> list[Line2D]:
    """Draw the readings; returns one legend handle per expert."""
    dr, ds = float(spacing[0]), float(spacing[2])
    pts = points(frame)
    x = pts[:, :, 0] * dr - offset[0]
    y = pts[:, :, 2] * ds - offset[1]
    experts = frame["expert"].astype(str).to_numpy()
    handles = []
    for expert in sorted(dict.fromkeys(experts)):
        sel = experts == expert
        color = colors[expert]
        marker = marker_for(color, colors)
        xs, ys = x[sel], y[sel]
        segs = np.stack([np.stack([xs[:, 0::2], ys[:, 0::2]], axis=-1),
                         np.stack([xs[:, 1::2], ys[:, 1::2]], axis=-1)], axis=2)
        ax.add_collection(LineCollection(segs.reshape(-1, 2, 2), colors=color,
                                         linewidths=linewidth), autolim=False)
        ax.plot(xs.ravel(), ys.ravel(), linestyle="none", marker=marker, ms=markersize,
                mfc=color, mec="black", mew=0.4, scalex=False, scaley=False)
        handles.append(Line2D([], [], color=color, marker=marker, mfc=color, mec="black",
                              mew=0.4, lw=linewidth, ms=markersize + 1, label=expert))
    return handles


def plot_readings(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float], *,
                  colors: Mapping[str, str] | None = None, levels: bool = True,
                  legend: bool = True, markersize: float = 4.0, linewidth: float = 1.5,
                  zoom_mm: float | None = None) -> Axes:
    """Draw every expert reading of one file on a sagittal view in mm.

    Each vertebra is its three height segments and six points; one colour and marker per
    expert.

    Parameters
    ----------
    ax : Axes
        A sagittal view in mm, e.g. from :func:`plot_sagittal`.
    frame : DataFrame
        Readings of one file.
    spacing : sequence of float
        Voxel spacing (row, col, slice) in mm.
    colors : mapping, optional
        Expert -> colour; default :func:`expert_colors`.
    levels, legend : bool
        Write the level names (v2) beside the vertebrae; add a legend of the experts.
    markersize, linewidth : float
        Point size and segment width (points).
    zoom_mm : float, optional
        Limit the view to the readings' box with this margin (mm), inside the image.
    """
    one_file(frame, "plot_readings")
    colors = dict(colors) if colors is not None else expert_colors(frame["expert"])
    missing = sorted(set(frame["expert"].astype(str)) - set(colors))
    if missing:
        raise ValueError(f"plot_readings: no colour for experts {missing}; give every "
                         "expert a colour or leave colors=None")
    handles = draw_readings(ax, frame, spacing, colors, markersize=markersize,
                             linewidth=linewidth)
    if levels and frame["level"].notna().any():
        pts = points(frame)
        dr, ds = float(spacing[0]), float(spacing[2])
        table = pd.DataFrame({"level": frame["level"].to_numpy(dtype=object),
                              "x": pts[:, :, 0].min(axis=1) * dr,
                              "y": pts[:, :, 2].mean(axis=1) * ds}).dropna()
        for level, group in table.groupby("level", sort=False):
            ax.text(group["x"].min() - 4.0, group["y"].mean(), str(level), ha="right",
                    va="center", fontsize=7, color="white", clip_on=True,
                    path_effects=[path_effects.withStroke(linewidth=2, foreground="black")])
    if legend:
        ax.legend(handles=handles, title="expert", loc="lower right", fontsize=7,
                  title_fontsize=7, framealpha=0.8)
    if zoom_mm is not None:
        _zoom(ax, frame, spacing, zoom_mm)
    return ax


def _zoom(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float], margin_mm: float) -> None:
    """Limit a sagittal view (mm) to the readings' box plus a margin, inside the first image."""
    pts = points(frame)
    x = pts[:, :, 0] * float(spacing[0])
    y = pts[:, :, 2] * float(spacing[2])
    x0, x1 = x.min() - margin_mm, x.max() + margin_mm
    y0, y1 = y.min() - margin_mm, y.max() + margin_mm
    images = [im.get_extent() for im in ax.get_images()]
    if images:
        left, right, bottom, top = (float(v) for v in images[0])
        x0, x1 = max(x0, min(left, right)), min(x1, max(left, right))
        y0, y1 = max(y0, min(bottom, top)), min(y1, max(bottom, top))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)


def plot_vertebra_montage(volume: Any, frame: pd.DataFrame, spacing: Sequence[float] | None = None,
                     *, size_mm: float = 50.0, window: str | tuple[float, float] = "bone",
                     ncols: int = 6, overlay: bool = True) -> Figure:
    """Every vertebra of a file as a small sagittal patch on its own column.

    Each patch is centred on the mean centre of a matched vertebra
    (:func:`~vfs_utils.readings.match_vertebrae`), cut from the rounded mean column of
    its readings, and titled with its level or ``#<vertebra_id>``.

    Parameters
    ----------
    volume : Volume
    frame : DataFrame
        Readings of one file.
    spacing : sequence of float, optional
        Voxel spacing (row, col, slice) mm; default ``volume.spacing``.
    size_mm : float
        Side of each square patch (mm).
    window : {"bone", "soft", "lung"} or (centre, width)
    ncols : int
        Patches per row of the grid.
    overlay : bool
        Draw the readings on the patches.
    """
    one_file(frame, "plot_vertebra_montage")
    spacing = tuple(float(s) for s in (spacing if spacing is not None else volume_spacing(volume)))
    matched = match_vertebrae(frame)
    centres = vertebra_centres(frame)
    colors = expert_colors(frame["expert"])
    n = len(centres)
    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols + 0.4, 1.75 * nrows + 0.7),
                             squeeze=False, layout="constrained")
    vmin, vmax = vmin_vmax(window)
    dr, _, ds = spacing
    half = size_mm / 2
    rows, cols, slices = volume.array.shape
    handles: dict[str, Line2D] = {}
    for k, (ax, centre) in enumerate(zip(axes.flat, centres.itertuples())):
        readings = matched[matched["vertebra_id"] == centre.vertebra_id]
        c = int(np.clip(round(float(readings["column"].mean())), 0, cols - 1))
        r0 = int(np.clip(np.floor((centre.row * dr - half) / dr), 0, rows - 1))
        r1 = int(np.clip(np.ceil((centre.row * dr + half) / dr), 0, rows - 1))
        s0 = int(np.clip(np.floor((centre.slice * ds - half) / ds), 0, slices - 1))
        s1 = int(np.clip(np.ceil((centre.slice * ds + half) / ds), 0, slices - 1))
        x0, y0 = centre.row * dr, centre.slice * ds
        patch = volume.array[r0:r1 + 1, c, s0:s1 + 1].T
        ax.set_facecolor("black")
        ax.imshow(patch, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest",
                  extent=((r0 - 0.5) * dr - x0, (r1 + 0.5) * dr - x0,
                          (s1 + 0.5) * ds - y0, (s0 - 0.5) * ds - y0))
        if overlay:
            for h in draw_readings(ax, readings, spacing, colors, offset=(x0, y0),
                                    markersize=2.5, linewidth=1.0):
                handles.setdefault(h.get_label(), h)
        ax.set_xlim(-half, half)
        ax.set_ylim(half, -half)
        ax.set_aspect("equal")
        label = centre.level if centre.level is not None else f"#{centre.vertebra_id}"
        ax.set_title(f"{label} (col {c})", fontsize=8)
        ax.tick_params(labelsize=6)
        if k % ncols == 0:
            ax.set_ylabel("H-F (mm)", fontsize=7)
        if k >= n - ncols:
            ax.set_xlabel("A-P (mm)", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.remove()
    if overlay and handles:
        fig.legend(handles=[handles[e] for e in sorted(handles)], title="expert",
                   loc="outside lower center", ncols=len(handles), fontsize=7,
                   title_fontsize=7)
    fig.suptitle(f"{n} vertebrae, {size_mm:g} mm patches centred on each vertebra "
                 f"({window_name(window)})", fontsize=TITLE_SIZE)
    return fig

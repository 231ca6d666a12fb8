"""Figures of the spine: sagittal views, expert overlays, a curved reformation, montages.

Every function draws in millimetres: a sagittal slice ``array[:, column, :]``
is shown with the row axis (anterior -> posterior) horizontal and the slice
axis (head -> feet) vertical, head at the top, each pixel ``spacing[0]`` mm
wide and ``spacing[2]`` mm tall, so the aspect ratio is the patient's. Expert
readings are coloured from the colour-blind-safe Okabe-Ito palette and also
differ by marker, so they can be told apart in grey print too.

A *volume* is anything with ``array`` (rows, cols, slices, in HU) and
``spacing`` (row, col, slice, in mm) attributes, such as
:class:`vfs_utils.dicom.Volume`. A *frame* is a table of readings from
:func:`vfs_utils.annotation.read_annotations`, restricted to one file.

Functions return matplotlib ``Axes`` or ``Figure`` objects and never call
``plt.show()``.
"""
from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib.patheffects as path_effects
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy import ndimage
from scipy.interpolate import CubicSpline

from .annotation import points
from .matching import match_vertebrae

__all__ = [
    "ENV_STATIC_FIGURES",
    "OKABE_ITO",
    "WINDOWS",
    "CurvedReformation",
    "SliceBrowser",
    "curved_reformation",
    "expert_colors",
    "overlay_readings",
    "sagittal_column",
    "sagittal_extent",
    "show_curved_reformation",
    "show_sagittal",
    "slice_browser",
    "vertebra_centres",
    "vertebra_columns",
    "vertebra_montage",
    "zoom_to_readings",
]

#: Display windows as (centre, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "bone": (400.0, 1800.0),
    "soft": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}

#: The Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), name -> hex.
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "black": "#000000",
}
# Expert colours: the Okabe-Ito colours that stand out on a grey CT (no black).
_EXPERT_PALETTE = ("#E69F00", "#56B4E9", "#F0E442", "#009E73", "#CC79A7", "#D55E00", "#0072B2")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_AIR_HU = -1024.0
_TITLE_SIZE = 10
_LABEL_X = "anterior-posterior (mm)"
_LABEL_Y = "head-feet (mm)"

#: Set to ``1`` to make :func:`slice_browser` always return a static figure.
ENV_STATIC_FIGURES = "VFS_STATIC_FIGURES"


# --------------------------------------------------------------------------- helpers
def _one_file(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if len(frame) == 0:
        raise ValueError(f"{what}: the frame has no readings; select a file with readings, "
                         "e.g. frame[frame['file'] == name].")
    if "file" in frame.columns:
        files = pd.unique(frame["file"])
        if len(files) > 1:
            raise ValueError(f"{what}: the frame holds readings of {len(files)} files "
                             f"({', '.join(map(str, files[:3]))}...); the readings of one image "
                             "are drawn at a time: select one with frame[frame['file'] == name].")
    return frame


def _vmin_vmax(window: str | tuple[float, float]) -> tuple[float, float]:
    """(vmin, vmax) in HU of a window name or a (centre, width) pair."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}: use one of {sorted(WINDOWS)} or a "
                             "(centre, width) pair in HU")
        centre, width = WINDOWS[window]
    else:
        centre, width = (float(v) for v in window)
        if width <= 0:
            raise ValueError(f"window width must be positive, got {width} HU")
    return centre - width / 2, centre + width / 2


def _window_name(window: str | tuple[float, float]) -> str:
    if isinstance(window, str):
        return {"soft": "soft-tissue"}.get(window, window) + " window"
    centre, width = window
    return f"window {centre:g}/{width:g} HU"


def _spacing(volume: Any) -> tuple[float, float, float]:
    spacing = tuple(float(s) for s in volume.spacing)
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise ValueError(f"volume spacing must be 3 positive mm values (row, col, slice), got "
                         f"{volume.spacing!r}")
    return spacing  # type: ignore[return-value]


def _column_index(volume: Any, column: float) -> int:
    cols = volume.array.shape[1]
    c = int(round(float(column)))
    if not 0 <= c < cols:
        raise ValueError(f"column {column} is outside the volume (0..{cols - 1})")
    return c


def sagittal_extent(shape: Sequence[int], spacing: Sequence[float]
                    ) -> tuple[float, float, float, float]:
    """The ``imshow`` extent (mm) of a sagittal slice of a volume.

    Parameters
    ----------
    shape : sequence of int
        Volume shape (rows, cols, slices).
    spacing : sequence of float
        Voxel spacing (row, col, slice) in mm.

    Returns
    -------
    tuple of float
        ``(left, right, bottom, top)``: pixel edges in mm, the centre of voxel
        ``(row, slice)`` at ``(row * spacing[0], slice * spacing[2])``; top is
        the head (slice 0), so ``top < bottom``.
    """
    rows, _, slices = (int(s) for s in shape)
    dr, _, ds = (float(s) for s in spacing)
    return (-0.5 * dr, (rows - 0.5) * dr, (slices - 0.5) * ds, -0.5 * ds)


def _figsize(width_mm: float, height_mm: float, width_in: float = 5.0) -> tuple[float, float]:
    height_in = float(np.clip(width_in * height_mm / max(width_mm, 1e-6), 2.5, 9.0))
    return width_in, height_in


# --------------------------------------------------------------------------- columns
def sagittal_column(frame: pd.DataFrame) -> int:
    """The sagittal column to show a file's readings on, the upstream way.

    Parameters
    ----------
    frame : DataFrame
        Readings of one file (:func:`~vfs_utils.annotation.read_annotations`).

    Returns
    -------
    int
        The mean of the ``column`` of every reading, rounded to a voxel index.
        Each vertebra was drawn on its own column (see
        :func:`vertebra_columns`); the mean is one slice that shows them all
        roughly.
    """
    _one_file(frame, "sagittal_column")
    return int(round(float(frame["column"].mean())))


def vertebra_columns(frame: pd.DataFrame) -> pd.Series:
    """The sagittal column each reading was drawn on, as voxel indices.

    Parameters
    ----------
    frame : DataFrame
        Readings (:func:`~vfs_utils.annotation.read_annotations`).

    Returns
    -------
    Series
        Integer column per reading (rounded ``column``), same index as ``frame``.
    """
    return frame["column"].round().astype("int64").rename("column")


def vertebra_centres(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per vertebra of a file: its centre averaged over the experts.

    Parameters
    ----------
    frame : DataFrame
        Readings of one file.

    Returns
    -------
    DataFrame
        Columns ``vertebra_id`` (:func:`~vfs_utils.matching.match_vertebrae`),
        ``level`` (None in v1), ``row``, ``col``, ``slice`` (voxel indices: the
        mean of the six points over every reading of that vertebra) and
        ``n_readings``; sorted head -> feet.
    """
    _one_file(frame, "vertebra_centres")
    matched = match_vertebrae(frame)
    centre = points(matched).mean(axis=1)
    table = pd.DataFrame({"vertebra_id": matched["vertebra_id"].to_numpy(),
                          "level": matched["level"].to_numpy(dtype=object),
                          "row": centre[:, 0], "col": centre[:, 1], "slice": centre[:, 2]})
    out = table.groupby("vertebra_id", sort=True).agg(
        level=("level", lambda s: s.dropna().mode().iloc[0] if s.notna().any() else None),
        row=("row", "mean"), col=("col", "mean"), slice=("slice", "mean"),
        n_readings=("row", "size"))
    out = out.reset_index().sort_values("slice", kind="stable").reset_index(drop=True)
    out["level"] = out["level"].astype(object).where(out["level"].notna(), None)
    return out


# --------------------------------------------------------------------------- sagittal
def show_sagittal(volume: Any, column: float, *, window: str | tuple[float, float] = "bone",
                  ax: Axes | None = None, title: str | None = None,
                  colorbar: bool = False) -> Axes:
    """Show one sagittal slice in millimetres, head at the top.

    Parameters
    ----------
    volume : Volume
        ``array`` (rows, cols, slices) in HU and ``spacing`` (row, col, slice) mm.
    column : float
        Sagittal column (voxel index along ``cols``), rounded to the nearest.
    window : {"bone", "soft", "lung"} or (centre, width)
        Display window in HU (see :data:`WINDOWS`).
    ax : Axes, optional
        Where to draw; a new figure sized to the slice otherwise.
    title : str, optional
        Default: the column and the window.
    colorbar : bool
        Add a colour bar in HU.

    Returns
    -------
    Axes
        The x axis runs anterior -> posterior (``row * spacing[0]`` mm), the y
        axis head -> feet (``slice * spacing[2]`` mm); aspect 1 in mm.
    """
    spacing = _spacing(volume)
    c = _column_index(volume, column)
    extent = sagittal_extent(volume.array.shape, spacing)
    if ax is None:
        _, ax = plt.subplots(figsize=_figsize(extent[1] - extent[0], extent[2] - extent[3]),
                             layout="constrained")
    vmin, vmax = _vmin_vmax(window)
    image = ax.imshow(volume.array[:, c, :].T, cmap="gray", vmin=vmin, vmax=vmax,
                      extent=extent, origin="upper", interpolation="nearest")
    ax.set_aspect("equal")
    ax.set_xlabel(_LABEL_X)
    ax.set_ylabel(_LABEL_Y)
    ax.set_title(title if title is not None else
                 f"Sagittal slice at column {c} ({_window_name(window)})", fontsize=_TITLE_SIZE)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="HU", shrink=0.8)
    return ax


# --------------------------------------------------------------------------- overlays
def expert_colors(experts: Sequence[str]) -> dict[str, str]:
    """A colour-blind-safe colour per expert (Okabe-Ito).

    Experts named ``expert<k>`` keep the same colour in every figure (colour
    ``k`` of the palette) as long as that keeps them distinct; otherwise
    colours go by sorted name.

    Parameters
    ----------
    experts : sequence of str

    Returns
    -------
    dict
        Expert name -> hex colour.
    """
    names = sorted(dict.fromkeys(str(e) for e in experts))
    digits = ["".join(ch for ch in n if ch.isdigit()) for n in names]
    n = len(_EXPERT_PALETTE)
    if all(digits) and len({int(d) % n for d in digits}) == len(names):
        return {name: _EXPERT_PALETTE[int(d) % n] for name, d in zip(names, digits)}
    return {name: _EXPERT_PALETTE[i % n] for i, name in enumerate(names)}


def _marker(color: str, colors: Mapping[str, str]) -> str:
    palette = list(_EXPERT_PALETTE)
    return _MARKERS[palette.index(color) % len(_MARKERS)] if color in palette else "o"


def _draw_readings(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float],
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
        marker = _marker(color, colors)
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


def overlay_readings(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float], *,
                     colors: Mapping[str, str] | None = None, levels: bool = True,
                     legend: bool = True, markersize: float = 4.0,
                     linewidth: float = 1.5) -> Axes:
    """Draw every expert reading of one file on a sagittal view in mm.

    Each vertebra is drawn as its three height segments (anterior, middle,
    posterior) and six points; one colour and marker per expert.

    Parameters
    ----------
    ax : Axes
        A sagittal view in mm, e.g. from :func:`show_sagittal`.
    frame : DataFrame
        Readings of one file (:func:`~vfs_utils.annotation.read_annotations`).
    spacing : sequence of float
        Voxel spacing (row, col, slice) in mm.
    colors : mapping, optional
        Expert -> colour; default :func:`expert_colors` (Okabe-Ito).
    levels : bool
        Write the level names (v2) beside the vertebrae, anterior side.
    legend : bool
        Add a legend with one entry per expert.
    markersize, linewidth : float
        Point size (points) and segment width (points).

    Returns
    -------
    Axes
    """
    _one_file(frame, "overlay_readings")
    colors = dict(colors) if colors is not None else expert_colors(frame["expert"])
    missing = sorted(set(frame["expert"].astype(str)) - set(colors))
    if missing:
        raise ValueError(f"overlay_readings: no colour for experts {missing}; give every "
                         "expert a colour or leave colors=None")
    handles = _draw_readings(ax, frame, spacing, colors, markersize=markersize,
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
    return ax


def zoom_to_readings(ax: Axes, frame: pd.DataFrame, spacing: Sequence[float], *,
                     margin_mm: float = 25.0) -> Axes:
    """Limit a sagittal view (mm) to the box around a file's readings.

    Parameters
    ----------
    ax : Axes
        A sagittal view in mm, e.g. from :func:`show_sagittal`.
    frame : DataFrame
        Readings (:func:`~vfs_utils.annotation.read_annotations`).
    spacing : sequence of float
        Voxel spacing (row, col, slice) in mm.
    margin_mm : float
        Space kept around the points (mm).

    Returns
    -------
    Axes
        Head stays at the top; the aspect is unchanged; the limits stay inside the
        first image drawn on ``ax`` (if any).
    """
    if len(frame) == 0:
        raise ValueError("zoom_to_readings: the frame has no readings")
    pts = points(frame)
    x = pts[:, :, 0] * float(spacing[0])
    y = pts[:, :, 2] * float(spacing[2])
    x0, x1 = x.min() - margin_mm, x.max() + margin_mm
    y0, y1 = y.min() - margin_mm, y.max() + margin_mm
    images = [im.get_extent() for im in ax.get_images()]
    if images:  # stay inside the image
        left, right, bottom, top = (float(v) for v in images[0])
        x0, x1 = max(x0, min(left, right)), min(x1, max(left, right))
        y0, y1 = max(y0, min(bottom, top)), min(y1, max(bottom, top))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    return ax


# --------------------------------------------------------------------------- CPR
class CurvedReformation(NamedTuple):
    """A straightened image along the spine.

    Attributes
    ----------
    image : ndarray, shape (n_along, n_across)
        HU (float32) sampled on lines perpendicular to the centre line, head at row 0,
        anterior at column 0.
    extent : tuple of float
        ``imshow`` extent in mm: ``(left, right, bottom, top)``; x is the
        offset from the centre line (negative anterior), y the distance along
        the centre line from the first (head-most) centre.
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
    """Spline centre line sampled every ``step_mm`` of arc length.

    Returns points (n, 3) in mm (row, col, slice axes), unit tangents (n, 3),
    the arc-length positions (n,) in mm and the arc-length position of each
    input centre.
    """
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

    A natural cubic spline (:class:`scipy.interpolate.CubicSpline`, chord-length
    parameter, in mm) runs through the centres, head to feet; it is sampled
    every ``step_mm`` of arc length (and ``margin_mm`` beyond the end centres,
    straight on). At each sample a line perpendicular to the spline in the
    sagittal (row, slice) plane, ``width_mm`` long, is sampled with
    :func:`scipy.ndimage.map_coordinates`; the column follows the spline, so
    each vertebra is cut on its own column.

    Parameters
    ----------
    volume : Volume
        ``array`` (rows, cols, slices) in HU and ``spacing`` (row, col, slice) mm.
    centres_vox : (n, 3) array or DataFrame
        Vertebra centres ``[row, col, slice]`` in voxel indices (at least 2),
        e.g. :func:`vertebra_centres` (columns row, col, slice).
    width_mm : float
        Length of the perpendicular lines (mm), centred on the centre line.
    step_mm : float, optional
        Sampling step along and across the line (mm); default: the smaller
        of the row and slice spacings.
    margin_mm : float
        How far the line continues beyond the first and last centre (mm).
    order : int
        Spline order of the interpolation (1: linear).

    Returns
    -------
    CurvedReformation
        ``image`` (along, across) in HU, outside the volume -1024; ``extent``
        in mm for ``imshow``; ``centre_line`` in voxel indices.
    """
    spacing = _spacing(volume)
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
                                    cval=_AIR_HU, output=np.float32)
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
        Vertebra centres (voxel indices); a :func:`vertebra_centres` frame
        also labels the levels.
    window : {"bone", "soft", "lung"} or (centre, width)
    width_mm, step_mm, margin_mm : float
        As in :func:`curved_reformation`.
    column : float, optional
        Sagittal column of the left panel; default the mean centre column.

    Returns
    -------
    Figure
        Left: sagittal slice with the centre line and the band sampled;
        right: the reformation, offset from the centre line (mm) across and
        distance along the spine (mm) down.
    """
    spacing = _spacing(volume)
    centres = _centres_array(centres_vox)
    cpr = curved_reformation(volume, centres, width_mm=width_mm, step_mm=step_mm,
                             margin_mm=margin_mm)
    col = float(np.mean(centres[:, 1])) if column is None else float(column)
    extent = sagittal_extent(volume.array.shape, spacing)
    height = extent[2] - extent[3]
    fig, (left, right) = plt.subplots(
        1, 2, figsize=_figsize(extent[1] - extent[0] + width_mm * 1.3, height, 9.0),
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
    vmin, vmax = _vmin_vmax(window)
    right.imshow(cpr.image, cmap="gray", vmin=vmin, vmax=vmax, extent=cpr.extent,
                 origin="upper", interpolation="nearest")
    right.set_aspect("equal")
    right.axvline(0.0, color=OKABE_ITO["orange"], lw=0.8, ls=":")
    right.set_xlabel("offset from the centre line (mm)\nanterior <- -> posterior")
    right.set_ylabel("distance along the spine (mm)")
    right.set_title("Curved planar reformation", fontsize=_TITLE_SIZE)
    if isinstance(centres_vox, pd.DataFrame) and "level" in centres_vox:
        _, _, _, centre_arc = _centre_line(centres, spacing, 1.0, 0.0)
        order = np.argsort(centres[:, 2], kind="stable")
        for arc, level in zip(centre_arc, centres_vox["level"].to_numpy()[order]):
            if level is not None and not pd.isna(level):
                right.text(cpr.extent[0] + 1.0, arc, str(level), fontsize=7, va="center",
                           color="white", path_effects=[
                               path_effects.withStroke(linewidth=2, foreground="black")])
    fig.suptitle(f"Straightening the spine ({_window_name(window)})", fontsize=_TITLE_SIZE + 1)
    return fig


# --------------------------------------------------------------------------- montage
def vertebra_montage(volume: Any, frame: pd.DataFrame, spacing: Sequence[float] | None = None,
                     *, size_mm: float = 50.0, window: str | tuple[float, float] = "bone",
                     ncols: int = 6, overlay: bool = True) -> Figure:
    """Every vertebra of a file as a small sagittal patch on its own column.

    The readings of the experts are matched into vertebrae
    (:func:`~vfs_utils.matching.match_vertebrae`); each patch is centred on
    the mean centre of its vertebra, cut from the rounded mean column of its
    readings and drawn with those readings.

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

    Returns
    -------
    Figure
        One Axes per vertebra, head to feet, titled with the level (v2) or
        ``#<vertebra_id>``; coordinates in mm from the vertebra centre.
    """
    _one_file(frame, "vertebra_montage")
    spacing = tuple(float(s) for s in (spacing if spacing is not None else _spacing(volume)))
    matched = match_vertebrae(frame)
    centres = vertebra_centres(frame)
    colors = expert_colors(frame["expert"])
    n = len(centres)
    ncols = max(1, min(int(ncols), n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols + 0.4, 1.75 * nrows + 0.7),
                             squeeze=False, layout="constrained")
    vmin, vmax = _vmin_vmax(window)
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
            for h in _draw_readings(ax, readings, spacing, colors, offset=(x0, y0),
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
                 f"({_window_name(window)})", fontsize=_TITLE_SIZE)
    return fig


# --------------------------------------------------------------------------- browser
def _has_widget_kernel() -> bool:
    """ipywidgets importable and an IPython kernel (with a comm manager) running."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _draw_browser(fig: Figure, volume: Any, frame: pd.DataFrame | None,
                  columns: Sequence[int], window: str | tuple[float, float],
                  near_mm: float) -> None:
    spacing = _spacing(volume)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    colors = expert_colors(frame["expert"]) if frame is not None and len(frame) else {}
    for ax, c in zip(axes, columns):
        show_sagittal(volume, c, window=window, ax=ax, title=f"column {c}")
        if frame is not None and len(frame):
            near = frame[(frame["column"] - c).abs() * spacing[1] <= near_mm]
            if len(near):
                handles = _draw_readings(ax, near, spacing, colors, markersize=3)
                ax.legend(handles=handles, title="expert", loc="upper right", fontsize=6,
                          title_fontsize=6)
        if ax is not axes[0]:
            ax.set_ylabel("")


class SliceBrowser:
    """An ipywidgets slider over the sagittal columns of a volume.

    Its notebook output is the live widget where a widget frontend runs; the
    plain-text form (what nbval compares) is deterministic, and static
    renderers (GitHub, nbviewer, HTML export) get a PNG of the current view.

    Attributes
    ----------
    widget : ipywidgets.VBox
        The slider and the image.
    figure : Figure
        The figure re-drawn for each column (not managed by pyplot).
    """

    def __init__(self, volume: Any, frame: pd.DataFrame | None, column: int,
                 window: str | tuple[float, float], near_mm: float):
        import ipywidgets as widgets

        self._volume, self._frame, self._window, self._near = volume, frame, window, near_mm
        extent = sagittal_extent(volume.array.shape, _spacing(volume))
        self.figure = Figure(figsize=_figsize(extent[1] - extent[0], extent[2] - extent[3]),
                             layout="constrained")
        cols = volume.array.shape[1]
        self._slider = widgets.IntSlider(value=column, min=0, max=cols - 1, step=1,
                                         description="column", continuous_update=False)
        self._image = widgets.Image(format="png")
        self.widget = widgets.VBox([self._slider, self._image])
        self._slider.observe(lambda change: self.show(change["new"]), names="value")
        self.show(column)

    @property
    def column(self) -> int:
        """The column shown."""
        return int(self._slider.value)

    def show(self, column: int) -> None:
        """Draw ``column`` (also moves the slider)."""
        column = _column_index(self._volume, column)
        if self._slider.value != column:
            self._slider.value = column  # the observer calls show again
            return
        self.figure.clear()
        _draw_browser(self.figure, self._volume, self._frame, [column], self._window,
                      self._near)
        self.figure.axes[0].set_title(f"Sagittal slice at column {column} "
                                      f"({_window_name(self._window)})", fontsize=_TITLE_SIZE)
        self._last_png = self._png()
        self._image.value = self._last_png

    def _png(self) -> bytes:
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=72)
        return buffer.getvalue()

    def __repr__(self) -> str:
        cols = self._volume.array.shape[1]
        return f"SliceBrowser(column={self.column}, columns=0..{cols - 1})"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/plain"] = repr(self)
        bundle["image/png"] = self._last_png
        return bundle


def slice_browser(volume: Any, frame: pd.DataFrame | None = None, *,
                  window: str | tuple[float, float] = "bone", column: float | None = None,
                  interactive: bool | None = None, near_mm: float = 3.0,
                  step_mm: float = 15.0) -> SliceBrowser | Figure:
    """Browse the sagittal slices: a slider where widgets work, else a static figure.

    Parameters
    ----------
    volume : Volume
    frame : DataFrame, optional
        Readings of one file; those drawn within ``near_mm`` of the column
        shown are overlaid.
    window : {"bone", "soft", "lung"} or (centre, width)
    column : float, optional
        Starting column; default :func:`sagittal_column` of ``frame``, else
        the middle column.
    interactive : bool, optional
        True: the widget; False: the static figure; None (default): the
        widget when ipywidgets is importable and an IPython kernel runs,
        unless the environment variable ``VFS_STATIC_FIGURES=1`` asks for
        static figures. A kernel run without a frontend (nbconvert, nbval)
        still gets the widget: its text form is deterministic and it carries
        a PNG of the first view for static renderers.
    near_mm : float
        Readings whose column lies within this distance (mm) are drawn.
    step_mm : float
        Static figure: distance (mm) between its three columns.

    Returns
    -------
    SliceBrowser or Figure
        The static figure shows three columns: ``step_mm`` to the right of,
        at, and to the left of the starting column.
    """
    spacing = _spacing(volume)
    if frame is not None and len(frame):
        _one_file(frame, "slice_browser")
    if column is None:
        column = (sagittal_column(frame) if frame is not None and len(frame)
                  else volume.array.shape[1] // 2)
    start = _column_index(volume, column)
    if interactive is None:
        interactive = os.environ.get(ENV_STATIC_FIGURES) != "1" and _has_widget_kernel()
    if interactive:
        return SliceBrowser(volume, frame, start, window, near_mm)
    step = max(1, int(round(step_mm / spacing[1])))
    cols = volume.array.shape[1]
    columns = [int(np.clip(start + d, 0, cols - 1)) for d in (-step, 0, step)]
    extent = sagittal_extent(volume.array.shape, spacing)
    fig = plt.figure(figsize=_figsize(3 * (extent[1] - extent[0]), extent[2] - extent[3], 10.0),
                     layout="constrained")
    _draw_browser(fig, volume, frame, columns, window, near_mm)
    fig.suptitle(f"Sagittal slices {step_mm:g} mm apart ({_window_name(window)}; static view: "
                 "run in Jupyter for the slider)", fontsize=_TITLE_SIZE)
    return fig


# --- morphometry figures
# Figures of lesson 04 (vertebral heights, Genant grades, agreement, sensitivity).
# Colours: Okabe-Ito (OKABE_ITO above); heat maps: the colour-blind-safe "cividis".
#: Colour of each Genant grade 0-3 (Okabe-Ito).
GRADE_COLORS: dict[int, str] = {0: OKABE_ITO["sky blue"], 1: OKABE_ITO["orange"],
                                2: OKABE_ITO["vermillion"], 3: OKABE_ITO["reddish purple"]}
_SERIES_COLORS = (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"],
                  OKABE_ITO["reddish purple"], OKABE_ITO["vermillion"], OKABE_ITO["sky blue"])
_HEIGHT_NAMES = ("Ha", "Hm", "Hp")


def draw_vertebra_heights(points_vox: np.ndarray, spacing: Sequence[float], *,
                          volume: Any = None, ax: Axes | None = None, margin_mm: float = 15.0,
                          title: str | None = None) -> Axes:
    """One vertebra's six keypoints and its three heights Ha, Hm, Hp, in mm.

    Drawn in the sagittal plane of :func:`show_sagittal`: x = ``row * spacing[0]``
    (anterior -> posterior), y = ``slice * spacing[2]`` (head at the top). The
    pairs are ordered by row, so the first is anterior (supine patient).

    Parameters
    ----------
    points_vox : array_like, shape (6, 3)
        Keypoints ``[row, col, slice]`` in voxels.
    spacing : sequence of 3 float
        Voxel spacing (row, col, slice) in mm.
    volume : Volume, optional
        When given, the sagittal slice through the points' mean column is shown
        behind them (bone window), cropped to the vertebra plus ``margin_mm``.
    ax : Axes, optional
        Where to draw; a new figure otherwise.
    margin_mm : float
        Space around the vertebra, in mm.
    title : str, optional
        Default: the three heights in mm.

    Returns
    -------
    Axes
    """
    pts = np.asarray(points_vox, dtype=float)
    if pts.shape != (6, 3):
        raise ValueError(f"points_vox must have shape (6, 3) [row, col, slice], not {pts.shape}")
    sr, _, ss = (float(s) for s in spacing)
    pairs = pts.reshape(3, 2, 3)
    pairs = pairs[np.argsort(pairs[:, :, 0].mean(axis=1), kind="stable")]
    xy = np.stack([pairs[:, :, 0] * sr, pairs[:, :, 2] * ss], axis=-1)      # (3, 2, 2) mm
    h = np.linalg.norm((pairs[:, 1] - pairs[:, 0]) * np.array([sr, 0.0, ss]), axis=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.0), layout="constrained")
    if volume is not None:
        show_sagittal(volume, float(pts[:, 1].mean()), ax=ax)
    colors = (OKABE_ITO["orange"], OKABE_ITO["bluish green"], OKABE_ITO["sky blue"])
    for k in range(3):
        (x0, y0), (x1, y1) = xy[k]
        ax.plot([x0, x1], [y0, y1], "-", color=colors[k], lw=2.5,
                label=f"{_HEIGHT_NAMES[k]} = {h[k]:.1f} mm")
        ax.plot([x0, x1], [y0, y1], "o", color=colors[k], mec="black", ms=6)
        ax.annotate(_HEIGHT_NAMES[k], ((x0 + x1) / 2, (y0 + y1) / 2), xytext=(6, 0),
                    textcoords="offset points", color="black", fontsize=10, va="center",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                          "alpha": 0.8})
    lo, hi = xy.reshape(-1, 2).min(axis=0), xy.reshape(-1, 2).max(axis=0)
    ax.set_xlim(lo[0] - margin_mm, hi[0] + margin_mm)
    ax.set_ylim(hi[1] + margin_mm, lo[1] - margin_mm)      # head at the top
    ax.set_aspect("equal")
    ax.set_xlabel(_LABEL_X)
    ax.set_ylabel(_LABEL_Y)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title if title is not None else "Six keypoints, three heights",
                 fontsize=_TITLE_SIZE)
    return ax


def plot_distributions(tables: Mapping[str, pd.DataFrame], columns: Sequence[str], *,
                       xlabels: Mapping[str, str] | None = None, bins: int = 40,
                       ranges: Mapping[str, tuple[float, float]] | None = None,
                       title: str | None = None) -> Figure:
    """Histograms (densities) of some columns, one panel per column, one colour per table.

    Parameters
    ----------
    tables : mapping name -> DataFrame
        For example ``{"v1": table_v1, "v2": table_v2}`` from
        :func:`vfs_utils.morphometry.morphometry_table`.
    columns : sequence of str
        Columns to histogram (NaN dropped).
    xlabels : mapping column -> str, optional
        Axis labels with units; default: the column name.
    bins : int
        Number of bins, shared by the tables of one panel.
    ranges : mapping column -> (low, high), optional
        Histogram range per column; default: the 0.5 and 99.5 percentiles of all tables.
    title : str, optional
        Figure title.

    Returns
    -------
    Figure
    """
    fig, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 3.2),
                             layout="constrained", squeeze=False)
    for ax, column in zip(axes[0], columns):
        values = {name: t[column].to_numpy(dtype=float) for name, t in tables.items()}
        values = {k: v[np.isfinite(v)] for k, v in values.items()}
        both = np.concatenate(list(values.values())) if values else np.array([])
        if ranges and column in ranges:
            lo, hi = ranges[column]
        elif len(both):
            lo, hi = np.percentile(both, [0.5, 99.5])
        else:
            lo, hi = 0.0, 1.0
        for i, (name, v) in enumerate(values.items()):
            ax.hist(v, bins=bins, range=(lo, hi), density=True, histtype="step", lw=1.8,
                    color=_SERIES_COLORS[i % len(_SERIES_COLORS)], label=f"{name} (n={len(v)})")
        ax.set_xlabel((xlabels or {}).get(column, column))
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=_TITLE_SIZE + 1)
    return fig


def plot_grade_prevalence(table: pd.DataFrame, *, grade: str = "grade",
                          order: Sequence[str] | None = None, ax: Axes | None = None,
                          title: str | None = None) -> Axes:
    """Stacked bars: fraction of vertebrae of each grade 1-3 per level.

    Parameters
    ----------
    table : DataFrame
        With ``level`` and a grade column, e.g. :func:`vfs_utils.morphometry.consensus`.
    grade : str
        The grade column.
    order : sequence of str, optional
        Level order; default :data:`vfs_utils.annotation.LEVELS` (levels present).
    ax : Axes, optional
    title : str, optional

    Returns
    -------
    Axes
    """
    from .annotation import LEVELS

    t = table[table["level"].notna() & table[grade].notna()]
    counts = pd.crosstab(t["level"], t[grade].astype(int)).reindex(columns=[0, 1, 2, 3],
                                                                    fill_value=0)
    levels = [lv for lv in (order or LEVELS) if lv in counts.index]
    counts = counts.loc[levels]
    frac = counts.div(counts.sum(axis=1), axis=0)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(levels) + 1), 3.4),
                             layout="constrained")
    x = np.arange(len(levels))
    bottom = np.zeros(len(levels))
    for g in (1, 2, 3):
        ax.bar(x, frac[g].to_numpy(), bottom=bottom, color=GRADE_COLORS[g], edgecolor="black",
               lw=0.4, label=f"grade {g}")
        bottom += frac[g].to_numpy()
    for xi, n in zip(x, counts.sum(axis=1)):
        ax.text(xi, bottom[xi] + 0.005, str(int(n)), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x, levels, rotation=90)
    ax.set_xlabel("vertebral level (small numbers: vertebrae)")
    ax.set_ylabel("fraction of vertebrae")
    ax.set_ylim(0, max(float(bottom.max()), 0.05) * 1.3)
    ax.legend(fontsize=8, ncols=3, loc="upper left")
    ax.set_title(title or "Genant grade by level", fontsize=_TITLE_SIZE)
    return ax


def plot_kappa_heatmap(pairwise: pd.DataFrame, *, ax: Axes | None = None,
                       title: str | None = None, value: str = "kappa") -> Axes:
    """Heat map of a pairwise agreement statistic between experts.

    Parameters
    ----------
    pairwise : DataFrame
        ``expert_a, expert_b`` and ``value`` columns, e.g.
        :attr:`vfs_utils.morphometry.Agreement.pairwise`.
    ax : Axes, optional
    title : str, optional
    value : str
        Column to show (``"kappa"`` or ``"exact"``).

    Returns
    -------
    Axes
        Cells of pairs without common vertebrae are blank.
    """
    experts = sorted(set(pairwise["expert_a"]) | set(pairwise["expert_b"]))
    m = pd.DataFrame(np.nan, index=experts, columns=experts)
    for r in pairwise.itertuples(index=False):
        v = float(getattr(r, value))
        m.loc[r.expert_a, r.expert_b] = m.loc[r.expert_b, r.expert_a] = v
    if ax is None:
        size = 1.0 + 0.55 * len(experts)
        _, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    image = ax.imshow(m.to_numpy(), cmap="cividis", vmin=0.0, vmax=1.0)
    for i in range(len(experts)):
        for j in range(len(experts)):
            v = m.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    ax.set_yticks(range(len(experts)), experts)
    ax.set_xlabel("expert")
    ax.set_ylabel("expert")
    ax.figure.colorbar(image, ax=ax, label=value, shrink=0.8)
    ax.set_title(title or f"Pairwise {value}", fontsize=_TITLE_SIZE)
    return ax


def plot_flip_rate(curves: Mapping[str, pd.DataFrame], *, ax: Axes | None = None,
                   title: str | None = None, xlabel: str = "keypoint noise sigma (mm)") -> Axes:
    """Grade flip rate against keypoint noise, one line per curve.

    Parameters
    ----------
    curves : mapping label -> DataFrame
        From :func:`vfs_utils.morphometry.grade_flip_rate` (``sigma_mm``,
        ``flip_rate``, ``flip_rate_sd``).
    ax : Axes, optional
    title : str, optional
    xlabel : str

    Returns
    -------
    Axes
        Error bars: standard deviation across the Monte Carlo draws.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
    for i, (label, t) in enumerate(curves.items()):
        ax.errorbar(t["sigma_mm"], 100 * t["flip_rate"], yerr=100 * t["flip_rate_sd"],
                    marker=_MARKERS[i % len(_MARKERS)], capsize=3,
                    color=_SERIES_COLORS[i % len(_SERIES_COLORS)], label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("readings whose grade changes (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Sensitivity of the Genant grade to keypoint noise",
                 fontsize=_TITLE_SIZE)
    return ax


__all__ += ["GRADE_COLORS", "draw_vertebra_heights", "plot_distributions",
            "plot_flip_rate", "plot_grade_prevalence", "plot_kappa_heatmap"]

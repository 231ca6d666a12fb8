"""A slider over the sagittal columns of a volume, or a static figure without a widget kernel."""
from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .._env import env_flag
from ..readings import one_file, sagittal_column
from ._style import (
    ENV_STATIC_FIGURES,
    TITLE_SIZE,
    column_index,
    expert_colors,
    figure_size,
    sagittal_extent,
    volume_spacing,
    window_name,
)
from .sagittal import draw_readings, plot_sagittal

__all__ = ["SliceBrowser", "slice_browser"]


def _has_widget_kernel() -> bool:
    """ipywidgets importable and an IPython kernel (with a comm manager) running."""
    # imported here: ipywidgets and IPython are optional (the notebooks extra)
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
    spacing = volume_spacing(volume)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    colors = expert_colors(frame["expert"]) if frame is not None and len(frame) else {}
    for ax, c in zip(axes, columns):
        plot_sagittal(volume, c, window=window, ax=ax, title=f"column {c}")
        if frame is not None and len(frame):
            near = frame[(frame["column"] - c).abs() * spacing[1] <= near_mm]
            if len(near):
                handles = draw_readings(ax, near, spacing, colors, markersize=3)
                ax.legend(handles=handles, title="expert", loc="upper right", fontsize=6,
                          title_fontsize=6)
        if ax is not axes[0]:
            ax.set_ylabel("")


class SliceBrowser:
    """An ipywidgets slider over the sagittal columns of a volume.

    The plain-text form (what nbval compares) is deterministic; static renderers get a
    PNG of the current view.

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
        extent = sagittal_extent(volume.array.shape, volume_spacing(volume))
        self.figure = Figure(figsize=figure_size(extent[1] - extent[0], extent[2] - extent[3]),
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
        column = column_index(self._volume, column)
        if self._slider.value != column:
            self._slider.value = column  # the observer calls show again
            return
        self.figure.clear()
        _draw_browser(self.figure, self._volume, self._frame, [column], self._window,
                      self._near)
        self.figure.axes[0].set_title(f"Sagittal slice at column {column} "
                                      f"({window_name(self._window)})", fontsize=TITLE_SIZE)
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
        Readings of one file.
    window : {"bone", "soft", "lung"} or (centre, width)
    column : float, optional
        Starting column; default ``readings.sagittal_column(frame)``, else the middle.
    interactive : bool, optional
        Default: the widget when ipywidgets and an IPython kernel are there, unless
        ``VFS_STATIC_FIGURES=1``.
    near_mm : float
        Readings whose column lies within this distance (mm) are drawn.
    step_mm : float
        Distance (mm) between the static figure's three columns.
    """
    spacing = volume_spacing(volume)
    if frame is not None and len(frame):
        one_file(frame, "slice_browser")
    if column is None:
        column = (sagittal_column(frame) if frame is not None and len(frame)
                  else volume.array.shape[1] // 2)
    start = column_index(volume, column)
    if interactive is None:
        interactive = not env_flag(ENV_STATIC_FIGURES) and _has_widget_kernel()
    if interactive:
        return SliceBrowser(volume, frame, start, window, near_mm)
    step = max(1, int(round(step_mm / spacing[1])))
    cols = volume.array.shape[1]
    columns = [int(np.clip(start + d, 0, cols - 1)) for d in (-step, 0, step)]
    extent = sagittal_extent(volume.array.shape, spacing)
    fig = plt.figure(figsize=figure_size(3 * (extent[1] - extent[0]), extent[2] - extent[3], 10.0),
                     layout="constrained")
    _draw_browser(fig, volume, frame, columns, window, near_mm)
    fig.suptitle(f"Sagittal slices {step_mm:g} mm apart ({window_name(window)}; static view: "
                 "run in Jupyter for the slider)", fontsize=TITLE_SIZE)
    return fig

"""Figures of the keypoint lesson (08): the network's 2D input, its heatmap and offsets,
predictions beside the experts', keypoint distances and a gallery of the worst vertebrae.

The 2D input is a straightened sagittal image on a 1 mm grid (see
:mod:`vfs_utils.keypoints`): drawn with the anterior-posterior offset from the spine's
centre line horizontal and the head-feet position vertical, head at the top, in mm.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ._style import OKABE_ITO, TITLE_SIZE, expert_colors

__all__ = ["plot_keypoint_distances", "plot_heatmap_offsets", "plot_keypoint_gallery",
           "plot_keypoint_input", "plot_keypoint_predictions"]

_MODEL_COLOR = OKABE_ITO["vermillion"]


def _extent(image: np.ndarray, grid_mm: float, half_rows_mm: float):
    n_u, n_v = image.shape
    # image row i = u (AP offset), column j = v (head-feet): draw transposed
    return (-half_rows_mm - 0.5 * grid_mm, -half_rows_mm + (n_u - 0.5) * grid_mm,
            (n_v - 0.5) * grid_mm, -0.5 * grid_mm)


def _to_mm(pix: np.ndarray, grid_mm: float, half_rows_mm: float) -> tuple[np.ndarray, ...]:
    pix = np.asarray(pix, float)
    return pix[..., 0] * grid_mm - half_rows_mm, pix[..., 1] * grid_mm


def _axes(ax, image, grid_mm, half_rows_mm, title, v_range=None):
    ax.imshow(image.T, cmap="gray", vmin=-1.0, vmax=2.0,
              extent=_extent(image, grid_mm, half_rows_mm), interpolation="nearest")
    ax.set_xlabel("anterior - posterior offset from the centre line (mm)")
    ax.set_ylabel("head - feet (mm)")
    ax.set_title(title, fontsize=TITLE_SIZE)
    if v_range is not None:
        ax.set_ylim(v_range[1], v_range[0])


def plot_keypoint_input(image: np.ndarray, *, grid_mm: float = 1.0, half_rows_mm: float = 48.0,
                        title: str = "The network's input: a sagittal image along the spine",
                        ax=None):
    """The straightened sagittal input (normalised HU; -1 .. 2 is -200 .. 1000 HU)."""
    if ax is None:
        n_u, n_v = image.shape
        _, ax = plt.subplots(figsize=(3.2, max(4.0, 3.2 * n_v / n_u * 0.45)))
    _axes(ax, image, grid_mm, half_rows_mm, title)
    return ax


def plot_heatmap_offsets(image: np.ndarray, heat: np.ndarray, offsets: np.ndarray,
                         points: np.ndarray, *, stride: int = 4, offset_scale: float = 16.0,
                         grid_mm: float = 1.0, half_rows_mm: float = 48.0,
                         v_range: tuple[float, float] | None = None) -> Figure:
    """Left: the centre heatmap over the input. Right: from each detected peak cell, the
    twelve offsets drawn as arrows to the six keypoints they point at."""
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 6.0), sharey=True, layout="constrained")
    _axes(axes[0], image, grid_mm, half_rows_mm, "Centre heatmap (probability)", v_range)
    h, w = heat.shape
    ext = (-half_rows_mm, -half_rows_mm + h * stride * grid_mm, w * stride * grid_mm, 0.0)
    im = axes[0].imshow(heat.T, cmap="magma", alpha=0.6, vmin=0, vmax=1, extent=ext,
                        interpolation="nearest")
    fig.colorbar(im, ax=axes[0], shrink=0.6, label="centre probability")
    _axes(axes[1], image, grid_mm, half_rows_mm, "Offsets: peak cell -> six keypoints", v_range)
    for n, p in enumerate(points):
        c = p.mean(axis=0)
        ci, cj = int(c[0] // stride), int(c[1] // stride)
        ci, cj = min(max(ci, 0), h - 1), min(max(cj, 0), w - 1)
        cell = np.array([ci * stride + (stride - 1) / 2, cj * stride + (stride - 1) / 2])
        tips = cell + offsets[:, ci, cj].reshape(6, 2) * offset_scale
        cu, cv = _to_mm(cell, grid_mm, half_rows_mm)
        tu, tv = _to_mm(tips, grid_mm, half_rows_mm)
        for u, v in zip(tu, tv):
            axes[1].annotate("", (u, v), (cu, cv), arrowprops=dict(
                arrowstyle="->", color=OKABE_ITO["yellow"], lw=0.8))
        axes[1].plot(cu, cv, "s", ms=4, color=OKABE_ITO["sky blue"],
                     label="peak cell" if n == 0 else None)
    if len(points):
        axes[1].legend(loc="lower right", fontsize=7)
    return fig


def plot_keypoint_predictions(image: np.ndarray, predicted: np.ndarray,
                              experts: Mapping[str, np.ndarray], *, grid_mm: float = 1.0,
                              half_rows_mm: float = 48.0, title: str = "",
                              v_range: tuple[float, float] | None = None, ax=None):
    """Predicted keypoints (filled, vermillion, joined as the three height segments) beside
    each expert's (open markers, Okabe-Ito), all in pixel coordinates of the input."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 6.0), layout="constrained")
    _axes(ax, image, grid_mm, half_rows_mm,
          title or "Model keypoints beside the experts'", v_range)
    colors = expert_colors(list(experts))
    markers = ("o", "s", "^", "D")
    for n, (name, pts) in enumerate(experts.items()):
        u, v = _to_mm(np.asarray(pts).reshape(-1, 2), grid_mm, half_rows_mm)
        ax.plot(u, v, markers[n % 4], ms=5, mfc="none", mew=1.0, color=colors[name],
                ls="none", label=name)
    for k, p in enumerate(np.asarray(predicted)):
        u, v = _to_mm(p, grid_mm, half_rows_mm)
        for s in range(3):
            ax.plot(u[2 * s:2 * s + 2], v[2 * s:2 * s + 2], "-", color=_MODEL_COLOR, lw=1.0)
        ax.plot(u, v, ".", ms=4, color=_MODEL_COLOR, label="model" if k == 0 else None)
    ax.legend(loc="lower right", fontsize=7)
    return ax


def plot_keypoint_distances(groups: Mapping[str, np.ndarray], *, ax=None,
                            title: str = "Keypoint distance (in-plane, per point)"):
    """Empirical distribution of point distances (mm) for each comparison, with medians."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 3.6), layout="constrained")
    palette = [OKABE_ITO[c] for c in ("vermillion", "orange", "blue", "bluish green",
                                      "reddish purple")]
    for n, (name, d) in enumerate(groups.items()):
        d = np.sort(np.asarray(d, float))
        ax.step(d, np.arange(1, len(d) + 1) / len(d), where="post", color=palette[n % 5],
                label=f"{name}: median {np.median(d):.2f} mm (n={len(d)})")
    ax.set_xscale("log")
    ax.set_xlabel("distance between corresponding keypoints (mm, log scale)")
    ax.set_ylabel("fraction of keypoints")
    ax.set_title(title, fontsize=TITLE_SIZE)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_keypoint_gallery(crops: Sequence[np.ndarray], predicted: Sequence[np.ndarray],
                          truth: Sequence[np.ndarray], titles: Sequence[str], *,
                          grid_mm: float = 1.0, ncols: int = 4) -> Figure:
    """Crops of the input around the worst vertebrae: the model's points (vermillion) and
    the rendered reading's (open, blue); crops and points in crop pixels (1 mm)."""
    n = len(crops)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.4 * nrows),
                             layout="constrained", squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, crop, p, t, name in zip(axes.ravel(), crops, predicted, truth, titles):
        ext = (-0.5 * grid_mm, (crop.shape[0] - 0.5) * grid_mm, (crop.shape[1] - 0.5) * grid_mm,
               -0.5 * grid_mm)
        ax.imshow(crop.T, cmap="gray", vmin=-1, vmax=2, extent=ext)
        ax.plot(t[:, 0] * grid_mm, t[:, 1] * grid_mm, "o", mfc="none", ms=5,
                color=OKABE_ITO["blue"], label="rendered reading")
        ax.plot(p[:, 0] * grid_mm, p[:, 1] * grid_mm, ".", ms=5, color=_MODEL_COLOR,
                label="model")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("AP (mm)", fontsize=7)
        ax.set_ylabel("head-feet (mm)", fontsize=7)
        ax.tick_params(labelsize=6)
    axes.ravel()[0].legend(fontsize=6, loc="lower right")
    fig.suptitle("Worst vertebrae (largest median keypoint distance)", fontsize=TITLE_SIZE)
    return fig

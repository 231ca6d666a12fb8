"""Figures of the baseline lesson: ROC curves, a reliability diagram, sagittal patches
(the tables come from :mod:`vfs_utils.baseline`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._style import MODEL_COLORS, OKABE_ITO

__all__ = ["plot_calibration", "plot_patches", "plot_roc"]

_OTHER = OKABE_ITO["reddish purple"]


def _colours(models) -> dict[str, str]:
    """A distinct Okabe-Ito colour per model: MODEL_COLORS, then the unused ones."""
    models = list(dict.fromkeys(models))
    fixed = {m: MODEL_COLORS[m] for m in models if m in MODEL_COLORS}
    spare = [c for c in OKABE_ITO.values() if c not in fixed.values()]
    out = {}
    for m in models:
        out[m] = fixed[m] if m in fixed else (spare.pop(0) if spare else _OTHER)
    return out


def _require(frame: pd.DataFrame, columns: Sequence[str], what: str, maker: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{what}: the table lacks the column(s) {missing}; make it with "
                         f"vfs_utils.baseline.{maker}()")


def plot_roc(curves: pd.DataFrame, *, title: str = "ROC", ax: Axes | None = None) -> Axes:
    """ROC curves (lines) and operating points (dots) of several models.

    Parameters
    ----------
    curves : DataFrame
        From :func:`vfs_utils.baseline.roc_curves` (``model, kind, fpr, tpr``).
    title : str
    ax : Axes, optional
    """
    _require(curves, ["model", "kind", "fpr", "tpr"], "plot_roc", "roc_curves")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    colours = _colours(curves["model"])
    for model, part in curves.groupby("model", sort=False):
        colour = colours[model]
        line = part[part["kind"] == "curve"]
        ax.plot(line["fpr"], line["tpr"], color=colour, lw=1.6, label=model)
        for _, p in part[part["kind"] == "operating point"].iterrows():
            ax.plot([p["fpr"]], [p["tpr"]], "o", color=colour, mec="black",
                    label=f"{model}: yes/no calls")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.set(xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_calibration(curves: pd.DataFrame, *, title: str = "Calibration",
                     ax: Axes | None = None) -> Axes:
    """Reliability diagram: fraction positive against mean predicted probability per bin.

    Parameters
    ----------
    curves : DataFrame
        From :func:`vfs_utils.baseline.calibration_curves` (``low, high``: error bars).
    title : str
    ax : Axes, optional
    """
    _require(curves, ["model", "mean_predicted", "fraction_positive"], "plot_calibration",
             "calibration_curves")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    colours = _colours(curves["model"])
    for model, part in curves.groupby("model", sort=False):
        y = part["fraction_positive"].to_numpy(float)
        err = (np.clip(np.vstack([y - part["low"].to_numpy(float),
                                  part["high"].to_numpy(float) - y]), 0, None)
               if {"low", "high"} <= set(part.columns) else None)
        ax.plot(part["mean_predicted"], y, "o-", color=colours[model], lw=1.4, ms=4,
                label=model)
        if err is not None:
            ax.errorbar(part["mean_predicted"], y, yerr=err, fmt="none", color=colours[model],
                        lw=1, capsize=2)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    ax.set(xlabel="mean predicted probability (per bin)",
           ylabel="fraction with the QM deformity label (per bin)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_patches(patches: np.ndarray, titles: Sequence[str], *, ncols: int = 4,
                 window: tuple[float, float] = (-200.0, 800.0),
                 suptitle: str | None = None) -> Figure:
    """Sagittal patches on a 1 mm grid (head up, anterior left), one titled panel each.

    Parameters
    ----------
    patches : ndarray (n, k, k)
        HU, centred on a vertebra (:func:`vfs_utils.baseline.vertebra_features`).
    titles : sequence of str
        One per patch.
    ncols : int
    window : (low, high) HU
    suptitle : str, optional
    """
    patches = np.asarray(patches)
    titles = list(titles)
    if patches.ndim != 3 or len(titles) != len(patches):
        raise ValueError(f"plot_patches: expected patches (n, k, k) and n titles, got shape "
                         f"{patches.shape} and {len(titles)} titles")
    half = patches.shape[1] // 2
    n = len(patches)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.75 * nrows), squeeze=False)
    ext = (-half - 0.5, half + 0.5, half + 0.5, -half - 0.5)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, patch, title in zip(axes.ravel(), patches, titles):
        ax.axis("on")
        ax.imshow(patch, cmap="gray", vmin=window[0], vmax=window[1], extent=ext)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("anterior → posterior (mm)", fontsize=7)
        ax.set_ylabel("head → feet (mm)", fontsize=7)
        ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig

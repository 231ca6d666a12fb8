"""Figures of the morphometry lesson: heights on a slice, distributions, grades by level,
pairwise agreement (colour-blind-safe "cividis") and the grades' noise sensitivity."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..annotation import LEVELS
from ._style import (
    GRADE_COLORS,
    LABEL_X,
    LABEL_Y,
    OKABE_ITO,
    TITLE_SIZE,
)
from .sagittal import plot_sagittal

_HEIGHT_NAMES = ("Ha", "Hm", "Hp")

__all__ = ["plot_grade_prevalence", "plot_kappa_heatmap", "plot_vertebra_heights"]


def plot_vertebra_heights(points_vox: np.ndarray, spacing: Sequence[float], *,
                          volume: Any = None, ax: Axes | None = None, margin_mm: float = 15.0,
                          title: str | None = None) -> Axes:
    """One vertebra's six keypoints and its three heights Ha, Hm, Hp, in mm.

    In the sagittal plane of :func:`plot_sagittal`; the pair of smallest row is anterior.

    Parameters
    ----------
    points_vox : array_like, shape (6, 3)
        Keypoints ``[row, col, slice]`` in voxels.
    spacing : sequence of 3 float
        Voxel spacing (row, col, slice) in mm.
    volume : Volume, optional
        Its sagittal slice through the points' mean column is drawn behind them.
    ax : Axes, optional
    margin_mm : float
        Space around the vertebra, in mm.
    title : str, optional
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
        plot_sagittal(volume, float(pts[:, 1].mean()), ax=ax)
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
    ax.set_xlabel(LABEL_X)
    ax.set_ylabel(LABEL_Y)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    ax.set_title(title if title is not None else "Six keypoints, three heights",
                 fontsize=TITLE_SIZE)
    return ax


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
        Level order; default :data:`vfs_utils.annotation.LEVELS`.
    ax, title : Axes, str, optional
    """
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
    ax.set_title(title or "Genant grade by level", fontsize=TITLE_SIZE)
    return ax


def plot_kappa_heatmap(pairwise: pd.DataFrame, *, ax: Axes | None = None,
                       title: str | None = None, value: str = "kappa") -> Axes:
    """Heat map of a pairwise agreement statistic between experts.

    Cells of pairs without common vertebrae are blank; with an ``interval`` column each
    kappa cell also shows it.

    Parameters
    ----------
    pairwise : DataFrame
        E.g. :attr:`vfs_utils.agreement.GradeAgreement.pairwise`.
    ax, title : Axes, str, optional
    value : str
        Column to show (``"kappa"`` or ``"exact"``).
    """
    experts = sorted(set(pairwise["expert_a"]) | set(pairwise["expert_b"]))
    m = pd.DataFrame(np.nan, index=experts, columns=experts)
    note = pd.DataFrame("", index=experts, columns=experts)
    show_ci = value == "kappa" and "interval" in pairwise.columns
    for r in pairwise.itertuples(index=False):
        v = float(getattr(r, value))
        m.loc[r.expert_a, r.expert_b] = m.loc[r.expert_b, r.expert_a] = v
        if show_ci:
            text = str(r.interval).replace("too few studies", "too few\nstudies")
            note.loc[r.expert_a, r.expert_b] = note.loc[r.expert_b, r.expert_a] = \
                "\n" + text.replace(", ", ",\n")
    if ax is None:
        size = 1.0 + 0.55 * len(experts)
        _, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    image = ax.imshow(m.to_numpy(), cmap="cividis", vmin=0.0, vmax=1.0)
    for i in range(len(experts)):
        for j in range(len(experts)):
            v = m.iat[i, j]
            if np.isfinite(v):
                ax.text(j, i, f"{v:.2f}{note.iat[i, j]}", ha="center", va="center",
                        fontsize=7 if not show_ci else 5,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(len(experts)), experts, rotation=45, ha="right")
    ax.set_yticks(range(len(experts)), experts)
    ax.set_xlabel("expert")
    ax.set_ylabel("expert")
    ax.figure.colorbar(image, ax=ax, label=value, shrink=0.8)
    ax.set_title(title or f"Pairwise {value}" + (" with 95 % intervals" if show_ci else ""),
                 fontsize=TITLE_SIZE)
    return ax

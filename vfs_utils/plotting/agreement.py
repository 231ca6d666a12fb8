"""Figures of lessons 04 and 05: level-normal shapes, prevalence by rule, reader agreement."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ._style import MARKERS, OKABE_ITO, SERIES_COLORS, TITLE_SIZE

__all__ = [
    "plot_bland_altman",
    "plot_flip_rate_vs_observed",
    "plot_level_reference",
    "plot_prevalence_by_level",
]

_RATIO_LABELS = {"wedge_index": "wedge Ha/Hp", "biconcave_index": "biconcave Hm/Hp",
                 "crush_index": "crush Hp / neighbours' Hp"}


def plot_level_reference(reference: pd.DataFrame, *, ratios: Sequence[str] | None = None,
                         n_sd: float = 3.0, ax: Axes | None = None,
                         title: str | None = None) -> Axes:
    """Normal mean of each shape ratio per level, with the band mean - ``n_sd`` SD.

    Parameters
    ----------
    reference : DataFrame
        From :func:`vfs_utils.morphometry.level_reference`.
    ratios : sequence of str, optional
        Default: every ``mean_<ratio>`` column.
    n_sd : float
        The SD-score threshold drawn as a dashed line.
    ax, title : Axes, str, optional
    """
    ref = reference.dropna(how="all", subset=[c for c in reference.columns
                                              if c.startswith("mean_")])
    ratios = ratios or [c[5:] for c in ref.columns if c.startswith("mean_")]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.4 * len(ref) + 1.5), 3.4), layout="constrained")
    x = np.arange(len(ref))
    for i, r in enumerate(ratios):
        mean, sd = ref[f"mean_{r}"].to_numpy(float), ref[f"sd_{r}"].to_numpy(float)
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        ax.plot(x, mean, marker=MARKERS[i % len(MARKERS)], color=color,
                label=_RATIO_LABELS.get(r, r))
        ax.plot(x, mean - n_sd * sd, ls="--", color=color, lw=1,
                label=f"{_RATIO_LABELS.get(r, r)}: mean - {n_sd:g} SD")
    ax.set_xticks(x, list(ref.index), rotation=90)
    ax.set_xlabel("vertebral level")
    ax.set_ylabel("ratio (dimensionless)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2, loc="lower left")
    ax.set_title(title or "Level-normal shape ratios (trimmed mean) and the 3 SD limit",
                 fontsize=TITLE_SIZE)
    return ax


def plot_prevalence_by_level(rates: pd.DataFrame, *, ax: Axes | None = None,
                             title: str | None = None,
                             ylabel: str = "vertebrae with QM grade >= 1 (%)"
                             ) -> Axes:
    """One line per rule: the share of vertebrae graded >= 1 at each level, with intervals.

    Parameters
    ----------
    rates : DataFrame
        From :func:`vfs_utils.morphometry.level_rates` (intervals as error bars, n under
        the ticks), or wide (index levels, a column of fractions per rule).
    ax, title, ylabel : Axes, str, str, optional
    """
    long = {"level", "rule", "rate"} <= set(rates.columns)
    if long:
        levels = list(dict.fromkeys(rates["level"]))
        rules = list(dict.fromkeys(rates["rule"]))
    else:
        levels, rules = list(rates.index), list(rates.columns)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(levels) + 1.5), 3.6),
                             layout="constrained")
    x = np.arange(len(levels))
    width = 0.6 / max(len(rules), 1)
    for i, rule in enumerate(rules):
        colour, marker = SERIES_COLORS[i % len(SERIES_COLORS)], MARKERS[i % len(MARKERS)]
        if long:
            r = rates[rates["rule"] == rule].set_index("level").reindex(levels)
            y = 100 * r["rate"].to_numpy(float)
            err = np.vstack([y - 100 * r["low"].to_numpy(float),
                             100 * r["high"].to_numpy(float) - y])
            xs = x + (i - (len(rules) - 1) / 2) * width
            ax.errorbar(xs, y, yerr=err, marker=marker, color=colour, label=str(rule),
                        capsize=2, lw=1)
        else:
            ax.plot(x, 100 * rates[rule].to_numpy(float), marker=marker, color=colour,
                    label=str(rule))
    if long:
        n = rates.groupby("level")["n"].max().reindex(levels)
        ticks = [f"{lv}\nn={int(k)}" for lv, k in zip(levels, n)]
        ax.set_xticks(x, ticks, fontsize=7)
        ax.set_xlabel("vertebral level (n: vertebrae graded; bars: 95 % Wilson interval)")
    else:
        ax.set_xticks(x, levels, rotation=90)
        ax.set_xlabel("vertebral level")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100 if long else None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "QM deformity prevalence by level, per rule", fontsize=TITLE_SIZE)
    return ax


def plot_bland_altman(a, b, limits: Mapping[str, float], *, ax: Axes | None = None,
                      labels: tuple[str, str] = ("reader A", "reader B"), scale: float = 100.0,
                      unit: str = "%", title: str | None = None,
                      by_mean: Sequence[tuple[float, float, Mapping[str, float]]] = ()
                      ) -> Axes:
    """Bland-Altman plot: differences against means, with the bias and 95 % limits.

    Parameters
    ----------
    a, b : array_like
        Paired measurements.
    limits : mapping
        From :func:`vfs_utils.agreement.bland_altman`; its limits' intervals are shaded.
    ax : Axes, optional
    labels : (str, str)
        Names of the two readers.
    scale, unit : float, str
        Display factor (100: fractions in percent) and unit.
    title : str, optional
    by_mean : sequence of (low, high, limits)
        Limits of the pairs whose mean lies in [low, high), drawn over that range.
    """
    a, b = np.asarray(a, float) * scale, np.asarray(b, float) * scale
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
    ax.scatter((a + b) / 2, a - b, s=6, alpha=0.4, color=OKABE_ITO["blue"], label="vertebra")
    for key, style, color in (("bias", "-", OKABE_ITO["black"]),
                              ("lower", "--", OKABE_ITO["vermillion"]),
                              ("upper", "--", OKABE_ITO["vermillion"])):
        value = limits[key] * scale
        ax.axhline(value, ls=style, color=color, lw=1.2,
                   label=f"{'bias' if key == 'bias' else '95 % limit'} {value:+.1f} {unit}"
                   if key != "upper" else None)
        if key != "bias" and f"{key}_lo" in limits:
            ax.axhspan(limits[f"{key}_lo"] * scale, limits[f"{key}_hi"] * scale,
                       color=color, alpha=0.12, lw=0,
                       label="95 % CI of a limit" if key == "lower" else None)
    colours = (OKABE_ITO["orange"], OKABE_ITO["bluish green"], OKABE_ITO["reddish purple"])
    for i, (lo, hi, lim) in enumerate(by_mean):
        colour = colours[i % len(colours)]
        for key in ("lower", "upper"):
            ax.hlines(lim[key] * scale, lo * scale, hi * scale, colors=colour, lw=2,
                      label=(f"limits for mean {lo * scale:g}-{hi * scale:g} {unit}: "
                             f"{lim['lower'] * scale:+.1f} / {lim['upper'] * scale:+.1f}")
                      if key == "lower" else None)
    ax.set_xlabel(f"mean of {labels[0]} and {labels[1]} ({unit})")
    ax.set_ylabel(f"{labels[0]} - {labels[1]} ({unit})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "Bland-Altman plot", fontsize=TITLE_SIZE)
    return ax


def plot_flip_rate_vs_observed(curve: pd.DataFrame, *, sigma: float, observed: float,
                               predicted: float | None = None, ax: Axes | None = None,
                               xlabel: str = "keypoint noise sigma (voxels)",
                               title: str | None = None) -> Axes:
    """The flip-rate curve with the experts' scatter and their observed disagreement.

    Parameters
    ----------
    curve : DataFrame
        From :func:`vfs_utils.agreement.grade_flip_rate`.
    sigma : float
        The noise that separates two experts' points (vertical line).
    observed : float
        The fraction of expert pairs whose grades differ (horizontal line).
    predicted : float, optional
        The curve's value at ``sigma`` (a marker).
    ax, xlabel, title : Axes, str, str, optional
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.0, 3.4), layout="constrained")
    ax.errorbar(curve["sigma_mm"], 100 * curve["flip_rate"], yerr=100 * curve["flip_rate_sd"],
                marker="o", capsize=3, color=OKABE_ITO["blue"], label="grade flips under noise")
    ax.axvline(sigma, color=OKABE_ITO["bluish green"], ls="--",
               label=f"between-expert point scatter {sigma:.2f}")
    ax.axhline(100 * observed, color=OKABE_ITO["vermillion"], ls=":",
               label=f"observed expert disagreement {100 * observed:.1f} %")
    if predicted is not None:
        ax.plot([sigma], [100 * predicted], marker="D", color=OKABE_ITO["orange"], ls="none",
                label=f"predicted at that scatter {100 * predicted:.1f} %")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("readings whose grade changes (%)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "Keypoint scatter and the QM grade", fontsize=TITLE_SIZE)
    return ax

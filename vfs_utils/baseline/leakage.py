"""Leakage, measured: the same model cross-validated with and without grouping by patient
(:func:`leakage`, :class:`Leakage`), and the paired patient bootstrap of the difference of
two ROC AUCs (:func:`paired_bootstrap`).

scikit-learn is imported inside the functions that use it (see :mod:`.models`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..agreement import MIN_GROUPS, N_BOOT, group_weights, n_groups, percentile_interval
from .evaluation import (
    bootstrap_ci,
    out_of_fold,
    ranked_auc,
    weighted_curves,
)
from .models import feature_matrix

__all__ = ["GAP", "GROUPED", "UNGROUPED", "Leakage", "leakage", "paired_bootstrap"]


def paired_bootstrap(labels, scores_a, scores_b, groups, *, n_boot: int = N_BOOT, seed: int = 0,
                     level: float = 0.95, min_groups: int = MIN_GROUPS
                     ) -> tuple[float, float, float]:
    """ROC AUC of ``scores_b`` minus that of ``scores_a``, with a group-bootstrap interval.

    Both AUCs of a replicate are computed on the same resampled groups (studies,
    drawn with replacement, each vertebra weighted by how often its study was
    drawn, :func:`vfs_utils.agreement.group_weights`), so the interval is that of
    the paired difference. Replicates with one class are skipped; no interval (NaN)
    from fewer than ``min_groups`` groups.

    Returns
    -------
    (difference, low, high) : floats
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels, dtype=bool)
    a, b = np.asarray(scores_a, float), np.asarray(scores_b, float)
    g = np.asarray(groups)
    if not (len(y) == len(a) == len(b) == len(g)):
        raise ValueError("labels, both scores and groups must have the same length")
    if y.all() or not y.any():
        return math.nan, math.nan, math.nan
    diff = float(roc_auc_score(y, b) - roc_auc_score(y, a))
    if n_groups(g) < min_groups:
        return diff, math.nan, math.nan
    values = [ranked_auc(*weighted_curves(y, b, w)) - ranked_auc(*weighted_curves(y, a, w))
              for w in group_weights(g, n_boot, seed)]
    return percentile_interval(diff, values, level)


@dataclass(frozen=True)
class Leakage:
    """Grouped against ungrouped cross-validation of one model (:func:`leakage`).

    Attributes
    ----------
    predictions : DataFrame
        ``split`` (``"GroupKFold by patient"`` or ``"KFold over vertebrae"``),
        ``row``, ``group``, ``label``, ``score`` (out of fold).
    summary : DataFrame
        One row per (level, split): ``roc_auc, roc_auc_lo, roc_auc_hi``; and per
        level a row ``split = "gap (KFold - GroupKFold)"`` with the paired difference
        and its patient-bootstrap interval.
    """

    predictions: pd.DataFrame
    summary: pd.DataFrame


GROUPED = "GroupKFold by patient"
UNGROUPED = "KFold over vertebrae"
GAP = "gap (KFold - GroupKFold)"


def leakage(features, labels, groups, model, *, n_splits: int = 5, n_boot: int = N_BOOT,
            seed: int = 0, threads: int | None = 1) -> Leakage:
    """How much an ungrouped split flatters a model: KFold over vertebrae vs GroupKFold.

    The same model is cross-validated twice on the same rows: with
    :class:`~sklearn.model_selection.GroupKFold` by patient (no patient on both
    sides of a split) and with a shuffled :class:`~sklearn.model_selection.KFold`
    over vertebrae (a patient's other vertebrae in the training part). Whatever
    ties the vertebrae of a patient together (scanner, noise, bone density, body
    size, the neighbour features) is learnt in the second and flatters it. The
    gap is the ROC AUC of KFold minus that of GroupKFold, at vertebra and at
    patient level (maximum over a patient's vertebrae), with a paired bootstrap
    over patients (:func:`paired_bootstrap`).

    Parameters
    ----------
    features : DataFrame
        A features frame (``f_*`` columns) or a feature matrix.
    labels : array_like of bool
        One target.
    groups : array_like
        Patient (study) of each row.
    model : estimator
        An unfitted scikit-learn classifier (cloned for every fold).
    n_splits, n_boot, seed, threads
        Folds; bootstrap replicates and seed (also of the KFold shuffle); BLAS threads.

    Returns
    -------
    Leakage
    """
    from sklearn.model_selection import GroupKFold, KFold

    X = feature_matrix(features)
    y = np.asarray(labels, dtype=bool)
    g = np.asarray(groups)
    if not (len(X) == len(y) == len(g)):
        raise ValueError(f"features, labels and groups differ in length: {len(X)}, {len(y)}, "
                         f"{len(g)}")
    splitters = {GROUPED: GroupKFold(n_splits=n_splits).split(X, y, groups=g),
                 UNGROUPED: KFold(n_splits=n_splits, shuffle=True,
                                  random_state=seed).split(X, y)}
    parts, scores = [], {}
    for name, splits in splitters.items():
        prob = out_of_fold(model, X, y, list(splits), threads)
        scores[name] = prob
        parts.append(pd.DataFrame({"split": name, "row": np.arange(len(X)), "group": g,
                                   "label": y, "score": prob}))
    predictions = pd.concat(parts, ignore_index=True)
    rows = []
    for level in ("vertebra", "patient"):
        if level == "vertebra":
            lab, grp = y, g
            sc = scores
        else:
            per = pd.DataFrame({"g": g, "y": y, **{k: v for k, v in scores.items()}}).groupby(
                "g", sort=True)
            agg = per.agg({"y": "any", GROUPED: "max", UNGROUPED: "max"})
            lab, grp = agg["y"].to_numpy(bool), agg.index.to_numpy()
            sc = {k: agg[k].to_numpy(float) for k in (GROUPED, UNGROUPED)}
        for name in (GROUPED, UNGROUPED):
            est, lo, hi = bootstrap_ci(lab, sc[name], grp, n_boot=n_boot, seed=seed)
            rows.append({"level": level, "split": name, "n": len(lab),
                         "positives": int(np.sum(lab)), "roc_auc": est, "roc_auc_lo": lo,
                         "roc_auc_hi": hi})
        d, lo, hi = paired_bootstrap(lab, sc[GROUPED], sc[UNGROUPED], grp, n_boot=n_boot,
                                     seed=seed)
        rows.append({"level": level, "split": GAP, "n": len(lab), "positives": int(np.sum(lab)),
                     "roc_auc": d, "roc_auc_lo": lo, "roc_auc_hi": hi})
    return Leakage(predictions, pd.DataFrame(rows))

"""Leakage, measured: one model cross-validated with and without grouping by patient
(:func:`leakage`), and the paired patient bootstrap of an ROC AUC difference."""
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
    """ROC AUC of ``scores_b`` minus that of ``scores_a``, with a paired group-bootstrap
    interval (both AUCs on the same replicates; otherwise as :func:`bootstrap_ci`).

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
        ``split`` (:data:`GROUPED` or :data:`UNGROUPED`), ``row, group, label, score``.
    summary : DataFrame
        Per (level, split) ``roc_auc, roc_auc_lo, roc_auc_hi``; per level a :data:`GAP`
        row with the paired difference.
    """

    predictions: pd.DataFrame
    summary: pd.DataFrame


GROUPED = "GroupKFold by patient"
UNGROUPED = "KFold over vertebrae"
GAP = "gap (KFold - GroupKFold)"


def leakage(features, labels, groups, model, *, n_splits: int = 5, n_boot: int = N_BOOT,
            seed: int = 0) -> Leakage:
    """How much an ungrouped split flatters a model: KFold over vertebrae vs GroupKFold.

    A shuffled KFold puts a patient's other vertebrae in the training part, so whatever
    ties them together is learnt. The gap is KFold's ROC AUC minus GroupKFold's, at
    vertebra and patient level, with :func:`paired_bootstrap` over patients.

    Parameters
    ----------
    features, labels, groups
        As :func:`~vfs_utils.baseline.evaluate` (one target).
    model : estimator
        An unfitted scikit-learn classifier (cloned for every fold).
    n_splits, n_boot, seed
        Folds; bootstrap replicates and seed (also of the KFold shuffle).

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
        prob = out_of_fold(model, X, y, list(splits))
        scores[name] = prob
        parts.append(pd.DataFrame({"split": name, "row": np.arange(len(X)), "group": g,
                                   "label": y, "score": prob}))
    predictions = pd.concat(parts, ignore_index=True)
    rows = []
    for level in ("vertebra", "patient"):
        if level == "vertebra":
            lab, grp, sc = y, g, scores
        else:
            agg = pd.DataFrame({"g": g, "y": y, **scores}).groupby("g", sort=True).agg(
                {"y": "any", GROUPED: "max", UNGROUPED: "max"})
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

"""Grouped evaluation of the baseline: study-bootstrap intervals, cross-validated predictions,
tables, the single-annotator baseline and the lesson's curves (scikit-learn imported lazily).
A patient's score is the maximum over their vertebrae at the label levels."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..agreement import (
    MIN_GROUPS,
    N_BOOT,
    bootstrap_groups,
    group_weights,
    n_groups,
    percentile_interval,
    wilson_interval,
)
from ..annotation import read_annotations
from ..morphometry import LABEL_LEVELS, consensus, morphometry_table
from ..readings import match_vertebrae
from .models import feature_matrix, make_models, one_thread
from .studies import TARGETS, Study, load_studies

__all__ = ["ANNOTATOR", "Evaluation", "annotator_baseline", "bootstrap_ci",
           "brier_scores", "calibration_curves", "confusion", "evaluate", "roc_curves",
           "summarize", "target_title", "worst_errors"]

#: Name of the single-annotator baseline in prediction tables: one annotator's QM
#: grade (from their own keypoints) against the consensus of the other annotators.
ANNOTATOR = "one annotator vs others"


def weighted_curves(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray):
    """Per distinct score (descending): weighted positives and negatives, shape (B, K)."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    w = weights[:, order]
    y = labels[order].astype(float)
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    return pos, neg


def ranked_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    # scores are descending: negatives ranked below a block are those after it
    n_neg = neg.sum(axis=1, keepdims=True)
    below = n_neg - np.cumsum(neg, axis=1)
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * n_neg[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total = tps[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
        recall = tps / total
    d_recall = np.diff(np.concatenate([np.zeros((len(pos), 1)), recall], axis=1), axis=1)
    ap = np.sum(np.nan_to_num(d_recall) * precision, axis=1)
    return np.where((total[:, 0] > 0) & (neg.sum(axis=1) > 0), ap, np.nan)


_METRICS: dict[str, Callable] = {"roc_auc": ranked_auc, "pr_auc": _average_precision}


def bootstrap_ci(labels, scores, groups, *, metric: str = "roc_auc", n_boot: int = N_BOOT,
                 seed: int = 0, level: float = 0.95, min_groups: int = MIN_GROUPS
                 ) -> tuple[float, float, float]:
    """A metric and its percentile bootstrap interval, resampling whole groups (studies).

    A vertebra is weighted by how often its study was drawn
    (:func:`vfs_utils.agreement.group_weights`); one-class replicates are skipped, and
    fewer than ``min_groups`` groups give no interval (NaN).

    Parameters
    ----------
    labels, scores, groups : array_like
        Bool labels, float scores and the study of each item.
    metric : {"roc_auc", "pr_auc"}
        ROC AUC or average precision (scikit-learn's; the replicates vectorised).
    n_boot, seed, level
        Replicates, seed of :func:`numpy.random.default_rng`, coverage.

    Returns
    -------
    (estimate, low, high) : floats
        NaN for a single class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, not {metric!r}")
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    g = np.asarray(groups)
    if not (len(y) == len(s) == len(g)):
        raise ValueError(f"labels, scores and groups differ in length: {len(y)}, {len(s)}, "
                         f"{len(g)}")
    if y.all() or not y.any():
        return math.nan, math.nan, math.nan
    estimate = float(roc_auc_score(y, s) if metric == "roc_auc"
                     else average_precision_score(y, s))
    if n_groups(g) < min_groups:
        return estimate, math.nan, math.nan
    values = [_METRICS[metric](*weighted_curves(y, s, w))
              for w in group_weights(g, n_boot, seed)]
    return percentile_interval(estimate, values, level)


@dataclass(frozen=True)
class Evaluation:
    """Out-of-fold predictions and their summary.

    Attributes
    ----------
    predictions : DataFrame
        Per (model, target, vertebra): ``model, target, row`` (-1: annotator), ``group``
        (study), ``unit`` (patient), ``fold, label, score, predicted`` (at the threshold).
    summary : DataFrame
        See :func:`summarize`.
    threshold : float
    """

    predictions: pd.DataFrame
    summary: pd.DataFrame
    threshold: float


def _labels_frame(labels) -> pd.DataFrame:
    if isinstance(labels, pd.DataFrame):
        return labels
    name = getattr(labels, "name", None) or "label"
    return pd.DataFrame({name: np.asarray(labels)})


def out_of_fold(model, X: pd.DataFrame, y: np.ndarray, splits) -> np.ndarray:
    """Out-of-fold positive-class probability of ``model`` cloned per ``(train, test)`` split
    (0 where a training fold has no positives)."""
    from sklearn.base import clone

    prob = np.empty(len(X))
    for train, test in splits:
        with one_thread():
            est = clone(model).fit(X.iloc[train], y[train])
            classes = list(est.classes_)
            prob[test] = (est.predict_proba(X.iloc[test])[:, classes.index(True)]
                          if True in classes else 0.0)
    return prob


def evaluate(features, labels, groups, *, models: Mapping[str, object] | None = None,
             n_splits: int = 5, threshold: float = 0.5, n_boot: int = N_BOOT, seed: int = 0,
             extra_predictions: pd.DataFrame | None = None) -> Evaluation:
    """Grouped cross-validation of the models (GroupKFold by study), at vertebra and patient
    level (a patient's score: the maximum over their rows; label: any positive).

    Parameters
    ----------
    features : DataFrame
        A features frame (``f_*`` columns used) or a feature matrix.
    labels : Series or DataFrame of bool
        One target, or one column per target.
    groups : array_like
        Study of each vertebra.
    models : mapping, optional
        Name -> unfitted classifier; default :func:`make_models`.
    n_splits, threshold
        Folds; the probability at or above which a vertebra is positive (fixed in advance).
    n_boot, seed
        See :func:`bootstrap_ci`.
    extra_predictions : DataFrame, optional
        Further long-format predictions (e.g. :func:`annotator_baseline`) to summarise.

    Returns
    -------
    Evaluation
    """
    from sklearn.model_selection import GroupKFold

    X = feature_matrix(features)
    y_all = _labels_frame(labels)
    g = np.asarray(groups)
    if not (len(X) == len(y_all) == len(g)):
        raise ValueError(f"features, labels and groups differ in length: {len(X)}, "
                         f"{len(y_all)}, {len(g)}")
    models = dict(models) if models is not None else make_models(seed)
    splits = list(GroupKFold(n_splits=n_splits).split(X, groups=g))
    fold = np.empty(len(X), int)
    for k, (_, test) in enumerate(splits):
        fold[test] = k
    parts = []
    for target in y_all.columns:
        y = y_all[target].to_numpy(dtype=bool)
        for name, model in models.items():
            prob = out_of_fold(model, X, y, splits)
            parts.append(pd.DataFrame({
                "model": name, "target": target, "row": np.arange(len(X)), "group": g,
                "unit": g, "fold": fold, "label": y, "score": prob,
                "predicted": prob >= threshold}))
    if extra_predictions is not None:
        parts.append(extra_predictions)
    predictions = pd.concat(parts, ignore_index=True)
    return Evaluation(predictions, summarize(predictions, n_boot=n_boot, seed=seed), threshold)


def _patient_level(pred: pd.DataFrame) -> pd.DataFrame:
    grouped = pred.groupby(["model", "target", "unit"], sort=False)
    return grouped.agg(group=("group", "first"), label=("label", "any"), score=("score", "max"),
                       predicted=("predicted", "any")).reset_index()


def summarize(predictions: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """One row per (model, target, level): discrimination with intervals, and the operating point.

    Parameters
    ----------
    predictions : DataFrame
        :attr:`Evaluation.predictions`.
    n_boot, seed
        See :func:`bootstrap_ci`.

    Returns
    -------
    DataFrame
        ``model, target, level, n, positives``, ``roc_auc`` and ``pr_auc`` with ``_lo, _hi``
        (95 % intervals), ``sensitivity, specificity, tp, fp, tn, fn``.
    """
    rows = []
    levels = {"vertebra": predictions, "patient": _patient_level(predictions)}
    for level, frame in levels.items():
        for (model, target), part in frame.groupby(["model", "target"], sort=False):
            y = part["label"].to_numpy(bool)
            s = part["score"].to_numpy(float)
            p = part["predicted"].to_numpy(bool)
            grp = part["group"].to_numpy()
            roc = bootstrap_ci(y, s, grp, metric="roc_auc", n_boot=n_boot, seed=seed)
            pr = bootstrap_ci(y, s, grp, metric="pr_auc", n_boot=n_boot, seed=seed)
            tp, fp = int(np.sum(p & y)), int(np.sum(p & ~y))
            tn, fn = int(np.sum(~p & ~y)), int(np.sum(~p & y))
            rows.append({
                "model": model, "target": target, "level": level, "n": len(y),
                "positives": int(y.sum()),
                "roc_auc": roc[0], "roc_auc_lo": roc[1], "roc_auc_hi": roc[2],
                "pr_auc": pr[0], "pr_auc_lo": pr[1], "pr_auc_hi": pr[2],
                "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
                "specificity": tn / (tn + fp) if tn + fp else math.nan,
                "tp": tp, "fp": fp, "tn": tn, "fn": fn})
    out = pd.DataFrame(rows)
    level_order = pd.Categorical(out["level"], ["vertebra", "patient"], ordered=True)
    return (out.assign(_l=level_order).sort_values(["target", "_l"], kind="stable")
            .drop(columns="_l").reset_index(drop=True))


def confusion(predictions: pd.DataFrame, model: str, target: str,
              level: str = "vertebra") -> pd.DataFrame:
    """The 2 x 2 confusion matrix (rows: truth, columns: ``predicted``) of one model and
    target; ``level="patient"`` aggregates first."""
    from sklearn.metrics import confusion_matrix

    frame = predictions if level == "vertebra" else _patient_level(predictions)
    part = frame[(frame["model"] == model) & (frame["target"] == target)]
    if part.empty:
        raise ValueError(f"no predictions of model {model!r} for target {target!r}")
    m = confusion_matrix(part["label"].to_numpy(bool), part["predicted"].to_numpy(bool),
                         labels=[False, True])
    return pd.DataFrame(m, index=pd.Index(["negative", "positive"], name="truth"),
                        columns=pd.Index(["negative", "positive"], name="predicted"))


def annotator_baseline(studies: Iterable[Study] | object, *,
                       levels: Sequence[str] | None = LABEL_LEVELS, turns: str = "all",
                       **kwargs) -> pd.DataFrame:
    """One annotator's QM morphometry against the consensus of the other annotators.

    Per expert and study: their own QM grade (score: height loss ``1 - min/max``) against
    the consensus of the *other* experts, on the vertebrae both read at the label levels;
    a study read by one expert gives no row. Not a radiologist's visual (SQ) reading.

    Parameters
    ----------
    studies : sequence of Study, or anything :func:`load_studies` takes
    levels : sequence of str or None
        Label levels (default T4-L4); None keeps every level.
    turns : {"all", "image"}
        Every expert takes a turn, or only the one the image was rendered from
        (:attr:`Study.expert`), so that the labels are exactly the models' labels.
    **kwargs
        Passed to :func:`load_studies`.

    Returns
    -------
    DataFrame
        Long-format predictions, model :data:`ANNOTATOR`, ``unit`` study/expert, ``fold``
        and ``row`` -1.
    """
    if turns not in ("all", "image"):
        raise ValueError(f"turns must be 'all' or 'image', not {turns!r}")
    studies = load_studies(studies, **kwargs)
    frames = [match_vertebrae(read_annotations([s.annotation])) for s in studies]
    frame = pd.concat(frames, ignore_index=True)
    spacing = {s.folder: s.spacing for s in studies}
    table = morphometry_table(frame, spacing=spacing)
    image = {s.folder: s.expert for s in studies}
    parts = []
    for expert in sorted(table["expert"].unique()):
        mine = table[table["expert"] == expert]
        if turns == "image":
            mine = mine[mine["folder"].map(image) == expert]
        others = table[(table["expert"] != expert) & table["file"].isin(mine["file"])]
        if others.empty or mine.empty:
            continue
        ref = consensus(others)[["file", "vertebra_id", "grade"]].rename(
            columns={"grade": "ref_grade"})
        both = mine.merge(ref, on=["file", "vertebra_id"], how="inner")
        both = both[both["grade"].notna() & both["ref_grade"].notna()]
        if levels is not None:
            both = both[both["level"].isin(list(levels))]
        for target, k in TARGETS.items():
            parts.append(pd.DataFrame({
                "model": ANNOTATOR, "target": target, "row": -1,
                "group": both["folder"].to_numpy(),
                "unit": (both["folder"] + "/" + both["expert"]).to_numpy(), "fold": -1,
                "label": (both["ref_grade"] >= k).to_numpy(bool),
                "score": both["height_loss"].to_numpy(float),
                "predicted": (both["grade"] >= k).to_numpy(bool)}))
    if not parts:       # typed, so that it concatenates with model predictions unchanged
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("model", object), ("target", object), ("row", int), ("group", object),
            ("unit", object), ("fold", int), ("label", bool), ("score", float),
            ("predicted", bool))})
    out = pd.concat(parts, ignore_index=True)
    order = {t: i for i, t in enumerate(TARGETS)}
    return out.sort_values("target", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True)


def target_title(target: str) -> str:
    """``"consensus QM grade ≥ k"`` for a target of :data:`TARGETS` (else the name)."""
    k = TARGETS.get(target)
    return f"consensus QM grade ≥ {k}" if k is not None else target


def roc_curves(predictions: pd.DataFrame, target: str = "label_any",
               level: str = "vertebra") -> pd.DataFrame:
    """ROC curve of every model, and the annotator's operating point, for one target and level.

    Parameters
    ----------
    predictions : DataFrame
        :attr:`Evaluation.predictions`.
    target : str
    level : {"vertebra", "patient"}

    Returns
    -------
    DataFrame
        ``model, kind, fpr, tpr``; ``kind`` is ``"curve"`` or ``"operating point"`` (the
        annotator's yes/no calls). Models with one class only are left out.
    """
    from sklearn.metrics import roc_curve

    frame = predictions if level == "vertebra" else _patient_level(predictions)
    frame = frame[frame["target"] == target]
    parts = []
    for model, part in frame.groupby("model", sort=False):
        y, s = part["label"].to_numpy(bool), part["score"].to_numpy(float)
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        parts.append(pd.DataFrame({"model": model, "kind": "curve", "fpr": fpr, "tpr": tpr}))
        if model == ANNOTATOR:
            p = part["predicted"].to_numpy(bool)
            parts.append(pd.DataFrame({"model": [model], "kind": ["operating point"],
                                       "fpr": [np.mean(p[~y])], "tpr": [np.mean(p[y])]}))
    if not parts:
        return pd.DataFrame(columns=["model", "kind", "fpr", "tpr"])
    return pd.concat(parts, ignore_index=True)


def _level_rows(part: pd.DataFrame, level: str) -> pd.DataFrame:
    if level == "vertebra":
        return part
    if level != "patient":
        raise ValueError(f"level must be 'vertebra' or 'patient', not {level!r}")
    return part.groupby("unit", as_index=False).agg(label=("label", "any"),
                                                    score=("score", "max"))


def calibration_curves(predictions: pd.DataFrame, target: str = "label_any", *,
                       models: Sequence[str] = ("logistic", "boosting"),
                       n_bins: int = 10, level: str = "vertebra") -> pd.DataFrame:
    """Reliability curves: the quantile bins of :func:`sklearn.calibration.calibration_curve`,
    with each bin's count and a Wilson interval of its fraction positive.

    Returns
    -------
    DataFrame
        One row per bin: ``model, mean_predicted, fraction_positive, n, low, high``.
    """
    frame = predictions[predictions["target"] == target]
    parts = []
    for model in models:
        part = frame[frame["model"] == model]
        if part.empty:
            continue
        rows = _level_rows(part, level)
        y, p = rows["label"].to_numpy(float), rows["score"].to_numpy(float)
        edges = np.percentile(p, np.linspace(0, 1, n_bins + 1) * 100)
        ids = np.searchsorted(edges[1:-1], p)
        n = np.bincount(ids, minlength=len(edges))
        keep = n > 0
        k = np.bincount(ids, weights=y, minlength=len(edges))[keep]
        mean = np.bincount(ids, weights=p, minlength=len(edges))[keep] / n[keep]
        n = n[keep]
        ci = np.array([wilson_interval(a, b) for a, b in zip(k, n)]).reshape(-1, 2)
        parts.append(pd.DataFrame({"model": model, "mean_predicted": mean,
                                   "fraction_positive": k / n, "n": n,
                                   "low": ci[:, 0], "high": ci[:, 1]}))
    if not parts:
        return pd.DataFrame(columns=["model", "mean_predicted", "fraction_positive", "n", "low",
                                     "high"])
    return pd.concat(parts, ignore_index=True)


def brier_scores(predictions: pd.DataFrame, target: str = "label_any", *,
                 models: Sequence[str] | None = None, n_boot: int = N_BOOT,
                 seed: int = 0) -> pd.DataFrame:
    """Brier score per model and level, with a patient-bootstrap interval and the no-skill
    reference ``prevalence * (1 - prevalence)``.

    Returns
    -------
    DataFrame
        Columns ``model, level, n, brier, brier_lo, brier_hi, no_skill``.
    """
    frame = predictions[predictions["target"] == target]
    models = list(dict.fromkeys(frame["model"])) if models is None else list(models)
    rows = []
    for model in models:
        part = frame[frame["model"] == model]
        if part.empty:
            continue
        for level in ("vertebra", "patient"):
            r = _level_rows(part, level)
            y, p = r["label"].to_numpy(float), r["score"].to_numpy(float)
            units = (part["group"] if level == "vertebra" else
                     part.groupby("unit")["group"].first().reindex(r["unit"])).to_numpy()
            sq = (p - y) ** 2
            est, lo, hi = bootstrap_groups(lambda w, sq=sq: (w @ sq) / w.sum(axis=1), units,
                                           n_boot=n_boot, seed=seed, weighted=True)
            prev = float(y.mean()) if len(y) else math.nan
            rows.append({"model": model, "level": level, "n": len(y), "brier": est,
                         "brier_lo": lo, "brier_hi": hi, "no_skill": prev * (1 - prev)})
    return pd.DataFrame(rows, columns=["model", "level", "n", "brier", "brier_lo", "brier_hi",
                                       "no_skill"])


def worst_errors(predictions: pd.DataFrame, features: pd.DataFrame, *,
                 model: str = "boosting", target: str = "label_any", n: int = 4,
                 flags: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ``n`` most confident misses, then the ``n`` most confident false alarms of a model.

    Parameters
    ----------
    flags : DataFrame, optional
        From :func:`vfs_utils.quality.check_readings`: a flagged (folder, level) gets its
        check in ``qc`` and in its title.

    Returns
    -------
    DataFrame
        ``error`` (``"missed"`` or ``"false alarm"``), ``row`` (of ``features`` and its
        patches), ``folder, level, grade, score, qc, title``.
    """
    part = predictions[(predictions["model"] == model) & (predictions["target"] == target)]
    if part.empty:
        raise ValueError(f"no predictions of model {model!r} for target {target!r}")
    part = part.astype({"label": bool, "score": float})
    misses = part[part["label"]].nsmallest(n, "score", keep="first")
    alarms = part[~part["label"]].nlargest(n, "score", keep="first")
    picked = pd.concat([misses, alarms])
    named: dict[tuple, str] = {}
    if flags is not None and len(flags):
        for (folder, level), checks in flags.groupby(["folder", "level"])["check"]:
            named[(folder, level)] = ", ".join(dict.fromkeys(checks))
    rows = []
    for kind, (_, r) in zip(["missed"] * len(misses) + ["false alarm"] * len(alarms),
                            picked.iterrows()):
        row = features.iloc[int(r["row"])]
        level = row["level"] if isinstance(row["level"], str) else f"#{row['vertebra_id']}"
        qc = named.get((row["folder"], level), "")
        rows.append({"error": kind, "row": int(r["row"]), "folder": row["folder"],
                     "level": level, "grade": row["grade"], "score": float(r["score"]),
                     "qc": qc,
                     "title": f"{kind}: …{str(row['folder'])[-8:]} {level}\n"
                              f"grade {row['grade']}, p = {r['score']:.2f}"
                              + (f"\nQC: {qc}" if qc else "")})
    return pd.DataFrame(rows, columns=["error", "row", "folder", "level", "grade", "score",
                                       "qc", "title"])

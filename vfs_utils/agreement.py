"""Reader-agreement statistics on plain arrays: alpha, kappa, ICC, Bland-Altman, bootstrap.

Inside:

- :func:`krippendorff_alpha`: Krippendorff's alpha for a raters x units table
  with missing values (nominal, ordinal or interval metric; Krippendorff 2011,
  "Computing Krippendorff's Alpha-Reliability"), from the coincidence matrix
  for categories and from sums of squares for continuous values;
- :func:`cohen_kappa`: Cohen's kappa of two raters, unweighted, linear or
  quadratic weights (Cohen 1968), from the confusion matrix;
- :func:`icc`: intraclass correlation ICC(1,1), ICC(2,1) or ICC(3,1) of a
  complete units x raters table, from the two-way ANOVA mean squares of Shrout
  and Fleiss (1979);
- :func:`bland_altman`: the mean difference and 95 % limits of agreement of two
  paired measurements (Bland and Altman 1986);
- :func:`bootstrap_groups`: a percentile bootstrap interval of any statistic,
  resampling whole groups (studies), not the correlated units inside them.

Interpretation bands such as Landis and Koch's (1977: 0.41-0.60 "moderate",
0.61-0.80 "substantial") are conventions, not tests. Nothing here knows about
vertebrae; :mod:`vfs_utils.morphometry` builds the tables.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "bland_altman",
    "bootstrap_groups",
    "cohen_kappa",
    "icc",
    "krippendorff_alpha",
]

_LEVELS = ("nominal", "ordinal", "interval")


def _reliability_data(data) -> np.ndarray:
    values = np.asarray(data, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"reliability data must be 2-D (raters x units), not shape {values.shape}")
    return values


def krippendorff_alpha(data, level: str = "nominal", *, categories: Sequence[float] | None = None
                       ) -> float:
    """Krippendorff's alpha of a raters x units table with missing values (NaN).

    ``alpha = 1 - D_o / D_e``: observed over expected disagreement among all
    pairable values (values of units with at least two of them). Units coded
    by one rater only are left out. For ``"nominal"`` and ``"ordinal"`` the
    values are categories and alpha comes from the coincidence matrix
    ``o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1)`` with the metric
    ``delta = [c != k]`` (nominal) or Krippendorff's ordinal metric
    ``delta_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2``; for ``"interval"``
    ``delta = (c - k)^2`` on the raw values, computed from sums of squares so
    that continuous values need no categories.

    Parameters
    ----------
    data : array_like, shape (raters, units)
        Values, NaN where a rater did not code a unit.
    level : {"nominal", "ordinal", "interval"}
        The metric.
    categories : sequence of float, optional
        For nominal/ordinal: every possible value in order (an unused category
        still counts in the ordinal metric's ranks); default the values seen.

    Returns
    -------
    float
        Alpha; NaN when there are no pairable values or no variation at all.
    """
    if level not in _LEVELS:
        raise ValueError(f"level must be one of {_LEVELS}, not {level!r}")
    values = _reliability_data(data)
    m_u = np.sum(~np.isnan(values), axis=0)
    values = values[:, m_u >= 2]
    m_u = m_u[m_u >= 2]
    n = float(m_u.sum())
    if n < 2:
        return float("nan")
    if level == "interval" and categories is None:
        x = np.where(np.isnan(values), 0.0, values)
        s1, s2 = x.sum(axis=0), (x * x).sum(axis=0)
        # sum over ordered pairs i != j of (x_i - x_j)^2 = 2 (m sum x^2 - (sum x)^2)
        d_o = float(np.sum(2 * (m_u * s2 - s1 * s1) / (m_u - 1))) / n
        t1, t2 = s1.sum(), s2.sum()
        d_e = float(2 * (n * t2 - t1 * t1)) / (n * (n - 1))
        return float("nan") if d_e == 0 else 1.0 - d_o / d_e
    seen = np.unique(values[~np.isnan(values)])
    cats = np.asarray(categories if categories is not None else seen, dtype=float)
    unknown = np.setdiff1d(seen, cats)
    if unknown.size:
        raise ValueError(f"values {unknown[:5].tolist()} are not among the categories "
                         f"{cats.tolist()}")
    counts = np.stack([np.sum(values == c, axis=0) for c in cats], axis=1).astype(float)  # (u, c)
    weighted = counts / (m_u - 1.0)[:, None]
    o = weighted.T @ counts - np.diag(weighted.sum(axis=0))                             # (c, c)
    n_c = o.sum(axis=1)
    if level == "nominal":
        delta = 1.0 - np.eye(len(cats))
    elif level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        i, k = np.meshgrid(np.arange(len(cats)), np.arange(len(cats)), indexing="ij")
        lo, hi = np.minimum(i, k), np.maximum(i, k)
        delta = (cum[hi + 1] - cum[lo] - (n_c[i] + n_c[k]) / 2.0) ** 2
    else:
        delta = (cats[:, None] - cats[None, :]) ** 2
    d_o = float(np.sum(o * delta))
    d_e = float(np.sum(np.outer(n_c, n_c) * delta)) / (n - 1.0)
    return float("nan") if d_e == 0 else 1.0 - d_o / d_e


def cohen_kappa(a, b, *, categories: Sequence[float], weights: str | None = None) -> float:
    """Cohen's kappa of two raters over the same units.

    ``kappa = 1 - sum(w * O) / sum(w * E)`` with O the observed and E the
    chance-expected (product of the margins) proportions over ``categories``,
    and disagreement weights ``w_ij`` = ``[i != j]`` (unweighted),
    ``|i - j|`` (linear) or ``(i - j)^2`` (quadratic) on category *ranks*
    (Cohen 1968). Equal to :func:`sklearn.metrics.cohen_kappa_score` with
    ``labels=categories``.

    Parameters
    ----------
    a, b : array_like
        The two raters' values, same length, every value in ``categories``.
    categories : sequence
        All categories in order.
    weights : {None, "linear", "quadratic"}

    Returns
    -------
    float
        NaN when undefined (no units, or chance disagreement 0).
    """
    cats = np.asarray(categories)
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D of the same length, not {a.shape} and {b.shape}")
    if len(a) == 0:
        return float("nan")
    k = len(cats)
    ia, ib = np.searchsorted(cats, a), np.searchsorted(cats, b)
    ok = (ia < k) & (ib < k)
    if not (ok.all() and (cats[ia] == a).all() and (cats[ib] == b).all()):
        raise ValueError("cohen_kappa: a value is not among the (sorted) categories "
                         f"{cats.tolist()}")
    obs = np.bincount(ia * k + ib, minlength=k * k).reshape(k, k) / len(a)
    exp = np.outer(obs.sum(axis=1), obs.sum(axis=0))
    r = np.arange(k)
    w = {None: (r[:, None] != r[None, :]).astype(float),
         "linear": np.abs(r[:, None] - r[None, :]).astype(float),
         "quadratic": ((r[:, None] - r[None, :]) ** 2).astype(float)}.get(weights)
    if w is None:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    d_e = float(np.sum(w * exp))
    return float("nan") if d_e == 0 else 1.0 - float(np.sum(w * obs)) / d_e


def icc(matrix, kind: str = "2,1") -> float:
    """Intraclass correlation of a complete units x raters table (Shrout and Fleiss 1979).

    From the two-way ANOVA mean squares of ``n`` units and ``k`` raters: BMS
    (between units), JMS (between raters), EMS (residual), WMS (within units):

    - ``"1,1"``: ``(BMS - WMS) / (BMS + (k - 1) WMS)``;
    - ``"2,1"`` (raters a random sample, absolute agreement):
      ``(BMS - EMS) / (BMS + (k - 1) EMS + k (JMS - EMS) / n)``;
    - ``"3,1"`` (these raters, consistency): ``(BMS - EMS) / (BMS + (k - 1) EMS)``.

    Parameters
    ----------
    matrix : array_like, shape (n units, k raters)
        No missing values.
    kind : {"1,1", "2,1", "3,1"}

    Returns
    -------
    float
    """
    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2 or not np.isfinite(x).all():
        raise ValueError(f"icc needs a complete (units >= 2) x (raters >= 2) table, not shape "
                         f"{x.shape} with {int(np.sum(~np.isfinite(x)))} missing values")
    n, k = x.shape
    grand = x.mean()
    ss_rows = k * np.sum((x.mean(axis=1) - grand) ** 2)
    ss_cols = n * np.sum((x.mean(axis=0) - grand) ** 2)
    ss_total = np.sum((x - grand) ** 2)
    ss_err = ss_total - ss_rows - ss_cols
    bms, jms = ss_rows / (n - 1), ss_cols / (k - 1)
    ems = ss_err / ((n - 1) * (k - 1))
    wms = (ss_total - ss_rows) / (n * (k - 1))
    if kind == "1,1":
        return float((bms - wms) / (bms + (k - 1) * wms))
    if kind == "2,1":
        return float((bms - ems) / (bms + (k - 1) * ems + k * (jms - ems) / n))
    if kind == "3,1":
        return float((bms - ems) / (bms + (k - 1) * ems))
    raise ValueError(f"kind must be '1,1', '2,1' or '3,1', not {kind!r}")


def bland_altman(a, b) -> dict[str, float]:
    """Mean difference ``a - b`` and its 95 % limits of agreement (Bland and Altman 1986).

    Returns
    -------
    dict
        ``n``, ``bias`` (mean of a - b), ``sd`` (SD of a - b, ddof 1),
        ``lower`` and ``upper`` (bias -/+ 1.96 sd).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"bland_altman needs two 1-D arrays of equal length >= 2, not {a.shape} "
                         f"and {b.shape}")
    d = a - b
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    return {"n": int(len(d)), "bias": bias, "sd": sd, "lower": bias - 1.96 * sd,
            "upper": bias + 1.96 * sd}


def bootstrap_groups(statistic: Callable[[np.ndarray], float], groups, *, n_boot: int = 500,
                     seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """A statistic and its percentile bootstrap interval, resampling whole groups.

    Units of one group (the vertebrae of one study) are correlated; resampling
    groups with replacement keeps that structure (a cluster bootstrap).

    Parameters
    ----------
    statistic : callable
        Takes an integer array of unit indices (with repeats) and returns a float.
    groups : array_like, shape (n units,)
        Group label of every unit.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    level : float
        Coverage of the interval.

    Returns
    -------
    (estimate, low, high)
        The statistic on all units and the interval (NaN draws are dropped).
    """
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(labels))]
    estimate = float(statistic(np.arange(len(inverse))))
    rng = np.random.default_rng(seed)
    draws = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        pick = rng.integers(0, len(labels), len(labels))
        draws[b] = statistic(np.concatenate([members[g] for g in pick]))
    return _percentile_interval(estimate, draws, level)


def _percentile_interval(estimate: float, values, level: float) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the percentile interval of the finite replicates.

    ``values`` holds replicates, or arrays of them; NaN and infinite ones are dropped.
    """
    vals = np.concatenate([np.atleast_1d(v) for v in values]) if len(values) else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return estimate, float("nan"), float("nan")
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [alpha, 1 - alpha])
    return estimate, float(lo), float(hi)

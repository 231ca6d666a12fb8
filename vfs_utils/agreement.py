"""Reader agreement, in one place.

On plain arrays: Krippendorff's alpha, Cohen's and Fleiss' kappa, ICC, Bland-Altman limits,
the Wilson interval and the cluster bootstrap (:func:`group_weights`, the package's one
generator). On morphometry tables (:func:`vfs_utils.morphometry.morphometry_table`): the
experts' agreement on QM grades (:func:`grade_agreement`, :func:`grade_alpha`), on the number
of vertebrae (:func:`count_disagreement`), between the two annotation rounds
(:func:`compare_rounds`) and under keypoint noise (:func:`grade_flip_rate`). Those import
:mod:`vfs_utils.morphometry` when called, since morphometry uses the statistics here. One
piece: one home for every agreement statistic.
"""
from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "bland_altman",
    "bootstrap_groups",
    "cohen_kappa",
    "compare_rounds",
    "count_disagreement",
    "fleiss_kappa",
    "grade_agreement",
    "grade_alpha",
    "grade_flip_rate",
    "group_weights",
    "icc",
    "krippendorff_alpha",
    "wilson_interval",
]

#: Default number of bootstrap replicates everywhere in the package.
N_BOOT = 1000
#: Fewest groups (studies, patients) a percentile bootstrap interval is computed from.
MIN_GROUPS = 10
#: What a table says instead of an interval from fewer than :data:`MIN_GROUPS` groups.
TOO_FEW = "too few studies"

_LEVELS = ("nominal", "ordinal", "interval")


def _reliability_data(data) -> np.ndarray:
    values = np.asarray(data, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"reliability data must be 2-D (raters x units), not shape {values.shape}")
    return values


def krippendorff_alpha(data, level: str = "nominal", *, categories: Sequence[float] | None = None
                       ) -> float:
    """Krippendorff's alpha of a raters x units table with missing values (NaN).

    ``alpha = 1 - D_o / D_e`` over the pairable values (units coded by >= 2 raters),
    from the coincidence matrix with ``delta = [c != k]`` (nominal), Krippendorff's
    ordinal metric, or ``(c - k)^2`` (interval; from sums of squares, no categories).

    Parameters
    ----------
    data : array_like, shape (raters, units)
        Values, NaN where a rater did not code a unit.
    level : {"nominal", "ordinal", "interval"}
    categories : sequence of float, optional
        Every possible value in order (an unused one still counts in the ordinal
        ranks); default the values seen.

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

    Disagreement weights ``[i != j]``, ``|i - j|`` or ``(i - j)^2`` on category ranks;
    equal to :func:`sklearn.metrics.cohen_kappa_score` with ``labels=categories``.

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
    w = _kappa_weights(k, weights)
    d_e = float(np.sum(w * exp))
    return float("nan") if d_e == 0 else 1.0 - float(np.sum(w * obs)) / d_e


def _kappa_weights(k: int, weights: str | None) -> np.ndarray:
    r = np.arange(k)
    w = {None: (r[:, None] != r[None, :]).astype(float),
         "linear": np.abs(r[:, None] - r[None, :]).astype(float),
         "quadratic": ((r[:, None] - r[None, :]) ** 2).astype(float)}.get(weights)
    if w is None:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    return w


def icc(matrix, kind: str = "2,1") -> float:
    """Intraclass correlation of a complete units x raters table (Shrout and Fleiss 1979).

    ``"1,1"`` one-way; ``"2,1"`` raters a random sample, absolute agreement; ``"3,1"``
    these raters, consistency.

    Parameters
    ----------
    matrix : array_like, shape (n units, k raters)
        No missing values.
    kind : {"1,1", "2,1", "3,1"}
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


def bland_altman(a, b, level: float = 0.95) -> dict[str, float]:
    """Mean difference ``a - b`` and its 95 % limits of agreement (Bland and Altman 1986).

    Returns
    -------
    dict
        ``n``, ``bias``, ``sd`` (ddof 1), ``lower``, ``upper`` (bias -/+ 1.96 sd),
        ``limit_se`` (``sd * sqrt(3 / n)``) and each limit's ``level`` interval
        ``lower_lo``, ``lower_hi``, ``upper_lo``, ``upper_hi``.
    """
    from statistics import NormalDist

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"bland_altman needs two 1-D arrays of equal length >= 2, not {a.shape} "
                         f"and {b.shape}")
    d = a - b
    bias, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd * float(np.sqrt(3.0 / len(d)))
    z = NormalDist().inv_cdf((1 + level) / 2)
    lower, upper = bias - 1.96 * sd, bias + 1.96 * sd
    return {"n": int(len(d)), "bias": bias, "sd": sd, "lower": lower, "upper": upper,
            "limit_se": se, "lower_lo": lower - z * se, "lower_hi": lower + z * se,
            "upper_lo": upper - z * se, "upper_hi": upper + z * se}


def group_weights(groups, n_boot: int = N_BOOT, seed: int = 0, chunk: int = 250):
    """Cluster-bootstrap weights, ``chunk`` replicates at a time.

    A unit's weight is how often its group was drawn (as many draws as groups, with
    replacement). :func:`vfs_utils.baseline.bootstrap_ci` draws from it too.

    Yields
    ------
    ndarray, shape (replicates in the chunk, units)
    """
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    codes = codes.ravel()
    n_groups = int(codes.max()) + 1 if codes.size else 0
    rng = np.random.default_rng(seed)
    for start in range(0, int(n_boot), chunk):
        b = min(chunk, int(n_boot) - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        counts = np.zeros((b, n_groups))
        np.add.at(counts, (np.arange(b)[:, None], draws), 1.0)
        yield counts[:, codes]


def n_groups(groups) -> int:
    """Number of distinct groups."""
    return int(len(np.unique(np.asarray(groups))))


def bootstrap_groups(statistic: Callable[[np.ndarray], float], groups, *, n_boot: int = N_BOOT,
                     seed: int = 0, level: float = 0.95, min_groups: int = MIN_GROUPS,
                     weighted: bool = False) -> tuple[float, float, float]:
    """A statistic and its percentile bootstrap interval, resampling whole groups.

    Units of one group (the vertebrae of one study) are correlated, so whole groups are
    resampled (:func:`group_weights`). No interval (NaN) from fewer than ``min_groups``.

    Parameters
    ----------
    statistic : callable
        Unit indices (with repeats) -> float; with ``weighted=True``, a
        ``(replicates, units)`` weight array -> one value per replicate (much faster).
    groups : array_like, shape (n units,)
    n_boot, seed, level, min_groups : int, int, float, int
        Resamples, seed of :func:`numpy.random.default_rng`, coverage, fewest groups.
    weighted : bool

    Returns
    -------
    (estimate, low, high)
        NaN draws are dropped.
    """
    groups = np.asarray(groups)
    n = len(groups)
    if weighted:
        estimate = float(np.asarray(statistic(np.ones((1, n))))[0])
    else:
        estimate = float(statistic(np.arange(n)))
    if n_groups(groups) < min_groups or int(n_boot) <= 0:
        return estimate, float("nan"), float("nan")
    values = []
    for w in group_weights(groups, n_boot, seed):
        if weighted:
            values.append(np.asarray(statistic(w), dtype=float))
        else:
            units = np.arange(n)
            values.append(np.array([statistic(np.repeat(units, row.astype(int)))
                                    for row in w]))
    return percentile_interval(estimate, values, level)


def wilson_interval(k, n, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``k / n``, as statsmodels' ``proportion_confint(method="wilson")``.

    Returns
    -------
    (low, high) : floats
        NaN for ``n == 0``.
    """
    from statistics import NormalDist

    k, n = float(k), float(n)
    if n <= 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n, not k={k}, n={n}")
    z = NormalDist().inv_cdf((1 + level) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(centre - half, 0.0)), float(min(centre + half, 1.0))


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa (Fleiss 1971) from a table of category counts per item.

    Parameters
    ----------
    counts : array_like of shape (N items, k categories)
        Number of raters (the same, >= 2, for every item) who put item i in category j.

    Returns
    -------
    float
        NaN for no items or when every rating is in one category.
    """
    c = np.asarray(counts, dtype=float)
    if c.ndim != 2 or (c < 0).any():
        raise ValueError(f"counts must be a 2-D array of non-negative counts, not shape {c.shape}")
    if len(c) == 0:
        return float("nan")
    m = c.sum(axis=1)
    if not np.all(m == m[0]) or m[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters for every item; "
                         f"got rater counts {sorted(set(m.astype(int).tolist()))}")
    m = m[0]
    p_i = (np.sum(c * c, axis=1) - m) / (m * (m - 1))
    p_j = c.sum(axis=0) / (len(c) * m)
    pe = float(np.sum(p_j * p_j))
    if np.isclose(pe, 1.0):
        return float("nan")
    return float((p_i.mean() - pe) / (1.0 - pe))


def mean_pairwise_kappa(kappas, shared) -> float:
    """Mean of pairwise kappas weighted by the units each pair shares; NaN kappas left out."""
    k, w = np.asarray(kappas, dtype=float), np.asarray(shared, dtype=float)
    ok = np.isfinite(k) & (w > 0)
    return float(np.sum(k[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")


def kappa_replicates(a, b, *, categories, weights: str | None = None):
    """``f(W)``: Cohen's kappa of ``a`` vs ``b`` under unit weights ``W`` (replicates x units)."""
    cats = np.asarray(categories)
    k = len(cats)
    ia, ib = np.searchsorted(cats, np.asarray(a)), np.searchsorted(cats, np.asarray(b))
    cell = ia * k + ib
    onehot = np.zeros((len(cell), k * k))
    onehot[np.arange(len(cell)), cell] = 1.0
    w = _kappa_weights(k, weights)

    def stat(W):
        total = W.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            obs = (W @ onehot / total).reshape(-1, k, k)
            exp = obs.sum(axis=2)[:, :, None] * obs.sum(axis=1)[:, None, :]
            d_e = np.sum(w * exp, axis=(1, 2))
            return np.where(d_e > 0, 1.0 - np.sum(w * obs, axis=(1, 2)) / d_e, np.nan)
    return stat


def alpha_replicates(data, level: str = "nominal", *, categories=None):
    """``f(W)``: Krippendorff's alpha of a units x raters table under unit weights ``W``."""
    values = np.array(data, dtype=float)             # (units, raters)
    m_u = np.sum(~np.isnan(values), axis=1).astype(float)
    values[m_u < 2] = np.nan                         # unpairable units do not count
    m_u[m_u < 2] = 0.0
    if level == "interval" and categories is None:
        x = np.where(np.isnan(values), 0.0, values)
        s1, s2 = x.sum(axis=1), (x * x).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            term = np.where(m_u >= 2, 2 * (m_u * s2 - s1 * s1) / (m_u - 1), 0.0)

        def stat(W):
            n = W @ m_u
            t1, t2 = W @ s1, W @ s2
            with np.errstate(invalid="ignore", divide="ignore"):
                d_o = (W @ term) / n
                d_e = 2 * (n * t2 - t1 * t1) / (n * (n - 1))
                return np.where(d_e > 0, 1.0 - d_o / d_e, np.nan)
        return stat
    cats = np.asarray(categories, dtype=float)
    counts = np.stack([np.sum(values == c, axis=1) for c in cats], axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        inv = np.where(m_u >= 2, 1.0 / (m_u - 1.0), 0.0)
    per_unit = (counts[:, :, None] * counts[:, None, :]
                - counts[:, :, None] * np.eye(len(cats))[None]) * inv[:, None, None]
    per_unit = per_unit.reshape(len(values), -1)
    kc = len(cats)

    def stat(W):
        o = (W @ per_unit).reshape(-1, kc, kc)
        n_c = o.sum(axis=2)
        n = n_c.sum(axis=1)
        if level == "nominal":
            delta = np.broadcast_to(1.0 - np.eye(kc), o.shape)
        elif level == "ordinal":
            cum = np.concatenate([np.zeros((len(o), 1)), np.cumsum(n_c, axis=1)], axis=1)
            i, k = np.meshgrid(np.arange(kc), np.arange(kc), indexing="ij")
            lo, hi = np.minimum(i, k), np.maximum(i, k)
            delta = (cum[:, hi + 1] - cum[:, lo] - (n_c[:, i] + n_c[:, k]) / 2.0) ** 2
        else:
            delta = np.broadcast_to((cats[:, None] - cats[None, :]) ** 2, o.shape)
        d_o = np.sum(o * delta, axis=(1, 2))
        with np.errstate(invalid="ignore", divide="ignore"):
            d_e = np.sum(n_c[:, :, None] * n_c[:, None, :] * delta, axis=(1, 2)) / (n - 1.0)
            return np.where(d_e > 0, 1.0 - d_o / d_e, np.nan)
    return stat


def percentile_interval(estimate: float, values, level: float) -> tuple[float, float, float]:
    """``(estimate, low, high)``: the percentile interval of the finite replicates (or arrays)."""
    vals = np.concatenate([np.atleast_1d(v) for v in values]) if len(values) else np.array([])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return estimate, float("nan"), float("nan")
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [alpha, 1 - alpha])
    return estimate, float(lo), float(hi)


@dataclass(frozen=True)
class GradeAgreement:
    """Inter-expert agreement on per-vertebra QM grades.

    Attributes
    ----------
    pairwise : DataFrame
        One row per expert pair with common vertebrae: ``expert_a``, ``expert_b``,
        ``n_vertebrae``, ``n_studies``, ``kappa`` (linear weights), ``exact`` (fraction
        with equal grades), and with a bootstrap ``ci_low``, ``ci_high``, ``interval``.
    mean_kappa : float
        Mean of the pairwise kappas weighted by ``n_vertebrae``.
    fleiss_kappa : float
        Fleiss' kappa over the vertebrae read by exactly ``fleiss_raters`` experts (the
        most common number >= 2).
    fleiss_raters, fleiss_items : int
        That number of raters and the number of vertebrae used.
    exact : float
        Fraction of vertebrae read by >= 2 experts on which all give the same grade.
    n_vertebrae : int
        Number of vertebrae read by >= 2 experts.
    """

    pairwise: pd.DataFrame
    mean_kappa: float
    fleiss_kappa: float
    fleiss_raters: int
    fleiss_items: int
    exact: float
    n_vertebrae: int


def _wide(table: pd.DataFrame, column: str, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Units (study, vertebra_id) x experts table of ``column`` and the units' folders."""
    from .morphometry._inputs import require_columns, study_keys
    from .morphometry.pooling import check_unique

    require_columns(table, ["expert", "vertebra_id", column], what)
    keys = [*study_keys(table), "vertebra_id"]
    check_unique(table, keys, what)
    values = table[[*keys, "expert"]].assign(_v=table[column].astype("Float64").astype(float)
                                             if str(table[column].dtype) == "Int64"
                                             else table[column].astype(float))
    values = values[values["_v"].notna()]
    wide = values.set_index([*keys, "expert"])["_v"].unstack("expert")
    folders = wide.index.get_level_values("folder").to_numpy() if "folder" in keys else \
        wide.index.get_level_values(keys[0]).to_numpy()
    return wide, folders


def grade_agreement(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = N_BOOT,
                    seed: int = 0) -> GradeAgreement:
    """Agreement of the experts' QM grades on the vertebrae they read in common.

    This is the reproducibility of the experts' *keypoints* seen through a grading rule,
    not agreement of visual (SQ) fracture grades. Pairwise Cohen's kappa is linearly
    weighted over the grades; Fleiss' kappa (nominal) is not comparable with it;
    Krippendorff's alpha (:func:`grade_alpha`) uses every vertebra.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
    n_boot : int
        When > 0, 95 % bootstrap intervals of each kappa over studies
        (:data:`TOO_FEW` below :data:`MIN_GROUPS` studies).
    seed : int

    Returns
    -------
    GradeAgreement
    """
    from .morphometry.grading import GRADES
    from .morphometry.pooling import grade_column

    column = grade_column(rule)
    wide, folders = _wide(table, column, "grade_agreement")
    values = wide.to_numpy(dtype=float)
    experts = list(wide.columns)

    rows = []
    for a, b in itertools.combinations(range(len(experts)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        if not both.any():
            continue
        ga, gb = values[both, a], values[both, b]

        kappa = kappa_replicates(ga, gb, categories=GRADES if column != "sd_grade"
                                         else (0, 1, 2), weights="linear")
        n_studies = int(len(np.unique(folders[both])))
        row = {"expert_a": experts[a], "expert_b": experts[b], "n_vertebrae": int(both.sum()),
               "n_studies": n_studies,
               "kappa": float(kappa(np.ones((1, len(ga))))[0]), "exact": float(np.mean(ga == gb))}
        if n_boot > 0:
            _, row["ci_low"], row["ci_high"] = bootstrap_groups(
                kappa, folders[both], n_boot=n_boot, seed=seed, weighted=True)
            row["interval"] = (TOO_FEW if n_studies < MIN_GROUPS
                               else f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]")
        rows.append(row)
    columns = ["expert_a", "expert_b", "n_vertebrae", "n_studies", "kappa", "exact"]
    pairwise = pd.DataFrame(rows, columns=columns + (["ci_low", "ci_high", "interval"]
                                                     if n_boot > 0 else []))

    raters = np.sum(~np.isnan(values), axis=1)
    multi = raters >= 2
    counts = np.stack([np.sum(values == g, axis=1) for g in GRADES], axis=1)
    if multi.any():
        n_values, n_items = np.unique(raters[multi], return_counts=True)
        m = int(n_values[n_items == n_items.max()].max())
        kappa_f = fleiss_kappa(counts[raters == m])
        n_f = int(np.sum(raters == m))
        spread = np.nanmax(values[multi], axis=1) - np.nanmin(values[multi], axis=1)
        exact = float(np.mean(spread == 0))
    else:
        m, kappa_f, n_f, exact = 0, float("nan"), 0, float("nan")
    mean_kappa = mean_pairwise_kappa(pairwise["kappa"], pairwise["n_vertebrae"])
    return GradeAgreement(pairwise=pairwise, mean_kappa=mean_kappa, fleiss_kappa=kappa_f,
                     fleiss_raters=m, fleiss_items=n_f, exact=exact,
                     n_vertebrae=int(multi.sum()))


def grade_alpha(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = N_BOOT,
                seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha of the grades and of the continuous measure, with intervals.

    Every vertebra read by >= 2 experts counts. Three versions: the grades as ordinal
    and as nominal categories, and the measure behind the rule (interval metric); 95 %
    bootstrap intervals over studies.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` (and :func:`sd_scores` for ``"sd"``).
    rule : {"genant", "neighbour", "sd"}
    n_boot : int
        Bootstrap resamples (0: no interval).
    seed : int

    Returns
    -------
    DataFrame
        Index ``statistic``; columns ``estimate``, ``ci_low``, ``ci_high``,
        ``vertebrae`` (with >= 2 readers), ``studies``.
    """
    from .morphometry.grading import GRADES
    from .morphometry.pooling import MEASURES, grade_column

    column = grade_column(rule)
    measure = MEASURES[column][0]
    cats = GRADES if column != "sd_grade" else (0, 1, 2)
    rows = {}
    for label, col, level in ((f"alpha, ordinal {column}", column, "ordinal"),
                              (f"alpha, nominal {column}", column, "nominal"),
                              (f"alpha, interval {measure}", measure, "interval")):
        wide, folders = _wide(table, col, "grade_alpha")
        x = wide.to_numpy(dtype=float)
        keep = np.sum(~np.isnan(x), axis=1) >= 2
        x, folders = x[keep], folders[keep]

        alpha = alpha_replicates(x, level, categories=None
                                         if level == "interval" else cats)
        est, low, high = bootstrap_groups(alpha, folders, n_boot=n_boot, seed=seed,
                                                 weighted=True)
        rows[label] = {"estimate": est, "ci_low": low, "ci_high": high, "vertebrae": len(x),
                       "studies": int(len(np.unique(folders)))}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "statistic"
    return out


@dataclass(frozen=True)
class CountDisagreement:
    """Files in which the experts drew different numbers of vertebrae.

    Attributes
    ----------
    files : DataFrame
        One row per file: ``counts`` (``"expert1:17 expert2:16"``), ``n_experts``,
        ``n_min``, ``n_max``, ``disagree``.
    n_files, n_disagree : int
        Number of files, and of files with ``n_min != n_max``.
    fraction : float
        ``n_disagree / n_files``.
    """

    files: pd.DataFrame
    n_files: int
    n_disagree: int
    fraction: float


def count_disagreement(frame: pd.DataFrame) -> CountDisagreement:
    """How often the experts of one file disagree on the number of vertebrae.

    An expert who drew no vertebra in a file is not counted.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (or a morphometry table).

    Returns
    -------
    CountDisagreement
    """
    from .morphometry._inputs import require_columns, study_keys

    require_columns(frame, ["folder", "expert"], "count_disagreement")
    keys = study_keys(frame)
    per = frame.groupby([*keys, "expert"], sort=True, dropna=False).size().rename("n")
    per = per.reset_index()
    g = per.groupby(keys, sort=True, dropna=False)
    files = pd.DataFrame({
        "counts": g.apply(lambda d: " ".join(f"{e}:{k}" for e, k in zip(d["expert"], d["n"])),
                          include_groups=False),
        "n_experts": g.size(),
        "n_min": g["n"].min(),
        "n_max": g["n"].max(),
    })
    files["disagree"] = files["n_min"] != files["n_max"]
    files = files.reset_index()
    n_files, n_dis = len(files), int(files["disagree"].sum())
    return CountDisagreement(files=files, n_files=n_files, n_disagree=n_dis,
                             fraction=n_dis / n_files if n_files else float("nan"))


@dataclass(frozen=True)
class RoundComparison:
    """Consensus grades of the same vertebrae in two annotation rounds.

    Attributes
    ----------
    pairs : DataFrame
        One row per matched vertebra: ``folder``, ``vertebra_id_a``,
        ``vertebra_id_b``, ``level`` (from round b when it has one),
        ``centre_slice_a``, ``centre_slice_b``, ``grade_a``, ``grade_b``,
        ``changed``.
    crosstab : DataFrame
        Counts, rows = round-a consensus grade 0..3, columns = round-b grade 0..3.
    n_matched, n_unmatched_a, n_unmatched_b : int
        Matched consensus vertebrae, and those of each round left without a partner.
    changed : float
        Fraction of matched vertebrae whose consensus grade differs.
    """

    pairs: pd.DataFrame
    crosstab: pd.DataFrame
    n_matched: int
    n_unmatched_a: int
    n_unmatched_b: int
    changed: float


def compare_rounds(v1_table: pd.DataFrame, v2_table: pd.DataFrame, *, tolerance: float = 5.0,
                   rule: str = "genant") -> RoundComparison:
    """How often the consensus grade of a vertebra changes between two rounds.

    Consensus vertebrae (:func:`consensus`) of a folder are matched one-to-one by centre
    slice (least total distance, pairs within ``tolerance``); a folder whose
    ``series_uid`` differs between the rounds is skipped with a warning.

    Parameters
    ----------
    v1_table, v2_table : DataFrame
        From :func:`morphometry_table` with ``vertebra_id`` (round a, round b).
    tolerance : float
        Largest accepted distance between matched centres, in slices.
    rule : {"genant", "neighbour"}

    Returns
    -------
    RoundComparison
    """
    from scipy.optimize import linear_sum_assignment

    from .morphometry.grading import GRADES
    from .morphometry.pooling import consensus, grade_column

    column = grade_column(rule)
    if not tolerance > 0:
        raise ValueError(f"tolerance must be a positive number of slices, not {tolerance!r}")
    a, b = consensus(v1_table), consensus(v2_table)
    for name, t in (("v1_table", a), ("v2_table", b)):
        if "centre_slice" not in t.columns:
            raise ValueError(f"compare_rounds: {name} lacks centre_slice; build it with "
                             "morphometry_table()")
    rows = []
    by_b = dict(tuple(b.groupby("folder", sort=False)))
    for folder, ga in a.groupby("folder", sort=True):
        gb = by_b.get(folder)
        if gb is None:
            continue
        if "series_uid" in ga.columns and "series_uid" in gb.columns and \
                set(ga["series_uid"]) != set(gb["series_uid"]):
            warnings.warn(f"compare_rounds: folder {folder} has different series in the two "
                          "rounds; skipped", stacklevel=2)
            continue
        sa, sb = ga["centre_slice"].to_numpy(float), gb["centre_slice"].to_numpy(float)
        cost = np.abs(sa[:, None] - sb[None, :])
        ia, ib = linear_sum_assignment(cost)
        keep = cost[ia, ib] <= tolerance
        for i, j in zip(ia[keep], ib[keep]):
            ra, rb = ga.iloc[i], gb.iloc[j]
            level = rb.get("level")
            if level is None or pd.isna(level):
                level = ra.get("level")
            rows.append({"folder": folder, "vertebra_id_a": ra["vertebra_id"],
                         "vertebra_id_b": rb["vertebra_id"],
                         "level": None if level is None or pd.isna(level) else level,
                         "centre_slice_a": sa[i], "centre_slice_b": sb[j],
                         "grade_a": ra[column], "grade_b": rb[column]})
    pairs = pd.DataFrame(rows, columns=["folder", "vertebra_id_a", "vertebra_id_b", "level",
                                        "centre_slice_a", "centre_slice_b", "grade_a", "grade_b"])
    pairs["level"] = pairs["level"].astype(object)
    pairs["grade_a"] = pairs["grade_a"].astype("Int64")
    pairs["grade_b"] = pairs["grade_b"].astype("Int64")
    pairs["changed"] = (pairs["grade_a"] != pairs["grade_b"]).astype("boolean")
    both = pairs.dropna(subset=["grade_a", "grade_b"])
    crosstab = pd.crosstab(both["grade_a"].astype(int), both["grade_b"].astype(int)).reindex(
        index=list(GRADES), columns=list(GRADES), fill_value=0)
    crosstab.index.name, crosstab.columns.name = "grade_a", "grade_b"
    n = len(pairs)
    return RoundComparison(pairs=pairs, crosstab=crosstab, n_matched=n,
                           n_unmatched_a=len(a) - n, n_unmatched_b=len(b) - n,
                           changed=float(both["grade_a"].ne(both["grade_b"]).mean())
                           if len(both) else float("nan"))


def grade_flip_rate(frame, spacing, sigmas_mm: Sequence[float] = (0.5, 1.0, 2.0),
                    n_draws: int = 50, seed: int = 0,
                    axis_scale: Sequence[float] = (1.0, 1.0)) -> pd.DataFrame:
    """How often keypoint noise changes the within-vertebra QM grade (Genant's bands).

    Every keypoint moves by Gaussian noise of SD ``sigma * axis_scale`` mm along row and
    slice; the same standard-normal draws serve every sigma, so rates are comparable.

    Parameters
    ----------
    frame : DataFrame or array_like of shape (n, 6, 3)
        Vertebra readings (see :func:`heights`).
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats
        Voxel spacing (row, col, slice) in mm.
    sigmas_mm : sequence of float
        Noise standard deviations in mm (>= 0).
    n_draws, seed : int
        Monte Carlo draws per sigma; seed of :func:`numpy.random.default_rng`.
    axis_scale : (row, slice) pair of float
        Per-axis factors of ``sigma`` (``sigmas_mm=(1,)`` and the measured per-axis SDs).

    Returns
    -------
    DataFrame
        One row per sigma: ``sigma_mm``, ``n_readings`` (with a grade), ``n_draws``,
        ``flip_rate`` (mean fraction of readings whose grade changes), ``flip_rate_sd``
        (across draws), ``up_rate``, ``down_rate``.
    """
    from .morphometry._inputs import as_points, spacing_rows
    from .morphometry.grading import grade_codes, within_loss

    pts = as_points(frame)
    n = len(pts)
    sp = spacing_rows(spacing, n, frame if isinstance(frame, pd.DataFrame) else None)
    sigmas = np.asarray(sigmas_mm, dtype=float).reshape(-1)
    if not (np.isfinite(sigmas).all() and (sigmas >= 0).all()):
        raise ValueError(f"sigmas_mm must be finite and >= 0, not {sigmas_mm!r}")
    if int(n_draws) < 1:
        raise ValueError(f"n_draws must be at least 1, not {n_draws!r}")
    n_draws = int(n_draws)
    scale = np.asarray(axis_scale, dtype=float).reshape(2)
    mm = pts * sp[:, None, :]
    pairs = mm.reshape(n, 3, 2, 3)
    base_diff = pairs[:, :, 1, :] - pairs[:, :, 0, :]               # (n, 3, 3) mm
    base = grade_codes(within_loss(np.sqrt(np.sum(base_diff ** 2, axis=-1))))
    valid = base >= 0
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_draws, n, 3, 2, 2))                  # pair, point, (row, slice)
    dz = z[:, :, :, 1, :] - z[:, :, :, 0, :]                         # noise of the differences
    rows = []
    n_valid = int(valid.sum())
    for sigma in sigmas:
        flips = np.empty(n_draws)
        up = np.empty(n_draws)
        down = np.empty(n_draws)
        chunk = max(1, 4_000_000 // max(1, n * 9))
        for start in range(0, n_draws, chunk):
            d = np.broadcast_to(base_diff, (min(chunk, n_draws - start), n, 3, 3)).copy()
            d[..., [0, 2]] += sigma * scale * dz[start:start + len(d)]
            codes = grade_codes(within_loss(np.sqrt(np.sum(d * d, axis=-1))))
            with np.errstate(invalid="ignore"):
                sl = slice(start, start + len(d))
                denom = max(n_valid, 1)
                flips[sl] = np.sum((codes != base) & valid, axis=1) / denom
                up[sl] = np.sum((codes > base) & valid, axis=1) / denom
                down[sl] = np.sum((codes < base) & valid & (codes >= 0), axis=1) / denom
        rows.append({"sigma_mm": float(sigma), "n_readings": n_valid, "n_draws": n_draws,
                     "flip_rate": float(flips.mean()) if n_valid else float("nan"),
                     "flip_rate_sd": float(flips.std(ddof=1)) if n_draws > 1 else float("nan"),
                     "up_rate": float(up.mean()) if n_valid else float("nan"),
                     "down_rate": float(down.mean()) if n_valid else float("nan")})
    return pd.DataFrame(rows)

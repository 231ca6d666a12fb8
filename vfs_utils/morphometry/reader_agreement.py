"""Inter-reader agreement of the QM grades of a morphometry table.

Inside: :class:`Agreement` and :func:`agreement` (pairwise Cohen's kappa per
expert pair, with a bootstrap over studies), :func:`fleiss_kappa`,
:func:`agreement_statistics` (Krippendorff's alpha of the grades and of the
continuous measures), :class:`CountDisagreement` and
:func:`count_disagreement` (how many vertebrae each expert annotated).

This part knows about vertebrae, readings and grade rules, so it lives with
the morphometry; the statistics on plain arrays that it calls (alpha, kappa,
ICC, bootstrap) are in :mod:`vfs_utils.agreement`, which knows nothing about
vertebrae. (Not named ``agreement`` so that the submodule cannot shadow the
function :func:`vfs_utils.morphometry.agreement`.)
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import agreement as _stats
from ._inputs import _require, _study_keys
from .grading import GRADES
from .pooling import _MEASURES, _check_unique, _grade_column

__all__ = [
    "Agreement",
    "CountDisagreement",
    "agreement",
    "agreement_statistics",
    "count_disagreement",
    "fleiss_kappa",
]


@dataclass(frozen=True)
class Agreement:
    """Inter-expert agreement on per-vertebra QM grades.

    Attributes
    ----------
    pairwise : DataFrame
        One row per expert pair that read common vertebrae: ``expert_a``,
        ``expert_b``, ``n_vertebrae``, ``n_studies``, ``kappa`` (Cohen's,
        linearly weighted over grades 0..3; NaN when undefined), ``exact``
        (fraction with equal grades), and with a bootstrap ``ci_low``,
        ``ci_high``.
    fleiss_kappa : float
        Fleiss' kappa (nominal grades) over the vertebrae read by exactly
        ``fleiss_raters`` experts (the most common number of raters >= 2).
    fleiss_raters, fleiss_items : int
        That number of raters and the number of vertebrae used.
    exact : float
        Fraction of vertebrae read by >= 2 experts on which all of them give
        the same grade.
    n_vertebrae : int
        Number of vertebrae read by >= 2 experts.
    """

    pairwise: pd.DataFrame
    fleiss_kappa: float
    fleiss_raters: int
    fleiss_items: int
    exact: float
    n_vertebrae: int


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa from a table of category counts per item.

    The textbook formula (Fleiss JL (1971) Measuring nominal scale agreement
    among many raters. Psychol Bull 76(5):378-382), which needs the same
    number of raters ``m >= 2`` for every item:
    ``P_i = (sum_j n_ij**2 - m) / (m (m - 1))``, ``p_j = sum_i n_ij / (N m)``,
    ``kappa = (mean(P_i) - sum_j p_j**2) / (1 - sum_j p_j**2)``.

    Parameters
    ----------
    counts : array_like of shape (N items, k categories)
        Number of raters who put item i in category j.

    Returns
    -------
    float
        Kappa; NaN for no items or when every rating is in one category.
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


def _wide(table: pd.DataFrame, column: str, what: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Units (study, vertebra_id) x experts table of ``column`` and the units' folders."""
    _require(table, ["expert", "vertebra_id", column], what)
    keys = [*_study_keys(table), "vertebra_id"]
    _check_unique(table, keys, what)
    values = table[[*keys, "expert"]].assign(_v=table[column].astype("Float64").astype(float)
                                             if str(table[column].dtype) == "Int64"
                                             else table[column].astype(float))
    values = values[values["_v"].notna()]
    wide = values.set_index([*keys, "expert"])["_v"].unstack("expert")
    folders = wide.index.get_level_values("folder").to_numpy() if "folder" in keys else \
        wide.index.get_level_values(keys[0]).to_numpy()
    return wide, folders


def agreement(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = 0,
              seed: int = 0) -> Agreement:
    """Agreement of the experts' QM grades on the vertebrae they read in common.

    What it measures: the reproducibility of the experts' *keypoints* as seen
    through a grading rule, not agreement of visual (SQ) fracture grades,
    which the annotation does not hold.

    Pairwise Cohen's kappa uses linear weights over the grade scale 0..3
    (:func:`vfs_utils.agreement.cohen_kappa`, equal to
    :func:`sklearn.metrics.cohen_kappa_score` with ``weights="linear"`` and
    ``labels=[0, 1, 2, 3]``). Fleiss' kappa (unweighted, nominal) needs a
    common number of raters per item, so it is computed over the vertebrae
    with the most common number of raters (>= 2) only; it is not comparable
    with the weighted pairwise kappas. Krippendorff's alpha
    (:func:`agreement_statistics`) has neither restriction.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
        Which grade column to compare.
    n_boot : int
        When > 0, add ``ci_low``, ``ci_high`` to the pairwise table: 95 %
        percentile bootstrap intervals of each kappa, resampling studies.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    Agreement
    """
    column = _grade_column(rule)
    wide, folders = _wide(table, column, "agreement")
    values = wide.to_numpy(dtype=float)
    experts = list(wide.columns)

    rows = []
    for a, b in itertools.combinations(range(len(experts)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        if not both.any():
            continue
        ga, gb = values[both, a], values[both, b]

        def kappa(idx, ga=ga, gb=gb):
            return _stats.cohen_kappa(ga[idx], gb[idx], categories=GRADES if column != "sd_grade"
                                      else (0, 1, 2), weights="linear")

        row = {"expert_a": experts[a], "expert_b": experts[b], "n_vertebrae": int(both.sum()),
               "n_studies": int(len(np.unique(folders[both]))),
               "kappa": kappa(np.arange(len(ga))), "exact": float(np.mean(ga == gb))}
        if n_boot > 0:
            _, row["ci_low"], row["ci_high"] = _stats.bootstrap_groups(
                kappa, folders[both], n_boot=n_boot, seed=seed)
        rows.append(row)
    columns = ["expert_a", "expert_b", "n_vertebrae", "n_studies", "kappa", "exact"]
    pairwise = pd.DataFrame(rows, columns=columns + (["ci_low", "ci_high"] if n_boot > 0 else []))

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
    return Agreement(pairwise=pairwise, fleiss_kappa=kappa_f, fleiss_raters=m, fleiss_items=n_f,
                     exact=exact, n_vertebrae=int(multi.sum()))


def agreement_statistics(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = 200,
                         seed: int = 0) -> pd.DataFrame:
    """Krippendorff's alpha of the grades and of the continuous measure, with intervals.

    Alpha uses every vertebra read by two or more experts, whatever their
    number (missing readers are allowed), so it needs no restriction to
    3-reader vertebrae. Three versions: the grades as ordinal and as nominal
    categories, and the continuous measure behind the rule (``height_loss``,
    ``neighbour_loss`` or ``sd_score``) with the interval metric. The 95 %
    intervals are percentile bootstraps over studies
    (:func:`vfs_utils.agreement.bootstrap_groups`).

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` (and :func:`sd_scores` for ``"sd"``),
        with ``vertebra_id``.
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
    column = _grade_column(rule)
    measure = _MEASURES[column][0]
    cats = GRADES if column != "sd_grade" else (0, 1, 2)
    rows = {}
    for label, col, level in ((f"alpha, ordinal {column}", column, "ordinal"),
                              (f"alpha, nominal {column}", column, "nominal"),
                              (f"alpha, interval {measure}", measure, "interval")):
        wide, folders = _wide(table, col, "agreement_statistics")
        x = wide.to_numpy(dtype=float)
        keep = np.sum(~np.isnan(x), axis=1) >= 2
        x, folders = x[keep], folders[keep]

        def alpha(idx, x=x, level=level):
            return _stats.krippendorff_alpha(x[idx].T, level, categories=None
                                             if level == "interval" else cats)

        if n_boot > 0:
            est, low, high = _stats.bootstrap_groups(alpha, folders, n_boot=n_boot, seed=seed)
        else:
            est, low, high = alpha(np.arange(len(x))), float("nan"), float("nan")
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
        One row per file (study keys), ``counts`` (like ``"expert1:17
        expert2:16"``), ``n_experts``, ``n_min``, ``n_max``, ``disagree``.
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

    An expert who drew no vertebra in a file has no row in the frame and is
    not counted.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (or a morphometry table).

    Returns
    -------
    CountDisagreement
    """
    _require(frame, ["folder", "expert"], "count_disagreement")
    keys = _study_keys(frame)
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

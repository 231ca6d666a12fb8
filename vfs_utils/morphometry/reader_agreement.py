"""Inter-reader agreement of the QM grades of a morphometry table (the statistics are in
:mod:`vfs_utils.agreement`; this name does not shadow :func:`agreement`)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import agreement as _stats
from ..agreement import fleiss_kappa
from ._inputs import require_columns, study_keys
from .grading import GRADES
from .pooling import MEASURES, check_unique, grade_column

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


def agreement(table: pd.DataFrame, *, rule: str = "genant", n_boot: int = _stats.N_BOOT,
              seed: int = 0) -> Agreement:
    """Agreement of the experts' QM grades on the vertebrae they read in common.

    This is the reproducibility of the experts' *keypoints* seen through a grading rule,
    not agreement of visual (SQ) fracture grades. Pairwise Cohen's kappa is linearly
    weighted over the grades; Fleiss' kappa (nominal) is not comparable with it;
    Krippendorff's alpha (:func:`agreement_statistics`) uses every vertebra.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``vertebra_id``.
    rule : {"genant", "neighbour", "sd"}
    n_boot : int
        When > 0, 95 % bootstrap intervals of each kappa over studies
        (:data:`~vfs_utils.agreement.TOO_FEW` below ``MIN_GROUPS`` studies).
    seed : int

    Returns
    -------
    Agreement
    """
    column = grade_column(rule)
    wide, folders = _wide(table, column, "agreement")
    values = wide.to_numpy(dtype=float)
    experts = list(wide.columns)

    rows = []
    for a, b in itertools.combinations(range(len(experts)), 2):
        both = ~np.isnan(values[:, a]) & ~np.isnan(values[:, b])
        if not both.any():
            continue
        ga, gb = values[both, a], values[both, b]

        kappa = _stats.kappa_replicates(ga, gb, categories=GRADES if column != "sd_grade"
                                         else (0, 1, 2), weights="linear")
        n_studies = int(len(np.unique(folders[both])))
        row = {"expert_a": experts[a], "expert_b": experts[b], "n_vertebrae": int(both.sum()),
               "n_studies": n_studies,
               "kappa": float(kappa(np.ones((1, len(ga))))[0]), "exact": float(np.mean(ga == gb))}
        if n_boot > 0:
            _, row["ci_low"], row["ci_high"] = _stats.bootstrap_groups(
                kappa, folders[both], n_boot=n_boot, seed=seed, weighted=True)
            row["interval"] = (_stats.TOO_FEW if n_studies < _stats.MIN_GROUPS
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
    mean_kappa = _stats.mean_pairwise_kappa(pairwise["kappa"], pairwise["n_vertebrae"])
    return Agreement(pairwise=pairwise, mean_kappa=mean_kappa, fleiss_kappa=kappa_f,
                     fleiss_raters=m, fleiss_items=n_f, exact=exact,
                     n_vertebrae=int(multi.sum()))


def agreement_statistics(table: pd.DataFrame, *, rule: str = "genant",
                         n_boot: int = _stats.N_BOOT,
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
    column = grade_column(rule)
    measure = MEASURES[column][0]
    cats = GRADES if column != "sd_grade" else (0, 1, 2)
    rows = {}
    for label, col, level in ((f"alpha, ordinal {column}", column, "ordinal"),
                              (f"alpha, nominal {column}", column, "nominal"),
                              (f"alpha, interval {measure}", measure, "interval")):
        wide, folders = _wide(table, col, "agreement_statistics")
        x = wide.to_numpy(dtype=float)
        keep = np.sum(~np.isnan(x), axis=1) >= 2
        x, folders = x[keep], folders[keep]

        alpha = _stats.alpha_replicates(x, level, categories=None
                                         if level == "interval" else cats)
        est, low, high = _stats.bootstrap_groups(alpha, folders, n_boot=n_boot, seed=seed,
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

"""Pooling readers: consensus grades, prevalence, keypoint scatter, and the
rule-name -> grade-column mapping shared with :mod:`vfs_utils.agreement`.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .. import agreement
from ..agreement import N_BOOT
from ..annotation import LEVELS, POINT_COLUMNS
from ._inputs import as_points, require_columns, spacing_rows, study_keys
from .grading import grade_codes, to_int64
from .reference import sd_codes

__all__ = [
    "consensus",
    "level_rates",
    "prevalence_intervals",
    "rate_by_readers",
    "keypoint_scatter",
    "prevalence",
]


_RULES = {"genant": "grade", "within": "grade", "qm": "grade", "neighbour": "neighbour_grade",
          "sd": "sd_grade"}
#: Grade column -> (continuous measure averaged over readers, grading function).
MEASURES = {"grade": ("height_loss", grade_codes),
             "neighbour_grade": ("neighbour_loss", grade_codes),
             "sd_grade": ("sd_score", sd_codes)}
_RULE_NAMES = {"grade": "within-vertebra, Genant bands", "neighbour_grade":
               "neighbour, Genant bands", "sd_grade": "SD score (Eastell, 3 SD)"}


def _rule_columns(table: pd.DataFrame, columns: Mapping[str, str] | None) -> Mapping[str, str]:
    """``columns``, by default label -> column for every grade column of ``table``."""
    if columns is not None:
        return columns
    return {v: k for k, v in _RULE_NAMES.items() if k in table.columns}


def grade_column(rule: str) -> str:
    if rule not in _RULES:
        raise ValueError(f"rule must be 'genant' (within-vertebra, also 'within' or 'qm'), "
                         f"'neighbour' or 'sd', not {rule!r}")
    return _RULES[rule]


def check_unique(table: pd.DataFrame, keys: list[str], what: str) -> None:
    dup = table.duplicated([*keys, "expert"], keep=False)
    if dup.any():
        row = table[dup].iloc[0]
        where = row.get("file", row.get("folder"))
        raise ValueError(f"{what}: expert {row['expert']} has two readings with vertebra_id "
                         f"{row['vertebra_id']} in {where}; vertebra_id must be unique per "
                         "expert within a file (use vfs_utils.readings.match_vertebrae)")


def _lower_median(table: pd.DataFrame, keys: list[str], column: str) -> pd.Series:
    values = table[keys].assign(_v=table[column].astype("Float64").astype(float))
    med = values.groupby(keys, sort=True, dropna=False)["_v"].quantile(0.5, interpolation="lower")
    return med.round().astype("Int64")


_METHODS = ("mean", "lower_median")


def consensus(table: pd.DataFrame, *, method: str = "mean") -> pd.DataFrame:
    """One consensus grade per vertebra (same ``vertebra_id``) across the experts who read it.

    ``method="mean"``: the grade of the mean over readers of the measure behind each
    rule; averaging shrinks the readers' noise around a fixed cut-off
    (:func:`rate_by_readers` measures it). ``method="lower_median"``: the lower median
    of the readers' grades, kept to show its artefact (the *minimum* of two readers).

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` (optionally :func:`sd_scores`), with ``vertebra_id``.
    method : {"mean", "lower_median"}

    Returns
    -------
    DataFrame
        One row per (study keys, vertebra_id), sorted: ``level``, ``n_experts``,
        ``experts`` (comma-joined), ``grade``, ``grade_min``, ``grade_max``,
        ``p_deformed`` (fraction of readers grading >= 1), and where present
        ``neighbour_grade``, ``sd_grade`` (Int64), the mean ``height_loss``,
        ``neighbour_loss``, ``sd_score``, ``centre_row``, ``centre_slice``.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, not {method!r}")
    require_columns(table, ["expert", "vertebra_id", "grade"], "consensus")
    keys = [*study_keys(table), "vertebra_id"]
    check_unique(table, keys, "consensus")
    grouped = table.groupby(keys, sort=True, dropna=False)
    names = table[keys].assign(_e=table["expert"].astype(str)).sort_values("_e", kind="stable")
    out = pd.DataFrame({"n_experts": grouped.size(),
                        "experts": names.groupby(keys, sort=True, dropna=False)["_e"].agg(
                            ",".join)})
    if "level" in table.columns:
        out.insert(0, "level", grouped["level"].first())
    g_float = table["grade"].astype("Float64").astype(float)
    grades = table[keys].assign(_g=g_float).groupby(keys, sort=True, dropna=False)["_g"]
    positive = table[keys].assign(_p=np.where(np.isnan(g_float), np.nan, g_float >= 1)).groupby(
        keys, sort=True, dropna=False)["_p"]
    for column, (measure, grade_fn) in MEASURES.items():
        if column not in table.columns:
            continue
        if method == "mean":
            if measure not in table.columns:
                raise ValueError(f"consensus(method='mean') needs the column {measure!r} behind "
                                 f"{column!r}; pass a morphometry_table() table")
            mean = grouped[measure].mean()
            out[measure] = mean
            out[column] = to_int64(grade_fn(mean.to_numpy(dtype=float)))
        else:
            out[column] = _lower_median(table, keys, column)
            if measure in table.columns:
                out[measure] = grouped[measure].mean()
    out["grade_min"] = grades.min().round().astype("Int64")
    out["grade_max"] = grades.max().round().astype("Int64")
    out["p_deformed"] = positive.mean()
    for c in ("centre_row", "centre_slice"):
        if c in table.columns:
            out[c] = grouped[c].mean()
    return out.reset_index()


def rate_by_readers(table: pd.DataFrame, *, n_readers: int = 3, min_grade: int = 1,
                    measure: str = "height_loss") -> pd.Series:
    """Share of vertebrae graded ``>= min_grade`` from the mean of 1, 2, ... readers.

    On the vertebrae read by exactly ``n_readers`` experts, over every subset of k
    readers: the share of (vertebra, subset) pairs whose mean ``measure`` grades
    ``>= min_grade``.

    Returns
    -------
    Series
        Index ``readers`` (k), the rate; ``attrs["vertebrae"]`` the vertebrae used.
    """
    import itertools

    require_columns(table, ["expert", "vertebra_id", measure], "rate_by_readers")
    keys = [*study_keys(table), "vertebra_id"]
    check_unique(table, keys, "rate_by_readers")
    wide = table.assign(_m=table[measure].astype(float)).pivot_table(
        index=keys, columns="expert", values="_m", aggfunc="first")
    x = wide.to_numpy(dtype=float)
    x = x[np.sum(~np.isnan(x), axis=1) == n_readers]
    vals = np.take_along_axis(x, np.argsort(np.isnan(x), axis=1, kind="stable"), axis=1)[
        :, :n_readers]
    grade_fn = dict(MEASURES.values())[measure]
    out = {}
    for k in range(1, n_readers + 1):
        hits = [grade_fn(vals[:, list(c)].mean(axis=1)) >= min_grade
                for c in itertools.combinations(range(n_readers), k)]
        out[k] = float(np.mean(hits)) if len(x) else float("nan")
    series = pd.Series(out, name=f"grade >= {min_grade}")
    series.index.name = "readers"
    series.attrs["vertebrae"] = int(len(x))
    return series


def prevalence(consensus_table: pd.DataFrame, columns: Mapping[str, str] | None = None
               ) -> pd.DataFrame:
    """Vertebra and patient prevalence of consensus grades >= 1 and >= 2, per rule.

    Parameters
    ----------
    consensus_table : DataFrame
        From :func:`consensus` (levels restricted, e.g. by :func:`label_levels`); a
        patient is a ``folder``.
    columns : mapping label -> grade column, optional
        Default: every one of ``grade``, ``neighbour_grade``, ``sd_grade`` present.

    Returns
    -------
    DataFrame
        One row per rule: ``vertebrae``, ``vertebrae_ge1``, ``vertebrae_ge2``,
        ``patients``, ``patients_ge1``, ``patients_ge2`` (fractions).
    """
    require_columns(consensus_table, ["folder"], "prevalence")
    rows = {}
    for label, column in _rule_columns(consensus_table, columns).items():
        t = consensus_table[consensus_table[column].notna()]
        g = t[column].astype(int)
        worst = g.groupby(t["folder"]).max()
        rows[label] = {"vertebrae": len(t), "vertebrae_ge1": float(np.mean(g >= 1)) if len(t)
                       else float("nan"),
                       "vertebrae_ge2": float(np.mean(g >= 2)) if len(t) else float("nan"),
                       "patients": len(worst),
                       "patients_ge1": float(np.mean(worst >= 1)) if len(worst) else float("nan"),
                       "patients_ge2": float(np.mean(worst >= 2)) if len(worst) else float("nan")}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "rule"
    return out


def prevalence_intervals(consensus_table: pd.DataFrame, columns: Mapping[str, str] | None = None,
                         *, min_grade: int = 1, n_boot: int = N_BOOT, seed: int = 0
                         ) -> pd.DataFrame:
    """Vertebra and patient prevalence of consensus grade ``>= min_grade`` with 95 % intervals.

    Patients are independent (a Wilson interval); vertebrae of one patient are not (a
    percentile bootstrap over patients).

    Returns
    -------
    DataFrame
        One row per rule: ``vertebrae``, ``vertebra_rate``, ``vertebra_lo``,
        ``vertebra_hi``, ``patients``, ``patients_positive``, ``patient_rate``,
        ``patient_lo``, ``patient_hi``.
    """
    require_columns(consensus_table, ["folder"], "prevalence_intervals")
    rows = {}
    for label, column in _rule_columns(consensus_table, columns).items():
        t = consensus_table[consensus_table[column].notna()]
        hit = (t[column].astype(int) >= min_grade).to_numpy(dtype=float)
        folders = t["folder"].to_numpy()
        worst = pd.Series(hit).groupby(folders).max()
        rate, lo, hi = agreement.bootstrap_groups(
            lambda w, hit=hit: (w @ hit) / w.sum(axis=1), folders, n_boot=n_boot, seed=seed,
            weighted=True)
        k = int(worst.sum())
        p_lo, p_hi = agreement.wilson_interval(k, len(worst))
        rows[label] = {"vertebrae": len(t), "vertebra_rate": rate, "vertebra_lo": lo,
                       "vertebra_hi": hi, "patients": len(worst), "patients_positive": k,
                       "patient_rate": k / len(worst) if len(worst) else float("nan"),
                       "patient_lo": p_lo, "patient_hi": p_hi}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "rule"
    return out


def level_rates(consensus_table: pd.DataFrame, columns: Mapping[str, str] | None = None, *,
                min_grade: int = 1, levels=None) -> pd.DataFrame:
    """Per level and rule: vertebrae graded, positives, rate and its 95 % Wilson interval.

    A patient has at most one vertebra per level, hence Wilson, not a bootstrap.

    Returns
    -------
    DataFrame
        Long: ``level``, ``rule``, ``n``, ``positives``, ``rate``, ``low``, ``high``;
        levels in ``levels`` order (default: :data:`vfs_utils.annotation.LEVELS` order).
    """
    require_columns(consensus_table, ["level"], "level_rates")
    columns = _rule_columns(consensus_table, columns)
    order = [lv for lv in (levels or LEVELS) if lv in set(consensus_table["level"])]
    rows = []
    for label, column in columns.items():
        t = consensus_table[consensus_table[column].notna()]
        for level in order:
            g = t.loc[t["level"] == level, column].astype(int)
            k, n = int((g >= min_grade).sum()), len(g)
            low, high = agreement.wilson_interval(k, n)
            rows.append({"level": level, "rule": label, "n": n, "positives": k,
                         "rate": k / n if n else float("nan"), "low": low, "high": high})
    return pd.DataFrame(rows, columns=["level", "rule", "n", "positives", "rate", "low", "high"])


def keypoint_scatter(frame: pd.DataFrame, spacing) -> pd.DataFrame:
    """The experts' own scatter of corresponding keypoints, in mm, per axis.

    The pooled within-vertebra SD per axis of one expert's point (pairs ordered by
    row, as in :func:`heights`) around the experts' mean, over vertebrae read by >= 2
    experts: the sigma of :func:`vfs_utils.agreement.grade_flip_rate`.

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.readings.match_vertebrae` (points, ``vertebra_id``).
    spacing : sequence of 3 floats, array (n, 3) or mapping folder -> 3 floats
        Voxel spacing (row, col, slice) in mm.

    Returns
    -------
    DataFrame
        Index ``axis`` (row, col, slice): ``sd_mm``, ``vertebrae``, ``readings``.
    """
    require_columns(frame, ["expert", "vertebra_id", *POINT_COLUMNS], "keypoint_scatter")
    pts = as_points(frame)
    n = len(pts)
    sp = spacing_rows(spacing, n, frame)
    pairs = pts.reshape(n, 3, 2, 3)
    order = np.argsort(pairs[:, :, :, 0].mean(axis=2), axis=1, kind="stable")
    pairs = np.take_along_axis(pairs, order[:, :, None, None], axis=1)
    mm = pairs.reshape(n, 6, 3) * sp[:, None, :]
    keys = [*study_keys(frame), "vertebra_id"]
    group = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    size = np.bincount(group)
    multi = size[group] >= 2
    g = pd.factorize(group[multi])[0]
    x = mm[multi]
    sums = np.zeros((g.max() + 1 if len(g) else 0, 6, 3))
    np.add.at(sums, g, x)
    mean = sums / np.bincount(g)[:, None, None] if len(g) else sums
    dev = x - mean[g]
    n_v = len(np.unique(g))
    dof = 6 * (len(x) - n_v)
    sd = np.sqrt((dev ** 2).sum(axis=(0, 1)) / dof) if dof > 0 else np.full(3, np.nan)
    return pd.DataFrame({"sd_mm": sd, "vertebrae": n_v, "readings": len(x)},
                        index=pd.Index(["row", "col", "slice"], name="axis"))

"""Comparison of the consensus grades of two annotation rounds (v1 and v2) of the same studies."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .grading import GRADES
from .pooling import consensus, grade_column

__all__ = [
    "RoundComparison",
    "compare_rounds",
]


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

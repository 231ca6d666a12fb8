"""Level-normal references and SD scores (Eastell et al. 1991), the graded levels, and
readings without point-for-point repeats."""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..annotation import LEVELS, POINT_COLUMNS
from ._inputs import require_columns
from .grading import GRADE_TOLERANCE, deformity_names, to_int64

__all__ = [
    "LABEL_LEVELS",
    "RATIOS",
    "SD_THRESHOLDS",
    "distinct_readings",
    "label_levels",
    "level_reference",
    "sd_scores",
]


#: Levels graded by default: T4-L4, as in most SQ prevalence studies (e.g. Samelson et al.
#: 2011); on chest CT the lumbar levels are rarely in the field of view.
LABEL_LEVELS: tuple[str, ...] = tuple(f"Th{i}" for i in range(4, 13)) + tuple(
    f"L{i}" for i in range(1, 5))

#: Eastell's shape ratios: Ha/Hp, Hm/Hp and Hp / mean Hp of the adjacent vertebrae.
RATIOS: tuple[str, str, str] = ("wedge_index", "biconcave_index", "crush_index")

#: SD-score bands: grade 1 from 3 SD below the level's normal mean, grade 2 from 4 SD.
SD_THRESHOLDS: tuple[float, float] = (3.0, 4.0)


def label_levels(table: pd.DataFrame, levels: Sequence[str] | None = LABEL_LEVELS) -> pd.DataFrame:
    """The rows whose ``level`` is among ``levels`` (default T4-L4, :data:`LABEL_LEVELS`).

    v1 readings have no level: give them the v2 level first with
    :func:`vfs_utils.readings.carry_levels`. ``levels=None`` keeps every row.
    """
    require_columns(table, ["level"], "label_levels")
    if levels is None:
        return table
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"label_levels: unknown level names {unknown}; use names of "
                         "vfs_utils.annotation.LEVELS such as 'Th4' or 'L1'")
    return table[table["level"].isin(list(levels))]


def distinct_readings(table: pd.DataFrame) -> pd.DataFrame:
    """The rows whose six points differ from those of every earlier row of the same study.

    Many v2 readings are v1 readings copied point for point; pooling both rounds would
    count them twice. A :func:`morphometry_table` has no point columns: its heights and
    centre are compared instead.
    """
    geometry = ["ha", "hm", "hp", "centre_row", "centre_col", "centre_slice"]
    columns = POINT_COLUMNS if set(POINT_COLUMNS) <= set(table.columns) else geometry
    require_columns(table, ["folder", *columns], "distinct_readings")
    return table[~table.duplicated(subset=["folder", *columns], keep="first")]


def level_reference(table: pd.DataFrame, *, ratios: Sequence[str] = RATIOS, n_sd: float = 3.0,
                    max_iter: int = 50, min_n: int = 10) -> pd.DataFrame:
    """Per-level normal mean and SD of the shape ratios, from the data themselves.

    Iterative trimming per level: drop readings with any ratio more than ``n_sd`` SD from
    the mean, re-estimate, until nothing is dropped. Eastell et al. measured healthy
    women instead; this stand-in's "normal" keeps deformities too common to be trimmed.
    Pass :func:`distinct_readings` so that a copied reading counts once.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table`, with ``level``.
    ratios : sequence of str
        Ratio columns (default :data:`RATIOS`).
    n_sd, max_iter : float, int
        Trimming distance in SD; maximum trimming rounds.
    min_n : int
        Levels with fewer retained readings get NaN (no reference).

    Returns
    -------
    DataFrame
        Index ``level`` (LEVELS order): ``n``, ``n_normal`` (retained), ``iterations``,
        ``mean_<ratio>``, ``sd_<ratio>``.
    """
    require_columns(table, ["level", *ratios], "level_reference")
    rows = {}
    for level, group in table[table["level"].notna()].groupby("level", sort=False):
        x = group[list(ratios)].to_numpy(dtype=float)
        keep = np.isfinite(x).any(axis=1)
        n_iter = 0
        for n_iter in range(1, int(max_iter) + 1):  # noqa: B007 (reported after the loop)
            sub = np.where(keep[:, None], x, np.nan)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, sd = np.nanmean(sub, axis=0), np.nanstd(sub, axis=0, ddof=1)
                z = np.abs(x - mean) / sd
            out = np.nan_to_num(z, nan=0.0).max(axis=1) > n_sd
            new = keep & ~out
            if (new == keep).all():
                break
            keep = new
        row = {"n": len(group), "n_normal": int(keep.sum()), "iterations": n_iter}
        for j, r in enumerate(ratios):
            ok = keep.sum() >= min_n
            row[f"mean_{r}"] = float(mean[j]) if ok else float("nan")
            row[f"sd_{r}"] = float(sd[j]) if ok else float("nan")
        rows[level] = row
    order = [lv for lv in LEVELS if lv in rows]
    out = pd.DataFrame.from_dict(rows, orient="index").reindex(order)
    out.index.name = "level"
    return out


def sd_codes(score: np.ndarray) -> np.ndarray:
    """SD grades 0..2 (int8) of SD scores (negative = below normal); -1 where NaN."""
    score = np.asarray(score, dtype=float)
    codes = np.asarray((-score[..., None] >= np.asarray(SD_THRESHOLDS) - GRADE_TOLERANCE).sum(
        axis=-1), dtype=np.int8)
    return np.where(np.isnan(score), np.int8(-1), codes)


def sd_scores(table: pd.DataFrame, reference: pd.DataFrame, *,
              ratios: Sequence[str] = RATIOS) -> pd.DataFrame:
    """SD scores of the shape ratios against a level-normal reference (Eastell et al. 1991).

    ``sd_score`` is the smallest ``z_<ratio>`` (missing ratios left out), ``sd_grade`` its
    :data:`SD_THRESHOLDS` grade, ``sd_deformity`` the lowest ratio's deformity
    ("normal" at grade 0); NaN for a level without a reference.

    Parameters
    ----------
    table : DataFrame
        From :func:`morphometry_table` with ``level``.
    reference : DataFrame
        From :func:`level_reference`.
    ratios : sequence of str

    Returns
    -------
    DataFrame
        A copy of ``table`` with ``z_<ratio>``, ``sd_score``, ``sd_grade``, ``sd_deformity``.
    """
    require_columns(table, ["level", *ratios], "sd_scores")
    missing = [f"{k}_{r}" for r in ratios for k in ("mean", "sd")
               if f"{k}_{r}" not in reference.columns]
    if missing:
        raise ValueError(f"sd_scores: the reference lacks {missing}; build it with "
                         "level_reference()")
    out = table.copy()
    ref = reference.reindex(out["level"].astype(object).where(out["level"].notna(), None))
    z = np.column_stack([(out[r].to_numpy(float) - ref[f"mean_{r}"].to_numpy(float))
                         / ref[f"sd_{r}"].to_numpy(float) for r in ratios])
    for j, r in enumerate(ratios):
        out[f"z_{r}"] = z[:, j]
    any_z = np.isfinite(z).any(axis=1)
    score = np.where(any_z, np.nanmin(np.where(np.isfinite(z), z, np.inf), axis=1), np.nan)
    codes = sd_codes(score)
    out["sd_score"] = score
    out["sd_grade"] = to_int64(codes)
    sd_def = deformity_names(np.where(np.isfinite(z), z, np.inf), codes)
    out["sd_deformity"] = pd.Series(sd_def, index=out.index, dtype=object)
    return out

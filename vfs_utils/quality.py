"""Quality control of annotation readings: vertebrae that cannot be where a reading puts them.

Each expert's reading of a file, ordered along the spine, is checked for vertebrae that

- sit **off the spine line**: the centre is more than ``max_offset`` body depths (across
  the spine) from the midpoint of its neighbours (extrapolated at the ends), and further
  than its neighbours are;
- **overlap a neighbour**: less than ``min_step`` median steps from the next centre along
  the slice axis;
- have **levels out of order**: a level name repeated, or before a level above it.

The annotation has no spacing, so thresholds are relative to the reading's median body
depth and median step between centres.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .annotation import LEVELS, points

__all__ = ["CHECKS", "check_readings"]

#: The names of the checks, as they appear in the ``check`` column.
CHECKS = ("off the spine line", "overlaps a neighbour", "levels out of order")

_RANK = {name: i for i, name in enumerate(LEVELS)}


def _reading_flags(centres: np.ndarray, depth: float, levels, max_offset: float,
                   min_step: float) -> list[tuple[int, str, str]]:
    """Flags of one reading whose vertebrae are sorted by centre slice."""
    n = len(centres)
    flags: list[tuple[int, str, str]] = []
    if n >= 3:
        pred = np.empty((n, 3))
        pred[1:-1] = (centres[:-2] + centres[2:]) / 2
        pred[0] = 2 * centres[1] - centres[2]
        pred[-1] = 2 * centres[-2] - centres[-3]
        off = np.hypot(*(centres[:, :2] - pred[:, :2]).T) / depth
        for i in range(n):
            around = off[max(i - 1, 0):i + 2]
            if off[i] > max_offset and off[i] == around.max():
                flags.append((i, CHECKS[0], f"centre {off[i]:.2f} body depths from the line "
                                            f"of its neighbours (limit {max_offset})"))
    if n >= 2:
        steps = np.diff(centres[:, 2])
        median = float(np.median(steps))
        for i in np.flatnonzero(steps < min_step * median):
            # of the stacked pair, name the one further off the line of the others
            j = i + 1 if n < 3 or off[i + 1] >= off[i] else i
            flags.append((j, CHECKS[1], f"{steps[i]:.1f} voxels from the next centre along "
                                        f"the spine; median step {median:.1f}"))
    if levels is not None and all(isinstance(v, str) for v in levels):
        rank = np.array([_RANK.get(v, -1) for v in levels])
        seen: set[str] = set()
        for i, name in enumerate(levels):
            if name in seen or (i > 0 and rank[i] <= rank[:i].max()):
                flags.append((i, CHECKS[2], f"level {name} after {levels[i - 1]} "
                                            "along the slice axis"))
            seen.add(name)
    return flags


def check_readings(frame: pd.DataFrame, *, max_offset: float = 0.6,
                   min_step: float = 0.3) -> pd.DataFrame:
    """The vertebra readings of ``frame`` that fail a geometric check (see the module).

    Parameters
    ----------
    frame : DataFrame
        From :func:`vfs_utils.annotation.read_annotations` (``level`` used when present).
    max_offset : float
        Largest distance of a centre from the line of its neighbours, in median body depths.
    min_step : float
        Smallest step between consecutive centres, as a fraction of the median step.

    Returns
    -------
    DataFrame
        One row per (reading, failed check), with the flagged row's index: ``version,
        folder, expert, vertebra, level`` (those present), ``centre_row``, ``centre_col``,
        ``centre_slice``, ``check`` (one of :data:`CHECKS`), ``detail``.
    """
    keys = [c for c in ("version", "folder", "expert", "vertebra", "level") if c in frame]
    columns = [*keys, "centre_row", "centre_col", "centre_slice", "check", "detail"]
    if len(frame) == 0:
        return pd.DataFrame(columns=columns)
    pts = points(frame)
    centre = pts.mean(axis=1)
    depth = pts[:, :, 0].max(axis=1) - pts[:, :, 0].min(axis=1)
    group_keys = [c for c in ("file", "folder", "version") if c in frame] + ["expert"]
    rows, index = [], []
    for _, idx in frame.groupby(group_keys, sort=True, dropna=False).indices.items():
        idx = idx[np.argsort(centre[idx, 2], kind="stable")]
        levels = frame["level"].to_numpy()[idx].tolist() if "level" in frame else None
        for i, check, detail in _reading_flags(centre[idx], float(np.median(depth[idx])),
                                               levels, max_offset, min_step):
            rows.append((check, detail))
            index.append(idx[i])
    if not rows:
        return pd.DataFrame(columns=columns)
    out = frame.iloc[index][keys].copy()
    out["centre_row"], out["centre_col"], out["centre_slice"] = centre[index].T
    out["check"] = [r[0] for r in rows]
    out["detail"] = [r[1] for r in rows]
    return out[columns]

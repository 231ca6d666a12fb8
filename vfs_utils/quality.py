"""Quality control of annotation readings: vertebrae that cannot be where a reading puts them.

:func:`check_readings` looks at every expert's reading of a study (the vertebrae one
expert marked in one file, ordered along the spine) and reports the vertebrae that

- sit **off the spine line** (``"off the spine line"``): the centre lies more than
  ``max_offset`` body depths (in the row-column plane, across the spine) from where the
  neighbouring vertebrae put it (the midpoint of the two neighbours, or the straight-line
  extrapolation of the last two at the ends of a reading), and further than its
  neighbours do;
- **overlap a neighbour** (``"overlaps a neighbour"``): the centre is less than
  ``min_step`` times the reading's median centre-to-centre distance (along the slice
  axis, head to feet) from the next vertebra, so two bodies are stacked at one height;
- have **levels out of order** (``"levels out of order"``, readings with level names):
  a level name that repeats in the reading, or that comes before a level above it along
  the slice axis.

Only voxel indices are used (the annotation has no spacing), so the thresholds are
relative to the reading itself: its median body depth (anterior-posterior extent of the six
points) and its median step between centres. Lesson 00 lists what the defaults flag.
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
        From :func:`vfs_utils.annotation.read_annotations` (either round; a ``level``
        column is used when present).
    max_offset : float
        Largest distance of a centre from the line of its neighbours, in the reading's
        median body depths.
    min_step : float
        Smallest distance between consecutive centres along the slice axis, as a
        fraction of the reading's median step.

    Returns
    -------
    DataFrame
        One row per (vertebra reading, failed check), indexed like ``frame`` (the index
        of the flagged row; a reading failing two checks appears twice): the columns
        ``version, folder, expert, vertebra, level`` (those present), ``centre_row``,
        ``centre_col``, ``centre_slice`` (voxels), ``check`` (one of :data:`CHECKS`) and
        ``detail``. Empty when nothing is found.
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

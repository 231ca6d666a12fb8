"""Monte Carlo sensitivity of the within-vertebra QM grade to keypoint noise."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ._inputs import as_points, spacing_rows
from .grading import grade_codes, within_loss

__all__ = [
    "grade_flip_rate",
]


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

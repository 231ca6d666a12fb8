"""Heatmap and offsets -> vertebrae with six points each (pure numpy).

The network predicts, on a grid of cells ``STRIDE`` input pixels wide, the probability
that a vertebral body's centre (the mean of its six keypoints) falls in a cell, and for
every cell twelve offsets: from the cell's centre to the six keypoints (row and column
of each, in units of :data:`OFFSET_SCALE` pixels). Decoding keeps the cells that are
local maxima above a threshold, at least ``min_dist`` pixels apart, and reads each
vertebra's points as the heat-weighted mean of what its peak cell and the eight cells
around it predict.
"""
from __future__ import annotations

import numpy as np

__all__ = ["OFFSET_SCALE", "STRIDE", "THRESHOLD", "MIN_DIST_PX", "cell_centres", "decode"]

#: Input pixels per output cell.
STRIDE = 4
#: Offsets are predicted in units of this many input pixels.
OFFSET_SCALE = 16.0
#: Default detection threshold on the centre probability (chosen on validation patients).
THRESHOLD = 0.3
#: Two vertebra centres are at least this far apart (input pixels = mm).
MIN_DIST_PX = 10.0


def cell_centres(shape: tuple[int, int], stride: int = STRIDE) -> np.ndarray:
    """(2, H, W) pixel coordinates (row, column) of the centre of every cell."""
    h, w = shape
    ii = np.arange(h) * stride + (stride - 1) / 2.0
    jj = np.arange(w) * stride + (stride - 1) / 2.0
    return np.stack(np.meshgrid(ii, jj, indexing="ij"))


def decode(heat: np.ndarray, offsets: np.ndarray, *, threshold: float = THRESHOLD,
           min_dist: float = MIN_DIST_PX, stride: int = STRIDE,
           offset_scale: float = OFFSET_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Vertebrae from one image's network output.

    Parameters
    ----------
    heat : ndarray (H, W)
        Centre probability per cell (after the sigmoid).
    offsets : ndarray (12, H, W)
        Channels ``2k`` and ``2k + 1``: row and column offset of keypoint ``k`` from the
        cell centre, in units of ``offset_scale`` pixels.

    Returns
    -------
    points : ndarray (n, 6, 2)
        Pixel coordinates (row, column) of each vertebra's keypoints, sorted by the
        column of their mean (head -> feet).
    scores : ndarray (n,)
        The peak probability of each.
    """
    heat = np.asarray(heat, float)
    off = np.asarray(offsets, float)
    if heat.ndim != 2 or off.shape != (12,) + heat.shape:
        raise ValueError(f"heat must be (H, W) and offsets (12, H, W); got {heat.shape} and "
                         f"{off.shape}")
    h, w = heat.shape
    pad = np.pad(heat, 1, constant_values=-np.inf)
    neigh = np.stack([pad[1 + di:1 + di + h, 1 + dj:1 + dj + w]
                      for di in (-1, 0, 1) for dj in (-1, 0, 1)])
    is_max = (heat >= neigh.max(axis=0)) & (heat >= threshold)
    cand = np.argwhere(is_max)
    order = np.argsort(-heat[is_max], kind="stable")
    cand = cand[order]
    centres = cell_centres(heat.shape, stride)
    # absolute keypoints predicted by every cell: (H, W, 6, 2)
    absolute = (off.reshape(6, 2, h, w) * offset_scale
                + centres[None, :, :, :]).transpose(2, 3, 0, 1)
    kept, pts, scores = [], [], []
    for i, j in cand:
        c = centres[:, i, j]
        if any(np.hypot(*(c - k)) < min_dist for k in kept):
            continue
        i0, i1, j0, j1 = max(i - 1, 0), min(i + 2, h), max(j - 1, 0), min(j + 2, w)
        wts = heat[i0:i1, j0:j1]
        p = (absolute[i0:i1, j0:j1] * wts[:, :, None, None]).sum(axis=(0, 1)) / wts.sum()
        kept.append(c)
        pts.append(p)
        scores.append(heat[i, j])
    if not pts:
        return np.zeros((0, 6, 2)), np.zeros(0)
    pts, scores = np.stack(pts), np.asarray(scores)
    by_col = np.argsort(pts[:, :, 1].mean(axis=1), kind="stable")
    return pts[by_col], scores[by_col]

"""Heatmap and offsets -> vertebrae with six points each (pure numpy).

The network predicts, on a grid of cells ``STRIDE`` input pixels wide, the probability
that a vertebral body's centre (the mean of its six keypoints) falls in a cell, and for
every cell twelve offsets: from the cell's centre to the six keypoints (row and column
of each, in units of :data:`OFFSET_SCALE` pixels). Decoding keeps the cells that are
local maxima above a threshold, at least ``min_dist`` pixels apart, and reads each
vertebra's points as the heat-weighted mean of what its peak cell and the eight cells
around it predict. :func:`refine` then moves each endplate point to the steepest bone
edge along its height line, within 2 mm (the offsets regress towards an average shape;
the image edge does not).
"""
from __future__ import annotations

import numpy as np

__all__ = ["MIN_DIST_PX", "OFFSET_SCALE", "REFINE_PX", "STRIDE", "THRESHOLD", "cell_centres",
           "decode", "refine"]

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


#: How far (input pixels = mm) :func:`refine` moves a point along its height line, and the
#: smoothing (pixels) of the intensity profile; both chosen on the validation patients.
REFINE_PX = 2.0
REFINE_SMOOTH_PX = 0.4
_STEP = 0.125


def refine(image: np.ndarray, points: np.ndarray, *, search: float = REFINE_PX,
           smooth: float = REFINE_SMOOTH_PX) -> np.ndarray:
    """Move each endplate point to the bone edge along its height line.

    For each of a vertebra's three pairs (upper, lower endplate point), the image is sampled
    along the line through the pair; the upper point moves to the steepest rise of intensity
    (disc -> bone, walking downwards) and the lower point to the steepest fall (bone -> disc),
    each within ``search`` pixels of where the network put it. Where the line leaves the
    image, or the profile is flat, the point stays.

    Parameters
    ----------
    image : ndarray (rows, cols)
        The network's input (normalised HU).
    points : ndarray (n, 6, 2)
        Pixel coordinates from :func:`decode`.
    """
    from scipy import ndimage

    pts = np.array(points, float, copy=True)
    h, w = image.shape
    ts = np.arange(-search - 1.0, search + 1.0 + _STEP / 2, _STEP)
    mid = 0.5 * (ts[:-1] + ts[1:])
    inside = np.abs(mid) <= search
    for v in pts:
        for k in range(3):
            a, b = v[2 * k].copy(), v[2 * k + 1].copy()
            d = b - a
            length = float(np.hypot(*d))
            if length < 2 * search + 1:
                continue
            d = d / length
            for idx, p, sign in ((2 * k, a, 1.0), (2 * k + 1, b, -1.0)):
                line = p[None, :] + ts[:, None] * d[None, :]
                if line.min() < 0 or line[:, 0].max() > h - 1 or line[:, 1].max() > w - 1:
                    continue
                prof = ndimage.map_coordinates(image, line.T, order=1)
                prof = ndimage.gaussian_filter1d(prof, smooth / _STEP)
                grad = np.diff(prof)[inside] * sign
                if grad.max() <= 0:
                    continue
                v[idx] = p + mid[inside][int(np.argmax(grad))] * d
    return pts

"""From a CT volume to the network's 2D input: a sagittal image that follows the spine.

:func:`spine_centreline` finds, on every axial slice, the row and column of the spine
from the image alone (the densest bone blob near the image's middle column, smoothed
along the slices), and :func:`sagittal_input` samples a straightened sagittal image on
a fixed 1 mm grid along that curve: image row ``u`` is the offset (mm) from the
centre line's row, image column ``v`` the position (mm) along the slices. A point of
that image maps back to ``(row, col, slice)`` voxel indices of the volume with
:meth:`SagittalInput.to_voxels`: the column comes from the centre line at that slice,
so a scoliotic spine keeps its left-right course.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["GRID_MM", "HALF_ROWS_MM", "SEARCH_HALF_MM", "SagittalInput", "lung_profile",
           "normalise_hu", "sagittal_input", "spine_centreline"]

#: Pixel size of the 2D input (mm).
GRID_MM = 1.0
#: The input covers the centre line's row +- this many mm (anterior at the top).
HALF_ROWS_MM = 48.0
#: The spine is searched within this many mm of the image's middle column.
SEARCH_HALF_MM = 70.0
_DENSE_HU = 65.0           # bone and disc are denser than muscle, blood and abdomen (35-55)
_BLOB_MM = 8.0             # smoothing of the dense-tissue mask: the vertebral column wins
_ROW_HALF_MM = 20.0        # the column centroid is taken over this block around the blob
_COL_HALF_MM = 30.0
_ALONG_MM = 12.0           # smoothing of the centre line along the slices
_SLAB_MM = (-2.0, 0.0, 2.0)   # the input averages these column offsets from the centre line


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """HU to the network's input scale: clip to [-300, 1200], then (HU - 200) / 400."""
    return ((np.clip(hu, -300.0, 1200.0) - 200.0) / 400.0).astype(np.float32)


def _search_cols(n_cols: int, spacing_col: float, col_offset: float = 0.0,
                 full_cols: int | None = None) -> tuple[int, int]:
    """Column range (local indices) within SEARCH_HALF_MM of the full image's middle."""
    full = n_cols if full_cols is None else full_cols
    mid = (full - 1) / 2.0 - col_offset
    half = SEARCH_HALF_MM / spacing_col
    return max(int(np.floor(mid - half)), 0), min(int(np.ceil(mid + half)) + 1, n_cols)


def spine_centreline(array: np.ndarray, spacing, *, col_offset: float = 0.0,
                     full_cols: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The spine's row and column on every slice, from bone intensity.

    Parameters
    ----------
    array : ndarray (rows, cols, slices)
        HU.
    spacing : (row, col, slice) mm
    col_offset, full_cols : optional
        When ``array`` is a column crop of a larger image: the crop's first column in
        the full image and the full image's width (so the search window is the same).

    Returns
    -------
    rows, cols : ndarray (slices,)
        Voxel indices (float) of the centre line on every slice (cols in the full image).
    """
    sp = np.asarray(spacing, float)
    n_r, n_c, n_s = array.shape
    c0, c1 = _search_cols(n_c, sp[1], col_offset, full_cols)
    step_s = max(1, int(round(2.0 / sp[2])))       # every ~2 mm along the slices
    ds = 2                                          # and every 2nd pixel in-plane
    sub = array[::ds, c0:c1:ds, ::step_s].astype(np.float32)
    sub = ndimage.uniform_filter(sub, (3, 3, 1))
    dense = (sub > _DENSE_HU).astype(np.float32)       # bone and disc, not soft tissue
    sig = (_BLOB_MM / (ds * sp[0]), _BLOB_MM / (ds * sp[1]), _BLOB_MM / (step_s * sp[2]))
    w = ndimage.gaussian_filter(dense, sig, truncate=2.0)
    flat = w.reshape(-1, w.shape[2])
    best = flat.argmax(axis=0)
    r_sub, c_sub = np.unravel_index(best, w.shape[:2])
    strength = flat.max(axis=0)
    # the column: the dense tissue's centroid around the blob (the body and the
    # transverse processes are symmetric about the mid-sagittal plane)
    hr, hc = int(round(_ROW_HALF_MM / (ds * sp[0]))), int(round(_COL_HALF_MM / (ds * sp[1])))
    c_ref = c_sub.astype(float)
    for k in range(w.shape[2]):
        a0, a1 = max(r_sub[k] - hr, 0), r_sub[k] + hr + 1
        b0, b1 = max(c_sub[k] - hc, 0), c_sub[k] + hc + 1
        block = dense[a0:a1, b0:b1, k]
        tot = block.sum()
        if tot > 0:
            c_ref[k] = b0 + (block.sum(axis=0) * np.arange(block.shape[1])).sum() / tot
    r = r_sub * ds + (ds - 1) / 2.0
    c = c_ref * ds + (ds - 1) / 2.0 + c0
    # slices without bone (above or below the spine) follow their neighbours
    ok = strength > 0.5 * np.percentile(strength, 90)
    z = np.arange(0, n_s, step_s, dtype=float)
    if ok.sum() < 2:
        return (np.full(n_s, n_r / 2.0), np.full(n_s, (c0 + c1) / 2.0 + col_offset))
    zs = z[ok]
    size = max(3, int(round(30.0 / (step_s * sp[2]))) | 1)
    r_m = ndimage.median_filter(r[ok], size=size, mode="nearest")
    c_m = ndimage.median_filter(c[ok], size=size, mode="nearest")
    sig = _ALONG_MM / (step_s * sp[2])
    r_m = ndimage.gaussian_filter1d(r_m, sig, mode="nearest")
    c_m = ndimage.gaussian_filter1d(c_m, sig, mode="nearest")
    all_z = np.arange(n_s, dtype=float)
    return np.interp(all_z, zs, r_m), np.interp(all_z, zs, c_m) + col_offset


@dataclass
class SagittalInput:
    """The straightened sagittal image and how to map its pixels back to voxels.

    Attributes
    ----------
    image : ndarray float32 (n_rows, n_along)
        Normalised HU (:func:`normalise_hu`); row ``i`` is ``u = i * GRID_MM -
        HALF_ROWS_MM`` mm from the centre line (negative: anterior), column ``j`` is
        ``v = j * GRID_MM`` mm along the slices from slice 0.
    rows, cols : ndarray (slices,)
        The centre line (voxel indices) on every slice of the volume.
    spacing : (row, col, slice) mm
    """

    image: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    spacing: tuple[float, float, float]

    def to_voxels(self, uv: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(..., 2)`` = (i, j) of the image -> ``(..., 3)`` voxel
        ``(row, col, slice)``; the column is the centre line's at that slice."""
        uv = np.asarray(uv, float)
        sp = self.spacing
        s = uv[..., 1] * GRID_MM / sp[2]
        zi = np.arange(len(self.rows), dtype=float)
        rc = np.interp(s, zi, self.rows)
        cc = np.interp(s, zi, self.cols)
        r = rc + (uv[..., 0] * GRID_MM - HALF_ROWS_MM) / sp[0]
        return np.stack([r, cc, s], axis=-1)

    def to_pixels(self, rcs: np.ndarray) -> np.ndarray:
        """Voxel ``(..., 3)`` (row, col, slice) -> image pixel coordinates ``(..., 2)``."""
        rcs = np.asarray(rcs, float)
        sp = self.spacing
        zi = np.arange(len(self.rows), dtype=float)
        rc = np.interp(rcs[..., 2], zi, self.rows)
        i = ((rcs[..., 0] - rc) * sp[0] + HALF_ROWS_MM) / GRID_MM
        j = rcs[..., 2] * sp[2] / GRID_MM
        return np.stack([i, j], axis=-1)


def sagittal_input(array: np.ndarray, spacing, *, col_offset: float = 0.0,
                   full_cols: int | None = None) -> SagittalInput:
    """The network's input for one volume (see the module docstring).

    Parameters are those of :func:`spine_centreline`; the returned centre-line columns
    are in the full image.
    """
    sp = tuple(float(s) for s in spacing)
    rows, cols = spine_centreline(array, sp, col_offset=col_offset, full_cols=full_cols)
    n_s = array.shape[2]
    n_u = int(round(2 * HALF_ROWS_MM / GRID_MM))
    n_v = int(np.floor((n_s - 1) * sp[2] / GRID_MM)) + 1
    v = np.arange(n_v) * GRID_MM
    s = v / sp[2]
    zi = np.arange(n_s, dtype=float)
    rc = np.interp(s, zi, rows)
    cc = np.interp(s, zi, cols) - col_offset
    u = np.arange(n_u) * GRID_MM - HALF_ROWS_MM
    r = rc[None, :] + u[:, None] / sp[0]
    img = np.zeros((n_u, n_v), np.float32)
    for dc in _SLAB_MM:
        c = np.broadcast_to(cc[None, :] + dc / sp[1], r.shape)
        ss = np.broadcast_to(s[None, :], r.shape)
        img += ndimage.map_coordinates(array, [r, c, ss], order=1, mode="nearest",
                                       prefilter=False).astype(np.float32)
    img /= len(_SLAB_MM)
    return SagittalInput(normalise_hu(img), rows, cols, sp)


def lung_profile(array: np.ndarray, spacing, rows: np.ndarray, cols: np.ndarray, *,
                 col_offset: float = 0.0) -> np.ndarray:
    """Per slice, the area (mm2) of air-dense tissue (HU < -500) beside and in front of
    the spine: 20-110 mm to either side of the centre line, from 60 mm anterior to
    20 mm posterior of it. Zero below the lungs."""
    sp = np.asarray(spacing, float)
    n_r, n_c, n_s = array.shape
    out = np.zeros(n_s)
    step = max(1, int(round(2.0 / sp[0])))
    for k in range(n_s):
        r0 = int(max(rows[k] - 60 / sp[0], 0))
        r1 = int(min(rows[k] + 20 / sp[0], n_r))
        c = cols[k] - col_offset
        area = 0
        for lo, hi in ((c - 110 / sp[1], c - 20 / sp[1]), (c + 20 / sp[1], c + 110 / sp[1])):
            a, b = int(max(lo, 0)), int(min(hi, n_c))
            if b > a and r1 > r0:
                area += int((array[r0:r1:step, a:b:step, k] < -500).sum())
        out[k] = area * step * step * sp[0] * sp[1]
    return out

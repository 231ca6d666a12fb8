"""Level names from the anatomy: the ribs, else the lung base, else unknown.

:func:`rib_slices` finds the ribs: bone more than 40 mm to the side of the spine's
centre line (the vertebra and its transverse processes are cut away), in 3D components
that reach more than 70 mm to the side and begin at the cut (a rib, not a scapula); each
rib's medial end gives a slice. :func:`name_levels` calls the lowest vertebra of the
contiguous rib-bearing run from the top Th12 (rule ``"ribs"``; the others are counted
from it, a gap of more than 1.6 local spacings as missed vertebrae); a run that reaches
the volume's last 45 mm leaves the levels unknown (the 12th rib may lie below); without
ribs, the lowest slice with lung beside the spine (the posterior recess, about the Th12/L1
junction: less reliable, ``"lung base (fallback)"``); else, or when the count from Th12
runs past C1 or S1, the levels stay unknown (``"unknown"``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..annotation import LEVELS

__all__ = ["LUNG_FRACTION", "RIB_CUT_MM", "RIB_REACH_MM", "name_levels", "rib_slices"]

#: Bone within this many mm of the centre line's column belongs to the vertebra.
RIB_CUT_MM = 40.0
#: A rib reaches at least this far (mm) to the side of the centre line.
RIB_REACH_MM = 70.0
#: A slice shows lung when its lung area exceeds this fraction of the largest.
LUNG_FRACTION = 0.02
_BONE_HU = 150.0
_RUN_GAP_MM = 75.0        # ribs of neighbouring vertebrae are ~25-35 mm apart: one missed
                          # rib (short, or merged with its neighbour) does not end the run
_EDGE_MM = 45.0           # a run ending this near the volume's last slice may go on below
_LEVEL_STEP_MM = 27.0     # a vertebra and its disc, when the detections do not say


def rib_slices(array: np.ndarray, spacing, rows: np.ndarray, cols: np.ndarray, *,
               hu_offset: float = 0.0) -> np.ndarray:
    """Slices (float, sorted) of the ribs' medial ends, both sides (see the module
    docstring). ``rows``, ``cols``: the spine's centre line per slice (voxels)."""
    sp = np.asarray(spacing, float)
    d = max(1, int(round(2.0 / sp[0])))
    dc = max(1, int(round(2.0 / sp[1])))
    ds = max(1, int(round(2.0 / sp[2])))
    # bone on a ~2 mm grid: a block is bone when its mean HU is (a strided sample breaks a
    # 6 mm rib into pieces; "any voxel above" lets low-dose noise join the soft tissue into
    # one component; "half the voxels above" loses ribs thinned by 2.5 mm slices)
    n_r, n_c, n_s = (n // k for n, k in zip(array.shape, (d, dc, ds)))
    block = array[:n_r * d, :n_c * dc, :n_s * ds].reshape(n_r, d, n_c, dc, n_s, ds)
    bone = block.mean(axis=(1, 3, 5), dtype=np.float32) > _BONE_HU + hu_offset
    ks = np.arange(n_s) * ds
    c_line = (np.asarray(cols, float)[ks]) / dc
    r_line = (np.asarray(rows, float)[ks]) / d
    lat = (np.arange(n_c)[None, :] - c_line[:, None]) * dc * sp[1]       # (slices, cols) mm
    front = (np.arange(n_r)[:, None] - r_line[None, :]) * d * sp[0]      # (rows, slices) mm
    bone &= (np.abs(lat).T[None, :, :] > RIB_CUT_MM)
    bone &= (front[:, None, :] > -40.0)          # behind the body's front: no sternum, cartilage
    out = []
    for side in (-1, 1):
        half = bone & ((np.sign(lat).T == side)[None, :, :])
        lab, n = ndimage.label(half)
        if n == 0:
            continue
        objs = ndimage.find_objects(lab)
        for i, sl in enumerate(objs, start=1):
            comp = lab[sl] == i
            r_i, c_i, s_i = np.nonzero(comp)
            c_i, s_i = c_i + sl[1].start, s_i + sl[2].start
            reach = np.abs(lat[s_i, c_i])
            if reach.max() < RIB_REACH_MM or reach.min() > RIB_CUT_MM + 12.0:
                continue
            medial = reach <= reach.min() + 6.0
            out.append(float(s_i[medial].mean()) * ds)
    return np.sort(np.asarray(out, float))


def _th12_from_ribs(ribs: np.ndarray, top_slice: float, slice_mm: float,
                    bottom_slice: float = np.inf) -> float | str | None:
    """Slice of the lowest rib of the first run (starting within one vertebra of the spine's
    top, or holding three rib levels); ``"edge"`` when the run may go on below the last
    slice (``bottom_slice``); None without a run."""
    if len(ribs) == 0:
        return None
    low, levels = ribs[0], 1
    for z in ribs[1:]:
        if (z - low) * slice_mm > _RUN_GAP_MM:
            break
        levels += (z - low) * slice_mm > 10.0       # a rib of the next vertebra down
        low = z
    # a run from the top of the spine, or one of at least three rib levels (the neck above
    # the first rib; not an iliac crest, which is one level)
    if (ribs[0] - top_slice) * slice_mm > _RUN_GAP_MM and levels < 3:
        return None
    if (bottom_slice - low) * slice_mm <= _EDGE_MM:
        return "edge"
    return float(low)


def name_levels(centre_slices, slice_mm: float, *, ribs=None, top_slice: float = 0.0,
                bottom_slice: float = np.inf, lungs=None) -> tuple[list, str]:
    """Level names (None: unknown) of vertebrae (centre slices head -> feet) and the rule.

    Parameters
    ----------
    centre_slices : vertebra centres (slices), head -> feet
    slice_mm : slice spacing
    ribs : rib slices from :func:`rib_slices` (optional)
    top_slice, bottom_slice : the first slice of the spine's centre line (where a rib run
        must begin) and the last slice of the volume (a run ending within one vertebra of
        it may go on below: no rib rule)
    lungs : lung area per slice (optional; :func:`vfs_utils.keypoints.lung_profile`)
    """
    c = np.asarray(centre_slices, float)
    n = len(c)
    if n == 0:
        return [], "unknown"
    th12 = None if ribs is None else _th12_from_ribs(np.asarray(ribs, float), top_slice,
                                                     slice_mm, bottom_slice)
    rule = "ribs"
    if th12 == "edge":          # ribs down to the volume's end: Th12 may lie below it, and
        return [None] * n, "unknown"      # the lung base would be a guess
    if th12 is None and lungs is not None and np.max(lungs) > 0:
        seen = np.nonzero(np.asarray(lungs) > LUNG_FRACTION * np.max(lungs))[0]
        if seen.max() < len(lungs) - 2:            # the lung base is in view
            step = float(np.median(np.diff(c))) if n > 1 else _LEVEL_STEP_MM / slice_mm
            th12 = float(seen.max()) - 0.5 * step
            rule = "lung base (fallback)"
    if th12 is None:
        return [None] * n, "unknown"
    k = int(np.argmin(np.abs(c - th12)))
    pos = _positions(c)
    idx = LEVELS.index("Th12") + pos - pos[k]
    if idx.min() < 0 or idx.max() >= len(LEVELS):    # a count past C1 or S1 is wrong
        return [None] * n, "unknown"
    return [LEVELS[i] for i in idx], rule


def _positions(c: np.ndarray) -> np.ndarray:
    """Vertebra counts along the detections: a gap of more than 1.6 local spacings (the
    median of the up to four neighbouring gaps: vertebrae grow taller towards the feet)
    counts as the missed vertebrae in it."""
    d = np.diff(c)
    if len(d) < 2:
        return np.arange(len(c))
    steps = np.ones(len(d), int)
    for i, gap in enumerate(d):
        local = float(np.median(np.delete(d[max(i - 2, 0):i + 3], min(i, 2))))
        if gap > 1.6 * local:
            steps[i] = max(int(round(gap / local)), 1)
    return np.concatenate([[0], np.cumsum(steps)])

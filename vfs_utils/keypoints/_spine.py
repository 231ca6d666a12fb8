"""Where the spine is: a bone column with a spinal canal, found in the image alone.

:func:`find_spine` works on a ~2 mm grid every ~2 mm along the slices:

1. the scan's HU calibration from its own histogram (air and soft-tissue modes), so a
   constant offset does not move any threshold (:func:`hu_offset`);
2. the body outline per slice (largest component above -400 HU after an opening: the
   table is cut off), its left-right middle and its front and back;
3. candidates: a low-HU hole (the spinal canal) ringed by bone in at least 7 of 8
   directions within 3-16 mm, with a dense vertebral body in front of it, in the
   posterior half of the body and within 70 mm of its middle (contrast blood, a calcified
   aorta and the heart have no canal behind a body);
4. one smooth path along the slices over the candidates (Viterbi; a slice may have none,
   e.g. at a disc); the centre line's column is the canal's, its row the densest blob
   (bone and disc) in front of the canal on every slice of the path.

It raises :class:`~vfs_utils.errors.NoSpineError` when no bone column is found.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import NoSpineError

__all__ = ["SpinePath", "find_spine", "hu_offset", "noise_sd"]

_GRID_MM = 2.0             # in-plane working grid
_STEP_MM = 2.0             # along the slices
_BONE_HU = 180.0           # ring of the canal (pedicles, laminae, body cortex)
_DENSE_HU = 100.0          # the vertebral body's evidence in front of the canal
_BODY_HU = 70.0            # its extent (osteoporotic cancellous bone ~80; muscle 40-55)
_RING_MM = (3.0, 16.0)
_BODY_HALF_MM = 12.0       # half-width of the vertebral body searched in front of the canal
_BODY_AHEAD_MM = 22.0      # its centre lies about this far in front of the canal
_LATERAL_MM = 70.0
_MIN_SCORE = 0.15
_MAX_NOISE_HU = 200.0      # a low-dose CT stays well below (typically 20-80 HU)
_MIN_SPAN_MM = 20.0        # a bone column at least this long along the slices
_JUMP_MM = 8.0             # sd of the canal's in-plane move per sampled slice (mm; 2 mm grid)
_GAP_COST = 0.3            # per sampled slice without a canal inside the path
_MID_SD_MM = 35.0          # the canal lies near the body's left-right middle
_BLOB_HU = 65.0            # bone and disc: denser than muscle, blood and abdomen (35-55)
_BLOB_MM = 8.0             # smoothing of that mask: the vertebral body's blob wins
_ALONG_MM = 12.0           # smoothing of the centre line along the slices


@dataclass
class SpinePath:
    """The spine on every slice of a volume.

    rows, cols : centre of the vertebral body (row) and of the canal (column), voxel
    indices (cols in the full image); confidence : per slice, 0-1 (0: no canal found there,
    interpolated); found : per slice, a canal was found; hu_offset : the scan's HU offset
    estimated from its histogram (subtracted before every threshold).
    """

    rows: np.ndarray
    cols: np.ndarray
    confidence: np.ndarray
    found: np.ndarray
    hu_offset: float


def hu_offset(array: np.ndarray) -> float:
    """The scan's constant HU offset: its soft-tissue mode minus 45 HU.

    The soft-tissue mode is the highest-HU peak of the histogram between -360 and 300 HU
    that holds at least a fifth of the largest peak's count (the fat mode lies ~140 HU
    below it; air, lung and bone are outside the window or far smaller)."""
    a = np.asarray(array)
    step = max(1, int(round((a.size / 2e6) ** (1 / 3))))
    v = a[::step, ::step, ::step].astype(np.float32).ravel()
    h, e = np.histogram(v, bins=np.arange(-360.0, 305.0, 5.0))
    if h.sum() < 100:
        return 0.0
    h = ndimage.gaussian_filter1d(h.astype(float), 2.0)
    peaks = np.nonzero((h >= np.roll(h, 1)) & (h >= np.roll(h, -1)) & (h >= 0.2 * h.max()))[0]
    peaks = peaks[(peaks > 0) & (peaks < len(h) - 1)]
    if peaks.size == 0:
        return 0.0
    return float(np.clip(e[peaks.max()] + 2.5 - 45.0, -200.0, 200.0))


def noise_sd(array: np.ndarray) -> float:
    """Robust noise SD (HU) of the body voxels: from neighbouring-column differences."""
    a = np.asarray(array)
    ks = np.linspace(0, a.shape[2] - 1, min(a.shape[2], 9)).astype(int)
    x = a[:, :, ks].astype(np.float32)
    left, right = x[:, :-1], x[:, 1:]
    inside = (left > -500) & (right > -500)
    if inside.sum() < 100:
        return 0.0
    return float(1.4826 * np.median(np.abs(left - right)[inside]) / np.sqrt(2.0))


def _ring(bone: np.ndarray, t0: int, t1: int) -> np.ndarray:
    """Fraction of 8 directions in which bone lies t0..t1 pixels from each pixel."""
    n_r, n_c = bone.shape
    frac = np.zeros(bone.shape, np.float32)
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        hit = np.zeros(bone.shape, bool)
        scale = 1.0 / np.hypot(dr, dc)
        for t in range(t0, t1 + 1):
            sr, sc = int(round(dr * t * scale)), int(round(dc * t * scale))
            src = bone[max(sr, 0):n_r + min(sr, 0), max(sc, 0):n_c + min(sc, 0)]
            hit[max(-sr, 0):n_r + min(-sr, 0), max(-sc, 0):n_c + min(-sc, 0)] |= src
        frac += hit
    return frac / 8.0


def _shift_rows(a: np.ndarray, k: int) -> np.ndarray:
    """out[r] = a[r + k] (zero outside)."""
    out = np.zeros_like(a)
    n = a.shape[0]
    if k >= 0:
        out[:n - k] = a[k:]
    else:
        out[-k:] = a[:n + k]
    return out


def _slice_candidates(v: np.ndarray, px: tuple[float, float], mid_col: float | None):
    """Candidates ``[(score, row, col, body_row)]`` of one slice (calibrated HU, working
    grid; ``mid_col``: the search's middle column, default the body's)."""
    body = ndimage.binary_opening(v > -400, iterations=2)
    lab, n = ndimage.label(body)
    if n == 0:
        return []
    sizes = ndimage.sum(body, lab, index=np.arange(1, n + 1))
    body = ndimage.binary_fill_holes(lab == 1 + int(np.argmax(sizes)))
    if body.sum() * px[0] * px[1] < 400.0:
        return []
    cols_any = np.nonzero(body.any(axis=0))[0]
    centre = 0.5 * (cols_any[0] + cols_any[-1]) if mid_col is None else mid_col
    rows_idx = np.arange(body.shape[0])[:, None]
    top = np.where(body, rows_idx, body.shape[0]).min(axis=0)
    bottom = np.where(body, rows_idx, -1).max(axis=0)
    depth = (rows_idx - top[None, :]) / np.maximum(bottom - top, 1)[None, :]
    bone = v > _BONE_HU
    ring = _ring(bone, max(1, int(round(_RING_MM[0] / px[0]))),
                 max(2, int(round(_RING_MM[1] / px[0]))))
    hole = ndimage.uniform_filter(((v < 120) & (v > -300)).astype(np.float32), 3) > 0.7
    dense = ndimage.uniform_filter((v > _DENSE_HU).astype(np.float32),
                                   (max(1, int(round(20 / px[0]))),
                                    max(1, int(round(2 * _BODY_HALF_MM / px[1])))))
    front = _shift_rows(dense, -int(round(_BODY_AHEAD_MM / px[0])))   # 12-32 mm in front
    cc = np.arange(v.shape[1])[None, :]
    lateral = np.abs(cc - centre) * px[1] <= _LATERAL_MM
    prior = np.exp(-0.5 * ((cc - centre) * px[1] / _MID_SD_MM) ** 2)
    score = np.where(hole & body & (depth > 0.45) & lateral & (ring >= 7 / 8),
                     ring * np.clip(front / 0.5, 0, 1) * prior, 0.0)
    peaks = (score == ndimage.maximum_filter(score, size=max(3, int(round(10 / px[0]))))) \
        & (score > _MIN_SCORE)
    out = []
    plateau, _ = ndimage.label(peaks)
    smooth = ndimage.uniform_filter(v, 3)
    for r, peak_c in sorted(zip(*np.nonzero(peaks)), key=lambda rc: -score[rc])[:8]:
        run = np.nonzero(plateau[r] == plateau[r, peak_c])[0]          # ties: their middle
        c = int(round(run.mean()))
        if len(out) == 5 or any(o[1] == r and o[2] == c for o in out):
            continue
        a0 = max(int(r - 70.0 / px[0]), 0)
        b0 = max(int(c - _BODY_HALF_MM / px[1]), 0)
        b1 = int(c + _BODY_HALF_MM / px[1]) + 1
        lab, n = ndimage.label(smooth[a0:r, b0:b1] > _BODY_HU)
        near = lab[max(r - a0 - int(round(25.0 / px[0])), 0):, :]
        counts = np.bincount(near.ravel(), minlength=n + 1)[1:]
        if n and counts.max() > 0:
            rows_k = np.nonzero(lab == 1 + int(np.argmax(counts)))[0]
            body_row = a0 + float(rows_k.mean())
        else:
            body_row = float(r) - _BODY_AHEAD_MM / px[0]
        out.append((float(score[r, peak_c]), float(r), float(c), float(body_row)))
    return out


def _best_path(cands: list, step_mm: float) -> list:
    """Index of the chosen candidate (or None) per sampled slice: the chain of candidates
    maximising their scores minus a quadratic cost of in-plane jumps (mm) and a cost per
    skipped slice (Viterbi over per-slice candidates; gaps up to 40 mm)."""
    max_gap = max(1, int(round(40.0 / step_mm)))
    best: list[np.ndarray] = []
    back: list[list] = []
    for k, cs in enumerate(cands):
        b = np.array([s[0] for s in cs], float)
        bk: list = [None] * len(cs)
        for i, s in enumerate(cs):
            for g in range(1, max_gap + 1):
                if k - g < 0:
                    break
                for j, p in enumerate(cands[k - g]):
                    d = np.hypot(s[1] - p[1], s[2] - p[2]) * _GRID_MM
                    sig = _JUMP_MM * np.sqrt(g)
                    val = best[k - g][j] + s[0] - 0.5 * (d / sig) ** 2 - _GAP_COST * (g - 1)
                    if val > b[i]:
                        b[i], bk[i] = val, (k - g, j)
        best.append(b)
        back.append(bk)
    flat = [(v, k, i) for k, b in enumerate(best) for i, v in enumerate(b)]
    path: list = [None] * len(cands)
    if not flat:
        return path
    _, k, i = max(flat)
    node = (k, i)
    while node is not None:
        path[node[0]] = node[1]
        node = back[node[0]][node[1]]
    return path


def find_spine(array: np.ndarray, spacing, *, col_offset: float = 0.0,
               full_cols: int | None = None, where: str = "the volume") -> SpinePath:
    """The spine's path through a CT volume (see the module docstring).

    Parameters
    ----------
    array : ndarray (rows, cols, slices), HU
    spacing : (row, col, slice) mm
    col_offset, full_cols : optional
        When ``array`` is a column crop of a larger image: the crop's first column and
        the full image's width (the search is then centred on the full image's middle).
    where : str
        Names the input in the error message.

    Raises
    ------
    NoSpineError
        No canal-bearing bone column of at least 20 mm along the slices.
    """
    sp = np.asarray(spacing, float)
    n_r, n_c, n_s = array.shape
    if n_r * sp[0] < 40 or n_c * sp[1] < 40 or n_s * sp[2] < _MIN_SPAN_MM:
        raise NoSpineError(f"{where}: {n_r}x{n_c}x{n_s} voxels of {sp.round(2).tolist()} mm "
                           "is too small to hold a spine; give a CT of the chest or spine.")
    noise = noise_sd(array)
    if noise > _MAX_NOISE_HU:
        raise NoSpineError(f"{where}: the image noise (SD about {noise:.0f} HU between "
                           f"neighbouring voxels) is too high for a CT; give a CT of the chest "
                           f"or spine.")
    off = hu_offset(array)
    dr = max(1, int(round(_GRID_MM / sp[0])))
    dc = max(1, int(round(_GRID_MM / sp[1])))
    px = (dr * sp[0], dc * sp[1])
    step = max(1, int(round(_STEP_MM / sp[2])))
    ks = np.arange(0, n_s, step)
    mid = None
    if full_cols is not None:
        mid = ((full_cols - 1) / 2.0 - col_offset) / dc
    cands, slices = [], []
    for k in ks:
        sl = array[:, :, k].astype(np.float32) - off
        if dr > 1 or dc > 1:
            sl = ndimage.uniform_filter(sl, (dr, dc))[dr // 2::dr, dc // 2::dc]
        cands.append(_slice_candidates(sl, px, mid))
        slices.append(sl)
    choice = _best_path(cands, step * sp[2])
    hit = [i for i, c in enumerate(choice) if c is not None]
    if len(hit) < 3 or (ks[hit[-1]] - ks[hit[0]]) * sp[2] < _MIN_SPAN_MM:
        raise NoSpineError(f"{where}: no bone column with a spinal canal was found (canal on "
                           f"{len(hit)} of {len(ks)} sampled slices); is it a CT of the chest or "
                           f"spine?")
    # the canal where found (interpolated between); the body's row on every sampled slice
    # of the path's span: the densest blob (bone and disc) in front of the canal
    every = np.arange(len(ks))
    canal_r = np.interp(every, hit, [cands[i][choice[i]][1] for i in hit])
    canal_c = np.interp(every, hit, [cands[i][choice[i]][2] for i in hit])
    body_r = canal_r - _BODY_AHEAD_MM / px[0]
    sig_px = (_BLOB_MM / px[0], _BLOB_MM / px[1])
    for i in range(hit[0], hit[-1] + 1):
        r, c = int(round(canal_r[i])), int(round(canal_c[i]))
        a0, a1 = max(r - int(60.0 / px[0]), 0), max(r - int(3.0 / px[0]), 1)
        b0, b1 = max(c - int(_BODY_HALF_MM / px[1]), 0), c + int(_BODY_HALF_MM / px[1]) + 1
        w = ndimage.gaussian_filter((slices[i][a0:a1] > _BLOB_HU).astype(np.float32), sig_px,
                                    truncate=2.0)[:, b0:b1]
        if w.size and w.max() > 0:
            body_r[i] = a0 + np.unravel_index(np.argmax(w), w.shape)[0]
    ok = np.zeros(len(ks), bool)
    ok[hit[0]:hit[-1] + 1] = True                 # the path's span; constant beyond it
    z = ks[ok].astype(float)
    size = max(3, int(round(30.0 / (step * sp[2]))) | 1)
    sig = _ALONG_MM / (step * sp[2])
    rows = ndimage.gaussian_filter1d(ndimage.median_filter(body_r[ok], size=size,
                                                           mode="nearest"),
                                     sig, mode="nearest") * dr + (dr - 1) / 2.0
    cols = ndimage.gaussian_filter1d(ndimage.median_filter(canal_c[ok], size=size,
                                                           mode="nearest"),
                                     sig, mode="nearest") * dc + (dc - 1) / 2.0
    all_z = np.arange(n_s, dtype=float)
    found_s = np.zeros(n_s, bool)
    conf_s = np.zeros(n_s)
    for i in hit:
        found_s[ks[i]:ks[i] + step] = True
        conf_s[ks[i]:ks[i] + step] = min(1.0, cands[i][choice[i]][0])
    return SpinePath(np.interp(all_z, z, rows), np.interp(all_z, z, cols) + col_offset,
                     conf_s, found_s, off)

"""Image features of each vertebra, from its centre and the image alone (:func:`vertebra_features`,
on a Volume or an array and its spacing), run over a dataset by :func:`dataset_features`."""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import Executor

import numpy as np
import pandas as pd
from scipy import ndimage

from .._fs import check_spacing
from .._parallel import map_ordered
from ..errors import DataNotFoundError
from ..morphometry import LABEL_LEVELS
from .studies import Study, load_studies, vertebra_table

__all__ = ["dataset_features", "feature_columns", "vertebra_features"]

log = logging.getLogger(__name__)

#: Side of the square sagittal patch in mm (sampled every 1 mm, centre included: 65 x 65).
PATCH_MM: int = 64
_HALF = PATCH_MM // 2
#: Lateral offsets (mm) of the sagittal planes averaged into the patch.
_LATERAL_MM = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: Soft-tissue level (HU) used with the body's own HU to set the bone threshold.
_SOFT_HU = 40.0
#: The adaptive bone threshold's range (HU): the floor is above soft tissue and below the
#: phantom's osteoporotic bone (a floor at the disc's HU lost the bone run there).
_THRESHOLD_RANGE_HU = (60.0, 250.0)
#: An endplate is a peak at least this much (HU) above the body's central HU.
_CORTEX_CONTRAST_HU = 100.0


def _axes(centres_mm: np.ndarray) -> np.ndarray:
    """Unit spine axis (row, slice) mm per vertebra, pointing feet-wards, from neighbours."""
    n = len(centres_mm)
    order = np.argsort(centres_mm[:, 2], kind="stable")
    yz = centres_mm[order][:, [0, 2]]
    axes = np.tile([0.0, 1.0], (n, 1))
    if n >= 2:
        prev = np.vstack([yz[:1], yz[:-2], yz[-2:-1]]) if n > 2 else yz[[0, 0]]
        nxt = np.vstack([yz[1:2], yz[2:], yz[-1:]]) if n > 2 else yz[[1, 1]]
        d = nxt - prev
        norm = np.linalg.norm(d, axis=1, keepdims=True)
        good = norm[:, 0] > 1e-6
        d[good] /= norm[good]
        d[~good] = [0.0, 1.0]
        d[d[:, 1] < 0] *= -1
        axes[order] = d
    return axes


def _sample_patch(array: np.ndarray, centre: np.ndarray, axis: np.ndarray,
                  spacing: np.ndarray) -> np.ndarray:
    """The (v, u) = (along the spine, anterior -> posterior) patch in HU, 1 mm grid."""
    t = np.arange(-_HALF, _HALF + 1, dtype=float)
    v_dir = np.array([axis[0], 0.0, axis[1]])            # (row, col, slice) mm
    u_dir = np.array([axis[1], 0.0, -axis[0]])           # posterior: row grows
    lat = np.asarray(_LATERAL_MM)
    c_mm = centre * spacing
    pts = (c_mm[None, None, None, :] + t[:, None, None, None] * v_dir
           + t[None, :, None, None] * u_dir + lat[None, None, :, None] * [0.0, 1.0, 0.0])
    vox = pts / spacing                                   # (65, 65, 5, 3)
    lo = np.maximum(np.floor(vox.reshape(-1, 3).min(0)).astype(int) - 1, 0)
    hi = np.minimum(np.ceil(vox.reshape(-1, 3).max(0)).astype(int) + 2, array.shape)
    if np.any(hi <= lo):
        return np.full((t.size, t.size), np.nan, np.float32)
    block = np.asarray(array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
    coords = (vox - lo).reshape(-1, 3).T
    hu = ndimage.map_coordinates(block, coords, order=1, mode="nearest")
    return hu.reshape(t.size, t.size, lat.size).mean(axis=2)


def _edge(p: np.ndarray, start: int, step: int, threshold: float, peak_min: float) -> float:
    """One edge (sample units) of the bone run through ``start``, walking by ``step``.

    The walk stops below ``threshold`` or at the first clear dip after a cortical peak of
    at least ``peak_min`` (a thin disc between endplates); the edge is the half-way
    crossing between the peak inside and the valley outside.
    """
    n = len(p)
    peak = -np.inf
    k = start
    while True:
        j = k + step
        if not 0 <= j < n:
            return math.nan
        if p[j] < threshold:
            break
        peak = max(peak, p[k])
        if (peak >= peak_min and 0 <= j + step < n and p[j] <= p[k] and p[j] < p[j + step]
                and peak - p[j] > 0.3 * (peak - threshold)):
            break
        k = j
    valley_idx = j
    ahead = p[j:j + 3 * step:step] if step > 0 else p[max(j - 2, 0):j + 1][::-1]
    valley = float(np.min(ahead)) if ahead.size else float(p[j])
    inside = [k - step * i for i in range(4) if 0 <= k - step * i < n
              and (k - step * i - start) * step >= 0]
    m = max(inside, key=lambda i: p[i])
    level = 0.5 * (p[m] + valley)
    i = m
    while (i + step - valley_idx) * step <= 0 and p[i + step] >= level:
        i += step
    nxt = i + step
    if not 0 <= nxt < n:
        return math.nan
    frac = (p[i] - level) / (p[i] - p[nxt]) if p[i] != p[nxt] else 0.5
    return float(i + step * float(np.clip(frac, 0.0, 1.0)))


def _extent(profile: np.ndarray, threshold: float, start: int = _HALF, search: int = 6,
            peak_min: float = math.inf) -> tuple[float, float]:
    """Edges (sample units) of the bone run through ``start``, or the nearest sample above
    ``threshold`` within ``search``; NaN when none or at the border."""
    p = np.asarray(profile, float)
    if not np.isfinite(p).all():
        return math.nan, math.nan
    if p[start] < threshold:
        cand = np.flatnonzero(p >= threshold)
        near = cand[np.abs(cand - start) <= search]
        if near.size == 0:
            return math.nan, math.nan
        start = int(near[np.argmin(np.abs(near - start))])
    return (_edge(p, start, -1, threshold, peak_min), _edge(p, start, 1, threshold, peak_min))


def _patch_features(patch: np.ndarray, threshold_hu: float | None) -> dict[str, float]:
    c = _HALF
    centre = patch[c - 2:c + 3, c - 2:c + 3]
    hu_centre = float(np.median(centre))
    thr = (float(threshold_hu) if threshold_hu is not None
           else float(np.clip(0.5 * (hu_centre + _SOFT_HU), *_THRESHOLD_RANGE_HU)))
    f: dict[str, float] = {"f_hu_centre": hu_centre,
                           "f_hu_std": float(patch[c - 4:c + 5, c - 4:c + 5].std()),
                           "f_threshold": thr}
    peak_min = hu_centre + _CORTEX_CONTRAST_HU
    a0, a1 = _extent(patch[c - 3:c + 4].mean(axis=0), thr, peak_min=peak_min)
    depth = a1 - a0
    f["f_depth"] = depth
    heights = []
    for name, pos in (("ant", a0 + 0.2 * depth), ("mid", 0.5 * (a0 + a1)),
                      ("post", a1 - 0.2 * depth)):
        if not np.isfinite(pos):
            heights.append(math.nan)
            f[f"f_h_{name}"] = math.nan
            continue
        k = int(round(pos))
        prof = patch[:, max(k - 1, 0):k + 2].mean(axis=1)
        v0, v1 = _extent(prof, thr, peak_min=peak_min)
        heights.append(v1 - v0)
        f[f"f_h_{name}"] = v1 - v0
    h = np.asarray(heights)
    with np.errstate(divide="ignore", invalid="ignore"):
        f["f_ratio_ant_post"] = h[0] / h[2]
        f["f_ratio_mid_post"] = h[1] / h[2]
        f["f_ratio_mid_ant"] = h[1] / h[0]
        f["f_loss"] = 1.0 - np.min(h) / np.max(h) if np.isfinite(h).all() else math.nan
    # intensity profiles along the spine (through the centre) and across it, 5 mm bins
    n_bins = (2 * _HALF + 1) // 5
    vert = patch[:, c - 2:c + 3].mean(axis=1)[:n_bins * 5].reshape(n_bins, 5).mean(axis=1)
    horiz = patch[c - 2:c + 3].mean(axis=0)[:n_bins * 5].reshape(n_bins, 5).mean(axis=1)
    f.update({f"f_pv_{i:02d}": float(v) for i, v in enumerate(vert)})
    f.update({f"f_pu_{i:02d}": float(v) for i, v in enumerate(horiz)})
    # 8 x 8 block means (8 mm blocks) of the patch
    blocks = patch[:64, :64].reshape(8, 8, 8, 8).mean(axis=(1, 3))
    f.update({f"f_px_{i}_{j}": float(blocks[i, j]) for i in range(8) for j in range(8)})
    # gradient-orientation histogram (unsigned, 8 bins) of the central 40 mm, weighted by magnitude
    smooth = ndimage.gaussian_filter(patch, 1.0)
    gv, gu = np.gradient(smooth[c - 20:c + 21, c - 20:c + 21])
    mag = np.hypot(gv, gu)
    ang = np.mod(np.arctan2(gv, gu), np.pi)
    hist, _ = np.histogram(ang, bins=8, range=(0.0, np.pi), weights=mag)
    total = hist.sum()
    f.update({f"f_grad_{i}": float(h / total) if total > 0 else math.nan
              for i, h in enumerate(hist)})
    return f


def _centres(centres) -> np.ndarray:
    if isinstance(centres, pd.DataFrame):
        cols = ["centre_row", "centre_col", "centre_slice"]
        missing = [c for c in cols if c not in centres.columns]
        if missing:
            raise ValueError(f"the centres frame lacks the column(s) {missing}; build it with "
                             "vertebra_table()")
        return centres[cols].to_numpy(float)
    arr = np.asarray(centres, float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"centres must have shape (n, 3) [row, col, slice], not {arr.shape}")
    return arr


def vertebra_features(volume_or_slab, centres, spacing: Sequence[float] | None = None, *,
                      threshold_hu: float | None = None, return_patches: bool = False):
    """Image features of each vertebra, from its centre and the image alone.

    From a sagittal patch around each centre (:data:`PATCH_MM` mm, along and across the
    local spine axis, five planes averaged): an adaptive bone threshold; the body's depth
    and heights at 20, 50 and 80 % of it, their ratios and loss; heights relative to the
    neighbours' (``f_nb_*``); intensity profiles; block means; gradient orientations.

    Parameters
    ----------
    volume_or_slab : Volume or ndarray (rows, cols, slices)
        HU; a slab (a sub-box) needs the centres in its own voxel indices.
    centres : ndarray (n, 3) or DataFrame
        ``[row, col, slice]`` of one spine's body centres (or ``centre_*`` columns).
    spacing : (row, col, slice) mm, optional
        Required for an ndarray.
    threshold_hu, return_patches
        A fixed bone threshold (HU) instead of the adaptive one; also return the patches.

    Returns
    -------
    DataFrame or (DataFrame, ndarray)
        One row per centre (input order), ``f_*`` columns (mm for heights); the patches
        (n, 65, 65) float32 HU. A supine axial series is assumed.
    """
    array = getattr(volume_or_slab, "array", volume_or_slab)
    if spacing is None:
        spacing = getattr(volume_or_slab, "spacing", None)
        if spacing is None:
            raise TypeError("vertebra_features needs spacing= (row, col, slice) mm for an array")
    sp = np.asarray(check_spacing(spacing, "vertebra_features"), float)
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"the image must be 3-D (rows, cols, slices), not shape {array.shape}")
    c = _centres(centres)
    axes = _axes(c * sp)
    size = 2 * _HALF + 1
    patches = np.empty((len(c), size, size), np.float32)
    rows = []
    for i in range(len(c)):
        patches[i] = _sample_patch(array, c[i], axes[i], sp)
        rows.append(_patch_features(patches[i], threshold_hu))
    if not rows:
        raise ValueError("vertebra_features needs at least one centre")
    frame = pd.DataFrame(rows)
    # heights relative to the neighbouring vertebrae (slice order)
    h = frame[["f_h_ant", "f_h_mid", "f_h_post"]]
    h_min, h_max = h.min(axis=1).to_numpy(float), h.max(axis=1).to_numpy(float)
    order = np.argsort(c[:, 2], kind="stable")

    def neighbour_mean(values: np.ndarray) -> np.ndarray:
        ref = pd.Series(values[order])
        mean = pd.concat([ref.shift(1), ref.shift(-1)], axis=1).mean(axis=1).to_numpy(float)
        out = np.empty(len(values))
        out[order] = mean
        return out

    with np.errstate(divide="ignore", invalid="ignore"):
        ref_max = neighbour_mean(h_max)
        frame["f_nb_post"] = h["f_h_post"].to_numpy(float) / neighbour_mean(
            h["f_h_post"].to_numpy(float))
        frame["f_nb_min"] = h_min / ref_max
        frame["f_nb_max"] = h_max / ref_max
    return (frame, patches) if return_patches else frame


def _image_features(study: Study, table: pd.DataFrame, threshold_hu: float | None):
    array, spacing, offset = study.image()
    centres = table[["centre_row", "centre_col", "centre_slice"]].to_numpy(float) - offset
    feats, patches = vertebra_features(array, centres, spacing, threshold_hu=threshold_hu,
                                       return_patches=True)
    del array
    return feats, patches


def _study_job(args) -> tuple[pd.DataFrame, np.ndarray | None]:
    study, table, return_patches, threshold_hu = args
    feats, patches = _image_features(study, table, threshold_hu)
    return feats, (patches if return_patches else None)


def dataset_features(source_or_annotation_dir, *, root: str | os.PathLike | None = None,
                     executor: Executor | None = None, min_studies: int | None = None,
                     seed: int = 0, limit: int | None = None, return_patches: bool = False,
                     threshold_hu: float | None = None,
                     levels: Sequence[str] | None = LABEL_LEVELS):
    """Labels and image features of the labelled vertebrae of a dataset, one study per task.

    Features use every vertebra of an image (neighbours enter them); the rows returned
    have a label at the label levels.

    Parameters
    ----------
    source_or_annotation_dir, root, min_studies, seed, limit
        See :func:`load_studies`.
    executor : concurrent.futures.Executor, optional
        Run the studies on it (results in study order); default: in this process.
    return_patches, threshold_hu
        See :func:`vertebra_features` (patches stacked in row order).
    levels : sequence of str or None
        Label levels; None keeps every level.

    Returns
    -------
    DataFrame or (DataFrame, ndarray)
        :func:`vertebra_table` columns, ``kind`` and the ``f_*`` features, studies in order.
    """
    studies = load_studies(source_or_annotation_dir, root=root, min_studies=min_studies,
                           seed=seed, limit=limit)
    if not studies:
        raise DataNotFoundError(f"{source_or_annotation_dir}: no study to compute features for")
    tables = vertebra_table([s.annotation for s in studies],
                            {s.folder: s.spacing for s in studies},
                            exclude={s.folder: s.expert for s in studies}, levels=levels)
    by_folder = dict(list(tables.groupby("folder", sort=False)))
    empty = [s.folder for s in studies if s.folder not in by_folder]
    if empty:
        log.info("%d studies without vertebra readings left out (first: %s)", len(empty),
                 empty[0])
        studies = [s for s in studies if s.folder in by_folder]
    parts = [by_folder[s.folder].reset_index(drop=True) for s in studies]
    jobs = [(s, t, return_patches, threshold_hu) for s, t in zip(studies, parts)]
    results = map_ordered(_study_job, jobs, executor=executor)
    frames = []
    for s, t, (feats, _) in zip(studies, parts, results):
        t = t.copy()
        t.insert(2, "kind", s.kind)
        frames.append(pd.concat([t, feats], axis=1))
    frame = pd.concat(frames, ignore_index=True)
    keep = frame["grade"].notna().to_numpy() & frame["in_levels"].to_numpy(bool)
    if not keep.all():
        log.info("%d vertebrae without a label or outside the label levels left out",
                 int((~keep).sum()))
    frame = frame[keep].reset_index(drop=True)
    if return_patches:
        patches = np.concatenate([r[1] for r in results])[keep]
        return frame, patches
    return frame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns (``f_*``) of a features frame, in order."""
    return [c for c in frame.columns if str(c).startswith("f_")]

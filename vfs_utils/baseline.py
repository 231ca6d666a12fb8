"""A baseline fracture classifier: image features per vertebra, scikit-learn, grouped evaluation.

The task: given a CT series and the centre of every vertebral body (from the
annotation; finding the vertebrae is out of scope), say for each vertebra
whether it is fractured (expert consensus Genant grade >= 1, and >= 2), and
for each patient whether any vertebra is.

Only the **centre and column** of each vertebra come from the annotation.
Everything else is measured in the image (:func:`vertebra_features`): a
sagittal patch resampled to a fixed 1 mm grid, centred on the vertebra and
turned along the local spine axis; the bone extent above a HU threshold along
the spine axis at the anterior, middle and posterior part of the body (image
heights, their ratios, and ratios to the neighbouring vertebrae), intensity
profiles, downsampled pixels and a gradient-orientation histogram. The labels
are the experts' consensus grades (:func:`vfs_utils.morphometry.consensus`);
the experts' heights never enter the features.

Data (:func:`load_studies`):

- ``real``: the annotated series are read with :func:`vfs_utils.dicom.load_series`,
  one at a time;
- ``phantom``: every real annotation file is turned into a phantom spine
  (:func:`vfs_utils.phantom.spine_from_annotation`) and only a thin sagittal
  slab around it is rendered, in memory;
- ``synthetic``: the synthetic dataset's series, topped up with sampled
  phantom spines (:func:`vfs_utils.phantom.sample_spine`) to at least 40 studies.

Models (:func:`make_models`): a constant prevalence score, standardised
logistic regression and histogram gradient boosting. Evaluation
(:func:`evaluate`): grouped cross-validation by study, ROC AUC and PR AUC with
study-bootstrap intervals, sensitivity and specificity at a fixed threshold,
at vertebra and patient level (a patient's score is the maximum over their
vertebrae). Models are saved with skops (:func:`save_model`,
:func:`load_model`): loading runs no pickle code and accepts only the types of
an explicit allow-list.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .annotation import Annotation, load_annotation, read_annotations
from ._parallel import map_ordered
from .errors import DataNotFoundError, ModelFileError, VfsError

__all__ = [
    "ALLOWED_TYPES",
    "MODEL_NAMES",
    "OKABE_ITO",
    "PATCH_MM",
    "TARGETS",
    "Evaluation",
    "ModelFileError",
    "Study",
    "bootstrap_ci",
    "confusion",
    "dataset_features",
    "default_model",
    "evaluate",
    "feature_columns",
    "load_model",
    "load_studies",
    "make_models",
    "plot_calibration",
    "plot_patches",
    "plot_roc",
    "plot_worst_patches",
    "predict_study",
    "reader_baseline",
    "save_model",
    "study_features",
    "summarize",
    "train_model",
    "vertebra_features",
    "vertebra_table",
]

log = logging.getLogger(__name__)

#: Side of the square sagittal patch in mm (sampled every 1 mm, centre included: 65 x 65).
PATCH_MM: int = 64
_HALF = PATCH_MM // 2
#: Lateral offsets (mm) of the sagittal planes averaged into the patch.
_LATERAL_MM = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: Soft-tissue level (HU) used with the body's own HU to set the bone threshold.
_SOFT_HU = 40.0
#: An endplate is a peak at least this much (HU) above the body's central HU.
_CORTEX_CONTRAST_HU = 100.0
#: Targets: name -> lowest consensus grade counted as positive.
TARGETS: dict[str, int] = {"label_any": 1, "label_moderate": 2}
#: Names of the models of :func:`make_models`, in table order.
MODEL_NAMES: tuple[str, ...] = ("prevalence", "logistic", "boosting")
#: Name of the human reader baseline in prediction tables.
READER = "reader (one expert)"
#: Studies the default model of :func:`predict_study` is trained on (sampled phantoms).
_DEFAULT_TRAIN_STUDIES = 16
_DEFAULT_MODEL_FILE = "baseline-logistic-v1.skops"

#: Okabe-Ito colours (colour-blind safe).
OKABE_ITO: dict[str, str] = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
_MODEL_COLOURS = {"prevalence": OKABE_ITO["black"], "logistic": OKABE_ITO["blue"],
                  "boosting": OKABE_ITO["vermillion"], READER: OKABE_ITO["bluish green"]}

#: Types a model file may contain beyond those skops trusts by default: exactly the
#: ones the models of :func:`make_models` need. :func:`load_model` refuses any other.
ALLOWED_TYPES: frozenset[str] = frozenset({
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
})


# --------------------------------------------------------------------------- studies
@dataclass(frozen=True, eq=False)
class Study:
    """One study to compute features for, and where its image comes from.

    Attributes
    ----------
    annotation : Annotation
        The expert readings (v1 or v2).
    spacing : tuple of float
        ``(row, col, slice)`` voxel spacing in mm of the annotated series.
    kind : {"image", "phantom", "sampled"}
        ``image``: read the series from ``root`` with :func:`~vfs_utils.dicom.load_series`;
        ``phantom``: render a slab of the phantom of the annotation (``truth``);
        ``sampled``: render a slab of a sampled phantom spine (``truth``), whose
        readings are simulated.
    root : Path or None
        Dataset root (``kind == "image"``).
    truth : SpineTruth or None
        The phantom to render (``phantom`` and ``sampled``).
    seed : int
        Seed of the rendering noise.
    """

    annotation: Annotation
    spacing: tuple[float, float, float]
    kind: str
    root: Path | None = None
    truth: object | None = None
    seed: int = 0

    @property
    def folder(self) -> str:
        """The study folder name."""
        return self.annotation.folder


def _noise_seed(folder: str, seed: int) -> list[int]:
    return [int(seed), int.from_bytes(hashlib.sha256(folder.encode()).digest()[:4], "little")]


def _annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.json"))
    if not files:
        raise DataNotFoundError(f"{path}: no *.json annotation files; pass a folder of "
                                "<Folder>.json files (see `vfs fetch`) or a DataSource.")
    return files


def _image_studies(files: list[Path], root: Path, seed: int) -> list[Study]:
    from .matching import series_spacing, study_folder

    studies, missing = [], []
    for f in files:
        ann = load_annotation(f)
        try:
            study_folder(root, ann.folder)
            sp = series_spacing(root, ann.folder, ann.series_uid)
        except DataNotFoundError:
            missing.append(ann.folder)
            continue
        studies.append(Study(ann, tuple(float(s) for s in sp), "image", Path(root), None, seed))
    if missing:
        warnings.warn(f"{root}: {len(missing)} annotated studies are not in this dataset "
                      f"(first: {missing[0]}); they are left out.", stacklevel=3)
    return studies


def _phantom_studies(files: list[Path], seed: int) -> list[Study]:
    from .phantom import spine_from_annotation

    studies = []
    for f in files:
        ann = load_annotation(f)
        truth = spine_from_annotation(ann)
        studies.append(Study(ann, tuple(truth.geometry.spacing), "phantom", None, truth, seed))
    return studies


def _sampled_studies(n: int, seed: int, start: int = 0) -> list[Study]:
    from pydicom.uid import generate_uid

    from .phantom import sample_readings, sample_spine

    studies = []
    for i in range(start, start + n):
        folder = f"SAMPLED{seed:04d}-{i + 1:03d}_PHANTOM"
        uid = generate_uid(prefix=None, entropy_srcs=["vfs-tutorials baseline", folder])
        truth = sample_spine(np.random.default_rng([seed, 7919, i]), folder=folder,
                             series_uid=uid)
        readings = sample_readings(truth, np.random.default_rng([seed, 7919, i, 1]))
        ann = Annotation(folder, uid, "v2", readings)
        studies.append(Study(ann, tuple(truth.geometry.spacing), "sampled", None, truth, seed))
    return studies


def load_studies(source, *, root: str | os.PathLike | None = None,
                 min_studies: int | None = None, seed: int = 0,
                 limit: int | None = None) -> list[Study]:
    """The studies a baseline run uses, and where each image comes from.

    Parameters
    ----------
    source : DataSource, path-like or sequence of Study
        A :class:`~vfs_utils.tutorial.DataSource` (its v2 annotations; images
        read from ``source.root`` in the ``real`` and ``synthetic`` modes,
        phantom slabs rendered from the annotations in the ``phantom`` mode),
        a folder of annotation files (or one file), or studies (returned as they are).
    root : path-like, optional
        With a folder of annotation files: read the images from this dataset
        root; without it the images are phantoms rendered from the annotations.
    min_studies : int, optional
        Top up with sampled phantom spines (simulated readings) to this many
        studies. Default: 40 for a DataSource in the ``synthetic`` mode, else 0
        (real data is never mixed with phantoms unless asked for).
    seed : int
        Seed of the sampled spines and of the rendering noise.
    limit : int, optional
        Use only the first ``limit`` annotation files (name order).

    Returns
    -------
    list of Study

    Raises
    ------
    DataNotFoundError
        No annotation file where one was expected.
    """
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)) and all(
            isinstance(s, Study) for s in source):
        return list(source)
    mode = getattr(source, "mode", None)
    if mode is not None:                       # a DataSource
        files = _annotation_files(Path(source.annotation_dir_v2))
        root = source.root if mode in ("real", "synthetic") else None
        if min_studies is None:
            min_studies = 40 if mode == "synthetic" else 0
    else:
        files = _annotation_files(Path(source))
    if limit is not None:
        files = files[:max(int(limit), 0)]
    studies = (_image_studies(files, Path(root), seed) if root is not None
               else _phantom_studies(files, seed))
    missing = int(min_studies or 0) - len(studies)
    if missing > 0:
        studies += _sampled_studies(missing, seed)
    return studies


# --------------------------------------------------------------------------- labels
def vertebra_table(annotations: Annotation | Sequence[Annotation], spacing) -> pd.DataFrame:
    """One row per vertebra: centre and consensus labels, for one or many annotations.

    Parameters
    ----------
    annotations : Annotation or sequence of Annotation
    spacing : (row, col, slice) mm, or mapping folder -> (row, col, slice)
        Voxel spacing of the annotated series (for the heights behind the grades).

    Returns
    -------
    DataFrame
        Annotations in the given order, each head -> feet; columns ``folder,
        series_uid, vertebra_id, level, n_experts, centre_row, centre_col,
        centre_slice`` (voxels, means over the experts of each expert's
        six-point mean), ``grade`` (consensus within-vertebra Genant grade,
        Int64, :func:`vfs_utils.morphometry.consensus`), ``label_any`` (grade
        >= 1) and ``label_moderate`` (grade >= 2), booleans.
    """
    from .matching import match_vertebrae
    from .morphometry import consensus, morphometry_table

    anns = [annotations] if isinstance(annotations, Annotation) else list(annotations)
    frame = match_vertebrae(read_annotations(anns))
    if frame.empty:
        names = ", ".join(str(a.path or a.folder) for a in anns[:3])
        raise VfsError(f"{names}: no vertebra readings; the baseline needs at least one "
                       "expert reading per study.")
    if not isinstance(spacing, Mapping):
        spacing = tuple(float(s) for s in spacing)
    table = morphometry_table(frame, spacing=spacing)
    cons = consensus(table)
    col = table.groupby(["file", "vertebra_id"], sort=False)["centre_col"].mean()
    keys = pd.MultiIndex.from_frame(cons[["file", "vertebra_id"]])
    out = pd.DataFrame({
        "folder": cons["folder"].to_numpy(dtype=object),
        "series_uid": cons["series_uid"].to_numpy(dtype=object),
        "vertebra_id": cons["vertebra_id"].to_numpy(),
        "level": (cons["level"].to_numpy(dtype=object) if "level" in cons
                  else np.full(len(cons), None, dtype=object)),
        "n_experts": cons["n_experts"].to_numpy(),
        "centre_row": cons["centre_row"].to_numpy(float),
        "centre_col": col.reindex(keys).to_numpy(float),
        "centre_slice": cons["centre_slice"].to_numpy(float),
        "grade": cons["grade"].astype("Int64").to_numpy(),
    })
    out["grade"] = out["grade"].astype("Int64")
    for name, k in TARGETS.items():
        out[name] = (out["grade"] >= k).astype("boolean")
    rank = {a.folder: i for i, a in enumerate(anns)}
    out["_study"] = out["folder"].map(rank)
    return (out.sort_values(["_study", "centre_slice"], kind="stable").drop(columns="_study")
            .reset_index(drop=True))


# --------------------------------------------------------------------------- features
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

    The walk stops at the first sample below ``threshold`` or, once a peak of at
    least ``peak_min`` (a cortical endplate) has been passed, at the first clear
    dip after it (two endplates with a thin disc between them). The edge is
    where the profile crosses half-way between that peak (the highest of the
    last four samples inside) and the valley just outside, interpolated linearly.
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
    """Edges (sample units) of the bone run through ``start`` (see :func:`_edge`).

    The run starts at ``start``, or at the nearest sample above ``threshold``
    within ``search`` samples. NaN when there is none or the run reaches the border.
    """
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
           else float(np.clip(0.5 * (hu_centre + _SOFT_HU), 80.0, 250.0)))
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
    for i in range(n_bins):
        f[f"f_pv_{i:02d}"] = float(vert[i])
    for i in range(n_bins):
        f[f"f_pu_{i:02d}"] = float(horiz[i])
    # 8 x 8 block means (8 mm blocks) of the patch
    blocks = patch[:64, :64].reshape(8, 8, 8, 8).mean(axis=(1, 3))
    for i in range(8):
        for j in range(8):
            f[f"f_px_{i}_{j}"] = float(blocks[i, j])
    # gradient-orientation histogram (unsigned, 8 bins) of the central 40 mm, weighted by magnitude
    smooth = ndimage.gaussian_filter(patch, 1.0)
    gv, gu = np.gradient(smooth[c - 20:c + 21, c - 20:c + 21])
    mag = np.hypot(gv, gu)
    ang = np.mod(np.arctan2(gv, gu), np.pi)
    hist, _ = np.histogram(ang, bins=8, range=(0.0, np.pi), weights=mag)
    total = hist.sum()
    for i in range(8):
        f[f"f_grad_{i}"] = float(hist[i] / total) if total > 0 else math.nan
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

    For each centre a 65 x 65 sagittal patch (1 mm grid, :data:`PATCH_MM` mm
    wide) is resampled (trilinear) around it, rows along the local spine axis
    (from the neighbouring centres, head -> feet) and columns across it
    (anterior -> posterior), averaged over five sagittal planes 1 mm apart. From
    it: the bone threshold (half-way between the body's central HU and soft
    tissue, 40 HU, clipped to 80-250 HU, unless ``threshold_hu``); the body's
    depth and its heights at 20 %, 50 % and 80 % of the depth (the extent
    of the above-threshold run through the centre, edges at half maximum);
    height ratios and loss ``1 - min/max``; the heights relative to the mean
    of the neighbouring vertebrae's (``f_nb_*``); intensity profiles (5 mm
    bins) along and across the spine; 8 x 8 block means; an 8-bin
    gradient-orientation histogram.

    Parameters
    ----------
    volume_or_slab : Volume or ndarray (rows, cols, slices)
        HU. A :class:`~vfs_utils.dicom.Volume` brings its spacing; a slab
        (a sub-box of a volume) needs the centres in its own voxel indices.
    centres : ndarray (n, 3) or DataFrame
        ``[row, col, slice]`` voxel indices of the vertebral-body centres
        (a frame with ``centre_row, centre_col, centre_slice``), of one spine.
    spacing : (row, col, slice) mm, optional
        Required for an ndarray.
    threshold_hu : float, optional
        A fixed bone threshold in HU instead of the adaptive one.
    return_patches : bool
        Also return the patches.

    Returns
    -------
    DataFrame or (DataFrame, ndarray)
        One row per centre (input order), float columns named ``f_*`` (mm for
        heights); with ``return_patches`` also an array (n, 65, 65) float32 in HU.
        A supine axial series is assumed (row grows anterior -> posterior).
    """
    array = getattr(volume_or_slab, "array", volume_or_slab)
    if spacing is None:
        spacing = getattr(volume_or_slab, "spacing", None)
        if spacing is None:
            raise TypeError("vertebra_features needs spacing= (row, col, slice) mm for an array")
    sp = np.asarray(spacing, float)
    if sp.shape != (3,) or not (np.isfinite(sp).all() and (sp > 0).all()):
        raise ValueError(f"spacing must be three positive mm values, not {spacing!r}")
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


def _slab_box(truth, margin_mm: float = _HALF * math.sqrt(2) + 3.0, lateral_mm: float = 3.5):
    """Voxel box around the annotated centres wide enough for every patch."""
    sp = np.asarray(truth.geometry.spacing, float)
    pts = np.stack([v.points.mean(axis=0) for v in truth.vertebrae if v.annotated])
    m = np.array([margin_mm, lateral_mm, margin_mm]) / sp
    lo = np.floor(pts.min(axis=0) - m).astype(int)
    hi = np.ceil(pts.max(axis=0) + m).astype(int) + 1
    shape = truth.geometry.shape
    return tuple((max(int(a), 0), min(int(b), s)) for a, b, s in zip(lo, hi, shape))


def _study_image(study: Study):
    """(array, spacing, offset) of the study's image (or its rendered slab)."""
    if study.kind == "image":
        from .dicom import load_series
        from .matching import study_folder

        vol = load_series(study_folder(study.root, study.folder), study.annotation.series_uid)
        return vol.array, tuple(vol.spacing), np.zeros(3)
    if study.kind in ("phantom", "sampled"):
        from .phantom import render_volume

        box = _slab_box(study.truth)
        slab = render_volume(study.truth, rng=np.random.default_rng(
            _noise_seed(study.folder, study.seed)), box=box)
        return slab, tuple(study.truth.geometry.spacing), np.array([b[0] for b in box], float)
    raise ValueError(f"unknown study kind {study.kind!r}: use 'image', 'phantom' or 'sampled'")


def study_features(study: Study, *, return_patches: bool = False,
                   threshold_hu: float | None = None, table: pd.DataFrame | None = None):
    """Labels and image features of every vertebra of one study.

    Parameters
    ----------
    study : Study
    return_patches : bool
        Also return the patches (see :func:`vertebra_features`).
    threshold_hu : float, optional
        Passed to :func:`vertebra_features`.
    table : DataFrame, optional
        The study's :func:`vertebra_table` when already computed.

    Returns
    -------
    DataFrame or (DataFrame, ndarray)
        :func:`vertebra_table` columns (plus ``kind``) followed by the ``f_*``
        features. The image is freed before returning.
    """
    if table is None:
        table = vertebra_table(study.annotation, study.spacing)
    feats, patches = _image_features(study, table, threshold_hu)
    table = table.reset_index(drop=True)
    table.insert(2, "kind", study.kind)
    out = pd.concat([table, feats], axis=1)
    return (out, patches) if return_patches else out


def _image_features(study: Study, table: pd.DataFrame, threshold_hu: float | None):
    array, spacing, offset = _study_image(study)
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
                     threshold_hu: float | None = None):
    """Labels and image features of every vertebra of a dataset, one study per task.

    Parameters
    ----------
    source_or_annotation_dir : DataSource, path-like or sequence of Study
        See :func:`load_studies`.
    root, min_studies, seed, limit
        See :func:`load_studies`.
    executor : concurrent.futures.Executor, optional
        Run the studies on it (``executor.map``, results in study order);
        default: one after the other in this process. Each task holds one
        image (a real series, or a phantom slab) at a time.
    return_patches : bool
        Also return the patches, stacked in row order.
    threshold_hu : float, optional
        Passed to :func:`vertebra_features`.

    Returns
    -------
    DataFrame or (DataFrame, ndarray)
        One row per vertebra with a consensus grade, studies in order; see
        :func:`study_features`.
    """
    studies = load_studies(source_or_annotation_dir, root=root, min_studies=min_studies,
                           seed=seed, limit=limit)
    if not studies:
        raise DataNotFoundError(f"{source_or_annotation_dir}: no study to compute features for")
    tables = vertebra_table([s.annotation for s in studies],
                            {s.folder: s.spacing for s in studies})
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
    keep = frame["grade"].notna().to_numpy()
    if not keep.all():
        log.info("%d vertebrae without a consensus grade left out", int((~keep).sum()))
    frame = frame[keep].reset_index(drop=True)
    if return_patches:
        patches = np.concatenate([r[1] for r in results])[keep]
        return frame, patches
    return frame


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The feature columns (``f_*``) of a features frame, in order."""
    return [c for c in frame.columns if str(c).startswith("f_")]


# --------------------------------------------------------------------------- models
def make_models(seed: int = 0) -> dict[str, object]:
    """The baseline models, unfitted, by name (:data:`MODEL_NAMES`).

    - ``prevalence``: :class:`~sklearn.dummy.DummyClassifier` (``prior``), whose
      score is the training prevalence for every vertebra (ROC AUC 0.5);
    - ``logistic``: median imputation, :class:`~sklearn.preprocessing.StandardScaler`
      and L2 :class:`~sklearn.linear_model.LogisticRegression` (C = 0.1);
    - ``boosting``: :class:`~sklearn.ensemble.HistGradientBoostingClassifier`
      (100 iterations of 8-leaf trees, no early stopping, so it is deterministic).
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "prevalence": DummyClassifier(strategy="prior"),
        "logistic": Pipeline([("impute", SimpleImputer(strategy="median")),
                              ("scale", StandardScaler()),
                              ("classify", LogisticRegression(C=0.1, max_iter=5000))]),
        "boosting": HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=20,
            l2_regularization=1.0, early_stopping=False, random_state=seed),
    }


def _feature_matrix(features) -> pd.DataFrame:
    if isinstance(features, pd.DataFrame):
        cols = feature_columns(features)
        return features[cols] if cols else features
    return pd.DataFrame(np.asarray(features, float))


def _threads(threads: int | None):
    """A context limiting BLAS/OpenMP threads (threadpoolctl, a scikit-learn dependency)."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return nullcontext() if threads is None else threadpool_limits(limits=int(threads))


def train_model(features, labels, model: str | object = "logistic", *, seed: int = 0,
                threads: int | None = 1):
    """Fit one model on all the given vertebrae.

    Parameters
    ----------
    features : DataFrame
        A features frame (its ``f_*`` columns are used) or a feature matrix.
    labels : array_like of bool
        One target.
    model : str or estimator
        A name of :func:`make_models` or an unfitted scikit-learn classifier.
    seed : int
        Seed of the models of :func:`make_models`.
    threads : int or None
        BLAS/OpenMP threads while fitting (None: the library defaults). One
        thread is fastest for data this small, and much faster on a busy machine.

    Returns
    -------
    estimator
        Fitted; it records its feature names (``feature_names_in_``).
    """
    from sklearn.base import clone

    if isinstance(model, str):
        models = make_models(seed)
        if model not in models:
            raise ValueError(f"unknown model {model!r}: use one of {list(models)}")
        model = models[model]
    est = clone(model)
    with _threads(threads):
        est.fit(_feature_matrix(features), np.asarray(labels, dtype=bool))
    return est


# --------------------------------------------------------------------------- metrics
def _weighted_curves(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray):
    """Per distinct score (descending): weighted positives and negatives, shape (B, K)."""
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    w = weights[:, order]
    y = labels[order].astype(float)
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * (1 - y), starts, axis=1)
    return pos, neg


def _roc_auc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    # scores are descending: negatives ranked below a block are those after it
    n_neg = neg.sum(axis=1, keepdims=True)
    below = n_neg - np.cumsum(neg, axis=1)
    num = np.sum(pos * (below + 0.5 * neg), axis=1)
    den = pos.sum(axis=1) * n_neg[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    total = tps[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
        recall = tps / total
    d_recall = np.diff(np.concatenate([np.zeros((len(pos), 1)), recall], axis=1), axis=1)
    ap = np.sum(np.nan_to_num(d_recall) * precision, axis=1)
    return np.where((total[:, 0] > 0) & (neg.sum(axis=1) > 0), ap, np.nan)


_METRICS: dict[str, Callable] = {"roc_auc": _roc_auc, "pr_auc": _average_precision}


def bootstrap_ci(labels, scores, groups, *, metric: str = "roc_auc", n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """A metric and its percentile bootstrap interval, resampling whole groups (studies).

    Each replicate draws as many groups as there are, with replacement; a
    vertebra counts as often as its study was drawn (a sample weight), so a
    replicate equals the metric on the resampled, concatenated studies.
    Replicates with only one class are skipped.

    Parameters
    ----------
    labels : array_like of bool
    scores : array_like of float
    groups : array_like
        Study of each item.
    metric : {"roc_auc", "pr_auc"}
        ROC AUC (:func:`sklearn.metrics.roc_auc_score`) or average precision
        (:func:`sklearn.metrics.average_precision_score`); the replicates use an
        equivalent vectorised weighted computation.
    n_boot : int
        Replicates.
    seed : int
        Seed of :func:`numpy.random.default_rng`.
    level : float
        Coverage of the interval.

    Returns
    -------
    (estimate, low, high) : floats
        NaN when the data has a single class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, not {metric!r}")
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    g = np.asarray(groups)
    if not (len(y) == len(s) == len(g)):
        raise ValueError(f"labels, scores and groups differ in length: {len(y)}, {len(s)}, "
                         f"{len(g)}")
    if y.all() or not y.any():
        return math.nan, math.nan, math.nan
    estimate = float(roc_auc_score(y, s) if metric == "roc_auc"
                     else average_precision_score(y, s))
    _, codes = np.unique(g, return_inverse=True)
    n_groups = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, int(n_boot), 250):
        b = min(250, int(n_boot) - start)
        draws = rng.integers(0, n_groups, size=(b, n_groups))
        counts = np.zeros((b, n_groups))
        np.add.at(counts, (np.arange(b)[:, None], draws), 1.0)
        pos, neg = _weighted_curves(y, s, counts[:, codes])
        values.append(_METRICS[metric](pos, neg))
    vals = np.concatenate(values)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return estimate, math.nan, math.nan
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(vals, [alpha, 1 - alpha])
    return estimate, float(lo), float(hi)


# --------------------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class Evaluation:
    """Out-of-fold predictions and their summary.

    Attributes
    ----------
    predictions : DataFrame
        Long format, one row per (model, target, vertebra): ``model, target,
        row`` (row of the features frame, -1 for the reader), ``group`` (study),
        ``unit`` (the patient-level unit: the study, or study/expert for the
        reader), ``fold``, ``label`` (bool), ``score`` (probability), ``predicted``
        (bool at the threshold).
    summary : DataFrame
        See :func:`summarize`.
    threshold : float
    """

    predictions: pd.DataFrame
    summary: pd.DataFrame
    threshold: float


def _labels_frame(labels) -> pd.DataFrame:
    if isinstance(labels, pd.DataFrame):
        return labels
    name = getattr(labels, "name", None) or "label"
    return pd.DataFrame({name: np.asarray(labels)})


def evaluate(features, labels, groups, *, models: Mapping[str, object] | None = None,
             n_splits: int = 5, threshold: float = 0.5, n_boot: int = 1000, seed: int = 0,
             extra_predictions: pd.DataFrame | None = None,
             threads: int | None = 1) -> Evaluation:
    """Grouped cross-validation of the models, at vertebra and patient level.

    :class:`~sklearn.model_selection.GroupKFold` by study: no study is in the
    training and the test part of a fold. Every vertebra gets one out-of-fold
    probability per model and target; a patient's score is the maximum over
    their vertebrae and their label is "any vertebra positive".

    Parameters
    ----------
    features : DataFrame
        A features frame (``f_*`` columns used) or a feature matrix.
    labels : Series or DataFrame of bool
        One target, or one column per target (e.g. ``label_any, label_moderate``).
    groups : array_like
        Study of each vertebra.
    models : mapping, optional
        Name -> unfitted classifier; default :func:`make_models`.
    n_splits : int
        Folds.
    threshold : float
        Probability at or above which a vertebra is called fractured (sensitivity,
        specificity, confusion matrix): 0.5 by default, fixed before seeing the data.
    n_boot, seed
        See :func:`bootstrap_ci`.
    extra_predictions : DataFrame, optional
        Further predictions in the same long format (e.g. :func:`reader_baseline`)
        summarised in the same table.
    threads : int or None
        BLAS/OpenMP threads while fitting (see :func:`train_model`).

    Returns
    -------
    Evaluation
    """
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold

    X = _feature_matrix(features)
    y_all = _labels_frame(labels)
    g = np.asarray(groups)
    if not (len(X) == len(y_all) == len(g)):
        raise ValueError(f"features, labels and groups differ in length: {len(X)}, "
                         f"{len(y_all)}, {len(g)}")
    models = dict(models) if models is not None else make_models(seed)
    splits = list(GroupKFold(n_splits=n_splits).split(X, groups=g))
    fold = np.empty(len(X), int)
    for k, (_, test) in enumerate(splits):
        fold[test] = k
    parts = []
    for target in y_all.columns:
        y = y_all[target].to_numpy(dtype=bool)
        for name, model in models.items():
            prob = np.empty(len(X))
            for train, test in splits:
                with _threads(threads):
                    est = clone(model).fit(X.iloc[train], y[train])
                    classes = list(est.classes_)
                    prob[test] = (est.predict_proba(X.iloc[test])[:, classes.index(True)]
                                  if True in classes else 0.0)
            parts.append(pd.DataFrame({
                "model": name, "target": target, "row": np.arange(len(X)), "group": g,
                "unit": g, "fold": fold, "label": y, "score": prob,
                "predicted": prob >= threshold}))
    if extra_predictions is not None:
        parts.append(extra_predictions)
    predictions = pd.concat(parts, ignore_index=True)
    return Evaluation(predictions, summarize(predictions, n_boot=n_boot, seed=seed), threshold)


def _patient_level(pred: pd.DataFrame) -> pd.DataFrame:
    grouped = pred.groupby(["model", "target", "unit"], sort=False)
    out = grouped.agg(group=("group", "first"), label=("label", "any"), score=("score", "max"),
                      predicted=("predicted", "any")).reset_index()
    return out


def summarize(predictions: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, target, level): discrimination with intervals, and the operating point.

    Parameters
    ----------
    predictions : DataFrame
        Long-format predictions (see :class:`Evaluation`).
    n_boot, seed
        See :func:`bootstrap_ci` (resampling studies).

    Returns
    -------
    DataFrame
        Columns ``model, target, level`` (``vertebra`` or ``patient``), ``n``,
        ``positives``, ``roc_auc, roc_auc_lo, roc_auc_hi, pr_auc, pr_auc_lo,
        pr_auc_hi`` (95 % intervals), ``sensitivity, specificity`` (of the
        ``predicted`` column), ``tp, fp, tn, fn``.
    """
    rows = []
    levels = {"vertebra": predictions, "patient": _patient_level(predictions)}
    for level, frame in levels.items():
        for (model, target), part in frame.groupby(["model", "target"], sort=False):
            y = part["label"].to_numpy(bool)
            s = part["score"].to_numpy(float)
            p = part["predicted"].to_numpy(bool)
            grp = part["group"].to_numpy()
            roc = bootstrap_ci(y, s, grp, metric="roc_auc", n_boot=n_boot, seed=seed)
            pr = bootstrap_ci(y, s, grp, metric="pr_auc", n_boot=n_boot, seed=seed)
            tp, fp = int(np.sum(p & y)), int(np.sum(p & ~y))
            tn, fn = int(np.sum(~p & ~y)), int(np.sum(~p & y))
            rows.append({
                "model": model, "target": target, "level": level, "n": len(y),
                "positives": int(y.sum()),
                "roc_auc": roc[0], "roc_auc_lo": roc[1], "roc_auc_hi": roc[2],
                "pr_auc": pr[0], "pr_auc_lo": pr[1], "pr_auc_hi": pr[2],
                "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
                "specificity": tn / (tn + fp) if tn + fp else math.nan,
                "tp": tp, "fp": fp, "tn": tn, "fn": fn})
    out = pd.DataFrame(rows)
    level_order = pd.Categorical(out["level"], ["vertebra", "patient"], ordered=True)
    return (out.assign(_l=level_order).sort_values(["target", "_l"], kind="stable")
            .drop(columns="_l").reset_index(drop=True))


def confusion(predictions: pd.DataFrame, model: str, target: str,
              level: str = "vertebra") -> pd.DataFrame:
    """The 2 x 2 confusion matrix of one model and target (rows: truth, columns: prediction).

    Uses :func:`sklearn.metrics.confusion_matrix` on the ``predicted`` column;
    ``level="patient"`` aggregates first (any vertebra / maximum score).
    """
    from sklearn.metrics import confusion_matrix

    frame = predictions if level == "vertebra" else _patient_level(predictions)
    part = frame[(frame["model"] == model) & (frame["target"] == target)]
    if part.empty:
        raise ValueError(f"no predictions of model {model!r} for target {target!r}")
    m = confusion_matrix(part["label"].to_numpy(bool), part["predicted"].to_numpy(bool),
                         labels=[False, True])
    return pd.DataFrame(m, index=pd.Index(["not fractured", "fractured"], name="truth"),
                        columns=pd.Index(["not fractured", "fractured"], name="predicted"))


def reader_baseline(studies: Iterable[Study] | object, **kwargs) -> pd.DataFrame:
    """The human reader: one expert's morphometric grade against the other experts' consensus.

    For each expert of each study, the expert's within-vertebra Genant grade
    (from their own keypoints, :func:`vfs_utils.morphometry.morphometry_table`)
    is compared with the consensus (:func:`vfs_utils.morphometry.consensus`)
    of the *other* experts of that study, on the vertebrae both read. The
    score is the expert's height loss ``1 - min/max``; the prediction is their
    grade reaching the target. Every expert takes a turn, so a vertebra read
    by three experts gives three rows; studies with a single expert give none.

    Parameters
    ----------
    studies : sequence of Study, or anything :func:`load_studies` takes
    **kwargs
        Passed to :func:`load_studies`.

    Returns
    -------
    DataFrame
        Long-format predictions (see :class:`Evaluation`), model
        ``"reader (one expert)"``, ``unit`` = study/expert, ``fold`` = -1, ``row`` = -1.
    """
    from .matching import match_vertebrae
    from .morphometry import consensus, morphometry_table

    studies = load_studies(studies, **kwargs)
    frames = [match_vertebrae(read_annotations([s.annotation])) for s in studies]
    frame = pd.concat(frames, ignore_index=True)
    spacing = {s.folder: s.spacing for s in studies}
    table = morphometry_table(frame, spacing=spacing)
    parts = []
    for expert in sorted(table["expert"].unique()):
        mine = table[table["expert"] == expert]
        others = table[(table["expert"] != expert) & table["file"].isin(mine["file"])]
        if others.empty:
            continue
        ref = consensus(others)[["file", "vertebra_id", "grade"]].rename(
            columns={"grade": "ref_grade"})
        both = mine.merge(ref, on=["file", "vertebra_id"], how="inner")
        both = both[both["grade"].notna() & both["ref_grade"].notna()]
        for target, k in TARGETS.items():
            parts.append(pd.DataFrame({
                "model": READER, "target": target, "row": -1,
                "group": both["folder"].to_numpy(),
                "unit": (both["folder"] + "/" + both["expert"]).to_numpy(), "fold": -1,
                "label": (both["ref_grade"] >= k).to_numpy(bool),
                "score": both["height_loss"].to_numpy(float),
                "predicted": (both["grade"] >= k).to_numpy(bool)}))
    if not parts:
        return pd.DataFrame(columns=["model", "target", "row", "group", "unit", "fold", "label",
                                     "score", "predicted"])
    out = pd.concat(parts, ignore_index=True)
    order = {t: i for i, t in enumerate(TARGETS)}
    return out.sort_values("target", key=lambda s: s.map(order), kind="stable").reset_index(
        drop=True)


# --------------------------------------------------------------------------- persistence
def save_model(model, path: str | os.PathLike) -> Path:
    """Save a fitted model with skops (atomic: a temporary file, then a rename).

    Parameters
    ----------
    model : estimator
    path : path-like
        Target file, conventionally ``*.skops``; parent folders are created.

    Returns
    -------
    Path
    """
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        sio.dump(model, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_model(path: str | os.PathLike, *, allowed: Iterable[str] = ALLOWED_TYPES):
    """Load a model saved by :func:`save_model`, without running pickle code.

    The types the file holds beyond skops' defaults
    (:func:`skops.io.get_untrusted_types`) are checked against ``allowed``
    (default :data:`ALLOWED_TYPES`) before :func:`skops.io.load` is asked to
    trust exactly those; a file asking for anything else is refused. A shared
    model file is therefore safe to open.

    Raises
    ------
    DataNotFoundError
        No such file.
    ModelFileError
        Not a skops file, or types outside the allow-list.
    """
    import zipfile

    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such model file; train one and save it with "
                                "vfs_utils.baseline.save_model(), or omit --model.")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a skops model file ({exc}); save models with "
                             "vfs_utils.baseline.save_model().") from exc
    allowed = set(allowed)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise ModelFileError(f"{path}: holds types outside the allow-list: {refused}; it was "
                             "not loaded. Only files made by save_model() from make_models() "
                             "models are accepted (see ALLOWED_TYPES).")
    return sio.load(path, trusted=list(untrusted))


def default_model():
    """The model :func:`predict_study` uses without ``model``: logistic, grade >= 1.

    Trained on first use on :data:`_DEFAULT_TRAIN_STUDIES` sampled phantom
    spines (simulated readings, seed 0; a few seconds), then saved with skops
    in ``<cache>/models/`` and loaded from there afterwards. A phantom-trained
    model; for real images train on real data and pass it explicitly.
    """
    from .data import cache_dir

    path = cache_dir() / "models" / _DEFAULT_MODEL_FILE
    if path.is_file():
        return load_model(path)
    log.info("training the default baseline model on %d sampled phantom studies",
             _DEFAULT_TRAIN_STUDIES)
    frame = dataset_features(_sampled_studies(_DEFAULT_TRAIN_STUDIES, 0))
    model = train_model(frame, frame["label_any"], "logistic")
    save_model(model, path)
    return model


def predict_study(root: str | os.PathLike, annotation_file: str | os.PathLike,
                  model=None) -> pd.DataFrame:
    """Fracture probabilities of the vertebrae of one study.

    The annotation gives the vertebra centres only; the series it belongs to
    (:func:`vfs_utils.matching.match`) is read with
    :func:`vfs_utils.dicom.load_series` and the features come from the image.

    Parameters
    ----------
    root : path-like
        Dataset root holding ``dicom/<Folder>``.
    annotation_file : path-like
        The study's annotation (v1 or v2).
    model : path-like, estimator or None
        A skops file from :func:`save_model`, a fitted estimator, or None for
        :func:`default_model` (trained on sampled phantoms on first use, then cached).

    Returns
    -------
    DataFrame
        One row per vertebra, head -> feet: ``folder, vertebra_id, level,
        centre_row, centre_col, centre_slice, probability`` (of the model's
        target; consensus grade >= 1 for the default model) and ``fractured``
        (probability >= 0.5).
    """
    from .dicom import load_series
    from .matching import match

    ann = load_annotation(annotation_file)
    series = match(ann, root)
    vol = load_series(series["study_folder"], series["series_uid"])
    table = vertebra_table(ann, vol.spacing)
    feats = vertebra_features(vol, table)
    del vol
    if model is None:
        est = default_model()
    elif isinstance(model, (str, os.PathLike)):
        est = load_model(model)
    else:
        est = model
    names = getattr(est, "feature_names_in_", None)
    X = feats[list(names)] if names is not None else feats[feature_columns(feats)]
    classes = list(est.classes_)
    prob = est.predict_proba(X)[:, classes.index(True)] if True in classes else np.zeros(len(X))
    out = table[["folder", "vertebra_id", "level", "centre_row", "centre_col",
                 "centre_slice"]].copy()
    out["probability"] = prob
    out["fractured"] = prob >= 0.5
    return out


# --------------------------------------------------------------------------- figures
def _target_title(target: str) -> str:
    k = TARGETS.get(target)
    return f"consensus grade ≥ {k}" if k is not None else target


def plot_roc(predictions: pd.DataFrame, target: str = "label_any", level: str = "vertebra",
             ax=None):
    """ROC curves of every model (and the reader's operating point) for one target and level."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    frame = predictions if level == "vertebra" else _patient_level(predictions)
    frame = frame[frame["target"] == target]
    for model, part in frame.groupby("model", sort=False):
        y, s = part["label"].to_numpy(bool), part["score"].to_numpy(float)
        colour = _MODEL_COLOURS.get(model, OKABE_ITO["reddish purple"])
        if y.all() or not y.any():
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, color=colour, lw=1.6, label=model)
        if model == READER:
            p = part["predicted"].to_numpy(bool)
            ax.plot([np.mean(p[~y])], [np.mean(p[y])], "o", color=colour, mec="black",
                    label="reader's Genant call")
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    ax.set(xlabel="1 - specificity (false-positive rate)",
           ylabel="sensitivity (true-positive rate)",
           title=f"ROC, {level} level, {_target_title(target)}", xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_calibration(predictions: pd.DataFrame, target: str = "label_any",
                     models: Sequence[str] = ("logistic", "boosting"), n_bins: int = 10,
                     ax=None):
    """Reliability diagram (:func:`sklearn.calibration.calibration_curve`, quantile bins)."""
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    frame = predictions[predictions["target"] == target]
    for model in models:
        part = frame[frame["model"] == model]
        if part.empty:
            continue
        frac, mean = calibration_curve(part["label"].to_numpy(bool),
                                       part["score"].to_numpy(float), n_bins=n_bins,
                                       strategy="quantile")
        ax.plot(mean, frac, "o-", color=_MODEL_COLOURS.get(model), lw=1.4, ms=4, label=model)
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="perfect calibration")
    ax.set(xlabel="mean predicted probability (per bin)", ylabel="fraction fractured (per bin)",
           title=f"Calibration, vertebra level, {_target_title(target)}", xlim=(0, 1),
           ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    return ax


def plot_patches(patches: np.ndarray, titles: Sequence[str], *, ncols: int = 4,
                 window: tuple[float, float] = (-200.0, 800.0), suptitle: str | None = None):
    """Show sagittal patches (head up, anterior left) with titles; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(patches)
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols, 2.75 * nrows), squeeze=False)
    ext = (-_HALF - 0.5, _HALF + 0.5, _HALF + 0.5, -_HALF - 0.5)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, patch, title in zip(axes.ravel(), patches, titles):
        ax.axis("on")
        ax.imshow(patch, cmap="gray", vmin=window[0], vmax=window[1], extent=ext)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("anterior → posterior (mm)", fontsize=7)
        ax.set_ylabel("head → feet (mm)", fontsize=7)
        ax.tick_params(labelsize=6)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def plot_worst_patches(predictions: pd.DataFrame, features: pd.DataFrame, patches: np.ndarray,
                       *, model: str = "boosting", target: str = "label_any", n: int = 4):
    """The most confident misses and false alarms of a model, as image patches.

    Shows the ``n`` fractured vertebrae with the lowest out-of-fold probability
    and the ``n`` unfractured ones with the highest, titled with study, level,
    consensus grade and probability.
    """
    part = predictions[(predictions["model"] == model) & (predictions["target"] == target)]
    if part.empty:
        raise ValueError(f"no predictions of model {model!r} for target {target!r}")
    misses = part[part["label"]].nsmallest(n, "score", keep="first")
    alarms = part[~part["label"]].nlargest(n, "score", keep="first")
    picked = pd.concat([misses, alarms])
    titles = []
    for kind, (_, r) in zip(["missed"] * len(misses) + ["false alarm"] * len(alarms),
                            picked.iterrows()):
        row = features.iloc[int(r["row"])]
        level = row["level"] if isinstance(row["level"], str) else f"#{row['vertebra_id']}"
        titles.append(f"{kind}: …{str(row['folder'])[-8:]} {level}\n"
                      f"grade {row['grade']}, p = {r['score']:.2f}")
    return plot_patches(patches[picked["row"].to_numpy(int)], titles, ncols=n,
                        suptitle=f"Worst errors of {model} ({_target_title(target)}): "
                                 "top row missed fractures, bottom row false alarms")

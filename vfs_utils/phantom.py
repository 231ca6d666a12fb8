"""A synthetic spine CT phantom and the demo dataset built from it.

The CTLungCa-500 images are registration-gated, so the lessons run on
phantom chest CT series whose vertebral bodies pass exactly through
keypoints: either sampled (a fully synthetic spine with fractures and
simulated expert readings) or read from a real annotation file (so that the
real file matches the synthetic series unchanged).

Conventions are the annotation's: a volume has shape ``(rows, cols, slices)``,
row grows anterior -> posterior, col patient right -> left, slice head -> feet;
points are ``[row, col, slice]`` voxel indices; spacing is ``(row, col, slice)``
in mm. A vertebra is six points: anterior, middle and posterior pairs, each
pair upper endplate first.

Anatomy (HU): air outside an elliptical torso, subcutaneous fat (-100),
muscle and soft tissue (35-40), lungs (-850) over the thoracic range, heart,
descending aorta, trachea, sternum and ribs; vertebral bodies with a cortical
shell (700) around cancellous bone (lower in osteoporotic studies),
intervertebral discs (80), the spinal canal (10) and posterior elements; then
a slight in-plane blur and Gaussian noise. Edges are rendered with partial
volume (soft ramps of about one voxel), so heights measured back from the
image agree with the keypoints.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from .annotation import (LEVELS, Annotation, Vertebra, load_annotation, points, read_annotations,
                         write_annotation)
from .errors import AnnotationError, DataNotFoundError, DatasetExistsError

__all__ = [
    "DEFAULT_STUDIES",
    "HU",
    "Geometry",
    "VertebraTruth",
    "SpineTruth",
    "sample_spine",
    "sample_readings",
    "spine_from_annotation",
    "render_volume",
    "render_sagittal_slab",
    "write_study",
    "build_dataset",
]

log = logging.getLogger(__name__)

#: Number of studies of the default fully synthetic dataset (size budget: about 1 GB).
DEFAULT_STUDIES = 4
#: Root of every UID the phantom writes (``2.25`` UUID-derived UIDs are used below it).
_UID_SOURCE = "vfs-tutorials phantom v1"
_MANIFEST = "manifest.json"
_FORMAT = "vfs-phantom-1"


def _code_fingerprint() -> str:
    """sha256 (first 16 hex digits) of the code that renders and writes the phantom.

    Stored in the manifest, so a cached demo dataset made by other code is rebuilt
    (see ``replace_stale``) instead of silently reused.
    """
    digest = hashlib.sha256()
    for module in ("phantom.py", "dicom/_writer.py", "annotation.py"):
        digest.update((Path(__file__).parent / module).read_bytes())
    return digest.hexdigest()[:16]

#: Attenuation of the tissues, in HU.
HU: dict[str, float] = {
    "air": -1000.0, "fat": -100.0, "muscle": 40.0, "soft": 35.0, "abdomen": 55.0,
    "lung": -850.0, "blood": 40.0, "cortical": 700.0, "cancellous": 250.0,
    "disc": 80.0, "csf": 10.0, "arch": 450.0, "rib": 380.0, "sternum": 320.0,
}
_NOISE_HU = 15.0
_BLUR_PX = 0.6
_CORTEX_MM = 1.0
_DELTA_MM = 1.2     # the body extends this far beyond the anterior/posterior keypoints
_DISC_MIN_MM = 2.0  # touching endplates of a real annotation are pulled this far apart


# --------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a series.

    Attributes
    ----------
    shape : tuple of int
        ``(rows, cols, slices)``.
    spacing : tuple of float
        ``(row, col, slice)`` spacing in mm.
    origin : tuple of float
        LPS position (mm) of voxel ``(0, 0, 0)``, the centre of the first slice's first pixel.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, eq=False)
class VertebraTruth:
    """The true shape of one vertebra.

    Attributes
    ----------
    points : ndarray, shape (6, 3)
        ``[row, col, slice]`` voxel indices of the six keypoints.
    level : str or None
        Level name such as ``"Th7"``.
    grade : int or None
        Genant grade 0-3 (None when unknown, e.g. read from a real annotation).
    deformity : str or None
        ``"normal"``, ``"wedge"``, ``"biconcave"`` or ``"crush"`` (None when unknown).
    annotated : bool
        False for vertebrae rendered only to continue the spine beyond the annotated ones.
    """

    points: np.ndarray
    level: str | None = None
    grade: int | None = None
    deformity: str | None = None
    annotated: bool = True


@dataclass(frozen=True, eq=False)
class SpineTruth:
    """Everything the renderer needs for one study, and its ground truth.

    Attributes
    ----------
    vertebrae : tuple of VertebraTruth
        Head -> feet order.
    geometry : Geometry
    bone_hu : float
        Cancellous bone attenuation in HU (lower when ``osteoporotic``).
    osteoporotic : bool
    folder : str
        Study folder name.
    series_uid : str
        SeriesInstanceUID of the thin-slice series.
    readings : dict
        Expert name -> tuple of :class:`~vfs_utils.annotation.Vertebra` (simulated or real).
    torso_scale : float
        Size factor of the torso (1 = 32 x 23 cm).
    """

    vertebrae: tuple[VertebraTruth, ...]
    geometry: Geometry
    bone_hu: float = HU["cancellous"]
    osteoporotic: bool = False
    folder: str = "PHANTOM"
    series_uid: str = ""
    readings: dict[str, tuple[Vertebra, ...]] = field(default_factory=dict)
    torso_scale: float = 1.0

    def heights_mm(self) -> np.ndarray:
        """True anterior, middle and posterior heights in mm, shape (n_vertebrae, 3)."""
        sp = np.asarray(self.geometry.spacing)
        pts = np.stack([v.points for v in self.vertebrae]) * sp
        return np.linalg.norm(pts[:, 1::2] - pts[:, 0::2], axis=2)


def _uid(*parts) -> str:
    """A deterministic ``2.25.<128-bit integer>`` UID from a fixed root and ``parts``."""
    text = "\x1f".join([_UID_SOURCE, *map(str, parts)])
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


# --------------------------------------------------------------------------- sampling
_DEFORMITIES = ("wedge", "biconcave", "crush")
_GRADE_RANGE = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.55)}


def _level_index(level: str | None, default: int) -> int:
    return LEVELS.index(level) if level in LEVELS else default


def sample_spine(rng: np.random.Generator, *, n_vertebrae: int | None = None,
                 fractures: Sequence[tuple[str, int]] | None = None,
                 shape: tuple[int, int] = (512, 512), folder: str = "PHANTOM",
                 series_uid: str = "") -> SpineTruth:
    """Sample a fully synthetic thoracic and upper lumbar spine.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_vertebrae : int, optional
        12-17 (default: sampled). The spine starts at C7, Th1 or Th2.
    fractures : sequence of (deformity, grade), optional
        Fractures to place (deformity ``"wedge"``, ``"biconcave"`` or ``"crush"``,
        Genant grade 1-3) at random levels between Th4 and L1. Default: sampled
        with a prevalence of about one fractured study in two.
    shape : (rows, cols)
        In-plane size of the series (the slice count follows the spine length).
    folder, series_uid : str
        Stored on the result.

    Returns
    -------
    SpineTruth
        Keypoints in voxel indices; pixel spacing 0.70-0.80 mm, slice spacing
        1.0 or 1.25 mm; vertebral heights grow towards the feet
        (Th1 about 15 mm, L2 about 26 mm) and discs from 4 to 8 mm.
    """
    rows, cols = int(shape[0]), int(shape[1])
    n = int(n_vertebrae if n_vertebrae is not None else rng.integers(12, 18))
    if not 1 <= n <= 20:
        raise ValueError(f"n_vertebrae={n}: use 1-20")
    start = LEVELS.index("Th1") + int(rng.integers(-1, 2))
    start = min(start, len(LEVELS) - n)
    levels = LEVELS[start:start + n]
    pixel = float(rng.choice([0.703125, 0.742188, 0.78125]))
    # thin slices of 1.25 mm mostly (and always for long spines) keep the dataset small
    slice_sp = 1.25 if n >= 14 else float(rng.choice([1.0, 1.25], p=[0.3, 0.7]))
    scale = float(rng.normal(1.0, 0.05))
    osteoporotic = bool(rng.random() < 0.3)
    bone = float(rng.uniform(150, 190) if osteoporotic else rng.uniform(210, 290))

    if fractures is None:
        fractures = []
        if rng.random() < 0.5:
            for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
                fractures.append((str(rng.choice(_DEFORMITIES, p=[0.55, 0.3, 0.15])),
                                  int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))))
    lo = max(levels.index("Th4") if "Th4" in levels else 0, 1)
    hi = levels.index("L1") if "L1" in levels else n - 2
    candidates = list(range(lo, max(hi, lo) + 1))
    chosen = rng.choice(candidates, size=min(len(fractures), len(candidates)), replace=False)
    fracture_at = {int(i): f for i, f in zip(chosen, fractures)}

    theta_top = math.radians(rng.normal(28, 4))     # tangent angle: + means descending posteriorly
    theta_bottom = math.radians(rng.normal(-22, 4))
    specs, total = [], 0.0
    for i, level in enumerate(levels):
        k = _level_index(level, LEVELS.index("Th1")) - LEVELS.index("Th1")   # 0 at Th1
        base_h = scale * (15.0 + 0.8 * k + (1.5 if k > 11 else 0.0)) * rng.normal(1, 0.03)
        depth = scale * (16.0 + 1.0 * k + (1.5 if k > 11 else 0.0)) * rng.normal(1, 0.03)
        disc = scale * (3.8 + 0.15 * k + (2.5 if k > 11 else 0.0))
        natural_wedge = 0.95 if 3 <= k <= 11 else (1.02 if k > 11 else 0.99)
        h_post = base_h
        h_ant = base_h * natural_wedge * rng.normal(1, 0.02)
        h_mid = max(h_ant, h_post) * rng.uniform(0.94, 0.98)
        deformity, grade = "normal", 0
        if i in fracture_at:
            deformity, grade = fracture_at[i]
            loss = rng.uniform(*_GRADE_RANGE[grade])
            if deformity == "wedge":
                h_ant = h_post * (1 - loss)
                h_mid = min(h_mid, 0.5 * (h_ant + h_post) * rng.uniform(0.97, 1.0))
            elif deformity == "biconcave":
                h_mid = max(h_ant, h_post) * (1 - loss)
            else:  # crush: the whole body loses height relative to its expected height
                h_post *= 1 - loss
                h_ant = h_post * rng.uniform(0.92, 1.0)
                h_mid = h_post * rng.uniform(0.90, 0.97)
        specs.append((level, (h_ant, h_mid, h_post), depth, disc, grade, deformity))
        total += max(h_ant, h_post) + disc

    # walk down the sagittal curve (y: posterior mm, z: feet mm)
    margin = 14.0
    n_slices = int(math.ceil((total + 2 * margin) / slice_sp))
    pos = np.array([0.0, margin])
    run = 0.0
    sagittal, outline = [], []
    for level, (h_a, h_m, h_p), depth, disc, grade, deformity in specs:
        h_max = max(h_a, h_p)
        theta = theta_top + (theta_bottom - theta_top) * (run + h_max / 2) / total
        t = np.array([math.sin(theta), math.cos(theta)])
        nrm = np.array([math.cos(theta), -math.sin(theta)])
        low0 = pos + t * h_max
        low_a, low_p = low0 - nrm * depth / 2, low0 + nrm * depth / 2
        up_a, up_p = low_a - t * h_a, low_p - t * h_p
        deficit = 0.5 * (h_a + h_p) - h_m
        up_m = 0.5 * (up_a + up_p) + t * deficit / 2
        low_m = 0.5 * (low_a + low_p) - t * deficit / 2
        sagittal.append(np.array([up_a, low_a, up_m, low_m, up_p, low_p]))
        outline.append((level, grade, deformity))
        pos = low0 + t * disc
        run += h_max + disc
    pts_mm = np.stack(sagittal)                     # (n, 6, 2) y, z
    centre_y = pts_mm[..., 0].mean()
    target_y = rows * pixel * rng.uniform(0.60, 0.66)
    pts_mm[..., 0] += target_y - centre_y
    col = cols / 2 + rng.normal(0, 4)
    vertebrae = []
    for p, (level, grade, deformity) in zip(pts_mm, outline):
        vox = np.column_stack([p[:, 0] / pixel, np.full(6, col), p[:, 1] / slice_sp])
        vertebrae.append(VertebraTruth(vox, level, int(grade), deformity))
    geometry = Geometry((rows, cols, n_slices), (pixel, pixel, slice_sp),
                        (-pixel * cols / 2, -pixel * rows / 2 + 30.0, -40.0))
    return SpineTruth(tuple(vertebrae), geometry, bone, osteoporotic, folder, series_uid,
                      torso_scale=float(rng.normal(1.0, 0.05)))


def sample_readings(truth: SpineTruth, rng: np.random.Generator, *, n_experts: int | None = None,
                    noise_mm: float = 1.0, p_missing_end: float = 0.2
                    ) -> dict[str, tuple[Vertebra, ...]]:
    """Simulate expert readings of the annotated vertebrae of ``truth``.

    Parameters
    ----------
    truth : SpineTruth
    rng : numpy.random.Generator
    n_experts : int, optional
        2 or 3 (default: sampled), named like the v2 experts ``expert1..expert4``.
    noise_mm : float
        Standard deviation (mm) of each reader's error per point, in row and slice.
    p_missing_end : float
        Probability that a reader leaves out the top vertebra, and separately the bottom one.

    Returns
    -------
    dict
        Expert name -> tuple of :class:`~vfs_utils.annotation.Vertebra` with levels,
        head -> feet; each vertebra drawn on one sagittal column (an integer).
    """
    n_experts = int(n_experts if n_experts is not None else rng.integers(2, 4))
    names = sorted(rng.choice([f"expert{i}" for i in range(1, 5)], size=n_experts, replace=False))
    sp = np.asarray(truth.geometry.spacing)
    annotated = [v for v in truth.vertebrae if v.annotated]
    readings = {}
    for name in names:
        first, last = 0, len(annotated)
        if len(annotated) > 4 and rng.random() < p_missing_end:
            first = 1
        if len(annotated) > 4 and rng.random() < p_missing_end:
            last -= 1
        items = []
        for v in annotated[first:last]:
            pts = v.points.copy()
            pts[:, 0] += rng.normal(0, noise_mm, 6) / sp[0]
            pts[:, 2] += rng.normal(0, noise_mm, 6) / sp[2]
            pts[:, 1] = float(np.round(v.points[:, 1].mean() + rng.normal(0, 1.5)))
            # a reader clicks inside the image: keep the noisy points in the volume
            np.clip(pts, 0, np.asarray(truth.geometry.shape, dtype=float) - 1, out=pts)
            items.append(Vertebra(pts, v.level))
        readings[str(name)] = tuple(items)
    return readings


# --------------------------------------------------------------------------- from annotations
def _folder_spacing(folder: str) -> tuple[float, float, float]:
    digest = hashlib.sha256(folder.encode()).digest()
    pixel = (0.703125, 0.742188, 0.78125)[digest[0] % 3]
    return (pixel, pixel, 1.0)


def _group_vertebrae(annotation: Annotation) -> list[np.ndarray]:
    """Per vertebra (head -> feet), the stacked readings (k, 6, 3) of the experts who marked it.

    Readings are paired across experts by :func:`vfs_utils.matching.match_vertebrae`
    (by level in v2, by position in v1).
    """
    from .matching import match_vertebrae

    if not any(annotation.experts.values()):
        raise AnnotationError(f"{annotation.path or annotation.folder}: no expert marked any "
                              "vertebra; the phantom needs at least one reading.")
    frame = match_vertebrae(read_annotations([annotation]))
    pts = points(frame)
    ids = frame["vertebra_id"].to_numpy()
    return [pts[ids == k] for k in np.unique(ids)]


def _separate(points: list[np.ndarray], spacing: np.ndarray) -> list[np.ndarray]:
    """Pull touching endplates of neighbouring vertebrae apart to leave a disc."""
    pts = [p.copy() for p in points]
    for i in range(len(pts) - 1):
        a, b = pts[i], pts[i + 1]
        axis = (b.mean(0) - a.mean(0)) * spacing
        norm = np.linalg.norm(axis)
        if norm == 0:
            continue
        axis /= norm
        for k in range(3):
            gap = float(((b[2 * k] - a[2 * k + 1]) * spacing) @ axis)
            if gap < _DISC_MIN_MM:
                shift = min((_DISC_MIN_MM - gap) / 2, 2.0) * axis / spacing
                shift[1] = 0.0
                a[2 * k + 1] -= shift
                b[2 * k] += shift
    return pts


def spine_from_annotation(annotation: Annotation | str | os.PathLike, *,
                          spacing: tuple[float, float, float] | None = None,
                          shape: tuple[int, int] = (512, 512), margin: int = 16,
                          extra_points: np.ndarray | None = None) -> SpineTruth:
    """The spine of a real annotation: one vertebra per mean of the experts' readings.

    Vertebrae are matched across experts by level (v2) or by the nearest centre
    (v1). Endplates that touch (neighbouring readings sharing points) are pulled
    apart by at most 2 mm each so a disc separates the bodies; every other point
    is rendered where the experts put it on average. One unannotated vertebra
    continues the spine above and below when the volume has room for it.

    Parameters
    ----------
    annotation : Annotation or path-like
        A v1 or v2 annotation.
    spacing : (row, col, slice) mm, optional
        Default: pixel 0.70-0.78 mm chosen from a hash of the folder, slices 1 mm.
    shape : (rows, cols)
    margin : int
        Slices added below the largest annotated slice index.
    extra_points : ndarray (k, 3), optional
        Further points the volume must contain (e.g. the other annotation version).

    Returns
    -------
    SpineTruth
        With the annotation's folder, SeriesInstanceUID and readings; grades unknown.
    """
    ann = annotation if isinstance(annotation, Annotation) else load_annotation(annotation)
    sp = np.asarray(spacing if spacing is not None else _folder_spacing(ann.folder), float)
    groups = _group_vertebrae(ann)
    means = _separate([g.mean(axis=0) for g in groups], sp)
    levels: list[str | None] = [None] * len(groups)
    if all(v.level for vs in ann.experts.values() for v in vs):
        lv = {}
        for vs in ann.experts.values():
            for v in vs:
                lv.setdefault(v.level, v.points.mean(axis=0)[2])
        levels = sorted(lv, key=lambda x: _level_index(x, 99))
    all_pts = np.concatenate([np.stack([v.points for v in vs]).reshape(-1, 3)
                              for vs in ann.experts.values() if vs])
    if extra_points is not None:
        all_pts = np.concatenate([all_pts, np.asarray(extra_points, float).reshape(-1, 3)])
    n_slices = int(math.ceil(all_pts[:, 2].max())) + 1 + margin
    rows, cols = shape
    if all_pts[:, 0].max() > rows - 1 or all_pts[:, 1].max() > cols - 1 or all_pts.min() < -0.5:
        raise AnnotationError(f"{ann.path or ann.folder}: points outside a {rows}x{cols} image; "
                              "pass a larger shape.")
    vertebrae = [VertebraTruth(p, lvl) for p, lvl in zip(means, levels)]
    if len(means) >= 2:   # continue the spine one vertebra above and below
        top = means[0] - (means[1] - means[0])
        bottom = means[-1] + (means[-1] - means[-2])
        if top[:, 2].max() > 0:
            vertebrae.insert(0, VertebraTruth(top, None, annotated=False))
        if bottom[:, 2].min() < n_slices:
            vertebrae.append(VertebraTruth(bottom, None, annotated=False))
    geometry = Geometry((rows, cols, n_slices), tuple(float(s) for s in sp),
                        (-sp[1] * cols / 2, -sp[0] * rows / 2 + 30.0, -40.0))
    digest = hashlib.sha256(ann.folder.encode()).digest()
    bone = 170.0 + digest[1] % 100
    return SpineTruth(tuple(vertebrae), geometry, float(bone), bone < 200, ann.folder,
                      ann.series_uid, dict(ann.experts), 1.0)


# --------------------------------------------------------------------------- rendering
def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Partial-volume occupancy of a signed distance ``d`` (mm, > 0 inside)."""
    return np.clip(0.5 + d / width, 0.0, 1.0)


def _paint(target: np.ndarray, occ: np.ndarray, value) -> None:
    """``target = target * (1 - occ) + value * occ`` in place."""
    target += occ * (value - target)


@dataclass
class _Frame:
    """Local sagittal frame of one vertebra: a (anterior -> posterior), b (head -> feet), mm."""

    origin: np.ndarray   # (y, z) mm
    eu: np.ndarray
    ev: np.ndarray
    col_mm: float

    def local(self, y, z):
        dy, dz = y - self.origin[0], z - self.origin[1]
        return dy * self.eu[0] + dz * self.eu[1], dy * self.ev[0] + dz * self.ev[1]

    def world(self, a, b):
        return (self.origin[0] + a * self.eu[0] + b * self.ev[0],
                self.origin[1] + a * self.eu[1] + b * self.ev[1])


def _frame(p_mm: np.ndarray) -> _Frame:
    """Frame of a vertebra from its six points in mm (y=row, x=col, z=slice)."""
    yz = p_mm[:, [0, 2]]
    ant, post = yz[0:2].mean(0), yz[4:6].mean(0)
    eu = post - ant
    eu = eu / (np.linalg.norm(eu) or 1.0)
    ev = np.array([-eu[1], eu[0]])
    if ev[1] < 0:
        ev = -ev
    return _Frame(yz.mean(0), eu, ev, float(p_mm[:, 1].mean()))


def _quadratic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Coefficients of b(a) through three points (linear when two coincide)."""
    if np.min(np.abs(np.diff(np.sort(a)))) < 1e-3:
        c = np.polyfit(a, b, 1)
        return np.array([0.0, *c])
    return np.polyfit(a, b, 2)


class _Body:
    """Signed distances (mm) to the faces of a vertebral body (or a disc)."""

    def __init__(self, upper: np.ndarray, lower: np.ndarray, frame: _Frame, delta: float,
                 width: float | None = None):
        self.f = frame
        ua, ub = frame.local(upper[:, 0], upper[:, 1])
        la, lb = frame.local(lower[:, 0], lower[:, 1])
        self.qu, self.ql = _quadratic(ua, ub), _quadratic(la, lb)
        self.delta = delta
        # walls: lines through (upper[0], lower[0]) and (upper[2], lower[2]), in (a, b)
        self.walls = []
        for k, sign in ((0, 1.0), (2, -1.0)):
            d = np.array([la[k] - ua[k], lb[k] - ub[k]])
            d /= np.linalg.norm(d) or 1.0
            nrm = np.array([d[1], -d[0]])
            if nrm[0] * sign < 0:
                nrm = -nrm
            self.walls.append((np.array([ua[k], ub[k]]), nrm))
        depth = 0.5 * (abs(ua[2] - ua[0]) + abs(la[2] - la[0]))
        self.half_width = 0.5 * (width if width is not None else 1.3 * depth)
        self.a_range = (min(ua[0], la[0]) - delta, max(ua[2], la[2]) + delta)
        self.b_range = (min(ub.min(), lb.min()), max(ub.max(), lb.max()))

    def distances(self, a, b, x):
        """Distances to upper, lower, anterior, posterior and lateral faces (> 0 inside)."""
        du = np.polyval(self.qu, a)
        dl = np.polyval(self.ql, a)
        su = np.polyval(np.polyder(self.qu), a)
        sl = np.polyval(np.polyder(self.ql), a)
        d_up = (b - du) / np.sqrt(1 + su * su)
        d_lo = (dl - b) / np.sqrt(1 + sl * sl)
        (p0, n0), (p1, n1) = self.walls
        d_ant = (a - p0[0]) * n0[0] + (b - p0[1]) * n0[1] + self.delta
        d_post = (a - p1[0]) * n1[0] + (b - p1[1]) * n1[1] + self.delta
        u = np.clip(d_ant / np.maximum(d_ant + d_post, 1e-3), 0.0, 1.0)
        half = self.half_width * np.power(np.clip(1 - np.abs(2 * u - 1) ** 2.2, 0, 1), 1 / 2.2)
        d_lat = half - np.abs(x)
        return d_up, d_lo, d_ant, d_post, d_lat


def _box_grid(geom: Geometry, box, lo_mm, hi_mm):
    """Index ranges (rows, cols, slices) of a mm bounding box, clipped to ``box``; or None."""
    sp = np.asarray(geom.spacing)
    lo = np.floor(np.asarray(lo_mm) / sp).astype(int)
    hi = np.ceil(np.asarray(hi_mm) / sp).astype(int) + 1
    lo = np.maximum(lo, [b[0] for b in box])
    hi = np.minimum(hi, [b[1] for b in box])
    if np.any(hi <= lo):
        return None
    return [(int(l), int(h)) for l, h in zip(lo, hi)]


def _local_grids(geom: Geometry, rng_idx, frame: _Frame):
    """(a, b, x) local coordinates of a sub-box, each broadcastable to (slices, rows, cols)."""
    sp = geom.spacing
    (r0, r1), (c0, c1), (s0, s1) = rng_idx
    y = (np.arange(r0, r1, dtype=np.float32) * sp[0])[None, :, None]
    z = (np.arange(s0, s1, dtype=np.float32) * sp[2])[:, None, None]
    x = (np.arange(c0, c1, dtype=np.float32) * sp[1] - frame.col_mm)[None, None, :]
    a, b = frame.local(y, z)
    return a, b, x


def _view(vol: np.ndarray, box, rng_idx):
    """The (slices, rows, cols) view of ``vol`` (which covers ``box``) for ``rng_idx``."""
    (r0, r1), (c0, c1), (s0, s1) = rng_idx
    return vol[s0 - box[2][0]:s1 - box[2][0], r0 - box[0][0]:r1 - box[0][0],
               c0 - box[1][0]:c1 - box[1][0]]


def _corners_box(frame: _Frame, a_lim, b_lim, x_half):
    aa = np.array([a_lim[0], a_lim[0], a_lim[1], a_lim[1]])
    bb = np.array([b_lim[0], b_lim[1], b_lim[0], b_lim[1]])
    y, z = frame.world(aa, bb)
    lo = (y.min(), frame.col_mm - x_half, z.min())
    hi = (y.max(), frame.col_mm + x_half, z.max())
    return lo, hi


def _render_spine(vol: np.ndarray, truth: SpineTruth, box) -> None:
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    w = float(max(sp[2], sp[0]))          # partial-volume ramp width (mm): the slice profile
    verts = [v.points * sp for v in truth.vertebrae]
    frames = [_frame(p) for p in verts]
    bodies = [_Body(p[0::2][:, [0, 2]], p[1::2][:, [0, 2]], f, _DELTA_MM)
              for p, f in zip(verts, frames)]

    # discs: between the lower endplate of one body and the upper endplate of the next
    for i in range(len(verts) - 1):
        up, low = verts[i][1::2][:, [0, 2]], verts[i + 1][0::2][:, [0, 2]]
        f = _Frame(0.5 * (frames[i].origin + frames[i + 1].origin),
                   frames[i].eu + frames[i + 1].eu, frames[i].ev + frames[i + 1].ev,
                   0.5 * (frames[i].col_mm + frames[i + 1].col_mm))
        f.eu /= np.linalg.norm(f.eu)
        f.ev /= np.linalg.norm(f.ev)
        width = bodies[i].half_width + bodies[i + 1].half_width
        disc = _Body(up, low, f, _DELTA_MM - 0.3, width=width)
        lo, hi = _corners_box(f, disc.a_range, (disc.b_range[0] - 2, disc.b_range[1] + 2),
                              disc.half_width + 2)
        idx = _box_grid(geom, box, lo, hi)
        if idx is None:
            continue
        a, b, x = _local_grids(geom, idx, f)
        occ = np.ones(np.broadcast_shapes(a.shape, x.shape), np.float32)
        for d in disc.distances(a, b, x):
            occ *= _ramp(d + 0.5 * w, w)   # overlap the bodies slightly; bone paints over it
        _paint(_view(vol, box, idx), occ, HU["disc"])

    for i, (body, f) in enumerate(zip(bodies, frames)):
        a_post = body.walls[1][0][0]
        height = body.b_range[1] - body.b_range[0]
        depth = body.a_range[1] - body.a_range[0]
        rc = 0.22 * depth + 1.5           # canal AP radius (mm)
        rcx = 1.25 * rc
        a_c = a_post + _DELTA_MM + rc + 0.5
        sp_len = 1.1 * depth + 6
        tilt = math.tan(math.radians(40))
        a_lim = (body.a_range[0] - 2, a_c + rc + sp_len + 6)
        b_lim = (body.b_range[0] - 6, body.b_range[1] + sp_len * tilt + 6)
        lo, hi = _corners_box(f, a_lim, b_lim, max(body.half_width, rcx + 26) + 3)
        idx = _box_grid(geom, box, lo, hi)
        if idx is None:
            continue
        a, b, x = _local_grids(geom, idx, f)
        view = _view(vol, box, idx)
        b_mid = 0.5 * (body.b_range[0] + body.b_range[1])
        bb = b - b_mid
        hb = height / 2
        # spinal canal, continuous over the disc above and below
        r_canal = np.sqrt(((a - a_c) / rc) ** 2 + (x / rcx) ** 2)
        in_b = _ramp(hb + 4.5 - np.abs(bb), w)
        canal = _ramp((1 - r_canal) * rc, w) * in_b
        # neural arch: pedicles and laminae around the canal, upper two thirds of the body
        ring = _ramp((r_canal - 1) * rc, w) * _ramp((1.45 - r_canal) * rc, w)
        arch_b = _ramp(np.minimum(bb + 0.9 * hb, 0.45 * hb - bb), w)
        arch = ring * arch_b * _ramp(a - a_post - 0.5, w)
        # spinous process: a bar pointing posteriorly and caudally
        s = a - (a_c + rc)
        along = _ramp(np.minimum(s + 3, sp_len - s), w)
        centre_b = -0.1 * hb + np.clip(s, 0, None) * tilt
        spin = along * _ramp(3.5 - np.abs(bb - centre_b), w) * _ramp(3.2 - np.abs(x), w)
        # transverse processes
        trans = (_ramp(4.5 - np.abs(a - a_c - 0.3 * rc), w) * _ramp(np.minimum(bb + 0.6 * hb,
                 0.2 * hb - bb), w) * _ramp(np.minimum(np.abs(x) - rcx, rcx + 24 - np.abs(x)), w))
        posterior = np.maximum(np.maximum(arch, spin), trans)
        _paint(view, np.broadcast_to(canal, view.shape), HU["csf"])
        _paint(view, posterior, HU["arch"])
        # vertebral body: cortical shell around cancellous bone
        dists = body.distances(a, b, x)
        occ = np.ones(view.shape, np.float32)
        inner = np.ones(view.shape, np.float32)
        for d in dists:
            occ *= _ramp(d, w)
            inner *= _ramp(d - _CORTEX_MM, w)
        bone = HU["cortical"] * (occ - inner) + truth.bone_hu * inner
        view *= 1 - occ
        view += bone


def _torso_fields(truth: SpineTruth, box):
    """Per-slice spine centre (row mm) and the z-profiles of the thoracic organs."""
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    centres = np.stack([v.points.mean(axis=0) for v in truth.vertebrae]) * sp
    z = np.arange(box[2][0], box[2][1]) * sp[2]
    order = np.argsort(centres[:, 2])
    y_s = np.interp(z, centres[order, 2], centres[order, 0])
    # the mean over the whole volume (not the box), so a sub-box renders the same anatomy
    y_all = np.interp(np.arange(geom.shape[2]) * sp[2], centres[order, 2], centres[order, 0])
    y_mean = float(y_all.mean())
    x_s = float(np.median(centres[:, 1]))
    # level positions (mm): Th1 top and Th11 bottom bound the lungs
    zc = {v.level: c[2] for v, c in zip(truth.vertebrae, centres) if v.level}
    step = float(np.median(np.diff(centres[order, 2]))) if len(centres) > 1 else 25.0
    first = truth.vertebrae[int(order[0])]
    k0 = _level_index(first.level, LEVELS.index("Th1") + (1 if not first.annotated else 0))

    def level_z(name):
        if name in zc:
            return zc[name]
        return centres[order[0], 2] + (LEVELS.index(name) - k0) * step

    apex, base = level_z("Th1") - 1.2 * step, level_z("Th11")
    return z, y_s, y_mean, x_s, apex, base, step, level_z


def _crop(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding rectangle of the non-zero part of a 2D field (empty slices when none)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows.min()), int(rows.max()) + 1), slice(int(cols.min()), int(cols.max()) + 1)


def _render_background(vol: np.ndarray, truth: SpineTruth, box, blur: float) -> None:
    """Torso, lungs and mediastinum, slice by slice from 2D fields computed once.

    The fields live on an extended row grid; each slice takes a row-shifted view,
    so the torso follows the spine's sagittal curve (partly) without recomputing them.
    """
    geom = truth.geometry
    sp = np.asarray(geom.spacing)
    z, y_s, y_mean, x_s, apex, base, step, level_z = _torso_fields(truth, box)
    s_ts = truth.torso_scale
    (r0, r1), (c0, c1), _ = box
    n_rows = r1 - r0
    w = float(sp[0])
    # the torso follows a third of the spine's curve, the aorta and trachea all of it
    y_t = y_mean + 0.35 * (y_s - y_mean)
    X = (np.arange(c0, c1, dtype=np.float32) * sp[1] - x_s)[None, :]

    def grid(y_ref):
        shift = np.round(y_ref / sp[0]).astype(int)
        kmin, kmax = int(shift.min()), int(shift.max())
        Y = (np.arange(r0 - kmax, r1 - kmin, dtype=np.float32) * sp[0])[:, None]
        return Y, kmax - shift

    Y, off_t = grid(y_t)
    Ys, off_s = grid(y_s)
    dy = 0.0   # the torso grid is centred on the spine's mean row
    ay, ax, yc = 115.0 * s_ts, 160.0 * s_ts, dy - 30.0 * s_ts
    rho = (np.abs(X / ax) ** 2.4 + np.abs((Y - yc) / ay) ** 2.4) ** (1 / 2.4)
    d_skin = (1 - rho) * ay
    base2d = np.full(rho.shape, HU["air"], np.float32)
    _paint(base2d, _ramp(d_skin, w), HU["fat"])
    _paint(base2d, _ramp(d_skin - 13, w), HU["muscle"])
    cavity = _ramp(d_skin - 26, w)
    _paint(base2d, cavity, HU["soft"])
    # mediastinal fat anterior to the spine, around the heart and great vessels
    medi = np.sqrt((X / (45 * s_ts)) ** 2 + ((Y + 62 * s_ts) / (50 * s_ts)) ** 2)
    _paint(base2d, _ramp((1 - medi) * 40, w) * cavity, HU["fat"] + 20)
    if blur > 0:
        ndimage.gaussian_filter(base2d, blur, output=base2d, truncate=2.5)
    lung_rho = np.sqrt(((np.abs(X) - 80 * s_ts) / (62 * s_ts)) ** 2
                       + ((Y - dy + 22 * s_ts) / (90 * s_ts)) ** 2)
    lung_box = _crop(lung_rho < 1.05)
    lung_rho, lung_cav = lung_rho[lung_box], cavity[lung_box]
    heart_rho = np.sqrt(((X - 28 * s_ts) / (58 * s_ts)) ** 2
                        + ((Y - dy + 72 * s_ts) / (44 * s_ts)) ** 2)
    heart_box = _crop(heart_rho < 1.05)
    heart_rho = heart_rho[heart_box]
    aorta = _ramp(11.0 - np.sqrt((X - 24) ** 2 + (Ys + 22) ** 2), w)
    aorta_box = _crop(aorta > 0)
    aorta = aorta[aorta_box]
    trachea_r = np.sqrt(X ** 2 + (Ys + 38) ** 2)
    trachea_box = _crop(trachea_r < 12)
    trachea = _ramp(8.0 - trachea_r, w)[trachea_box]
    trachea_wall = _ramp(10.5 - trachea_r, w)[trachea_box]
    sternum = (_ramp(14 - np.abs(X), w) * _ramp(dy - Y, w)
               * _ramp(np.minimum(d_skin - 14, 25 - d_skin), w))
    sternum_box = _crop(sternum > 0)
    sternum = sternum[sternum_box]
    band = _ramp(np.minimum(d_skin - 16, 26 - d_skin), w) * _ramp(np.abs(X) - 28, w)
    band_r, band_c = np.nonzero(band)
    band_v = band[band_r, band_c]
    band_phi = np.abs(np.arctan2(X, Y - yc))[band_r, band_c]   # 0 at the back, pi at the front
    abdomen = cavity * (HU["abdomen"] - HU["soft"])
    half, zh = 0.5 * (base - apex), 0.5 * (base + apex)
    heart_lo, heart_hi = level_z("Th5"), level_z("Th10") + 0.5 * step
    carina = level_z("Th5")
    st_lo, st_hi = level_z("Th2"), level_z("Th9")
    pitch = 0.9 * step + 4

    def sub(field_box, offset):
        rs, cs = field_box
        lo, hi = max(rs.start - offset, 0), min(rs.stop - offset, n_rows)
        if hi <= lo:
            return None, None
        return (slice(lo, hi), cs), (slice(lo + offset - rs.start, hi + offset - rs.start),
                                     slice(0, cs.stop - cs.start))

    for k in range(len(z)):
        ot, os_ = int(off_t[k]), int(off_s[k])
        img = vol[k]
        img[...] = base2d[ot:ot + n_rows]
        zz = z[k]
        s_l = math.sqrt(max(0.0, 1 - ((zz - zh) / half) ** 2)) if half > 0 else 0.0
        if s_l > 0:
            dst, src = sub(lung_box, ot)
            if dst is not None:
                occ = _ramp((s_l - lung_rho[src]) * 60, w) * lung_cav[src]
                _paint(img[dst], occ, HU["lung"])
        else:
            img += abdomen[ot:ot + n_rows]
        if heart_lo < zz < heart_hi:
            s_h = math.sqrt(max(0.0, 1 - ((zz - 0.5 * (heart_lo + heart_hi))
                                          / (0.5 * (heart_hi - heart_lo))) ** 2))
            dst, src = sub(heart_box, ot)
            if dst is not None:
                _paint(img[dst], _ramp((s_h - heart_rho[src]) * 45, w), HU["blood"])
        if apex < zz < base + step:
            dst, src = sub(aorta_box, os_)
            if dst is not None:
                _paint(img[dst], aorta[src], HU["blood"])
        if zz < carina:
            dst, src = sub(trachea_box, os_)
            if dst is not None:
                _paint(img[dst], trachea_wall[src], HU["soft"])
                _paint(img[dst], trachea[src], HU["air"])
        if st_lo < zz < st_hi:
            dst, src = sub(sternum_box, ot)
            if dst is not None:
                _paint(img[dst], sternum[src], HU["sternum"])
        if apex + 10 < zz < base + 1.5 * step and band_r.size:
            # ribs: oblique stripes in the chest wall, lower at the front
            rr = band_r - ot
            keep = (rr >= 0) & (rr < n_rows)
            pattern = np.cos(2 * np.pi * (zz - 30.0 * band_phi[keep]) / pitch)
            occ = band_v[keep] * np.clip((pattern - 0.55) * 4, 0, 1)
            rows_k, cols_k = rr[keep], band_c[keep]
            img[rows_k, cols_k] += occ * (HU["rib"] - img[rows_k, cols_k])


def _full_box(geom: Geometry):
    return ((0, geom.shape[0]), (0, geom.shape[1]), (0, geom.shape[2]))


def render_volume(truth: SpineTruth, geometry: Geometry | None = None,
                  rng: np.random.Generator | None = None, *, box=None,
                  noise: float = _NOISE_HU, blur: float = _BLUR_PX) -> np.ndarray:
    """Render the phantom CT in HU.

    Parameters
    ----------
    truth : SpineTruth
        Keypoints in voxel indices of ``geometry``.
    geometry : Geometry, optional
        Default: ``truth.geometry``.
    rng : numpy.random.Generator, optional
        Source of the noise (default: ``default_rng(0)``).
    box : ((r0, r1), (c0, c1), (s0, s1)), optional
        Render only this sub-box of voxel indices (half-open ranges), e.g. a thin
        sagittal slab around the spine; the result then has shape
        ``(r1 - r0, c1 - c0, s1 - s0)`` and equals the same box of the full volume
        up to noise.
    noise : float
        Standard deviation of the Gaussian noise in HU (0 for none).
    blur : float
        In-plane Gaussian blur in pixels (0 for none).

    Returns
    -------
    ndarray, int16, shape (rows, cols, slices)
        HU values; a (rows, cols, slices) view of a (slices, rows, cols) C-ordered array,
        so ``array[:, :, k]`` is contiguous.
    """
    if geometry is not None and geometry != truth.geometry:
        truth = SpineTruth(truth.vertebrae, geometry, truth.bone_hu, truth.osteoporotic,
                           truth.folder, truth.series_uid, truth.readings, truth.torso_scale)
    geom = truth.geometry
    rng = rng if rng is not None else np.random.default_rng(0)
    full = _full_box(geom)
    if box is None:
        box = full
    box = tuple((max(int(lo), f[0]), min(int(hi), f[1])) for (lo, hi), f in zip(box, full))
    if any(hi <= lo for lo, hi in box):
        raise ValueError(f"box {box} is empty inside the volume of shape {geom.shape}")
    n_r, n_c, n_s = (hi - lo for lo, hi in box)
    vol = np.empty((n_s, n_r, n_c), np.float32)
    _render_background(vol, truth, box, blur)
    _render_spine(vol, truth, box)
    if blur > 0:   # the background was blurred in 2D; blur the spine's column band here
        sp = np.asarray(geom.spacing)
        cols = np.concatenate([v.points[:, 1] for v in truth.vertebrae])
        pad = 45.0 / sp[1]
        b0 = max(int(cols.min() - pad) - box[1][0], 0)
        b1 = min(int(cols.max() + pad) + 1 - box[1][0], n_c)
        if b1 > b0:
            band = vol[:, :, b0:b1]
            for k0 in range(0, n_s, 64):
                part = band[k0:k0 + 64]
                part[...] = ndimage.gaussian_filter(part, (0, blur, blur), truncate=2.5)
    out = np.empty((n_s, n_r, n_c), np.int16)
    if noise > 0:
        # a bank of noise images, each slice a randomly shifted window of one of them
        pad = 48
        bank = rng.standard_normal((8, n_r + pad, n_c + pad), dtype=np.float32)
        bank *= np.float32(noise)
        picks = rng.integers(0, [8, pad, pad], size=(n_s, 3))
    for k in range(n_s):
        img = vol[k]
        if noise > 0:
            j, dr, dc = picks[k]
            img += bank[j, dr:dr + n_r, dc:dc + n_c]
        np.rint(img, out=img)
        np.clip(img, -1024, 3071, out=img)
        out[k] = img
    return out.transpose(1, 2, 0)


def render_sagittal_slab(truth: SpineTruth, half_width_mm: float = 12.0,
                         rng: np.random.Generator | None = None, **kwargs) -> tuple[np.ndarray, tuple]:
    """Render only a thin sagittal slab around the spine's columns.

    Parameters
    ----------
    truth : SpineTruth
    half_width_mm : float
        Half width of the slab in mm (cols ``centre +- half_width``).
    rng : numpy.random.Generator, optional
    **kwargs
        Passed to :func:`render_volume` (``noise``, ``blur``).

    Returns
    -------
    slab : ndarray int16 (rows, n_cols, slices)
    box : ((r0, r1), (c0, c1), (s0, s1))
        Voxel index ranges of the slab: point ``[row, col, slice]`` sits at
        ``[row, col - c0, slice]`` in the slab.
    """
    cols = np.concatenate([v.points[:, 1] for v in truth.vertebrae])
    half = half_width_mm / truth.geometry.spacing[1]
    c0 = int(math.floor(cols.min() - half))
    c1 = int(math.ceil(cols.max() + half)) + 1
    rows, ncols, slices = truth.geometry.shape
    box = ((0, rows), (max(c0, 0), min(c1, ncols)), (0, slices))
    return render_volume(truth, rng=rng, box=box, **kwargs), box


# --------------------------------------------------------------------------- writing
_SLICE_DIR = np.array([0.0, 0.0, -1.0])   # slice index grows head -> feet (-z in LPS)


def _thick_slabs(vol: np.ndarray, spacing, thickness_mm: float = 5.0):
    """Average consecutive slices into slabs of about ``thickness_mm``; (array, n per slab)."""
    m = max(1, int(round(thickness_mm / spacing[2])))
    base = vol.transpose(2, 0, 1)                          # (slices, rows, cols)
    n = base.shape[0] // m
    thick = np.empty((n,) + base.shape[1:], np.float32)
    for k in range(n):
        thick[k] = base[k * m:(k + 1) * m].mean(axis=0, dtype=np.float32)
    return thick.transpose(1, 2, 0), m


def _localizer(vol: np.ndarray, spacing) -> np.ndarray:
    """A coronal projection (rows = slices, cols = cols) scaled like a scout image."""
    base = vol.transpose(2, 0, 1)
    path = np.zeros(base.shape[::2], np.float32)           # (slices, cols)
    for k in range(base.shape[0]):
        path[k] = np.clip(base[k].astype(np.float32) + 1000.0, 0, None).sum(axis=0)
    path *= spacing[0] / 1000.0                              # water-equivalent path, mm
    return np.clip(path * 8.0 - 1000.0, -1024, 3071)


def _truth_record(truth: SpineTruth) -> dict:
    heights = truth.heights_mm()
    return {
        "folder": truth.folder,
        "series_uid": truth.series_uid,
        "shape": list(truth.geometry.shape),
        "spacing": [round(s, 6) for s in truth.geometry.spacing],
        "bone_hu": round(truth.bone_hu, 2),
        "osteoporotic": bool(truth.osteoporotic),
        "vertebrae": [
            {"level": v.level, "grade": v.grade, "deformity": v.deformity,
             "annotated": v.annotated,
             "heights_mm": [round(float(h), 3) for h in hs],
             "points": [[round(float(c), 4) for c in p] for p in v.points]}
            for v, hs in zip(truth.vertebrae, heights)],
    }


def write_study(root: str | os.PathLike, truth: SpineTruth, *, rng: np.random.Generator,
                patient_id: str = "VFS-PHANTOM", annotations: bool = True) -> dict:
    """Render one study and write its three series (and annotations) under ``root``.

    Writes ``<root>/dicom/<folder>/series-001`` (the annotated thin-slice series,
    ``truth.series_uid``), ``series-002`` (5 mm slabs averaged from it, its own
    SeriesInstanceUID) and ``series-003`` (a one-slice coronal LOCALIZER), and,
    when ``annotations`` is true, ``<root>/annotation/<folder>.json`` (v1) and
    ``<root>/annotation_v2/<folder>.json`` (v2) from ``truth.readings``.

    Parameters
    ----------
    root : path-like
        Dataset root.
    truth : SpineTruth
        Needs ``folder`` and ``series_uid``; readings when ``annotations``.
    rng : numpy.random.Generator
        Noise source.
    patient_id : str
        Synthetic PatientID.
    annotations : bool
        Write the readings as v1 and v2 files.

    Returns
    -------
    dict
        The study's record for the manifest: truth and the three SeriesInstanceUIDs.
    """
    root = Path(root)
    if not truth.series_uid:
        raise ValueError("truth.series_uid is empty: set a SeriesInstanceUID before writing")
    study = root / "dicom" / truth.folder
    study_uid = _uid("study", truth.series_uid)
    frame_uid = _uid("frame", truth.series_uid)
    common = dict(study_uid=study_uid, frame_of_reference_uid=frame_uid, patient_id=patient_id,
                  patient_name="Phantom^Synthetic", study_date="20200101")
    vol = render_volume(truth, rng=rng)
    with warnings.catch_warnings():
        # upstream SeriesInstanceUIDs end with a dot, which pydicom flags; keep them unchanged
        warnings.filterwarnings("ignore", message="Invalid value for VR UI")
        _write_series(study, truth, vol, common)
    record = _truth_record(truth)
    record["series"] = {"thin": truth.series_uid, "thick_5mm": _uid("thick", truth.series_uid),
                        "localizer": _uid("localizer", truth.series_uid)}
    record["patient_id"] = patient_id
    if annotations:
        ann = Annotation(truth.folder, truth.series_uid, "v2", dict(truth.readings))
        write_annotation(ann, root / "annotation" / f"{truth.folder}.json", version="v1")
        write_annotation(ann, root / "annotation_v2" / f"{truth.folder}.json", version="v2")
    return record


def _write_series(study: Path, truth: SpineTruth, vol: np.ndarray, common: dict) -> None:
    from .dicom import write_series

    geom = truth.geometry
    write_series(study / "series-001", vol, spacing=geom.spacing, series_uid=truth.series_uid,
                 origin=geom.origin, series_number=1,
                 series_description=f"Chest {geom.spacing[2]:g} mm (synthetic phantom)",
                 **common)
    thick, m = _thick_slabs(vol, geom.spacing)
    thick_uid = _uid("thick", truth.series_uid)
    origin5 = np.asarray(geom.origin) + (m - 1) / 2 * geom.spacing[2] * _SLICE_DIR
    write_series(study / "series-002", thick,
                 spacing=(geom.spacing[0], geom.spacing[1], m * geom.spacing[2]),
                 series_uid=thick_uid, origin=tuple(float(o) for o in origin5), series_number=2,
                 series_description="Chest 5 mm (synthetic phantom)", **common)
    del thick
    scout = _localizer(vol, geom.spacing)
    del vol
    scout_uid = _uid("localizer", truth.series_uid)
    rows = geom.shape[0]
    scout_origin = (geom.origin[0], geom.origin[1] + 0.5 * rows * geom.spacing[0], geom.origin[2])
    write_series(study / "series-003", scout, spacing=(geom.spacing[2], geom.spacing[1], 1.0),
                 series_uid=scout_uid, origin=scout_origin,
                 orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), series_number=3,
                 series_description="Topogram (synthetic phantom)",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), **common)


def _sample_fractures(rng: np.random.Generator) -> list[tuple[str, int]]:
    out = []
    if rng.random() < 0.5:
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            out.append((str(rng.choice(_DEFORMITIES, p=[0.55, 0.3, 0.15])),
                        int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))))
    return out


def _synthetic_truths(n: int, seed: int, size: int = 512) -> list[SpineTruth]:
    truths = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0])
        fractures = _sample_fractures(rng)
        # every dataset shows a wedge and a biconcave fracture (grade 2)
        if i == 0:
            fractures.insert(0, ("wedge", 2))
        if i == min(1, n - 1):
            fractures.insert(0, ("biconcave", 2))
        folder = f"SYNTH{seed:04d}-{i + 1:03d}_PHANTOM"
        truth = sample_spine(rng, fractures=fractures, folder=folder, shape=(size, size),
                             series_uid=_uid("series", "synthetic", seed, i))
        readings = sample_readings(truth, np.random.default_rng([seed, i, 1]))
        truths.append(SpineTruth(truth.vertebrae, truth.geometry, truth.bone_hu,
                                 truth.osteoporotic, folder, truth.series_uid, readings,
                                 truth.torso_scale))
    return truths


def _sibling_dir(version: str) -> Path | None:
    from .data import annotation_dir

    try:
        return annotation_dir(version, download=False)
    except DataNotFoundError:
        return None


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


_README = """# Synthetic phantom dataset (vfs-tutorials)

These CT series are SYNTHETIC: rendered by `vfs_utils.phantom` (`vfs demo-data`), not
images of any patient. They stand in for the registration-gated MosMed CTLungCa-500
series so that the lessons run offline. Layout as the real dataset:

- `dicom/<Folder>/series-001`: the annotated thin-slice series (SeriesInstanceUID of the annotation)
- `dicom/<Folder>/series-002`: a 5 mm reconstruction (slab average), its own SeriesInstanceUID
- `dicom/<Folder>/series-003`: a one-image coronal localizer (ImageType LOCALIZER)
- `annotation/<Folder>.json` (v1 schema) and `annotation_v2/<Folder>.json` (v2 schema)
- `manifest.json`: parameters, seed and the per-study truth (true heights, grades,
  deformity types, levels), written last: its presence marks a complete build.

Mode: {mode}. {detail}
"""


def build_dataset(out: str | os.PathLike | None = None, *, studies: int | None = None,
                  seed: int = 0, annotation_dir: str | os.PathLike | None = None,
                  image_size: int = 512, replace_stale: bool = False) -> Path:
    """Build the phantom dataset (idempotent): ``dicom/``, ``annotation/``, ``annotation_v2/``.

    Parameters
    ----------
    out : path-like, optional
        Dataset root to create. Default: ``vfs_utils.data.demo_dir("synthetic-seed{seed}")``
        or ``demo_dir("from-annotations-<hash>")``.
    studies : int, optional
        Number of studies (default :data:`DEFAULT_STUDIES`; with ``annotation_dir``:
        every file, else the first ``studies`` files in name order).
    seed : int
        Random seed; the same seed (and inputs) gives byte-identical files.
    annotation_dir : path-like, optional
        Folder of real v1 or v2 annotation files: render one study per file so that
        the file matches its series unchanged, and copy the files into ``annotation/``
        (v2 files, given or found as siblings via ``VFS_ANNOTATION_DIR_V2`` or the
        cache, into ``annotation_v2/``).
    image_size : int
        Rows and columns of the synthetic series (fully synthetic mode only; smaller
        sizes make quick test datasets). Real annotations always get 512 x 512.
    replace_stale : bool
        When ``out`` holds a phantom build with other parameters (or made by another
        version of the phantom code), build anew and replace it instead of raising.
        A folder without a phantom manifest is never touched.

    Returns
    -------
    Path
        The dataset root. When it already holds a complete build with the same
        parameters (its ``manifest.json``), it is returned without rebuilding.

    Raises
    ------
    DatasetExistsError
        When ``out`` exists, is not empty and is not a phantom build with these parameters
        (unless ``replace_stale`` and it is a phantom build).
    DataNotFoundError
        When ``annotation_dir`` holds no ``*.json`` file.
    """
    from .data import demo_dir

    seed = int(seed)
    files: list[Path] = []
    if annotation_dir is not None:
        annotation_dir = Path(annotation_dir)
        files = sorted(annotation_dir.glob("*.json"))
        if not files:
            raise DataNotFoundError(f"{annotation_dir}: no *.json annotation files; pass the "
                                    "folder of <Folder>.json files (see `vfs fetch`).")
        if studies is not None:
            files = files[:max(int(studies), 1)]
        digest = _hash_files(files)
        params = {"format": _FORMAT, "code": _code_fingerprint(), "mode": "from-annotations",
                  "seed": seed,
                  "studies": len(files), "annotation_files_sha256": digest}
        name = f"from-annotations-{digest[:12]}-seed{seed}"
    else:
        n = int(studies) if studies is not None else DEFAULT_STUDIES
        if n < 1:
            raise ValueError(f"studies={n}: use at least 1")
        params = {"format": _FORMAT, "code": _code_fingerprint(), "mode": "synthetic",
                  "seed": seed, "studies": n}
        name = f"synthetic-seed{seed}"
        if image_size != 512:
            params["image_size"] = int(image_size)
            name += f"-{int(image_size)}px"
    out = Path(out) if out is not None else demo_dir(name)

    stale: Path | None = None
    if out.exists():
        manifest = out / _MANIFEST
        if manifest.is_file():
            try:
                previous = json.loads(manifest.read_text(encoding="utf-8")).get("parameters")
            except (OSError, ValueError):
                previous = None
            if previous == params:
                return out
            if not replace_stale:
                raise DatasetExistsError(
                    f"{out}: holds a phantom dataset built with other parameters ({previous}); "
                    "pass another --out or delete that folder.")
            stale = out
        elif not out.is_dir() or any(out.iterdir()):
            raise DatasetExistsError(
                f"{out}: exists and is not a phantom dataset (no {_MANIFEST}); it is left "
                "untouched. Pass another --out or an empty folder.")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if annotation_dir is None:
            records = _build_synthetic(tmp, params["studies"], seed, int(image_size))
            detail = (f"{params['studies']} fully synthetic studies, seed {seed}; the expert "
                      "readings are the true keypoints plus about 1 mm reader noise.")
        else:
            records = _build_from_annotations(tmp, files, seed)
            detail = (f"{len(files)} studies rendered from the real annotation files of "
                      f"{annotation_dir.name}/ (CC BY-NC 4.0, copied unchanged), seed {seed}; "
                      "the images are synthetic, only the keypoints are real.")
        (tmp / "README.md").write_text(_README.format(mode=params["mode"], detail=detail),
                                       encoding="utf-8")
        manifest = {"synthetic": True, "generator": f"vfs_utils.phantom ({_FORMAT})",
                    "parameters": params, "studies": records}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True),
                                     encoding="utf-8")
        if stale is not None:    # our own older build: swap it out, then delete it
            trash = out.parent / f".{out.name}.stale-{os.getpid()}"
            os.rename(out, trash)
            os.rename(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            if out.exists():
                out.rmdir()      # an empty folder the caller made for us
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("phantom dataset written to %s", out)
    return out


def _build_synthetic(root: Path, n: int, seed: int, size: int = 512) -> list[dict]:
    records = []
    for i, truth in enumerate(_synthetic_truths(n, seed, size)):
        log.info("rendering study %d/%d (%s)", i + 1, n, truth.folder)
        rec = write_study(root, truth, rng=np.random.default_rng([seed, i, 2]),
                          patient_id=f"VFS-PHANTOM-{seed:04d}-{i + 1:03d}")
        records.append(rec)
    return records


def _build_from_annotations(root: Path, files: list[Path], seed: int) -> list[dict]:
    anns = [load_annotation(f) for f in files]
    versions = {a.version for a in anns}
    sibling_version = "v2" if versions == {"v1"} else ("v1" if versions == {"v2"} else None)
    sibling = _sibling_dir(sibling_version) if sibling_version else None
    (root / "annotation").mkdir(exist_ok=True)
    records = []
    for i, (f, ann) in enumerate(zip(files, anns)):
        other = sibling / f.name if sibling is not None else None
        other_ann = load_annotation(other) if other is not None and other.is_file() else None
        extra = None
        if other_ann is not None and other_ann.folder == ann.folder:
            extra = np.concatenate([np.stack([v.points for v in vs]).reshape(-1, 3)
                                    for vs in other_ann.experts.values() if vs])
        # levels from the v2 reading guide the lungs and organs; the given file sets the spine
        truth = spine_from_annotation(ann, extra_points=extra)
        log.info("rendering study %d/%d (%s)", i + 1, len(files), ann.folder)
        digest = hashlib.sha256(ann.folder.encode()).hexdigest()[:8].upper()
        rec = write_study(root, truth, rng=np.random.default_rng([seed, i, 2]),
                          patient_id=f"VFS-PHANTOM-{digest}", annotations=False)
        records.append(rec)
        shutil.copyfile(f, root / "annotation" / f.name)
        v2_source = f if ann.version == "v2" else (other if other_ann is not None else None)
        if v2_source is not None:
            (root / "annotation_v2").mkdir(exist_ok=True)
            shutil.copyfile(v2_source, root / "annotation_v2" / f.name)
    return records

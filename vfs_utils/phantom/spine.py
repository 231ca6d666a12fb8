"""The phantom's geometry and truth, sampled spines and readings, and the spine of a real
annotation (conventions: :mod:`vfs_utils.phantom`). It is one piece: sampling and the annotation
path build the same truth objects with the same per-level shape table (``_NORMAL_SHAPE``).
"""
from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..annotation import LEVELS, Annotation, Vertebra, load_annotation, points, read_annotations
from ..dicom._common import derived_uid
from ..errors import AnnotationError
from ..morphometry.grading import genant_grade, heights, within_loss
from ..morphometry.reference import LABEL_LEVELS
from ..readings import match_vertebrae

__all__ = ["HU", "NON_FRACTURE_DEFORMITIES", "Geometry", "SpineTruth", "VertebraTruth",
           "sample_readings", "sample_spine", "spine_from_annotation"]

#: Root of every UID the phantom writes (``2.25`` UUID-derived UIDs are used below it).
_UID_SOURCE = "vfs-tutorials phantom v1"

#: Attenuation of the tissues, in HU.
HU: dict[str, float] = {
    "air": -1000.0, "fat": -100.0, "muscle": 40.0, "soft": 35.0, "abdomen": 40.0,
    "lung": -850.0, "blood": 40.0, "cortical": 700.0, "cancellous": 250.0,
    "disc": 80.0, "csf": 10.0, "arch": 450.0, "rib": 650.0, "sternum": 320.0,
    "cartilage": 150.0, "liver": 62.0,
}
#: Levels of the lowest posterior lung recess and their probabilities (``lung_base``).
LUNG_BASES = {"Th10": 0.08, "Th11": 0.2, "Th12": 0.4, "L1": 0.32}
#: The lowest rib-bearing vertebra and its probability (``lowest_rib``).
LOWEST_RIBS = {"Th12": 0.97, "Th11": 0.02, "L1": 0.01}
_DISC_MIN_MM = 2.0  # touching endplates of a real annotation are pulled this far apart


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a series: ``shape`` (rows, cols, slices), ``spacing`` (row, col, slice)
    mm, ``origin`` (LPS mm of the centre of voxel ``(0, 0, 0)``)."""

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
    grade : int or None
        Genant grade 0-3 (None when unknown); non-fracture deformities have grade 0.
    deformity : str or None
        ``"normal"``, a fracture (``"wedge"``, ``"biconcave"``, ``"crush"``), one of
        :data:`NON_FRACTURE_DEFORMITIES`, or None when unknown.
    annotated : bool
        False for vertebrae rendered only to continue the spine.
    detail : mapping
        Render parameters of a non-fracture deformity (see :func:`_non_fracture`).
    """

    points: np.ndarray
    level: str | None = None
    grade: int | None = None
    deformity: str | None = None
    annotated: bool = True
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SpineTruth:
    """Everything the renderer needs for one study, and its ground truth.

    Attributes
    ----------
    vertebrae : tuple of VertebraTruth
        Head -> feet order.
    geometry : Geometry
    bone_hu : float
        Cancellous bone attenuation in HU (one per patient).
    osteoporotic : bool
    folder, series_uid : str
        Study folder name and SeriesInstanceUID of the thin-slice series.
    readings : dict
        Expert name -> tuple of :class:`~vfs_utils.annotation.Vertebra`.
    torso_scale : float
        Size factor of the torso.
    noise_hu, blur_px, hu_offset : float
        The study's acquisition: noise SD (HU), in-plane blur (pixels), HU offset.
    contrast : bool
        Contrast-enhanced study; then ``blood_hu`` is 150-300 HU.
    blood_hu : float
        Blood (aorta, heart) attenuation in HU.
    lung_base : str
        Level of the lowest posterior lung recess (:data:`LUNG_BASES`).
    lowest_rib : str
        The lowest rib-bearing vertebra (:data:`LOWEST_RIBS`); ribs from Th1 down to it.
    shift_mm : (row, col) float
        The patient's in-plane offset from the image centre (already in the keypoints of
        sampled spines; the record of it).
    """

    vertebrae: tuple[VertebraTruth, ...]
    geometry: Geometry
    bone_hu: float = HU["cancellous"]
    osteoporotic: bool = False
    folder: str = "PHANTOM"
    series_uid: str = ""
    readings: dict[str, tuple[Vertebra, ...]] = field(default_factory=dict)
    torso_scale: float = 1.0
    noise_hu: float = 15.0
    blur_px: float = 0.6
    hu_offset: float = 0.0
    contrast: bool = False
    blood_hu: float = HU["blood"]
    lung_base: str = "Th12"
    lowest_rib: str = "Th12"
    shift_mm: tuple[float, float] = (0.0, 0.0)

    def heights_mm(self) -> np.ndarray:
        """True anterior, middle and posterior heights in mm, shape (n_vertebrae, 3)."""
        sp = np.asarray(self.geometry.spacing)
        pts = np.stack([v.points for v in self.vertebrae]) * sp
        return np.linalg.norm(pts[:, 1::2] - pts[:, 0::2], axis=2)


def phantom_uid(*parts: object) -> str:
    """The UID of a phantom object named by ``parts``, below :data:`_UID_SOURCE`."""
    return derived_uid(_UID_SOURCE, *parts)


PHANTOM_DEFORMITIES = ("wedge", "biconcave", "crush")
_GRADE_RANGE = {1: (0.20, 0.25), 2: (0.25, 0.40), 3: (0.40, 0.55)}

#: Deformities that are not fractures (grade 0): what a fracture classifier must not flag.
NON_FRACTURE_DEFORMITIES: tuple[str, str, str] = ("schmorl_node", "osteophyte", "short_vertebra")

#: Normal vertebral shape per level, printed by ``docs/derive_phantom_shape.py`` from the
#: v2 annotations of the 65 keypoint training patients. Columns: n normal readings; Ha/Hp
#: median, quartiles; Hm/Hp median, quartiles; one reader's SD of Ha/Hp and of Hm/Hp around
#: the readers' mean.
_NORMAL_SHAPE: dict[str, tuple[float, ...]] = {
    'C6': (25, 0.949, 0.904, 1.038, 0.891, 0.865, 0.953, 0.054, 0.036),
    'C7': (70, 0.996, 0.954, 1.034, 0.880, 0.852, 0.915, 0.032, 0.033),
    'Th1': (142, 0.963, 0.918, 0.994, 0.861, 0.839, 0.892, 0.036, 0.035),
    'Th2': (158, 0.973, 0.945, 1.006, 0.865, 0.840, 0.890, 0.028, 0.024),
    'Th3': (144, 0.957, 0.918, 0.990, 0.856, 0.836, 0.881, 0.026, 0.022),
    'Th4': (144, 0.936, 0.907, 0.968, 0.853, 0.832, 0.879, 0.023, 0.023),
    'Th5': (135, 0.919, 0.886, 0.951, 0.858, 0.835, 0.884, 0.027, 0.024),
    'Th6': (129, 0.887, 0.859, 0.917, 0.852, 0.828, 0.882, 0.021, 0.024),
    'Th7': (106, 0.886, 0.860, 0.914, 0.858, 0.834, 0.877, 0.023, 0.026),
    'Th8': (133, 0.907, 0.877, 0.933, 0.856, 0.835, 0.882, 0.022, 0.020),
    'Th9': (151, 0.925, 0.894, 0.957, 0.859, 0.836, 0.890, 0.029, 0.024),
    'Th10': (151, 0.954, 0.913, 0.993, 0.871, 0.849, 0.897, 0.028, 0.023),
    'Th11': (135, 0.930, 0.890, 0.971, 0.865, 0.841, 0.897, 0.025, 0.024),
    'Th12': (127, 0.943, 0.898, 0.976, 0.863, 0.840, 0.893, 0.025, 0.025),
    'L1': (89, 0.962, 0.921, 0.998, 0.868, 0.844, 0.895, 0.024, 0.024),
    'L2': (21, 0.976, 0.948, 1.045, 0.859, 0.844, 0.894, 0.016, 0.023),
}
#: SD of a reader's whole-endplate placement along the height, in posterior heights
#: (same script).
_ENDPLATE_SHIFT = 0.018
#: SD (mm) of a reader's point along the endplate (anterior-posterior placement).
_ALONG_MM = 0.6
_IQR_PER_SD = 1.349          # interquartile range of a normal distribution, in SD

#: Per-vertebra probabilities of the non-fracture deformities (osteophytes: per patient).
_P_SCHMORL = 0.06
_P_OSTEOPHYTE = (0.0, 0.12, 0.35)
_P_OSTEOPHYTE_PATIENT = (0.5, 0.3, 0.2)
_P_SHORT = 0.02


def level_index(level: str | None, default: int) -> int:
    return LEVELS.index(level) if level in LEVELS else default


def _shape_row(level: str | None) -> tuple[float, ...]:
    """The :data:`_NORMAL_SHAPE` row of ``level``, or of the nearest tabulated level."""
    if level in _NORMAL_SHAPE:
        return _NORMAL_SHAPE[level]
    k = level_index(level, LEVELS.index("Th6"))
    nearest = min(_NORMAL_SHAPE, key=lambda lv: abs(LEVELS.index(lv) - k))
    return _NORMAL_SHAPE[nearest]


def _normal_shape(level: str | None, rng: np.random.Generator) -> tuple[float, float]:
    """True (Ha/Hp, Hm/Hp) of a normal vertebra at ``level``: the readings' spread less
    the reader noise that :func:`sample_readings` adds back, redrawn until QM grade 0."""
    _, w_med, w_q1, w_q3, c_med, c_q1, c_q3, r_w, r_c = _shape_row(level)
    sd_w = math.sqrt(max(((w_q3 - w_q1) / _IQR_PER_SD) ** 2 - r_w ** 2, 0.01 ** 2))
    sd_c = math.sqrt(max(((c_q3 - c_q1) / _IQR_PER_SD) ** 2 - r_c ** 2, 0.01 ** 2))
    for _ in range(100):
        w, c = rng.normal(w_med, sd_w), rng.normal(c_med, sd_c)
        h = (w, c, 1.0)
        if min(h) / max(h) >= 0.83:
            break
    else:
        w, c = w_med, c_med
    return float(w), float(c)


def _non_fracture(k: int, rng: np.random.Generator, p_osteophyte: float
                  ) -> tuple[str, dict]:
    """A non-fracture deformity (or "normal") and its render parameters; k = 0 at Th1."""
    u = rng.random()
    if u < _P_SHORT:
        return "short_vertebra", {"height_factor": round(float(rng.uniform(0.78, 0.88)), 4)}
    u -= _P_SHORT
    if 4 <= k <= 13 and u < _P_SCHMORL:
        return "schmorl_node", {
            "endplate": str(rng.choice(["upper", "lower"], p=[0.4, 0.6])),
            "position": round(float(rng.uniform(0.35, 0.75)), 4),
            "offset_mm": round(float(rng.normal(0.0, 2.0)), 4),
            "radius_mm": round(float(rng.uniform(2.0, 3.5)), 4),
            "depth_mm": round(float(rng.uniform(2.0, 4.0)), 4)}
    if rng.random() < p_osteophyte:
        upper, lower = rng.uniform(2.5, 6.0, 2) * (rng.random(2) < 0.75)
        if upper == 0 and lower == 0:
            lower = rng.uniform(2.5, 6.0)
        return "osteophyte", {"upper_mm": round(float(upper), 4),
                              "lower_mm": round(float(lower), 4)}
    return "normal", {}


def _patient_bone(deformed: bool, rng: np.random.Generator) -> tuple[float, bool]:
    """A patient's cancellous bone HU and whether it is osteoporotic (phantom settings that
    tie density to deformity, not measured values)."""
    osteoporotic = bool(rng.random() < (0.6 if deformed else 0.2))
    bone = float(np.clip(rng.normal(115, 20), 70, 150) if osteoporotic
                 else np.clip(rng.normal(215, 35), 150, 300))
    return bone, osteoporotic


def sample_fractures(rng: np.random.Generator) -> list[tuple[str, int]]:
    """A study's fractures (deformity, grade): none in about half of the studies."""
    out = []
    if rng.random() < 0.5:
        for _ in range(int(rng.choice([1, 1, 1, 2, 3]))):
            out.append((str(rng.choice(PHANTOM_DEFORMITIES, p=[0.55, 0.3, 0.15])),
                        int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))))
    return out


def draw_acquisition(rng: np.random.Generator) -> dict[str, float]:
    """One study's acquisition (the ``SpineTruth`` fields ``noise_hu, blur_px, hu_offset``)."""
    return {"noise_hu": float(rng.uniform(10, 28)), "blur_px": float(rng.uniform(0.4, 1.1)),
            "hu_offset": float(np.clip(rng.normal(0, 6), -15, 15))}


def draw_patient(rng: np.random.Generator) -> dict:
    """One study's ``contrast``, ``blood_hu``, ``lung_base`` and ``lowest_rib``."""
    contrast = bool(rng.random() < 0.2)
    blood = float(rng.uniform(150, 300)) if contrast else float(rng.uniform(30, 50))
    return {"contrast": contrast, "blood_hu": blood,
            "lung_base": str(rng.choice(list(LUNG_BASES), p=list(LUNG_BASES.values()))),
            "lowest_rib": str(rng.choice(list(LOWEST_RIBS), p=list(LOWEST_RIBS.values())))}


def sample_spine(rng: np.random.Generator, *, n_vertebrae: int | None = None,
                 fractures: Sequence[tuple[str, int]] | None = None,
                 shape: tuple[int, int] = (512, 512), folder: str = "PHANTOM",
                 series_uid: str = "", non_fracture: bool = True,
                 first: str | None = None) -> SpineTruth:
    """Sample a fully synthetic thoracic and upper lumbar spine.

    Normal vertebrae get the per-level shape of :data:`_NORMAL_SHAPE`; non-fractured
    ones may get a non-fracture deformity. Bone density is drawn per patient (lower,
    more often, with fractures) and the acquisition per study.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_vertebrae : int, optional
        Default: sampled, 12-17 from C7, Th1 or Th2.
    fractures : sequence of (deformity, grade), optional
        ``("wedge" | "biconcave" | "crush", 1-3)`` placed at random levels Th4-L1;
        default: sampled.
    shape : (rows, cols)
        In-plane size (the slice count follows the spine length).
    folder, series_uid : str
        Stored on the result.
    non_fracture : bool
        Place non-fracture deformities.
    first : str, optional
        The top vertebra's level (default: C7, Th1 or Th2, drawn).

    Returns
    -------
    SpineTruth
        Keypoints in voxel indices.
    """
    rows, cols = int(shape[0]), int(shape[1])
    n = int(n_vertebrae if n_vertebrae is not None else rng.integers(12, 18))
    if not 1 <= n <= 20:
        raise ValueError(f"n_vertebrae={n}: use 1-20")
    start = LEVELS.index("Th1") + int(rng.integers(-1, 2))
    if first is not None:
        start = LEVELS.index(first)
    start = min(start, len(LEVELS) - n)
    levels = LEVELS[start:start + n]
    pixel = float(rng.choice([0.703125, 0.742188, 0.78125]))
    # thin slices of 1.25 mm mostly (and always for long spines) keep the dataset small
    slice_sp = 1.25 if n >= 14 else float(rng.choice([1.0, 1.25], p=[0.3, 0.7]))
    scale = float(rng.normal(1.0, 0.05))

    if fractures is None:
        fractures = sample_fractures(rng)
    fractured = any(int(g) > 0 for _, g in fractures)
    # patient: bone density (lower with fractures) and degenerative tendency
    bone, osteoporotic = _patient_bone(fractured, rng)
    p_osteophyte = float(rng.choice(_P_OSTEOPHYTE, p=_P_OSTEOPHYTE_PATIENT))
    acquisition = draw_acquisition(rng)

    lo = max(levels.index("Th4") if "Th4" in levels else 0, 1)
    hi = levels.index("L1") if "L1" in levels else n - 2
    candidates = list(range(lo, max(hi, lo) + 1))
    chosen = rng.choice(candidates, size=min(len(fractures), len(candidates)), replace=False)
    fracture_at = {int(i): f for i, f in zip(chosen, fractures)}

    theta_top = math.radians(rng.normal(28, 4))     # tangent angle: + means descending posteriorly
    theta_bottom = math.radians(rng.normal(-22, 4))
    specs, total = [], 0.0
    for i, level in enumerate(levels):
        k = level_index(level, LEVELS.index("Th1")) - LEVELS.index("Th1")   # 0 at Th1
        base_h = scale * (15.0 + 0.8 * k + (1.5 if k > 11 else 0.0)) * rng.normal(1, 0.03)
        depth = scale * (16.0 + 1.0 * k + (1.5 if k > 11 else 0.0)) * rng.normal(1, 0.03)
        disc = scale * (3.8 + 0.15 * k + (2.5 if k > 11 else 0.0))
        wedge, concave = _normal_shape(level, rng)
        h_post = base_h
        h_ant = base_h * wedge
        h_mid = base_h * concave
        deformity, grade, detail = "normal", 0, {}
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
        elif non_fracture:
            deformity, detail = _non_fracture(k, rng, p_osteophyte)
            if deformity == "short_vertebra":
                f = detail["height_factor"]
                h_ant, h_mid, h_post = h_ant * f, h_mid * f, h_post * f
        specs.append((level, (h_ant, h_mid, h_post), depth, disc, grade, deformity, detail))
        total += max(h_ant, h_post) + disc

    # walk down the sagittal curve (y: posterior mm, z: feet mm)
    margin = 14.0
    n_slices = int(math.ceil((total + 2 * margin) / slice_sp))
    pos = np.array([0.0, margin])
    run = 0.0
    sagittal, outline = [], []
    for level, (h_a, h_m, h_p), depth, disc, grade, deformity, detail in specs:
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
        outline.append((level, grade, deformity, detail))
        pos = low0 + t * disc
        run += h_max + disc
    pts_mm = np.stack(sagittal)                     # (n, 6, 2) y, z
    centre_y = pts_mm[..., 0].mean()
    target_y = rows * pixel * rng.uniform(0.60, 0.66)
    pts_mm[..., 0] += target_y - centre_y
    col = cols / 2 + rng.normal(0, 4)
    vertebrae = []
    for p, (level, grade, deformity, detail) in zip(pts_mm, outline):
        vox = np.column_stack([p[:, 0] / pixel, np.full(6, col), p[:, 1] / slice_sp])
        vertebrae.append(VertebraTruth(vox, level, int(grade), deformity,
                                       detail=dict(detail)))
    geometry = Geometry((rows, cols, n_slices), (pixel, pixel, slice_sp),
                        (-pixel * cols / 2, -pixel * rows / 2 + 30.0, -40.0))
    torso_scale = float(rng.normal(1.0, 0.05))
    patient = draw_patient(rng)
    # the patient off-centre (row, col) mm: up to 30 mm in a full field of view
    limit = min(30.0, 0.08 * min(rows, cols) * pixel)
    shift = np.clip(rng.normal(0.0, limit / 3, 2), -limit, limit)
    vertebrae = [VertebraTruth(v.points + [shift[0] / pixel, shift[1] / pixel, 0.0], v.level,
                               v.grade, v.deformity, detail=v.detail) for v in vertebrae]
    return SpineTruth(tuple(vertebrae), geometry, bone, osteoporotic, folder, series_uid,
                      torso_scale=torso_scale, shift_mm=(float(shift[0]), float(shift[1])),
                      **acquisition, **patient)


def _reader_points(v: VertebraTruth, sp: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One reader's six points of ``v`` (voxels) under the per-level noise model."""
    p = v.points[:, [0, 2]] * sp[[0, 2]]                     # (6, 2) row, slice in mm
    axis = (p[1] - p[0]) + (p[5] - p[4])                      # height direction (down)
    axis /= np.linalg.norm(axis) or 1.0
    along = np.array([axis[1], -axis[0]])
    hp = float(np.linalg.norm(p[5] - p[4]))
    row = _shape_row(v.level)
    sigma = 0.5 * (row[7] + row[8]) * hp / 2                 # per point, along the height
    shift = rng.normal(0.0, _ENDPLATE_SHIFT * hp, 2)          # upper, lower endplate
    noise = (rng.normal(0.0, sigma, 6) + shift[[0, 1, 0, 1, 0, 1]])[:, None] * axis \
        + rng.normal(0.0, _ALONG_MM, 6)[:, None] * along
    out = v.points.copy()
    out[:, 0] += noise[:, 0] / sp[0]
    out[:, 2] += noise[:, 1] / sp[2]
    return out


def sample_readings(truth: SpineTruth, rng: np.random.Generator, *, n_experts: int | None = None,
                    noise_mm: float | None = None, p_missing_end: float = 0.2
                    ) -> dict[str, tuple[Vertebra, ...]]:
    """Simulate expert readings of the annotated vertebrae of ``truth``.

    The default reader noise is the real readers' per level (:data:`_NORMAL_SHAPE`,
    :data:`_ENDPLATE_SHIFT`, :data:`_ALONG_MM`).

    Parameters
    ----------
    truth : SpineTruth
    rng : numpy.random.Generator
    n_experts : int, optional
        Default: 2 or 3, sampled from ``expert1..expert4``.
    noise_mm : float, optional
        Instead: independent Gaussian errors of this SD (mm) per point, in row and slice.
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
        first = int(len(annotated) > 4 and rng.random() < p_missing_end)
        last = len(annotated) - int(len(annotated) > 4 and rng.random() < p_missing_end)
        items = []
        for v in annotated[first:last]:
            if noise_mm is None:
                pts = _reader_points(v, sp, rng)
            else:
                pts = v.points.copy()
                pts[:, 0] += rng.normal(0, noise_mm, 6) / sp[0]
                pts[:, 2] += rng.normal(0, noise_mm, 6) / sp[2]
            pts[:, 1] = float(np.round(v.points[:, 1].mean() + rng.normal(0, 1.5)))
            # a reader clicks inside the image: keep the noisy points in the volume
            np.clip(pts, 0, np.asarray(truth.geometry.shape, dtype=float) - 1, out=pts)
            items.append(Vertebra(pts, v.level))
        readings[str(name)] = tuple(items)
    return readings


def _folder_spacing(folder: str) -> tuple[float, float, float]:
    digest = hashlib.sha256(folder.encode()).digest()
    pixel = (0.703125, 0.742188, 0.78125)[digest[0] % 3]
    return (pixel, pixel, 1.0)


def _group_vertebrae(annotation: Annotation, expert: str | None = None) -> list[np.ndarray]:
    """Per vertebra (head -> feet), the stacked readings (k, 6, 3) of the experts who marked it
    (paired by :func:`vfs_utils.readings.match_vertebrae`; with ``expert``, only theirs)."""
    if not any(annotation.experts.values()):
        raise AnnotationError(f"{annotation.path or annotation.folder}: no expert marked any "
                              "vertebra; the phantom needs at least one reading.")
    frame = match_vertebrae(read_annotations([annotation]))
    if expert is not None:
        frame = frame[frame["expert"] == expert]
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
                          extra_points: np.ndarray | None = None,
                          expert: str | None = None) -> SpineTruth:
    """The spine of a real annotation: one vertebra per mean of the experts' readings.

    Touching endplates are pulled apart (at most 2 mm each) to leave a disc; one
    unannotated vertebra continues the spine above when there is room, two below (the
    field of view reaches half a vertebra beyond them, as a chest CT covers the lung bases).

    Parameters
    ----------
    annotation : Annotation or path-like
        A v1 or v2 annotation.
    spacing : (row, col, slice) mm, optional
        Default: chosen from a hash of the folder.
    shape : (rows, cols)
    margin : int
        Slices below the largest annotated slice index.
    extra_points : ndarray (k, 3), optional
        Further points the volume must contain.
    expert : str, optional
        Render this expert's reading instead of the mean, so that the other experts'
        readings stay independent of the image. The volume still holds every point.

    The bone density follows the rendered reading's QM grade >= 2 at the label levels
    (seeded by the folder name), never the other experts' readings.

    Returns
    -------
    SpineTruth
        With the annotation's folder, SeriesInstanceUID and readings; grades unknown.

    Raises
    ------
    AnnotationError
        ``expert`` read no vertebra here.
    """
    ann = annotation if isinstance(annotation, Annotation) else load_annotation(annotation)
    sp = np.asarray(spacing if spacing is not None else _folder_spacing(ann.folder), float)
    if expert is not None and not ann.experts.get(expert):
        raise AnnotationError(f"{ann.path or ann.folder}: expert {expert!r} has no vertebra "
                              f"reading here (experts with readings: "
                              f"{sorted(e for e, vs in ann.experts.items() if vs)}); pass one "
                              "of them as expert=, or None for the mean of all readings.")
    groups = _group_vertebrae(ann, expert)
    means = _separate([g.mean(axis=0) for g in groups], sp)
    levels: list[str | None] = [None] * len(groups)
    readers = {expert: ann.experts[expert]} if expert is not None else ann.experts
    if all(v.level for vs in readers.values() for v in vs):
        levels = sorted(dict.fromkeys(v.level for vs in readers.values() for v in vs),
                        key=lambda x: level_index(x, 99))
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
    if len(means) >= 2:   # continue the spine one vertebra above and two below: a chest
        step = means[-1] - means[-2]       # CT covers the lung bases and what lies below them
        top = means[0] - (means[1] - means[0])

        def named(k: int):   # the level k vertebrae beyond the reading's end (None: unknown)
            i = LEVELS.index(levels[0 if k < 0 else -1]) + k if levels[0] else -1
            return LEVELS[i] if 0 <= i < len(LEVELS) else None

        if top[:, 2].max() > 0:
            vertebrae.insert(0, VertebraTruth(top, named(-1), annotated=False))
        for k in (1, 2):
            vertebrae.append(VertebraTruth(means[-1] + k * step, named(k), annotated=False))
        n_slices = max(n_slices, int(math.ceil((means[-1] + 2.5 * step)[:, 2].max())) + 1)
    geometry = Geometry((rows, cols, n_slices), tuple(float(s) for s in sp),
                        (-sp[1] * cols / 2, -sp[0] * rows / 2 + 30.0, -40.0))
    # the bone density follows the rendered reading (all levels in v1, without level names)
    grades = genant_grade(within_loss(heights(np.stack(means), sp)))
    at_labels = np.array([lvl is None or lvl in LABEL_LEVELS for lvl in levels])
    deformed = bool((grades[at_labels] >= 2).any())
    digest = hashlib.sha256(ann.folder.encode()).digest()
    rng = np.random.default_rng([int.from_bytes(digest[:4], "little"), 5])
    bone, osteoporotic = _patient_bone(deformed, rng)
    return SpineTruth(tuple(vertebrae), geometry, bone, osteoporotic, ann.folder,
                      ann.series_uid, dict(ann.experts), 1.0, **draw_patient(rng))


"""From a CT volume to vertebrae with six keypoints and level names: :func:`detect`.

The result's ``annotation`` is an :class:`~vfs_utils.annotation.Annotation` with one
reader, ``"model"``, in the annotation's own voxel convention (``[row, col, slice]`` of
the volume as :func:`vfs_utils.dicom.load_series` returns it), so
:func:`read_annotations`, ``morphometry_table``, the agreement functions and the
classifier take it unchanged. It holds only whole vertebrae: one with a point outside
the volume (cut by the field of view) is listed in ``partial`` and not graded.

Levels are named from the ribs (:mod:`._levels`), else from the lung base (a less
reliable fallback), else not at all: then the annotation is stored in the v1 schema
(six points, no level), which :func:`~vfs_utils.annotation.load_annotation` reads back
with ``level`` None. ``warnings`` says when the result should not be trusted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._fs import folder_name_problem, study_dir
from ..annotation import Annotation, Vertebra, read_annotations
from ..dicom import scan
from ..errors import AnnotationError, DataNotFoundError, SeriesError
from ._decode import MIN_DIST_PX, THRESHOLD, decode, refine
from ._input import SagittalInput, lung_profile, sagittal_input
from ._levels import name_levels, rib_slices
from ._onnx import run_model
from ._spine import SpinePath, find_spine

__all__ = ["PIXEL_MM_RANGE", "SLICE_MM_RANGE", "VERTEBRA_MM", "Detection", "detect",
           "name_levels", "thin_series", "vertebrae_from_input"]

#: In-plane pixel sizes (mm) the network was trained on; outside them ``detect`` warns.
PIXEL_MM_RANGE = (0.5, 1.0)
#: Slice spacings (mm) the network was trained on.
SLICE_MM_RANGE = (0.5, 3.0)
#: Craniocaudal length of a vertebra with its disc (mm), thoracolumbar.
VERTEBRA_MM = (25.0, 30.0)
#: Two detections closer than this fraction of the median neighbour gap are one vertebra
#: (chosen on the real development CT, checked on the validation patients).
CROWDED = 0.55
_WEAK_CANAL = 0.3         # a canal on fewer than this fraction of the column's slices: weak


@dataclass
class Detection:
    """What :func:`detect` found in one volume.

    Attributes
    ----------
    annotation : Annotation
        One reader, ``"model"``: the whole vertebrae head -> feet with six points and a
        level (v1 schema, no levels, when the levels are unknown).
    partial : tuple of Vertebra
        Vertebrae cut by the field of view (a point outside the volume): not graded.
    scores, partial_scores : ndarray
        Centre probability of each vertebra of ``annotation`` and of ``partial``.
    sagittal : SagittalInput
        The network's input and the centre line.
    heat, offsets : ndarray
        The network's output (cells of 4 input pixels).
    level_source : str
        The rule that named the levels: ``"ribs"``, ``"lung base (fallback)"`` or
        ``"unknown"``.
    spine : SpinePath
        The spine search (per-slice confidence, where a canal was found).
    span_mm : float
        Length along the slices of the bone column found.
    expected : (int, int)
        Vertebrae that span holds at 30 and 25 mm per vertebra.
    warnings : list of str
        Why the result may be implausible (empty when nothing was noticed).
    """

    annotation: Annotation
    scores: np.ndarray
    sagittal: SagittalInput
    heat: np.ndarray
    offsets: np.ndarray
    level_source: str
    spine: SpinePath | None = None
    partial: tuple = ()
    partial_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    span_mm: float = 0.0
    expected: tuple[int, int] = (0, 0)
    warnings: list = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        """The vertebrae as :func:`vfs_utils.annotation.read_annotations` tables them."""
        return read_annotations([self.annotation])


def _ordered(p: np.ndarray) -> np.ndarray:
    """Each pair upper endplate (smaller slice) first, as the annotation orders them."""
    p = p.copy()
    for k in range(3):
        if p[2 * k, 2] > p[2 * k + 1, 2]:
            p[[2 * k, 2 * k + 1]] = p[[2 * k + 1, 2 * k]]
    return p


def _uncrowd(pix: np.ndarray, scores: np.ndarray):
    """Drop the weaker of two detections closer than :data:`CROWDED` times the median gap
    between neighbouring vertebrae (one vertebra seen twice), repeatedly."""
    while len(pix) > 2:
        gaps = np.diff(pix[:, :, 1].mean(axis=1))
        k = int(np.argmin(gaps))
        if gaps[k] >= CROWDED * np.median(gaps):
            break
        drop = k if scores[k] < scores[k + 1] else k + 1
        pix, scores = np.delete(pix, drop, axis=0), np.delete(scores, drop)
    return pix, scores


def vertebrae_from_input(sag: SagittalInput, shape, *, threshold: float = THRESHOLD,
                         model=None):
    """The network on one input: ``(voxels (n, 6, 3), scores (n,), partial (n,) bool)``,
    head -> feet; ``partial``: a point lies outside ``shape`` (rows, cols, slices; a None
    axis is not checked). :func:`detect` and the held-out evaluation share it."""
    heat, off = run_model(sag.image, model)
    pix, scores = decode(heat, off, threshold=threshold, min_dist=MIN_DIST_PX)
    pix, scores = _uncrowd(pix, np.asarray(scores, float))
    pix = refine(sag.image, pix)
    vox = sag.to_voxels(pix) if len(pix) else np.zeros((0, 6, 3))
    for v in vox:
        v[:, 1] = float(np.interp(v[:, 2].mean(), np.arange(len(sag.cols)), sag.cols))
    vox = np.stack([_ordered(v) for v in vox]) if len(vox) else vox
    out = np.zeros(len(vox), bool)
    for axis, n in enumerate(shape):
        if n is not None and len(vox):
            out |= ((vox[:, :, axis] < -0.5) | (vox[:, :, axis] > n - 0.5)).any(axis=1)
    return vox, np.asarray(scores, float), out, heat, off


def _trust(sp, n_found: int, path: SpinePath, source: str) -> tuple[float, tuple, list]:
    """(span mm, expected counts, warnings) of one detection."""
    found = np.nonzero(path.found)[0]
    span = float((found[-1] - found[0] + 1) * sp[2]) if len(found) else 0.0
    expected = (int(span // VERTEBRA_MM[1]), int(np.ceil(span / VERTEBRA_MM[0])))
    warn = []
    if n_found < expected[0] - 1:
        warn.append(f"{n_found} vertebrae found where the {span:.0f} mm bone column holds "
                    f"{expected[0]}-{expected[1]}: vertebrae are missing")
    for name, value, (lo, hi) in (("pixel", min(sp[0], sp[1]), PIXEL_MM_RANGE),
                                  ("pixel", max(sp[0], sp[1]), PIXEL_MM_RANGE),
                                  ("slice", sp[2], SLICE_MM_RANGE)):
        if not lo <= value <= hi:
            msg = (f"{name} spacing {value:.2f} mm is outside what the model was trained on "
                   f"({lo}-{hi} mm)")
            if msg not in warn:
                warn.append(msg)
    if len(found):
        canal = float(path.found[found[0]:found[-1] + 1].mean())
        if canal < _WEAK_CANAL:
            warn.append(f"weak bone column: a spinal canal on {canal:.0%} of its slices")
    if source == "unknown":
        warn.append("levels unknown: the ribs do not show Th12 (none seen, seen down to the "
                    "volume's end, or a count from them past C1 or S1) and no lung base "
                    "stands in (names left empty)")
    elif source != "ribs":
        warn.append(f"levels from the {source}: may be off by one")
    return span, expected, warn


def detect(volume, spacing=None, *, folder: str = "", series_uid: str = "",
           threshold: float = THRESHOLD, model=None) -> Detection:
    """Vertebrae, their six keypoints and level names in one CT volume.

    Parameters
    ----------
    volume : Volume or ndarray (rows, cols, slices)
        HU, as :func:`vfs_utils.dicom.load_series` returns it.
    spacing : (row, col, slice) mm
        Needed with a bare array (a Volume carries its own).
    folder, series_uid : str
        Stored on the returned annotation (default: empty).
    threshold : float
        Centre-probability threshold (default :data:`THRESHOLD`, chosen on validation
        patients).
    model : path, optional
        Another ONNX file (default: the shipped model).

    Raises
    ------
    NoSpineError
        The volume holds no bone column with a spinal canal.
    """
    array = getattr(volume, "array", volume)
    if spacing is None:
        spacing = getattr(volume, "spacing", None)
    if spacing is None:
        raise ValueError("detect() needs the voxel spacing: pass a Volume or spacing=")
    sp = tuple(float(s) for s in spacing)
    if array.ndim != 3:
        raise ValueError(f"detect() needs a (rows, cols, slices) volume, got shape {array.shape}")
    where = str(getattr(volume, "study_folder", "") or folder or "the volume")
    path = find_spine(array, sp, where=where)
    sag = sagittal_input(array, sp, path=path)
    vox, scores, partial, heat, off = vertebrae_from_input(sag, array.shape,
                                                           threshold=threshold, model=model)
    ribs = rib_slices(array, sp, path.rows, path.cols, hu_offset=path.hu_offset)
    lungs = lung_profile(array, sp, path.rows, path.cols, hu_offset=path.hu_offset)
    top = float(np.nonzero(path.found)[0][0])
    centres = vox[:, :, 2].mean(axis=1) if len(vox) else np.zeros(0)
    names, source = name_levels(centres, sp[2], ribs=ribs, top_slice=top,
                                bottom_slice=array.shape[2] - 1.0, lungs=lungs)
    whole = [Vertebra(v, lv) for v, lv, p in zip(vox, names, partial) if not p]
    cut = tuple(Vertebra(v, lv) for v, lv, p in zip(vox, names, partial) if p)
    version = "v2" if all(v.level is not None for v in whole) else "v1"
    if version == "v1":
        whole = [Vertebra(v.points) for v in whole]
    ann = Annotation(folder, series_uid, version, {"model": tuple(whole)})
    span, expected, warn = _trust(sp, len(vox), path, source)
    return Detection(ann, scores[~partial], sag, heat, off, source, path, cut,
                     scores[partial], span, expected, warn)


def thin_series(root, folder: str, series_uid: str | None = None) -> pd.Series:
    """The :func:`vfs_utils.dicom.scan` row of a study's thin axial series.

    With ``series_uid``, that series. Otherwise the axial series (not a LOCALIZER) with
    the smallest slice spacing and, on a tie, the most slices: the series the experts
    annotated in CTLungCa-500 (the others are 5 mm slabs and scouts).

    Raises
    ------
    DataNotFoundError
        The study folder is missing.
    SeriesError
        ``series_uid`` is not in the folder, or the folder has no axial series.
    """
    problem = folder_name_problem(folder)
    if problem is not None:
        raise AnnotationError(f"--folder {folder!r}: {problem}.")
    try:
        path = study_dir(root, folder)
    except DataNotFoundError as exc:  # study_dir's advice speaks of annotations
        raise DataNotFoundError(f"{Path(root) / 'dicom' / folder}: no such study folder; "
                                f"`vfs scan {root}` lists the study folders.") from exc
    table = scan(path)
    listing = "; ".join(f"{r.series_uid} ({r.n_slices} slices, {r.description or 'no description'})"
                        for r in table.itertuples()) or "no DICOM series"
    if series_uid is not None:
        hit = table[table["series_uid"] == series_uid]
        if hit.empty:
            raise SeriesError(f"{path}: SeriesInstanceUID {series_uid} is not there; the folder "
                              f"holds {listing}. Pass one of them as --series, or none.")
        return hit.iloc[0]
    axial = table[~table["image_type"].astype(str).str.contains("LOCALIZER")
                  & (table["n_slices"] >= 20)
                  & table["slice_spacing"].notna()]
    if axial.empty:
        raise SeriesError(f"{path}: no axial series of at least 20 slices with a slice spacing; "
                          f"the folder holds {listing}. Pass --series.")
    best = axial.sort_values(["slice_spacing", "n_slices"], ascending=[True, False],
                             kind="stable")
    return best.iloc[0]

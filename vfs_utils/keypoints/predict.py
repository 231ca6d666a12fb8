"""From a CT volume to vertebrae with six keypoints and level names: :func:`detect`.

The result is an :class:`~vfs_utils.annotation.Annotation` with one reader, ``"model"``,
in the annotation's own voxel convention (``[row, col, slice]`` of the volume as
:func:`vfs_utils.dicom.load_series` returns it), so :func:`read_annotations`,
``morphometry_table``, the agreement functions and the classifier take it unchanged.

Level names count from the anatomy the image shows: the lowest slice on which lung is
seen beside the spine is taken as the centre of Th11 (where the phantom's lungs end;
in real CT the posterior lung recess usually reaches Th12-L1, so real-CT names can be
off by one), and the vertebrae are counted up and down from the one nearest to it.
When the lungs reach the last slice, their top (taken 1.2 vertebra spacings above Th1)
is used; with no lungs in view the top vertebra is called Th1 and ``level_source`` says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._fs import folder_name_problem, study_dir
from ..annotation import LEVELS, Annotation, Vertebra, read_annotations
from ..dicom import scan
from ..errors import AnnotationError, DataNotFoundError, SeriesError
from ._decode import MIN_DIST_PX, THRESHOLD, decode, refine
from ._input import SagittalInput, lung_profile, sagittal_input
from ._onnx import run_model

__all__ = ["Detection", "detect", "name_levels", "thin_series"]

_LUNG_FRACTION = 0.02     # a slice shows lung when its lung area exceeds 2 % of the largest


@dataclass
class Detection:
    """What :func:`detect` found in one volume.

    Attributes
    ----------
    annotation : Annotation
        One reader, ``"model"``: the vertebrae head -> feet with six points and a level.
    scores : ndarray
        Centre probability of each vertebra.
    sagittal : SagittalInput
        The network's input and the centre line.
    heat, offsets : ndarray
        The network's output (cells of 4 input pixels).
    level_source : str
        How the levels were counted (``"lung base"``, ``"lung apex"``, ``"top = Th1"``).
    """

    annotation: Annotation
    scores: np.ndarray
    sagittal: SagittalInput
    heat: np.ndarray
    offsets: np.ndarray
    level_source: str

    @property
    def frame(self) -> pd.DataFrame:
        """The vertebrae as :func:`vfs_utils.annotation.read_annotations` tables them."""
        return read_annotations([self.annotation])


def name_levels(centre_slices: np.ndarray, lungs: np.ndarray | None
                ) -> tuple[list[str], str]:
    """Level names of vertebrae (centre slices head -> feet) from a lung-area profile."""
    n = len(centre_slices)
    if n == 0:
        return [], "none"
    th11, th1 = LEVELS.index("Th11"), LEVELS.index("Th1")
    step = float(np.median(np.diff(centre_slices))) if n > 1 else 25.0
    idx = None
    source = "top = Th1"
    if lungs is not None and lungs.max() > 0:
        seen = np.nonzero(lungs > _LUNG_FRACTION * lungs.max())[0]
        base, apex = int(seen.max()), int(seen.min())
        if base < len(lungs) - 2:
            k = int(np.argmin(np.abs(centre_slices - base)))
            idx = th11 - k
            source = "lung base"
        elif apex > 1:
            k = int(np.argmin(np.abs(centre_slices - (apex + 1.2 * step))))
            idx = th1 - k
            source = "lung apex"
    if idx is None:
        idx = th1
    first = int(np.clip(idx, 0, len(LEVELS) - n))
    return [LEVELS[first + k] for k in range(n)], source


def _ordered(p: np.ndarray) -> np.ndarray:
    """Each pair upper endplate (smaller slice) first, as the annotation orders them."""
    p = p.copy()
    for k in range(3):
        if p[2 * k, 2] > p[2 * k + 1, 2]:
            p[[2 * k, 2 * k + 1]] = p[[2 * k + 1, 2 * k]]
    return p


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
    """
    array = getattr(volume, "array", volume)
    if spacing is None:
        spacing = getattr(volume, "spacing", None)
    if spacing is None:
        raise ValueError("detect() needs the voxel spacing: pass a Volume or spacing=")
    sp = tuple(float(s) for s in spacing)
    if array.ndim != 3:
        raise ValueError(f"detect() needs a (rows, cols, slices) volume, got shape {array.shape}")
    sag = sagittal_input(array, sp)
    heat, off = run_model(sag.image, model)
    pix, scores = decode(heat, off, threshold=threshold, min_dist=MIN_DIST_PX)
    pix = refine(sag.image, pix)
    vertebrae = []
    centres = []
    for p in pix:
        vox = sag.to_voxels(p)
        s_mid = float(vox[:, 2].mean())
        vox[:, 1] = float(np.interp(s_mid, np.arange(len(sag.cols)), sag.cols))
        hi = np.array(array.shape, float) - 1
        vox = np.clip(vox, 0, hi)
        vertebrae.append(_ordered(vox))
        centres.append(s_mid)
    lungs = lung_profile(array, sp, sag.rows, sag.cols)
    names, source = name_levels(np.asarray(centres), lungs)
    ann = Annotation(folder, series_uid, "v2",
                     {"model": tuple(Vertebra(v, lv) for v, lv in zip(vertebrae, names))})
    return Detection(ann, scores, sag, heat, off, source)


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

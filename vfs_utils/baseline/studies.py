"""The studies of a baseline run and their labels (centres and consensus labels per vertebra).
No label comes from the reading an image was rendered from (:func:`image_expert`)."""
from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .._fs import study_dir
from .._modes import MODES
from ..annotation import LEVELS, Annotation, load_annotation, read_annotations
from ..dicom import load_series
from ..dicom._common import derived_uid
from ..errors import DataNotFoundError, VfsError
from ..matching import series_spacing
from ..morphometry import LABEL_LEVELS, consensus, morphometry_table
from ..phantom import (
    dataset_manifest,
    render_volume,
    sample_readings,
    sample_spine,
    spine_from_annotation,
    with_acquisition,
)
from ..readings import match_vertebrae

__all__ = ["LABEL_LEVELS", "PRIMARY_TARGET", "TARGETS", "Study", "image_expert",
           "load_studies", "vertebra_table"]

#: Targets: name -> lowest consensus QM grade counted as positive.
TARGETS: dict[str, int] = {"label_moderate": 2, "label_any": 1}
#: The target a lesson reports first.
PRIMARY_TARGET: str = "label_moderate"


@dataclass(frozen=True, eq=False)
class Study:
    """One study to compute features for, and where its image comes from.

    Attributes
    ----------
    annotation : Annotation
    spacing : tuple of float
        ``(row, col, slice)`` mm of the annotated series.
    kind : {"real", "phantom", "synthetic"}
        The data mode (:data:`vfs_utils._modes.MODES`).
    root : Path or None
        Dataset root the series is read from.
    truth : SpineTruth or None
        Without ``root``: the phantom spine a slab is rendered from.
    seed : int
        Seed of the rendering noise.
    expert : str or None
        The expert whose reading the image was rendered from, left out of the labels.
    """

    annotation: Annotation
    spacing: tuple[float, float, float]
    kind: str
    root: Path | None = None
    truth: object | None = None
    seed: int = 0
    expert: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MODES:
            raise ValueError(f"Study {self.annotation.folder}: unknown kind {self.kind!r}; use "
                             f"one of {MODES}")
        if self.root is None and self.truth is None:
            raise ValueError(f"Study {self.annotation.folder}: give a dataset root to read the "
                             "series from, or a phantom truth to render")

    @property
    def folder(self) -> str:
        """The study folder name."""
        return self.annotation.folder

    def image(self) -> tuple[np.ndarray, tuple[float, float, float], np.ndarray]:
        """``(array, spacing, offset)``: the series read from ``root``, or a phantom slab around
        the spine rendered in memory (``offset``: the slab's first voxel in the series)."""
        if self.root is not None:
            vol = load_series(study_dir(self.root, self.folder), self.annotation.series_uid)
            return vol.array, tuple(vol.spacing), np.zeros(3)
        box = slab_box(self.truth)
        slab = render_volume(self.truth, rng=np.random.default_rng(
            noise_seed(self.folder, self.seed)), box=box)
        return slab, tuple(self.truth.geometry.spacing), np.array([b[0] for b in box], float)


#: Half a feature patch (32 mm) on its diagonal, plus 3 mm: every patch fits in the slab.
_SLAB_MARGIN_MM = 32 * math.sqrt(2) + 3.0


def slab_box(truth, margin_mm: float = _SLAB_MARGIN_MM, lateral_mm: float = 3.5):
    """Voxel box around the annotated centres wide enough for every patch."""
    sp = np.asarray(truth.geometry.spacing, float)
    pts = np.stack([v.points.mean(axis=0) for v in truth.vertebrae if v.annotated])
    m = np.array([margin_mm, lateral_mm, margin_mm]) / sp
    lo = np.floor(pts.min(axis=0) - m).astype(int)
    hi = np.ceil(pts.max(axis=0) + m).astype(int) + 1
    shape = truth.geometry.shape
    return tuple((max(int(a), 0), min(int(b), s)) for a, b, s in zip(lo, hi, shape))


def noise_seed(folder: str, seed: int) -> list[int]:
    return [int(seed), int.from_bytes(hashlib.sha256(folder.encode()).digest()[:4], "little")]


def _root_kind(root: Path) -> str:
    """The data mode of a dataset root: a phantom build says which in its manifest."""
    manifest = dataset_manifest(root)
    if manifest is None:
        return "real"
    return "phantom" if manifest.get("mode") == "from-annotations" else "synthetic"


def _annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob("*.json"))
    if not files:
        raise DataNotFoundError(f"{path}: no *.json annotation files; pass a folder of "
                                "<Folder>.json files (see `vfs fetch`) or a DataSource.")
    return files


def _image_studies(files: list[Path], root: Path, seed: int, kind: str) -> list[Study]:
    studies, missing = [], []
    for f in files:
        ann = load_annotation(f)
        try:
            study_dir(root, ann.folder)
            sp = series_spacing(root, ann.folder, ann.series_uid)
        except DataNotFoundError:
            missing.append(ann.folder)
            continue
        studies.append(Study(ann, tuple(float(s) for s in sp), kind, Path(root), None, seed))
    if missing:
        warnings.warn(f"{root}: {len(missing)} annotated studies are not in this dataset "
                      f"(first: {missing[0]}); they are left out.", stacklevel=3)
    return studies


def image_expert(annotation: Annotation) -> str | None:
    """The expert a phantom of ``annotation`` is rendered from: the one with the most
    readings (name order on a tie); None when fewer than two experts read the study."""
    counts = {e: len(vs) for e, vs in annotation.experts.items() if vs}
    if len(counts) < 2:
        return None
    return sorted(counts, key=lambda e: (-counts[e], e))[0]


def _phantom_studies(files: list[Path], seed: int) -> list[Study]:
    studies, single = [], []
    for f in files:
        ann = load_annotation(f)
        expert = image_expert(ann)
        if expert is None:
            single.append(ann.folder)
            continue
        # a per-study acquisition (noise, blur, HU offset), as the phantom dataset draws it
        truth = with_acquisition(spine_from_annotation(ann, expert=expert),
                                 np.random.default_rng([*noise_seed(ann.folder, seed), 3]))
        studies.append(Study(ann, tuple(truth.geometry.spacing), "phantom", None, truth, seed,
                             expert))
    if single:
        warnings.warn(f"{len(single)} studies read by a single expert are left out of the "
                      f"phantom mode (first: {single[0]}): the image is rendered from one "
                      "reading and the label needs another.", stacklevel=3)
    return studies


def sampled_studies(n: int, seed: int, start: int = 0) -> list[Study]:
    studies = []
    for i in range(start, start + n):
        folder = f"SAMPLED{seed:04d}-{i + 1:03d}_PHANTOM"
        uid = derived_uid("vfs-tutorials baseline", folder)
        truth = sample_spine(np.random.default_rng([seed, 7919, i]), folder=folder,
                             series_uid=uid)
        readings = sample_readings(truth, np.random.default_rng([seed, 7919, i, 1]))
        ann = Annotation(folder, uid, "v2", readings)
        studies.append(Study(ann, tuple(truth.geometry.spacing), "synthetic", None, truth,
                             seed))
    return studies


def load_studies(source, *, root: str | os.PathLike | None = None,
                 min_studies: int | None = None, seed: int = 0,
                 limit: int | None = None) -> list[Study]:
    """The studies a baseline run uses, and where each image comes from.

    Parameters
    ----------
    source : DataSource, path-like or sequence of Study
        A :class:`~vfs_utils.tutorial.DataSource` (its v2 annotations and, in the
        ``real`` and ``synthetic`` modes, its images), a folder of annotation files (or
        one file), or studies (returned as they are).
    root : path-like, optional
        Read the images from this dataset root; without it, or for a phantom build,
        phantoms are rendered in memory from one reading each (:func:`image_expert`).
    min_studies : int, optional
        Top up with sampled phantom spines to this many studies (default: 40 for a
        ``synthetic`` DataSource, else 0).
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
    kind = None
    if root is not None:
        kind = mode if mode is not None else _root_kind(Path(root))
    if kind is not None and kind != "phantom":
        studies = _image_studies(files, Path(root), seed, kind)
    else:
        # a phantom build on disk is rendered from the mean of ALL readings: circular against
        # labels from those readings, so render again, in memory, from one reading each
        studies = _phantom_studies(files, seed)
    missing = int(min_studies or 0) - len(studies)
    if missing > 0:
        studies += sampled_studies(missing, seed)
    return studies


def vertebra_table(annotations: Annotation | Sequence[Annotation], spacing, *,
                   exclude: Mapping[str, str | None] | None = None,
                   levels: Sequence[str] | None = LABEL_LEVELS) -> pd.DataFrame:
    """One row per vertebra: centre and consensus labels, for one or many annotations.

    Parameters
    ----------
    annotations : Annotation or sequence of Annotation
    spacing : (row, col, slice) mm, or mapping folder -> (row, col, slice)
        Voxel spacing of the annotated series (for the heights behind the grades).
    exclude : mapping folder -> expert, optional
        :attr:`Study.expert`: left out of the labels; only the vertebrae it marked are listed.
    levels : sequence of str or None
        The label levels, marked in column ``in_levels`` (None: every vertebra).

    Returns
    -------
    DataFrame
        Annotations in the given order, each head -> feet: ``folder, series_uid,
        vertebra_id, level, image_expert, n_experts, experts``, ``centre_row,
        centre_col, centre_slice`` (voxels), ``in_levels``, ``grade`` (the label readers'
        consensus QM grade, Int64, <NA> without one) and the :data:`TARGETS` booleans.
    """
    anns = [annotations] if isinstance(annotations, Annotation) else list(annotations)
    frame = match_vertebrae(read_annotations(anns))
    if frame.empty:
        names = ", ".join(str(a.path or a.folder) for a in anns[:3])
        raise VfsError(f"{names}: no vertebra readings; the baseline needs at least one "
                       "expert reading per study.")
    if not isinstance(spacing, Mapping):
        spacing = tuple(float(s) for s in spacing)
    if levels is not None:
        unknown = sorted(set(levels) - set(LEVELS))
        if unknown:
            raise ValueError(f"vertebra_table: unknown level names {unknown}; use names of "
                             "vfs_utils.annotation.LEVELS such as 'Th4' or 'L1', or None")
    table = morphometry_table(frame, spacing=spacing)
    exclude = {k: v for k, v in (exclude or {}).items() if v is not None}
    excluded = pd.Series([exclude.get(f) for f in table["folder"]], index=table.index,
                         dtype=object)
    is_image = (table["expert"] == excluded).to_numpy(bool)
    keys = ["file", "vertebra_id"]
    # every vertebra of the image: those the image's expert marked, or every one read
    everyone = consensus(table)
    everyone = everyone[[c for c in (*keys, "folder", "series_uid", "level", "centre_row",
                                     "centre_slice") if c in everyone.columns]]
    col = table.groupby(keys, sort=False)["centre_col"].mean()
    marked = pd.MultiIndex.from_frame(table.loc[is_image, keys].drop_duplicates())
    keep = (~everyone["folder"].isin(list(exclude)).to_numpy(bool)
            | pd.MultiIndex.from_frame(everyone[keys]).isin(marked))
    everyone = everyone[keep]
    others = table[~is_image]
    if others.empty:
        label = pd.DataFrame(columns=[*keys, "n_experts", "experts", "grade"])
    else:
        label = consensus(others)[[*keys, "n_experts", "experts", "grade"]]
    cons = everyone.merge(label, on=keys, how="left")
    idx = pd.MultiIndex.from_frame(cons[keys])
    out = pd.DataFrame({
        "folder": cons["folder"].to_numpy(dtype=object),
        "series_uid": cons["series_uid"].to_numpy(dtype=object),
        "vertebra_id": cons["vertebra_id"].to_numpy(),
        "level": (cons["level"].to_numpy(dtype=object) if "level" in cons
                  else np.full(len(cons), None, dtype=object)),
        "image_expert": cons["folder"].map(exclude).astype(object).where(
            cons["folder"].isin(list(exclude)), None).to_numpy(dtype=object),
        "n_experts": cons["n_experts"].fillna(0).astype(int).to_numpy(),
        "experts": cons["experts"].fillna("").to_numpy(dtype=object),
        "centre_row": cons["centre_row"].to_numpy(float),
        "centre_col": col.reindex(idx).to_numpy(float),
        "centre_slice": cons["centre_slice"].to_numpy(float),
    })
    out["in_levels"] = (out["level"].isin(list(levels)).to_numpy(bool) if levels is not None
                        else np.ones(len(out), bool))
    out["grade"] = pd.array(cons["grade"].astype("Float64").round(), dtype="Int64")
    for name, k in TARGETS.items():
        out[name] = (out["grade"] >= k).astype("boolean")
    rank = {a.folder: i for i, a in enumerate(anns)}
    out["_study"] = out["folder"].map(rank)
    return (out.sort_values(["_study", "centre_slice"], kind="stable").drop(columns="_study")
            .reset_index(drop=True))

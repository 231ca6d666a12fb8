"""The studies of a baseline run and their labels: :class:`Study`, :func:`load_studies`,
:func:`vertebra_table` (centres and consensus labels per vertebra), :data:`TARGETS`.

A study's ``kind`` is the data mode it comes from, in the words of
:mod:`vfs_utils.tutorial`: ``real`` (a series read from a dataset root), ``phantom``
(a real annotation over a phantom rendered from it) or ``synthetic`` (a sampled
phantom spine with simulated readings, or a series of the synthetic dataset).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.uid import generate_uid

from .._fs import study_dir
from .._modes import MODES
from ..annotation import Annotation, load_annotation, read_annotations
from ..errors import DataNotFoundError, VfsError
from ..matching import match_vertebrae, series_spacing
from ..morphometry import consensus, morphometry_table
from ..phantom import dataset_manifest, sample_readings, sample_spine, spine_from_annotation

__all__ = ["KINDS", "TARGETS", "Study", "load_studies", "vertebra_table"]

#: Targets: name -> lowest consensus grade counted as positive.
TARGETS: dict[str, int] = {"label_any": 1, "label_moderate": 2}
#: Data modes a study can come from (the words of :mod:`vfs_utils.tutorial`).
KINDS: tuple[str, ...] = MODES
# Names of earlier versions, still accepted by Study.
_OLD_KINDS = {"image": "real", "sampled": "synthetic"}


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
    kind : {"real", "phantom", "synthetic"}
        The data mode (:data:`KINDS`): ``real`` images with real readings;
        ``phantom``: real readings over a phantom rendered from them; ``synthetic``:
        phantom images with simulated readings. ``"image"`` and ``"sampled"``, the
        names of earlier versions, are read as ``real`` and ``synthetic``.
    root : Path or None
        Dataset root: the series is read from it with
        :func:`~vfs_utils.dicom.load_series` (any mode, e.g. the synthetic dataset).
    truth : SpineTruth or None
        Without ``root``: the phantom spine a slab is rendered from.
    seed : int
        Seed of the rendering noise.
    """

    annotation: Annotation
    spacing: tuple[float, float, float]
    kind: str
    root: Path | None = None
    truth: object | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        kind = _OLD_KINDS.get(self.kind, self.kind)
        if kind not in KINDS:
            raise ValueError(f"Study {self.annotation.folder}: unknown kind {self.kind!r}; use "
                             f"one of {KINDS}")
        if self.root is None and self.truth is None:
            raise ValueError(f"Study {self.annotation.folder}: give a dataset root to read the "
                             "series from, or a phantom truth to render")
        object.__setattr__(self, "kind", kind)

    @property
    def folder(self) -> str:
        """The study folder name."""
        return self.annotation.folder


def _noise_seed(folder: str, seed: int) -> list[int]:
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


def _phantom_studies(files: list[Path], seed: int) -> list[Study]:
    studies = []
    for f in files:
        ann = load_annotation(f)
        truth = spine_from_annotation(ann)
        studies.append(Study(ann, tuple(truth.geometry.spacing), "phantom", None, truth, seed))
    return studies


def _sampled_studies(n: int, seed: int, start: int = 0) -> list[Study]:
    studies = []
    for i in range(start, start + n):
        folder = f"SAMPLED{seed:04d}-{i + 1:03d}_PHANTOM"
        uid = generate_uid(prefix=None, entropy_srcs=["vfs-tutorials baseline", folder])
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
    if root is not None:
        kind = mode if mode is not None else _root_kind(Path(root))
        studies = _image_studies(files, Path(root), seed, kind)
    else:
        studies = _phantom_studies(files, seed)
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

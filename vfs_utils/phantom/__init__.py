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

The anatomy and its attenuations are listed in :mod:`.render`. Normal vertebrae have
the real annotations' per-level wedging and endplate concavity, and simulated readers
their per-level noise.

Three modules: :mod:`.spine` (geometry, truths, sampling, the spine of an annotation),
:mod:`.render` (the renderer) and :mod:`.dataset` (one study's series, the dataset,
its manifest and cache key). Every public name is re-exported here.
"""
from __future__ import annotations

from .dataset import (
                      DEFAULT_STUDIES,
                      PHANTOM_VERSION,
                      build_dataset,
                      cache_key,
                      dataset_manifest,
                      read_manifest,
                      write_study,
)
from .render import render_sagittal_slab, render_volume, with_acquisition
from .spine import (
                      HU,
                      NON_FRACTURE_DEFORMITIES,
                      Geometry,
                      SpineTruth,
                      VertebraTruth,
                      sample_readings,
                      sample_spine,
                      spine_from_annotation,
)

__all__ = [
    "DEFAULT_STUDIES",
    "HU",
    "NON_FRACTURE_DEFORMITIES",
    "Geometry",
    "VertebraTruth",
    "SpineTruth",
    "sample_spine",
    "sample_readings",
    "spine_from_annotation",
    "with_acquisition",
    "render_volume",
    "render_sagittal_slab",
    "write_study",
    "build_dataset",
    "PHANTOM_VERSION",
    "cache_key",
    "dataset_manifest",
    "read_manifest",
]

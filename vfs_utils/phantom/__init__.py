"""A synthetic spine CT phantom and the demo dataset built from it.

Phantom chest CT series whose vertebral bodies pass exactly through keypoints (sampled,
or a real annotation's). Conventions are the annotation's: volumes ``(rows, cols, slices)``
(row anterior -> posterior, col right -> left, slice head -> feet), points ``[row, col,
slice]`` voxels, spacing mm; a vertebra is six points (anterior, middle, posterior pairs,
upper endplate first). Modules :mod:`.spine`, :mod:`.render`, :mod:`.synth`,
:mod:`.dataset`; every public name is re-exported here.
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
from .synth import random_appearance

__all__ = ["DEFAULT_STUDIES", "HU", "NON_FRACTURE_DEFORMITIES", "Geometry", "VertebraTruth",
           "SpineTruth", "sample_spine", "sample_readings", "spine_from_annotation",
           "with_acquisition", "render_volume", "render_sagittal_slab", "write_study",
           "build_dataset", "random_appearance", "PHANTOM_VERSION", "cache_key",
           "dataset_manifest", "read_manifest"]

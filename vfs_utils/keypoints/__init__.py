"""Keypoints from the image: vertebrae and their six points found in a CT volume.

The step the companion papers teach a network (Pisov et al. 2020; Zakharov et al. 2023):
an anchor-free detector on a 2D sagittal input that follows the spine. Here:

1. :func:`sagittal_input`: the spine's centre line on every slice (a bone column with a
   spinal canal, robust to HU offsets and contrast blood; its row and column: a
   scoliotic spine keeps its course), and a straightened sagittal image along it on a
   fixed 1 mm grid;
2. the network (a small CNN, CenterNet-like): a vertebra-centre heatmap and twelve
   offsets to the six keypoints, run from the ONNX file shipped with the package
   through onnxruntime (:func:`run_model`); trained with PyTorch (the ``train`` extra,
   ``make model``);
3. :func:`decode`: peaks of the heatmap -> vertebrae with six points; :func:`refine`:
   each endplate point moved to the bone edge along its height line (within 2 mm);
4. :func:`detect`: the whole chain, back to ``[row, col, slice]`` voxel indices of the
   volume, level names counted from the ribs (Th12: the lowest rib-bearing vertebra),
   as an :class:`~vfs_utils.annotation.Annotation` with one reader ``"model"``, the
   vertebrae cut by the field of view apart, and warnings when it should not be trusted.

The shipped model is trained on phantom images rendered from the CC BY-NC 4.0 expert
annotations, so the model file is CC BY-NC 4.0 too (see ``model/keypoints.json``).
Its positives are QM morphometric deformities, never fracture diagnoses. Training
(:mod:`.training`, :func:`variant`, :func:`render_example`) needs PyTorch.
"""
from __future__ import annotations

from ._data import HELDOUT_COUNT, render_example, split, synthetic_truth, variant
from ._decode import OFFSET_SCALE, STRIDE, THRESHOLD, decode, refine
from ._input import SagittalInput, lung_profile, sagittal_input, spine_centreline
from ._levels import name_levels, rib_slices
from ._onnx import METADATA_FILE, MODEL_FILE, model_metadata, run_model
from ._spine import SpinePath, find_spine
from .predict import Detection, detect

__all__ = [
    "HELDOUT_COUNT",
    "METADATA_FILE",
    "MODEL_FILE",
    "OFFSET_SCALE",
    "STRIDE",
    "THRESHOLD",
    "Detection",
    "SagittalInput",
    "SpinePath",
    "decode",
    "detect",
    "find_spine",
    "lung_profile",
    "model_metadata",
    "name_levels",
    "refine",
    "render_example",
    "rib_slices",
    "run_model",
    "sagittal_input",
    "spine_centreline",
    "split",
    "synthetic_truth",
    "variant",
]

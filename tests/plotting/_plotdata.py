"""Small volumes and readings the plotting tests draw (imported by the test modules)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from vfs_utils.annotation import Annotation, Vertebra, read_annotations
from vfs_utils.dicom import Volume

SPACING = (0.8, 0.7, 1.25)  # row, col, slice mm: deliberately all different
SHAPE = (120, 40, 160)


def make_volume(array: np.ndarray, spacing=SPACING) -> Volume:
    return Volume(array=array, spacing=spacing, affine=np.eye(4), headers=[],
                  series_uid="2.25.1", study_folder=Path("."))


def _vertebra(row: float, col: float, sl: float, level: str | None) -> Vertebra:
    pts = [[row - 10, col, sl - 6], [row - 10, col, sl + 6], [row, col, sl - 6],
           [row, col, sl + 6], [row + 10, col, sl - 6], [row + 10, col, sl + 6]]
    return Vertebra(np.array(pts, dtype=float), level)


def make_frame(n_experts: int = 3, n_vertebrae: int = 5, levels: bool = True):
    experts = {}
    for e in range(n_experts):
        experts[f"expert{e + 1}"] = tuple(
            _vertebra(60 + e * 0.5, 20 + (k % 2), 25 + 25 * k,
                      f"Th{k + 3}" if levels else None) for k in range(n_vertebrae))
    ann = Annotation("F", "2.25.1", "v2" if levels else "v1", experts, None)
    return read_annotations(ann)

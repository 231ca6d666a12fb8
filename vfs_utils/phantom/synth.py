"""Random appearance of a phantom render, in the manner of SynthSeg (Billot et al. 2023):
every image gets its own tissue contrasts and acquisition, so that a network trained on it
learns shape, not grey values.

==========  ================  ===========================================================
key         range             meaning
==========  ================  ===========================================================
air         -1000 .. -900     tissue mean HU (``tissue_hu``), drawn uniformly per image
lung        -950 .. -650
fat         -160 .. -50
soft        0 .. 80           mediastinum, skin
muscle      10 .. 90
abdomen     10 .. 90
liver       30 .. 160
blood       20 .. 450         non-contrast to arterial contrast
csf         -10 .. 40
disc        40 .. 140
cartilage   60 .. 250
cancellous  60 .. 350         vertebral and rib marrow
cortical    350 .. 1500
arch        250 .. 900        posterior elements
rib         300 .. 1200       rib cortex
sternum     200 .. 700
noise       5 .. 60           noise SD (HU)
blur        0.3 .. 2.0        in-plane Gaussian blur (pixels)
hu_offset   -80 .. 80         constant HU offset
bias_hu     0 .. 40           amplitude of the smooth additive bias field (HU)
==========  ================  ===========================================================
"""
from __future__ import annotations

import numpy as np

__all__ = ["APPEARANCE_RANGES", "TISSUE_RANGES", "random_appearance"]

#: Tissue -> (low, high) mean HU drawn by :func:`random_appearance` (the table above).
TISSUE_RANGES: dict[str, tuple[float, float]] = {
    "air": (-1000.0, -900.0), "lung": (-950.0, -650.0), "fat": (-160.0, -50.0),
    "soft": (0.0, 80.0), "muscle": (10.0, 90.0), "abdomen": (10.0, 90.0),
    "liver": (30.0, 160.0), "blood": (20.0, 450.0), "csf": (-10.0, 40.0),
    "disc": (40.0, 140.0), "cartilage": (60.0, 250.0), "cancellous": (60.0, 350.0),
    "cortical": (350.0, 1500.0), "arch": (250.0, 900.0), "rib": (300.0, 1200.0),
    "sternum": (200.0, 700.0),
}
#: The acquisition keys of :func:`random_appearance` -> (low, high).
APPEARANCE_RANGES: dict[str, tuple[float, float]] = {
    "noise": (5.0, 60.0), "blur": (0.3, 2.0), "hu_offset": (-80.0, 80.0), "bias_hu": (0.0, 40.0),
}


def random_appearance(rng: np.random.Generator) -> dict:
    """Keyword arguments of :func:`~vfs_utils.phantom.render_volume` for one image:
    ``tissue_hu`` (every tissue of :data:`TISSUE_RANGES`) and ``noise``, ``blur``,
    ``hu_offset``, ``bias_hu`` (:data:`APPEARANCE_RANGES`), each uniform in its range."""
    tissue = {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in TISSUE_RANGES.items()}
    out: dict = {key: float(rng.uniform(lo, hi)) for key, (lo, hi) in APPEARANCE_RANGES.items()}
    out["tissue_hu"] = tissue
    return out

"""The look every figure shares: display windows, the Okabe-Ito palette (defined here
once), expert colours and markers, grade and model colours, axis labels, and the small
helpers that turn a volume's shape and spacing into millimetres.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._fs import check_spacing

__all__ = ["ENV_STATIC_FIGURES", "GRADE_COLORS", "MODEL_COLORS", "OKABE_ITO", "WINDOWS",
           "expert_colors", "sagittal_extent"]

#: Display windows as (centre, width) in HU.
WINDOWS: dict[str, tuple[float, float]] = {
    "bone": (400.0, 1800.0),
    "soft": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
}

#: The Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), name -> hex.
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "black": "#000000",
}
# Expert colours: the Okabe-Ito colours that stand out on a grey CT (no black).
_EXPERT_PALETTE = tuple(OKABE_ITO[name] for name in (
    "orange", "sky blue", "yellow", "bluish green", "reddish purple", "vermillion", "blue"))
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
AIR_HU = -1024.0
TITLE_SIZE = 10
LABEL_X = "anterior-posterior (mm)"
LABEL_Y = "head-feet (mm)"

#: Set to ``1`` to make :func:`slice_browser` always return a static figure.
ENV_STATIC_FIGURES = "VFS_STATIC_FIGURES"


def vmin_vmax(window: str | tuple[float, float]) -> tuple[float, float]:
    """(vmin, vmax) in HU of a window name or a (centre, width) pair."""
    if isinstance(window, str):
        if window not in WINDOWS:
            raise ValueError(f"unknown window {window!r}: use one of {sorted(WINDOWS)} or a "
                             "(centre, width) pair in HU")
        centre, width = WINDOWS[window]
    else:
        centre, width = (float(v) for v in window)
        if width <= 0:
            raise ValueError(f"window width must be positive, got {width} HU")
    return centre - width / 2, centre + width / 2


def window_name(window: str | tuple[float, float]) -> str:
    if isinstance(window, str):
        return {"soft": "soft-tissue"}.get(window, window) + " window"
    centre, width = window
    return f"window {centre:g}/{width:g} HU"


def volume_spacing(volume: Any) -> tuple[float, float, float]:
    return check_spacing(volume.spacing, "volume spacing")


def column_index(volume: Any, column: float) -> int:
    cols = volume.array.shape[1]
    c = int(round(float(column)))
    if not 0 <= c < cols:
        raise ValueError(f"column {column} is outside the volume (0..{cols - 1})")
    return c


def sagittal_extent(shape: Sequence[int], spacing: Sequence[float]
                    ) -> tuple[float, float, float, float]:
    """The ``imshow`` extent (mm) of a sagittal slice of a volume.

    Parameters
    ----------
    shape, spacing : sequence
        Volume shape (rows, cols, slices) and voxel spacing (row, col, slice) in mm.

    Returns
    -------
    tuple of float
        ``(left, right, bottom, top)`` pixel edges in mm (voxel centres at
        ``row * spacing[0]``, ``slice * spacing[2]``); the head is at the top.
    """
    rows, _, slices = (int(s) for s in shape)
    dr, _, ds = (float(s) for s in spacing)
    return (-0.5 * dr, (rows - 0.5) * dr, (slices - 0.5) * ds, -0.5 * ds)


def figure_size(width_mm: float, height_mm: float, width_in: float = 5.0) -> tuple[float, float]:
    height_in = float(np.clip(width_in * height_mm / max(width_mm, 1e-6), 2.5, 9.0))
    return width_in, height_in


def expert_colors(experts: Sequence[str]) -> dict[str, str]:
    """Expert name -> Okabe-Ito hex colour; ``expert<k>`` gets colour ``k`` while distinct."""
    names = sorted(dict.fromkeys(str(e) for e in experts))
    digits = ["".join(ch for ch in n if ch.isdigit()) for n in names]
    n = len(_EXPERT_PALETTE)
    if all(digits) and len({int(d) % n for d in digits}) == len(names):
        return {name: _EXPERT_PALETTE[int(d) % n] for name, d in zip(names, digits)}
    return {name: _EXPERT_PALETTE[i % n] for i, name in enumerate(names)}


def marker_for(color: str, colors: Mapping[str, str]) -> str:
    palette = list(_EXPERT_PALETTE)
    return MARKERS[palette.index(color) % len(MARKERS)] if color in palette else "o"


#: Colour of each Genant grade 0-3 (Okabe-Ito).
GRADE_COLORS: dict[int, str] = {0: OKABE_ITO["sky blue"], 1: OKABE_ITO["orange"],
                                2: OKABE_ITO["vermillion"], 3: OKABE_ITO["reddish purple"]}
SERIES_COLORS = (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["bluish green"],
                  OKABE_ITO["reddish purple"], OKABE_ITO["vermillion"], OKABE_ITO["sky blue"])
#: Colour of each model of :mod:`vfs_utils.baseline` (its ``MODEL_NAMES`` and ``ANNOTATOR``;
#: a test keeps the names in step); other models get "reddish purple".
MODEL_COLORS: dict[str, str] = {"prevalence": OKABE_ITO["black"], "logistic": OKABE_ITO["blue"],
                                "boosting": OKABE_ITO["vermillion"],
                                "one annotator vs others": OKABE_ITO["bluish green"]}

"""Tests of vfs_utils.plotting._style: windows, palettes, expert colours."""
from __future__ import annotations

import numpy as np
import pytest
from _plotdata import SHAPE, make_volume

from vfs_utils import plotting
from vfs_utils.plotting import _style


def test_windows_are_centre_width_pairs():
    assert plotting.WINDOWS["bone"] == (400.0, 1800.0)
    assert plotting.WINDOWS["soft"] == (40.0, 400.0)
    assert plotting.WINDOWS["lung"] == (-600.0, 1500.0)


def test_window_names_and_errors():
    ax = plotting.plot_sagittal(make_volume(np.zeros(SHAPE, np.int16)), 3, window="bone")
    assert ax.get_images()[0].get_clim() == (400 - 900, 400 + 900)
    with pytest.raises(ValueError, match="unknown window"):
        plotting.plot_sagittal(make_volume(np.zeros(SHAPE, np.int16)), 3, window="brain")
    with pytest.raises(ValueError, match="outside the volume"):
        plotting.plot_sagittal(make_volume(np.zeros(SHAPE, np.int16)), SHAPE[1] + 5)


def test_expert_colours_stable_by_number():
    a = _style.expert_colors(["expert1", "expert3"])
    b = _style.expert_colors(["expert3", "expert2", "expert1"])
    assert a["expert1"] == b["expert1"] and a["expert3"] == b["expert3"]
    assert len(set(_style.expert_colors([f"expert{i}" for i in range(7)]).values())) == 7


def test_every_colour_is_from_the_one_okabe_ito_palette():
    from vfs_utils.plotting import _style

    palette = set(plotting.OKABE_ITO.values())
    assert len(palette) == 8
    assert set(_style._EXPERT_PALETTE) <= palette and "#000000" not in _style._EXPERT_PALETTE
    assert set(_style.GRADE_COLORS.values()) <= palette
    assert set(_style.expert_colors(["expert1", "expert2"]).values()) <= palette


def test_plotting_exports_figures_named_plot():
    assert all(hasattr(plotting, name) for name in plotting.__all__)
    functions = [n for n in plotting.__all__ if n.islower() and n != "slice_browser"]
    # the keypoint figures (show_*) are renamed with the keypoint modules
    assert all(n.startswith("plot_") for n in functions)

"""Tests of vfs_utils.plotting.morphometry: lesson 04's figures are drawn, titled and
labelled, without warnings, from tables made by hand."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _plotdata import SHAPE, SPACING, make_volume

from vfs_utils import plotting


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _labelled(ax) -> None:
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def test_plot_vertebra_heights_on_a_slice_in_mm():
    pts = np.array([[50, 20, 60], [50, 20, 80], [60, 20, 62], [60, 20, 78], [70, 20, 60],
                    [70, 20, 80]], float)
    ax = plotting.plot_vertebra_heights(pts, SPACING, volume=make_volume(np.zeros(SHAPE, np.int16)))
    _labelled(ax)
    assert "mm" in ax.get_xlabel() and "mm" in ax.get_ylabel()
    texts = " ".join(t.get_text() for t in ax.texts) + " ".join(
        t.get_text() for t in (ax.get_legend().get_texts() if ax.get_legend() else []))
    # Ha = 20 slices x 1.25 mm = 25 mm, Hm = 16 x 1.25 = 20 mm
    assert "25.0" in texts and "20.0" in texts


def test_plot_grade_prevalence_bars_are_the_fractions_per_level():
    table = pd.DataFrame({"level": ["Th7"] * 4 + ["Th8"] * 2, "grade": [0, 1, 1, 3, 0, 2]})
    ax = plotting.plot_grade_prevalence(table)
    _labelled(ax)
    heights = sorted(round(p.get_height(), 6) for p in ax.patches if p.get_height() > 0)
    # Th7: grade 1 in 2/4, grade 3 in 1/4; Th8: grade 2 in 1/2 (in % or as fractions)
    scale = 100 if max(heights) > 1 else 1
    assert heights == sorted([0.5 * scale, 0.25 * scale, 0.5 * scale])


def test_plot_kappa_heatmap_is_symmetric_with_the_values():
    pairwise = pd.DataFrame({"expert_a": ["e1", "e1", "e2"], "expert_b": ["e2", "e3", "e3"],
                             "kappa": [0.5, 0.7, 0.9]})
    ax = plotting.plot_kappa_heatmap(pairwise, title="Agreement")
    assert ax.get_title() == "Agreement"
    image = ax.get_images()[0].get_array()
    assert image[0, 1] == image[1, 0] == pytest.approx(0.5)
    assert image[1, 2] == pytest.approx(0.9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["e1", "e2", "e3"]

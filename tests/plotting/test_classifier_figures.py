"""Tests of vfs_utils.plotting.classifier: lesson 05's figures draw the tables they are
given (curves made by hand), titled and labelled, without warnings."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from vfs_utils import baseline, plotting
from vfs_utils.plotting import _style


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_plot_roc_draws_each_curve_and_the_operating_point():
    one = baseline.ANNOTATOR
    curves = pd.DataFrame({"model": ["logistic"] * 3 + [one] * 3 + [one],
                           "kind": ["curve"] * 6 + ["operating point"],
                           "fpr": [0, 0.2, 1, 0, 0.5, 1, 0.1],
                           "tpr": [0, 0.8, 1, 0, 0.6, 1, 0.7]})
    ax = plotting.plot_roc(curves, title="ROC, vertebra level")
    assert ax.get_title() == "ROC, vertebra level"
    assert "specificity" in ax.get_xlabel() and "sensitivity" in ax.get_ylabel()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["logistic"].get_ydata(), [0, 0.8, 1])
    assert lines["logistic"].get_color() == _style.MODEL_COLORS["logistic"]
    point = lines[f"{baseline.ANNOTATOR}: yes/no calls"]
    assert (point.get_xdata()[0], point.get_ydata()[0]) == (0.1, 0.7)


def test_plot_roc_names_the_table_it_needs():
    with pytest.raises(ValueError, match="roc_curves"):
        plotting.plot_roc(pd.DataFrame({"fpr": [0.0], "tpr": [1.0]}))


def test_plot_calibration_draws_the_bins():
    curves = pd.DataFrame({"model": ["boosting"] * 2, "mean_predicted": [0.2, 0.8],
                           "fraction_positive": [0.1, 0.9]})
    ax = plotting.plot_calibration(curves, title="Calibration")
    assert ax.get_title() == "Calibration" and ax.get_xlabel() and ax.get_ylabel()
    line = next(ln for ln in ax.get_lines() if ln.get_label() == "boosting")
    np.testing.assert_allclose(line.get_xydata(), [[0.2, 0.1], [0.8, 0.9]])


def test_plot_patches_one_titled_panel_per_patch_in_mm():
    patches = np.zeros((3, 65, 65), np.float32)
    fig = plotting.plot_patches(patches, ["a", "b", "c"], ncols=2, suptitle="Patches")
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"]
    assert all("mm" in ax.get_xlabel() and "mm" in ax.get_ylabel() for ax in shown)
    assert shown[0].get_images()[0].get_extent() == [-32.5, 32.5, 32.5, -32.5]
    assert fig.get_suptitle() == "Patches"
    with pytest.raises(ValueError, match="titles"):
        plotting.plot_patches(patches, ["a"])


def test_model_colours_cover_the_baseline_models_and_reader():
    assert set(baseline.models.MODEL_NAMES) | {baseline.ANNOTATOR} <= set(_style.MODEL_COLORS)
    assert set(_style.MODEL_COLORS.values()) <= set(plotting.OKABE_ITO.values())

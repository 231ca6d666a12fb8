"""Tests of vfs_utils.plotting.browser: the slice slider."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from _plotdata import SHAPE, make_frame, make_volume

from vfs_utils import plotting, readings
from vfs_utils.plotting import _style


def test_slice_browser_static_and_interactive(monkeypatch):
    volume = make_volume(np.zeros(SHAPE, np.int16))
    frame = make_frame()
    monkeypatch.setenv(_style.ENV_STATIC_FIGURES, "1")
    fig = plotting.slice_browser(volume, frame)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3 and all(ax.get_title() for ax in fig.axes)
    assert fig.get_suptitle()
    pytest.importorskip("ipywidgets")
    browser = plotting.slice_browser(volume, frame, interactive=True)
    assert browser.column == readings.sagittal_column(frame)
    bundle = browser._repr_mimebundle_()
    assert bundle["text/plain"] == f"SliceBrowser(column={browser.column}, columns=0..39)"
    assert bundle["image/png"].startswith(b"\x89PNG")
    browser.show(5)
    assert browser.column == 5
    assert "column 5" in browser.figure.axes[0].get_title()

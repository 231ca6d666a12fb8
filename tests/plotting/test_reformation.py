"""Tests of vfs_utils.plotting.reformation: the curved planar reformation."""
from __future__ import annotations

import numpy as np
import pytest
from _plotdata import SHAPE, SPACING, make_volume

from vfs_utils import plotting, reformation


def _bright_curve_volume(offset_mm: float):
    """A bright thin tube along row(z) = r0 + A sin(z / L), plus its centres.

    The tube is displaced ``offset_mm`` along the curve's posterior normal, so
    the reformation through the (undisplaced) curve must show it at that
    constant offset: a straight vertical line.
    """
    dr, dc, ds = SPACING
    r0, amp, length = 48.0, 10.0, 40.0  # mm
    col = 20
    z = np.linspace(0.0, SHAPE[2] * ds, 4000)
    row_mm = r0 + amp * np.sin(z / length)
    drow = amp / length * np.cos(z / length)
    norm = np.hypot(drow, 1.0)
    # tangent (drow, 1)/norm in (row, z); posterior normal (1, -drow)/norm
    tube_r = row_mm + offset_mm / norm
    tube_z = z - offset_mm * drow / norm
    rr, zz = np.meshgrid(np.arange(SHAPE[0]) * dr, np.arange(SHAPE[2]) * ds, indexing="ij")
    dist = np.full(rr.shape, np.inf)
    for tr, tz in zip(tube_r[::4], tube_z[::4]):
        dist = np.minimum(dist, np.hypot(rr - tr, zz - tz))
    array = np.full(SHAPE, -1000.0, dtype=np.float32)
    array[:, col, :] = np.where(dist < 1.0, 1000.0, -1000.0)
    cz = np.arange(20.0, 180.0, 16.0)  # centres in mm along z
    centres = np.stack([(r0 + amp * np.sin(cz / length)) / dr, np.full(cz.shape, col),
                        cz / ds], axis=1)
    return make_volume(array), centres


def test_curved_reformation_straightens_a_curve():
    offset = 6.0
    volume, centres = _bright_curve_volume(offset)
    cpr = reformation.curved_reformation(volume, centres, width_mm=30, step_mm=0.5, margin_mm=0)
    left, right, bottom, top = cpr.extent
    assert left == pytest.approx(-15.25) and right == pytest.approx(15.25)
    assert top == pytest.approx(-0.25)
    # arc length of the curve between the first and last centre, computed independently
    z = np.linspace(20.0, 164.0, 20001)
    arc = np.trapezoid(np.hypot(10.0 / 40.0 * np.cos(z / 40.0), 1.0), z)
    assert bottom - top == pytest.approx(arc, abs=1.0)
    assert cpr.image.shape[1] == 61
    u = np.linspace(left + 0.25, right - 0.25, cpr.image.shape[1])
    peak = u[np.argmax(cpr.image, axis=1)]
    assert np.all(cpr.image.max(axis=1) > 0)  # the tube is found on every line
    assert np.all(np.abs(peak - offset) <= 1.0)  # ... at the same offset: a straight line
    assert np.std(peak) < 0.5


def test_curved_reformation_centre_line_passes_through_centres():
    volume, centres = _bright_curve_volume(0.0)
    cpr = reformation.curved_reformation(volume, centres, step_mm=0.25, margin_mm=5)
    line = cpr.centre_line * np.asarray(SPACING)
    for c in centres * np.asarray(SPACING):
        assert np.min(np.linalg.norm(line - c, axis=1)) < 0.2
    with pytest.raises(ValueError, match="at least 2"):
        reformation.curved_reformation(volume, centres[:1])


def test_plot_curved_reformation_titles_and_labels():
    volume, centres = _bright_curve_volume(0.0)
    fig = plotting.plot_curved_reformation(volume, centres, width_mm=30)
    left, right = fig.axes[:2]
    assert left.get_title() and right.get_title() == "Curved planar reformation"
    assert "mm" in right.get_xlabel() and "mm" in right.get_ylabel()
    assert right.get_aspect() == 1.0 and left.get_aspect() == 1.0
    assert left.get_legend() is not None

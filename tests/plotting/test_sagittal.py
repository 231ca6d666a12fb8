"""Tests of vfs_utils.plotting.sagittal: slices, overlays, montages."""
from __future__ import annotations

import numpy as np
import pytest
from _plotdata import SHAPE, SPACING, make_frame, make_volume
from matplotlib.colors import to_hex

from vfs_utils import plotting, readings


def test_plot_sagittal_extent_aspect_and_labels():
    array = np.zeros(SHAPE, dtype=np.int16)
    array[30, 12, 50] = 1000  # one bright voxel at known mm position
    ax = plotting.plot_sagittal(make_volume(array), 12, window=(40, 400))
    image = ax.get_images()[0]
    left, right, bottom, top = image.get_extent()
    rows, _, slices = SHAPE
    assert (left, right) == pytest.approx((-0.4, (rows - 0.5) * 0.8))
    assert (top, bottom) == pytest.approx((-0.625, (slices - 0.5) * 1.25))  # head at the top
    assert ax.get_aspect() == 1.0
    assert ax.get_title() and "column 12" in ax.get_title()
    assert ax.get_xlabel() == "anterior-posterior (mm)"
    assert ax.get_ylabel() == "head-feet (mm)"
    data = np.asarray(image.get_array())
    assert data.shape == (slices, rows)
    assert np.unravel_index(np.argmax(data), data.shape) == (50, 30)
    assert image.get_clim() == (40 - 200, 40 + 200)


def test_sagittal_column_is_the_rounded_mean_and_per_vertebra_columns():
    frame = make_frame()
    expected = round(float(np.mean([20 + (k % 2) for k in range(5)])))
    assert readings.sagittal_column(frame) == expected
    per = readings.vertebra_columns(frame)
    assert list(per[:5]) == [20, 21, 20, 21, 20]
    with pytest.raises(ValueError, match="files"):
        two = frame.copy()
        two.loc[two.index[0], "file"] = "other.json"
        readings.sagittal_column(two)


def test_overlay_one_legend_entry_per_expert_colour_blind_palette():
    frame = make_frame(n_experts=3)
    ax = plotting.plot_sagittal(make_volume(np.zeros(SHAPE, np.int16)), 20)
    plotting.plot_readings(ax, frame, SPACING)
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["expert1", "expert2", "expert3"]
    colours = {to_hex(h.get_color()).upper() for h in legend.legend_handles}
    assert len(colours) == 3
    assert colours <= {c.upper() for c in plotting.OKABE_ITO.values()}
    # three segments per vertebra per expert, in mm
    segments = np.concatenate([c.get_segments() for c in ax.collections])
    assert len(segments) == 3 * 5 * 3
    first = frame.iloc[0]
    expected = [[first["row0"] * 0.8, first["slice0"] * 1.25],
                [first["row1"] * 0.8, first["slice1"] * 1.25]]
    assert any(np.allclose(s, expected) for s in segments)
    # level labels (v2)
    assert {"Th3", "Th7"} <= {t.get_text() for t in ax.texts}


def test_plot_vertebra_montage_one_axes_per_vertebra():
    frame = make_frame(n_experts=2, n_vertebrae=5)
    fig = plotting.plot_vertebra_montage(make_volume(np.zeros(SHAPE, np.int16)), frame, SPACING,
                                    size_mm=30, ncols=3)
    assert len(fig.axes) == 5
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["Th3", "Th4", "Th5", "Th6", "Th7"]
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((-15, 15))
        assert ax.get_aspect() == 1.0
    assert fig.get_suptitle()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["expert1", "expert2"]


def test_plot_vertebra_montage_v1_titles_by_index():
    frame = make_frame(n_experts=2, n_vertebrae=4, levels=False)
    fig = plotting.plot_vertebra_montage(make_volume(np.zeros(SHAPE, np.int16)), frame)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["#0", "#1", "#2", "#3"]


def test_vertebra_centres_average_over_experts():
    frame = make_frame(n_experts=3, n_vertebrae=4)
    centres = readings.vertebra_centres(frame)
    assert list(centres["level"]) == ["Th3", "Th4", "Th5", "Th6"]
    assert centres["row"].to_numpy() == pytest.approx([60.5] * 4)  # mean of 60, 60.5, 61
    assert centres["slice"].to_numpy() == pytest.approx([25, 50, 75, 100])
    assert list(centres["n_readings"]) == [3] * 4


def test_plot_readings_zoom_stays_inside_the_image():
    frame = make_frame(n_vertebrae=5)
    ax = plotting.plot_sagittal(make_volume(np.zeros(SHAPE, np.int16)), 20)
    plotting.plot_readings(ax, frame, SPACING, zoom_mm=10)
    x0, x1 = ax.get_xlim()
    y_bottom, y_top = ax.get_ylim()
    assert (x0, x1) == pytest.approx(((60 - 10) * 0.8 - 10, (61 + 10) * 0.8 + 10))
    assert y_top == pytest.approx((25 - 6) * 1.25 - 10) and y_top < y_bottom  # head on top
    plotting.plot_readings(ax, frame, SPACING, zoom_mm=500)
    assert ax.get_xlim() == pytest.approx((-0.4, (SHAPE[0] - 0.5) * 0.8))

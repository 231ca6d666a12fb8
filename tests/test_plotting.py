"""Tests of vfs_utils.plotting on small synthetic volumes with known geometry."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_hex

from vfs_utils import plotting
from vfs_utils.annotation import Annotation, Vertebra, read_annotations
from vfs_utils.dicom import Volume

matplotlib.use("Agg")

SPACING = (0.8, 0.7, 1.25)  # row, col, slice mm: deliberately all different
SHAPE = (120, 40, 160)


def _volume(array: np.ndarray, spacing=SPACING) -> Volume:
    return Volume(array=array, spacing=spacing, affine=np.eye(4), headers=[],
                  series_uid="2.25.1", study_folder=Path("."))


def _vertebra(row: float, col: float, sl: float, level: str | None) -> Vertebra:
    pts = [[row - 10, col, sl - 6], [row - 10, col, sl + 6], [row, col, sl - 6],
           [row, col, sl + 6], [row + 10, col, sl - 6], [row + 10, col, sl + 6]]
    return Vertebra(np.array(pts, dtype=float), level)


def _frame(n_experts: int = 3, n_vertebrae: int = 5, levels: bool = True):
    experts = {}
    for e in range(n_experts):
        experts[f"expert{e + 1}"] = tuple(
            _vertebra(60 + e * 0.5, 20 + (k % 2), 25 + 25 * k,
                      f"Th{k + 3}" if levels else None) for k in range(n_vertebrae))
    ann = Annotation("F", "2.25.1", "v2" if levels else "v1", experts, None)
    return read_annotations(ann)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_windows_are_centre_width_pairs():
    assert plotting.WINDOWS["bone"] == (400.0, 1800.0)
    assert plotting.WINDOWS["soft"] == (40.0, 400.0)
    assert plotting.WINDOWS["lung"] == (-600.0, 1500.0)


def test_show_sagittal_extent_aspect_and_labels():
    array = np.zeros(SHAPE, dtype=np.int16)
    array[30, 12, 50] = 1000  # one bright voxel at known mm position
    ax = plotting.show_sagittal(_volume(array), 12, window=(40, 400))
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


def test_window_names_and_errors():
    ax = plotting.show_sagittal(_volume(np.zeros(SHAPE, np.int16)), 3, window="bone")
    assert ax.get_images()[0].get_clim() == (400 - 900, 400 + 900)
    with pytest.raises(ValueError, match="unknown window"):
        plotting.show_sagittal(_volume(np.zeros(SHAPE, np.int16)), 3, window="brain")
    with pytest.raises(ValueError, match="outside the volume"):
        plotting.show_sagittal(_volume(np.zeros(SHAPE, np.int16)), SHAPE[1] + 5)


def test_sagittal_column_is_the_rounded_mean_and_per_vertebra_columns():
    frame = _frame()
    expected = round(float(np.mean([20 + (k % 2) for k in range(5)])))
    assert plotting.sagittal_column(frame) == expected
    per = plotting.vertebra_columns(frame)
    assert list(per[:5]) == [20, 21, 20, 21, 20]
    with pytest.raises(ValueError, match="files"):
        two = frame.copy()
        two.loc[two.index[0], "file"] = "other.json"
        plotting.sagittal_column(two)


def test_overlay_one_legend_entry_per_expert_colour_blind_palette():
    frame = _frame(n_experts=3)
    ax = plotting.show_sagittal(_volume(np.zeros(SHAPE, np.int16)), 20)
    plotting.overlay_readings(ax, frame, SPACING)
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


def test_expert_colours_stable_by_number():
    a = plotting.expert_colors(["expert1", "expert3"])
    b = plotting.expert_colors(["expert3", "expert2", "expert1"])
    assert a["expert1"] == b["expert1"] and a["expert3"] == b["expert3"]
    assert len(set(plotting.expert_colors([f"expert{i}" for i in range(7)]).values())) == 7


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
    return _volume(array), centres


def test_curved_reformation_straightens_a_curve():
    offset = 6.0
    volume, centres = _bright_curve_volume(offset)
    cpr = plotting.curved_reformation(volume, centres, width_mm=30, step_mm=0.5, margin_mm=0)
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
    cpr = plotting.curved_reformation(volume, centres, step_mm=0.25, margin_mm=5)
    line = cpr.centre_line * np.asarray(SPACING)
    for c in centres * np.asarray(SPACING):
        assert np.min(np.linalg.norm(line - c, axis=1)) < 0.2
    with pytest.raises(ValueError, match="at least 2"):
        plotting.curved_reformation(volume, centres[:1])


def test_show_curved_reformation_titles_and_labels():
    volume, centres = _bright_curve_volume(0.0)
    fig = plotting.show_curved_reformation(volume, centres, width_mm=30)
    left, right = fig.axes[:2]
    assert left.get_title() and right.get_title() == "Curved planar reformation"
    assert "mm" in right.get_xlabel() and "mm" in right.get_ylabel()
    assert right.get_aspect() == 1.0 and left.get_aspect() == 1.0
    assert left.get_legend() is not None


def test_vertebra_montage_one_axes_per_vertebra():
    frame = _frame(n_experts=2, n_vertebrae=5)
    fig = plotting.vertebra_montage(_volume(np.zeros(SHAPE, np.int16)), frame, SPACING,
                                    size_mm=30, ncols=3)
    assert len(fig.axes) == 5
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["Th3", "Th4", "Th5", "Th6", "Th7"]
    for ax in fig.axes:
        assert ax.get_xlim() == pytest.approx((-15, 15))
        assert ax.get_aspect() == 1.0
    assert fig.get_suptitle()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["expert1", "expert2"]


def test_vertebra_montage_v1_titles_by_index():
    frame = _frame(n_experts=2, n_vertebrae=4, levels=False)
    fig = plotting.vertebra_montage(_volume(np.zeros(SHAPE, np.int16)), frame)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["#0", "#1", "#2", "#3"]


def test_vertebra_centres_average_over_experts():
    frame = _frame(n_experts=3, n_vertebrae=4)
    centres = plotting.vertebra_centres(frame)
    assert list(centres["level"]) == ["Th3", "Th4", "Th5", "Th6"]
    assert centres["row"].to_numpy() == pytest.approx([60.5] * 4)  # mean of 60, 60.5, 61
    assert centres["slice"].to_numpy() == pytest.approx([25, 50, 75, 100])
    assert list(centres["n_readings"]) == [3] * 4


def test_slice_browser_static_and_interactive(monkeypatch):
    volume = _volume(np.zeros(SHAPE, np.int16))
    frame = _frame()
    monkeypatch.setenv(plotting.ENV_STATIC_FIGURES, "1")
    fig = plotting.slice_browser(volume, frame)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3 and all(ax.get_title() for ax in fig.axes)
    assert fig.get_suptitle()
    pytest.importorskip("ipywidgets")
    browser = plotting.slice_browser(volume, frame, interactive=True)
    assert browser.column == plotting.sagittal_column(frame)
    bundle = browser._repr_mimebundle_()
    assert bundle["text/plain"] == f"SliceBrowser(column={browser.column}, columns=0..39)"
    assert bundle["image/png"].startswith(b"\x89PNG")
    browser.show(5)
    assert browser.column == 5
    assert "column 5" in browser.figure.axes[0].get_title()


def test_zoom_to_readings_stays_inside_the_image():
    frame = _frame(n_vertebrae=5)
    ax = plotting.show_sagittal(_volume(np.zeros(SHAPE, np.int16)), 20)
    plotting.zoom_to_readings(ax, frame, SPACING, margin_mm=10)
    x0, x1 = ax.get_xlim()
    y_bottom, y_top = ax.get_ylim()
    assert (x0, x1) == pytest.approx(((60 - 10) * 0.8 - 10, (61 + 10) * 0.8 + 10))
    assert y_top == pytest.approx((25 - 6) * 1.25 - 10) and y_top < y_bottom  # head on top
    plotting.zoom_to_readings(ax, frame, SPACING, margin_mm=500)
    assert ax.get_xlim() == pytest.approx((-0.4, (SHAPE[0] - 0.5) * 0.8))

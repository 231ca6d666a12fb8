"""Tests of vfs_utils.phantom.render: heights measured back, tissues, boxes."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vfs_utils import phantom

BONE_HU = 150.0      # threshold separating bone from disc and soft tissue


def measured_heights(volume: np.ndarray, points: np.ndarray, spacing, *, extend_mm: float = 2.5,
                     step_mm: float = 0.05) -> np.ndarray:
    """Bone extent (mm) along the line through each keypoint pair, from the image alone.

    Samples the HU (trilinear) along the line through the pair, extended by
    ``extend_mm`` beyond both points; bone is where HU > 150. Each end of the
    bone run is then located at half maximum between the soft tissue just
    outside (median of the outer 1 mm) and the bone peak within 2 mm inside, the
    usual edge definition; a fixed low threshold would add about half a slice
    spacing per end on 1.25 mm slices.
    """
    sp = np.asarray(spacing, float)
    out = []
    for k in range(3):
        p0, p1 = points[2 * k] * sp, points[2 * k + 1] * sp
        length = np.linalg.norm(p1 - p0)
        direction = (p1 - p0) / length
        t = np.arange(-extend_mm, length + extend_mm + step_mm / 2, step_mm)
        coords = ((p0[None, :] + t[:, None] * direction[None, :]) / sp).T
        hu = ndimage.map_coordinates(volume.astype(np.float32), coords, order=1)
        above = np.nonzero(hu > BONE_HU)[0]
        assert above.size, "no bone along a keypoint segment"
        n1 = int(round(1.0 / step_mm))
        n2 = int(round(2.0 / step_mm))
        ends = []
        for idx, outward in ((above[0], -1), (above[-1], 1)):
            outside = hu[:idx][-n1:] if outward < 0 else hu[idx + 1:][:n1]
            inside = hu[idx:idx + n2] if outward < 0 else hu[max(idx - n2, 0):idx + 1]
            level = 0.5 * (np.median(outside) + inside.max())
            j = idx
            if outward < 0:
                while hu[j] < level:
                    j += 1
                frac = (hu[j] - level) / max(hu[j] - hu[j - 1], 1e-6)
                ends.append(t[j] - frac * step_mm)
            else:
                while hu[j] < level:
                    j -= 1
                frac = (hu[j] - level) / max(hu[j] - hu[j + 1], 1e-6)
                ends.append(t[j] + frac * step_mm)
        out.append(ends[1] - ends[0])
    return np.array(out)


def true_heights(points: np.ndarray, spacing) -> np.ndarray:
    sp = np.asarray(spacing, float)
    return np.array([np.linalg.norm((points[2 * k + 1] - points[2 * k]) * sp) for k in range(3)])


@pytest.fixture(scope="module")
def slab(fractured_spine):
    return phantom.render_sagittal_slab(fractured_spine, rng=np.random.default_rng(1))


def test_heights_measured_back_agree(fractured_spine, slab):
    volume, box = slab
    sp = fractured_spine.geometry.spacing
    offset = np.array([box[0][0], box[1][0], box[2][0]])
    errors = []
    for v in fractured_spine.vertebrae:
        pts = v.points - offset
        errors.append(measured_heights(volume, pts, sp) - true_heights(v.points, sp))
    errors = np.array(errors)
    assert np.abs(errors).max() < 1.5, errors


def test_rendered_tissues(fractured_spine, slab):
    volume, box = slab
    v = fractured_spine.vertebrae[5]
    centre = np.round(v.points.mean(axis=0) - [box[0][0], box[1][0], box[2][0]]).astype(int)
    r, c, s = centre
    cancellous = volume[r - 2:r + 3, c - 2:c + 3, s - 1:s + 2].mean()
    assert abs(cancellous - fractured_spine.bone_hu) < 25
    # cortex brighter than cancellous bone at the upper endplate
    upper = np.round(v.points[2] - [box[0][0], box[1][0], box[2][0]]).astype(int)
    column = volume[upper[0], upper[1], upper[2] - 2:upper[2] + 3]
    assert column.max() > fractured_spine.bone_hu + 150
    # the disc between two bodies is soft tissue
    nxt = fractured_spine.vertebrae[6]
    disc = np.round(0.5 * (v.points[3] + nxt.points[2]) - [box[0][0], box[1][0], box[2][0]])
    d = volume[int(disc[0]) - 1:int(disc[0]) + 2, int(disc[1]), int(disc[2])].mean()
    assert 20 < d < 140


def test_full_volume_background(fractured_spine):
    small = phantom.Geometry((512, 512, 40), fractured_spine.geometry.spacing,
                             fractured_spine.geometry.origin)
    truth = phantom.SpineTruth(fractured_spine.vertebrae, small, 250.0)
    vol = phantom.render_volume(truth, rng=np.random.default_rng(0))
    assert vol.shape == (512, 512, 40) and vol.dtype == np.int16
    assert abs(vol[:20, :20, :].mean() + 1000) < 5, "air outside the torso"
    assert (vol < -700).mean() > 0.3, "lungs and air"
    assert abs(vol[:5, :5].std() - 15) < 3, "noise of about 15 HU"


def test_box_render_equals_full_render_without_noise(fractured_spine):
    truth = phantom.SpineTruth(fractured_spine.vertebrae[:3], fractured_spine.geometry, 250.0)
    full = phantom.render_volume(truth, noise=0, blur=0, box=((0, 512), (200, 320), (0, 80)))
    part = phantom.render_volume(truth, noise=0, blur=0, box=((100, 400), (230, 290), (10, 70)))
    assert full.shape == (512, 120, 80) and part.shape == (300, 60, 60)
    np.testing.assert_array_equal(part, full[100:400, 30:90, 10:70])

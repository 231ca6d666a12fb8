"""Level names: the ribs rule on a hand-built spine, the lung fallback, unknown levels."""
from __future__ import annotations

import numpy as np
import pytest

from vfs_utils.annotation import LEVELS, load_annotation, write_annotation
from vfs_utils.keypoints._levels import name_levels, rib_slices
from vfs_utils.keypoints._spine import find_spine

SP = (1.5, 1.5, 2.0)
STEP = 14                   # slices per vertebra (28 mm)
N = 7


def _spine(ribbed: int) -> tuple[np.ndarray, np.ndarray]:
    """A body with N vertebrae (body, disc, canal ringed by bone) and rib pairs on the top
    ``ribbed`` vertebrae: (volume, centre slices)."""
    shape = (160, 220, 8 + N * STEP)
    rr, cc = np.mgrid[:shape[0], :shape[1]]
    r_body, col = 80.0, 110.0
    body = ((rr - 80) / 70.0) ** 2 + ((cc - col) / 100.0) ** 2 < 1
    d_body = np.hypot(rr - r_body, cc - col) * SP[0]
    d_canal = np.hypot(rr - (r_body + 24 / SP[0]), cc - col) * SP[0]
    vol = np.full(shape, -1000.0, np.float32)
    centres = 4 + STEP / 2 + np.arange(N) * STEP
    for k in range(shape[2]):
        sl = vol[:, :, k]
        sl[body] = 40.0
        j = int(np.argmin(np.abs(centres - k)))
        in_body = abs(k - centres[j]) <= STEP / 2 - 2
        sl[d_body < 16] = 250.0 if in_body else 90.0      # vertebral body or disc
        sl[d_body < 13] = 160.0 if in_body else 90.0
        sl[(d_canal >= 7) & (d_canal < 11)] = 500.0        # pedicles and laminae
        sl[d_canal < 7] = 10.0
        if j < ribbed and abs(k - centres[j]) <= 2:
            lateral = np.abs(cc - col) * SP[1]
            bar = (np.abs(rr - (r_body + 15 / SP[0])) * SP[0] < 5) & (lateral > 18) \
                & (lateral < 120) & body
            sl[bar] = 400.0
    return vol, centres


@pytest.mark.parametrize("ribbed", [4, 3])
def test_the_lowest_rib_bearing_vertebra_is_th12(ribbed):
    vol, centres = _spine(ribbed)
    path = find_spine(vol, SP)
    ribs = rib_slices(vol, SP, path.rows, path.cols, hu_offset=path.hu_offset)
    assert len(ribs) == 2 * ribbed                 # one per side per ribbed vertebra
    names, rule = name_levels(centres, SP[2], ribs=ribs,
                              top_slice=float(np.nonzero(path.found)[0][0]))
    assert rule == "ribs"
    th12 = LEVELS.index("Th12")
    assert names == [LEVELS[th12 - (ribbed - 1) + i] for i in range(N)]


def test_ribs_are_found_through_low_dose_noise():
    """Gaussian noise of 80 HU (a low-dose, sharp-kernel chest CT) on 0.75 x 0.75 x 1 mm
    voxels: a soft-tissue voxel passes the bone threshold one time in twelve, so a 2 mm
    block (18 voxels) counted as bone when any of its voxels is would join the soft tissue
    into one component."""
    vol, centres = _spine(4)
    path = find_spine(vol, SP)
    fine = np.repeat(np.repeat(np.repeat(vol, 2, 0), 2, 1), 2, 2)      # (0.75, 0.75, 1) mm
    fine += 80.0 * np.random.default_rng(0).standard_normal(fine.shape, dtype=np.float32)
    rows, cols = (np.repeat(2 * line + 0.5, 2) for line in (path.rows, path.cols))
    ribs = rib_slices(fine, (0.75, 0.75, 1.0), rows, cols)
    assert len(ribs) == 8
    assert np.allclose(np.sort(ribs)[1::2], 2 * centres[:4] + 0.5, atol=4)


def test_thin_ribs_in_partial_volume_are_found():
    """Ribs one 0.75 mm voxel thick at 700 HU (a rib thinned by partial volume): a third of
    each 2 mm block is above the bone threshold, its mean HU is too."""
    vol, centres = _spine(0)
    path = find_spine(vol, SP)
    fine = np.repeat(np.repeat(np.repeat(vol, 2, 0), 2, 1), 2, 2)      # (0.75, 0.75, 1) mm
    rows, cols = (np.repeat(2 * line + 0.5, 2) for line in (path.rows, path.cols))
    lateral = np.abs(np.arange(fine.shape[1]) - cols[0]) * 0.75
    row = int(2 * 80 + 15 / 0.75)                                      # 15 mm behind the centre
    for c in centres[:4]:
        k = int(2 * c)
        fine[row, (lateral > 18) & (lateral < 110), k - 4:k + 5] = 700.0
    ribs = rib_slices(fine, (0.75, 0.75, 1.0), rows, cols)
    assert len(ribs) == 8
    assert np.allclose(np.sort(ribs)[1::2], 2 * centres[:4], atol=4)


def test_a_rib_run_that_reaches_the_volumes_end_leaves_the_levels_unknown():
    """The lowest rib 30 mm above the last slice: the 12th rib may lie below the volume, so
    neither the ribs nor the lung base (a guess here) name the levels."""
    centres = np.arange(6) * 14.0 + 7.0
    ribs = np.repeat(centres, 2)
    bottom = centres[-1] + 15                                  # 30 mm below the last rib
    lungs = np.zeros(int(bottom) + 1)
    lungs[:int(centres[3])] = 1000.0                           # the lung base in view
    names, rule = name_levels(centres, 2.0, ribs=ribs, bottom_slice=bottom, lungs=lungs)
    assert rule == "unknown" and names == [None] * 6
    names, rule = name_levels(centres, 2.0, ribs=ribs, bottom_slice=bottom + 30, lungs=lungs)
    assert rule == "ribs" and names[-1] == "Th12"


def test_without_ribs_the_lung_base_is_a_fallback_else_unknown():
    centres = np.array([10.0, 24, 38, 52, 66])
    lungs = np.zeros(80)
    lungs[:45] = 1000.0                     # lung beside the spine down to slice 44
    names, rule = name_levels(centres, 2.0, ribs=np.zeros(0), lungs=lungs)
    # Th12's centre half a vertebra above the lung base: slice 37 -> the vertebra at 38
    assert rule == "lung base (fallback)" and names[2] == "Th12" and names[3] == "L1"
    names, rule = name_levels(centres, 2.0, ribs=np.zeros(0), lungs=np.full(80, 1000.0))
    assert rule == "unknown" and names == [None] * 5


def test_a_missed_vertebra_keeps_the_count():
    names, _ = name_levels(np.array([5.0, 19, 47, 61]), 2.0, ribs=np.array([4.0, 5.0]))
    assert names == ["Th12", "L1", "L3", "L4"]


def test_vertebrae_growing_taller_towards_the_feet_are_not_counted_as_missed():
    """Eight spacings of 18 mm (upper thoracic), then 30, 32 and 34 mm (lumbar): no gap, so
    consecutive names. 30 mm is more than 1.6 times the overall median (18 mm), which would
    count a missed vertebra; against its neighbours' spacing it is none."""
    gaps_mm = np.array([18.0] * 8 + [30.0, 32.0, 34.0])
    assert gaps_mm[8] > 1.6 * np.median(gaps_mm)
    centres = np.concatenate([[0.0], np.cumsum(gaps_mm)]) / 2.0      # slices of 2 mm
    ribs = np.repeat(centres[:9], 2)                                   # the 9th is Th12
    names, rule = name_levels(centres, 2.0, ribs=ribs)
    th12 = LEVELS.index("Th12")
    assert rule == "ribs" and names == [LEVELS[th12 - 8 + i] for i in range(len(centres))]


def test_one_missing_rib_pair_does_not_end_the_rib_run():
    """Ribs at vertebrae 0, 1, 3 and 4 (the pair at 2 short, not seen): the run goes on to
    vertebra 4, which is Th12; a 56 mm gap between rib slices is one missed pair."""
    centres = np.arange(8) * 14.0 + 7.0                               # 28 mm per vertebra
    ribs = np.repeat(centres[[0, 1, 3, 4]], 2)
    names, rule = name_levels(centres, 2.0, ribs=ribs, top_slice=0.0)
    assert rule == "ribs" and names[4] == "Th12" and names[5] == "L1"


def test_unknown_levels_round_trip_as_points_without_levels(tmp_path):
    """Detections on the phantom with its ribs and lungs blanked: levels unknown, stored in
    the v1 schema (six points, no level) and read back unchanged."""
    from vfs_utils.keypoints import detect
    from vfs_utils.phantom import render_volume, sample_spine

    truth = sample_spine(np.random.default_rng(5), shape=(256, 256))
    vol = render_volume(truth, rng=np.random.default_rng(0)).astype(np.float32)
    sp = truth.geometry.spacing
    cols = np.arange(vol.shape[1])[None, :, None]
    centre = np.stack([v.points for v in truth.vertebrae])[:, :, 1].mean()
    lateral = np.abs(cols - centre) * sp[1] > 30
    vol[np.broadcast_to(lateral, vol.shape) & (vol > 150)] = 40.0      # no ribs
    vol[vol < -500] = 40.0                                             # no lungs, no air
    det = detect(vol, sp, folder="KP-NOLEVEL", series_uid="1.2.3.4")
    assert det.level_source == "unknown"
    assert any("levels unknown" in w for w in det.warnings)
    ann = det.annotation
    assert ann.version == "v1" and ann.experts["model"]
    assert all(v.level is None for v in ann.experts["model"])
    back = load_annotation(write_annotation(ann, tmp_path / "KP-NOLEVEL.json",
                                            version=ann.version))
    assert back.version == "v1" and all(v.level is None for v in back.experts["model"])
    np.testing.assert_allclose(np.stack([v.points for v in back.experts["model"]]),
                               np.stack([v.points for v in ann.experts["model"]]))


def test_a_count_past_c1_or_s1_names_nothing():
    """Nine vertebrae with ribs on the top two only: counted from that Th12 the lowest would
    be two below S1, so the count is wrong and no vertebra is named (not seven names and
    two gaps)."""
    centres = np.arange(9) * 14.0 + 7.0
    names, rule = name_levels(centres, 2.0, ribs=np.repeat(centres[:2], 2), top_slice=0.0)
    assert rule == "unknown" and names == [None] * 9
    names, rule = name_levels(centres[:8], 2.0, ribs=np.repeat(centres[:2], 2), top_slice=0.0)
    assert rule == "ribs" and names[1] == "Th12" and names[-1] == "S1"

"""Tests of vfs_utils.morphometry: heights, grades, consensus, agreement, sensitivity.

Expected values are built independently of the module: points drawn from
chosen heights, hand-computed kappas, and (for the real annotation sets) grade
counts recomputed here from the JSON files with json + numpy only.
"""
from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vfs_utils import agreement as A
from vfs_utils import morphometry as M
from vfs_utils.annotation import POINT_COLUMNS, read_annotations

SUPINE = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
PRONE = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # rows grow towards anterior (LPS -y)


# --------------------------------------------------------------------------- helpers
def vertebra(ha, hm, hp, spacing=(1.0, 1.0, 1.0), *, top=10.0, row=100.0, depth=30.0,
             col=250.0, tilt=0.0):
    """Six voxel points of a vertebra with the given heights in mm (supine: anterior = low row).

    Each pair runs from the upper endplate (slice ``top``) downwards, tilted by
    ``tilt`` radians towards increasing row; the pairs sit ``depth/2`` mm apart in row.
    """
    sr, sc, ss = spacing
    out = []
    for k, h in enumerate((ha, hm, hp)):
        r0 = row + k * (depth / 2) / sr
        p0 = (r0, col, top)
        p1 = (r0 + h * math.sin(tilt) / sr, col, top + h * math.cos(tilt) / ss)
        out += [p0, p1]
    return np.array(out, dtype=float)


def frame_of(readings: dict, *, folder="F1", version="v1", series_uid="1.2.3"):
    """A read_annotations-shaped frame from {expert: [points (6, 3), ...]}."""
    rows = []
    for expert, verts in readings.items():
        for i, pts in enumerate(verts):
            row = {"file": f"{folder}.json", "folder": folder, "series_uid": series_uid,
                   "version": version, "expert": expert, "vertebra": i, "level": None,
                   "column": float(np.mean(pts[:, 1]))}
            row.update(dict(zip(POINT_COLUMNS, np.asarray(pts, float).reshape(18))))
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["level"] = frame["level"].astype(object)
    return frame


heights_mm = st.floats(5.0, 40.0)
spacings = st.tuples(st.floats(0.3, 3.0), st.floats(0.3, 3.0), st.floats(0.3, 3.0))


# --------------------------------------------------------------------------- heights
@settings(max_examples=60, deadline=None)
@given(ha=heights_mm, hm=heights_mm, hp=heights_mm, spacing=spacings,
       tilt=st.floats(-0.6, 0.6), shift=st.tuples(st.floats(-50, 50), st.floats(0, 100)))
def test_vertebra_drawn_with_known_heights_gives_them_back(ha, hm, hp, spacing, tilt, shift):
    pts = vertebra(ha, hm, hp, spacing, tilt=tilt, row=100 + shift[0], top=shift[1])
    got = M.heights(pts, spacing)
    np.testing.assert_allclose(got, [ha, hm, hp], rtol=1e-9)


@settings(max_examples=60, deadline=None)
@given(pts=st.lists(st.floats(0, 500), min_size=18, max_size=18), spacing=spacings,
       k=st.floats(0.1, 10.0))
def test_heights_scale_linearly_with_spacing(pts, spacing, k):
    pts = np.array(pts).reshape(6, 3)
    base = M.heights(pts, spacing)
    scaled = M.heights(pts, tuple(k * s for s in spacing))
    np.testing.assert_allclose(scaled, k * base, rtol=1e-9, atol=1e-9)


def test_heights_of_a_frame_keep_its_index_and_accept_per_row_spacing():
    a = vertebra(20, 18, 22, (0.7, 0.7, 1.25))
    b = vertebra(10, 12, 11, (0.5, 0.5, 2.0))
    frame = frame_of({"e1": [a, b]})
    frame.index = [7, 3]
    got = M.heights(frame, np.array([[0.7, 0.7, 1.25], [0.5, 0.5, 2.0]]))
    assert list(got.index) == [7, 3] and list(got.columns) == ["ha", "hm", "hp"]
    np.testing.assert_allclose(got.to_numpy(), [[20, 18, 22], [10, 12, 11]], rtol=1e-12)
    by_folder = M.heights(frame, {"F1": (0.7, 0.7, 1.25)})
    np.testing.assert_allclose(by_folder.iloc[0], [20, 18, 22], rtol=1e-12)


def test_pairs_are_ordered_by_row_whatever_their_order_in_the_input():
    pts = vertebra(11, 13, 17)
    shuffled = pts.reshape(3, 2, 3)[[2, 0, 1]].reshape(6, 3)
    np.testing.assert_allclose(M.heights(shuffled), [11, 13, 17])


def test_orientation_flip_swaps_anterior_and_posterior():
    pts = vertebra(11, 13, 17)
    np.testing.assert_allclose(M.heights(pts), [11, 13, 17])
    np.testing.assert_allclose(M.heights(pts, orientation=SUPINE), [11, 13, 17])
    np.testing.assert_allclose(M.heights(pts, orientation=PRONE), [17, 13, 11])
    both = M.heights(np.stack([pts, pts]), orientation=np.array([SUPINE, PRONE]))
    np.testing.assert_allclose(both, [[11, 13, 17], [17, 13, 11]])
    table = M.morphometry_table(frame_of({"e": [pts]}), spacing=(1, 1, 1), orientation=PRONE)
    assert table["wedge_index"].iloc[0] == pytest.approx(17 / 11)


@pytest.mark.parametrize("bad", [(1, 1), (1, 0, 1), (1, float("nan"), 1), np.ones((2, 3))])
def test_bad_spacing_is_a_value_error(bad):
    with pytest.raises(ValueError, match="spacing"):
        M.heights(np.zeros((6, 3)), bad)


def test_bad_points_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"\(6, 3\)"):
        M.heights(np.zeros((5, 3)))


# --------------------------------------------------------------------------- grades
def test_genant_thresholds_at_their_boundaries():
    got = M.genant_grade([0.0, 0.1999, 0.2, 0.2499, 0.25, 0.3999, 0.4, 1.0, -0.3, float("nan")])
    assert got.dtype == "Int64"
    assert got.tolist()[:9] == [0, 0, 1, 1, 2, 2, 3, 3, 0]
    assert got[9] is pd.NA
    assert M.genant_grade(0.2) == 1 and M.genant_grade(float("nan")) is pd.NA
    assert M.GRADE_THRESHOLDS == (0.20, 0.25, 0.40)
    s = pd.Series([0.1, 0.3], index=["a", "b"])
    assert M.genant_grade(s).to_dict() == {"a": 0, "b": 2}


@pytest.mark.parametrize("ha, expected", [(8.0, 1), (7.5, 2), (6.0, 3), (8.0001, 0)])
def test_exact_percent_reductions_from_points_reach_their_grade(ha, expected):
    # 1 - 8/10 is 0.19999999999999996 in floating point: still a 20 % reduction.
    assert 1 - 8 / 10 < 0.2
    sp = (0.7, 0.7, 1.3)
    frame = frame_of({"e": [vertebra(ha, 10.0, 10.0, sp)]})
    table = M.morphometry_table(frame, spacing=sp)
    assert table["grade"].iloc[0] == expected


@st.composite
def grid_readings(draw):
    """One reading of 3-6 vertebrae on a quarter-voxel grid (exact float arithmetic)."""
    n = draw(st.integers(3, 6))
    quarter = st.integers(0, 400).map(lambda v: v / 4)
    verts = [np.array(draw(st.lists(quarter, min_size=18, max_size=18))).reshape(6, 3)
             for _ in range(n)]
    return verts


GRADE_COLUMNS = ["ha", "hm", "hp", "grade", "deformity", "neighbour_grade", "neighbour_deformity"]


@settings(max_examples=50, deadline=None)
@given(verts=grid_readings(), shift=st.tuples(*[st.integers(-100, 100)] * 3))
def test_grades_do_not_change_under_translation(verts, shift):
    before = M.morphometry_table(frame_of({"e": verts}), spacing=(0.5, 0.5, 1.0))
    moved = [v + np.array(shift, float) for v in verts]
    after = M.morphometry_table(frame_of({"e": moved}), spacing=(0.5, 0.5, 1.0))
    pd.testing.assert_frame_equal(before[GRADE_COLUMNS], after[GRADE_COLUMNS])


@settings(max_examples=50, deadline=None)
@given(verts=grid_readings(), data=st.data())
def test_grades_do_not_change_when_the_points_of_a_pair_are_swapped(verts, data):
    before = M.morphometry_table(frame_of({"e": verts}), spacing=(0.5, 0.5, 1.0))
    swapped = []
    for v in verts:
        pairs = v.reshape(3, 2, 3).copy()
        for k in range(3):
            if data.draw(st.booleans()):
                pairs[k] = pairs[k, ::-1]
        swapped.append(pairs.reshape(6, 3))
    after = M.morphometry_table(frame_of({"e": swapped}), spacing=(0.5, 0.5, 1.0))
    pd.testing.assert_frame_equal(before[GRADE_COLUMNS], after[GRADE_COLUMNS])


def test_indices_and_neighbour_rule_on_a_hand_built_reading():
    # posterior heights 20, 22, 24, 26, 28; vertebra 2 is an anterior wedge (Ha 12).
    verts = [vertebra(20, 20, 20), vertebra(22, 22, 22), vertebra(12, 20, 24),
             vertebra(26, 26, 26), vertebra(28, 28, 28)]
    t = M.morphometry_table(frame_of({"e": verts}), spacing=(1, 1, 1))
    np.testing.assert_allclose(t["wedge_index"], [1, 1, 12 / 24, 1, 1])
    np.testing.assert_allclose(t["biconcave_index"], [1, 1, 20 / 24, 1, 1])
    np.testing.assert_allclose(t["biconcave_index_anterior"], [1, 1, 20 / 12, 1, 1])
    # Both neighbours needed: NaN at the two ends of the reading.
    np.testing.assert_allclose(t["crush_index"], [np.nan, 22 / 22, 24 / 24, 26 / 26, np.nan])
    np.testing.assert_allclose(t["height_loss"], [0, 0, 0.5, 0, 0], atol=1e-15)
    assert t["grade"].tolist() == [0, 0, 3, 0, 0]
    assert t["deformity"].tolist() == ["normal", "normal", "wedge", "normal", "normal"]
    # Each height against the same height of the two adjacent vertebrae, whatever their grade:
    # vertebra 1: Ha 22 / mean(20, 12) = 22/16, Hm 22/20, Hp 22/22 -> loss 0;
    # vertebra 2: Ha 12 / 24 -> loss 0.5; vertebra 3: Ha 26 / mean(12, 28) = 26/20, ...
    np.testing.assert_allclose(t["expected_height"], [np.nan, 22, 24, 26, np.nan])
    np.testing.assert_allclose(t["neighbour_loss"], [np.nan, 0, 0.5, 0, np.nan], atol=1e-12)
    assert t["neighbour_grade"].tolist()[1:4] == [0, 3, 0]
    assert t["neighbour_grade"].iloc[0] is pd.NA and t["neighbour_grade"].iloc[4] is pd.NA
    assert t["neighbour_deformity"].tolist() == [None, "normal", "wedge", "normal", None]


def test_neighbour_rule_compares_like_with_like_heights():
    # Normal thoracic wedging (Ha/Hp = 0.8 everywhere) is a 20 % loss within each vertebra
    # but no loss against the neighbours' anterior heights.
    verts = [vertebra(16, 18, 20), vertebra(16.8, 18.9, 21), vertebra(17.6, 19.8, 22)]
    t = M.morphometry_table(frame_of({"e": verts}), spacing=(1, 1, 1))
    assert t["grade"].tolist() == [1, 1, 1]
    assert t["neighbour_loss"].iloc[1] == pytest.approx(0.0, abs=1e-12)
    assert t["neighbour_grade"].iloc[1] == 0


def test_neighbour_rule_sees_a_uniformly_flattened_vertebra_as_crush():
    verts = [vertebra(24, 24, 24), vertebra(14, 14.5, 15), vertebra(24, 24, 24)]
    t = M.morphometry_table(frame_of({"e": verts}), spacing=(1, 1, 1))
    assert t["grade"].tolist() == [0, 0, 0]          # 1 - 14/15 < 20 %
    assert t["neighbour_loss"].iloc[1] == pytest.approx(1 - 14 / 24)
    assert t["neighbour_grade"].iloc[1] == 3
    assert t["neighbour_deformity"].iloc[1] == "crush"    # all three heights down >= 20 %


def test_a_lone_vertebra_has_no_neighbour_reference():
    t = M.morphometry_table(frame_of({"e": [vertebra(20, 20, 20)]}), spacing=(1, 1, 1))
    assert np.isnan(t["crush_index"].iloc[0]) and np.isnan(t["expected_height"].iloc[0])
    assert t["neighbour_grade"].iloc[0] is pd.NA and t["neighbour_deformity"].iloc[0] is None
    assert t["grade"].iloc[0] == 0


def test_readings_are_kept_apart_and_ordered_by_vertebra_index():
    e1 = [vertebra(20, 20, 20), vertebra(30, 30, 30), vertebra(20, 20, 20)]
    e2 = [vertebra(10, 10, 10), vertebra(40, 40, 40), vertebra(30, 30, 30)]
    frame = frame_of({"e1": e1, "e2": e2}).iloc[[4, 0, 2, 1, 3, 5]]   # shuffled rows
    t = M.morphometry_table(frame, spacing=(1, 1, 1))
    assert list(t.index) == [4, 0, 2, 1, 3, 5]
    np.testing.assert_allclose(t["crush_index"], [40 / 20, np.nan, np.nan, 30 / 20, np.nan,
                                                  np.nan])


def test_morphometry_table_columns_and_misuse():
    frame = frame_of({"e": [vertebra(20, 20, 20)]})
    t = M.morphometry_table(frame, spacing=(1, 1, 1))
    for c in ["folder", "expert", "vertebra", "level", "ha", "hm", "hp", "wedge_index",
              "biconcave_index", "crush_index", "height_loss", "grade", "deformity",
              "expected_height", "neighbour_loss", "neighbour_grade", "neighbour_deformity"]:
        assert c in t.columns
    with pytest.raises(TypeError, match="exactly one of root"):
        M.morphometry_table(frame)
    with pytest.raises(TypeError, match="exactly one of root"):
        M.morphometry_table(frame, root="/x", spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="row0"):
        M.morphometry_table(frame.drop(columns=["row0"]), spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="no entry for folder"):
        M.morphometry_table(frame, spacing={"other": (1, 1, 1)})
    empty = M.morphometry_table(frame.iloc[:0], spacing=(1, 1, 1))
    assert len(empty) == 0 and "grade" in empty.columns


def test_root_spacing_comes_from_series_spacing(monkeypatch):
    import vfs_utils.matching as matching

    calls = []

    def fake(root, folder, uid):
        calls.append((root, folder, uid))
        return {"A": (0.5, 0.5, 2.0), "B": (0.8, 0.8, 1.0)}[folder]

    monkeypatch.setattr(matching, "series_spacing", fake)
    frame = pd.concat([
        frame_of({"e": [vertebra(20, 19, 21, (0.5, 0.5, 2.0))] * 2}, folder="A"),
        frame_of({"e": [vertebra(15, 14, 16, (0.8, 0.8, 1.0))]}, folder="B"),
    ], ignore_index=True)
    t = M.morphometry_table(frame, root="/data")
    np.testing.assert_allclose(t[["ha", "hm", "hp"]], [[20, 19, 21], [20, 19, 21], [15, 14, 16]])
    assert sorted(calls) == [("/data", "A", "1.2.3"), ("/data", "B", "1.2.3")]


# --------------------------------------------------------------------------- consensus
#: A loss inside each grade's band, for tables built from grades.
BAND_MIDDLE = {0: 0.1, 1: 0.22, 2: 0.3, 3: 0.5}


def grade_table(grades: dict, *, folder="F1", version="v1"):
    """A minimal morphometry-like table from {expert: [grade per vertebra_id or None]}."""
    rows = []
    for expert, gs in grades.items():
        for vid, g in enumerate(gs):
            if g is None:
                continue
            rows.append({"version": version, "file": f"{folder}.json", "folder": folder,
                         "series_uid": "1.2.3", "expert": expert, "vertebra_id": vid,
                         "grade": g, "neighbour_grade": g, "centre_slice": 20.0 * vid,
                         "height_loss": BAND_MIDDLE[g], "neighbour_loss": BAND_MIDDLE[g]})
    t = pd.DataFrame(rows)
    t["grade"] = t["grade"].astype("Int64")
    t["neighbour_grade"] = t["neighbour_grade"].astype("Int64")
    return t


def test_consensus_lower_median_is_the_old_rule():
    t = grade_table({"a": [1, 0, 0, 3, 0], "b": [2, 0, 1, None, 1],
                     "c": [None, 2, 2, None, 1], "d": [None, 2, None, None, 1]})
    c = M.consensus(t, method="lower_median")
    assert c["vertebra_id"].tolist() == [0, 1, 2, 3, 4]
    assert c["n_experts"].tolist() == [2, 4, 3, 1, 4]
    # (1, 2) -> 1; (0, 0, 2, 2) -> 0; (0, 1, 2) -> 1; (3) -> 3; (0, 1, 1, 1) -> 1
    assert c["grade"].tolist() == [1, 0, 1, 3, 1]
    assert c["grade_max"].tolist() == [2, 2, 2, 3, 1]
    assert c["experts"].iloc[1] == "a,b,c,d"


def test_consensus_needs_vertebra_id_and_unique_readings():
    t = grade_table({"a": [0, 1]})
    with pytest.raises(ValueError, match="match_vertebrae"):
        M.consensus(t.drop(columns=["vertebra_id"]))
    dup = t.assign(vertebra_id=0)
    with pytest.raises(ValueError, match="unique per expert"):
        M.consensus(dup)


# --------------------------------------------------------------------------- agreement
def test_kappas_on_a_hand_worked_example():
    # a = 0 0 1 2, b = 0 1 1 2, c = 0 0 1 0 (four vertebrae, three experts).
    # Cohen(a, b), linear weights |i - j|: observed weighted disagreement 1/4;
    # expected sum |i-j| p_i q_j with p = (1/2, 1/4, 1/4), q = (1/4, 1/2, 1/4) = 7/8;
    # kappa = 1 - (1/4) / (7/8) = 5/7.
    # Cohen(a, c): observed 2/4, expected with q = (3/4, 1/4, 0) = 3/4 -> 1/3.
    # Fleiss (3 raters): P_i = 1, 1/3, 1, 1/3 -> P = 2/3; p_j = 1/2, 1/3, 1/6 ->
    # Pe = 7/18; kappa = (2/3 - 7/18) / (11/18) = 5/11.
    t = grade_table({"a": [0, 0, 1, 2], "b": [0, 1, 1, 2], "c": [0, 0, 1, 0]})
    ag = A.grade_agreement(t)
    pw = ag.pairwise.set_index(["expert_a", "expert_b"])
    assert pw.loc[("a", "b"), "kappa"] == pytest.approx(5 / 7)
    assert pw.loc[("a", "c"), "kappa"] == pytest.approx(1 / 3)
    assert pw.loc[("a", "b"), "exact"] == pytest.approx(3 / 4)
    assert pw.loc[("a", "b"), "n_vertebrae"] == 4
    assert ag.fleiss_kappa == pytest.approx(5 / 11)
    assert (ag.fleiss_raters, ag.fleiss_items, ag.n_vertebrae) == (3, 4, 4)
    assert ag.exact == pytest.approx(1 / 2)
    assert float(Fraction(5, 11)) == pytest.approx(A.fleiss_kappa(
        [[3, 0, 0, 0], [2, 1, 0, 0], [0, 3, 0, 0], [1, 0, 2, 0]]))


def test_fleiss_needs_a_common_rater_count():
    with pytest.raises(ValueError, match="same number"):
        A.fleiss_kappa([[2, 0], [1, 2]])
    assert math.isnan(A.fleiss_kappa([[3, 0], [3, 0]]))


def test_count_disagreement_on_hand_frame():
    a = frame_of({"e1": [vertebra(20, 20, 20)] * 3, "e2": [vertebra(20, 20, 20)] * 2},
                 folder="A")
    b = frame_of({"e1": [vertebra(20, 20, 20)] * 2, "e2": [vertebra(20, 20, 20)] * 2},
                 folder="B")
    cd = A.count_disagreement(pd.concat([a, b], ignore_index=True))
    assert (cd.n_files, cd.n_disagree, cd.fraction) == (2, 1, 0.5)
    assert cd.files.set_index("folder").loc["A", "counts"] == "e1:3 e2:2"


# --------------------------------------------------------------------------- rounds
def test_compare_rounds_matches_by_centre_slice_within_tolerance():
    r1 = grade_table({"a": [0, 1, 2, 0], "b": [0, 1, 2, 0]})          # centres 0, 20, 40, 60
    r2 = grade_table({"x": [None, 0, 2, None, 3], "y": [None, 0, 2, None, 3]}, version="v2")
    r2["centre_slice"] = r2["centre_slice"] + 3.0                      # 23, 43, 83
    cmp = A.compare_rounds(r1, r2, tolerance=5)
    assert cmp.n_matched == 2 and cmp.n_unmatched_a == 2 and cmp.n_unmatched_b == 1
    assert cmp.pairs["vertebra_id_a"].tolist() == [1, 2]
    assert cmp.pairs["vertebra_id_b"].tolist() == [1, 2]
    assert cmp.crosstab.loc[1, 0] == 1 and cmp.crosstab.loc[2, 2] == 1
    assert int(cmp.crosstab.to_numpy().sum()) == 2
    assert cmp.changed == pytest.approx(0.5)
    assert A.compare_rounds(r1, r2, tolerance=2).n_matched == 0


# --------------------------------------------------------------------------- sensitivity
def test_grade_flip_rate_is_deterministic_and_sensible():
    sp = (0.7, 0.7, 1.0)
    far = [vertebra(30, 30, 30, sp), vertebra(15, 30, 30, sp)]   # loss 0 and 0.5
    edge = [vertebra(24, 30, 30, sp)]                              # loss exactly 0.20
    pts = np.stack(far + edge)
    one = A.grade_flip_rate(pts, sp, sigmas_mm=(0.0, 0.1, 1.0), n_draws=200, seed=3)
    two = A.grade_flip_rate(pts, sp, sigmas_mm=(0.0, 0.1, 1.0), n_draws=200, seed=3)
    pd.testing.assert_frame_equal(one, two)
    assert one["flip_rate"].iloc[0] == 0
    far_only = A.grade_flip_rate(np.stack(far), sp, sigmas_mm=(0.1,), n_draws=200)
    assert far_only["flip_rate"].iloc[0] == 0
    edge_only = A.grade_flip_rate(np.stack(edge), sp, sigmas_mm=(0.1,), n_draws=400)
    # Loss ~ 1 - (24 + e1) / (30 + max(e2, e3)), e ~ N(0, s^2) per height: it falls below
    # 20 % when e1 - 0.8 max(e2, e3) > 0, whose mean is -0.8 * 0.564 s and sd about
    # s * sqrt(1 + 0.64 * 0.682) = 1.2 s: P = Phi(-0.375) = 0.35. Reaching 25 % needs ~8 sd.
    assert 0.25 < edge_only["flip_rate"].iloc[0] < 0.45
    assert edge_only["up_rate"].iloc[0] == 0
    assert edge_only["down_rate"].iloc[0] == edge_only["flip_rate"].iloc[0]
    with pytest.raises(ValueError, match="sigmas_mm"):
        A.grade_flip_rate(pts, sp, sigmas_mm=(-1.0,))


# --------------------------------------------------------------------------- real data
def _independent_readings(folder: Path):
    """[(file, expert, index, points (6, 3))] straight from the JSON files (v1 or v2)."""
    out = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        for expert, verts in data["Annotation"].items():
            for i, v in enumerate(verts):
                pts = np.array([p for seg in v["segments"] for p in seg] if isinstance(v, dict)
                               else v, dtype=float)
                out.append((path.name, expert, i, pts))
    return out


def _independent_grades(readings):
    """Within-vertebra and neighbour-rule grades at unit spacing, plain Python per reading."""
    def grade(loss):
        if loss != loss:
            return None
        return sum(loss >= t - 1e-9 for t in (0.20, 0.25, 0.40))

    within, neighbour = {}, {}
    by_reading = {}
    for file, expert, i, pts in readings:
        order = np.argsort([pts[0, 0] + pts[1, 0], pts[2, 0] + pts[3, 0], pts[4, 0] + pts[5, 0]],
                           kind="stable")
        h = [float(np.sqrt(((pts[2 * k + 1] - pts[2 * k]) ** 2).sum())) for k in order]
        within[(file, expert, i)] = grade(1 - min(h) / max(h))
        by_reading.setdefault((file, expert), []).append((i, h))
    for (file, expert), verts in by_reading.items():
        verts.sort()
        for j, (i, h) in enumerate(verts):
            if j == 0 or j == len(verts) - 1:          # both neighbours needed
                neighbour[(file, expert, i)] = None
                continue
            above, below = verts[j - 1][1], verts[j + 1][1]
            rel = [h[k] / ((above[k] + below[k]) / 2) for k in range(3)]
            neighbour[(file, expert, i)] = grade(1 - min(rel))
    return within, neighbour


def _compare_real(folder: Path, n_expected: int):
    readings = _independent_readings(folder)
    assert len(readings) == n_expected
    within, neighbour = _independent_grades(readings)
    table = M.morphometry_table(read_annotations(folder), spacing=(1.0, 1.0, 1.0))
    keys = list(zip(table["file"], table["expert"], table["vertebra"]))
    assert table["grade"].tolist() == [within[k] for k in keys]
    assert [None if g is pd.NA else g for g in table["neighbour_grade"]] == \
        [neighbour[k] for k in keys]
    counts = {g: list(within.values()).count(g) for g in (0, 1, 2, 3)}
    assert {int(k): int(v) for k, v in table["grade"].value_counts().items()} == counts
    n_counts = {g: list(neighbour.values()).count(g) for g in (0, 1, 2, 3, None)}
    got = table["neighbour_grade"].value_counts(dropna=False)
    assert {None if k is pd.NA else int(k): int(v) for k, v in got.items()} == \
        {k: v for k, v in n_counts.items() if v}
    return table, counts, n_counts


# Counts of the independent recomputation above, pinned so that a change of the
# annotation copy or of the grading rules shows up (unit spacing: heights in voxels).
V1_WITHIN = {0: 2657, 1: 427, 2: 250, 3: 59}
V1_NEIGHBOUR = {0: 2752, 1: 36, 2: 43, 3: 20, None: 542}
V2_WITHIN = {0: 2850, 1: 447, 2: 256, 3: 54}
V2_NEIGHBOUR = {0: 2973, 1: 34, 2: 40, 3: 22, None: 538}


def test_real_v1_grades_at_unit_spacing_match_an_independent_count(v1_dir):
    table, within, neighbour = _compare_real(v1_dir, 3393)
    assert (within, neighbour) == (V1_WITHIN, V1_NEIGHBOUR)
    assert table.groupby(["file", "expert"]).ngroups == 271


def test_real_v2_grades_at_unit_spacing_match_an_independent_count(v2_dir):
    _, within, neighbour = _compare_real(v2_dir, 3607)
    assert (within, neighbour) == (V2_WITHIN, V2_NEIGHBOUR)


def test_real_v1_count_disagreement_is_42_of_100(v1_dir):
    disagree = 0
    files = sorted(v1_dir.glob("*.json"))
    for path in files:
        counts = {len(v) for v in json.loads(path.read_text())["Annotation"].values()}
        disagree += len(counts) > 1
    assert (len(files), disagree) == (100, 42)
    cd = A.count_disagreement(read_annotations(v1_dir))
    assert (cd.n_files, cd.n_disagree) == (100, 42)
    assert cd.fraction == pytest.approx(0.42)


def test_real_v1_agreement_uses_every_expert_pair_of_shared_vertebrae(v1_dir):
    from vfs_utils.readings import match_vertebrae

    table = M.morphometry_table(match_vertebrae(read_annotations(v1_dir)), spacing=(1, 1, 1))
    ag = A.grade_agreement(table)
    assert ag.pairwise["kappa"].between(-1, 1).all()
    assert -1 <= ag.fleiss_kappa <= 1
    cons = M.consensus(table)
    # every reading belongs to exactly one consensus vertebra
    assert cons["n_experts"].sum() == len(table)


# --------------------------------------------------------------------------- spacing from a dataset
def _write_study(root: Path, folder: str, uid: str, spacing) -> None:
    from vfs_utils.dicom import write_series

    write_series(root / "dicom" / folder / "series-001", np.zeros((12, 6, 8), dtype=np.int16),
                 spacing=spacing, series_uid=uid, study_uid=uid + ".1",
                 frame_of_reference_uid=uid + ".2")


def _two_studies(tmp_path: Path):
    """A dataset root with studies A and B, and a frame with readings of A, B and absent C."""
    root = tmp_path / "root"
    spacings = {"A": (0.5, 0.5, 2.0), "B": (0.8, 0.8, 1.0), "C": (0.7, 0.7, 1.25)}
    uids = {f: f"1.2.826.0.1.3680043.10.543.9.{i}" for i, f in enumerate(spacings, 1)}
    for f in ("A", "B"):
        _write_study(root, f, uids[f], spacings[f])
    frame = pd.concat([frame_of({"e1": [vertebra(20, 19, 21, spacings[f]), vertebra(15, 12, 16,
                                                                                    spacings[f])],
                                 "e2": [vertebra(18, 18, 19, spacings[f])]},
                                folder=f, series_uid=uids[f]) for f in spacings],
                      ignore_index=True)
    return root, frame, spacings


def test_root_spacing_through_an_executor_gives_the_same_table(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    root, frame, spacings = _two_studies(tmp_path)
    frame = frame[frame["folder"] != "C"]
    serial = M.morphometry_table(frame, root=root)
    with ThreadPoolExecutor(max_workers=2) as pool:
        parallel = M.morphometry_table(frame, root=root, executor=pool)
    pd.testing.assert_frame_equal(serial, parallel)
    by_hand = M.morphometry_table(frame, spacing={f: spacings[f] for f in ("A", "B")})
    pd.testing.assert_frame_equal(serial, by_hand)
    # The heights were drawn in mm with each study's spacing: the headers give them back.
    np.testing.assert_allclose(serial[["ha", "hm", "hp"]],
                               [[20, 19, 21], [15, 12, 16], [18, 18, 19]] * 2, rtol=1e-9)


def test_dataset_spacing_uses_headers_where_present_and_the_default_elsewhere(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from vfs_utils.errors import DataNotFoundError

    root, frame, spacings = _two_studies(tmp_path)
    got = M.dataset_spacing(frame, root, default=(1, 1, 1))
    assert got == {"A": spacings["A"], "B": spacings["B"], "C": (1.0, 1.0, 1.0)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert M.dataset_spacing(frame, root, default=(1, 1, 1), executor=pool) == got
    table = M.morphometry_table(frame, spacing=got)
    c = table[table["folder"] == "C"]
    # C keeps voxel units: heights in voxels, grades from the ratios.
    np.testing.assert_allclose(c["hp"], [21 / 1.25, 16 / 1.25, 19 / 1.25], rtol=1e-9)
    with pytest.raises(DataNotFoundError, match=r"'C'.*default="):
        M.dataset_spacing(frame, root)
    assert M.dataset_spacing(frame[frame["folder"] != "C"], root) == \
        {"A": spacings["A"], "B": spacings["B"]}
    with pytest.raises(DataNotFoundError, match="not a dataset root"):
        M.dataset_spacing(frame, tmp_path / "nowhere", default=(1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        M.dataset_spacing(frame, root, default=(1, 0, 1))


def test_real_v2_experts_always_agree_on_the_vertebra_count(v2_dir):
    files = sorted(v2_dir.glob("*.json"))
    disagree = sum(len({len(v) for v in json.loads(p.read_text())["Annotation"].values()}) > 1
                   for p in files)
    assert (len(files), disagree) == (100, 0)
    cd = A.count_disagreement(read_annotations(v2_dir))
    assert (cd.n_files, cd.n_disagree) == (100, 0)


def test_real_v1_readings_only_the_within_rule_calls_deformed(v1_dir):
    # Readings that the within-vertebra rule grades >= 1 and the two-sided neighbour rule 0:
    # mostly slightly biconcave (normal endplate concavity against the vertebra's own Hp).
    readings = _independent_readings(v1_dir)
    within, neighbour = _independent_grades(readings)
    only = {k for k in within if within[k] >= 1 and neighbour[k] == 0}
    assert len(only) == 552
    smallest = {}                                    # which height is the smallest
    for file, expert, i, pts in readings:
        if (file, expert, i) in only:
            rows = [pts[2 * k:2 * k + 2, 0].mean() for k in range(3)]
            h = [np.linalg.norm(pts[2 * k + 1] - pts[2 * k]) for k in np.argsort(rows)]
            name = ("wedge", "biconcave", "crush")[int(np.argmin(h))]
            smallest[name] = smallest.get(name, 0) + 1
    table = M.morphometry_table(read_annotations(v1_dir), spacing=(1.0, 1.0, 1.0))
    got = table[(table["grade"] >= 1) & (table["neighbour_grade"] == 0)]
    assert len(got) == 552
    assert got["deformity"].value_counts().to_dict() == smallest
    assert smallest["biconcave"] > len(only) / 2      # mostly slightly biconcave vertebrae

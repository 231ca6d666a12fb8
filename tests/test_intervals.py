"""Wilson intervals, bootstrap defaults, the too-few-studies rule, the weighted mean kappa,
the reader-count effect of the mean consensus, and the one cluster-bootstrap generator."""
import inspect
import math

import numpy as np
import pandas as pd
import pytest

from vfs_utils import agreement as A
from vfs_utils import baseline
from vfs_utils import morphometry as M


def test_wilson_69_of_100_matches_the_published_value_and_the_formula():
    low, high = A.wilson_interval(69, 100)
    # Wilson (1927) score interval, z = 1.959964, by hand:
    z, n, p = 1.959963984540054, 100, 0.69
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (round(low, 3), round(high, 3)) == (0.594, 0.772)


def test_wilson_edges():
    low, high = A.wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12)
    assert high == pytest.approx(0.2775, abs=1e-4)          # z^2 / (n + z^2)
    assert all(math.isnan(v) for v in A.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        A.wilson_interval(11, 10)


@pytest.mark.parametrize("fn", [A.bootstrap_groups, A.group_weights, baseline.bootstrap_ci,
                                baseline.paired_bootstrap, baseline.evaluate,
                                baseline.evaluation.summarize, baseline.leakage, A.grade_agreement,
                                A.grade_alpha])
def test_every_bootstrap_default_is_at_least_1000(fn):
    assert inspect.signature(fn).parameters["n_boot"].default >= 1000


def test_fewer_than_ten_studies_give_no_interval():
    rng = np.random.default_rng(0)
    values = rng.normal(size=90)
    groups = np.repeat(np.arange(9), 10)                    # 9 studies
    est, low, high = A.bootstrap_groups(lambda i: float(values[i].mean()), groups)
    assert est == pytest.approx(values.mean()) and math.isnan(low) and math.isnan(high)
    groups10 = np.repeat(np.arange(10), 9)                  # 10 studies
    _, low, high = A.bootstrap_groups(lambda i: float(values[i].mean()), groups10)
    assert low < values.mean() < high
    y = np.tile([True, False], 45)
    assert math.isnan(baseline.bootstrap_ci(y, values, groups)[1])
    assert math.isnan(baseline.paired_bootstrap(y, values, -values, groups)[1])


def _two_pair_table():
    """Experts a-b share 40 vertebrae in 20 studies; a-c share 4 in 2 studies."""
    rows = []
    for s in range(20):
        for v in range(2):
            g = (s + v) % 4
            rows += [("a", s, v, g), ("b", s, v, g if s % 5 else (g + 1) % 4)]
    for s in range(2):
        for v in range(2, 4):
            rows += [("c", s, v, (s + v) % 4), ("a", s, v, (s + v + 1) % 4)]
    t = pd.DataFrame(rows, columns=["expert", "s", "vertebra_id", "g"])
    t["folder"] = "S" + t["s"].astype(str)
    t["file"] = t["folder"] + ".json"
    t["grade"] = t["g"].astype("Int64")
    return t


def test_pairwise_table_says_too_few_studies_and_mean_kappa_is_weighted_by_vertebrae():
    t = _two_pair_table()
    ag = A.grade_agreement(t, seed=0)
    pw = ag.pairwise.set_index(["expert_a", "expert_b"])
    assert pw.loc[("a", "c"), "interval"] == A.TOO_FEW == "too few studies"
    assert math.isnan(pw.loc[("a", "c"), "ci_low"])
    assert pw.loc[("a", "b"), "interval"].startswith("[")
    k_ab, k_ac = pw.loc[("a", "b"), "kappa"], pw.loc[("a", "c"), "kappa"]
    # by hand: (40 k_ab + 4 k_ac) / 44, not (k_ab + k_ac) / 2
    assert ag.mean_kappa == pytest.approx((40 * k_ab + 4 * k_ac) / 44)
    assert ag.mean_kappa != pytest.approx((k_ab + k_ac) / 2)
    assert A.mean_pairwise_kappa([0.8, 0.2, np.nan], [30, 10, 5]) == pytest.approx(0.65)


def test_agreement_has_one_home():
    for name in ("fleiss_kappa", "agreement", "agreement_statistics", "compare_rounds",
                 "grade_flip_rate"):
        assert not hasattr(M, name)
    # Fleiss (1971)-style table by hand: 2 items, 3 raters, 2 categories
    # P_1 = (9 - 3) / 6 = 1, P_2 = (1 + 4 - 3) / 6 = 1/3; p = (4/6, 2/6); Pe = 5/9
    assert A.fleiss_kappa([[3, 0], [1, 2]]) == pytest.approx((2 / 3 - 5 / 9) / (1 - 5 / 9))


def test_group_weights_draw_whole_groups_and_is_the_generator_of_bootstrap_ci():
    groups = np.repeat(["a", "b", "c"], [2, 3, 1])
    w = np.concatenate(list(A.group_weights(groups, 600, 0, chunk=250)))
    assert w.shape == (600, 6)
    assert (w.sum(axis=1) == np.repeat([1, 1, 1], [2, 3, 1]) @ w.T).all()
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 2] == w[:, 4]).all()   # a group moves whole
    # each replicate draws 3 groups: the weights of one unit per group sum to 3
    assert (w[:, 0] + w[:, 2] + w[:, 5] == 3).all()
    assert not hasattr(baseline.evaluation, "_group_weights")


def test_rate_by_readers_drops_readers_from_the_same_vertebrae():
    # two vertebrae read by three experts; losses around the 20 % cut-off
    losses = {("S1", 0): [0.32, 0.06, 0.15], ("S1", 1): [0.22, 0.21, 0.05]}
    rows = [{"folder": f, "file": f + ".json", "vertebra_id": v, "expert": f"e{i}",
             "height_loss": x} for (f, v), xs in losses.items() for i, x in enumerate(xs)]
    rows.append({"folder": "S2", "file": "S2.json", "vertebra_id": 0, "expert": "e0",
                 "height_loss": 0.5})                                # one reader: left out
    got = M.rate_by_readers(pd.DataFrame(rows))
    # one reader: 0.32, 0.22, 0.21 of six are >= 0.20 -> 3/6
    # pairs: (.19, .235, .105) and (.215, .135, .13) -> 2/6; all three: .177, .16 -> 0
    assert got.tolist() == pytest.approx([3 / 6, 2 / 6, 0.0])
    assert got.attrs["vertebrae"] == 2


def test_every_curve_of_a_classifier_figure_gets_its_own_colour_and_deformity_labels():
    from vfs_utils import plotting

    models = ["logistic", "boosting", "prevalence", "image height loss (rule)",
              "one annotator vs others", "image's annotator vs others"]
    curves = pd.DataFrame({"model": np.repeat(models, 2), "kind": "curve",
                           "fpr": np.tile([0.0, 1.0], 6), "tpr": np.tile([0.0, 1.0], 6)})
    ax = plotting.plot_roc(curves)
    colours = [ln.get_color() for ln in ax.get_lines() if ln.get_label() in models]
    assert len(colours) == 6 and len(set(colours)) == 6
    cal = pd.DataFrame({"model": ["logistic"] * 2, "mean_predicted": [0.2, 0.8],
                        "fraction_positive": [0.1, 0.9], "low": [0.0, 0.7], "high": [0.3, 1.0]})
    ax = plotting.plot_calibration(cal)
    assert "deformity" in ax.get_ylabel() and "fractur" not in ax.get_ylabel()


def test_brier_score_by_hand_and_patient_calibration():
    pred = pd.DataFrame({"model": "m", "target": "t", "group": ["a", "a", "b", "c"],
                         "unit": ["a", "a", "b", "c"], "label": [True, False, False, True],
                         "score": [0.9, 0.2, 0.4, 0.6]})
    b = baseline.brier_scores(pred, "t", n_boot=0).set_index("level")
    # vertebra: (0.01 + 0.04 + 0.16 + 0.16) / 4; patient (max score, any label):
    # a (0.9, True) 0.01, b (0.4, False) 0.16, c (0.6, True) 0.16 -> 0.33 / 3
    assert b.loc["vertebra", "brier"] == pytest.approx(0.37 / 4)
    assert b.loc["patient", "brier"] == pytest.approx(0.33 / 3)
    assert b.loc["patient", "no_skill"] == pytest.approx(2 / 3 * 1 / 3)
    cal = baseline.calibration_curves(pred, "t", models=("m",), n_bins=3, level="patient")
    assert cal["n"].sum() == 3
    assert ((cal["low"] <= cal["fraction_positive"]) & (cal["fraction_positive"] <= cal["high"])
            ).all()


def test_calibration_bins_are_those_of_sklearn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(3)
    p = rng.random(300)
    y = rng.random(300) < p
    pred = pd.DataFrame({"model": "m", "target": "t", "group": np.arange(300) // 3,
                         "unit": np.arange(300) // 3, "label": y, "score": p})
    cal = baseline.calibration_curves(pred, "t", models=("m",))
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="quantile")
    np.testing.assert_allclose(cal["fraction_positive"], frac)
    np.testing.assert_allclose(cal["mean_predicted"], mean)
    assert cal["n"].sum() == 300


def test_prevalence_intervals_wilson_for_patients_bootstrap_for_vertebrae():
    assert inspect.signature(M.prevalence_intervals).parameters["n_boot"].default >= 1000
    # 30 patients, 3 vertebrae each; patients 0-8 have one vertebra graded 1
    rows = [{"folder": f"P{p}", "level": lv, "grade": int(p < 9 and lv == "Th7")}
            for p in range(30) for lv in ("Th6", "Th7", "Th8")]
    c = pd.DataFrame(rows)
    c["grade"] = c["grade"].astype("Int64")
    got = M.prevalence_intervals(c, {"rule": "grade"}, seed=0).loc["rule"]
    assert got["patients_positive"] == 9 and got["patient_rate"] == pytest.approx(0.3)
    assert (got["patient_lo"], got["patient_hi"]) == pytest.approx(A.wilson_interval(9, 30))
    assert got["vertebra_rate"] == pytest.approx(9 / 90)
    assert got["vertebra_lo"] < 0.1 < got["vertebra_hi"]
    levels = M.level_rates(c, {"rule": "grade"}).set_index("level")
    assert levels.loc["Th7", ["n", "positives"]].tolist() == [30, 9]
    assert (levels.loc["Th7", "low"], levels.loc["Th7", "high"]) == pytest.approx(
        A.wilson_interval(9, 30))
    assert levels.index.tolist() == ["Th6", "Th7", "Th8"]          # spine order


def test_distinct_readings_drops_copies_across_rounds_only():
    base = {"folder": "S1", "ha": 20.0, "hm": 18.0, "hp": 21.0, "centre_row": 300.0,
            "centre_col": 200.0, "centre_slice": 50.0}
    t = pd.DataFrame([{**base, "version": "v1", "expert": "expert0"},
                      {**base, "version": "v2", "expert": "expert1"},          # a copy
                      {**base, "version": "v2", "expert": "expert2", "hm": 17.5},
                      {**base, "version": "v2", "expert": "expert1", "folder": "S2"}])
    got = M.distinct_readings(t)
    assert got.index.tolist() == [0, 2, 3]


def test_flip_rate_axis_scale_puts_the_noise_on_one_axis():
    # one reading of a box: pairs along the slice axis, so row noise hardly changes heights
    pts = np.array([[[10, 5, 0], [10, 5, 20], [25, 5, 0], [25, 5, 20], [40, 5, 0],
                     [40, 5, 20]]], float).repeat(200, axis=0)
    both = A.grade_flip_rate(pts, (1, 1, 1), sigmas_mm=(2.0,), n_draws=5, seed=0)
    same = A.grade_flip_rate(pts, (1, 1, 1), sigmas_mm=(2.0,), n_draws=5, seed=0,
                             axis_scale=(1.0, 1.0))
    assert both["flip_rate"].iloc[0] == same["flip_rate"].iloc[0]
    row_only = A.grade_flip_rate(pts, (1, 1, 1), sigmas_mm=(2.0,), n_draws=5, seed=0,
                                 axis_scale=(1.0, 0.0))
    slice_only = A.grade_flip_rate(pts, (1, 1, 1), sigmas_mm=(2.0,), n_draws=5, seed=0,
                                   axis_scale=(0.0, 1.0))
    # row noise lengthens a 20-voxel height only to second order (sqrt(20^2 + d^2)), far
    # inside the 20 % band; slice noise changes a height one for one
    assert row_only["flip_rate"].iloc[0] == 0.0
    assert slice_only["flip_rate"].iloc[0] > 0.05


def test_bland_altman_limits_carry_their_own_interval():
    a = np.array([1.0, 2.0, 4.0, 7.0, 3.0])
    b = np.array([0.0, 2.5, 3.0, 6.0, 3.5])
    got = A.bland_altman(a, b)
    d = a - b
    sd = d.std(ddof=1)
    se = sd * math.sqrt(3 / 5)                        # Bland and Altman (1986), section 5
    assert got["limit_se"] == pytest.approx(se)
    assert got["upper_lo"] == pytest.approx(d.mean() + 1.96 * sd - 1.959964 * se, abs=1e-5)
    assert got["lower_hi"] == pytest.approx(d.mean() - 1.96 * sd + 1.959964 * se, abs=1e-5)

"""Tests of vfs_utils.agreement and of the reference, SD-score and consensus steps of morphometry.

Expected values come from the literature (Krippendorff 2011, Shrout and Fleiss 1979), from
independent implementations (the ``krippendorff`` package, scikit-learn) or from numpy by hand.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vfs_utils import agreement as A
from vfs_utils import morphometry as M

NAN = np.nan

#: Krippendorff K (2011) Computing Krippendorff's Alpha-Reliability, the 4 observers x 12
#: units example with missing values: nominal alpha 0.743, interval alpha 0.849.
KRIPPENDORFF_2011 = np.array([
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
])

#: Shrout PE, Fleiss JL (1979) Psychol Bull 86:420-428, Table 2: 6 targets x 4 judges;
#: ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
                 [6, 2, 4, 7]]


# --------------------------------------------------------------------------- alpha
def test_alpha_reproduces_krippendorffs_worked_example():
    assert A.krippendorff_alpha(KRIPPENDORFF_2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert A.krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)
    # interval from categories (coincidence matrix) = interval from sums of squares
    assert A.krippendorff_alpha(KRIPPENDORFF_2011, "interval", categories=[1, 2, 3, 4, 5]) == \
        pytest.approx(A.krippendorff_alpha(KRIPPENDORFF_2011, "interval"), rel=1e-12)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_matches_the_krippendorff_package_with_missing_readers(level, seed):
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, 60)
    data = np.clip(truth + rng.integers(-1, 2, (4, 60)) * (rng.random((4, 60)) < 0.3), 0, 3)
    data = data.astype(float)
    data[rng.random((4, 60)) < 0.3] = np.nan
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level,
                                  value_domain=[0, 1, 2, 3] if level != "interval" else None)
    got = A.krippendorff_alpha(data, level, categories=None if level == "interval"
                               else [0, 1, 2, 3])
    assert got == pytest.approx(expected, rel=1e-10)


def test_alpha_of_continuous_values_matches_the_package():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(5)
    data = rng.normal(0.15, 0.08, 40) + rng.normal(0, 0.03, (3, 40))
    data[0, :7] = np.nan
    assert A.krippendorff_alpha(data, "interval") == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="interval"), rel=1e-10)


def test_alpha_edge_cases():
    assert np.isnan(A.krippendorff_alpha([[1, NAN], [NAN, 2]]))           # nothing pairable
    assert np.isnan(A.krippendorff_alpha([[1, 1], [1, 1]]))               # no variation
    assert A.krippendorff_alpha([[0, 1, 2], [0, 1, 2]], "ordinal") == 1.0
    with pytest.raises(ValueError, match="categories"):
        A.krippendorff_alpha([[0, 5], [0, 5]], "ordinal", categories=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="level"):
        A.krippendorff_alpha([[0, 1]], "ratio")


# --------------------------------------------------------------------------- kappa, ICC, BA
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_kappa_matches_scikit_learn(weights):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, 200))
    assert A.cohen_kappa(a, b, categories=[0, 1, 2, 3], weights=weights) == pytest.approx(
        cohen_kappa_score(a, b, labels=[0, 1, 2, 3], weights=weights), rel=1e-12)
    with pytest.raises(ValueError, match="categories"):
        A.cohen_kappa([0, 7], [0, 1], categories=[0, 1, 2, 3])


def test_icc_reproduces_shrout_and_fleiss():
    assert round(A.icc(SHROUT_FLEISS, "1,1"), 2) == 0.17
    assert round(A.icc(SHROUT_FLEISS, "2,1"), 2) == 0.29
    assert round(A.icc(SHROUT_FLEISS, "3,1"), 2) == 0.71
    with pytest.raises(ValueError, match="complete"):
        A.icc([[1, np.nan], [2, 3]])


def test_bland_altman_by_hand():
    a, b = np.array([10.0, 12.0, 11.0, 13.0]), np.array([9.0, 12.5, 10.0, 12.0])
    d = a - b                                              # 1, -0.5, 1, 1
    got = A.bland_altman(a, b)
    assert got["bias"] == pytest.approx(0.625)
    sd = np.sqrt(np.sum((d - 0.625) ** 2) / 3)
    assert got["sd"] == pytest.approx(sd)
    assert (got["lower"], got["upper"]) == pytest.approx((0.625 - 1.96 * sd, 0.625 + 1.96 * sd))


def test_bootstrap_resamples_whole_groups_and_is_reproducible():
    values = np.repeat([1.0, 2.0, 3.0, 10.0], 5)          # constant within each group
    groups = np.repeat(["a", "b", "c", "d"], 5)
    seen = []

    def stat(idx):
        seen.append(idx)
        return float(values[idx].mean())

    est, low, high = A.bootstrap_groups(stat, groups, n_boot=300, seed=1, min_groups=2)
    assert est == pytest.approx(4.0)
    assert low <= est <= high and low >= 1.0 and high <= 10.0
    # every resample holds whole groups: 4 groups x 5 units
    assert all(len(i) == 20 and all(np.sum(np.isin(i, np.flatnonzero(groups == g))) % 5 == 0
                                    for g in "abcd") for i in seen[1:])
    assert A.bootstrap_groups(lambda i: float(values[i].mean()), groups, n_boot=300, seed=1,
                              min_groups=2) == \
        (est, low, high)


# --------------------------------------------------------------------------- reference, SD scores
def _ratio_table(rng, level_means, n=200, sd=0.05, outliers=10):
    rows = []
    for level, mean in level_means.items():
        for i in range(n):
            w, b, c = rng.normal(mean, sd), rng.normal(0.85, sd / 2), rng.normal(1.0, sd / 2)
            if i < outliers:
                w = mean - 0.5                              # a deformed vertebra, far out
            rows.append({"level": level, "wedge_index": w, "biconcave_index": b,
                         "crush_index": c})
    return pd.DataFrame(rows)


def test_level_reference_trims_the_deformed_and_recovers_the_normal_shape():
    rng = np.random.default_rng(0)
    t = _ratio_table(rng, {"Th7": 0.86, "L1": 0.94})
    ref = M.level_reference(t)
    assert list(ref.index) == ["Th7", "L1"]                  # LEVELS order
    for level in ("Th7", "L1"):
        sub = t[t["level"] == level]
        normal = sub.iloc[10:]
        # expected: the plain mean/SD of the non-deformed readings, trimmed the same way
        assert ref.loc[level, "n"] == 200
        assert ref.loc[level, "n_normal"] <= 190
        assert ref.loc[level, "mean_wedge_index"] == pytest.approx(
            normal["wedge_index"].mean(), abs=0.005)
        assert ref.loc[level, "sd_wedge_index"] == pytest.approx(
            normal["wedge_index"].std(), rel=0.1)
    with pytest.raises(ValueError, match="crush_index"):
        M.level_reference(t.drop(columns=["crush_index"]))


def test_sd_scores_and_grades_by_hand():
    ref = pd.DataFrame({"mean_wedge_index": [0.9], "sd_wedge_index": [0.05],
                        "mean_biconcave_index": [0.85], "sd_biconcave_index": [0.04],
                        "mean_crush_index": [1.0], "sd_crush_index": [0.03]},
                       index=pd.Index(["Th8"], name="level"))
    t = pd.DataFrame({"level": ["Th8", "Th8", "Th8", "Th8", "C5"],
                      "wedge_index": [0.9, 0.74, 0.69, 0.9, 0.5],
                      "biconcave_index": [0.85, 0.85, 0.85, 0.73, 0.5],
                      "crush_index": [1.0, np.nan, 1.0, 1.0, 0.5]})
    got = M.sd_scores(t, ref)
    np.testing.assert_allclose(got["z_wedge_index"].iloc[:4], [0, -3.2, -4.2, 0], atol=1e-12)
    np.testing.assert_allclose(got["sd_score"].iloc[:4], [0, -3.2, -4.2, -3.0], atol=1e-12)
    assert got["sd_grade"].tolist()[:4] == [0, 1, 2, 1]      # exactly -3 SD is grade 1
    assert got["sd_grade"].iloc[4] is pd.NA                 # no reference for C5
    assert got["sd_deformity"].tolist() == ["normal", "wedge", "wedge", "biconcave", None]


def test_label_levels_default_is_t4_to_l4():
    t = pd.DataFrame({"level": ["C7", "Th3", "Th4", "Th12", "L4", "L5", None]})
    assert M.label_levels(t)["level"].tolist() == ["Th4", "Th12", "L4"]
    assert len(M.label_levels(t, None)) == 7
    with pytest.raises(ValueError, match="T5"):
        M.label_levels(t, ["T5"])


# --------------------------------------------------------------------------- consensus
def _loss_table(losses: dict, folder="F"):
    rows = []
    for expert, values in losses.items():
        for vid, loss in enumerate(values):
            if loss is None:
                continue
            rows.append({"folder": folder, "file": f"{folder}.json", "expert": expert,
                         "vertebra_id": vid, "height_loss": loss, "level": "Th8"})
    t = pd.DataFrame(rows)
    t["grade"] = M.genant_grade(t["height_loss"])
    return t


def test_consensus_mean_is_the_grade_of_the_mean_loss():
    t = _loss_table({"a": [0.10, 0.18, 0.30, 0.05], "b": [0.30, 0.26, 0.50, None],
                     "c": [None, 0.16, None, None]})
    c = M.consensus(t)
    np.testing.assert_allclose(c["height_loss"], [0.20, 0.20, 0.40, 0.05])
    assert c["grade"].tolist() == [1, 1, 3, 0]
    np.testing.assert_allclose(c["p_deformed"], [0.5, 1 / 3, 1.0, 0.0])
    old = M.consensus(t, method="lower_median")
    assert old["grade"].tolist() == [0, 0, 2, 0]             # min of two; median of three
    with pytest.raises(ValueError, match="method"):
        M.consensus(t, method="max")


def test_consensus_rate_does_not_depend_on_the_number_of_readers():
    # One population of vertebrae (true losses), each reader adding an error of SD 0.04;
    # the same vertebrae read by the first two readers only, or by all three
    # (common random numbers: only the number of readers differs).
    rng = np.random.default_rng(11)
    n = 6000
    truth = np.clip(rng.gamma(2.0, 0.05, n), 0, 0.9)
    readings = truth[:, None] + rng.normal(0, 0.04, (n, 3))
    rates = {}
    for k in (2, 3):
        t = pd.DataFrame({"folder": np.repeat(np.arange(n) // 10, k).astype(str), "file": "x",
                          "expert": np.tile([f"e{j}" for j in range(k)], n),
                          "vertebra_id": np.repeat(np.arange(n), k),
                          "height_loss": readings[:, :k].reshape(-1)})
        t["grade"] = M.genant_grade(t["height_loss"])
        for method in ("mean", "lower_median"):
            c = M.consensus(t, method=method)
            rates[(method, k)] = float(np.mean(c["grade"] >= 1))
        rates[("reader", k)] = float(c["p_deformed"].mean())
        # expected, by numpy: the fraction of single readings graded >= 1
        assert rates[("reader", k)] == pytest.approx(np.mean(readings[:, :k] >= 0.2 - 1e-9))
    # the average reader's rate: the same population, the same rate (binomial noise only)
    assert abs(rates[("reader", 2)] - rates[("reader", 3)]) < 4 * np.sqrt(0.25 / n)
    # the grade of the mean loss: the same up to the smaller noise of a 3-reader mean
    assert abs(rates[("mean", 2)] - rates[("mean", 3)]) < 0.008
    # the lower median: the minimum of two readers is well below the median of three
    assert rates[("lower_median", 3)] - rates[("lower_median", 2)] > 0.015


def test_prevalence_by_hand():
    c = pd.DataFrame({"folder": ["A", "A", "B", "B", "C"], "grade": [0, 2, 0, 1, 0],
                      "sd_grade": [0, 1, 0, 0, pd.NA]})
    c["grade"] = c["grade"].astype("Int64")
    c["sd_grade"] = c["sd_grade"].astype("Int64")
    p = M.prevalence(c, {"qm": "grade", "sd": "sd_grade"})
    assert p.loc["qm", ["vertebrae", "patients"]].tolist() == [5, 3]
    assert p.loc["qm", "vertebrae_ge1"] == pytest.approx(2 / 5)
    assert p.loc["qm", "vertebrae_ge2"] == pytest.approx(1 / 5)
    assert p.loc["qm", "patients_ge1"] == pytest.approx(2 / 3)
    assert p.loc["qm", "patients_ge2"] == pytest.approx(1 / 3)
    assert p.loc["sd", ["vertebrae", "patients"]].tolist() == [4, 2]
    assert p.loc["sd", "patients_ge1"] == pytest.approx(1 / 2)


# --------------------------------------------------------------------------- scatter, agreement
def test_keypoint_scatter_of_two_readers_at_plus_minus_d():
    from test_morphometry import frame_of, vertebra

    base = [vertebra(20, 19, 21, top=10 + 30 * i) for i in range(4)]
    d = 0.5
    up = [v + np.array([0.0, 0.0, d]) for v in base]
    down = [v - np.array([0.0, 0.0, d]) for v in base]
    frame = frame_of({"a": up, "b": down})
    frame["vertebra_id"] = frame["vertebra"]
    sc = M.keypoint_scatter(frame, (0.7, 0.7, 2.0))
    # two values +-d*2 mm around their mean: sample SD = 2 d * 2 mm / sqrt(2)
    assert sc.loc["slice", "sd_mm"] == pytest.approx(np.sqrt(2) * d * 2.0)
    assert sc.loc["row", "sd_mm"] == pytest.approx(0.0)
    assert (sc["vertebrae"] == 4).all() and (sc["readings"] == 8).all()


def test_agreement_statistics_and_bootstrap_intervals():
    rng = np.random.default_rng(2)
    rows = []
    for s in range(30):
        for v in range(8):
            truth = rng.gamma(2.0, 0.06)
            for e in ("a", "b", "c")[: 2 + (s % 2)]:
                loss = truth + rng.normal(0, 0.03)
                rows.append({"folder": f"S{s}", "file": f"S{s}.json", "expert": e,
                             "vertebra_id": v, "height_loss": loss})
    t = pd.DataFrame(rows)
    t["grade"] = M.genant_grade(t["height_loss"])
    stats = A.grade_alpha(t, n_boot=100, seed=0)
    wide = t.pivot_table(index=["folder", "vertebra_id"], columns="expert",
                         values="height_loss").to_numpy().T
    assert stats.loc["alpha, interval height_loss", "estimate"] == pytest.approx(
        A.krippendorff_alpha(wide, "interval"))
    grades = t.assign(g=t["grade"].astype(float)).pivot_table(
        index=["folder", "vertebra_id"], columns="expert", values="g").to_numpy().T
    assert stats.loc["alpha, ordinal grade", "estimate"] == pytest.approx(
        A.krippendorff_alpha(grades, "ordinal", categories=[0, 1, 2, 3]))
    assert (stats["ci_low"] <= stats["estimate"]).all()
    assert (stats["estimate"] <= stats["ci_high"]).all()
    assert (stats["studies"] == 30).all() and (stats["vertebrae"] == 240).all()
    ag = A.grade_agreement(t, n_boot=50)
    assert {"ci_low", "ci_high", "n_studies"} <= set(ag.pairwise.columns)
    ab = ag.pairwise.set_index(["expert_a", "expert_b"]).loc[("a", "b")]
    assert ab["n_studies"] == 30 and ab["ci_low"] <= ab["kappa"] <= ab["ci_high"]

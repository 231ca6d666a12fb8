"""Tests of vfs_utils.baseline.evaluation: grouped folds, bootstrap, reader baseline."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import average_precision_score, roc_auc_score

from vfs_utils import baseline, morphometry
from vfs_utils.baseline import evaluation


class _Recorder(ClassifierMixin, BaseEstimator):
    """Remembers which groups (feature ``f_group``) it was trained and tested on."""

    log: list = []

    def fit(self, X, y):
        self.classes_ = np.array([False, True])
        type(self).log.append(("train", set(np.asarray(X["f_group"]).tolist())))
        return self

    def predict_proba(self, X):
        type(self).log.append(("test", set(np.asarray(X["f_group"]).tolist())))
        return np.tile([0.5, 0.5], (len(X), 1))


def test_no_study_in_training_and_test_of_a_fold(features):
    groups = features["folder"].to_numpy()
    codes = pd.factorize(groups)[0].astype(float)
    X = pd.DataFrame({"f_group": codes, "f_noise": np.zeros(len(codes))})
    _Recorder.log = []
    ev = baseline.evaluate(X, features["label_any"], groups, models={"rec": _Recorder()},
                           n_splits=4, n_boot=10)
    log = _Recorder.log
    assert len(log) == 8
    tested = set()
    for (kind_a, train), (kind_b, test) in zip(log[0::2], log[1::2]):
        assert (kind_a, kind_b) == ("train", "test")
        assert train.isdisjoint(test)
        tested |= test
    assert tested == set(codes.tolist())
    assert ev.predictions.groupby("group")["fold"].nunique().eq(1).all()


def test_classifier_beats_prevalence_on_held_out_phantoms(features):
    ev = baseline.evaluate(features, features[["label_any"]], features["folder"], n_splits=4,
                           n_boot=100)
    s = ev.summary.set_index(["model", "level"])
    logistic = s.loc[("logistic", "vertebra"), "roc_auc"]
    prevalence = s.loc[("prevalence", "vertebra"), "roc_auc"]
    assert logistic > prevalence + 0.2
    assert logistic > 0.8
    assert s.loc[("logistic", "vertebra"), "pr_auc"] > features["label_any"].mean() + 0.2


def test_patient_level_is_max_over_vertebrae():
    pred = pd.DataFrame({
        "model": "m", "target": "t", "row": range(6), "group": list("aabbcc"),
        "unit": list("aabbcc"), "fold": 0,
        "label": [False, True, False, False, False, False],
        "score": [0.1, 0.9, 0.3, 0.2, 0.8, 0.05]})
    pred["predicted"] = pred["score"] >= 0.5
    s = evaluation.summarize(pred, n_boot=20).set_index("level")
    assert s.loc["patient", "n"] == 3 and s.loc["patient", "positives"] == 1
    # patient scores a: 0.9 (pos), b: 0.3, c: 0.8 -> AUC 1; predicted a and c -> 1 TP, 1 FP
    assert s.loc["patient", "roc_auc"] == pytest.approx(1.0)
    assert (s.loc["patient", "tp"], s.loc["patient", "fp"]) == (1, 1)
    assert s.loc["patient", "specificity"] == pytest.approx(0.5)


def test_bootstrap_replicates_equal_sklearn_with_study_weights():
    rng = np.random.default_rng(0)
    n = 60
    y = rng.random(n) < 0.3
    s = np.round(rng.random(n) + y * 0.4, 1)          # ties on purpose
    w = rng.integers(0, 3, size=(5, n)).astype(float)
    pos, neg = evaluation.weighted_curves(y, s, w)
    roc = evaluation.ranked_auc(pos, neg)
    ap = evaluation._average_precision(pos, neg)
    for b in range(5):
        assert roc[b] == pytest.approx(roc_auc_score(y, s, sample_weight=w[b]))
        assert ap[b] == pytest.approx(average_precision_score(y, s, sample_weight=w[b]))


def test_bootstrap_ci_brackets_estimate_and_is_reproducible():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(30), 10)
    y = rng.random(300) < 0.2
    s = y * 0.5 + rng.random(300)
    est, lo, hi = baseline.bootstrap_ci(y, s, groups, n_boot=300, seed=3)
    assert est == pytest.approx(roc_auc_score(y, s))
    assert lo < est < hi
    assert baseline.bootstrap_ci(y, s, groups, n_boot=300, seed=3) == (est, lo, hi)


def test_annotator_baseline_compares_each_expert_with_the_others(studies):
    rd = baseline.annotator_baseline(studies, levels=None)
    # two experts per study, each vertebra read by both: one row per expert per vertebra
    n_readings = sum(len(vs) for s in studies for vs in s.annotation.experts.values())
    assert len(rd) == n_readings * len(baseline.TARGETS)
    assert set(rd["unit"].str.split("/").str[1]) <= {f"expert{i}" for i in range(1, 5)}
    # at the label levels only the T4-L4 readings are compared
    in_levels = sum(v.level in morphometry.LABEL_LEVELS for s in studies
                    for vs in s.annotation.experts.values() for v in vs)
    assert len(baseline.annotator_baseline(studies)) == in_levels * len(baseline.TARGETS)


def _predictions() -> pd.DataFrame:
    """Two studies, a model and the reader, target label_any; scores by hand."""
    rows = []
    for unit, (labels, scores) in {"A": ([1, 0, 0], [0.9, 0.2, 0.4]),
                                   "B": ([0, 0, 1], [0.1, 0.3, 0.6])}.items():
        for i, (y, s) in enumerate(zip(labels, scores)):
            for model, score, pred in (("logistic", s, s >= 0.5),
                                       (baseline.ANNOTATOR, s, bool(y) if i else not y)):
                rows.append({"model": model, "target": "label_any", "row": i, "group": unit,
                             "unit": unit, "fold": 0, "label": bool(y), "score": score,
                             "predicted": pred})
    return pd.DataFrame(rows)


def test_roc_curves_are_sklearns_and_the_reader_point_is_its_calls():
    from sklearn.metrics import roc_curve

    pred = _predictions()
    curves = baseline.roc_curves(pred, "label_any", "vertebra")
    part = pred[pred["model"] == "logistic"]
    fpr, tpr, _ = roc_curve(part["label"], part["score"])
    mine = curves[(curves["model"] == "logistic") & (curves["kind"] == "curve")]
    np.testing.assert_allclose(mine["fpr"], fpr)
    np.testing.assert_allclose(mine["tpr"], tpr)
    point = curves[curves["kind"] == "operating point"]
    # reader: of 2 positives 1 called (row 0 of A is called negative), of 4 negatives 1 called
    assert point[["fpr", "tpr"]].to_numpy().tolist() == [[0.25, 0.5]]
    patient = baseline.roc_curves(pred, "label_any", "patient")
    assert patient.empty              # both patients are positive: no ROC curve at that level


def test_roc_figure_draws_the_baseline_tables():
    import matplotlib.pyplot as plt

    from vfs_utils import plotting

    pred = _predictions()
    title = f"ROC, vertebra level, {baseline.target_title('label_any')}"
    ax = plotting.plot_roc(baseline.roc_curves(pred, "label_any", "vertebra"), title=title)
    assert ax.get_title() == "ROC, vertebra level, consensus QM grade ≥ 1"
    assert {ln.get_label() for ln in ax.get_lines()} >= {"logistic", baseline.ANNOTATOR}
    assert plotting.OKABE_ITO["blue"] == "#0072B2"
    plt.close("all")


def test_calibration_curves_and_worst_errors_from_hand_made_predictions():
    pred = _predictions()
    curves = baseline.calibration_curves(pred, "label_any", models=("logistic",), n_bins=2)
    # quantile bins of the 6 scores: {0.1, 0.2, 0.3} (no positive), {0.4, 0.6, 0.9} (2 of 3)
    np.testing.assert_allclose(curves["mean_predicted"], [0.2, 19 / 30])
    np.testing.assert_allclose(curves["fraction_positive"], [0.0, 2 / 3])
    features = pd.DataFrame({"folder": ["STUDY-A", "STUDY-A", "STUDY-B"],
                             "level": ["Th7", None, "L1"], "vertebra_id": [0, 1, 2],
                             "grade": [2, 0, 1]})
    worst = baseline.worst_errors(pred[pred["unit"] == "B"], features, model="logistic", n=1)
    # B: the positive (row 2, score 0.6) is the lowest-scored positive; the false alarm is
    # the highest-scored negative (row 1, score 0.3)
    assert worst[["error", "row"]].to_numpy().tolist() == [["missed", 2], ["false alarm", 1]]
    assert worst["level"].tolist() == ["L1", "#1"]
    assert worst["title"].iloc[0].startswith("missed: …STUDY-B L1")


def test_paired_bootstrap_is_the_difference_of_sklearn_aucs():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(25), 6)
    y = rng.random(150) < 0.3
    a = y * 0.3 + rng.random(150)
    b = y * 0.9 + rng.random(150)
    d, lo, hi = baseline.paired_bootstrap(y, a, b, groups, n_boot=300, seed=1)
    assert d == pytest.approx(roc_auc_score(y, b) - roc_auc_score(y, a))
    assert 0 < lo < d < hi
    assert baseline.paired_bootstrap(y, a, a, groups, n_boot=50) == (0.0, 0.0, 0.0)


def test_leakage_shows_a_patient_look_that_only_ungrouped_folds_can_learn():
    from sklearn.neighbors import KNeighborsClassifier

    # 40 patients, 10 vertebrae each: a patient's label and a random 8-d "look" (scanner,
    # bone density) shared by all their vertebrae; nothing in a vertebra tells its label
    rng = np.random.default_rng(0)
    n_pat, n_vert = 40, 10
    look = rng.normal(size=(n_pat, 8))
    sick = rng.random(n_pat) < 0.5
    groups = np.repeat(np.arange(n_pat), n_vert)
    X = pd.DataFrame(look[groups] + 0.05 * rng.normal(size=(n_pat * n_vert, 8)),
                     columns=[f"f_{i}" for i in range(8)])
    y = sick[groups] & (rng.random(n_pat * n_vert) < 0.5)
    out = baseline.leakage(X, y, groups, KNeighborsClassifier(n_neighbors=5), n_boot=200)
    s = out.summary.set_index(["level", "split"])
    grouped = s.loc[("vertebra", "GroupKFold by patient"), "roc_auc"]
    shuffled = s.loc[("vertebra", "KFold over vertebrae"), "roc_auc"]
    gap = s.loc[("vertebra", "gap (KFold - GroupKFold)")]
    assert grouped < 0.65 and shuffled > 0.75
    assert gap["roc_auc"] == pytest.approx(shuffled - grouped)
    assert gap["roc_auc_lo"] > 0
    assert s.loc[("patient", "GroupKFold by patient"), "n"] == n_pat
    # the grouped out-of-fold scores never come from a model that saw the patient
    pred = out.predictions
    assert set(pred["split"]) == {"GroupKFold by patient", "KFold over vertebrae"}


def test_annotator_baseline_without_image_expert_is_empty_and_typed(studies, features):
    # sampled studies are rendered from the true spine: no image expert, so no "image" turn
    empty = baseline.annotator_baseline(studies, turns="image")
    assert empty.empty and empty["score"].dtype == float and empty["label"].dtype == bool
    ev = baseline.evaluate(features, features[["label_moderate"]], features["folder"],
                           models={"prevalence": baseline.make_models()["prevalence"]},
                           n_boot=20, extra_predictions=empty)
    worst = baseline.worst_errors(ev.predictions, features, model="prevalence",
                                  target="label_moderate", n=1)
    assert len(worst) == 2


def test_prevalence_model_scores_each_fold_with_its_training_prevalence():
    # the no-skill model's out-of-fold score is its fold's training prevalence, so pooled
    # over folds its ROC AUC falls below 0.5: a fold with many positives is scored lowest
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 10)
    sick = rng.random(40) < 0.5
    y = rng.random(400) < np.where(sick[groups], 0.4, 0.05)
    X = pd.DataFrame({"f_x": rng.normal(size=400)})
    ev = baseline.evaluate(X, pd.DataFrame({"t": y}), groups, n_boot=10,
                           models={"prevalence": baseline.make_models()["prevalence"]})
    pred = ev.predictions.query("model == 'prevalence'")
    for k, part in pred.groupby("fold"):
        training = y[pred["fold"].to_numpy() != k]
        assert np.allclose(part["score"], training.mean())
    auc = ev.summary.set_index(["model", "level"]).loc[("prevalence", "vertebra"), "roc_auc"]
    assert auc == pytest.approx(roc_auc_score(y[pred["row"]], pred["score"]))
    assert auc < 0.5

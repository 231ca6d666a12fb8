"""Tests of vfs_utils.baseline: features, grouped evaluation, bootstrap, skops, `vfs predict`."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import average_precision_score, roc_auc_score

from vfs_utils import baseline, phantom
from vfs_utils.annotation import Annotation
from vfs_utils.cli import main
from vfs_utils.errors import DataNotFoundError


# --------------------------------------------------------------------------- helpers
def fractured_studies(n: int, seed: int = 11) -> list[baseline.Study]:
    """Sampled phantom spines, every one with two moderate-to-severe fractures."""
    studies = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        kinds = [("wedge", 3), ("biconcave", 2)] if i % 2 else [("crush", 3), ("wedge", 2)]
        truth = phantom.sample_spine(rng, n_vertebrae=12, fractures=kinds,
                                     folder=f"TEST{i:02d}", series_uid=f"1.2.3.{seed}.{i}")
        readings = phantom.sample_readings(truth, np.random.default_rng([seed, i, 1]),
                                           n_experts=2, noise_mm=0.3, p_missing_end=0.0)
        ann = Annotation(truth.folder, truth.series_uid, "v2", readings)
        studies.append(baseline.Study(ann, tuple(truth.geometry.spacing), "sampled", None, truth,
                                      seed))
    return studies


@pytest.fixture(scope="module")
def studies() -> list[baseline.Study]:
    return fractured_studies(8)


@pytest.fixture(scope="module")
def features(studies) -> pd.DataFrame:
    return baseline.dataset_features(studies)


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """A one-study phantom dataset written to disk (DICOM series and annotations)."""
    return phantom.build_dataset(tmp_path_factory.mktemp("baseline") / "ds", studies=1,
                                 image_size=192, seed=3)


def block_volume(height_mm: tuple[float, float], depth_mm: float = 30.0,
                 spacing=(0.5, 1.0, 0.5)) -> tuple[np.ndarray, np.ndarray]:
    """A bone block (250 HU in 20 HU tissue), anterior height height_mm[0] tapering linearly
    to the posterior height height_mm[1]; returns (volume, centre voxel)."""
    sp = np.asarray(spacing)
    shape = (200, 21, 200)
    r = np.arange(shape[0]) * sp[0]
    s = np.arange(shape[2]) * sp[2]
    centre_mm = np.array([50.0, 10.0, 50.0])
    u = (r - centre_mm[0])[:, None]                     # posterior distance from centre
    v = (s - centre_mm[2])[None, :]                     # feet-ward distance
    frac = np.clip((u + depth_mm / 2) / depth_mm, 0, 1)
    half = 0.5 * (height_mm[0] + (height_mm[1] - height_mm[0]) * frac)
    inside = (np.abs(u) <= depth_mm / 2) & (np.abs(v) <= half)
    plane = np.where(inside, 250.0, 20.0)
    vol = np.repeat(plane[:, None, :], shape[1], axis=1).astype(np.float32)
    return vol, centre_mm / sp


# --------------------------------------------------------------------------- features
def test_heights_measured_from_a_block_image():
    vol, c = block_volume((20.0, 20.0))
    f = baseline.vertebra_features(vol, c[None, :], (0.5, 1.0, 0.5), threshold_hu=135.0)
    assert f.loc[0, "f_depth"] == pytest.approx(30.0, abs=1.0)
    for col in ("f_h_ant", "f_h_mid", "f_h_post"):
        assert f.loc[0, col] == pytest.approx(20.0, abs=1.0)
    assert f.loc[0, "f_loss"] == pytest.approx(0.0, abs=0.06)


def test_wedge_block_gives_the_wedge_ratio():
    # anterior height 12 mm, posterior 24 mm; measured at 20 % and 80 % of the depth
    vol, c = block_volume((12.0, 24.0))
    f = baseline.vertebra_features(vol, c[None, :], (0.5, 1.0, 0.5), threshold_hu=135.0)
    expected_ant = 12.0 + 12.0 * 0.2
    expected_post = 12.0 + 12.0 * 0.8
    assert f.loc[0, "f_h_ant"] == pytest.approx(expected_ant, abs=1.5)
    assert f.loc[0, "f_h_post"] == pytest.approx(expected_post, abs=1.5)
    assert f.loc[0, "f_ratio_ant_post"] == pytest.approx(expected_ant / expected_post, abs=0.08)


def test_features_use_only_centres_and_image(studies):
    # the same image with readings whose heights are changed (centres kept) gives the same features
    study = studies[0]
    table = baseline.vertebra_table(study.annotation, study.spacing)
    feats = baseline.study_features(study)
    squashed = {}
    for expert, vs in study.annotation.experts.items():
        out = []
        for v in vs:
            pts = v.points.copy()
            centre = pts.mean(axis=0)
            pts = centre + 0.5 * (pts - centre)          # halve every height, same centre
            out.append(type(v)(pts, v.level))
        squashed[expert] = tuple(out)
    ann = Annotation(study.annotation.folder, study.annotation.series_uid, "v2", squashed)
    other = baseline.study_features(baseline.Study(ann, study.spacing, study.kind, None,
                                                   study.truth, study.seed))
    cols = baseline.feature_columns(feats)
    assert len(cols) > 50
    pd.testing.assert_frame_equal(feats[cols], other[cols])
    assert len(feats) == len(table)


def test_dataset_features_deterministic_and_executor_independent(studies, features):
    with ThreadPoolExecutor(2) as ex:
        again = baseline.dataset_features(studies[:3], executor=ex)
    first = features[features["folder"].isin([s.folder for s in studies[:3]])]
    pd.testing.assert_frame_equal(first.reset_index(drop=True), again)


def test_labels_are_the_consensus_of_the_readings(studies, features):
    # every study has a wedge grade 3 and a second fracture of grade >= 2 in the truth
    per_study = features.groupby("folder")["label_moderate"].sum()
    assert (per_study >= 1).all()
    assert features["label_any"].sum() >= len(studies)


# --------------------------------------------------------------------------- evaluation
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
    s = baseline.summarize(pred, n_boot=20).set_index("level")
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
    pos, neg = baseline._weighted_curves(y, s, w)
    roc = baseline._roc_auc(pos, neg)
    ap = baseline._average_precision(pos, neg)
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


def test_reader_baseline_compares_each_expert_with_the_others(studies):
    rd = baseline.reader_baseline(studies)
    # two experts per study, each vertebra read by both: one row per expert per vertebra
    n_readings = sum(len(vs) for s in studies for vs in s.annotation.experts.values())
    assert len(rd) == n_readings * len(baseline.TARGETS)
    assert set(rd["unit"].str.split("/").str[1]) <= {f"expert{i}" for i in range(1, 5)}


# --------------------------------------------------------------------------- persistence
def test_save_load_predict_round_trip(tmp_path, features):
    for name in ("logistic", "boosting"):
        model = baseline.train_model(features, features["label_any"], name)
        path = baseline.save_model(model, tmp_path / f"{name}.skops")
        assert not list(tmp_path.glob(".*partial*"))
        loaded = baseline.load_model(path)
        X = features[baseline.feature_columns(features)]
        np.testing.assert_array_equal(model.predict_proba(X), loaded.predict_proba(X))


def test_load_model_refuses_types_outside_the_allow_list(tmp_path):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.linear_model import LogisticRegression

    import operator

    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    model.fit(np.arange(10.0)[:, None], np.arange(10) > 4)
    sio.dump(model, tmp_path / "odd.skops")
    with pytest.raises(baseline.ModelFileError, match="_operator.neg"):
        baseline.load_model(tmp_path / "odd.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip file")
    with pytest.raises(baseline.ModelFileError, match="not a skops"):
        baseline.load_model(tmp_path / "junk.skops")
    with pytest.raises(DataNotFoundError):
        baseline.load_model(tmp_path / "missing.skops")


# --------------------------------------------------------------------------- `vfs predict`
def test_vfs_predict_prints_one_row_per_vertebra(tmp_path, features, small_root, capsys):
    root = small_root
    ann_file = next((root / "annotation_v2").glob("*.json"))
    levels = {v["type"] for vs in json.loads(ann_file.read_text())["Annotation"].values()
              for v in vs}
    model = baseline.save_model(baseline.train_model(features, features["label_any"]),
                                tmp_path / "model.skops")
    status = main(["predict", "--root", str(root), "--annotation", str(ann_file),
                   "--model", str(model), "--format", "csv"])
    out = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert out[0].split(",")[:3] == ["folder", "vertebra_id", "level"]
    assert len(out) == 1 + len(levels)
    table = pd.read_csv(pd.io.common.StringIO("\n".join(out)))
    assert set(table["level"]) == levels
    assert table["probability"].between(0, 1).all()


def test_predict_study_equals_features_of_the_loaded_series(features, small_root):
    root = small_root
    ann_file = next((root / "annotation_v2").glob("*.json"))
    model = baseline.train_model(features, features["label_any"], "logistic")
    out = baseline.predict_study(root, ann_file, model=model)
    studies = baseline.load_studies(ann_file, root=root)
    feats = baseline.dataset_features(studies)
    expected = model.predict_proba(feats[baseline.feature_columns(feats)])[:, 1]
    np.testing.assert_allclose(out["probability"].to_numpy(), expected)
    assert studies[0].kind == "image"


def test_load_studies_tops_up_with_sampled_spines(tmp_path, small_root):
    root = small_root
    got = baseline.load_studies(root / "annotation_v2", root=root, min_studies=3)
    assert [s.kind for s in got] == ["image", "sampled", "sampled"]
    assert len({s.folder for s in got}) == 3
    with pytest.raises(DataNotFoundError):
        baseline.load_studies(tmp_path / "empty-folder-that-is-missing")

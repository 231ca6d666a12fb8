"""Tests of vfs_utils.baseline.models: skops persistence, predict_study, `vfs predict`."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from vfs_utils import baseline
from vfs_utils.cli import main
from vfs_utils.errors import DataNotFoundError, ModelFileError


def test_save_load_predict_round_trip(tmp_path, features):
    for name in ("logistic", "boosting"):
        model = baseline.train_model(features, features["label_any"], name)
        path = baseline.save_model(model, tmp_path / f"{name}.skops")
        assert not list(tmp_path.glob(".*partial*"))
        loaded = baseline.load_model(path)
        X = features[baseline.feature_columns(features)]
        np.testing.assert_array_equal(model.predict_proba(X), loaded.predict_proba(X))


def test_load_model_refuses_types_outside_the_allow_list(tmp_path):
    import operator

    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression())
    model.fit(np.arange(10.0)[:, None], np.arange(10) > 4)
    sio.dump(model, tmp_path / "odd.skops")
    with pytest.raises(ModelFileError, match="_operator.neg"):
        baseline.load_model(tmp_path / "odd.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="not a skops"):
        baseline.load_model(tmp_path / "junk.skops")
    with pytest.raises(DataNotFoundError):
        baseline.load_model(tmp_path / "missing.skops")


def test_vfs_predict_prints_one_row_per_vertebra(tmp_path, features, tiny_dataset, capsys):
    root = tiny_dataset
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


def test_predict_study_equals_features_of_the_loaded_series(features, tiny_dataset):
    root = tiny_dataset
    ann_file = next((root / "annotation_v2").glob("*.json"))
    model = baseline.train_model(features, features["label_any"], "logistic")
    out = baseline.predict_study(root, ann_file, model=model)
    studies = baseline.load_studies(ann_file, root=root)
    feats = baseline.dataset_features(studies, levels=None)     # every vertebra, as predicted
    expected = model.predict_proba(feats[baseline.feature_columns(feats)])[:, 1]
    np.testing.assert_allclose(out["probability"].to_numpy(), expected)
    assert studies[0].kind == "synthetic" and studies[0].root == root   # read from disk


def test_default_model_numbers_score_as_the_fitted_pipeline(features, tmp_path):
    """LinearModel (numpy only) against scikit-learn's own predict_proba, after a JSON round
    trip; a column missing in a vertebra is imputed the same way."""
    pipe = baseline.train_model(features, features["label_any"], "logistic")
    X = features[list(pipe.feature_names_in_)].copy()
    X.iloc[0, 0] = np.nan
    numbers = baseline.models.LinearModel.load(
        baseline.models.LinearModel.from_pipeline(pipe).save(tmp_path / "m.json"))
    np.testing.assert_allclose(numbers.predict_proba(X), pipe.predict_proba(X), rtol=1e-12,
                               atol=1e-15)
    (tmp_path / "bad.json").write_text('{"names": ["f_a"], "median": [1, 2]}')
    with pytest.raises(ModelFileError, match="bad.json"):
        baseline.models.LinearModel.load(tmp_path / "bad.json")

"""The baseline models, skops persistence with an allow-list, and :func:`predict_study`.
scikit-learn and skops are imported inside functions, and the default model is read back as
plain numbers (:class:`LinearModel`): ``import`` and ``vfs predict`` stay fast."""
from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .._fs import atomic_file, write_text_atomic
from ..annotation import load_annotation
from ..data import cache_dir
from ..dicom import load_series
from ..errors import DataNotFoundError, ModelFileError
from ..matching import match
from .features import dataset_features, feature_columns, vertebra_features
from .studies import sampled_studies, vertebra_table

__all__ = ["ALLOWED_TYPES", "MODEL_NAMES", "LinearModel", "default_model", "load_model",
           "make_models", "predict_study", "save_model", "train_model"]

log = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = ("prevalence", "logistic", "boosting")
#: Studies the default model of :func:`predict_study` is trained on (sampled phantoms).
_DEFAULT_TRAIN_STUDIES = 16
_DEFAULT_MODEL_FILE = "baseline-logistic-v2.json"

#: Types a model file may hold beyond skops' defaults: those :func:`make_models` needs.
ALLOWED_TYPES: frozenset[str] = frozenset({
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.Interval",
})


def make_models(seed: int = 0) -> dict[str, object]:
    """The baseline models, unfitted, by name (:data:`MODEL_NAMES`): the training prevalence,
    a scaled L2 logistic regression, and deterministic gradient boosting."""
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "prevalence": DummyClassifier(strategy="prior"),
        "logistic": Pipeline([("impute", SimpleImputer(strategy="median")),
                              ("scale", StandardScaler()),
                              ("classify", LogisticRegression(C=0.1, max_iter=5000))]),
        "boosting": HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=20,
            l2_regularization=1.0, early_stopping=False, random_state=seed),
    }


def feature_matrix(features) -> pd.DataFrame:
    if isinstance(features, pd.DataFrame):
        cols = feature_columns(features)
        return features[cols] if cols else features
    return pd.DataFrame(np.asarray(features, float))


def one_thread():
    """A context fitting on one BLAS/OpenMP thread: fastest here, and safe beside workers."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def train_model(features, labels, model: str | object = "logistic", *, seed: int = 0):
    """Fit one model on all the given vertebrae.

    Parameters
    ----------
    features : DataFrame
        A features frame (its ``f_*`` columns are used) or a feature matrix.
    labels : array_like of bool
        One target.
    model : str or estimator
        A name of :func:`make_models` or an unfitted scikit-learn classifier.
    seed : int
        Seed of the models of :func:`make_models`.

    Returns
    -------
    estimator
        Fitted, with ``feature_names_in_``.
    """
    from sklearn.base import clone

    if isinstance(model, str):
        models = make_models(seed)
        if model not in models:
            raise ValueError(f"unknown model {model!r}: use one of {list(models)}")
        model = models[model]
    est = clone(model)
    with one_thread():
        est.fit(feature_matrix(features), np.asarray(labels, dtype=bool))
    return est


def save_model(model, path: str | os.PathLike) -> Path:
    """Save a fitted model with skops, atomically (parent folders are created).

    Parameters
    ----------
    model : estimator
    path : path-like
        Conventionally ``*.skops``.

    Returns
    -------
    Path
    """
    import skops.io as sio

    path = Path(path)
    with atomic_file(path) as tmp:
        sio.dump(model, tmp)
    return path


def load_model(path: str | os.PathLike, *, allowed: Iterable[str] = ALLOWED_TYPES):
    """Load a model saved by :func:`save_model`, without running pickle code: a file holding
    types outside ``allowed`` (beyond skops' defaults) is refused.

    Raises
    ------
    DataNotFoundError
        No such file.
    ModelFileError
        Not a skops file, or types outside the allow-list.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path}: no such model file; train one and save it with "
                                "vfs_utils.baseline.save_model(), or omit --model.")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a skops model file ({exc}); save models with "
                             "vfs_utils.baseline.save_model().") from exc
    allowed = set(allowed)
    refused = sorted(set(untrusted) - allowed)
    if refused:
        raise ModelFileError(f"{path}: holds types outside the allow-list: {refused}; it was "
                             "not loaded. Only files made by save_model() from make_models() "
                             "models are accepted (see ALLOWED_TYPES).")
    return sio.load(path, trusted=list(untrusted))


class LinearModel:
    """The fitted ``make_models()["logistic"]`` pipeline as plain numbers, scored with numpy:
    median imputation, standard scaling, logistic regression (``predict_proba`` as the
    pipeline's)."""

    classes_ = np.array([False, True])

    def __init__(self, names, median, mean, scale, coef, intercept: float) -> None:
        self.feature_names_in_ = np.asarray(names, dtype=object)
        self.median, self.mean, self.scale, self.coef = (
            np.asarray(v, dtype=float) for v in (median, mean, scale, coef))
        self.intercept = float(intercept)

    @classmethod
    def from_pipeline(cls, pipe) -> LinearModel:
        """The numbers of a fitted impute -> scale -> classify pipeline (columns the imputer
        dropped, all missing in training, are left out)."""
        impute, scale, classify = (pipe.named_steps[k] for k in ("impute", "scale", "classify"))
        if list(classify.classes_) != [False, True]:
            raise ValueError(f"classes {list(classify.classes_)}: a LinearModel needs the "
                             "two classes [False, True]")
        kept = ~np.isnan(impute.statistics_)
        return cls(np.asarray(pipe.feature_names_in_)[kept], impute.statistics_[kept],
                   scale.mean_, scale.scale_, classify.coef_[0], classify.intercept_[0])

    def predict_proba(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=float)
        x = np.where(np.isnan(x), self.median, x)
        z = ((x - self.mean) / self.scale) @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        return np.column_stack([1.0 - p, p])

    def save(self, path: str | os.PathLike) -> Path:
        """Write the numbers as JSON, atomically."""
        doc = {"names": list(self.feature_names_in_), "intercept": self.intercept,
               **{k: getattr(self, k).tolist() for k in ("median", "mean", "scale", "coef")}}
        return write_text_atomic(path, json.dumps(doc))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LinearModel:
        """Read a file written by :meth:`save` (``ModelFileError`` naming the fault)."""
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
            n = len(doc["names"])
            model = cls(doc["names"], doc["median"], doc["mean"], doc["scale"], doc["coef"],
                        doc["intercept"])
            values = [model.median, model.mean, model.scale, model.coef]
            if n == 0 or any(v.shape != (n,) for v in values) or not all(
                    np.isfinite(v).all() for v in values) or not math.isfinite(model.intercept):
                raise ValueError(f"expected {n} finite numbers per field")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise ModelFileError(f"{path}: not a LinearModel file ({type(exc).__name__}: "
                                 f"{str(exc)[:120]}).") from None
        return model


def default_model() -> LinearModel:
    """The model :func:`predict_study` uses without ``model``: logistic, grade >= 1, trained
    on sampled phantom spines on first use and cached in ``<cache>/models/`` as numbers."""
    path = cache_dir() / "models" / _DEFAULT_MODEL_FILE
    if path.is_file():
        return LinearModel.load(path)
    log.info("training the default baseline model on %d sampled phantom studies",
             _DEFAULT_TRAIN_STUDIES)
    frame = dataset_features(sampled_studies(_DEFAULT_TRAIN_STUDIES, 0))
    model = LinearModel.from_pipeline(train_model(frame, frame["label_any"], "logistic"))
    model.save(path)
    return model


def predict_study(root: str | os.PathLike, annotation_file: str | os.PathLike,
                  model=None) -> pd.DataFrame:
    """QM deformity probabilities of the vertebrae of one study (the annotation gives only
    the centres; the features come from its matched series).

    Parameters
    ----------
    root : path-like
        Dataset root holding ``dicom/<Folder>``.
    annotation_file : path-like
        The study's annotation (v1 or v2).
    model : path-like, estimator or None
        A skops file, a fitted estimator, or None for :func:`default_model`.

    Returns
    -------
    DataFrame
        Head -> feet: ``folder, vertebra_id, level, centre_row, centre_col, centre_slice,
        probability`` and ``deformed`` (probability >= 0.5: a QM deformity, not a fracture).
    """
    ann = load_annotation(annotation_file)
    series = match(ann, root)
    vol = load_series(series["study_folder"], series["series_uid"])
    table = vertebra_table(ann, vol.spacing)
    feats = vertebra_features(vol, table)
    del vol
    if model is None:
        est = default_model()
    elif isinstance(model, (str, os.PathLike)):
        est = load_model(model)
    else:
        est = model
    names = getattr(est, "feature_names_in_", None)
    X = feats[list(names)] if names is not None else feats[feature_columns(feats)]
    classes = list(est.classes_)
    prob = est.predict_proba(X)[:, classes.index(True)] if True in classes else np.zeros(len(X))
    out = table[["folder", "vertebra_id", "level", "centre_row", "centre_col",
                 "centre_slice"]].copy()
    out["probability"] = prob
    out["deformed"] = prob >= 0.5
    return out

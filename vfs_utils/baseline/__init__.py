"""A baseline deformity classifier: image features per vertebra, scikit-learn, grouped evaluation.

Per patient and vertebra: a moderate or severe deformity (consensus QM grade >= 2) or any
(grade >= 1) at the label levels? Only each vertebra's centre comes from the annotation;
the features come from the image. Modules: :mod:`.studies` (studies, labels),
:mod:`.features`, :mod:`.models`, :mod:`.evaluation`, :mod:`.leakage`; every public name
is re-exported here.
"""
from __future__ import annotations

from ..errors import ModelFileError
from .evaluation import (
    ANNOTATOR,
    Evaluation,
    annotator_baseline,
    bootstrap_ci,
    brier_scores,
    calibration_curves,
    confusion,
    evaluate,
    roc_curves,
    summarize,
    target_title,
    worst_errors,
)
from .features import PATCH_MM, dataset_features, feature_columns, study_features, vertebra_features
from .leakage import Leakage, leakage, paired_bootstrap
from .models import (
    ALLOWED_TYPES,
    MODEL_NAMES,
    LinearModel,
    default_model,
    load_model,
    make_models,
    predict_study,
    save_model,
    train_model,
)
from .studies import (
    LABEL_LEVELS,
    PRIMARY_TARGET,
    TARGETS,
    Study,
    image_expert,
    load_studies,
    vertebra_table,
)

__all__ = ["ALLOWED_TYPES", "ANNOTATOR", "LABEL_LEVELS", "MODEL_NAMES", "PATCH_MM",
           "PRIMARY_TARGET", "TARGETS", "Evaluation", "Leakage", "LinearModel", "ModelFileError",
           "Study",
           "annotator_baseline", "bootstrap_ci", "brier_scores", "calibration_curves",
           "confusion", "dataset_features", "default_model", "evaluate", "feature_columns",
           "image_expert", "leakage", "load_model", "load_studies", "make_models",
           "paired_bootstrap", "predict_study", "roc_curves", "save_model", "study_features",
           "summarize", "target_title", "train_model", "vertebra_features", "vertebra_table",
           "worst_errors"]

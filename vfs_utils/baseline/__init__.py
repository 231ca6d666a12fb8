"""A baseline deformity classifier: image features per vertebra, scikit-learn, grouped evaluation.

Per patient and vertebra: a moderate or severe deformity (consensus QM grade >= 2) or any
(grade >= 1) at the label levels? Only each vertebra's centre comes from the annotation;
the features come from the image. Modules: :mod:`.studies` (studies, labels),
:mod:`.features`, :mod:`.models`, :mod:`.evaluation`, :mod:`.leakage`; what the lessons
use is re-exported here.
"""
from __future__ import annotations

from .evaluation import (
    ANNOTATOR,
    annotator_baseline,
    bootstrap_ci,
    brier_scores,
    calibration_curves,
    confusion,
    evaluate,
    roc_curves,
    target_title,
    worst_errors,
)
from .features import dataset_features, feature_columns, vertebra_features
from .leakage import leakage, paired_bootstrap
from .models import (
    ALLOWED_TYPES,
    load_model,
    make_models,
    predict_study,
    save_model,
    train_model,
)
from .studies import (
    PRIMARY_TARGET,
    TARGETS,
    Study,
    image_expert,
    load_studies,
    vertebra_table,
)

__all__ = ["ALLOWED_TYPES", "ANNOTATOR", "PRIMARY_TARGET", "TARGETS", "Study",
           "annotator_baseline", "bootstrap_ci", "brier_scores", "calibration_curves",
           "confusion", "dataset_features", "evaluate", "feature_columns", "image_expert",
           "leakage", "load_model", "load_studies", "make_models", "paired_bootstrap",
           "predict_study", "roc_curves", "save_model", "target_title", "train_model",
           "vertebra_features", "vertebra_table", "worst_errors"]

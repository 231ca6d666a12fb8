"""A baseline deformity classifier: image features per vertebra, scikit-learn, grouped evaluation.

The task: given a CT series and the centre of every vertebral body (from the
annotation; finding the vertebrae is out of scope), say for each patient whether
at least one vertebra at the label levels (T4-L4) has a moderate or severe
deformity (consensus QM grade >= 2, the primary target) or any deformity (grade
>= 1, secondary), and for each vertebra whether it has.

Only the **centre and column** of each vertebra come from the annotation; everything
else is measured in the image (:func:`vertebra_features`), and the experts' heights
never enter the features. The labels are the experts' consensus grades
(:func:`vfs_utils.morphometry.consensus`).

Data (:func:`load_studies`): ``real`` series read with :func:`vfs_utils.dicom.load_series`;
``phantom`` spines of the real annotations, rendered in memory as a thin sagittal slab;
``synthetic``: the synthetic dataset topped up with sampled spines to 40 studies.

One module per step: :mod:`.studies` (what is studied, the labels), :mod:`.features`,
:mod:`.models` (models, skops persistence with an allow-list, one-study prediction),
:mod:`.evaluation` (grouped cross-validation, study-bootstrap intervals, the annotator
baseline), :mod:`.leakage` (grouped against ungrouped folds). Every public name is
re-exported here; the figures are in :mod:`vfs_utils.plotting`.
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

__all__ = [
    "ALLOWED_TYPES",
    "ANNOTATOR",
    "LABEL_LEVELS",
    "MODEL_NAMES",
    "PATCH_MM",
    "PRIMARY_TARGET",
    "TARGETS",
    "Evaluation",
    "Leakage",
    "ModelFileError",
    "Study",
    "annotator_baseline",
    "bootstrap_ci",
    "brier_scores",
    "calibration_curves",
    "confusion",
    "dataset_features",
    "default_model",
    "evaluate",
    "feature_columns",
    "image_expert",
    "leakage",
    "load_model",
    "load_studies",
    "make_models",
    "paired_bootstrap",
    "predict_study",
    "roc_curves",
    "save_model",
    "study_features",
    "summarize",
    "target_title",
    "train_model",
    "vertebra_features",
    "vertebra_table",
    "worst_errors",
]

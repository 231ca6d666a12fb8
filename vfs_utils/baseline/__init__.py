"""A baseline deformity classifier: image features per vertebra, scikit-learn, grouped evaluation.

The task: given a CT series and the centre of every vertebral body (from the
annotation; finding the vertebrae is out of scope), say for each patient whether
at least one vertebra at the label levels (T4-L4) has a moderate or severe
deformity (consensus QM grade >= 2, the primary target) or any deformity (grade
>= 1, secondary), and for each vertebra whether it has.

Only the **centre and column** of each vertebra come from the annotation.
Everything else is measured in the image (:func:`vertebra_features`): a
sagittal patch resampled to a fixed 1 mm grid, centred on the vertebra and
turned along the local spine axis; the bone extent above a HU threshold along
the spine axis at the anterior, middle and posterior part of the body (image
heights, their ratios, and ratios to the neighbouring vertebrae), intensity
profiles, downsampled pixels and a gradient-orientation histogram. The labels
are the experts' consensus grades (:func:`vfs_utils.morphometry.consensus`);
the experts' heights never enter the features.

Data (:func:`load_studies`):

- ``real``: the annotated series are read with :func:`vfs_utils.dicom.load_series`,
  one at a time;
- ``phantom``: every real annotation file is turned into a phantom spine
  (:func:`vfs_utils.phantom.spine_from_annotation`) and only a thin sagittal
  slab around it is rendered, in memory;
- ``synthetic``: the synthetic dataset's series, topped up with sampled
  phantom spines (:func:`vfs_utils.phantom.sample_spine`) to at least 40 studies.

Models (:func:`make_models`): a constant prevalence score, standardised
logistic regression and histogram gradient boosting. Evaluation
(:func:`evaluate`): grouped cross-validation by study, ROC AUC and PR AUC with
study-bootstrap intervals, sensitivity and specificity at a fixed threshold,
at vertebra and patient level (a patient's score is the maximum over their
vertebrae at the label levels), the single-annotator baseline
(:func:`annotator_baseline`) and the leakage of ungrouped folds (:func:`leakage`).
Models are saved with skops (:func:`save_model`, :func:`load_model`): loading runs no
pickle code and accepts only the types of
an explicit allow-list.

One module per step: :mod:`.studies` (what is studied, the labels), :mod:`.features`
(the image features), :mod:`.models` (models, persistence, one-study prediction),
:mod:`.evaluation` (grouped evaluation, intervals, the annotator baseline), :mod:`.leakage`
(grouped against ungrouped folds). Every public
name is re-exported here; the figures are in :mod:`vfs_utils.plotting`.
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

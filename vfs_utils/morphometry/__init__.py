"""Vertebral morphometry: heights, QM deformity grades, level-normal references, consensus.

Every vertebra reading has six keypoints spanning the anterior, middle and posterior
height of the body. This package turns them into heights in mm (Ha, Hm, Hp), shape
indices and **quantitative-morphometry (QM) deformity grades**, none of them a
radiologist's fracture diagnosis (Genant's visual SQ grade excludes non-fracture
deformity; the annotation holds no such grade). Three QM rules: within-vertebra and
neighbour (Genant's 20/25/40 % bands, :func:`genant_grade`) and SD scores against a
level-normal reference (Eastell et al. 1991; :func:`level_reference`, :func:`sd_scores`).
Then consensus across readers, study labels, keypoint scatter, inter-expert agreement,
the two annotation rounds and the grades' sensitivity to keypoint noise; the
statistics themselves are in :mod:`vfs_utils.agreement`.

Submodules (everything public is re-exported here; use ``morphometry.<name>``):
:mod:`.grading` (heights, Genant's bands, the within-vertebra loss),
:mod:`.table` (:func:`dataset_spacing`, :func:`morphometry_table`, the
neighbour rule), :mod:`.reference` (levels, level-normal reference, SD
scores), :mod:`.pooling` (consensus, study labels, prevalence, keypoint
scatter), :mod:`.reader_agreement` (kappa, alpha, count disagreement),
:mod:`.rounds` (v1 vs v2) and :mod:`.sensitivity` (grade flip rate).
"""
from __future__ import annotations

from .grading import DEFORMITIES, GRADE_THRESHOLDS, GRADE_TOLERANCE, GRADES, genant_grade, heights
from .pooling import (
    consensus,
    keypoint_scatter,
    level_rates,
    prevalence,
    prevalence_intervals,
    rate_by_readers,
    study_labels,
)
from .reader_agreement import (
    Agreement,
    CountDisagreement,
    agreement,
    agreement_statistics,
    count_disagreement,
    fleiss_kappa,
)
from .reference import (
    LABEL_LEVELS,
    RATIOS,
    SD_THRESHOLDS,
    distinct_readings,
    label_levels,
    level_reference,
    sd_scores,
)
from .rounds import RoundComparison, compare_rounds
from .sensitivity import grade_flip_rate
from .table import dataset_spacing, morphometry_table

__all__ = [
    "DEFORMITIES",
    "GRADES",
    "GRADE_THRESHOLDS",
    "GRADE_TOLERANCE",
    "LABEL_LEVELS",
    "RATIOS",
    "SD_THRESHOLDS",
    "Agreement",
    "CountDisagreement",
    "RoundComparison",
    "agreement",
    "agreement_statistics",
    "compare_rounds",
    "consensus",
    "count_disagreement",
    "dataset_spacing",
    "distinct_readings",
    "fleiss_kappa",
    "genant_grade",
    "grade_flip_rate",
    "heights",
    "keypoint_scatter",
    "label_levels",
    "level_rates",
    "level_reference",
    "morphometry_table",
    "prevalence",
    "prevalence_intervals",
    "rate_by_readers",
    "sd_scores",
    "study_labels",
]

"""Vertebral morphometry: heights, QM deformity grades, level-normal references, consensus.

The six keypoints of a reading give heights in mm (Ha, Hm, Hp), shape indices and
**quantitative-morphometry (QM) deformity grades** (not a radiologist's fracture
diagnosis) by three rules: within-vertebra and neighbour (Genant's bands) and SD scores
against a level-normal reference (Eastell et al. 1991). Then consensus across readers,
study labels, inter-expert agreement, the two rounds and the sensitivity to keypoint
noise. Everything public is re-exported here; use ``morphometry.<name>``.
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

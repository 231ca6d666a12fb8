"""Vertebral morphometry: heights, QM deformity grades, level-normal references, consensus.

The six keypoints of a reading give heights in mm (Ha, Hm, Hp), shape indices and
**quantitative-morphometry (QM) deformity grades** (not a radiologist's fracture
diagnosis) by three rules: within-vertebra and neighbour (Genant's bands) and SD scores
against a level-normal reference (Eastell et al. 1991). Then consensus across readers and
prevalence. Agreement between readers lives in :mod:`vfs_utils.agreement`. Everything
public is re-exported here; use ``morphometry.<name>``.
"""
from __future__ import annotations

from .grading import GRADE_THRESHOLDS, genant_grade, heights
from .pooling import (
    consensus,
    keypoint_scatter,
    level_rates,
    prevalence,
    prevalence_intervals,
    rate_by_readers,
)
from .reference import (
    LABEL_LEVELS,
    distinct_readings,
    label_levels,
    level_reference,
    sd_scores,
)
from .table import dataset_spacing, morphometry_table

__all__ = [
    "GRADE_THRESHOLDS",
    "LABEL_LEVELS",
    "consensus",
    "dataset_spacing",
    "distinct_readings",
    "genant_grade",
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
]


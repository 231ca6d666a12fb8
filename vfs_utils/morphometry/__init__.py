"""Vertebral morphometry: heights, QM deformity grades, level-normal references, consensus.

Every vertebra reading of the annotation has six keypoints: three pairs that
span the anterior, middle and posterior height of the vertebral body. This
module turns them into heights in mm (Ha, Hm, Hp), shape indices, and
**quantitative-morphometry (QM) deformity grades**. None of them is a
radiologist's fracture diagnosis: Genant's semi-quantitative method (SQ) is a
visual grade that excludes non-fracture deformity (normal wedging, Schmorl
nodes, developmental short vertebrae); the annotation holds no such visual
grade. Three QM rules:

1. **within-vertebra, Genant's bands** (``height_loss``, ``grade``,
   ``deformity``): ``1 - min(Ha, Hm, Hp) / max(Ha, Hm, Hp)`` graded with
   Genant's 20/25/40 % height-reduction bands (:func:`genant_grade`);
2. **neighbour, Genant's bands** (``neighbour_loss``, ``neighbour_grade``,
   ``neighbour_deformity``): each height against the same height of the two
   adjacent vertebrae of the reading (both needed; none at the ends);
3. **SD scores against a level-normal reference** (:func:`level_reference`,
   :func:`sd_scores`; ``sd_score``, ``sd_grade``): Eastell et al. (1991),
   deformed when a ratio lies 3 SD or more below the level's normal mean.

Then a consensus across readers (:func:`consensus`: the grade of the mean over
readers, with no minimum-of-two artefact; :func:`rate_by_readers` measures what the
number of readers still does to it),
study labels (:func:`study_labels`), the readers' own keypoint scatter
(:func:`keypoint_scatter`), inter-expert agreement (:func:`agreement`,
:func:`agreement_statistics`, :func:`fleiss_kappa`, :func:`count_disagreement`),
a comparison of the two annotation rounds (:func:`compare_rounds`) and a Monte
Carlo sensitivity of the grades to keypoint noise (:func:`grade_flip_rate`).
The statistics themselves (Krippendorff's alpha, ICC, Bland-Altman,
bootstrap) are in :mod:`vfs_utils.agreement`.

Heights and grades are vectorised numpy over the whole frame; only the
per-study and per-expert-pair steps loop in Python.

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
